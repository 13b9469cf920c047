package mls

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// ProposalTypeInfo describes a proposal type this package does not define,
// as RFC 9420 section 17.4 requires every proposal type to say.
type ProposalTypeInfo struct {
	// PathRequired: a commit covering the proposal must carry an UpdatePath.
	PathRequired bool
	// External: senders outside the group (external and new_member_proposal)
	// may send it.
	External bool
}

// Config tunes how a Follower or a Group processes handshake messages.
type Config struct {
	// CustomProposals describes the non-default proposal types the
	// application uses. Types missing here are accepted from members only and
	// do not require a path.
	CustomProposals map[ProposalType]ProposalTypeInfo
	// MaxVector bounds every vector when decoding the initial ratchet tree;
	// zero means wire.DefaultMaxVector.
	MaxVector int
}

func (c *Config) proposalInfo(t ProposalType) ProposalTypeInfo {
	switch t {
	case ProposalAdd, ProposalPSK, ProposalReInit:
		return ProposalTypeInfo{PathRequired: false, External: true}
	case ProposalUpdate, ProposalExternalInit:
		return ProposalTypeInfo{PathRequired: true}
	case ProposalRemove, ProposalGroupContextExtensions:
		return ProposalTypeInfo{PathRequired: true, External: true}
	case ProposalSelfRemove:
		return ProposalTypeInfo{PathRequired: true}
	}
	return c.CustomProposals[t]
}

// groupState is the public state of a group in one epoch, and the logic to
// validate and apply handshake messages to it. Follower (the hub) and Group
// (a member) both embed it: a member does everything a hub does and then
// the parts that need secrets.
type groupState struct {
	cfg     Config
	suite   *Suite
	ctx     GroupContext
	ctxEnc  []byte // encoded ctx, for FramedContentTBS
	interim []byte
	tree    *Tree
	pending []*pendingProposal
	closed  bool // a ReInit was committed
	// memo, set only while ProcessCommitVerified runs, is the suite whose
	// signature checks skip what the caller's record covers (verifier).
	memo *Suite
}

type pendingProposal struct {
	ref     []byte
	sender  Sender
	message []byte // the PublicMessage as received, for snapshots
	content *AuthenticatedContent
}

// PendingProposal is a proposal received by reference in the current epoch.
type PendingProposal struct {
	Ref      []byte
	Sender   Sender
	Proposal *Proposal
}

// PendingProposals lists the proposals stored for the current epoch, in
// arrival order.
func (st *groupState) PendingProposals() []PendingProposal {
	out := make([]PendingProposal, len(st.pending))
	for i, p := range st.pending {
		out[i] = PendingProposal{Ref: p.ref, Sender: p.sender, Proposal: p.content.Content.Proposal}
	}
	return out
}

// PendingMessages returns the encoded PublicMessages of the pending
// proposals, in arrival order (for handing to an external joiner).
func (st *groupState) PendingMessages() [][]byte {
	out := make([][]byte, len(st.pending))
	for i, p := range st.pending {
		out[i] = p.message
	}
	return out
}

// setContext installs ctx (copied) as the current GroupContext.
func (st *groupState) setContext(ctx *GroupContext) {
	st.ctx = ctx.clone()
	st.ctxEnc = wire.MustMarshal(&st.ctx)
}

// checkFraming checks that content belongs to this group and epoch and is of
// the wanted type.
func (st *groupState) checkFraming(c *FramedContent, want ContentType) error {
	if st.closed {
		return rejectf(ErrGroupClosed, "the group was reinitialized at epoch %d", st.ctx.Epoch)
	}
	if c.ContentType != want {
		return rejectf(ErrMalformed, "expected a %s, got a %s", want, c.ContentType)
	}
	if !bytes.Equal(c.GroupID, st.ctx.GroupID) {
		return rejectf(ErrWrongGroup, "group id %x, this group is %x", c.GroupID, st.ctx.GroupID)
	}
	if c.Epoch != st.ctx.Epoch {
		return rejectf(ErrWrongEpoch, "message for epoch %d, the group is at epoch %d", c.Epoch, st.ctx.Epoch)
	}
	return nil
}

