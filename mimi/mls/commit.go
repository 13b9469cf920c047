package mls

import (
	"bytes"
	"fmt"
	"time"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

func unixNow() uint64 { return uint64(time.Now().Unix()) }

// CommitOptions says what a commit covers.
type CommitOptions struct {
	// Proposals are committed by value (they must be this member's own).
	Proposals []*Proposal
	// References are pending proposals committed by reference.
	References [][]byte
	// IncludePending commits by reference, after References, every pending
	// proposal this member may commit together: all but its own Updates
	// and SelfRemoves, and those that would touch a leaf already touched
	// (SelfRemoves come first, so a Remove of a leaf that removes itself is
	// left out, as draft-ietf-mls-extensions says), or this member's own
	// leaf.
	IncludePending bool
	// ForcePath adds an UpdatePath even when no proposal requires one.
	ForcePath bool
	// GroupInfo says what the GroupInfo for the new epoch carries.
	GroupInfo GroupInfoOptions
	// WelcomeRatchetTree puts the ratchet tree into the GroupInfo inside the
	// Welcome, so that new members need not fetch it.
	WelcomeRatchetTree bool
	// AuthenticatedData is carried in the clear with the commit.
	AuthenticatedData []byte
	// SkipListChecks builds the commit even when its proposal list breaks
	// the rules of RFC 9420 section 12.2 (or draft-ietf-mls-extensions).
	// It exists only for tests that play a hostile committer: every
	// receiver refuses such a commit. Never set it otherwise.
	SkipListChecks bool
}

// CommitBundle is what a commit produces: the commit (a PublicMessage), the
// GroupInfo of the new epoch, a Welcome when members are added, and what
// the commit does.
type CommitBundle struct {
	Commit    *Message
	GroupInfo *Message
	Welcome   *Message // nil when nobody is added
	Result    *CommitResult
}

// stagedCommit is a commit of this member awaiting the hub's answer. The
// tree holds its changes inside an open transaction.
type stagedCommit struct {
	message  []byte
	next     GroupContext
	secrets  *epochSecrets
	tag      []byte
	nodeKeys keyRing
	me       LeafIndex
	result   *CommitResult
}

// Commit creates a commit. The group does not move to the new epoch until
// MergePendingCommit (call it once the hub accepted the commit) or until
// Process sees the commit come back; DiscardPendingCommit drops it.
func (g *Group) Commit(opts CommitOptions) (*CommitBundle, error) {
	if err := g.usable(); err != nil {
		return nil, err
	}
	commit := &Commit{}
	for _, p := range opts.Proposals {
		commit.Proposals = append(commit.Proposals, ProposalOrRef{Proposal: p})
	}
	refs := opts.References
	if opts.IncludePending {
		refs = append(refs, g.committablePending(commit, refs)...)
	}
	for _, r := range refs {
		commit.Proposals = append(commit.Proposals, ProposalOrRef{Reference: r})
	}
	return g.createCommit(commit, MemberSender(g.me), nil, opts)
}

// committablePending picks the pending proposals IncludePending adds to a
// commit that already holds commit's by-value proposals and refs: the
// SelfRemoves first, then the rest in arrival order, leaving out this
// member's own Updates and SelfRemoves and anything that touches a leaf
// already touched (or this member's leaf).
func (g *Group) committablePending(commit *Commit, refs [][]byte) [][]byte {
	touched := map[LeafIndex]bool{g.me: true}
	touch := func(cp CommittedProposal) bool {
		if l, ok := target(cp); ok {
			if touched[l] {
				return false
			}
			touched[l] = true
		}
		return true
	}
	me := MemberSender(g.me)
	for _, por := range commit.Proposals {
		if por.Proposal != nil {
			touch(CommittedProposal{Proposal: por.Proposal, Sender: me})
		}
	}
	chosen := map[string]bool{}
	for _, r := range refs {
		chosen[string(r)] = true
		if p := g.findPending(r); p != nil {
			touch(CommittedProposal{Proposal: p.content.Content.Proposal, Sender: p.sender})
		}
	}
	var out [][]byte
	for _, selfRemovesFirst := range []bool{true, false} {
		for _, p := range g.pending {
			t := p.content.Content.Proposal.Type
			if (t == ProposalSelfRemove) != selfRemovesFirst || chosen[string(p.ref)] {
				continue
			}
			if p.sender == me && (t == ProposalUpdate || t == ProposalSelfRemove) {
				continue
			}
			if touch(CommittedProposal{Proposal: p.content.Content.Proposal, Sender: p.sender}) {
				out = append(out, p.ref)
				chosen[string(p.ref)] = true
			}
		}
	}
	return out
}

// createCommit builds, signs and protects a commit from sender (a member, or
// a new member joining externally with initSecret from its ExternalInit),
// leaving the new epoch pending.
func (g *Group) createCommit(commit *Commit, sender Sender, initSecret []byte, opts CommitOptions) (*CommitBundle, error) {
	res := &CommitResult{Epoch: g.ctx.Epoch + 1, Committer: g.me, External: sender.Type == SenderNewMemberCommit}
	if err := g.resolveOnly(commit, sender, g.now(), res); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	if !opts.SkipListChecks {
		if err := g.checkList(commit, sender, res); err != nil {
			return nil, fmt.Errorf("commit: %w", err)
		}
	}
	g.tree.begin()
	bundle, err := g.stageOwnCommit(commit, sender, initSecret, g.pathRequired(res) || opts.ForcePath, res, opts)
	if err != nil {
		g.tree.rollback()
		return nil, fmt.Errorf("commit: %w", err)
	}
	return bundle, nil
}

func (g *Group) stageOwnCommit(commit *Commit, sender Sender, initSecret []byte, withPath bool, res *CommitResult, opts CommitOptions) (*CommitBundle, error) {
	s := g.suite
	ext, added, err := g.applyProposals(res)
	if err != nil {
		return nil, err
	}
	var commitSecret []byte
	var newKeys keyRing
	var pathSecrets map[nodeIndex][]byte
	if withPath {
		me := g.committerLeaf(sender, res)
		old, wasMember := g.tree.Leaf(me)
		commit.Path, commitSecret, newKeys, pathSecrets, err = g.createPath(me, ext, added)
		if err != nil {
			return nil, err
		}
		res.HasPath = true
		if wasMember {
			res.Updated = append(res.Updated, UpdatedMember{Leaf: me, Old: old, New: &commit.Path.LeafNode})
		}
	}
	if err := g.finishTree(ext, res); err != nil {
		return nil, err
	}
	me := res.Committer
	content := FramedContent{
		GroupID: g.ctx.GroupID, Epoch: g.ctx.Epoch, Sender: sender,
		AuthenticatedData: opts.AuthenticatedData, ContentType: ContentCommit, Commit: commit,
	}
	ac := &AuthenticatedContent{WireFormat: WirePublicMessage, Content: content}
	if err := ac.Sign(g.signer, g.ctxEnc); err != nil {
		return nil, err
	}
	next, err := g.nextContext(ac, ext)
	if err != nil {
		return nil, err
	}
	nextEnc := wire.MustMarshal(&next)
	psks, err := g.lookupPSKs(res.PSKs)
	if err != nil {
		return nil, err
	}
	pskSecret, err := s.pskSecret(psks)
	if err != nil {
		return nil, err
	}
	if initSecret == nil {
		initSecret = g.secrets.init
	}
	joiner, err := s.joinerSecret(initSecret, commitSecret, nextEnc)
	if err != nil {
		return nil, err
	}
	es, err := s.epochSecretsFromJoiner(joiner, pskSecret, nextEnc)
	if err != nil {
		return nil, err
	}
	ac.Auth.ConfirmationTag = s.MAC(es.confirmationKey, next.ConfirmedTranscriptHash)
	pm := &PublicMessage{Content: ac.Content, Auth: ac.Auth}
	if sender.Type == SenderMember {
		if pm.MembershipTag, err = membershipTag(s, g.keys.membership, ac, g.ctxEnc); err != nil {
			return nil, err
		}
	}
	msg := NewPublicMessage(pm)

	// The GroupInfo and Welcome are signed by this member in its new leaf.
	gi, err := g.makeGroupInfo(&next, es, ac.Auth.ConfirmationTag, me, opts.GroupInfo)
	if err != nil {
		return nil, err
	}
	var welcome *Message
	if len(res.Added) > 0 {
		wgi, err := g.makeGroupInfo(&next, es, ac.Auth.ConfirmationTag, me, GroupInfoOptions{RatchetTree: opts.WelcomeRatchetTree})
		if err != nil {
			return nil, err
		}
		if welcome, err = g.makeWelcome(wgi, es, res, pathSecrets); err != nil {
			return nil, err
		}
	}
	g.staged = &stagedCommit{
		message:  wire.MustMarshal(msg),
		next:     next,
		secrets:  es,
		tag:      ac.Auth.ConfirmationTag,
		nodeKeys: newKeys,
		me:       me,
		result:   res,
	}
	return &CommitBundle{Commit: msg, GroupInfo: NewGroupInfoMessage(gi), Welcome: welcome, Result: res}, nil
}

// createPath generates a fresh leaf and path for leaf me on the tree the
// proposals produced, merges it, and encrypts the path secrets to the
// resolution of each copath node (new members excluded). It returns the
// UpdatePath, the commit secret, the new private keys by node and the path
// secret of every filtered-direct-path node.
func (g *Group) createPath(me LeafIndex, ext Extensions, added []LeafIndex) (*UpdatePath, []byte, keyRing, map[nodeIndex][]byte, error) {
	s := g.suite
	t := g.tree
	if _, ok := t.Leaf(me); !ok && (g.joinerLeaf == nil || g.secrets != nil) { // only an external joiner has no leaf yet
		return nil, nil, nil, nil, rejectf(ErrInvalidProposal, "the commit removes its own committer (leaf %d)", me)
	}
	leafPriv, leafPub, err := s.GenerateHPKEKey()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	steps := t.filteredDirectPath(me)
	pathSecret, err := randomBytes(g.opts.Random, s.nh)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	keys := make([][]byte, len(steps))
	newKeys := keyRing{leafNode(me): {leafPriv, leafPub}}
	secrets := map[nodeIndex][]byte{}
	for i, st := range steps {
		if i > 0 {
			pathSecret = s.DeriveSecret(pathSecret, "path")
		}
		priv, pub, err := s.DeriveKeyPair(s.DeriveSecret(pathSecret, "node"))
		if err != nil {
			return nil, nil, nil, nil, err
		}
		keys[i] = pub
		newKeys[st.node] = hpkeKey{priv, pub}
		secrets[st.node] = pathSecret
	}
	commitSecret := pathSecret
	if len(steps) > 0 {
		commitSecret = s.DeriveSecret(pathSecret, "path")
	}
	ph, err := t.setPath(me, steps, keys)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	leaf, ok := t.Leaf(me)
	if !ok {
		// An external joiner: start from the leaf it brought.
		leaf = g.joinerLeaf
	}
	next := *leaf
	next.EncryptionKey = leafPub
	next.Source = SourceCommit
	next.Lifetime = Lifetime{}
	next.ParentHash = ph
	if err := next.Sign(g.signer, g.ctx.GroupID, me); err != nil {
		return nil, nil, nil, nil, err
	}
	if err := t.setLeaf(me, &next); err != nil {
		return nil, nil, nil, nil, err
	}
	provisional := g.provisionalContext(ext)
	ctx := wire.MustMarshal(&provisional)
	path := &UpdatePath{LeafNode: next, Nodes: make([]UpdatePathNode, len(steps))}
	for i, st := range steps {
		path.Nodes[i].EncryptionKey = keys[i]
		for _, x := range t.resolution(st.copathChild, added, nil) {
			ct, err := s.EncryptWithLabel(t.encryptionKey(x), "UpdatePathNode", ctx, secrets[st.node])
			if err != nil {
				return nil, nil, nil, nil, err
			}
			path.Nodes[i].EncryptedPathSecret = append(path.Nodes[i].EncryptedPathSecret, ct)
		}
	}
	return path, commitSecret, newKeys, secrets, nil
}

// MergePendingCommit moves the group to the epoch of this member's pending
// commit, once the hub accepted it.
func (g *Group) MergePendingCommit() {
	p := g.staged
	if p == nil {
		return
	}
	g.staged = nil
	retired := g.retireEpoch()
	g.tree.commit()
	g.advance(&p.next, p.tag, p.result)
	g.me = p.me
	for x, k := range p.nodeKeys {
		g.nodeKeys[x] = k
	}
	g.updateKeys = nil
	g.installEpoch(p.secrets, p.tag)
	g.keepPast(retired)
}

// DiscardPendingCommit drops this member's pending commit, for instance
// because the hub accepted another commit for the epoch.
func (g *Group) DiscardPendingCommit() {
	if g.staged == nil {
		return
	}
	g.staged = nil
	g.tree.rollback()
	if g.secrets == nil {
		// An external joiner whose commit was refused never became a
		// member: the group has no epoch secrets and takes nothing.
		g.removed = true
	}
}

// processCommit handles another member's commit (RFC 9420 section 12.4.2).
func (g *Group) processCommit(ac *AuthenticatedContent) (*CommitResult, error) {
	if err := g.checkFraming(&ac.Content, ContentCommit); err != nil {
		return nil, err
	}
	key, err := g.commitSignatureKey(&ac.Content)
	if err != nil {
		return nil, err
	}
	if err := ac.VerifySignature(g.suite, key, g.ctxEnc); err != nil {
		return nil, rejectAs(ErrSignature, err)
	}
	res, err := g.resolveCommit(ac, g.now())
	if err != nil {
		return nil, err
	}
	g.tree.begin()
	if err := g.stageCommit(ac, res); err != nil {
		g.tree.rollback()
		return nil, err
	}
	return res, nil
}

func (g *Group) stageCommit(ac *AuthenticatedContent, res *CommitResult) error {
	s := g.suite
	ext, added, err := g.applyProposals(res)
	if err != nil {
		return err
	}
	for _, r := range res.Removed {
		if r.Leaf == g.me {
			// Nothing more can be derived; the group is over for us, and
			// the past epochs' keys go too (Process refuses everything now).
			g.tree.commit()
			g.removed = true
			g.forgetPast()
			return nil
		}
	}
	var commitSecret []byte
	newKeys := keyRing{}
	// If the commit applied this member's Update, its leaf key is the one
	// the Update proposed.
	leafKey := g.tree.encryptionKey(leafNode(g.me))
	if priv, ok := g.updateKeys[string(leafKey)]; ok {
		newKeys[leafNode(g.me)] = hpkeKey{priv, leafKey}
	}
	if path := ac.Content.Commit.Path; path != nil {
		if err := g.applyPath(path, ac.Content.Sender, res, added); err != nil {
			return err
		}
		if commitSecret, err = g.decryptPath(path, res.Committer, ext, added, newKeys); err != nil {
			return err
		}
	}
	if err := g.finishTree(ext, res); err != nil {
		return err
	}
	next, err := g.nextContext(ac, ext)
	if err != nil {
		return err
	}
	nextEnc := wire.MustMarshal(&next)
	psks, err := g.lookupPSKs(res.PSKs)
	if err != nil {
		return rejectAs(ErrInvalidProposal, err)
	}
	pskSecret, err := s.pskSecret(psks)
	if err != nil {
		return err
	}
	initSecret := g.secrets.init
	if res.External {
		if initSecret, err = g.externalInitSecret(res); err != nil {
			return err
		}
	}
	joiner, err := s.joinerSecret(initSecret, commitSecret, nextEnc)
	if err != nil {
		return err
	}
	es, err := s.epochSecretsFromJoiner(joiner, pskSecret, nextEnc)
	if err != nil {
		return err
	}
	if !s.VerifyMAC(es.confirmationKey, next.ConfirmedTranscriptHash, ac.Auth.ConfirmationTag) {
		return rejectf(ErrConfirmation, "the commit's confirmation tag does not match the derived epoch secrets")
	}
	retired := g.retireEpoch()
	g.tree.commit()
	g.advance(&next, ac.Auth.ConfirmationTag, res)
	for x, k := range newKeys {
		g.nodeKeys[x] = k
	}
	g.updateKeys = nil // proposals do not outlive their epoch
	g.installEpoch(es, ac.Auth.ConfirmationTag)
	g.keepPast(retired)
	return nil
}

func (g *Group) externalInitSecret(res *CommitResult) ([]byte, error) {
	priv, _, err := g.suite.externalKeyPair(g.secrets)
	if err != nil {
		return nil, err
	}
	for _, cp := range res.Proposals {
		if cp.Proposal.Type == ProposalExternalInit {
			secret, err := g.suite.ImportExternalInit(priv, cp.Proposal.KEMOutput)
			if err != nil {
				return nil, rejectf(ErrConfirmation, "external_init: %v", err)
			}
			return secret, nil
		}
	}
	return nil, rejectf(ErrInvalidProposal, "external commit without external_init")
}

// decryptPath finds the path secret meant for this member in a merged
// UpdatePath, derives the keys above it, checks them against the path and
// returns the commit secret (RFC 9420 section 7.5).
func (g *Group) decryptPath(path *UpdatePath, committer LeafIndex, ext Extensions, added []LeafIndex, newKeys keyRing) ([]byte, error) {
	s := g.suite
	t := g.tree
	steps := t.filteredDirectPath(committer)
	provisional := g.provisionalContext(ext)
	ctx := wire.MustMarshal(&provisional)
	mine := leafNode(g.me)
	for i, st := range steps {
		if !isAncestor(st.copathChild, mine) {
			continue
		}
		res := t.resolution(st.copathChild, added, nil)
		for j, x := range res {
			k, ok := newKeys[x]
			if !ok {
				k, ok = g.nodeKeys[x]
			}
			if !ok {
				continue
			}
			secret, err := s.DecryptWithLabel(k.priv, "UpdatePathNode", ctx, path.Nodes[i].EncryptedPathSecret[j])
			if err != nil {
				return nil, rejectf(ErrConfirmation, "path secret for node %d: %v", st.node, err)
			}
			return g.derivePathKeys(steps[i:], secret, newKeys)
		}
		return nil, rejectf(ErrConfirmation, "no private key for the resolution of node %d", st.copathChild)
	}
	return nil, rejectf(ErrInvalidPath, "leaf %d is not below any node of the committer's filtered direct path", g.me)
}

// derivePathKeys derives the key pairs of steps from the first step's path
// secret, checks them against the tree, records the private keys and returns
// the next path secret (the commit secret).
func (g *Group) derivePathKeys(steps []pathStep, secret []byte, newKeys keyRing) ([]byte, error) {
	s := g.suite
	for i, st := range steps {
		if i > 0 {
			secret = s.DeriveSecret(secret, "path")
		}
		priv, pub, err := s.DeriveKeyPair(s.DeriveSecret(secret, "node"))
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(pub, g.tree.encryptionKey(st.node)) {
			return nil, rejectf(ErrConfirmation, "the path secret for node %d derives a different public key", st.node)
		}
		newKeys[st.node] = hpkeKey{priv, pub}
	}
	return s.DeriveSecret(secret, "path"), nil
}
