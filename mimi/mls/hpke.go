package mls

import (
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha512"
	"fmt"

	circlhpke "github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"
)

// hpkeScheme is the HPKE (RFC 9180) half of a cipher suite: a KEM, a KDF and
// an AEAD in base mode. Keys cross it in their serialized forms
// (SerializePublicKey, SerializePrivateKey), as MLS carries them.
type hpkeScheme interface {
	// seal encrypts plaintext to publicKey under info.
	seal(publicKey, info, plaintext []byte) (enc, ciphertext []byte, err error)
	// open decrypts what seal made for the holder of privateKey.
	open(privateKey, enc, info, ciphertext []byte) ([]byte, error)
	// exportSender sets up a context to publicKey with an empty info and
	// exports length bytes under exporterContext.
	exportSender(publicKey, exporterContext []byte, length int) (enc, secret []byte, err error)
	// exportReceiver is the receiving side of exportSender.
	exportReceiver(privateKey, enc, exporterContext []byte, length int) ([]byte, error)
	// deriveKeyPair is RFC 9180 DeriveKeyPair: any ikm length.
	deriveKeyPair(ikm []byte) (priv, pub []byte, err error)
	generate() (priv, pub []byte, err error)
	publicKey(privateKey []byte) ([]byte, error)
	validPublicKey(publicKey []byte) bool
}

// stdHPKE is crypto/hpke, which serves every suite whose KEM curve the
// standard library has (X25519, P-256, P-384, P-521).
type stdHPKE struct {
	kem  hpke.KEM
	kdf  hpke.KDF
	aead hpke.AEAD
	// scalarLen is the private scalar length of a NIST curve, 0 for X25519.
	scalarLen int
}

// privateKey loads a serialized private key. NIST-curve scalars that an
// encoder shortened by dropping leading zero bytes are restored.
func (h stdHPKE) privateKey(b []byte) (hpke.PrivateKey, error) {
	if len(b) < h.scalarLen {
		b = append(make([]byte, h.scalarLen-len(b)), b...)
	}
	return h.kem.NewPrivateKey(b)
}

func (h stdHPKE) sender(publicKey, info []byte) ([]byte, *hpke.Sender, error) {
	pk, err := h.kem.NewPublicKey(publicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("HPKE public key: %w", err)
	}
	return hpke.NewSender(pk, h.kdf, h.aead, info)
}

func (h stdHPKE) recipient(privateKey, enc, info []byte) (*hpke.Recipient, error) {
	sk, err := h.privateKey(privateKey)
	if err != nil {
		return nil, fmt.Errorf("HPKE private key: %w", err)
	}
	r, err := hpke.NewRecipient(enc, sk, h.kdf, h.aead, info)
	if err != nil {
		return nil, fmt.Errorf("HPKE decapsulation: %w", err)
	}
	return r, nil
}

func (h stdHPKE) seal(publicKey, info, plaintext []byte) ([]byte, []byte, error) {
	enc, s, err := h.sender(publicKey, info)
	if err != nil {
		return nil, nil, err
	}
	ct, err := s.Seal(nil, plaintext)
	return enc, ct, err
}

func (h stdHPKE) open(privateKey, enc, info, ciphertext []byte) ([]byte, error) {
	r, err := h.recipient(privateKey, enc, info)
	if err != nil {
		return nil, err
	}
	pt, err := r.Open(nil, ciphertext)
	if err != nil {
		return nil, fmt.Errorf("HPKE open: %w", err)
	}
	return pt, nil
}

func (h stdHPKE) exportSender(publicKey, exporterContext []byte, length int) ([]byte, []byte, error) {
	enc, s, err := h.sender(publicKey, nil)
	if err != nil {
		return nil, nil, err
	}
	secret, err := s.Export(string(exporterContext), length)
	return enc, secret, err
}

func (h stdHPKE) exportReceiver(privateKey, enc, exporterContext []byte, length int) ([]byte, error) {
	r, err := h.recipient(privateKey, enc, nil)
	if err != nil {
		return nil, err
	}
	return r.Export(string(exporterContext), length)
}

func (h stdHPKE) keyPair(sk hpke.PrivateKey, err error) ([]byte, []byte, error) {
	if err != nil {
		return nil, nil, err
	}
	priv, err := sk.Bytes()
	if err != nil {
		return nil, nil, err
	}
	return priv, sk.PublicKey().Bytes(), nil
}

func (h stdHPKE) deriveKeyPair(ikm []byte) ([]byte, []byte, error) {
	return h.keyPair(h.kem.DeriveKeyPair(ikm))
}

func (h stdHPKE) generate() ([]byte, []byte, error) { return h.keyPair(h.kem.GenerateKey()) }

func (h stdHPKE) publicKey(privateKey []byte) ([]byte, error) {
	sk, err := h.privateKey(privateKey)
	if err != nil {
		return nil, err
	}
	return sk.PublicKey().Bytes(), nil
}

func (h stdHPKE) validPublicKey(publicKey []byte) bool {
	_, err := h.kem.NewPublicKey(publicKey)
	return err == nil
}

// x448HPKE is DHKEM(X448, HKDF-SHA512) with HKDF-SHA512 from circl, for the
// suites the standard library cannot serve (4 and 6).
type x448HPKE struct {
	suite circlhpke.Suite
}

