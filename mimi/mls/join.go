package mls

import (
	"bytes"
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// CreateOptions describes a new group and its creator.
type CreateOptions struct {
	GroupOptions
	// GroupID names the group; nil picks a random id of Nh bytes.
	GroupID []byte
	// Extensions are the initial GroupContext extensions.
	Extensions Extensions
	// Credential, Capabilities, Lifetime and LeafExtensions describe the
	// creator's leaf, as in KeyPackageOptions.
	Credential     Credential
	Capabilities   Capabilities
	Lifetime       Lifetime
	LeafExtensions Extensions
}

// CreateGroup starts a one-member group (RFC 9420 section 11).
func CreateGroup(s *Suite, signer *SigningKey, opts CreateOptions) (*Group, error) {
	groupID := opts.GroupID
	if groupID == nil {
		var err error
		if groupID, err = randomBytes(opts.Random, s.nh); err != nil {
			return nil, err
		}
	}
	encPriv, encPub, err := s.GenerateHPKEKey()
	if err != nil {
		return nil, err
	}
	leaf := &LeafNode{
		EncryptionKey: encPub,
		SignatureKey:  signer.PublicKey(),
		Credential:    opts.Credential,
		Capabilities:  completeCapabilities(s, opts.Capabilities, opts.Credential.Type),
		Source:        SourceKeyPackage,
		Lifetime:      opts.Lifetime,
		Extensions:    opts.LeafExtensions,
	}
	if err := leaf.Sign(signer, nil, 0); err != nil {
		return nil, err
	}
	t := newTree(s)
	if _, err := t.addLeaf(leaf); err != nil {
		return nil, err
	}
	if err := t.Validate(groupID, opts.Extensions); err != nil {
		return nil, fmt.Errorf("create group: %w", err)
	}
	g := &Group{
		groupState: groupState{cfg: opts.Config, suite: s, tree: t},
		opts:       opts.GroupOptions,
		signer:     signer,
		nodeKeys:   keyRing{leafNode(0): {encPriv, encPub}},
	}
	g.setContext(&GroupContext{Version: MLS10, CipherSuite: s.id, GroupID: groupID, TreeHash: t.Hash(), ConfirmedTranscriptHash: []byte{}, Extensions: opts.Extensions})
	// A random joiner secret gives a random epoch secret, as section 11 asks.
	joiner, err := randomBytes(opts.Random, s.nh)
	if err != nil {
		return nil, err
	}
	es, err := s.epochSecretsFromJoiner(joiner, nil, g.ctxEnc)
	if err != nil {
		return nil, err
	}
	tag := s.MAC(es.confirmationKey, g.ctx.ConfirmedTranscriptHash)
	g.interim = interimTranscriptHash(s, g.ctx.ConfirmedTranscriptHash, tag)
	g.installEpoch(es, tag)
	return g, nil
}

// makeWelcome encrypts gi for the members a commit adds, with the path
// secret each shares with the committer (RFC 9420 section 12.4.3.1).
func (g *Group) makeWelcome(gi *GroupInfo, es *epochSecrets, res *CommitResult, pathSecrets map[nodeIndex][]byte) (*Message, error) {
	s := g.suite
	key, nonce, err := welcomeKeys(s, es.welcome)
	if err != nil {
		return nil, err
	}
	encGI, err := s.seal(key, nonce, nil, wire.MustMarshal(gi))
	if err != nil {
		return nil, err
	}
	w := &Welcome{CipherSuite: s.id, EncryptedGroupInfo: encGI}
	for _, a := range res.Added {
		gs := GroupSecrets{JoinerSecret: es.joiner, PSKs: res.PSKs}
		if pathSecrets != nil {
			gs.PathSecret = pathSecrets[commonAncestor(leafNode(a.Leaf), leafNode(res.Committer))]
			gs.HasPath = gs.PathSecret != nil
		}
		ct, err := s.EncryptWithLabel(a.KeyPackage.InitKey, "Welcome", encGI, wire.MustMarshal(&gs))
		if err != nil {
			return nil, fmt.Errorf("welcome for leaf %d: %w", a.Leaf, err)
		}
		w.Secrets = append(w.Secrets, EncryptedGroupSecrets{NewMember: a.KeyPackageRef, EncryptedGroupSecrets: ct})
	}
	return NewWelcomeMessage(w), nil
}

func welcomeKeys(s *Suite, welcomeSecret []byte) (key, nonce []byte, err error) {
	if key, err = s.ExpandWithLabel(welcomeSecret, "key", nil, s.nk); err != nil {
		return nil, nil, err
	}
	nonce, err = s.ExpandWithLabel(welcomeSecret, "nonce", nil, s.nn)
	return key, nonce, err
}

// JoinFromWelcome joins a group through a Welcome addressed to the
// KeyPackage of bundle (RFC 9420 section 12.4.3.1). tree is the group's
// ratchet tree in wire form, or nil when the Welcome's GroupInfo carries it.
func JoinFromWelcome(w *Welcome, bundle *KeyPackageBundle, tree []byte, opts GroupOptions) (*Group, error) {
	kp := bundle.KeyPackage
	gs, gi, pskSecret, err := openWelcome(w, kp, bundle.InitKey, opts.PSKs)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	s := mustSuite(kp.CipherSuite)
	st, err := stateFromGroupInfo(gi, tree, opts.Config)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	myLeaf := wire.MustMarshal(&kp.LeafNode)
	me, found := LeafIndex(0), false
	for l := uint32(0); l < st.tree.nLeaves; l++ {
		if x := leafNode(LeafIndex(l)); !st.tree.blank(x) && bytes.Equal(st.tree.nodes.get(x), myLeaf) {
			me, found = LeafIndex(l), true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("join: the tree holds no leaf equal to the KeyPackage's")
	}
	g := &Group{
		groupState: *st,
		opts:       opts,
		me:         me,
		signer:     bundle.SignatureKey,
		nodeKeys:   keyRing{leafNode(me): {bundle.EncryptionKey, kp.LeafNode.EncryptionKey}},
	}
	if gs.HasPath {
		steps := g.tree.filteredDirectPath(gi.Signer)
		lca := commonAncestor(leafNode(me), leafNode(gi.Signer))
		i := 0
		for i < len(steps) && steps[i].node != lca {
			i++
		}
		if i == len(steps) {
			return nil, fmt.Errorf("join: the common ancestor %d is not on the committer's filtered direct path", lca)
		}
		if _, err := g.derivePathKeys(steps[i:], gs.PathSecret, g.nodeKeys); err != nil {
			return nil, fmt.Errorf("join: %w", err)
		}
	}
	es, err := s.epochSecretsFromJoiner(gs.JoinerSecret, pskSecret, g.ctxEnc)
	if err != nil {
		return nil, err
	}
	if !s.VerifyMAC(es.confirmationKey, g.ctx.ConfirmedTranscriptHash, gi.ConfirmationTag) {
		return nil, rejectf(ErrConfirmation, "join: the GroupInfo's confirmation tag does not match the derived secrets")
	}
	g.installEpoch(es, gi.ConfirmationTag)
	return g, nil
}

// openWelcome decrypts the group secrets a Welcome holds for kp and the
// GroupInfo they unlock.
func openWelcome(w *Welcome, kp *KeyPackage, initPriv []byte, store PSKStore) (*GroupSecrets, *GroupInfo, []byte, error) {
	if w.CipherSuite != kp.CipherSuite {
		return nil, nil, nil, fmt.Errorf("the Welcome uses %s, the KeyPackage %s", w.CipherSuite, kp.CipherSuite)
	}
	s, err := kp.CipherSuite.Suite()
	if err != nil {
		return nil, nil, nil, err
	}
	ref, err := kp.Ref()
	if err != nil {
		return nil, nil, nil, err
	}
	egs, ok := w.FindSecrets(ref)
	if !ok {
		return nil, nil, nil, fmt.Errorf("the Welcome has no secrets for KeyPackage %x", ref)
	}
	plain, err := s.DecryptWithLabel(initPriv, "Welcome", w.EncryptedGroupInfo, egs.EncryptedGroupSecrets)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("group secrets: %w", err)
	}
	gs := new(GroupSecrets)
	if err := wire.Unmarshal(plain, gs); err != nil {
		return nil, nil, nil, fmt.Errorf("group secrets: %w", err)
	}
	var psks []PSK
	for _, id := range gs.PSKs {
		secret, ok := lookupStore(store, &id)
		if !ok {
			return nil, nil, nil, fmt.Errorf("PSK %x (type %d) is not available", id.ID, id.Type)
		}
		psks = append(psks, PSK{ID: id, Secret: secret})
	}
	pskSecret, err := s.pskSecret(psks)
	if err != nil {
		return nil, nil, nil, err
	}
	key, nonce, err := welcomeKeys(s, s.welcomeSecret(gs.JoinerSecret, pskSecret))
	if err != nil {
		return nil, nil, nil, err
	}
	giBytes, err := s.open(key, nonce, nil, w.EncryptedGroupInfo)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("GroupInfo does not decrypt: %w", err)
	}
	gi := new(GroupInfo)
	if err := wire.Unmarshal(giBytes, gi); err != nil {
		return nil, nil, nil, fmt.Errorf("GroupInfo: %w", err)
	}
	if gi.GroupContext.CipherSuite != s.id {
		return nil, nil, nil, fmt.Errorf("the GroupInfo uses %s, the KeyPackage %s", gi.GroupContext.CipherSuite, s.id)
	}
	for _, id := range gs.PSKs {
		if id.Type == PSKResumption && id.Usage != UsageApplication && gi.GroupContext.Epoch != 1 {
			return nil, nil, nil, fmt.Errorf("a resumption PSK for reinit or branch requires epoch 1, the group is at %d", gi.GroupContext.Epoch)
		}
	}
	return gs, gi, pskSecret, nil
}

