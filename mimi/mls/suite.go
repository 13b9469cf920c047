package mls

import (
	"crypto"
	"crypto/ecdh"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"io"

	circlhpke "github.com/cloudflare/circl/hpke"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// CipherSuite identifies an MLS cipher suite (RFC 9420 section 17.1).
type CipherSuite uint16

// The cipher suites of RFC 9420, all supported. The standard library
// implements them, except X448 and Ed448 (suites 4 and 6), which come from
// github.com/cloudflare/circl.
const (
	MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519        CipherSuite = 0x0001
	MLS_128_DHKEMP256_AES128GCM_SHA256_P256             CipherSuite = 0x0002
	MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519 CipherSuite = 0x0003
	MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448            CipherSuite = 0x0004
	MLS_256_DHKEMP521_AES256GCM_SHA512_P521             CipherSuite = 0x0005
	MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448     CipherSuite = 0x0006
	MLS_256_DHKEMP384_AES256GCM_SHA384_P384             CipherSuite = 0x0007
)

func (c CipherSuite) String() string {
	switch c {
	case MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519:
		return "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"
	case MLS_128_DHKEMP256_AES128GCM_SHA256_P256:
		return "MLS_128_DHKEMP256_AES128GCM_SHA256_P256"
	case MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519:
		return "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519"
	case MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448:
		return "MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448"
	case MLS_256_DHKEMP521_AES256GCM_SHA512_P521:
		return "MLS_256_DHKEMP521_AES256GCM_SHA512_P521"
	case MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448:
		return "MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448"
	case MLS_256_DHKEMP384_AES256GCM_SHA384_P384:
		return "MLS_256_DHKEMP384_AES256GCM_SHA384_P384"
	}
	return fmt.Sprintf("cipher suite 0x%04x", uint16(c))
}

// UnsupportedCipherSuiteError reports a cipher suite this implementation
// cannot operate: a code point RFC 9420 does not define (GREASE, private
// use, unassigned).
type UnsupportedCipherSuiteError struct {
	Suite CipherSuite
}

func (e *UnsupportedCipherSuiteError) Error() string {
	return fmt.Sprintf("unsupported cipher suite 0x%04x", uint16(e.Suite))
}

// SupportedCipherSuites lists the suites this implementation operates: every
// suite of RFC 9420.
func SupportedCipherSuites() []CipherSuite {
	return []CipherSuite{0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0006, 0x0007}
}

// Suite holds the primitives of one supported cipher suite. It is immutable
// and safe for concurrent use. Every suite hashes, MACs, derives and
// protects messages with the standard library; its HPKE and signature
// schemes sit behind hpkeScheme and signatureScheme, so that X448 and Ed448
// (circl) are the only primitives from outside it.
type Suite struct {
	id      CipherSuite
	newHash func() hash.Hash
	hpke    hpkeScheme
	sig     signatureScheme
	chacha  bool // the AEAD is ChaCha20-Poly1305, else AES-GCM
	nh      int  // hash and KDF output length
	nk, nn  int  // AEAD key and nonce lengths
}

// Suite returns the primitives of c, or an *UnsupportedCipherSuiteError.
func (c CipherSuite) Suite() (*Suite, error) {
	s := lookupSuite(c)
	if s == nil {
		return nil, &UnsupportedCipherSuiteError{Suite: c}
	}
	return s, nil
}

// Supported reports whether this implementation operates c.
func (c CipherSuite) Supported() bool { return lookupSuite(c) != nil }

// lookupSuite builds the suite's primitive set. The values are constructed on
// each call; they are small and hold no mutable state.
func lookupSuite(c CipherSuite) *Suite {
	switch c {
	case MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519:
		return &Suite{id: c, newHash: sha256.New, nh: 32, nk: 16, nn: 12,
			hpke: stdHPKE{kem: hpke.DHKEM(ecdh.X25519()), kdf: hpke.HKDFSHA256(), aead: hpke.AES128GCM()},
			sig:  ed25519Scheme{}}
	case MLS_128_DHKEMP256_AES128GCM_SHA256_P256:
		return &Suite{id: c, newHash: sha256.New, nh: 32, nk: 16, nn: 12,
			hpke: stdHPKE{kem: hpke.DHKEM(ecdh.P256()), kdf: hpke.HKDFSHA256(), aead: hpke.AES128GCM(), scalarLen: 32},
			sig:  ecdsaScheme{curve: elliptic.P256(), hash: crypto.SHA256}}
	case MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519:
		return &Suite{id: c, newHash: sha256.New, nh: 32, nk: 32, nn: 12, chacha: true,
			hpke: stdHPKE{kem: hpke.DHKEM(ecdh.X25519()), kdf: hpke.HKDFSHA256(), aead: hpke.ChaCha20Poly1305()},
			sig:  ed25519Scheme{}}
	case MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448:
		return &Suite{id: c, newHash: sha512.New, nh: 64, nk: 32, nn: 12,
			hpke: newX448HPKE(circlhpke.AEAD_AES256GCM),
			sig:  ed448Scheme{}}
	case MLS_256_DHKEMP521_AES256GCM_SHA512_P521:
		return &Suite{id: c, newHash: sha512.New, nh: 64, nk: 32, nn: 12,
			hpke: stdHPKE{kem: hpke.DHKEM(ecdh.P521()), kdf: hpke.HKDFSHA512(), aead: hpke.AES256GCM(), scalarLen: 66},
			sig:  ecdsaScheme{curve: elliptic.P521(), hash: crypto.SHA512}}
	case MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448:
		return &Suite{id: c, newHash: sha512.New, nh: 64, nk: 32, nn: 12, chacha: true,
			hpke: newX448HPKE(circlhpke.AEAD_ChaCha20Poly1305),
			sig:  ed448Scheme{}}
	case MLS_256_DHKEMP384_AES256GCM_SHA384_P384:
		return &Suite{id: c, newHash: sha512.New384, nh: 48, nk: 32, nn: 12,
			hpke: stdHPKE{kem: hpke.DHKEM(ecdh.P384()), kdf: hpke.HKDFSHA384(), aead: hpke.AES256GCM(), scalarLen: 48},
			sig:  ecdsaScheme{curve: elliptic.P384(), hash: crypto.SHA384}}
	}
	return nil
}

// ID returns the suite's code point.
func (s *Suite) ID() CipherSuite { return s.id }

// HashLen returns the length of the suite's hash and KDF output (KDF.Nh).
func (s *Suite) HashLen() int { return s.nh }

// AEADKeyLen returns AEAD.Nk.
func (s *Suite) AEADKeyLen() int { return s.nk }

// AEADNonceLen returns AEAD.Nn.
func (s *Suite) AEADNonceLen() int { return s.nn }

// Hash returns the suite's hash of the concatenation of parts.
func (s *Suite) Hash(parts ...[]byte) []byte {
	h := s.newHash()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// MAC returns HMAC(key, data) with the suite's hash.
func (s *Suite) MAC(key, data []byte) []byte {
	m := hmac.New(s.newHash, key)
	m.Write(data)
	return m.Sum(nil)
}

// VerifyMAC reports in constant time whether tag is MAC(key, data).
func (s *Suite) VerifyMAC(key, data, tag []byte) bool {
	return hmac.Equal(s.MAC(key, data), tag)
}

// Extract is HKDF-Extract with the suite's hash.
func (s *Suite) Extract(salt, ikm []byte) []byte {
	// HMAC with a nil key equals HMAC with Nh zero bytes, as HKDF requires.
	return s.MAC(salt, ikm)
}

// Expand is HKDF-Expand with the suite's hash.
func (s *Suite) Expand(prk, info []byte, length int) ([]byte, error) {
	if length > 255*s.nh {
		return nil, fmt.Errorf("HKDF-Expand: length %d exceeds 255*Nh", length)
	}
	out := make([]byte, 0, length)
	var prev []byte
	for i := byte(1); len(out) < length; i++ {
		m := hmac.New(s.newHash, prk)
		m.Write(prev)
		m.Write(info)
		m.Write([]byte{i})
		prev = m.Sum(nil)
		out = append(out, prev...)
	}
	return out[:length], nil
}

const labelPrefix = "MLS 1.0 "

// ExpandWithLabel derives length bytes from secret (RFC 9420 section 8).
func (s *Suite) ExpandWithLabel(secret []byte, label string, context []byte, length int) ([]byte, error) {
	if length < 0 || length > 0xffff {
		return nil, fmt.Errorf("ExpandWithLabel: length %d out of range", length)
	}
	var w wire.Writer
	w.Uint16(uint16(length))
	w.Opaque([]byte(labelPrefix + label))
	w.Opaque(context)
	info, err := w.Bytes()
	if err != nil {
		return nil, fmt.Errorf("ExpandWithLabel %q: %w", label, err)
	}
	return s.Expand(secret, info, length)
}

// DeriveSecret is ExpandWithLabel(secret, label, "", Nh).
func (s *Suite) DeriveSecret(secret []byte, label string) []byte {
	out, err := s.ExpandWithLabel(secret, label, nil, s.nh)
	if err != nil {
		panic(err) // Nh is always a valid length
	}
	return out
}

// DeriveTreeSecret is ExpandWithLabel(secret, label, generation, length)
// (RFC 9420 section 9).
func (s *Suite) DeriveTreeSecret(secret []byte, label string, generation uint32, length int) ([]byte, error) {
	ctx := []byte{byte(generation >> 24), byte(generation >> 16), byte(generation >> 8), byte(generation)}
	return s.ExpandWithLabel(secret, label, ctx, length)
}

// RefHash computes RefHash(label, value) (RFC 9420 section 5.2).
func (s *Suite) RefHash(label string, value []byte) []byte {
	var w wire.Writer
	w.Opaque([]byte(label))
	w.Opaque(value)
	in, err := w.Bytes()
	if err != nil {
		panic(err) // values come from decoded or locally built structs
	}
	return s.Hash(in)
}

func labeled(label string, content []byte) ([]byte, error) {
	var w wire.Writer
	w.Opaque([]byte(labelPrefix + label))
	w.Opaque(content)
	return w.Bytes()
}

// ErrBadSignature reports a signature that does not verify.
var ErrBadSignature = errors.New("signature does not verify")

// VerifyWithLabel checks a signature made by SignWithLabel (RFC 9420 section
// 5.1.2). It returns ErrBadSignature, possibly wrapped, when it does not
// verify.
func (s *Suite) VerifyWithLabel(publicKey []byte, label string, content, signature []byte) error {
	msg, err := labeled(label, content)
	if err != nil {
		return err
	}
	return s.sig.verify(publicKey, msg, signature)
}

// SigningKey is a member's private signature key for one suite.
type SigningKey struct {
	suite *Suite
	key   signer
}

// GenerateSigningKey creates a fresh signature key pair.
func (s *Suite) GenerateSigningKey() (*SigningKey, error) {
	k, err := s.sig.generate()
	if err != nil {
		return nil, fmt.Errorf("%s signature key: %w", s.id, err)
	}
	return &SigningKey{suite: s, key: k}, nil
}

// ParseSigningKey loads a private signature key in the suite's raw form: the
// seed for Ed25519 (32 bytes) and Ed448 (57 bytes), the big-endian scalar for
// ECDSA.
func (s *Suite) ParseSigningKey(raw []byte) (*SigningKey, error) {
	k, err := s.sig.parse(raw)
	if err != nil {
		return nil, err
	}
	return &SigningKey{suite: s, key: k}, nil
}

// PublicKey returns the encoded public key, as it appears in a LeafNode.
func (k *SigningKey) PublicKey() []byte { return k.key.public() }

// Bytes returns the private key in the form ParseSigningKey reads.
func (k *SigningKey) Bytes() []byte { return k.key.raw() }

// SignWithLabel signs content under label (RFC 9420 section 5.1.2).
func (k *SigningKey) SignWithLabel(label string, content []byte) ([]byte, error) {
	msg, err := labeled(label, content)
	if err != nil {
		return nil, err
	}
	return k.key.sign(msg)
}

// EncryptWithLabel seals plaintext to an HPKE public key (RFC 9420 section
// 5.1.3).
func (s *Suite) EncryptWithLabel(publicKey []byte, label string, context, plaintext []byte) (HPKECiphertext, error) {
	info, err := labeled(label, context)
	if err != nil {
		return HPKECiphertext{}, err
	}
	enc, ct, err := s.hpke.seal(publicKey, info, plaintext)
	if err != nil {
		return HPKECiphertext{}, err
	}
	return HPKECiphertext{KEMOutput: enc, Ciphertext: ct}, nil
}

// DecryptWithLabel opens a ciphertext made by EncryptWithLabel.
func (s *Suite) DecryptWithLabel(privateKey []byte, label string, context []byte, ct HPKECiphertext) ([]byte, error) {
	info, err := labeled(label, context)
	if err != nil {
		return nil, err
	}
	return s.hpke.open(privateKey, ct.KEMOutput, info, ct.Ciphertext)
}

// DeriveKeyPair maps a secret to an HPKE key pair (RFC 9180 DeriveKeyPair) and
// returns the serialized private and public keys.
func (s *Suite) DeriveKeyPair(ikm []byte) (priv, pub []byte, err error) {
	return s.hpke.deriveKeyPair(ikm)
}

// GenerateHPKEKey creates a fresh HPKE key pair.
func (s *Suite) GenerateHPKEKey() (priv, pub []byte, err error) {
	return s.hpke.generate()
}

// HPKEPublicKey returns the public key of a serialized HPKE private key.
func (s *Suite) HPKEPublicKey(privateKey []byte) ([]byte, error) {
	return s.hpke.publicKey(privateKey)
}

// ValidHPKEPublicKey reports whether b decodes as a public key of the suite's
// KEM.
func (s *Suite) ValidHPKEPublicKey(b []byte) bool {
	return s.hpke.validPublicKey(b)
}

// externalInitLabel is the HPKE exporter context of external initialization.
const externalInitLabel = "MLS 1.0 external init secret"

// ExportExternalInit runs the sender side of external initialization (RFC
// 9420 section 8.3) against the group's external_pub.
func (s *Suite) ExportExternalInit(externalPub []byte) (kemOutput, initSecret []byte, err error) {
	kemOutput, initSecret, err = s.hpke.exportSender(externalPub, []byte(externalInitLabel), s.nh)
	if err != nil {
		return nil, nil, fmt.Errorf("external_pub: %w", err)
	}
	return kemOutput, initSecret, nil
}

// ImportExternalInit runs the receiver side of external initialization.
func (s *Suite) ImportExternalInit(externalPriv, kemOutput []byte) ([]byte, error) {
	secret, err := s.hpke.exportReceiver(externalPriv, kemOutput, []byte(externalInitLabel), s.nh)
	if err != nil {
		return nil, fmt.Errorf("external init: %w", err)
	}
	return secret, nil
}

// randomBytes returns n bytes from r, or crypto/rand when r is nil.
func randomBytes(r io.Reader, n int) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// constantTimeEqual reports whether a and b are equal without leaking where
// they differ.
func constantTimeEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// encodeCertificateKey returns a certificate's public key in the suite's
// SignaturePublicKey encoding.
func encodeCertificateKey(s *Suite, cert *x509.Certificate) ([]byte, error) {
	pub, err := s.sig.certificateKey(cert)
	if err != nil {
		return nil, fmt.Errorf("suite %s: %w", s.id, err)
	}
	return pub, nil
}
