package mls

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"slices"
)

// keyIndex finds the node holding a public key in O(1). It maps a 64-bit
// fingerprint of each key to its node and confirms a hit against the key
// itself, so a fingerprint collision costs a look in the overflow list, never
// a wrong answer. Fingerprints are SHA-256 prefixes so that nobody can grind
// collisions to slow it down.
type keyIndex struct {
	byPrint  map[uint64]nodeIndex
	overflow []keyEntry // nodes whose fingerprint collides with another's
}

type keyEntry struct {
	print uint64
	node  nodeIndex
}

func newKeyIndex() keyIndex { return keyIndex{byPrint: map[uint64]nodeIndex{}} }

func fingerprint(key []byte) uint64 {
	h := sha256.Sum256(key)
	return binary.BigEndian.Uint64(h[:8])
}

// find returns the node holding key; keyAt reads the key stored at a node.
func (k *keyIndex) find(key []byte, keyAt func(nodeIndex) []byte) (nodeIndex, bool) {
	fp := fingerprint(key)
	if x, ok := k.byPrint[fp]; ok && bytes.Equal(keyAt(x), key) {
		return x, true
	}
	for _, e := range k.overflow {
		if e.print == fp && bytes.Equal(keyAt(e.node), key) {
			return e.node, true
		}
	}
	return 0, false
}

func (k *keyIndex) add(key []byte, x nodeIndex) {
	fp := fingerprint(key)
	if _, taken := k.byPrint[fp]; taken {
		k.overflow = append(k.overflow, keyEntry{fp, x})
		return
	}
	k.byPrint[fp] = x
}

func (k *keyIndex) remove(key []byte, x nodeIndex) {
	fp := fingerprint(key)
	for i, e := range k.overflow {
		if e.print == fp && e.node == x {
			k.overflow = append(k.overflow[:i], k.overflow[i+1:]...)
			return
		}
	}
	if k.byPrint[fp] != x {
		return
	}
	delete(k.byPrint, fp)
	for i, e := range k.overflow {
		if e.print == fp {
			k.byPrint[fp] = e.node
			k.overflow = append(k.overflow[:i], k.overflow[i+1:]...)
			return
		}
	}
}

// capabilityCounts counts, over the members of a tree, how many list each
// extension, proposal and credential type in their capabilities and how many
// use each credential type, so that "every member supports X" is a lookup.
type capabilityCounts struct {
	members int
	listed  map[capKey]int
	inUse   map[CredentialType]int
}

type capKind uint8

const (
	capExtension capKind = iota
	capProposal
	capCredential
)

type capKey struct {
	kind capKind
	code uint16
}

func newCapabilityCounts() capabilityCounts {
	return capabilityCounts{listed: map[capKey]int{}, inUse: map[CredentialType]int{}}
}

// add counts leaf in (delta 1) or out (delta -1). Duplicate entries in a
// capabilities list count once.
func (c *capabilityCounts) add(leaf *LeafNode, delta int) {
	c.members += delta
	// A leaf lists a handful of types: a slice is cheaper than a map
	// (this runs for every leaf of a restored tree).
	var seenBuf [16]capKey
	seen := seenBuf[:0]
	count := func(kind capKind, code uint16) {
		k := capKey{kind, code}
		if slices.Contains(seen, k) {
			return
		}
		seen = append(seen, k)
		if c.listed[k] += delta; c.listed[k] == 0 {
			delete(c.listed, k)
		}
	}
	for _, t := range leaf.Capabilities.Extensions {
		count(capExtension, uint16(t))
	}
	for _, t := range leaf.Capabilities.Proposals {
		count(capProposal, uint16(t))
	}
	for _, t := range leaf.Capabilities.Credentials {
		count(capCredential, uint16(t))
	}
	if c.inUse[leaf.Credential.Type] += delta; c.inUse[leaf.Credential.Type] == 0 {
		delete(c.inUse, leaf.Credential.Type)
	}
}

func (c *capabilityCounts) all(kind capKind, code uint16) bool {
	return c.listed[capKey{kind, code}] == c.members
}

// allSupportProposal reports whether every member supports proposal type t.
func (c *capabilityCounts) allSupportProposal(t ProposalType) bool {
	return t.isDefault() || c.all(capProposal, uint16(t))
}

// allSupportExtension reports whether every member supports extension type t.
func (c *capabilityCounts) allSupportExtension(t ExtensionType) bool {
	return t.isDefault() || c.all(capExtension, uint16(t))
}

// allSupportCredential reports whether every member supports credential type
// t.
func (c *capabilityCounts) allSupportCredential(t CredentialType) bool {
	return c.all(capCredential, uint16(t))
}

// credentialsInUse returns the credential types members use, sorted so
// that callers behave the same on every node.
func (c *capabilityCounts) credentialsInUse() []CredentialType {
	out := make([]CredentialType, 0, len(c.inUse))
	for t := range c.inUse {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}