func mustSuite(c CipherSuite) *Suite {
	s, err := c.Suite()
	if err != nil {
		panic(err)
	}
	return s
}

// stateFromGroupInfo builds the public state a GroupInfo describes, after
// validating the tree against it and the GroupInfo's signature.
func stateFromGroupInfo(gi *GroupInfo, tree []byte, cfg Config) (*groupState, error) {
	gc := &gi.GroupContext
	if gc.Version != MLS10 {
		return nil, rejectf(ErrUnsupported, "protocol version %d", gc.Version)
	}
	s, err := gc.CipherSuite.Suite()
	if err != nil {
		return nil, rejectAs(ErrUnsupported, err)
	}
	if tree == nil {
		var ok bool
		if tree, ok = gi.RatchetTreeExtension(); !ok {
			return nil, rejectf(ErrInvalidTree, "no ratchet tree: none given and the GroupInfo has no ratchet_tree extension")
		}
	}
	maxVec := cfg.MaxVector
	if maxVec == 0 {
		maxVec = wire.DefaultMaxVector
	}
	t, err := DecodeTree(s, tree, maxVec)
	if err != nil {
		return nil, rejectAs(ErrInvalidTree, err)
	}
	if err := t.Validate(gc.GroupID, gc.Extensions); err != nil {
		return nil, err
	}
	if !bytes.Equal(t.Hash(), gc.TreeHash) {
		return nil, rejectf(ErrGroupInfoMismatch, "the tree hash %x differs from the GroupInfo's %x", t.Hash(), gc.TreeHash)
	}
	signer, ok := t.Leaf(gi.Signer)
	if !ok {
		return nil, rejectf(ErrGroupInfoMismatch, "signer %d is not a member", gi.Signer)
	}
	if err := gi.VerifySignature(s, signer.SignatureKey); err != nil {
		return nil, rejectAs(ErrSignature, fmt.Errorf("GroupInfo signed by leaf %d: %w", gi.Signer, err))
	}
	st := &groupState{cfg: cfg, suite: s, tree: t}
	st.setContext(gc)
	st.interim = interimTranscriptHash(s, gc.ConfirmedTranscriptHash, gi.ConfirmationTag)
	return st, nil
}

