package mls

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
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

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// CipherSuite identifies an MLS cipher suite (RFC 9420 section 17.1).
type CipherSuite uint16

// The cipher suites of RFC 9420. Suites 4 and 6 need X448 and Ed448, which the
// Go standard library does not implement; they decode but every operation on
// them fails with an *UnsupportedCipherSuiteError.
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
// cannot operate.
type UnsupportedCipherSuiteError struct {
	Suite CipherSuite
}

func (e *UnsupportedCipherSuiteError) Error() string {
	switch e.Suite {
	case MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448, MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448:
		return fmt.Sprintf("unsupported cipher suite %s: X448 and Ed448 are not in the Go standard library", e.Suite)
	}
	return fmt.Sprintf("unsupported cipher suite 0x%04x", uint16(e.Suite))
}

// SupportedCipherSuites lists the suites this implementation operates.
func SupportedCipherSuites() []CipherSuite {
	return []CipherSuite{0x0001, 0x0002, 0x0003, 0x0005, 0x0007}
}

// Suite holds the primitives of one supported cipher suite. It is immutable
// and safe for concurrent use.
type Suite struct {
	id      CipherSuite
	newHash func() hash.Hash
	kem     hpke.KEM
	kdf     hpke.KDF
	aead    hpke.AEAD
	curve   elliptic.Curve // nil for Ed25519
	sigHash crypto.Hash    // prehash for ECDSA
	nh      int            // hash and KDF output length
	nk, nn  int            // AEAD key and nonce lengths
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
		return &Suite{id: c, newHash: sha256.New, kem: hpke.DHKEM(ecdh.X25519()), kdf: hpke.HKDFSHA256(), aead: hpke.AES128GCM(), nh: 32, nk: 16, nn: 12}
	case MLS_128_DHKEMP256_AES128GCM_SHA256_P256:
		return &Suite{id: c, newHash: sha256.New, kem: hpke.DHKEM(ecdh.P256()), kdf: hpke.HKDFSHA256(), aead: hpke.AES128GCM(), curve: elliptic.P256(), sigHash: crypto.SHA256, nh: 32, nk: 16, nn: 12}
	case MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519:
		return &Suite{id: c, newHash: sha256.New, kem: hpke.DHKEM(ecdh.X25519()), kdf: hpke.HKDFSHA256(), aead: hpke.ChaCha20Poly1305(), nh: 32, nk: 32, nn: 12}
	case MLS_256_DHKEMP521_AES256GCM_SHA512_P521:
		return &Suite{id: c, newHash: sha512.New, kem: hpke.DHKEM(ecdh.P521()), kdf: hpke.HKDFSHA512(), aead: hpke.AES256GCM(), curve: elliptic.P521(), sigHash: crypto.SHA512, nh: 64, nk: 32, nn: 12}
	case MLS_256_DHKEMP384_AES256GCM_SHA384_P384:
		return &Suite{id: c, newHash: sha512.New384, kem: hpke.DHKEM(ecdh.P384()), kdf: hpke.HKDFSHA384(), aead: hpke.AES256GCM(), curve: elliptic.P384(), sigHash: crypto.SHA384, nh: 48, nk: 32, nn: 12}
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
	if s.curve == nil {
		if len(publicKey) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: Ed25519 public key is %d bytes, want %d", ErrBadSignature, len(publicKey), ed25519.PublicKeySize)
		}
		if !ed25519.Verify(publicKey, msg, signature) {
			return ErrBadSignature
		}
		return nil
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(s.curve, publicKey)
	if err != nil {
		return fmt.Errorf("%w: public key: %v", ErrBadSignature, err)
	}
	h := s.sigHash.New()
	h.Write(msg)
	if !ecdsa.VerifyASN1(pub, h.Sum(nil), signature) {
		return ErrBadSignature
	}
	return nil
}

// SigningKey is a member's private signature key for one suite.
type SigningKey struct {
	suite  *Suite
	ed     ed25519.PrivateKey
	ec     *ecdsa.PrivateKey
	public []byte
}