// publicContent extracts the PublicMessage of a handshake message and checks
// its framing.
func (st *groupState) publicContent(m *Message, want ContentType) (*AuthenticatedContent, error) {
	switch {
	case m.WireFormat == WirePrivateMessage:
		return nil, rejectf(ErrUnsupported, "a hub cannot read a %s sent as PrivateMessage; send handshake messages as PublicMessage", want)
	case m.WireFormat != WirePublicMessage || m.Public == nil:
		return nil, rejectf(ErrMalformed, "expected a PublicMessage, got %s", m.WireFormat)
	}
	ac := m.Public.Authenticated()
	if err := st.checkFraming(&ac.Content, want); err != nil {
		return nil, err
	}
	return ac, nil
}

// memberKey returns the signature key of the member at leaf.
func (st *groupState) memberKey(leaf uint32) ([]byte, error) {
	if leaf >= st.tree.nLeaves || st.tree.blank(leafNode(LeafIndex(leaf))) {
		return nil, rejectf(ErrUnknownSender, "leaf %d is not a member", leaf)
	}
	return st.tree.signatureKey(leafNode(LeafIndex(leaf))), nil
}

func (st *groupState) externalSenders() (ExternalSenders, error) {
	return ExternalSendersOf(st.ctx.Extensions)
}

// ProposalResult describes an accepted proposal.
type ProposalResult struct {
	Ref      []byte // ProposalRef
	Sender   Sender
	Proposal *Proposal
	// SenderLeaf is the sender's leaf node for member senders.
	SenderLeaf *LeafNode
}

// receiveProposal authenticates and validates a proposal whose framing was
// checked, and computes its reference; it does not store it.
func (st *groupState) receiveProposal(ac *AuthenticatedContent, now uint64) (*ProposalResult, error) {
	c := &ac.Content
	p := c.Proposal
	res := &ProposalResult{Sender: c.Sender, Proposal: p}
	var key []byte
	var err error
	switch c.Sender.Type {
	case SenderMember:
		if key, err = st.memberKey(c.Sender.Index); err != nil {
			return nil, err
		}
		res.SenderLeaf, _ = st.tree.Leaf(LeafIndex(c.Sender.Index))
	case SenderExternal:
		es, err := st.externalSenders()
		if err != nil {
			return nil, rejectAs(ErrInvalidProposal, err)
		}
		if int(c.Sender.Index) >= len(es) {
			return nil, rejectf(ErrUnknownSender, "external sender %d is not in the group's external_senders (%d entries)", c.Sender.Index, len(es))
		}
		key = es[c.Sender.Index].SignatureKey
	case SenderNewMemberProposal:
		if p.Type != ProposalAdd {
			return nil, rejectf(ErrInvalidProposal, "a new_member_proposal sender may only propose add, not %s", p.Type)
		}
		key = p.KeyPackage.LeafNode.SignatureKey
	default:
		return nil, rejectf(ErrMalformed, "a proposal cannot come from a %s sender", c.Sender.Type)
	}
	if c.Sender.Type != SenderMember && !st.cfg.proposalInfo(p.Type).External {
		return nil, rejectf(ErrInvalidProposal, "%s proposals may not come from outside the group", p.Type)
	}
	if err := ac.VerifySignature(st.verifier(), key, st.ctxEnc); err != nil {
		return nil, rejectAs(ErrSignature, fmt.Errorf("proposal from %s %d: %w", c.Sender.Type, c.Sender.Index, err))
	}
	if err := st.validateProposal(p, c.Sender, now); err != nil {
		return nil, err
	}
	res.Ref = st.suite.RefHash("MLS 1.0 Proposal Reference", wire.MustMarshal(ac))
	if st.findPending(res.Ref) != nil {
		return nil, rejectf(ErrInvalidProposal, "proposal %x was already received this epoch", res.Ref)
	}
	if err := st.checkSelfRemoveConflicts(p, c.Sender); err != nil {
		return nil, err
	}
	return res, nil
}