func newX448HPKE(aead circlhpke.AEAD) x448HPKE {
	return x448HPKE{suite: circlhpke.NewSuite(circlhpke.KEM_X448_HKDF_SHA512, circlhpke.KDF_HKDF_SHA512, aead)}
}

func (x448HPKE) scheme() kem.Scheme { return circlhpke.KEM_X448_HKDF_SHA512.Scheme() }

func (h x448HPKE) parsePublic(b []byte) (kem.PublicKey, error) {
	pk, err := h.scheme().UnmarshalBinaryPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("X448 public key: %w", err)
	}
	return pk, nil
}

func (h x448HPKE) parsePrivate(b []byte) (kem.PrivateKey, error) {
	sk, err := h.scheme().UnmarshalBinaryPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("X448 private key: %w", err)
	}
	return sk, nil
}

func (h x448HPKE) sender(publicKey, info []byte) ([]byte, circlhpke.Sealer, error) {
	pk, err := h.parsePublic(publicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("HPKE public key: %w", err)
	}
	s, err := h.suite.NewSender(pk, info)
	if err != nil {
		return nil, nil, err
	}
	return s.Setup(rand.Reader)
}

func (h x448HPKE) receiver(privateKey, enc, info []byte) (circlhpke.Opener, error) {
	sk, err := h.parsePrivate(privateKey)
	if err != nil {
		return nil, fmt.Errorf("HPKE private key: %w", err)
	}
	r, err := h.suite.NewReceiver(sk, info)
	if err != nil {
		return nil, err
	}
	o, err := r.Setup(enc)
	if err != nil {
		return nil, fmt.Errorf("HPKE decapsulation: %w", err)
	}
	return o, nil
}

func (h x448HPKE) seal(publicKey, info, plaintext []byte) ([]byte, []byte, error) {
	enc, sealer, err := h.sender(publicKey, info)
	if err != nil {
		return nil, nil, err
	}
	ct, err := sealer.Seal(plaintext, nil)
	return enc, ct, err
}

func (h x448HPKE) open(privateKey, enc, info, ciphertext []byte) ([]byte, error) {
	o, err := h.receiver(privateKey, enc, info)
	if err != nil {
		return nil, err
	}
	pt, err := o.Open(ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("HPKE open: %w", err)
	}
	return pt, nil
}

// maxExport is 255*Nh for HKDF-SHA512; circl panics beyond it.
const maxExport = 255 * sha512.Size

func (h x448HPKE) exportSender(publicKey, exporterContext []byte, length int) ([]byte, []byte, error) {
	if length < 0 || length > maxExport {
		return nil, nil, fmt.Errorf("HPKE export of %d bytes", length)
	}
	enc, sealer, err := h.sender(publicKey, nil)
	if err != nil {
		return nil, nil, err
	}
	return enc, sealer.Export(exporterContext, uint(length)), nil
}

func (h x448HPKE) exportReceiver(privateKey, enc, exporterContext []byte, length int) ([]byte, error) {
	if length < 0 || length > maxExport {
		return nil, fmt.Errorf("HPKE export of %d bytes", length)
	}
	o, err := h.receiver(privateKey, enc, nil)
	if err != nil {
		return nil, err
	}
	return o.Export(exporterContext, uint(length)), nil
}

// x448KEMSuiteID is RFC 9180's suite_id for DHKEM(X448, HKDF-SHA512).
const x448KEMSuiteID = "KEM\x00\x21"

// deriveKeyPair implements RFC 9180 DeriveKeyPair for X448 itself: circl's
// accepts only 56-byte seeds, while MLS derives from Nh = 64-byte secrets.
func (h x448HPKE) deriveKeyPair(ikm []byte) ([]byte, []byte, error) {
	// LabeledExtract("", "dkp_prk", ikm), then LabeledExpand(dkp_prk, "sk",
	// "", Nsk); X448 clamps inside the scalar multiplication.
	label := func(l string) []byte { return []byte("HPKE-v1" + x448KEMSuiteID + l) }
	prk, err := hkdf.Extract(sha512.New, append(label("dkp_prk"), ikm...), nil)
	if err != nil {
		return nil, nil, err
	}
	nsk := h.scheme().PrivateKeySize()
	info := append([]byte{byte(nsk >> 8), byte(nsk)}, label("sk")...)
	sk, err := hkdf.Expand(sha512.New, prk, string(info), nsk)
	if err != nil {
		return nil, nil, err
	}
	pub, err := h.publicKey(sk)
	if err != nil {
		return nil, nil, err
	}
	return sk, pub, nil
}

func (h x448HPKE) generate() ([]byte, []byte, error) {
	pk, sk, err := h.scheme().GenerateKeyPair()
	if err != nil {
		return nil, nil, err
	}
	priv, err := sk.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	pub, err := pk.MarshalBinary()
	return priv, pub, err
}

func (h x448HPKE) publicKey(privateKey []byte) ([]byte, error) {
	sk, err := h.parsePrivate(privateKey)
	if err != nil {
		return nil, err
	}
	return sk.Public().MarshalBinary()
}

// validPublicKey accepts any 56-byte string, as RFC 9180 does for X448:
// low-order points are refused when a shared secret is computed.
func (h x448HPKE) validPublicKey(publicKey []byte) bool {
	_, err := h.parsePublic(publicKey)
	return err == nil
}

// Both implementations serve the interface.
var (
	_ hpkeScheme = stdHPKE{}
	_ hpkeScheme = x448HPKE{}
)
