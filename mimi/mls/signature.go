package mls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"

	"github.com/cloudflare/circl/sign/ed448"
)

// signatureScheme is the signature half of a cipher suite. Keys cross it in
// the forms MLS carries: SignaturePublicKey as a LeafNode holds it, private
// keys as ParseSigningKey documents.
type signatureScheme interface {
	// verify checks signature over msg; it returns ErrBadSignature,
	// possibly wrapped, when it does not verify.
	verify(publicKey, msg, signature []byte) error
	generate() (signer, error)
	parse(raw []byte) (signer, error)
	// certificateKey returns an X.509 certificate's key in SignaturePublicKey
	// form, or an error when it is not a key of this scheme.
	certificateKey(cert *x509.Certificate) ([]byte, error)
	// rawKeySize is the length of parse's input and the mask for its first
	// byte that keeps a scalar below 2^bits (0xff when any bytes do), so
	// that keys can be derived from a secret.
	rawKeySize() (int, byte)
}

// signer is one private signature key.
type signer interface {
	public() []byte
	sign(msg []byte) ([]byte, error)
	// raw is the form parse reads.
	raw() []byte
	// signDeterministic signs so that the same key and message always give
	// the same bytes (EdDSA is deterministic; ECDSA uses RFC 6979 nonces).
	signDeterministic(msg []byte) ([]byte, error)
}

// ed25519Scheme is Ed25519 (RFC 8032), from the standard library.
type ed25519Scheme struct{}

func (ed25519Scheme) verify(publicKey, msg, signature []byte) error {
	if len(publicKey) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: Ed25519 public key is %d bytes, want %d", ErrBadSignature, len(publicKey), ed25519.PublicKeySize)
	}
	if !ed25519.Verify(publicKey, msg, signature) {
		return ErrBadSignature
	}
	return nil
}

func (ed25519Scheme) generate() (signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return ed25519Signer(priv), nil
}

// parse reads the 32-byte seed.
func (ed25519Scheme) parse(raw []byte) (signer, error) {
	if len(raw) != ed25519.SeedSize {
		return nil, fmt.Errorf("Ed25519 private key is %d bytes, want %d", len(raw), ed25519.SeedSize)
	}
	return ed25519Signer(ed25519.NewKeyFromSeed(raw)), nil
}

func (ed25519Scheme) certificateKey(cert *x509.Certificate) ([]byte, error) {
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("certificate key is %s, the suite signs with Ed25519", cert.PublicKeyAlgorithm)
	}
	return pub, nil
}

type ed25519Signer ed25519.PrivateKey

func (k ed25519Signer) public() []byte { return ed25519.PrivateKey(k).Public().(ed25519.PublicKey) }
func (k ed25519Signer) sign(msg []byte) ([]byte, error) {
	return ed25519.Sign(ed25519.PrivateKey(k), msg), nil
}
func (k ed25519Signer) raw() []byte                                  { return ed25519.PrivateKey(k).Seed() }
func (k ed25519Signer) signDeterministic(msg []byte) ([]byte, error) { return k.sign(msg) }

func (ed25519Scheme) rawKeySize() (int, byte) { return ed25519.SeedSize, 0xff }

// ecdsaScheme is ECDSA over a NIST curve with the suite's hash, signatures
// in DER, public keys uncompressed (RFC 9420 section 5.1.1).
type ecdsaScheme struct {
	curve elliptic.Curve
	hash  crypto.Hash
}

func (e ecdsaScheme) digest(msg []byte) []byte {
	h := e.hash.New()
	h.Write(msg)
	return h.Sum(nil)
}

func (e ecdsaScheme) verify(publicKey, msg, signature []byte) error {
	pub, err := ecdsa.ParseUncompressedPublicKey(e.curve, publicKey)
	if err != nil {
		return fmt.Errorf("%w: public key: %v", ErrBadSignature, err)
	}
	if !ecdsa.VerifyASN1(pub, e.digest(msg), signature) {
		return ErrBadSignature
	}
	return nil
}

func (e ecdsaScheme) generate() (signer, error) {
	priv, err := ecdsa.GenerateKey(e.curve, rand.Reader)
	if err != nil {
		return nil, err
	}
	return e.signer(priv)
}

// parse reads the big-endian scalar.
func (e ecdsaScheme) parse(raw []byte) (signer, error) {
	// Some encoders drop leading zero bytes of the scalar; restore them.
	if size := (e.curve.Params().BitSize + 7) / 8; len(raw) < size {
		raw = append(make([]byte, size-len(raw)), raw...)
	}
	priv, err := ecdsa.ParseRawPrivateKey(e.curve, raw)
	if err != nil {
		return nil, fmt.Errorf("ECDSA private key: %w", err)
	}
	return e.signer(priv)
}

