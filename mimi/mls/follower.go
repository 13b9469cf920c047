package mls

import (
	"bytes"
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Follower is the hub's view of one group: its public state, advanced by the
// commits it accepts. It cannot derive group secrets, so it checks everything
// but membership tags and confirmation tags, and cross-checks the GroupInfo
// each committer supplies. A Follower is not safe for concurrent use; a
// failed call leaves it exactly as it was.
type Follower struct {
	groupState
	info []byte // the GroupInfo of the current epoch, encoded
	// history undoes the last commits, oldest first, consecutive epochs
	// ending at the current one (treehistory.go); historyBytes is its
	// size for the bound RetainTreesFrom keeps.
	history      []treeDelta
	historyBytes int
}

// NewFollower starts following a group from a GroupInfo and the group's
// ratchet tree in wire form (tree may be nil when the GroupInfo carries a
// ratchet_tree extension). It checks the tree (Tree.Validate), that its hash
// is the GroupInfo's, and the GroupInfo's signature by its signer, and
// derives the interim transcript hash from the confirmation tag.
func NewFollower(gi *GroupInfo, tree []byte, cfg Config) (*Follower, error) {
	st, err := stateFromGroupInfo(gi, tree, cfg)
	if err != nil {
		return nil, err
	}
	f := &Follower{groupState: *st}
	if err := f.checkGroupInfoContents(gi, gi.ConfirmationTag); err != nil {
		return nil, err
	}
	f.info = wire.MustMarshal(gi)
	return f, nil
}

// checkGroupInfo checks a GroupInfo against the tree: the signer is a member
// whose key signed it, and checkGroupInfoContents holds.
func (f *Follower) checkGroupInfo(gi *GroupInfo, wantTag []byte) error {
	signer, ok := f.tree.Leaf(gi.Signer)
	if !ok {
		return rejectf(ErrGroupInfoMismatch, "signer %d is not a member", gi.Signer)
	}
	if err := gi.VerifySignature(f.verifier(), signer.SignatureKey); err != nil {
		return rejectAs(ErrSignature, fmt.Errorf("GroupInfo signed by leaf %d: %w", gi.Signer, err))
	}
	return f.checkGroupInfoContents(gi, wantTag)
}

// checkGroupInfoContents checks a GroupInfo's fields besides its signature:
// its confirmation tag is want, its extensions are unique and well formed,
// and a ratchet_tree extension matches the tree.
func (f *Follower) checkGroupInfoContents(gi *GroupInfo, wantTag []byte) error {
	if !bytes.Equal(gi.ConfirmationTag, wantTag) {
		return rejectf(ErrGroupInfoMismatch, "confirmation tag differs from the commit's")
	}
	if len(gi.ConfirmationTag) != f.suite.nh {
		return rejectf(ErrGroupInfoMismatch, "confirmation tag is %d bytes, want %d", len(gi.ConfirmationTag), f.suite.nh)
	}
	if err := gi.Extensions.checkUnique(); err != nil {
		return rejectf(ErrGroupInfoMismatch, "GroupInfo extensions: %v", err)
	}
	if pub, ok, err := gi.ExternalPub(); err != nil {
		return rejectAs(ErrGroupInfoMismatch, err)
	} else if ok && !f.suite.ValidHPKEPublicKey(pub) {
		return rejectf(ErrGroupInfoMismatch, "external_pub is not a valid %s HPKE public key", f.suite.id)
	}
	if enc, ok := gi.RatchetTreeExtension(); ok && !f.tree.EncodingEqual(enc) {
		return rejectf(ErrGroupInfoMismatch, "the ratchet_tree extension differs from the group's tree")
	}
	return nil
}

// Suite returns the group's cipher suite.
func (f *Follower) Suite() *Suite { return f.suite }

// Epoch returns the current epoch.
func (f *Follower) Epoch() uint64 { return f.ctx.Epoch }

// GroupID returns the group id.
func (f *Follower) GroupID() []byte { return f.ctx.GroupID }

// GroupContext returns a copy of the current GroupContext.
func (f *Follower) GroupContext() GroupContext { return f.ctx.clone() }

// Tree returns the current ratchet tree. Callers must not modify it.
func (f *Follower) Tree() *Tree { return f.tree }

// GroupInfo returns the encoded GroupInfo of the current epoch, as its
// committer (or the group's creator) supplied it.
func (f *Follower) GroupInfo() []byte { return f.info }

// Closed reports whether a ReInit was committed; the group then takes no more
// handshake messages.
func (f *Follower) Closed() bool { return f.closed }

// ProcessProposal validates a proposal sent by reference (a PublicMessage)
// and stores it for the current epoch. now is the acceptance time in Unix
// seconds, for KeyPackage lifetimes. check, if not nil, sees the result
// before the proposal is stored and may refuse it.
func (f *Follower) ProcessProposal(m *Message, now uint64, check func(*ProposalResult) error) (*ProposalResult, error) {
	ac, err := f.publicContent(m, ContentProposal)
	if err != nil {
		return nil, err
	}
	res, err := f.receiveProposal(ac, now)
	if err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(res); err != nil {
			return nil, rejectAs(ErrRejectedByPolicy, err)
		}
	}
	f.addPending(res, ac, wire.MustMarshal(m))
	return res, nil
}

