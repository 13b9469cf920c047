package mls

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/dh/x25519"
)

// x25519HPKE is crypto/hpke's DHKEM(X25519, HKDF-SHA256) with the curve
// arithmetic done by circl: crypto/ecdh computes X25519 with the generic
// Montgomery ladder, circl with assembly field arithmetic and, for public
// keys, a fixed-base ladder over a table of multiples of the base point
// (23 against 54 µs a public key, 38 against 55 µs a shared secret here).
//
// A commit makes at least two key pairs (the committer's new leaf, the
// GroupInfo's external key) and one per node of its path; a member
// processing it decrypts one path secret and derives the key pairs above
// it. Key pairs and decryption go through circl; encryption (its
// ephemeral key included) stays crypto/hpke's, whose API takes no key
// from outside for it. Keys are serialized as crypto/hpke serializes them
// (RFC 9180 7.1.2: the private key clamped).
type x25519HPKE struct{ stdHPKE }

func newX25519HPKE(aead hpke.AEAD) x25519HPKE {
	return x25519HPKE{stdHPKE{kem: hpke.DHKEM(ecdh.X25519()), kdf: hpke.HKDFSHA256(), aead: aead, loadPrivate: loadX25519}}
}

// x25519KEMSuiteID is RFC 9180's suite_id for DHKEM(X25519, HKDF-SHA256).
const x25519KEMSuiteID = "KEM\x00\x20"

// x25519KeyPair clamps a private key and computes its public key.
func x25519KeyPair(sk []byte) (priv, pub x25519.Key, err error) {
	if len(sk) != x25519.Size {
		return priv, pub, fmt.Errorf("X25519 private key of %d bytes", len(sk))
	}
	copy(priv[:], sk)
	x25519.KeyGen(&pub, &priv)
	priv[0] &= 248
	priv[31] = priv[31]&127 | 64
	return priv, pub, nil
}

func (x25519HPKE) keyPair(sk []byte) ([]byte, []byte, error) {
	priv, pub, err := x25519KeyPair(sk)
	if err != nil {
		return nil, nil, err
	}
	return priv[:], pub[:], nil
}

func (h x25519HPKE) deriveKeyPair(ikm []byte) ([]byte, []byte, error) {
	sk, err := dhkemSecretKey(sha256.New, x25519KEMSuiteID, ikm, x25519.Size)
	if err != nil {
		return nil, nil, err
	}
	return h.keyPair(sk)
}

func (h x25519HPKE) generate() ([]byte, []byte, error) {
	sk := make([]byte, x25519.Size)
	_, _ = rand.Read(sk) // never fails (crypto/rand)
	return h.keyPair(sk)
}

func (h x25519HPKE) publicKey(privateKey []byte) ([]byte, error) {
	_, pub, err := h.keyPair(privateKey)
	return pub, err
}

// x25519Key is an X25519 private key for crypto/hpke's decapsulation
// (ecdh.KeyExchanger), its public key and shared secrets computed by circl.
type x25519Key struct {
	priv x25519.Key
	pub  *ecdh.PublicKey
}

// loadX25519 loads a serialized private key as crypto/hpke would, with
// circl doing the arithmetic.
func loadX25519(b []byte) (hpke.PrivateKey, error) {
	priv, pub, err := x25519KeyPair(b)
	if err != nil {
		return nil, err
	}
	pk, err := ecdh.X25519().NewPublicKey(pub[:])
	if err != nil {
		return nil, err
	}
	return hpke.NewDHKEMPrivateKey(&x25519Key{priv: priv, pub: pk})
}

func (k *x25519Key) PublicKey() *ecdh.PublicKey { return k.pub }

func (k *x25519Key) Curve() ecdh.Curve { return ecdh.X25519() }

// errLowOrder is crypto/ecdh's refusal of a peer key whose shared secret
// is all zeros (a point of small order, RFC 7748 section 6.1).
var errLowOrder = errors.New("X25519: the peer's public key is a low-order point")

// ECDH computes the shared secret with remote, refusing a low-order point
// as crypto/ecdh does.
func (k *x25519Key) ECDH(remote *ecdh.PublicKey) ([]byte, error) {
	var pub, shared x25519.Key
	copy(pub[:], remote.Bytes())
	if !x25519.Shared(&shared, &k.priv, &pub) {
		return nil, errLowOrder
	}
	return shared[:], nil
}