// GenerateSigningKey creates a fresh signature key pair.
func (s *Suite) GenerateSigningKey() (*SigningKey, error) {
	if s.curve == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		return &SigningKey{suite: s, ed: priv, public: priv.Public().(ed25519.PublicKey)}, nil
	}
	priv, err := ecdsa.GenerateKey(s.curve, rand.Reader)
	if err != nil {
		return nil, err
	}
	return s.signingKeyFromECDSA(priv)
}

func (s *Suite) signingKeyFromECDSA(priv *ecdsa.PrivateKey) (*SigningKey, error) {
	pub, err := priv.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	return &SigningKey{suite: s, ec: priv, public: pub}, nil
}

// ParseSigningKey loads a private signature key in the suite's raw form: the
// 32-byte seed for Ed25519, the big-endian scalar for ECDSA.
func (s *Suite) ParseSigningKey(raw []byte) (*SigningKey, error) {
	if s.curve == nil {
		if len(raw) != ed25519.SeedSize {
			return nil, fmt.Errorf("Ed25519 private key is %d bytes, want %d", len(raw), ed25519.SeedSize)
		}
		priv := ed25519.NewKeyFromSeed(raw)
		return &SigningKey{suite: s, ed: priv, public: priv.Public().(ed25519.PublicKey)}, nil
	}
	// Some encoders drop leading zero bytes of the scalar; restore them.
	if size := (s.curve.Params().BitSize + 7) / 8; len(raw) < size {
		raw = append(make([]byte, size-len(raw)), raw...)
	}
	priv, err := ecdsa.ParseRawPrivateKey(s.curve, raw)
	if err != nil {
		return nil, fmt.Errorf("ECDSA private key: %w", err)
	}
	return s.signingKeyFromECDSA(priv)
}

// PublicKey returns the encoded public key, as it appears in a LeafNode.
func (k *SigningKey) PublicKey() []byte { return k.public }

// Bytes returns the private key in the form ParseSigningKey reads.
func (k *SigningKey) Bytes() []byte {
	if k.ed != nil {
		return k.ed.Seed()
	}
	b, err := k.ec.Bytes()
	if err != nil {
		panic(err)
	}
	return b
}

// SignWithLabel signs content under label (RFC 9420 section 5.1.2).
func (k *SigningKey) SignWithLabel(label string, content []byte) ([]byte, error) {
	msg, err := labeled(label, content)
	if err != nil {
		return nil, err
	}
	if k.ed != nil {
		return ed25519.Sign(k.ed, msg), nil
	}
	h := k.suite.sigHash.New()
	h.Write(msg)
	return ecdsa.SignASN1(rand.Reader, k.ec, h.Sum(nil))
}

// EncryptWithLabel seals plaintext to an HPKE public key (RFC 9420 section
// 5.1.3).
func (s *Suite) EncryptWithLabel(publicKey []byte, label string, context, plaintext []byte) (HPKECiphertext, error) {
	pk, err := s.kem.NewPublicKey(publicKey)
	if err != nil {
		return HPKECiphertext{}, fmt.Errorf("HPKE public key: %w", err)
	}
	info, err := labeled(label, context)
	if err != nil {
		return HPKECiphertext{}, err
	}
	enc, sender, err := hpke.NewSender(pk, s.kdf, s.aead, info)
	if err != nil {
		return HPKECiphertext{}, err
	}
	ct, err := sender.Seal(nil, plaintext)
	if err != nil {
		return HPKECiphertext{}, err
	}
	return HPKECiphertext{KEMOutput: enc, Ciphertext: ct}, nil
}

// hpkePrivateKey loads a serialized HPKE private key. NIST-curve scalars
// that an encoder shortened by dropping leading zero bytes are restored.
func (s *Suite) hpkePrivateKey(b []byte) (hpke.PrivateKey, error) {
	if s.curve != nil {
		if size := (s.curve.Params().BitSize + 7) / 8; len(b) < size {
			b = append(make([]byte, size-len(b)), b...)
		}
	}
	return s.kem.NewPrivateKey(b)
}

