package mls

import (
	"bytes"
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// confirmedTranscriptHash advances the confirmed transcript hash over a
// commit (RFC 9420 section 8.2).
func confirmedTranscriptHash(s *Suite, interim []byte, ac *AuthenticatedContent) ([]byte, error) {
	var w wire.Writer
	w.Uint16(uint16(ac.WireFormat))
	w.Encode(&ac.Content)
	w.Opaque(ac.Auth.Signature)
	in, err := w.Bytes()
	if err != nil {
		return nil, err
	}
	return s.Hash(interim, in), nil
}

// interimTranscriptHash advances the interim transcript hash over a
// confirmation tag.
func interimTranscriptHash(s *Suite, confirmed, confirmationTag []byte) []byte {
	var w wire.Writer
	w.Opaque(confirmationTag)
	in, _ := w.Bytes()
	return s.Hash(confirmed, in)
}

// leftmostFreeLeaf returns the leftmost blank leaf, extending the tree when it
// is full, as an external joiner's position is chosen (RFC 9420 section
// 12.4.2).
func (t *Tree) leftmostFreeLeaf() LeafIndex {
	l := min(t.freeHint, LeafIndex(t.nLeaves))
	for uint32(l) < t.nLeaves && !t.blank(leafNode(l)) {
		l++
	}
	t.freeHint = l
	if uint32(l) >= t.nLeaves {
		t.resize(max(1, 2*t.nLeaves))
	}
	return l
}

// mergeUpdatePath validates a commit's UpdatePath against the tree the
// commit's proposals produced and merges it (RFC 9420 sections 7.5, 7.6 and
// 12.4.2): the new leaf is a valid commit-source leaf signed for its
// position, every new key is fresh, the path covers the filtered direct path
// with one ciphertext per resolution node (leaves in added excluded), and the
// leaf's parent hash matches the chain the path creates. Errors are
// ErrInvalidPath; the tree must be in a transaction so they can be undone.
// The leaf's signature is checked with verifier (the tree's suite, or one
// that skips checks verified beforehand).
func (t *Tree) mergeUpdatePath(l LeafIndex, path *UpdatePath, groupID []byte, added []LeafIndex, verifier *Suite) error {
	leaf := &path.LeafNode
	if leaf.Source != SourceCommit {
		return rejectf(ErrInvalidPath, "the path's leaf node source is %s, want commit", leaf.Source)
	}
	if err := leaf.checkSelfConsistent(t.suite); err != nil {
		return rejectf(ErrInvalidPath, "leaf node: %v", err)
	}
	if err := leaf.VerifySignature(verifier, groupID, l); err != nil {
		return rejectf(ErrInvalidPath, "leaf node of leaf %d: %v", l, err)
	}
	if x, found := t.encKeys.find(leaf.EncryptionKey, t.encryptionKey); found {
		if x == leafNode(l) {
			return rejectf(ErrInvalidPath, "the new leaf keeps the committer's current encryption key")
		}
		return rejectf(ErrInvalidPath, "the new leaf's encryption key already appears at node %d", x)
	}
	steps := t.filteredDirectPath(l)
	if len(path.Nodes) != len(steps) {
		return rejectf(ErrInvalidPath, "the path has %d nodes, the filtered direct path of leaf %d has %d", len(path.Nodes), l, len(steps))
	}
	keys := make([][]byte, len(steps))
	for i, n := range path.Nodes {
		if !t.suite.ValidHPKEPublicKey(n.EncryptionKey) {
			return rejectf(ErrInvalidPath, "path node %d: not a valid %s HPKE public key", i, t.suite.id)
		}
		if x, found := t.encKeys.find(n.EncryptionKey, t.encryptionKey); found {
			return rejectf(ErrInvalidPath, "path node %d: key already appears at node %d", i, x)
		}
		if bytes.Equal(n.EncryptionKey, leaf.EncryptionKey) {
			return rejectf(ErrInvalidPath, "path node %d: key equals the new leaf's", i)
		}
		for j := range i {
			if bytes.Equal(n.EncryptionKey, keys[j]) {
				return rejectf(ErrInvalidPath, "path nodes %d and %d share a key", j, i)
			}
		}
		res := t.resolution(steps[i].copathChild, added, nil)
		if len(n.EncryptedPathSecret) != len(res) {
			return rejectf(ErrInvalidPath, "path node %d has %d ciphertexts, the resolution of node %d has %d members", i, len(n.EncryptedPathSecret), steps[i].copathChild, len(res))
		}
		keys[i] = bytes.Clone(n.EncryptionKey)
	}
	ph, err := t.setPath(l, steps, keys)
	if err != nil {
		return rejectAs(ErrInvalidPath, err)
	}
	if !bytes.Equal(ph, leaf.ParentHash) {
		return rejectf(ErrInvalidPath, "leaf parent_hash %x does not match the path's parent hash %x", leaf.ParentHash, ph)
	}
	if err := t.setLeaf(l, leaf); err != nil {
		return rejectAs(ErrInvalidPath, fmt.Errorf("new leaf: %w", err))
	}
	return nil
}