// checkSelfRemoveConflicts applies draft-ietf-mls-extensions' rules for
// proposals received while a SelfRemove is pending: a Remove of a leaf with
// a pending SelfRemove is invalid, and a member sends at most one
// SelfRemove per epoch.
func (st *groupState) checkSelfRemoveConflicts(p *Proposal, sender Sender) error {
	var leaf LeafIndex
	switch {
	case p.Type == ProposalRemove:
		leaf = p.Removed
	case p.Type == ProposalSelfRemove && sender.Type == SenderMember:
		leaf = LeafIndex(sender.Index)
	default:
		return nil
	}
	if x := st.pendingSelfRemove(leaf); x != nil {
		if p.Type == ProposalRemove {
			return rejectf(ErrInvalidProposal, "remove of leaf %d, which has a pending self_remove (%x): such a Remove is invalid", leaf, x.ref)
		}
		return rejectf(ErrInvalidProposal, "leaf %d already sent a self_remove (%x) this epoch; a member sends at most one", leaf, x.ref)
	}
	return nil
}

// pendingSelfRemove returns the pending SelfRemove of the member at leaf.
func (st *groupState) pendingSelfRemove(leaf LeafIndex) *pendingProposal {
	for _, x := range st.pending {
		if x.content.Content.Proposal.Type == ProposalSelfRemove && x.sender == MemberSender(leaf) {
			return x
		}
	}
	return nil
}

// addPending stores an accepted proposal for the current epoch. message is
// the MLSMessage it came in.
func (st *groupState) addPending(res *ProposalResult, ac *AuthenticatedContent, message []byte) {
	st.pending = append(st.pending, &pendingProposal{ref: res.Ref, sender: res.Sender, message: message, content: ac})
}

// validateProposal checks one proposal on its own, against the current
// epoch (RFC 9420 section 12.1, SelfRemove per draft-ietf-mls-extensions).
func (st *groupState) validateProposal(p *Proposal, sender Sender, now uint64) error {
	switch p.Type {
	case ProposalAdd:
		kp := p.KeyPackage
		if kp.CipherSuite != st.suite.id || kp.Version != st.ctx.Version {
			return rejectf(ErrInvalidProposal, "add: KeyPackage for %s version %d, the group uses %s version %d", kp.CipherSuite, kp.Version, st.suite.id, st.ctx.Version)
		}
		if err := kp.validate(st.verifier(), now); err != nil {
			return rejectAs(ErrInvalidProposal, fmt.Errorf("add: %w", err))
		}
	case ProposalUpdate:
		if sender.Type != SenderMember {
			return rejectf(ErrInvalidProposal, "update from a %s sender", sender.Type)
		}
		l := LeafIndex(sender.Index)
		leaf := p.LeafNode
		if leaf.Source != SourceUpdate {
			return rejectf(ErrInvalidProposal, "update: leaf node source is %s, want update", leaf.Source)
		}
		if err := leaf.checkSelfConsistent(st.suite); err != nil {
			return rejectAs(ErrInvalidProposal, fmt.Errorf("update: %w", err))
		}
		if err := leaf.VerifySignature(st.verifier(), st.ctx.GroupID, l); err != nil {
			return rejectAs(ErrSignature, fmt.Errorf("update leaf node of leaf %d: %w", l, err))
		}
		if cur, ok := st.tree.Leaf(l); ok && bytes.Equal(cur.EncryptionKey, leaf.EncryptionKey) {
			return rejectf(ErrInvalidProposal, "update: the encryption key is unchanged")
		}
	case ProposalRemove:
		if _, ok := st.tree.Leaf(p.Removed); !ok {
			return rejectf(ErrInvalidProposal, "remove: leaf %d is not a member", p.Removed)
		}
	case ProposalPSK:
		if len(p.PSK.Nonce) != st.suite.nh {
			return rejectf(ErrInvalidProposal, "psk: nonce is %d bytes, want %d", len(p.PSK.Nonce), st.suite.nh)
		}
		if p.PSK.Type == PSKResumption && p.PSK.Usage != UsageApplication {
			return rejectf(ErrInvalidProposal, "psk: a resumption PSK with usage %d is only for reinit and branch", p.PSK.Usage)
		}
	case ProposalReInit:
		if p.ReInit.Version < st.ctx.Version {
			return rejectf(ErrInvalidProposal, "reinit: version %d is older than the group's %d", p.ReInit.Version, st.ctx.Version)
		}
		if err := p.ReInit.Extensions.checkUnique(); err != nil {
			return rejectAs(ErrInvalidProposal, fmt.Errorf("reinit: %w", err))
		}
	case ProposalExternalInit:
		return rejectf(ErrInvalidProposal, "external_init is only valid inside an external commit")
	case ProposalGroupContextExtensions:
		if err := p.Extensions.checkUnique(); err != nil {
			return rejectAs(ErrInvalidProposal, fmt.Errorf("group_context_extensions: %w", err))
		}
	case ProposalSelfRemove:
		if sender.Type != SenderMember {
			return rejectf(ErrInvalidProposal, "self_remove from a %s sender", sender.Type)
		}
	}
	return nil
}

