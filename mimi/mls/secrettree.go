package mls

import (
	"errors"
	"fmt"
)

// Bounds on how far a receiver ratchets to reach a message's generation and
// how many skipped keys it keeps for messages that arrive out of order.
const (
	maxRatchetForward = 1024
	maxSkippedKeys    = 64
)

// ratchetKind selects a leaf's handshake or application ratchet.
type ratchetKind int

const (
	handshakeRatchet ratchetKind = iota
	applicationRatchet
)

func ratchetKindFor(ct ContentType) ratchetKind {
	if ct == ContentApplication {
		return applicationRatchet
	}
	return handshakeRatchet
}

// secretTree derives per-sender message keys (RFC 9420 section 9). Node
// secrets are expanded lazily, on the way from the root to the leaf that
// needs them, and deleted once expanded, as section 9.2 asks.
//
// It holds at most one node secret per level for every leaf that used its
// secrets (the siblings of its path that were not expanded), plus the root
// while nobody has: for t senders in an n-leaf tree, at most t*log2(n)+1
// node secrets and t ratchet pairs, each with at most maxSkippedKeys skipped
// keys.
type secretTree struct {
	suite    *Suite
	nLeaves  uint32
	nodes    map[nodeIndex][]byte
	ratchets map[LeafIndex]*[2]*hashRatchet
	// applicationOnly marks the tree of a past epoch: it only decrypts
	// late application messages, so it holds no handshake ratchets and
	// derives none.
	applicationOnly bool
}

func newSecretTree(s *Suite, encryptionSecret []byte, nLeaves uint32) *secretTree {
	return &secretTree{
		suite:    s,
		nLeaves:  nLeaves,
		nodes:    map[nodeIndex][]byte{root(nLeaves): encryptionSecret},
		ratchets: map[LeafIndex]*[2]*hashRatchet{},
	}
}

// ratchet returns leaf l's ratchet of the given kind, deriving it on first
// use.
func (t *secretTree) ratchet(l LeafIndex, kind ratchetKind) (*hashRatchet, error) {
	if uint32(l) >= t.nLeaves {
		return nil, fmt.Errorf("leaf %d is outside the %d-leaf secret tree", l, t.nLeaves)
	}
	if kind == handshakeRatchet && t.applicationOnly {
		return nil, errors.New("the handshake keys of a past epoch are deleted")
	}
	if r, ok := t.ratchets[l]; ok {
		return r[kind], nil
	}
	target := leafNode(l)
	// Find the lowest ancestor whose secret is still stored.
	path := append([]nodeIndex{target}, directPath(target, t.nLeaves)...)
	top := -1
	for i, x := range path {
		if _, ok := t.nodes[x]; ok {
			top = i
			break
		}
	}
	if top < 0 {
		return nil, errors.New("the secrets of this leaf were already consumed")
	}
	for i := top; i > 0; i-- {
		x := path[i]
		secret := t.nodes[x]
		left, err := t.suite.ExpandWithLabel(secret, "tree", []byte("left"), t.suite.nh)
		if err != nil {
			return nil, err
		}
		right, err := t.suite.ExpandWithLabel(secret, "tree", []byte("right"), t.suite.nh)
		if err != nil {
			return nil, err
		}
		delete(t.nodes, x)
		t.nodes[x.left()] = left
		t.nodes[x.right()] = right
	}
	leafSecret := t.nodes[target]
	delete(t.nodes, target)
	var pair [2]*hashRatchet
	for kind, label := range []string{"handshake", "application"} {
		if kind == int(handshakeRatchet) && t.applicationOnly {
			continue
		}
		secret, err := t.suite.ExpandWithLabel(leafSecret, label, nil, t.suite.nh)
		if err != nil {
			return nil, err
		}
		pair[kind] = &hashRatchet{suite: t.suite, secret: secret, skipped: map[uint32]keyAndNonce{}}
	}
	t.ratchets[l] = &pair
	return pair[kind], nil
}

// retire turns the tree of an epoch that ended into one that only decrypts
// late application messages: every handshake ratchet is deleted (a
// handshake message for a past epoch is refused unread) and none is derived
// again.
func (t *secretTree) retire() {
	t.applicationOnly = true
	for _, pair := range t.ratchets {
		pair[handshakeRatchet] = nil
	}
}

type keyAndNonce struct {
	key, nonce []byte
}

// hashRatchet is one sender's key ratchet: generation next has secret.
type hashRatchet struct {
	suite   *Suite
	next    uint32
	secret  []byte
	skipped map[uint32]keyAndNonce
}

// step derives the key and nonce of the current generation and moves on.
func (r *hashRatchet) step() (uint32, keyAndNonce, error) {
	s := r.suite
	gen := r.next
	key, err := s.DeriveTreeSecret(r.secret, "key", gen, s.nk)
	if err != nil {
		return 0, keyAndNonce{}, err
	}
	nonce, err := s.DeriveTreeSecret(r.secret, "nonce", gen, s.nn)
	if err != nil {
		return 0, keyAndNonce{}, err
	}
	next, err := s.DeriveTreeSecret(r.secret, "secret", gen, s.nh)
	if err != nil {
		return 0, keyAndNonce{}, err
	}
	r.secret, r.next = next, gen+1
	return gen, keyAndNonce{key, nonce}, nil
}

// get returns the key and nonce of generation gen for a received message and
// forgets them, so no key decrypts twice.
func (r *hashRatchet) get(gen uint32) (keyAndNonce, error) {
	if gen < r.next {
		kn, ok := r.skipped[gen]
		if !ok {
			return keyAndNonce{}, fmt.Errorf("generation %d was already used or is too old", gen)
		}
		delete(r.skipped, gen)
		return kn, nil
	}
	if gen-r.next > maxRatchetForward {
		return keyAndNonce{}, fmt.Errorf("generation %d is more than %d ahead of %d", gen, maxRatchetForward, r.next)
	}
	for {
		g, kn, err := r.step()
		if err != nil {
			return keyAndNonce{}, err
		}
		if g == gen {
			return kn, nil
		}
		r.skipped[g] = kn
		if len(r.skipped) > maxSkippedKeys {
			oldest := g
			for k := range r.skipped {
				oldest = min(oldest, k)
			}
			delete(r.skipped, oldest)
		}
	}
}
