package mls

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// A member's saved state (Group.EncodeTLS), in the TLS presentation language
// of RFC 8446 with MLS's variable-length vectors:
//
//	struct {
//	    uint8 version = 3;
//	    GroupContext group_context;
//	    opaque interim_transcript_hash<V>;
//	    opaque ratchet_tree<V>;            // Tree.EncodeTLS: optional<Node> nodes<V>
//	    SavedProposal pending<V>;          // arrival order
//	    bool closed;
//	    uint32 my_leaf;
//	    opaque signature_private_key<V>;   // SigningKey.Bytes
//	    opaque epoch_secrets[11]<V>;       // joiner, welcome, sender_data, encryption,
//	                                       // exporter, external, confirmation_key,
//	                                       // membership_key, resumption_psk,
//	                                       // epoch_authenticator, init_secret
//	    opaque confirmation_tag<V>;
//	    struct { uint32 node; opaque priv<V>; opaque pub<V>; } node_keys<V>;  // by node
//	    struct { opaque pub<V>; opaque priv<V>; } update_keys<V>;            // by pub, bytewise
//	    struct { uint64 epoch; opaque psk<V>; } resumption_psks<V>;         // by epoch
//	    SecretTree secret_tree;
//	    bool removed;
//	    PastEpoch past_epochs<V>;          // oldest first, consecutive, the last
//	                                       // one just before group_context.epoch;
//	                                       // empty for a removed member
//	    uint64 held_epochs<V>;             // increasing, each a past epoch's
//	} MemberState;
//
//	struct {
//	    GroupContext group_context;        // the past epoch's
//	    opaque sender_data_secret<V>;
//	    SecretTree secret_tree;            // application ratchets only: a
//	                                       // ratchet is Ratchet application
//	    struct {
//	        uint32 leaf;                   // below the epoch's width
//	        optional<LeafNode> node;       // the leaf in this epoch, absent if blank
//	    } changed_leaves<V>;               // by leaf: the leaves that differ in
//	                                       // the next epoch
//	} PastEpoch;
//
//	struct {
//	    opaque message<V>;                 // the MLSMessage as received
//	    optional<opaque content<V>>;       // its AuthenticatedContent, present
//	                                       // iff the message is a PrivateMessage
//	} SavedProposal;
//
//	struct {
//	    uint32 n_leaves;
//	    struct { uint32 node; opaque secret<V>; } node_secrets<V>;         // by node
//	    struct { uint32 leaf; Ratchet handshake; Ratchet application; } ratchets<V>; // by leaf
//	} SecretTree;                                                          // (in PastEpoch, no handshake)
//
//	struct {
//	    uint32 next_generation;
//	    opaque secret<V>;
//	    struct { uint32 generation; opaque key<V>; opaque nonce<V>; } skipped<V>; // by generation
//	} Ratchet;
//
// Every list is in strictly increasing key order, and a past epoch's
// changed_leaves lists exactly the leaves that differ in the next epoch, so
// the encoding is canonical: RestoreGroup refuses anything else.
//
// Version 2 is version 3 without held_epochs, and version 1 is version 2
// without past_epochs; RestoreGroup still reads both, as a group that holds
// no epoch (and, from version 1, keeps no past epoch) yet.

// memberStateVersion is the format Group.EncodeTLS writes. A state of an
// unknown format is refused rather than guessed at: misreading one field
// would leave a member with secrets that silently disagree with its group.
const memberStateVersion = 3

// Earlier formats RestoreGroup still reads.
const (
	// memberStateV1 is the format before past epochs were kept.
	memberStateV1 = 1
	// memberStateV2 is the format before past epochs were held.
	memberStateV2 = 2
)