// Member names a leaf and its node.
type Member struct {
	Leaf LeafIndex
	Node *LeafNode
}

// AddedMember is a member a commit added.
type AddedMember struct {
	Member
	KeyPackage    *KeyPackage
	KeyPackageRef []byte // routes the Welcome to the new member
	Proposer      Sender
}

// RemovedMember is a member a commit removed.
type RemovedMember struct {
	Member
	Proposer   Sender
	SelfRemove bool // by a SelfRemove proposal of the removed member
}

// UpdatedMember is a member whose leaf a commit replaced.
type UpdatedMember struct {
	Leaf     LeafIndex
	Old, New *LeafNode
}

// CommittedProposal is one proposal a commit covered, resolved.
type CommittedProposal struct {
	Proposal *Proposal
	Sender   Sender
	Ref      []byte // nil when sent by value
}

// CommitResult describes an accepted commit, so that policy can be enforced
// above the MLS layer.
type CommitResult struct {
	// Epoch is the new epoch.
	Epoch uint64
	// Committer is the committer's leaf after the commit; for an external
	// commit, the leaf the joiner took.
	Committer LeafIndex
	// External is true for a new_member_commit (join or resync).
	External bool
	// CommitterLeaf is the committer's leaf node after the commit.
	CommitterLeaf *LeafNode
	Proposals     []CommittedProposal
	Added         []AddedMember
	Removed       []RemovedMember
	// Updated lists Update proposals and the committer's path leaf.
	Updated []UpdatedMember
	// ExtensionsChanged is set when a GroupContextExtensions proposal was
	// committed; Extensions holds the new list.
	ExtensionsChanged bool
	Extensions        Extensions
	PSKs              []PreSharedKeyID
	ReInit            *ReInit
	// HasPath reports an UpdatePath.
	HasPath bool
}

// resolveProposals resolves the commit's proposals and checks the list
// (RFC 9420 section 12.2).
func (st *groupState) resolveProposals(commit *Commit, sender Sender, now uint64, res *CommitResult) error {
	if err := st.resolveOnly(commit, sender, now, res); err != nil {
		return err
	}
	return st.checkList(commit, sender, res)
}

// checkList applies the list rules of a regular or an external commit.
func (st *groupState) checkList(commit *Commit, sender Sender, res *CommitResult) error {
	if sender.Type == SenderNewMemberCommit {
		return st.checkExternalCommitList(commit, res)
	}
	return st.checkCommitList(commit, LeafIndex(sender.Index), res)
}

// resolveOnly resolves the commit's proposals, validating those sent by
// value by a member, without the list rules.
func (st *groupState) resolveOnly(commit *Commit, sender Sender, now uint64, res *CommitResult) error {
	for i, por := range commit.Proposals {
		var cp CommittedProposal
		if por.Proposal != nil {
			cp = CommittedProposal{Proposal: por.Proposal, Sender: sender}
			if sender.Type == SenderMember {
				if err := st.validateProposal(por.Proposal, sender, now); err != nil {
					return fmt.Errorf("proposal %d: %w", i, err)
				}
			}
		} else {
			p := st.findPending(por.Reference)
			if p == nil {
				return rejectf(ErrInvalidProposal, "proposal %d: reference %x names no proposal received this epoch", i, por.Reference)
			}
			cp = CommittedProposal{Proposal: p.content.Content.Proposal, Sender: p.sender, Ref: p.ref}
		}
		res.Proposals = append(res.Proposals, cp)
	}
	return nil
}

