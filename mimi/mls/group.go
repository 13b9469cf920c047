package mls

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// hpkeKey is an HPKE key pair, both halves serialized.
type hpkeKey struct {
	priv, pub []byte
}

// keyRing holds the key pairs a member knows, by tree node.
type keyRing map[nodeIndex]hpkeKey

// PSKStore supplies pre-shared keys a group's commits or Welcomes name.
type PSKStore interface {
	// PSK returns the secret for id, or false if it is not known.
	PSK(id *PreSharedKeyID) ([]byte, bool)
}

// GroupOptions tunes a member's group.
type GroupOptions struct {
	Config
	// PSKs supplies external PSKs and other groups' resumption PSKs.
	PSKs PSKStore
	// Random is the source of randomness; nil means crypto/rand.
	Random io.Reader
	// Now returns the current time in Unix seconds, for KeyPackage
	// lifetimes; nil means the system clock.
	Now func() uint64
	// PastEpochs is how many epochs before the current one keep what
	// decrypting their late application messages needs (sender data
	// secret, the secret tree's unused keys, the epoch's GroupContext and
	// the leaves its commit changed). Zero means DefaultPastEpochs;
	// NoPastEpochs (or any negative value) keeps none; values above
	// MaxPastEpochs mean MaxPastEpochs. Epochs held with HoldEpoch are
	// kept beyond it (NoPastEpochs holds none). Handshake messages are
	// never accepted for a past epoch.
	PastEpochs int
}

// ErrPendingCommit is returned by Process while this member's own commit
// awaits the hub's answer: merge or discard it first.
var ErrPendingCommit = errors.New("a commit of this member is pending")

// ErrRemoved is returned once this member has been removed from the group.
var ErrRemoved = errors.New("this member was removed from the group")

// ErrConfirmation reports a commit whose confirmation tag, membership tag or
// path secrets do not match what this member derives: the committer and this
// member disagree on the group's secrets.
var ErrConfirmation = errors.New("group secrets disagree")

// Group is one member's state of an MLS group: the public state a hub also
// keeps, plus the member's private keys and the epoch's secrets. It always
// sends handshake messages as PublicMessage, so that a hub can follow them.
// A Group is not safe for concurrent use.
type Group struct {
	groupState
	opts GroupOptions

	me              LeafIndex
	signer          *SigningKey
	secrets         *epochSecrets
	keys            *messageKeys
	confirmationTag []byte
	// nodeKeys holds the HPKE key pairs this member knows, by node.
	nodeKeys keyRing
	// updateKeys holds private keys of this member's pending Update
	// proposals, by the public key.
	updateKeys map[string][]byte
	// resumption keeps this group's resumption PSKs by epoch.
	resumption map[uint64][]byte
	staged     *stagedCommit
	removed    bool
	// joinerLeaf is the leaf an external joiner brings, before it has one.
	joinerLeaf *LeafNode
	// past holds the kept past epochs, oldest first, consecutive and
	// ending just before the current epoch.
	past []*pastEpoch
	// held lists the past epochs kept beyond PastEpochs until released
	// (HoldEpoch), increasing; each is one of past.
	held []uint64
}

const resumptionPSKsKept = 8

func (g *Group) now() uint64 {
	if g.opts.Now != nil {
		return g.opts.Now()
	}
	return unixNow()
}

// MyLeaf returns this member's leaf index.
func (g *Group) MyLeaf() LeafIndex { return g.me }

// Epoch returns the current epoch.
func (g *Group) Epoch() uint64 { return g.ctx.Epoch }

// GroupID returns the group id.
func (g *Group) GroupID() []byte { return g.ctx.GroupID }

// Suite returns the group's cipher suite.
func (g *Group) Suite() *Suite { return g.suite }

// Tree returns the ratchet tree. Callers must not modify it.
func (g *Group) Tree() *Tree { return g.tree }

// GroupContext returns a copy of the current GroupContext.
func (g *Group) GroupContext() GroupContext { return g.ctx.clone() }

// EpochAuthenticator returns the epoch authenticator (RFC 9420 section 8.7).
func (g *Group) EpochAuthenticator() []byte { return bytes.Clone(g.secrets.epochAuthenticator) }

// Export derives an exporter secret (RFC 9420 section 8.5).
func (g *Group) Export(label string, context []byte, length int) ([]byte, error) {
	return g.suite.export(g.secrets.exporter, label, context, length)
}

// Removed reports whether a commit removed this member.
func (g *Group) Removed() bool { return g.removed }