// ExternalJoinOptions describes an external join (RFC 9420 section
// 12.4.3.2).
type ExternalJoinOptions struct {
	GroupOptions
	// Credential, Capabilities and LeafExtensions describe the joiner's leaf.
	Credential     Credential
	Capabilities   Capabilities
	LeafExtensions Extensions
	// Resync removes the joiner's previous leaf in the same commit.
	Resync *LeafIndex
	// PendingSelfRemoves are SelfRemove proposals (PublicMessages) the hub
	// handed out with the GroupInfo; the commit covers them by reference.
	PendingSelfRemoves []*Message
	// PSKs are injected with inline PreSharedKey proposals.
	PSKs []PreSharedKeyID
	// ByValue are further proposals carried by value. RFC 9420 allows none
	// beyond the above; with Commit.SkipListChecks a test can play a
	// hostile joiner that adds them anyway.
	ByValue []*Proposal
	// Commit tunes the commit (its Proposals and References are ignored).
	Commit CommitOptions
}

// JoinExternal creates an external commit that adds signer to the group a
// GroupInfo (with an external_pub extension) describes. tree is the group's
// ratchet tree, or nil when the GroupInfo carries it. The returned group is
// pending until the hub accepts the commit: then call MergePendingCommit.
func JoinExternal(gi *GroupInfo, tree []byte, signer *SigningKey, opts ExternalJoinOptions) (*Group, *CommitBundle, error) {
	st, err := stateFromGroupInfo(gi, tree, opts.Config)
	if err != nil {
		return nil, nil, fmt.Errorf("external join: %w", err)
	}
	s := st.suite
	pub, ok, err := gi.ExternalPub()
	if err != nil {
		return nil, nil, fmt.Errorf("external join: %w", err)
	}
	if !ok {
		return nil, nil, fmt.Errorf("external join: the GroupInfo has no external_pub extension")
	}
	kemOutput, initSecret, err := s.ExportExternalInit(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("external join: %w", err)
	}
	g := &Group{
		groupState: *st,
		opts:       opts.GroupOptions,
		signer:     signer,
		nodeKeys:   keyRing{},
		joinerLeaf: &LeafNode{
			SignatureKey: signer.PublicKey(),
			Credential:   opts.Credential,
			Capabilities: completeCapabilities(s, opts.Capabilities, opts.Credential.Type),
			Extensions:   opts.LeafExtensions,
		},
	}
	commit := &Commit{Proposals: []ProposalOrRef{{Proposal: &Proposal{Type: ProposalExternalInit, KEMOutput: kemOutput}}}}
	if opts.Resync != nil {
		commit.Proposals = append(commit.Proposals, ProposalOrRef{Proposal: RemoveProposal(*opts.Resync)})
	}
	for i := range opts.PSKs {
		commit.Proposals = append(commit.Proposals, ProposalOrRef{Proposal: PSKProposal(&opts.PSKs[i])})
	}
	for _, p := range opts.ByValue {
		commit.Proposals = append(commit.Proposals, ProposalOrRef{Proposal: p})
	}
	for i, m := range opts.PendingSelfRemoves {
		ac, err := g.publicContent(m, ContentProposal)
		if err != nil {
			return nil, nil, fmt.Errorf("external join: pending proposal %d: %w", i, err)
		}
		if ac.Content.Proposal.Type != ProposalSelfRemove {
			return nil, nil, fmt.Errorf("external join: pending proposal %d is %s, not self_remove", i, ac.Content.Proposal.Type)
		}
		res, err := g.receiveProposal(ac, g.now())
		if err != nil {
			return nil, nil, fmt.Errorf("external join: pending proposal %d: %w", i, err)
		}
		g.addPending(res, ac, wire.MustMarshal(m))
		commit.Proposals = append(commit.Proposals, ProposalOrRef{Reference: res.Ref})
	}
	bundle, err := g.createCommit(commit, Sender{Type: SenderNewMemberCommit}, initSecret, opts.Commit)
	if err != nil {
		return nil, nil, fmt.Errorf("external join: %w", err)
	}
	return g, bundle, nil
}