func (st *groupState) findPending(ref []byte) *pendingProposal {
	for _, p := range st.pending {
		if bytes.Equal(p.ref, ref) {
			return p
		}
	}
	return nil
}

// target returns the leaf an Update, Remove or SelfRemove applies to. An
// Update or SelfRemove applies to its sender, which must be a member: one
// carried by value in an external commit has no leaf (its sender index is
// meaningless) and targets nothing; the list rules refuse it.
func target(cp CommittedProposal) (LeafIndex, bool) {
	switch cp.Proposal.Type {
	case ProposalUpdate, ProposalSelfRemove:
		if cp.Sender.Type != SenderMember {
			return 0, false
		}
		return LeafIndex(cp.Sender.Index), true
	case ProposalRemove:
		return cp.Proposal.Removed, true
	}
	return 0, false
}

// checkCommitList applies the rules of RFC 9420 section 12.2 for a regular
// commit, with SelfRemove handled as draft-ietf-mls-extensions says.
func (st *groupState) checkCommitList(commit *Commit, committer LeafIndex, res *CommitResult) error {
	touched := map[LeafIndex]ProposalType{}
	removed := map[LeafIndex]bool{}
	var gce, reinit int
	for i, cp := range res.Proposals {
		p := cp.Proposal
		if l, ok := target(cp); ok {
			if prev, dup := touched[l]; dup {
				return rejectf(ErrInvalidProposal, "proposal %d: leaf %d is already the target of a %s", i, l, prev)
			}
			touched[l] = p.Type
			if l == committer {
				return rejectf(ErrInvalidProposal, "proposal %d: a commit cannot carry a %s of its own committer", i, p.Type)
			}
			if p.Type != ProposalUpdate {
				removed[l] = true
			}
		}
		switch p.Type {
		case ProposalUpdate, ProposalSelfRemove:
			if cp.Ref == nil {
				return rejectf(ErrInvalidProposal, "proposal %d: %s may only be committed by reference", i, p.Type)
			}
		case ProposalGroupContextExtensions:
			gce++
		case ProposalReInit:
			reinit++
		case ProposalExternalInit:
			return rejectf(ErrInvalidProposal, "proposal %d: external_init outside an external commit", i)
		}
	}
	if gce > 1 {
		return rejectf(ErrInvalidProposal, "%d group_context_extensions proposals; at most one is allowed", gce)
	}
	if reinit > 0 && len(res.Proposals) > 1 {
		return rejectf(ErrInvalidProposal, "a reinit proposal must be the only proposal of its commit")
	}
	if err := st.checkAddsAndPSKs(res, removed); err != nil {
		return err
	}
	return st.checkProposalSupport(res, removed)
}

// pathRequired reports whether a commit covering res's proposals must carry
// an UpdatePath (RFC 9420 section 12.4).
func (st *groupState) pathRequired(res *CommitResult) bool {
	if len(res.Proposals) == 0 || res.External {
		return true
	}
	for _, cp := range res.Proposals {
		if st.cfg.proposalInfo(cp.Proposal.Type).PathRequired {
			return true
		}
	}
	return false
}

// checkAddsAndPSKs refuses Adds of clients already in the group (same
// signature key, not removed by this commit) or added twice, and duplicate
// PSKs.
func (st *groupState) checkAddsAndPSKs(res *CommitResult, removed map[LeafIndex]bool) error {
	var addKeys [][]byte
	var psks []*PreSharedKeyID
	for i, cp := range res.Proposals {
		switch cp.Proposal.Type {
		case ProposalAdd:
			sk := cp.Proposal.KeyPackage.LeafNode.SignatureKey
			for _, k := range addKeys {
				if bytes.Equal(k, sk) {
					return rejectf(ErrInvalidProposal, "proposal %d: the same client is added twice", i)
				}
			}
			addKeys = append(addKeys, sk)
			if x, found := st.tree.sigKeys.find(sk, st.tree.signatureKey); found && !removed[x.leaf()] {
				return rejectf(ErrInvalidProposal, "proposal %d: adds a client already in the group at leaf %d", i, x.leaf())
			}
		case ProposalPSK:
			for _, q := range psks {
				if q.Equal(cp.Proposal.PSK) {
					return rejectf(ErrInvalidProposal, "proposal %d: the same PSK is proposed twice", i)
				}
			}
			psks = append(psks, cp.Proposal.PSK)
		}
	}
	return nil
}

