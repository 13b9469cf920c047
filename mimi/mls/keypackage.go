package mls

import (
	"bytes"
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// KeyPackage is a client's pre-published offer to join groups (RFC 9420
// section 10).
type KeyPackage struct {
	Version     ProtocolVersion
	CipherSuite CipherSuite
	InitKey     []byte
	LeafNode    LeafNode
	Extensions  Extensions
	Signature   []byte
}

func (k *KeyPackage) encodeContent(w *wire.Writer) {
	w.Uint16(uint16(k.Version))
	w.Uint16(uint16(k.CipherSuite))
	w.Opaque(k.InitKey)
	w.Encode(&k.LeafNode)
	w.Encode(k.Extensions)
}

// EncodeTLS writes the KeyPackage.
func (k *KeyPackage) EncodeTLS(w *wire.Writer) {
	k.encodeContent(w)
	w.Opaque(k.Signature)
}

// DecodeTLS reads the KeyPackage.
func (k *KeyPackage) DecodeTLS(r *wire.Reader) {
	var v, cs uint16
	r.Uint16(&v)
	r.Uint16(&cs)
	k.Version, k.CipherSuite = ProtocolVersion(v), CipherSuite(cs)
	r.Opaque(&k.InitKey)
	r.Decode(&k.LeafNode)
	r.Decode(&k.Extensions)
	r.Opaque(&k.Signature)
}

// Sign sets the KeyPackage signature; the leaf node must already be signed.
func (k *KeyPackage) Sign(key *SigningKey) error {
	tbs, err := wire.Marshal(wire.EncoderFunc(k.encodeContent))
	if err != nil {
		return err
	}
	k.Signature, err = key.SignWithLabel("KeyPackageTBS", tbs)
	return err
}

// Ref returns the KeyPackageRef, the hash by which Welcome messages name this
// KeyPackage (RFC 9420 section 5.2).
func (k *KeyPackage) Ref() ([]byte, error) {
	s, err := k.CipherSuite.Suite()
	if err != nil {
		return nil, err
	}
	enc, err := wire.Marshal(k)
	if err != nil {
		return nil, err
	}
	return s.RefHash("MLS 1.0 KeyPackage Reference", enc), nil
}

// Validate checks the KeyPackage on its own (RFC 9420 section 10.1): suite
// and version, the leaf node for the key_package source including its
// lifetime at now (Unix seconds), both signatures, distinct init and
// encryption keys.
// Group-dependent checks are the caller's.
func (k *KeyPackage) Validate(now uint64) error {
	if k.Version != MLS10 {
		return fmt.Errorf("KeyPackage version %d, want mls10", k.Version)
	}
	s, err := k.CipherSuite.Suite()
	if err != nil {
		return err
	}
	return k.validate(s, now)
}

// validate is Validate with the KeyPackage's suite (or a verifier for it,
// Suite.withVerified) given.
func (k *KeyPackage) validate(s *Suite, now uint64) error {
	ln := &k.LeafNode
	if ln.Source != SourceKeyPackage {
		return fmt.Errorf("KeyPackage leaf node source is %s, want key_package", ln.Source)
	}
	if !ln.Lifetime.Contains(now) {
		return fmt.Errorf("KeyPackage lifetime [%d, %d] does not contain now (%d)", ln.Lifetime.NotBefore, ln.Lifetime.NotAfter, now)
	}
	if err := ln.checkSelfConsistent(s); err != nil {
		return fmt.Errorf("KeyPackage leaf node: %w", err)
	}
	if err := ln.VerifySignature(s, nil, 0); err != nil {
		return fmt.Errorf("KeyPackage leaf node: %w", err)
	}
	if !s.ValidHPKEPublicKey(k.InitKey) {
		return fmt.Errorf("KeyPackage init_key is not a valid %s HPKE public key", s.id)
	}
	if bytes.Equal(k.InitKey, ln.EncryptionKey) {
		return fmt.Errorf("KeyPackage init_key equals its leaf encryption_key")
	}
	if err := k.Extensions.checkUnique(); err != nil {
		return fmt.Errorf("KeyPackage extensions: %w", err)
	}
	// KeyPackage.extensions are not held to the capabilities: RFC 9420
	// section 13.5 has senders put GREASE there that receivers ignore, and
	// the working group's vectors do (unlike LeafNode.extensions, which
	// checkSelfConsistent holds to them).
	tbs, err := wire.Marshal(wire.EncoderFunc(k.encodeContent))
	if err != nil {
		return err
	}
	if err := s.VerifyWithLabel(ln.SignatureKey, "KeyPackageTBS", tbs, k.Signature); err != nil {
		return fmt.Errorf("KeyPackage: %w", err)
	}
	return nil
}

// ExtAppDataDictionary is the app_data_dictionary extension type of
// draft-ietf-mls-extensions, which carries application components.
const ExtAppDataDictionary ExtensionType = 0x0006

// componentLastResort marks a last-resort KeyPackage (draft-ietf-mls-extensions,
// last_resort_key_package component).
const componentLastResort uint16 = 0x0004

// LastResortExtension returns the KeyPackage extension that marks a
// KeyPackage as last resort: an app_data_dictionary holding the
// last_resort_key_package component with empty data.
func LastResortExtension() Extension {
	var w wire.Writer
	w.Vector(func(w *wire.Writer) {
		w.Uint16(componentLastResort)
		w.Opaque(nil)
	})
	b, _ := w.Bytes()
	return Extension{Type: ExtAppDataDictionary, Data: b}
}

// IsLastResort reports whether the KeyPackage is marked last resort.
func (k *KeyPackage) IsLastResort() bool {
	data, ok := k.Extensions.Find(ExtAppDataDictionary)
	if !ok {
		return false
	}
	found := false
	r := wire.NewReader(data)
	r.VectorEach(func(r *wire.Reader) {
		var id uint16
		var d []byte
		r.Uint16(&id)
		r.Opaque(&d)
		found = found || id == componentLastResort
	})
	return r.Finish() == nil && found
}

// KeyPackageOptions says what a new KeyPackage offers.
type KeyPackageOptions struct {
	// Credential identifies the client.
	Credential Credential
	// Capabilities lists what the client supports. Versions, the suite and
	// the credential's type are added when missing.
	Capabilities Capabilities
	// Lifetime bounds the KeyPackage's validity.
	Lifetime Lifetime
	// Extensions go in the KeyPackage; LeafExtensions in its leaf node.
	Extensions     Extensions
	LeafExtensions Extensions
	// LastResort marks the KeyPackage as reusable when no other is left.
	LastResort bool
}

// KeyPackageBundle is a KeyPackage with the private keys its owner needs to
// join through it.
type KeyPackageBundle struct {
	KeyPackage    *KeyPackage
	InitKey       []byte // HPKE private key for init_key
	EncryptionKey []byte // HPKE private key for the leaf's encryption_key
	SignatureKey  *SigningKey
}

// NewKeyPackage creates and signs a KeyPackage for signer.
func NewKeyPackage(s *Suite, signer *SigningKey, opts KeyPackageOptions) (*KeyPackageBundle, error) {
	initPriv, initPub, err := s.GenerateHPKEKey()
	if err != nil {
		return nil, err
	}
	encPriv, encPub, err := s.GenerateHPKEKey()
	if err != nil {
		return nil, err
	}
	caps := completeCapabilities(s, opts.Capabilities, opts.Credential.Type)
	ext := append(Extensions(nil), opts.Extensions...)
	if opts.LastResort && !ext.Has(ExtAppDataDictionary) {
		ext = append(ext, LastResortExtension())
	}
	for _, e := range ext {
		if !caps.SupportsExtension(e.Type) {
			caps.Extensions = append(caps.Extensions, e.Type)
		}
	}
	kp := &KeyPackage{
		Version:     MLS10,
		CipherSuite: s.id,
		InitKey:     initPub,
		LeafNode: LeafNode{
			EncryptionKey: encPub,
			SignatureKey:  signer.PublicKey(),
			Credential:    opts.Credential,
			Capabilities:  caps,
			Source:        SourceKeyPackage,
			Lifetime:      opts.Lifetime,
			Extensions:    opts.LeafExtensions,
		},
		Extensions: ext,
	}
	if err := kp.LeafNode.Sign(signer, nil, 0); err != nil {
		return nil, err
	}
	if err := kp.Sign(signer); err != nil {
		return nil, err
	}
	return &KeyPackageBundle{KeyPackage: kp, InitKey: initPriv, EncryptionKey: encPriv, SignatureKey: signer}, nil
}

// completeCapabilities adds what every leaf of suite s with credential type
// ct must list.
func completeCapabilities(s *Suite, c Capabilities, ct CredentialType) Capabilities {
	out := Capabilities{
		Versions:     append([]ProtocolVersion(nil), c.Versions...),
		CipherSuites: append([]CipherSuite(nil), c.CipherSuites...),
		Extensions:   append([]ExtensionType(nil), c.Extensions...),
		Proposals:    append([]ProposalType(nil), c.Proposals...),
		Credentials:  append([]CredentialType(nil), c.Credentials...),
	}
	if !containsCode(out.Versions, MLS10) {
		out.Versions = append(out.Versions, MLS10)
	}
	if !containsCode(out.CipherSuites, s.id) {
		out.CipherSuites = append(out.CipherSuites, s.id)
	}
	if !containsCode(out.Credentials, ct) {
		out.Credentials = append(out.Credentials, ct)
	}
	return out
}