// installEpoch makes secrets the epoch's secrets.
func (g *Group) installEpoch(es *epochSecrets, confirmationTag []byte) {
	g.secrets = es
	g.confirmationTag = confirmationTag
	g.keys = &messageKeys{
		suite:      g.suite,
		epoch:      g.ctx.Epoch,
		senderData: es.senderData,
		tree:       newSecretTree(g.suite, es.encryption, g.tree.nLeaves),
		membership: es.membershipKey,
	}
	if g.resumption == nil {
		g.resumption = map[uint64][]byte{}
	}
	g.resumption[g.ctx.Epoch] = es.resumptionPSK
	delete(g.resumption, g.ctx.Epoch-resumptionPSKsKept)
	g.pruneNodeKeys()
}

// pruneNodeKeys forgets private keys of nodes that are now blank or hold
// another public key.
func (g *Group) pruneNodeKeys() {
	for x, k := range g.nodeKeys {
		if g.tree.blank(x) || !bytes.Equal(k.pub, g.tree.encryptionKey(x)) {
			delete(g.nodeKeys, x)
		}
	}
}

// lookupPSKs resolves the secrets of ids, from this group's resumption PSKs
// or the PSK store.
func (g *Group) lookupPSKs(ids []PreSharedKeyID) ([]PSK, error) {
	out := make([]PSK, 0, len(ids))
	for _, id := range ids {
		if id.Type == PSKResumption && bytes.Equal(id.GroupID, g.ctx.GroupID) {
			if secret, ok := g.resumption[id.Epoch]; ok {
				out = append(out, PSK{ID: id, Secret: secret})
				continue
			}
		}
		secret, ok := lookupStore(g.opts.PSKs, &id)
		if !ok {
			return nil, fmt.Errorf("PSK %x (type %d) is not available", id.ID, id.Type)
		}
		out = append(out, PSK{ID: id, Secret: secret})
	}
	return out, nil
}

func lookupStore(store PSKStore, id *PreSharedKeyID) ([]byte, bool) {
	if store == nil {
		return nil, false
	}
	return store.PSK(id)
}

// signedContent frames body content from this member for the current epoch.
func (g *Group) signedContent(wf WireFormat, c FramedContent) (*AuthenticatedContent, error) {
	c.GroupID = g.ctx.GroupID
	c.Epoch = g.ctx.Epoch
	c.Sender = MemberSender(g.me)
	ac := &AuthenticatedContent{WireFormat: wf, Content: c}
	if err := ac.Sign(g.signer, g.ctxEnc); err != nil {
		return nil, err
	}
	return ac, nil
}

// publicMessage protects ac as a PublicMessage with this epoch's membership
// tag.
func (g *Group) publicMessage(ac *AuthenticatedContent) (*Message, error) {
	tag, err := membershipTag(g.suite, g.keys.membership, ac, g.ctxEnc)
	if err != nil {
		return nil, err
	}
	return NewPublicMessage(&PublicMessage{Content: ac.Content, Auth: ac.Auth, MembershipTag: tag}), nil
}

func (g *Group) usable() error {
	switch {
	case g.removed:
		return ErrRemoved
	case g.staged != nil:
		return ErrPendingCommit
	case g.closed:
		return rejectf(ErrGroupClosed, "the group was reinitialized")
	}
	return nil
}

// Encrypt protects an application message as a PrivateMessage.
func (g *Group) Encrypt(plaintext, authenticatedData []byte) (*Message, error) {
	if err := g.usable(); err != nil {
		return nil, err
	}
	ac, err := g.signedContent(WirePrivateMessage, FramedContent{
		AuthenticatedData: authenticatedData, ContentType: ContentApplication, ApplicationData: plaintext,
	})
	if err != nil {
		return nil, err
	}
	pm, err := g.keys.encryptPrivate(ac, g.me, 0, g.opts.Random)
	if err != nil {
		return nil, err
	}
	return &Message{Version: MLS10, WireFormat: WirePrivateMessage, Private: pm}, nil
}

// Propose sends a proposal by reference, as a PublicMessage, and records it
// as pending so a later commit of this member can include it.
func (g *Group) Propose(p *Proposal) (*Message, error) {
	if err := g.usable(); err != nil {
		return nil, err
	}
	ac, err := g.signedContent(WirePublicMessage, FramedContent{ContentType: ContentProposal, Proposal: p})
	if err != nil {
		return nil, err
	}
	res, err := g.receiveProposal(ac, g.now())
	if err != nil {
		return nil, fmt.Errorf("propose %s: %w", p.Type, err)
	}
	m, err := g.publicMessage(ac)
	if err != nil {
		return nil, err
	}
	g.addPending(res, ac, wire.MustMarshal(m))
	return m, nil
}