// checkProposalSupport refuses non-default proposal types that some member
// processing the commit (members it removes excepted) does not support.
func (st *groupState) checkProposalSupport(res *CommitResult, removed map[LeafIndex]bool) error {
	var removedLeaves []*LeafNode
	for l := range removed {
		if leaf, ok := st.tree.Leaf(l); ok {
			removedLeaves = append(removedLeaves, leaf)
		}
	}
	var checked []ProposalType
	for i, cp := range res.Proposals {
		t := cp.Proposal.Type
		if t.isDefault() || slices.Contains(checked, t) {
			continue
		}
		checked = append(checked, t)
		supporters := st.tree.caps.listed[capKey{capProposal, uint16(t)}]
		for _, leaf := range removedLeaves {
			if slices.Contains(leaf.Capabilities.Proposals, t) {
				supporters--
			}
		}
		if supporters != st.tree.caps.members-len(removedLeaves) {
			return rejectf(ErrInvalidProposal, "proposal %d: not every remaining member supports %s", i, t)
		}
	}
	return nil
}

// checkExternalCommitList applies the external commit rules of RFC 9420
// section 12.2 and draft-ietf-mls-extensions: exactly one ExternalInit, at
// most one Remove, any PSKs, any SelfRemoves by reference, nothing else. A
// SelfRemove by value is refused: the draft allows SelfRemove in a commit
// only by reference, and one carried by value has no member sender, so it
// would name no leaf of its own (the joiner's sender index is 0).
func (st *groupState) checkExternalCommitList(commit *Commit, res *CommitResult) error {
	var inits, removes int
	touched := map[LeafIndex]bool{}
	for i, cp := range res.Proposals {
		p := cp.Proposal
		if cp.Ref != nil && p.Type != ProposalSelfRemove {
			return rejectf(ErrInvalidProposal, "proposal %d: an external commit may reference only self_remove proposals, not %s", i, p.Type)
		}
		if cp.Ref == nil && p.Type == ProposalSelfRemove {
			return rejectf(ErrInvalidProposal, "proposal %d: self_remove may only be committed by reference (draft-ietf-mls-extensions), never by value", i)
		}
		switch p.Type {
		case ProposalExternalInit:
			inits++
			if !st.suite.ValidHPKEPublicKey(p.KEMOutput) {
				return rejectf(ErrInvalidProposal, "proposal %d: external_init kem_output is not a valid %s encapsulation", i, st.suite.id)
			}
		case ProposalRemove:
			removes++
			if err := st.validateProposal(p, res.Proposals[i].Sender, 0); err != nil {
				return fmt.Errorf("proposal %d: %w", i, err)
			}
		case ProposalPSK:
			if err := st.validateProposal(p, res.Proposals[i].Sender, 0); err != nil {
				return fmt.Errorf("proposal %d: %w", i, err)
			}
		case ProposalSelfRemove:
		default:
			return rejectf(ErrInvalidProposal, "proposal %d: an external commit may not carry %s", i, p.Type)
		}
		if l, ok := target(cp); ok {
			if touched[l] {
				return rejectf(ErrInvalidProposal, "proposal %d: leaf %d is removed twice", i, l)
			}
			touched[l] = true
		}
	}
	if inits != 1 {
		return rejectf(ErrInvalidProposal, "an external commit needs exactly one external_init, it has %d", inits)
	}
	if removes > 1 {
		return rejectf(ErrInvalidProposal, "an external commit may remove at most one leaf, it removes %d", removes)
	}
	if err := st.checkAddsAndPSKs(res, touched); err != nil {
		return err
	}
	return st.checkProposalSupport(res, touched)
}