// DecryptWithLabel opens a ciphertext made by EncryptWithLabel.
func (s *Suite) DecryptWithLabel(privateKey []byte, label string, context []byte, ct HPKECiphertext) ([]byte, error) {
	sk, err := s.hpkePrivateKey(privateKey)
	if err != nil {
		return nil, fmt.Errorf("HPKE private key: %w", err)
	}
	info, err := labeled(label, context)
	if err != nil {
		return nil, err
	}
	r, err := hpke.NewRecipient(ct.KEMOutput, sk, s.kdf, s.aead, info)
	if err != nil {
		return nil, fmt.Errorf("HPKE decapsulation: %w", err)
	}
	pt, err := r.Open(nil, ct.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("HPKE open: %w", err)
	}
	return pt, nil
}

// DeriveKeyPair maps a secret to an HPKE key pair (RFC 9180 DeriveKeyPair) and
// returns the serialized private and public keys.
func (s *Suite) DeriveKeyPair(ikm []byte) (priv, pub []byte, err error) {
	sk, err := s.kem.DeriveKeyPair(ikm)
	if err != nil {
		return nil, nil, err
	}
	priv, err = sk.Bytes()
	if err != nil {
		return nil, nil, err
	}
	return priv, sk.PublicKey().Bytes(), nil
}

// GenerateHPKEKey creates a fresh HPKE key pair.
func (s *Suite) GenerateHPKEKey() (priv, pub []byte, err error) {
	sk, err := s.kem.GenerateKey()
	if err != nil {
		return nil, nil, err
	}
	priv, err = sk.Bytes()
	if err != nil {
		return nil, nil, err
	}
	return priv, sk.PublicKey().Bytes(), nil
}

// HPKEPublicKey returns the public key of a serialized HPKE private key.
func (s *Suite) HPKEPublicKey(privateKey []byte) ([]byte, error) {
	sk, err := s.hpkePrivateKey(privateKey)
	if err != nil {
		return nil, err
	}
	return sk.PublicKey().Bytes(), nil
}

// ValidHPKEPublicKey reports whether b decodes as a public key of the suite's
// KEM.
func (s *Suite) ValidHPKEPublicKey(b []byte) bool {
	_, err := s.kem.NewPublicKey(b)
	return err == nil
}

// ExportExternalInit runs the sender side of external initialization (RFC
// 9420 section 8.3) against the group's external_pub.
func (s *Suite) ExportExternalInit(externalPub []byte) (kemOutput, initSecret []byte, err error) {
	pk, err := s.kem.NewPublicKey(externalPub)
	if err != nil {
		return nil, nil, fmt.Errorf("external_pub: %w", err)
	}
	enc, sender, err := hpke.NewSender(pk, s.kdf, s.aead, nil)
	if err != nil {
		return nil, nil, err
	}
	secret, err := sender.Export("MLS 1.0 external init secret", s.nh)
	return enc, secret, err
}

// ImportExternalInit runs the receiver side of external initialization.
func (s *Suite) ImportExternalInit(externalPriv, kemOutput []byte) ([]byte, error) {
	sk, err := s.hpkePrivateKey(externalPriv)
	if err != nil {
		return nil, err
	}
	r, err := hpke.NewRecipient(kemOutput, sk, s.kdf, s.aead, nil)
	if err != nil {
		return nil, fmt.Errorf("external init decapsulation: %w", err)
	}
	return r.Export("MLS 1.0 external init secret", s.nh)
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
	switch pub := cert.PublicKey.(type) {
	case ed25519.PublicKey:
		if s.curve != nil {
			return nil, fmt.Errorf("certificate holds an Ed25519 key, suite %s signs with ECDSA", s.id)
		}
		return pub, nil
	case *ecdsa.PublicKey:
		if s.curve == nil || pub.Curve != s.curve {
			return nil, fmt.Errorf("certificate key curve does not match suite %s", s.id)
		}
		return pub.Bytes()
	}
	return nil, fmt.Errorf("certificate key type %T is not usable with suite %s", cert.PublicKey, s.id)
}
