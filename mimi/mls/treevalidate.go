package mls

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Validate checks a tree a joiner (or a hub creating a room) receives, as RFC
// 9420 section 12.4.3.1 requires, for the group groupID whose GroupContext
// carries extensions: every leaf is valid (section 7.3) with its signature
// bound to groupID and its index, every non-blank parent is parent-hash valid
// (section 7.9.2), unmerged leaves are consistent, and all HPKE and signature
// keys are unique (DecodeTree already refused duplicates). The caller
// compares Hash with the GroupContext's tree_hash.
//
// Leaf lifetimes are not checked here: members keep their leaves long after
// the KeyPackage they joined with would have expired.
func (t *Tree) Validate(groupID []byte, extensions Extensions) error {
	if t.nLeaves == 0 {
		return rejectf(ErrInvalidTree, "the tree is empty")
	}
	if t.caps.members == 0 {
		return rejectf(ErrInvalidTree, "the tree has no members")
	}
	for x := nodeIndex(0); int(x) < t.nodes.len(); x++ {
		if t.blank(x) {
			continue
		}
		var err error
		if x.isLeaf() {
			err = t.validateLeaf(x.leaf(), groupID)
		} else {
			err = t.validateParent(x)
		}
		if err != nil {
			return rejectAs(ErrInvalidTree, fmt.Errorf("node %d: %w", x, err))
		}
	}
	return rejectAs(ErrInvalidTree, t.checkGroupCompatibility(extensions))
}

func (t *Tree) validateLeaf(l LeafIndex, groupID []byte) error {
	leaf, _ := t.Leaf(l)
	if err := leaf.checkSelfConsistent(t.suite); err != nil {
		return err
	}
	if err := leaf.VerifySignature(t.suite, groupID, l); err != nil {
		return fmt.Errorf("leaf %d: %w", l, err)
	}
	return nil
}

func (t *Tree) validateParent(x nodeIndex) error {
	p, _ := t.parentNode(x)
	if !t.suite.ValidHPKEPublicKey(p.EncryptionKey) {
		return fmt.Errorf("encryption_key is not a valid %s HPKE public key", t.suite.id)
	}
	lo, hi := leafSpan(x)
	for i, l := range p.UnmergedLeaves {
		if i > 0 && p.UnmergedLeaves[i-1] >= l {
			return fmt.Errorf("unmerged_leaves are not in strictly increasing order")
		}
		if l < lo || l > hi {
			return fmt.Errorf("unmerged leaf %d is not below the node", l)
		}
		if t.blank(leafNode(l)) {
			return fmt.Errorf("unmerged leaf %d is blank", l)
		}
		// Every non-blank node between the leaf and x must list it too.
		for y := leafNode(l).parent(); y != x; y = y.parent() {
			if q, ok := t.parentNode(y); ok && !slices.Contains(q.UnmergedLeaves, l) {
				return fmt.Errorf("unmerged leaf %d is missing from node %d below", l, y)
			}
		}
	}
	if !t.parentHashValid(x, p) {
		return fmt.Errorf("not parent-hash valid: no unique child chain authenticates it")
	}
	return nil
}

// parentHashValid checks the top-down form of RFC 9420 section 7.9.2: exactly
// one descendant D of P carries P's parent hash, where D is the node the
// resolution of P's child C consists of apart from P's unmerged leaves below
// C.
func (t *Tree) parentHashValid(x nodeIndex, p *ParentNode) bool {
	matches := 0
	for _, side := range [2][2]nodeIndex{{x.left(), x.right()}, {x.right(), x.left()}} {
		c, s := side[0], side[1]
		lo, hi := leafSpan(c)
		unmergedInC := 0
		for _, l := range p.UnmergedLeaves {
			if lo <= l && l <= hi {
				unmergedInC++
			}
		}
		var d []nodeIndex
		seenUnmerged := 0
		for _, y := range t.resolution(c, nil, nil) {
			if y.isLeaf() && slices.Contains(p.UnmergedLeaves, y.leaf()) {
				seenUnmerged++
				continue
			}
			d = append(d, y)
		}
		if len(d) != 1 || seenUnmerged != unmergedInC {
			continue
		}
		want := t.parentHashOf(p, t.hashExcluding(s, p.UnmergedLeaves))
		if bytes.Equal(t.parentHashField(d[0]), want) {
			matches++
		}
	}
	return matches == 1
}

// parentHashField returns the parent_hash a node carries: a parent's field, a
// leaf's for the commit source, nil otherwise.
func (t *Tree) parentHashField(x nodeIndex) []byte {
	if x.isLeaf() {
		leaf, _ := t.Leaf(x.leaf())
		if leaf.Source != SourceCommit {
			return nil
		}
		return leaf.ParentHash
	}
	p, _ := t.parentNode(x)
	return p.ParentHash
}

// checkGroupCompatibility checks the group-wide leaf rules of RFC 9420
// sections 7.3, 11.1 and 13.4 over all members at once: every member
// supports the group's extensions and required capabilities, every member
// supports every credential type in use.
func (t *Tree) checkGroupCompatibility(extensions Extensions) error {
	if err := extensions.checkUnique(); err != nil {
		return fmt.Errorf("group context extensions: %w", err)
	}
	for _, e := range extensions {
		if !t.caps.allSupportExtension(e.Type) {
			return fmt.Errorf("not every member supports group context extension 0x%04x", uint16(e.Type))
		}
	}
	if data, ok := extensions.Find(ExtRequiredCapabilities); ok {
		var rc RequiredCapabilities
		if err := wire.Unmarshal(data, &rc); err != nil {
			return fmt.Errorf("required_capabilities: %w", err)
		}
		for _, e := range rc.Extensions {
			if !t.caps.allSupportExtension(e) {
				return fmt.Errorf("not every member supports required extension 0x%04x", uint16(e))
			}
		}
		for _, p := range rc.Proposals {
			if !t.caps.allSupportProposal(p) {
				return fmt.Errorf("not every member supports required proposal type 0x%04x", uint16(p))
			}
		}
		for _, c := range rc.Credentials {
			if !t.caps.allSupportCredential(c) {
				return fmt.Errorf("not every member supports required credential type 0x%04x", uint16(c))
			}
		}
	}
	es, err := ExternalSendersOf(extensions)
	if err != nil {
		return err
	}
	for i := range es {
		if !t.caps.allSupportCredential(es[i].Credential.Type) {
			return fmt.Errorf("not every member supports the credential type 0x%04x of external sender %d", uint16(es[i].Credential.Type), i)
		}
	}
	for _, c := range t.caps.credentialsInUse() {
		if !t.caps.allSupportCredential(c) {
			return fmt.Errorf("not every member supports credential type 0x%04x, which a member uses", uint16(c))
		}
	}
	return nil
}