// resolveCommit resolves a received commit's proposals and checks the list
// (RFC 9420 section 12.2) and the presence of a path; the caller has checked
// the signature.
func (st *groupState) resolveCommit(ac *AuthenticatedContent, now uint64) (*CommitResult, error) {
	c := &ac.Content
	res := &CommitResult{Epoch: st.ctx.Epoch + 1, HasPath: c.Commit.Path != nil}
	switch c.Sender.Type {
	case SenderMember:
		res.Committer = LeafIndex(c.Sender.Index)
	case SenderNewMemberCommit:
		res.External = true
	}
	if err := st.resolveProposals(c.Commit, c.Sender, now, res); err != nil {
		return nil, err
	}
	if st.pathRequired(res) && c.Commit.Path == nil {
		return nil, rejectf(ErrInvalidPath, "the commit's proposals require an UpdatePath and it has none")
	}
	return res, nil
}

// commitSignatureKey returns the key a commit must be signed with.
func (st *groupState) commitSignatureKey(c *FramedContent) ([]byte, error) {
	switch c.Sender.Type {
	case SenderMember:
		return st.memberKey(c.Sender.Index)
	case SenderNewMemberCommit:
		if c.Commit.Path == nil {
			return nil, rejectf(ErrInvalidPath, "an external commit must carry an UpdatePath")
		}
		return c.Commit.Path.LeafNode.SignatureKey, nil
	}
	return nil, rejectf(ErrMalformed, "a commit cannot come from a %s sender", c.Sender.Type)
}

// applyProposals applies the proposal list to the tree (RFC 9420 section
// 12.3), inside the tree's transaction, filling res. It returns the new
// GroupContext extensions and the leaves the Adds took.
func (st *groupState) applyProposals(res *CommitResult) (Extensions, []LeafIndex, error) {
	t := st.tree
	ext := st.ctx.Extensions
	for _, cp := range res.Proposals {
		if cp.Proposal.Type == ProposalGroupContextExtensions {
			ext = cp.Proposal.Extensions
			res.ExtensionsChanged = true
		}
	}
	for _, cp := range res.Proposals {
		if cp.Proposal.Type != ProposalUpdate {
			continue
		}
		l := LeafIndex(cp.Sender.Index)
		old, _ := t.Leaf(l)
		if err := t.updateLeaf(l, cp.Proposal.LeafNode); err != nil {
			return nil, nil, rejectAs(ErrInvalidProposal, fmt.Errorf("update of leaf %d: %w", l, err))
		}
		res.Updated = append(res.Updated, UpdatedMember{Leaf: l, Old: old, New: cp.Proposal.LeafNode})
	}
	for _, cp := range res.Proposals {
		typ := cp.Proposal.Type
		if typ != ProposalRemove && typ != ProposalSelfRemove {
			continue
		}
		l, _ := target(cp)
		old, ok := t.Leaf(l)
		if !ok {
			return nil, nil, rejectf(ErrInvalidProposal, "%s of leaf %d, which is not a member", typ, l)
		}
		if err := t.removeLeaf(l); err != nil {
			return nil, nil, rejectAs(ErrInvalidProposal, err)
		}
		res.Removed = append(res.Removed, RemovedMember{Member: Member{Leaf: l, Node: old}, Proposer: cp.Sender, SelfRemove: typ == ProposalSelfRemove})
	}
	t.truncate()
	var added []LeafIndex
	for _, cp := range res.Proposals {
		switch cp.Proposal.Type {
		case ProposalAdd:
			kp := cp.Proposal.KeyPackage
			l, err := t.addLeaf(&kp.LeafNode)
			if err != nil {
				return nil, nil, rejectAs(ErrInvalidProposal, fmt.Errorf("add: %w", err))
			}
			ref, err := kp.Ref()
			if err != nil {
				return nil, nil, rejectAs(ErrInvalidProposal, err)
			}
			added = append(added, l)
			res.Added = append(res.Added, AddedMember{Member: Member{Leaf: l, Node: &kp.LeafNode}, KeyPackage: kp, KeyPackageRef: ref, Proposer: cp.Sender})
		case ProposalPSK:
			res.PSKs = append(res.PSKs, *cp.Proposal.PSK)
		case ProposalReInit:
			res.ReInit = cp.Proposal.ReInit
		}
	}
	res.Extensions = ext
	return ext, added, nil
}

