package mls

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Signatures verified before a commit is applied.
//
// A hub applies every commit on every replica, in one thread, in log
// order; its signature checks are most of that work. The node that
// receives a commit can check them beforehand, on any core, against the
// group's current epoch (PrepareCommitCheck, then CommitCheck.Run): it
// records what verified in a Verified, which travels with the commit, and
// ProcessCommitVerified skips exactly those checks, and only while the
// group is still at the epoch and confirmed transcript hash the record
// names. Each record entry is a digest of one signature check's whole
// input (public key, labeled content, signature), so an entry can only
// vouch for that check: a record made for other bytes or another epoch
// matches nothing, and every check it does not cover runs as usual. Skipping
// a check changes no outcome as long as the record is honest; who may
// write one is the caller's trust decision (a hub's cluster: its own
// nodes only, under Raft's crash-fault model).

// maxVerifiedSignatures bounds a record: a commit checks its own
// signature, its path's leaf, its GroupInfo, and two per Add by value.
const maxVerifiedSignatures = 4096

// Verified records the signature checks a node passed for one commit, and
// the group state it checked them against.
type Verified struct {
	Epoch uint64
	// TranscriptHash is the epoch's confirmed transcript hash.
	TranscriptHash []byte
	// Signatures are the digests (signatureDigest) of the checks passed.
	Signatures [][]byte
}

// EncodeTLS writes the record.
func (v *Verified) EncodeTLS(w *wire.Writer) {
	w.Uint64(v.Epoch)
	w.Opaque(v.TranscriptHash)
	w.Vector(func(w *wire.Writer) {
		for _, d := range v.Signatures {
			w.Opaque(d)
		}
	})
}

// DecodeTLS reads the record, refusing digests of the wrong size and
// records over the bound.
func (v *Verified) DecodeTLS(r *wire.Reader) {
	r.Uint64(&v.Epoch)
	r.Opaque(&v.TranscriptHash)
	v.Signatures = nil
	r.VectorEach(func(r *wire.Reader) {
		var d []byte
		r.Opaque(&d)
		switch {
		case !r.OK():
		case len(d) != sha256.Size:
			r.Failf("a verified-signature digest of %d bytes", len(d))
		case len(v.Signatures) == maxVerifiedSignatures:
			r.Failf("more than %d verified signatures", maxVerifiedSignatures)
		}
		v.Signatures = append(v.Signatures, d)
	})
}

// matches reports whether the record was made at the group's current
// state.
func (v *Verified) matches(st *groupState) bool {
	return v != nil && v.Epoch == st.ctx.Epoch && bytes.Equal(v.TranscriptHash, st.ctx.ConfirmedTranscriptHash)
}