// EncodeTLS writes everything a member needs to continue: the public state
// (as Follower.EncodeTLS does: GroupContext, interim transcript hash, tree,
// pending proposal messages, closed flag), its leaf index, its signature
// private key, the epoch secrets, the current confirmation tag, its node key
// pairs, pending Update keys, kept resumption PSKs, the secret tree's state
// (unexpanded node secrets and every leaf's handshake/application ratchet
// position, secret and skipped keys), the removed flag, the past epochs
// the group keeps for late application messages (see GroupOptions.PastEpochs)
// and those of them it holds (HoldEpoch).
// It is secret material: callers store it encrypted or in a protected file.
//
// The encoding is deterministic (every map is written in key order), so a
// restored group encodes to the same bytes. A group whose own commit is
// pending cannot be saved: the commit lives in an open tree transaction and
// in secrets of an epoch the hub has not confirmed, so EncodeTLS fails the
// writer with an error wrapping ErrPendingCommit; merge or discard the
// commit first.
//
// Save the state again after every message the group processes or sends:
// a state restored twice, or an old state restored, would send with
// generations it already used, which breaks the confidentiality of those
// messages.
func (g *Group) EncodeTLS(w *wire.Writer) {
	switch {
	case g.staged != nil:
		w.Fail(fmt.Errorf("save group: %w: merge or discard it before saving", ErrPendingCommit))
		return
	case g.tree == nil || g.secrets == nil || g.keys == nil || g.signer == nil:
		// An external joiner whose commit was discarded has no epoch of its
		// own to continue from.
		w.Fail(errors.New("save group: the group has no epoch secrets (an external join that was never merged?)"))
		return
	}
	w.Uint8(memberStateVersion)
	w.Encode(&g.ctx)
	w.Opaque(g.interim)
	w.Vector(func(w *wire.Writer) { g.tree.EncodeTLS(w) })
	w.Vector(func(w *wire.Writer) {
		for _, p := range g.pending {
			w.Opaque(p.message)
			// A proposal that came as a PrivateMessage cannot be decrypted
			// again (its key is spent), so its content is kept beside it.
			w.Optional(p.content.WireFormat == WirePrivateMessage, func(w *wire.Writer) {
				w.Vector(func(w *wire.Writer) { w.Encode(p.content) })
			})
		}
	})
	w.Bool(g.closed)

	w.Uint32(uint32(g.me))
	w.Opaque(g.signer.Bytes())
	g.secrets.encodeState(w)
	w.Opaque(g.confirmationTag)
	w.Vector(func(w *wire.Writer) {
		for _, x := range slices.Sorted(maps.Keys(g.nodeKeys)) {
			k := g.nodeKeys[x]
			w.Uint32(uint32(x))
			w.Opaque(k.priv)
			w.Opaque(k.pub)
		}
	})
	w.Vector(func(w *wire.Writer) {
		// Public keys are byte strings; Go orders strings bytewise.
		for _, pub := range slices.Sorted(maps.Keys(g.updateKeys)) {
			w.Opaque([]byte(pub))
			w.Opaque(g.updateKeys[pub])
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, epoch := range slices.Sorted(maps.Keys(g.resumption)) {
			w.Uint64(epoch)
			w.Opaque(g.resumption[epoch])
		}
	})
	g.keys.tree.encodeState(w)
	w.Bool(g.removed)
	w.Vector(func(w *wire.Writer) {
		for _, p := range g.past {
			p.encodeState(w)
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, e := range g.held {
			w.Uint64(e)
		}
	})
}

// encodeState writes a past epoch: its GroupContext, sender data secret,
// application-only secret tree and changed leaves.
func (p *pastEpoch) encodeState(w *wire.Writer) {
	w.Raw(p.ctxEnc)
	w.Opaque(p.keys.senderData)
	p.keys.tree.encodeState(w)
	w.Vector(func(w *wire.Writer) {
		for _, l := range slices.Sorted(maps.Keys(p.leaves)) {
			enc := p.leaves[l]
			w.Uint32(uint32(l))
			w.Optional(enc != nil, func(w *wire.Writer) { w.Raw(enc) })
		}
	})
}

// RestoreGroup rebuilds a Group from EncodeTLS output. opts supplies what is
// not state (PSK store, randomness, clock, Config, how many past epochs to
// keep). A group with a pending (staged) commit cannot be saved: EncodeTLS
// fails (w.Fail) with a clear error; merge or discard first.
//
// A state of a previous format restores, and is saved in the current one:
// version 2 (from before epochs were held) as a group holding none, version
// 1 (from before past epochs were kept) as a group keeping none yet. A state
// keeping more past epochs than opts keeps loses the oldest that it does not
// hold (see HoldEpoch; with NoPastEpochs, all of them).
//
// The state is decoded strictly (a restored group re-encodes to exactly the
// input, format and trimmed past epochs aside) and checked for consistency,
// so that a damaged file is refused rather than restored into a member that
// fails later: every secret has the suite's length, the tree hash and
// confirmation tag match the GroupContext and the epoch secrets, the member's
// leaf holds its signature key, every private key matches its public key in
// the tree, and the secret tree accounts for every leaf exactly once. Leaf
// signatures in the tree and the signatures of pending proposals are not
// re-verified (the state comes from this member's own EncodeTLS, and a large
// group would pay one verification per member), nor are the leaves of past
// epochs (their trees are not kept, so nothing hashes them). These checks
// catch damage, not tampering: most secrets are random bytes nothing can
// check, so a changed secret restores into a member that no longer agrees
// with its group. Authenticated encryption of the saved state is what
// guarantees its integrity.
func RestoreGroup(state []byte, opts GroupOptions) (*Group, error) {
	g, err := decodeMemberState(state, opts)
	if err != nil {
		return nil, fmt.Errorf("restore group: %w", err)
	}
	if err := g.checkRestored(); err != nil {
		return nil, fmt.Errorf("restore group: %w", err)
	}
	g.trimPast()
	return g, nil
}

// decodeMemberState reads the fields EncodeTLS wrote, checking each on its
// own (lengths, order, ranges); checkRestored checks them against each
// other.
func decodeMemberState(state []byte, opts GroupOptions) (*Group, error) {
	r := wire.NewReader(state)
	var version uint8
	r.Uint8(&version)
	if r.OK() && version != memberStateVersion && version != memberStateV2 && version != memberStateV1 {
		return nil, fmt.Errorf("state format %d, want %d (or %d, %d)", version, memberStateVersion, memberStateV2, memberStateV1)
	}
	g := &Group{groupState: groupState{cfg: opts.Config}, opts: opts}
	r.Decode(&g.ctx)
	if err := r.Err(); err != nil {
		return nil, err
	}
	// Every length below depends on the suite.
	s, err := g.ctx.CipherSuite.Suite()
	if err != nil {
		return nil, err
	}
	if g.ctx.Version != MLS10 {
		return nil, fmt.Errorf("protocol version %d", g.ctx.Version)
	}
	g.suite = s
	g.interim = readSized(r, s.nh, "interim transcript hash")
	var tree, sigKey []byte
	r.Opaque(&tree)
	type savedProposal struct {
		message, content []byte
		private          bool
	}
	var pending []savedProposal
	r.VectorEach(func(r *wire.Reader) {
		var p savedProposal
		r.Opaque(&p.message)
		p.private = r.Optional(func(r *wire.Reader) { r.Opaque(&p.content) })
		pending = append(pending, p)
	})
	r.Bool(&g.closed)

	var me uint32
	r.Uint32(&me)
	g.me = LeafIndex(me)
	r.Opaque(&sigKey)
	g.secrets = decodeEpochSecrets(r, s)
	g.confirmationTag = readSized(r, s.nh, "confirmation tag")
	g.nodeKeys = keyRing{}
	var prevNode uint32
	r.VectorEach(func(r *wire.Reader) {
		var x uint32
		r.Uint32(&x)
		var priv, pub []byte
		r.Opaque(&priv)
		r.Opaque(&pub)
		if !r.OK() {
			return
		}
		if len(g.nodeKeys) > 0 && x <= prevNode {
			r.Failf("node key %d follows node key %d: not in increasing order", x, prevNode)
			return
		}
		prevNode = x
		g.nodeKeys[nodeIndex(x)] = hpkeKey{priv: bytes.Clone(priv), pub: bytes.Clone(pub)}
	})
	var prevPub []byte
	r.VectorEach(func(r *wire.Reader) {
		var pub, priv []byte
		r.Opaque(&pub)
		r.Opaque(&priv)
		if !r.OK() {
			return
		}
		if g.updateKeys != nil && bytes.Compare(pub, prevPub) <= 0 {
			r.Failf("update keys not in increasing order of public key")
			return
		}
		prevPub = pub
		if g.updateKeys == nil {
			g.updateKeys = map[string][]byte{}
		}
		g.updateKeys[string(pub)] = bytes.Clone(priv)
	})
	g.resumption = map[uint64][]byte{}
	var prevEpoch uint64
	r.VectorEach(func(r *wire.Reader) {
		var epoch uint64
		r.Uint64(&epoch)
		psk := readSized(r, s.nh, "resumption PSK")
		if !r.OK() {
			return
		}
		if len(g.resumption) > 0 && epoch <= prevEpoch {
			r.Failf("resumption PSK of epoch %d follows epoch %d: not in increasing order", epoch, prevEpoch)
			return
		}
		prevEpoch = epoch
		g.resumption[epoch] = psk
	})
	st := decodeSecretTree(r, s, false)
	r.Bool(&g.removed)
	if version != memberStateV1 {
		r.VectorEach(func(r *wire.Reader) {
			p := decodePastEpoch(r, s)
			switch {
			case !r.OK():
			case len(g.past) == MaxPastEpochs:
				r.Failf("more than %d past epochs", MaxPastEpochs)
			default:
				g.past = append(g.past, p)
			}
		})
	}
	if version == memberStateVersion {
		r.VectorEach(func(r *wire.Reader) {
			var e uint64
			r.Uint64(&e)
			switch {
			case !r.OK():
			case len(g.held) > 0 && e <= g.held[len(g.held)-1]:
				r.Failf("held epoch %d follows held epoch %d: not in increasing order", e, g.held[len(g.held)-1])
			case len(g.held) == MaxPastEpochs:
				r.Failf("more than %d held epochs", MaxPastEpochs)
			default:
				g.held = append(g.held, e)
			}
		})
	}
	if err := r.Finish(); err != nil {
		return nil, err
	}

	g.setContext(&g.ctx)
	if g.tree, err = DecodeTree(s, tree, wire.DefaultMaxVector); err != nil {
		return nil, err
	}
	for i, p := range pending {
		var pp *pendingProposal
		if !p.private {
			pp, err = publicPending(s, p.message)
		} else {
			pp, err = privatePending(s, p.message, p.content)
		}
		if err != nil {
			return nil, fmt.Errorf("pending proposal %d %w", i, err)
		}
		g.pending = append(g.pending, pp)
	}
	if g.signer, err = s.ParseSigningKey(sigKey); err != nil {
		return nil, fmt.Errorf("signature key: %w", err)
	}
	// ParseSigningKey tolerates shortened ECDSA scalars; a saved state has
	// the canonical form, and anything else would not re-encode the same.
	if !bytes.Equal(g.signer.Bytes(), sigKey) {
		return nil, errors.New("signature key is not in canonical form")
	}
	g.keys = &messageKeys{
		suite:      s,
		epoch:      g.ctx.Epoch,
		senderData: g.secrets.senderData,
		tree:       st,
		membership: g.secrets.membershipKey,
	}
	return g, nil
}

// checkRestored checks a decoded state's fields against each other.
func (g *Group) checkRestored() error {
	s := g.suite
	// The confirmation tag binds the epoch secrets to the GroupContext, and
	// the interim transcript hash follows from both.
	if !s.VerifyMAC(g.secrets.confirmationKey, g.ctx.ConfirmedTranscriptHash, g.confirmationTag) {
		return errors.New("the confirmation tag does not match the epoch secrets and the GroupContext")
	}
	if !bytes.Equal(g.interim, interimTranscriptHash(s, g.ctx.ConfirmedTranscriptHash, g.confirmationTag)) {
		return errors.New("the interim transcript hash does not follow from the GroupContext and the confirmation tag")
	}
	if len(g.resumption) > resumptionPSKsKept {
		return fmt.Errorf("%d resumption PSKs, at most %d are kept", len(g.resumption), resumptionPSKsKept)
	}
	for epoch := range g.resumption {
		if epoch > g.ctx.Epoch {
			return fmt.Errorf("resumption PSK of epoch %d, after the current epoch %d", epoch, g.ctx.Epoch)
		}
	}
	for x, k := range g.nodeKeys {
		if err := checkKeyPair(s, k); err != nil {
			return fmt.Errorf("key pair of node %d: %w", x, err)
		}
	}
	for pub, priv := range g.updateKeys {
		if err := checkKeyPair(s, hpkeKey{priv: priv, pub: []byte(pub)}); err != nil {
			return fmt.Errorf("key pair of a pending update: %w", err)
		}
	}
	st := g.keys.tree
	if err := st.checkCoverage(); err != nil {
		return fmt.Errorf("secret tree: %w", err)
	}
	if err := g.checkPast(); err != nil {
		return err
	}
	if g.removed {
		// The commit that removed this member changed the tree but installed
		// no epoch for it: the tree no longer matches the GroupContext, the
		// node keys or the secret tree. A removed group only answers
		// questions about its last epoch, which the checks above cover.
		return nil
	}
	return g.checkMember()
}

// checkMember checks what holds for a member still in the group: the tree is
// the GroupContext's, the member's leaf is its own, its private keys are for
// nodes of the tree, the secret tree spans the tree, and the pending
// proposals come from members of this epoch.
func (g *Group) checkMember() error {
	t := g.tree
	if !bytes.Equal(t.Hash(), g.ctx.TreeHash) {
		return errors.New("the tree's hash is not the GroupContext's")
	}
	me := leafNode(g.me)
	if uint32(g.me) >= t.nLeaves || t.blank(me) {
		return fmt.Errorf("this member's leaf %d is not in the tree", g.me)
	}
	if !bytes.Equal(t.signatureKey(me), g.signer.PublicKey()) {
		return fmt.Errorf("leaf %d holds another signature key than this member's", g.me)
	}
	if _, ok := g.nodeKeys[me]; !ok {
		return fmt.Errorf("no private key for this member's leaf %d", g.me)
	}
	for x, k := range g.nodeKeys {
		if uint32(x) >= nodeWidth(t.nLeaves) || t.blank(x) || !bytes.Equal(k.pub, t.encryptionKey(x)) {
			return fmt.Errorf("private key for node %d, which does not hold its public key", x)
		}
	}
	if g.keys.tree.nLeaves != t.nLeaves {
		return fmt.Errorf("the secret tree has %d leaves, the tree %d", g.keys.tree.nLeaves, t.nLeaves)
	}
	for i, p := range g.pending {
		c := &p.content.Content
		if !bytes.Equal(c.GroupID, g.ctx.GroupID) || c.Epoch != g.ctx.Epoch {
			return fmt.Errorf("pending proposal %d is not for this group's epoch %d", i, g.ctx.Epoch)
		}
		if c.Sender.Type == SenderMember {
			if _, err := g.memberKey(c.Sender.Index); err != nil {
				return fmt.Errorf("pending proposal %d: %w", i, err)
			}
		}
		if c.Proposal.Type == ProposalRemove {
			if _, ok := t.Leaf(c.Proposal.Removed); !ok {
				return fmt.Errorf("pending proposal %d removes leaf %d, which is not a member", i, c.Proposal.Removed)
			}
		}
	}
	return nil
}

// checkPast checks the past epochs against the current one and each
// other: consecutive epochs of this group ending just before the current
// one, secret trees that account for every leaf, and leaf changes that are
// inside their epoch's tree and are changes; held epochs among them.
func (g *Group) checkPast() error {
	n := uint64(len(g.past))
	for _, e := range g.held {
		if n == 0 || e < g.past[0].epoch || e >= g.ctx.Epoch {
			return fmt.Errorf("epoch %d is held but not kept (the group is at epoch %d and keeps %d past epochs)", e, g.ctx.Epoch, n)
		}
	}
	if n == 0 {
		return nil
	}
	if g.removed {
		return errors.New("a removed member keeps past epochs")
	}
	if g.ctx.Epoch < n {
		return fmt.Errorf("%d past epochs before epoch %d", n, g.ctx.Epoch)
	}
	for i, p := range g.past {
		ctx := new(GroupContext)
		if err := wire.Unmarshal(p.ctxEnc, ctx); err != nil {
			return fmt.Errorf("past epoch %d: %w", i, err)
		}
		want := g.ctx.Epoch - n + uint64(i)
		switch {
		case ctx.Version != g.ctx.Version || ctx.CipherSuite != g.ctx.CipherSuite || !bytes.Equal(ctx.GroupID, g.ctx.GroupID):
			return fmt.Errorf("past epoch %d is of another group, version or suite", ctx.Epoch)
		case ctx.Epoch != want:
			return fmt.Errorf("past epoch %d where epoch %d belongs (the group is at epoch %d)", ctx.Epoch, want, g.ctx.Epoch)
		}
		if err := p.keys.tree.checkCoverage(); err != nil {
			return fmt.Errorf("secret tree of past epoch %d: %w", p.epoch, err)
		}
		for l, enc := range p.leaves {
			if uint32(l) >= p.keys.tree.nLeaves {
				return fmt.Errorf("past epoch %d changes leaf %d, outside its %d-leaf tree", p.epoch, l, p.keys.tree.nLeaves)
			}
			next, _ := g.leafIn(i+1, l)
			if bytes.Equal(enc, next) && (enc == nil) == (next == nil) {
				return fmt.Errorf("past epoch %d lists leaf %d as changed, but the next epoch has the same leaf", p.epoch, l)
			}
		}
	}
	return nil
}

// checkKeyPair checks that an HPKE private key is the suite's and belongs to
// the public key stored with it.
func checkKeyPair(s *Suite, k hpkeKey) error {
	pub, err := s.HPKEPublicKey(k.priv)
	if err != nil {
		return err
	}
	if !bytes.Equal(pub, k.pub) {
		return errors.New("the private key does not match the public key")
	}
	return nil
}

// readSized reads opaque<V> that must be n bytes long and copies it, so the
// group does not alias the caller's buffer.
func readSized(r *wire.Reader, n int, what string) []byte {
	var b []byte
	r.Opaque(&b)
	if !r.OK() {
		return nil
	}
	if len(b) != n {
		r.Failf("%s is %d bytes, want %d", what, len(b), n)
		return nil
	}
	return bytes.Clone(b)
}

// encodeState writes the epoch secrets in field order.
func (es *epochSecrets) encodeState(w *wire.Writer) {
	for _, secret := range es.fields() {
		w.Opaque(*secret)
	}
}

// fields lists the secrets in their encoding order.
func (es *epochSecrets) fields() []*[]byte {
	return []*[]byte{
		&es.joiner, &es.welcome, &es.senderData, &es.encryption, &es.exporter, &es.external,
		&es.confirmationKey, &es.membershipKey, &es.resumptionPSK, &es.epochAuthenticator, &es.init,
	}
}

func decodeEpochSecrets(r *wire.Reader, s *Suite) *epochSecrets {
	es := new(epochSecrets)
	for _, secret := range es.fields() {
		*secret = readSized(r, s.nh, "epoch secret")
	}
	return es
}

// encodeState writes the secret tree: its width, the node secrets not yet
// expanded, and the ratchets of every leaf that has used its secrets.
func (t *secretTree) encodeState(w *wire.Writer) {
	w.Uint32(t.nLeaves)
	w.Vector(func(w *wire.Writer) {
		for _, x := range slices.Sorted(maps.Keys(t.nodes)) {
			w.Uint32(uint32(x))
			w.Opaque(t.nodes[x])
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, l := range slices.Sorted(maps.Keys(t.ratchets)) {
			w.Uint32(uint32(l))
			pair := t.ratchets[l]
			if !t.applicationOnly {
				pair[handshakeRatchet].encodeState(w)
			}
			pair[applicationRatchet].encodeState(w)
		}
	})
}

// decodeSecretTree reads what encodeState wrote; applicationOnly says the
// tree is a past epoch's, whose ratchets are application ratchets only.
func decodeSecretTree(r *wire.Reader, s *Suite, applicationOnly bool) *secretTree {
	t := &secretTree{suite: s, nodes: map[nodeIndex][]byte{}, ratchets: map[LeafIndex]*[2]*hashRatchet{}, applicationOnly: applicationOnly}
	r.Uint32(&t.nLeaves)
	if r.OK() && (t.nLeaves == 0 || t.nLeaves&(t.nLeaves-1) != 0) {
		r.Failf("secret tree width %d is not a power of two", t.nLeaves)
	}
	var prevNode, prevLeaf uint32
	r.VectorEach(func(r *wire.Reader) {
		var x uint32
		r.Uint32(&x)
		secret := readSized(r, s.nh, "secret tree node secret")
		switch {
		case !r.OK():
		case x >= nodeWidth(t.nLeaves):
			r.Failf("secret tree node %d is outside a tree of %d leaves", x, t.nLeaves)
		case len(t.nodes) > 0 && x <= prevNode:
			r.Failf("secret tree node %d follows node %d: not in increasing order", x, prevNode)
		default:
			prevNode = x
			t.nodes[nodeIndex(x)] = secret
		}
	})
	r.VectorEach(func(r *wire.Reader) {
		var l uint32
		r.Uint32(&l)
		var pair [2]*hashRatchet
		if !applicationOnly {
			pair[handshakeRatchet] = decodeRatchet(r, s)
		}
		pair[applicationRatchet] = decodeRatchet(r, s)
		switch {
		case !r.OK():
		case l >= t.nLeaves:
			r.Failf("ratchets of leaf %d, outside a tree of %d leaves", l, t.nLeaves)
		case len(t.ratchets) > 0 && l <= prevLeaf:
			r.Failf("ratchets of leaf %d follow leaf %d: not in increasing order", l, prevLeaf)
		default:
			prevLeaf = l
			t.ratchets[LeafIndex(l)] = &pair
		}
	})
	return t
}

// decodePastEpoch reads what pastEpoch.encodeState wrote, checking each
// field on its own; checkPast checks them against the group.
func decodePastEpoch(r *wire.Reader, s *Suite) *pastEpoch {
	p := &pastEpoch{leaves: map[LeafIndex][]byte{}}
	var ctx GroupContext
	p.ctxEnc = bytes.Clone(r.Capture(func(r *wire.Reader) { ctx.DecodeTLS(r) }))
	p.epoch = ctx.Epoch
	senderData := readSized(r, s.nh, "past sender data secret")
	st := decodeSecretTree(r, s, true)
	p.keys = &messageKeys{suite: s, epoch: p.epoch, senderData: senderData, tree: st}
	var prev uint32
	r.VectorEach(func(r *wire.Reader) {
		var l uint32
		r.Uint32(&l)
		var enc []byte
		r.Optional(func(r *wire.Reader) {
			// Copy, so the group does not pin the caller's buffer.
			enc = bytes.Clone(r.Capture(func(r *wire.Reader) { new(LeafNode).DecodeTLS(r) }))
		})
		switch {
		case !r.OK():
		case len(p.leaves) > 0 && l <= prev:
			r.Failf("changed leaf %d follows leaf %d: not in increasing order", l, prev)
		default:
			prev = l
			p.leaves[LeafIndex(l)] = enc
		}
	})
	return p
}

// encodeState writes the ratchet's position: the next generation, its
// secret, and the keys kept for skipped generations.
func (h *hashRatchet) encodeState(w *wire.Writer) {
	w.Uint32(h.next)
	w.Opaque(h.secret)
	w.Vector(func(w *wire.Writer) {
		for _, gen := range slices.Sorted(maps.Keys(h.skipped)) {
			kn := h.skipped[gen]
			w.Uint32(gen)
			w.Opaque(kn.key)
			w.Opaque(kn.nonce)
		}
	})
}

func decodeRatchet(r *wire.Reader, s *Suite) *hashRatchet {
	h := &hashRatchet{suite: s, skipped: map[uint32]keyAndNonce{}}
	r.Uint32(&h.next)
	h.secret = readSized(r, s.nh, "ratchet secret")
	var prev uint32
	r.VectorEach(func(r *wire.Reader) {
		var gen uint32
		r.Uint32(&gen)
		key := readSized(r, s.nk, "skipped key")
		nonce := readSized(r, s.nn, "skipped nonce")
		switch {
		case !r.OK():
		case gen >= h.next:
			r.Failf("skipped generation %d is not before the next generation %d", gen, h.next)
		case len(h.skipped) > 0 && gen <= prev:
			r.Failf("skipped generation %d follows %d: not in increasing order", gen, prev)
		case len(h.skipped) == maxSkippedKeys:
			r.Failf("more than %d skipped keys", maxSkippedKeys)
		default:
			prev = gen
			h.skipped[gen] = keyAndNonce{key: key, nonce: nonce}
		}
	})
	return h
}

// checkCoverage checks that every leaf's secrets are held exactly once:
// under one stored node secret, or as the leaf's ratchets. Expanding a node
// replaces it by its children and a leaf's first message replaces its
// secret by its ratchets, so a tree this package built always has this
// shape. A gap would leave a sender undecryptable; an overlap would derive a
// leaf's ratchets afresh and reuse generations it already used.
func (t *secretTree) checkCoverage() error {
	type span struct{ lo, hi uint32 }
	spans := make([]span, 0, len(t.nodes)+len(t.ratchets))
	for x := range t.nodes {
		lo, hi := leafSpan(x)
		spans = append(spans, span{uint32(lo), uint32(hi)})
	}
	for l := range t.ratchets {
		spans = append(spans, span{uint32(l), uint32(l)})
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	next := uint32(0) // the first leaf not yet accounted for
	for _, sp := range spans {
		switch {
		case sp.lo < next:
			return fmt.Errorf("the secrets of leaf %d are held twice", sp.lo)
		case sp.lo > next:
			return fmt.Errorf("the secrets of leaf %d are missing", next)
		}
		next = sp.hi + 1
	}
	if next != t.nLeaves {
		return fmt.Errorf("the secrets of leaf %d are missing", next)
	}
	return nil
}

// restorePending rebuilds pending proposals from the PublicMessages they
// came in (a Follower's snapshot holds nothing else). References, senders and
// contents follow from the messages, so they are recomputed rather than
// stored.
func restorePending(s *Suite, raw [][]byte) ([]*pendingProposal, error) {
	var out []*pendingProposal
	for i, m := range raw {
		p, err := publicPending(s, m)
		if err != nil {
			return nil, fmt.Errorf("pending proposal %d %w", i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// publicPending rebuilds a pending proposal from its PublicMessage (copied,
// so it does not pin the caller's buffer).
func publicPending(s *Suite, raw []byte) (*pendingProposal, error) {
	enc := bytes.Clone(raw)
	m, err := DecodeMessage(enc)
	if err != nil || m.Public == nil || m.Public.Content.Proposal == nil {
		return nil, fmt.Errorf("does not decode as a proposal: %v", err)
	}
	return newPendingProposal(s, m.Public.Authenticated(), enc), nil
}

// privatePending rebuilds a pending proposal that came as a PrivateMessage
// from the message and the AuthenticatedContent decrypted from it.
func privatePending(s *Suite, raw, content []byte) (*pendingProposal, error) {
	enc := bytes.Clone(raw)
	m, err := DecodeMessage(enc)
	if err != nil || m.Private == nil || m.Private.ContentType != ContentProposal {
		return nil, fmt.Errorf("does not decode as a private proposal: %v", err)
	}
	ac := new(AuthenticatedContent)
	if err := wire.Unmarshal(bytes.Clone(content), ac); err != nil {
		return nil, fmt.Errorf("has content that does not decode: %w", err)
	}
	c, pm := &ac.Content, m.Private
	switch {
	case ac.WireFormat != WirePrivateMessage || c.ContentType != ContentProposal || c.Proposal == nil:
		return nil, errors.New("has content that is not a proposal sent as a PrivateMessage")
	case c.Sender.Type != SenderMember:
		return nil, fmt.Errorf("has content from a %s sender; only members send PrivateMessages", c.Sender.Type)
	case !bytes.Equal(c.GroupID, pm.GroupID) || c.Epoch != pm.Epoch || !bytes.Equal(c.AuthenticatedData, pm.AuthenticatedData):
		return nil, errors.New("has content that does not match its message's header")
	}
	return newPendingProposal(s, ac, enc), nil
}

// newPendingProposal records ac, received as message, with its reference.
func newPendingProposal(s *Suite, ac *AuthenticatedContent, message []byte) *pendingProposal {
	return &pendingProposal{
		ref:     s.RefHash("MLS 1.0 Proposal Reference", wire.MustMarshal(ac)),
		sender:  ac.Content.Sender,
		message: message,
		content: ac,
	}
}