// committerLeaf returns the leaf an UpdatePath applies to: the sender's, or
// for an external commit the leftmost free leaf, which it records in res.
func (st *groupState) committerLeaf(sender Sender, res *CommitResult) LeafIndex {
	if sender.Type == SenderNewMemberCommit {
		res.Committer = st.tree.leftmostFreeLeaf()
	}
	return res.Committer
}

// applyPath validates and merges a received commit's UpdatePath.
func (st *groupState) applyPath(path *UpdatePath, sender Sender, res *CommitResult, added []LeafIndex) error {
	l := st.committerLeaf(sender, res)
	old, wasMember := st.tree.Leaf(l)
	if err := st.tree.mergeUpdatePath(l, path, st.ctx.GroupID, added, st.verifier()); err != nil {
		return err
	}
	if wasMember {
		res.Updated = append(res.Updated, UpdatedMember{Leaf: l, Old: old, New: &path.LeafNode})
	}
	return nil
}

// finishTree checks the group-wide leaf rules on the new tree and records
// the committer's leaf.
func (st *groupState) finishTree(ext Extensions, res *CommitResult) error {
	if err := st.tree.checkGroupCompatibility(ext); err != nil {
		return rejectAs(ErrInvalidProposal, err)
	}
	res.CommitterLeaf, _ = st.tree.Leaf(res.Committer)
	return nil
}

// nextContext returns the GroupContext of the epoch a commit creates, from
// the tree as the commit left it.
func (st *groupState) nextContext(ac *AuthenticatedContent, ext Extensions) (GroupContext, error) {
	confirmed, err := confirmedTranscriptHash(st.suite, st.interim, ac)
	if err != nil {
		return GroupContext{}, rejectAs(ErrMalformed, err)
	}
	next := st.provisionalContext(ext)
	next.ConfirmedTranscriptHash = confirmed
	return next, nil
}

// provisionalContext is the context path secrets are encrypted under: the
// new epoch, tree and extensions with the old confirmed transcript hash.
func (st *groupState) provisionalContext(ext Extensions) GroupContext {
	return GroupContext{
		Version:                 st.ctx.Version,
		CipherSuite:             st.ctx.CipherSuite,
		GroupID:                 st.ctx.GroupID,
		Epoch:                   st.ctx.Epoch + 1,
		TreeHash:                st.tree.Hash(),
		ConfirmedTranscriptHash: st.ctx.ConfirmedTranscriptHash,
		Extensions:              ext,
	}
}

// advance installs the new epoch.
func (st *groupState) advance(next *GroupContext, confirmationTag []byte, res *CommitResult) {
	st.setContext(next)
	st.interim = interimTranscriptHash(st.suite, next.ConfirmedTranscriptHash, confirmationTag)
	st.pending = nil
	st.closed = res.ReInit != nil
}

// describeContextMismatch names the first field of a GroupInfo's context
// that differs from the one the commit produced.
func describeContextMismatch(got, want *GroupContext) error {
	switch {
	case got.Version != want.Version || got.CipherSuite != want.CipherSuite:
		return rejectf(ErrGroupInfoMismatch, "GroupInfo has version %d and %s, the group %d and %s", got.Version, got.CipherSuite, want.Version, want.CipherSuite)
	case !bytes.Equal(got.GroupID, want.GroupID):
		return rejectf(ErrGroupInfoMismatch, "GroupInfo is for group %x", got.GroupID)
	case got.Epoch != want.Epoch:
		return rejectf(ErrGroupInfoMismatch, "GroupInfo is for epoch %d, the commit creates epoch %d", got.Epoch, want.Epoch)
	case !bytes.Equal(got.TreeHash, want.TreeHash):
		return rejectf(ErrGroupInfoMismatch, "GroupInfo tree hash %x, the new tree's is %x", got.TreeHash, want.TreeHash)
	case !bytes.Equal(got.ConfirmedTranscriptHash, want.ConfirmedTranscriptHash):
		return rejectf(ErrGroupInfoMismatch, "GroupInfo confirmed transcript hash %x, the commit gives %x", got.ConfirmedTranscriptHash, want.ConfirmedTranscriptHash)
	case !got.Extensions.Equal(want.Extensions):
		return rejectf(ErrGroupInfoMismatch, "GroupInfo group context extensions differ from the group's")
	}
	return nil
}