// ProposeUpdate proposes replacing this member's leaf with a fresh
// encryption key (and otherwise the same contents).
func (g *Group) ProposeUpdate() (*Message, error) {
	if err := g.usable(); err != nil {
		return nil, err
	}
	leaf, _ := g.tree.Leaf(g.me)
	priv, pub, err := g.suite.GenerateHPKEKey()
	if err != nil {
		return nil, err
	}
	next := *leaf
	next.EncryptionKey = pub
	next.Source = SourceUpdate
	next.Lifetime, next.ParentHash = Lifetime{}, nil
	if err := next.Sign(g.signer, g.ctx.GroupID, g.me); err != nil {
		return nil, err
	}
	m, err := g.Propose(UpdateProposal(&next))
	if err != nil {
		return nil, err
	}
	if g.updateKeys == nil {
		g.updateKeys = map[string][]byte{}
	}
	g.updateKeys[string(pub)] = priv
	return m, nil
}

// Received is what Process found in a message.
type Received struct {
	// ContentType says which of the fields below is set.
	ContentType ContentType
	// Epoch is the epoch the message was sent in. For an application
	// message it may be a past epoch the group keeps (GroupOptions.PastEpochs):
	// the message arrived after the commit that ended its epoch. Proposals
	// and commits are always for the epoch the group was at.
	Epoch             uint64
	Sender            Sender
	AuthenticatedData []byte
	ApplicationData   []byte
	// SenderLeaf is an application message's sender's leaf node in the
	// message's epoch (a late message's sender may have left or been
	// replaced since).
	SenderLeaf *LeafNode
	// ContentKey and ContentNonce decrypt this application message and no
	// other; a member discloses them to report the message as abusive.
	ContentKey, ContentNonce []byte
	Proposal                 *ProposalResult
	Commit                   *CommitResult
}

// Process handles a message from the group: it decrypts or authenticates it
// and applies proposals and commits. An application message or proposal of
// the current epoch, or a commit for it, is accepted, and so is an
// application message (a PrivateMessage) of a past epoch the group keeps
// (GroupOptions.PastEpochs); Received.Epoch tells which. Proposals and
// commits of other epochs are refused with ErrWrongEpoch, application
// messages of epochs no longer kept with ErrEpochNotRetained (which wraps
// it). Every message key decrypts one message: a replay is refused.
func (g *Group) Process(m *Message) (*Received, error) {
	if g.removed {
		return nil, ErrRemoved
	}
	if g.staged != nil {
		if !isCommitFor(m, g.ctx.Epoch) {
			return nil, ErrPendingCommit
		}
		if bytes.Equal(wire.MustMarshal(m), g.staged.message) {
			res, epoch := g.staged.result, g.ctx.Epoch
			g.MergePendingCommit()
			return &Received{ContentType: ContentCommit, Epoch: epoch, Sender: MemberSender(g.me), Commit: res}, nil
		}
		// Another member's commit won the epoch.
		g.DiscardPendingCommit()
	}
	ac, kn, past, err := g.unprotect(m)
	if err != nil {
		return nil, err
	}
	c := &ac.Content
	out := &Received{ContentType: c.ContentType, Epoch: c.Epoch, Sender: c.Sender, AuthenticatedData: c.AuthenticatedData}
	switch c.ContentType {
	case ContentApplication:
		// A past epoch's message was framed by unprotect: its group, its
		// epoch (a kept one) and its content type (application, bound to
		// the ciphertext as AAD).
		if past == nil {
			if err := g.checkFraming(c, ContentApplication); err != nil {
				return nil, err
			}
		}
		if c.Sender.Type != SenderMember || m.WireFormat != WirePrivateMessage {
			return nil, rejectf(ErrMalformed, "application messages must come from members as PrivateMessage")
		}
		leaf, ctxEnc, err := g.applicationSender(past, c.Sender.Index)
		if err != nil {
			return nil, err
		}
		if err := ac.VerifySignature(g.suite, leaf.SignatureKey, ctxEnc); err != nil {
			return nil, rejectAs(ErrSignature, err)
		}
		out.ApplicationData = c.ApplicationData
		out.SenderLeaf = leaf
		out.ContentKey, out.ContentNonce = kn.key, kn.nonce
	case ContentProposal:
		if err := g.checkFraming(c, ContentProposal); err != nil {
			return nil, err
		}
		res, err := g.receiveProposal(ac, g.now())
		if err != nil {
			return nil, err
		}
		g.addPending(res, ac, wire.MustMarshal(m))
		out.Proposal = res
	case ContentCommit:
		res, err := g.processCommit(ac)
		if err != nil {
			return nil, err
		}
		out.Commit = res
	}
	return out, nil
}

func isCommitFor(m *Message, epoch uint64) bool {
	switch {
	case m.Public != nil:
		return m.Public.Content.ContentType == ContentCommit && m.Public.Content.Epoch == epoch
	case m.Private != nil:
		return m.Private.ContentType == ContentCommit && m.Private.Epoch == epoch
	}
	return false
}