// signatureDigest names one signature check: SHA-256 over a label and the
// length-prefixed public key, signed message (label and content, as
// VerifyWithLabel builds it) and signature.
func signatureDigest(publicKey, msg, signature []byte) []byte {
	h := sha256.New()
	h.Write([]byte("mimi-hub verified signature\x00"))
	var n [4]byte
	for _, b := range [][]byte{publicKey, msg, signature} {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	return h.Sum(nil)
}

// memoScheme passes the checks a record lists without repeating them and
// runs every other check.
type memoScheme struct {
	signatureScheme
	known map[string]bool
}

func (m memoScheme) verify(publicKey, msg, signature []byte) error {
	if m.known[string(signatureDigest(publicKey, msg, signature))] {
		return nil
	}
	return m.signatureScheme.verify(publicKey, msg, signature)
}

// withVerified returns a copy of the suite whose signature checks skip
// what v lists.
func (s *Suite) withVerified(v *Verified) *Suite {
	known := make(map[string]bool, len(v.Signatures))
	for _, d := range v.Signatures {
		known[string(d)] = true
	}
	c := *s
	c.sig = memoScheme{signatureScheme: s.sig, known: known}
	return &c
}

// verifier is the suite signature checks use: the group's, or during
// ProcessCommitVerified the one that skips what the record covers.
func (st *groupState) verifier() *Suite {
	if st.memo != nil {
		return st.memo
	}
	return st.suite
}

// signatureCheck is one check of a CommitCheck.
type signatureCheck struct {
	what                string
	key, msg, signature []byte
}

// CommitCheck is a commit's signature checks, taken from the group under
// the caller's lock by PrepareCommitCheck and run by Run on any goroutine,
// without the group.
type CommitCheck struct {
	record Verified
	suite  *Suite
	sender Sender
	// first is the commit's own signature, which ProcessCommit checks
	// right after the framing: when it fails, so does ProcessCommit at
	// this state, with the same error.
	first  *signatureCheck
	others []signatureCheck
}

// PrepareCommitCheck collects the signature checks of a commit from a
// member that can be made against the group's current epoch: the
// commit's own signature, its path's leaf node, its GroupInfo (given the
// committer signs it) and the KeyPackages of Adds by value. It copies what
// it needs, so Run needs no lock. It returns nil when there is nothing to
// check here: not a commit of this group and epoch by a member (which
// ProcessCommit refuses or checks in full anyway).
func (f *Follower) PrepareCommitCheck(m *Message, gi *GroupInfo) *CommitCheck {
	ac, err := f.publicContent(m, ContentCommit)
	if err != nil || ac.Content.Sender.Type != SenderMember || ac.Content.Commit == nil {
		return nil
	}
	key, err := f.commitSignatureKey(&ac.Content)
	if err != nil {
		return nil
	}
	suite, err := f.suite.id.Suite() // an instance of its own, for another goroutine
	if err != nil {
		return nil
	}
	c := &CommitCheck{suite: suite, sender: ac.Content.Sender, record: Verified{Epoch: f.ctx.Epoch, TranscriptHash: bytes.Clone(f.ctx.ConfirmedTranscriptHash)}}
	check := func(what string, key []byte, label string, content, signature []byte) *signatureCheck {
		msg, err := labeled(label, content)
		if err != nil {
			return nil
		}
		return &signatureCheck{what: what, key: key, msg: msg, signature: signature}
	}
	add := func(what string, key []byte, label string, content, signature []byte) {
		if ch := check(what, key, label, content, signature); ch != nil {
			c.others = append(c.others, *ch)
		}
	}
	if tbs, err := framedContentTBS(ac.WireFormat, &ac.Content, f.ctxEnc); err == nil {
		c.first = check("the commit", key, "FramedContentTBS", tbs, ac.Auth.Signature)
	}
	leaf := LeafIndex(ac.Content.Sender.Index)
	signer := key
	if path := ac.Content.Commit.Path; path != nil {
		ln := &path.LeafNode
		if tbs, err := ln.tbs(f.ctx.GroupID, leaf); err == nil {
			add("the path's leaf node", ln.SignatureKey, "LeafNodeTBS", tbs, ln.Signature)
		}
		signer = ln.SignatureKey
	}
	if gi != nil && gi.Signer == leaf {
		if tbs, err := wire.Marshal(wire.EncoderFunc(gi.encodeContent)); err == nil {
			add("the GroupInfo", signer, "GroupInfoTBS", tbs, gi.Signature)
		}
	}
	for _, p := range ac.Content.Commit.Proposals {
		if p.Proposal == nil || p.Proposal.Type != ProposalAdd || p.Proposal.KeyPackage == nil || p.Proposal.KeyPackage.CipherSuite != f.suite.id {
			continue
		}
		kp := p.Proposal.KeyPackage
		if tbs, err := kp.LeafNode.tbs(nil, 0); err == nil {
			add("an added KeyPackage's leaf node", kp.LeafNode.SignatureKey, "LeafNodeTBS", tbs, kp.LeafNode.Signature)
		}
		if tbs, err := wire.Marshal(wire.EncoderFunc(kp.encodeContent)); err == nil {
			add("an added KeyPackage", kp.LeafNode.SignatureKey, "KeyPackageTBS", tbs, kp.Signature)
		}
		if len(c.others) >= maxVerifiedSignatures-1 {
			break
		}
	}
	return c
}

// Epoch returns the epoch the checks were taken at.
func (c *CommitCheck) Epoch() uint64 { return c.record.Epoch }

// Run makes the checks and returns the record of those that passed. When
// the commit's own signature fails, it returns ErrSignature as
// ProcessCommit would at the same epoch, and no record; other failures
// are left out of the record, for ProcessCommit to find in its own order.
func (c *CommitCheck) Run() (*Verified, error) {
	v := c.record
	if c.first != nil {
		if err := c.suite.sig.verify(c.first.key, c.first.msg, c.first.signature); err != nil {
			return nil, rejectAs(ErrSignature, fmt.Errorf("commit from %s %d: %w", c.sender.Type, c.sender.Index, err))
		}
		v.Signatures = append(v.Signatures, signatureDigest(c.first.key, c.first.msg, c.first.signature))
	}
	for _, ch := range c.others {
		if c.suite.sig.verify(ch.key, ch.msg, ch.signature) == nil {
			v.Signatures = append(v.Signatures, signatureDigest(ch.key, ch.msg, ch.signature))
		}
	}
	return &v, nil
}