// ProcessCommit validates a commit sent as PublicMessage together with the
// GroupInfo its committer made for the new epoch, and advances the group
// (RFC 9420 section 12.4.2, as far as public state allows). now is the
// acceptance time in Unix seconds. check, if not nil, sees the result before
// the new state is kept and may refuse it. On any error the Follower is left
// unchanged.
//
// A hub always passes the GroupInfo. gi may be nil only where none exists,
// such as replaying another implementation's transcripts; the commit is then
// checked without it and GroupInfo returns nil until the next commit.
func (f *Follower) ProcessCommit(m *Message, gi *GroupInfo, now uint64, check func(*CommitResult) error) (*CommitResult, error) {
	return f.ProcessCommitVerified(m, gi, now, nil, check)
}

// ProcessCommitVerified is ProcessCommit that skips the signature checks
// v records as passed, when v was made at the group's current epoch and
// confirmed transcript hash (see CommitCheck); otherwise, and for every
// check v does not cover, it checks as ProcessCommit does. The outcome is
// the same either way as long as v is honest.
func (f *Follower) ProcessCommitVerified(m *Message, gi *GroupInfo, now uint64, v *Verified, check func(*CommitResult) error) (*CommitResult, error) {
	if v.matches(&f.groupState) {
		f.memo = f.suite.withVerified(v)
		defer func() { f.memo = nil }()
	}
	ac, err := f.publicContent(m, ContentCommit)
	if err != nil {
		return nil, err
	}
	key, err := f.commitSignatureKey(&ac.Content)
	if err != nil {
		return nil, err
	}
	if err := ac.VerifySignature(f.verifier(), key, f.ctxEnc); err != nil {
		return nil, rejectAs(ErrSignature, fmt.Errorf("commit from %s %d: %w", ac.Content.Sender.Type, ac.Content.Sender.Index, err))
	}
	if len(ac.Auth.ConfirmationTag) != f.suite.nh {
		return nil, rejectf(ErrMalformed, "confirmation tag is %d bytes, want %d", len(ac.Auth.ConfirmationTag), f.suite.nh)
	}
	res, err := f.resolveCommit(ac, now)
	if err != nil {
		return nil, err
	}
	epoch := f.ctx.Epoch
	f.tree.begin()
	if err := f.stageCommit(ac, gi, res, check); err != nil {
		f.tree.rollback()
		return nil, err
	}
	f.recordDelta(epoch)
	f.tree.commit()
	return res, nil
}