// unprotect checks the membership tag of a PublicMessage of the current
// epoch, or decrypts a PrivateMessage of the current epoch or an
// application message of a kept past epoch (returning the content key and
// nonce it used, and the past epoch, nil for the current one).
func (g *Group) unprotect(m *Message) (*AuthenticatedContent, keyAndNonce, *pastEpoch, error) {
	var none keyAndNonce
	switch {
	case m.WireFormat == WirePublicMessage && m.Public != nil:
		ac := m.Public.Authenticated()
		if ac.Content.Epoch != g.ctx.Epoch {
			return nil, none, nil, rejectf(ErrWrongEpoch, "message for epoch %d, the group is at epoch %d", ac.Content.Epoch, g.ctx.Epoch)
		}
		if ac.Content.Sender.Type == SenderMember {
			tag, err := membershipTag(g.suite, g.keys.membership, ac, g.ctxEnc)
			if err != nil {
				return nil, none, nil, rejectAs(ErrMalformed, err)
			}
			if !constantTimeEqual(tag, m.Public.MembershipTag) {
				return nil, none, nil, rejectf(ErrConfirmation, "membership tag does not verify")
			}
		}
		return ac, none, nil, nil
	case m.WireFormat == WirePrivateMessage && m.Private != nil:
		pm := m.Private
		if !bytes.Equal(pm.GroupID, g.ctx.GroupID) {
			return nil, none, nil, rejectf(ErrWrongGroup, "group id %x", pm.GroupID)
		}
		keys := g.keys
		var past *pastEpoch
		if pm.Epoch != g.ctx.Epoch {
			var err error
			if past, err = g.pastEpochFor(pm); err != nil {
				return nil, none, nil, err
			}
			keys = past.keys
		}
		ac, kn, err := keys.decryptPrivateKeys(pm)
		if err != nil {
			return nil, none, nil, rejectAs(ErrMalformed, err)
		}
		return ac, kn, past, nil
	}
	return nil, none, nil, rejectf(ErrMalformed, "a group processes public and private messages, not %s", m.WireFormat)
}

// GroupInfoOptions says what a GroupInfo carries besides the GroupContext.
type GroupInfoOptions struct {
	// RatchetTree adds the ratchet_tree extension.
	RatchetTree bool
	// ExternalPub adds the external_pub extension, enabling external joins.
	ExternalPub bool
	// Extensions are added as they are.
	Extensions Extensions
}

// GroupInfo returns a GroupInfo for the current epoch, signed by this member.
func (g *Group) GroupInfo(opts GroupInfoOptions) (*Message, error) {
	if err := g.usable(); err != nil {
		return nil, err
	}
	gi, err := g.makeGroupInfo(&g.ctx, g.secrets, g.confirmationTag, g.me, opts)
	if err != nil {
		return nil, err
	}
	return NewGroupInfoMessage(gi), nil
}

func (g *Group) makeGroupInfo(ctx *GroupContext, es *epochSecrets, tag []byte, signer LeafIndex, opts GroupInfoOptions) (*GroupInfo, error) {
	ext := append(Extensions(nil), opts.Extensions...)
	if opts.RatchetTree {
		ext = append(ext, Extension{Type: ExtRatchetTree, Data: wire.MustMarshal(g.tree)})
	}
	if opts.ExternalPub {
		_, pub, err := g.suite.externalKeyPair(es)
		if err != nil {
			return nil, err
		}
		ext = append(ext, ExternalPubExtension(pub))
	}
	gi := &GroupInfo{GroupContext: ctx.clone(), Extensions: ext, ConfirmationTag: tag, Signer: signer}
	if err := gi.Sign(g.signer); err != nil {
		return nil, err
	}
	return gi, nil
}

// ActAs makes g send as the member at leaf, whose signature key signer
// holds, from now on: commits, proposals and application messages. It is
// for load generators and tests that drive a hub with many members through
// one Group instead of one per member. What g sends is valid for every
// member (g keeps the epoch's real secrets, and a commit's path secrets
// are its own), but g can no longer read commits that encrypt path
// secrets to the leaf it was. ActAs needs nothing a member does not
// already have besides the other member's signature key.
func (g *Group) ActAs(leaf LeafIndex, signer *SigningKey) error {
	if g.staged != nil {
		return fmt.Errorf("mls: act as leaf %d: a commit is pending", leaf)
	}
	l, ok := g.tree.Leaf(leaf)
	if !ok {
		return fmt.Errorf("mls: act as leaf %d: not a member", leaf)
	}
	if !bytes.Equal(l.SignatureKey, signer.PublicKey()) {
		return fmt.Errorf("mls: act as leaf %d: the signer's key is not the leaf's", leaf)
	}
	g.me, g.signer = leaf, signer
	return nil
}