func (e ecdsaScheme) signer(priv *ecdsa.PrivateKey) (signer, error) {
	pub, err := priv.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	return ecdsaSigner{scheme: e, priv: priv, pub: pub}, nil
}

func (e ecdsaScheme) certificateKey(cert *x509.Certificate) ([]byte, error) {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != e.curve {
		return nil, fmt.Errorf("certificate key is %s, the suite signs with ECDSA on %s", cert.PublicKeyAlgorithm, e.curve.Params().Name)
	}
	return pub.Bytes()
}

type ecdsaSigner struct {
	scheme ecdsaScheme
	priv   *ecdsa.PrivateKey
	pub    []byte
}

func (k ecdsaSigner) public() []byte { return k.pub }
func (k ecdsaSigner) sign(msg []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, k.priv, k.scheme.digest(msg))
}

// signDeterministic uses RFC 6979 nonces: crypto/ecdsa signs
// deterministically when given no random source.
func (k ecdsaSigner) signDeterministic(msg []byte) ([]byte, error) {
	return k.priv.Sign(nil, k.scheme.digest(msg), k.scheme.hash)
}

func (e ecdsaScheme) rawKeySize() (int, byte) {
	bits := e.curve.Params().BitSize
	mask := byte(0xff)
	if r := bits % 8; r != 0 {
		mask = byte(1)<<r - 1
	}
	return (bits + 7) / 8, mask
}

func (k ecdsaSigner) raw() []byte {
	b, err := k.priv.Bytes()
	if err != nil {
		panic(err) // the key was made or parsed on a supported curve
	}
	return b
}

// ed448Scheme is Ed448 (RFC 8032, pure, empty context) from circl: the
// standard library has no Ed448.
type ed448Scheme struct{}

func (ed448Scheme) verify(publicKey, msg, signature []byte) error {
	if len(publicKey) != ed448.PublicKeySize {
		return fmt.Errorf("%w: Ed448 public key is %d bytes, want %d", ErrBadSignature, len(publicKey), ed448.PublicKeySize)
	}
	if !ed448.Verify(publicKey, msg, signature, "") {
		return ErrBadSignature
	}
	return nil
}

func (ed448Scheme) generate() (signer, error) {
	_, priv, err := ed448.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return ed448Signer(priv), nil
}

// parse reads the 57-byte seed.
func (ed448Scheme) parse(raw []byte) (signer, error) {
	if len(raw) != ed448.SeedSize {
		return nil, fmt.Errorf("Ed448 private key is %d bytes, want %d", len(raw), ed448.SeedSize)
	}
	return ed448Signer(ed448.NewKeyFromSeed(raw)), nil
}

// oidEd448 is id-Ed448 (RFC 8410).
func oidEd448() asn1.ObjectIdentifier { return asn1.ObjectIdentifier{1, 3, 101, 113} }

// certificateKey reads the key from the certificate's SubjectPublicKeyInfo
// itself: crypto/x509 parses Ed448 certificates but leaves their key
// unparsed.
func (ed448Scheme) certificateKey(cert *x509.Certificate) ([]byte, error) {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	rest, err := asn1.Unmarshal(cert.RawSubjectPublicKeyInfo, &spki)
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("certificate SubjectPublicKeyInfo does not parse")
	}
	if !spki.Algorithm.Algorithm.Equal(oidEd448()) {
		return nil, fmt.Errorf("certificate key algorithm is %v, the suite signs with Ed448 (%v)", spki.Algorithm.Algorithm, oidEd448())
	}
	// RFC 8410 section 3: the parameters must be absent.
	if len(spki.Algorithm.Parameters.FullBytes) != 0 {
		return nil, fmt.Errorf("certificate Ed448 key has algorithm parameters")
	}
	if spki.PublicKey.BitLength != 8*ed448.PublicKeySize {
		return nil, fmt.Errorf("certificate Ed448 key is %d bits, want %d", spki.PublicKey.BitLength, 8*ed448.PublicKeySize)
	}
	return spki.PublicKey.Bytes, nil
}

type ed448Signer ed448.PrivateKey

func (k ed448Signer) public() []byte { return ed448.PrivateKey(k).Public().(ed448.PublicKey) }
func (k ed448Signer) sign(msg []byte) ([]byte, error) {
	return ed448.Sign(ed448.PrivateKey(k), msg, ""), nil
}
func (k ed448Signer) raw() []byte                                  { return ed448.PrivateKey(k).Seed() }
func (k ed448Signer) signDeterministic(msg []byte) ([]byte, error) { return k.sign(msg) }

func (ed448Scheme) rawKeySize() (int, byte) { return ed448.SeedSize, 0xff }

// Every scheme serves the interface.
var (
	_ signatureScheme = ed25519Scheme{}
	_ signatureScheme = ecdsaScheme{}
	_ signatureScheme = ed448Scheme{}
)