// stageCommit applies the commit to the tree (in its transaction), checks the
// GroupInfo and the caller's check, and installs the new epoch.
func (f *Follower) stageCommit(ac *AuthenticatedContent, gi *GroupInfo, res *CommitResult, check func(*CommitResult) error) error {
	ext, added, err := f.applyProposals(res)
	if err != nil {
		return err
	}
	if path := ac.Content.Commit.Path; path != nil {
		if err := f.applyPath(path, ac.Content.Sender, res, added); err != nil {
			return err
		}
	}
	if err := f.finishTree(ext, res); err != nil {
		return err
	}
	next, err := f.nextContext(ac, ext)
	if err != nil {
		return err
	}
	if gi != nil {
		if err := describeContextMismatch(&gi.GroupContext, &next); err != nil {
			return err
		}
		if gi.Signer != res.Committer {
			return rejectf(ErrGroupInfoMismatch, "GroupInfo signed by leaf %d, the committer is leaf %d", gi.Signer, res.Committer)
		}
		if err := f.checkGroupInfo(gi, ac.Auth.ConfirmationTag); err != nil {
			return err
		}
	}
	if check != nil {
		if err := check(res); err != nil {
			return rejectAs(ErrRejectedByPolicy, err)
		}
	}
	f.advance(&next, ac.Auth.ConfirmationTag, res)
	f.info = nil
	if gi != nil {
		f.info = wire.MustMarshal(gi)
	}
	return nil
}

// PendingCount returns the number of proposals stored for the current epoch.
func (f *Follower) PendingCount() int { return len(f.pending) }

// TruncatePending forgets the proposals stored after the first n, so that a
// caller accepting several proposals as one request can undo a partial
// batch.
func (f *Follower) TruncatePending(n int) {
	if n < len(f.pending) {
		clear(f.pending[n:])
		f.pending = f.pending[:n]
	}
}

// OpenReported decrypts an application message of the current epoch with the
// content key and nonce a reporter disclosed for it (an abuse report), and
// checks that the member at leaf signed it. It returns the application data.
func (f *Follower) OpenReported(m *Message, key, nonce []byte, leaf LeafIndex) ([]byte, error) {
	pm := m.Private
	if m.WireFormat != WirePrivateMessage || pm == nil || pm.ContentType != ContentApplication {
		return nil, rejectf(ErrMalformed, "a reported message must be an application PrivateMessage")
	}
	if !bytes.Equal(pm.GroupID, f.ctx.GroupID) {
		return nil, rejectf(ErrWrongGroup, "group id %x", pm.GroupID)
	}
	if pm.Epoch != f.ctx.Epoch {
		return nil, rejectf(ErrWrongEpoch, "reported message of epoch %d; the hub can check only the current epoch %d", pm.Epoch, f.ctx.Epoch)
	}
	signer, err := f.memberKey(uint32(leaf))
	if err != nil {
		return nil, err
	}
	plaintext, err := f.suite.open(key, nonce, privateContentAAD(pm), pm.Ciphertext)
	if err != nil {
		return nil, rejectf(ErrSignature, "the disclosed key and nonce do not decrypt the message: %v", err)
	}
	ac := &AuthenticatedContent{
		WireFormat: WirePrivateMessage,
		Content: FramedContent{GroupID: pm.GroupID, Epoch: pm.Epoch, Sender: MemberSender(leaf),
			AuthenticatedData: pm.AuthenticatedData, ContentType: ContentApplication},
	}
	r := wire.NewReader(plaintext)
	ac.Content.decodeBody(r)
	ac.Auth.decode(r, ContentApplication)
	r.Rest()
	if err := r.Err(); err != nil {
		return nil, rejectAs(ErrMalformed, err)
	}
	if err := ac.VerifySignature(f.suite, signer, f.ctxEnc); err != nil {
		return nil, rejectAs(ErrSignature, fmt.Errorf("reported message is not signed by leaf %d: %w", leaf, err))
	}
	return ac.Content.ApplicationData, nil
}
