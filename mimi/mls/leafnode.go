package mls

import (
	"bytes"
	"crypto/x509"
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// LeafNodeSource says how a leaf node entered the tree (RFC 9420 section
// 7.2).
type LeafNodeSource uint8

// Leaf node sources.
const (
	SourceKeyPackage LeafNodeSource = 1
	SourceUpdate     LeafNodeSource = 2
	SourceCommit     LeafNodeSource = 3
)

func (s LeafNodeSource) String() string {
	switch s {
	case SourceKeyPackage:
		return "key_package"
	case SourceUpdate:
		return "update"
	case SourceCommit:
		return "commit"
	}
	return fmt.Sprintf("leaf node source %d", uint8(s))
}

// LeafNode describes one member (RFC 9420 section 7.2).
type LeafNode struct {
	EncryptionKey []byte
	SignatureKey  []byte
	Credential    Credential
	Capabilities  Capabilities
	Source        LeafNodeSource
	Lifetime      Lifetime // when Source is SourceKeyPackage
	ParentHash    []byte   // when Source is SourceCommit
	Extensions    Extensions
	Signature     []byte
}

func (n *LeafNode) encodeContent(w *wire.Writer) {
	w.Opaque(n.EncryptionKey)
	w.Opaque(n.SignatureKey)
	w.Encode(&n.Credential)
	w.Encode(&n.Capabilities)
	w.Uint8(uint8(n.Source))
	switch n.Source {
	case SourceKeyPackage:
		w.Uint64(n.Lifetime.NotBefore)
		w.Uint64(n.Lifetime.NotAfter)
	case SourceUpdate:
	case SourceCommit:
		w.Opaque(n.ParentHash)
	default:
		w.Fail(fmt.Errorf("cannot encode %s", n.Source))
	}
	w.Encode(n.Extensions)
}

// EncodeTLS writes the leaf node.
func (n *LeafNode) EncodeTLS(w *wire.Writer) {
	n.encodeContent(w)
	w.Opaque(n.Signature)
}

// DecodeTLS reads the leaf node.
func (n *LeafNode) DecodeTLS(r *wire.Reader) {
	r.Opaque(&n.EncryptionKey)
	r.Opaque(&n.SignatureKey)
	r.Decode(&n.Credential)
	r.Decode(&n.Capabilities)
	var src uint8
	r.Uint8(&src)
	n.Source = LeafNodeSource(src)
	n.Lifetime, n.ParentHash = Lifetime{}, nil
	switch n.Source {
	case SourceKeyPackage:
		r.Uint64(&n.Lifetime.NotBefore)
		r.Uint64(&n.Lifetime.NotAfter)
	case SourceUpdate:
	case SourceCommit:
		r.Opaque(&n.ParentHash)
	default:
		if r.OK() {
			r.Failf("unknown leaf node source %d", src)
		}
	}
	r.Decode(&n.Extensions)
	r.Opaque(&n.Signature)
}

// tbs returns LeafNodeTBS. groupID and leaf matter only for the update and
// commit sources.
func (n *LeafNode) tbs(groupID []byte, leaf LeafIndex) ([]byte, error) {
	var w wire.Writer
	n.encodeContent(&w)
	if n.Source == SourceUpdate || n.Source == SourceCommit {
		w.Opaque(groupID)
		w.Uint32(uint32(leaf))
	}
	return w.Bytes()
}

// Sign sets the signature. groupID and leaf are the group and position the
// node is signed for; they are ignored for the key_package source.
func (n *LeafNode) Sign(key *SigningKey, groupID []byte, leaf LeafIndex) error {
	tbs, err := n.tbs(groupID, leaf)
	if err != nil {
		return err
	}
	n.Signature, err = key.SignWithLabel("LeafNodeTBS", tbs)
	return err
}

// VerifySignature checks the signature with the node's own signature key.
func (n *LeafNode) VerifySignature(s *Suite, groupID []byte, leaf LeafIndex) error {
	tbs, err := n.tbs(groupID, leaf)
	if err != nil {
		return err
	}
	return s.VerifyWithLabel(n.SignatureKey, "LeafNodeTBS", tbs, n.Signature)
}

// checkSelfConsistent checks the rules of RFC 9420 section 7.3 that need no
// group: keys decode for the suite, the credential matches the signature key,
// and the node supports its own credential type and extensions.
func (n *LeafNode) checkSelfConsistent(s *Suite) error {
	if !s.ValidHPKEPublicKey(n.EncryptionKey) {
		return fmt.Errorf("encryption_key is not a valid %s HPKE public key", s.id)
	}
	if err := checkCredential(s, &n.Credential, n.SignatureKey); err != nil {
		return err
	}
	if !n.Capabilities.SupportsCredential(n.Credential.Type) {
		return fmt.Errorf("capabilities do not list its own credential type 0x%04x", uint16(n.Credential.Type))
	}
	if err := n.Extensions.checkUnique(); err != nil {
		return err
	}
	for _, e := range n.Extensions {
		if !n.Capabilities.SupportsExtension(e.Type) {
			return fmt.Errorf("extension 0x%04x is not listed in its capabilities", uint16(e.Type))
		}
	}
	// The suite is not required to be listed: RFC 9420 section 7.3 does not
	// ask for it, and the working group's vectors (suite 7) omit it.
	if !containsCode(n.Capabilities.Versions, MLS10) {
		return fmt.Errorf("capabilities do not list mls10")
	}
	return nil
}

func containsCode[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// checkCredential checks what a hub can check of a credential without an
// Authentication Service: a basic credential is well formed; an X.509
// credential's end-entity certificate parses and holds the leaf's signature
// key (RFC 9420 section 5.3).
func checkCredential(s *Suite, c *Credential, signatureKey []byte) error {
	switch c.Type {
	case CredentialBasic:
		return nil
	case CredentialX509:
		if len(c.Certificates) == 0 {
			return fmt.Errorf("x509 credential has no certificates")
		}
		cert, err := x509.ParseCertificate(c.Certificates[0])
		if err != nil {
			return fmt.Errorf("x509 credential: end-entity certificate: %w", err)
		}
		pub, err := encodeCertificateKey(s, cert)
		if err != nil {
			return fmt.Errorf("x509 credential: %w", err)
		}
		if !bytes.Equal(pub, signatureKey) {
			return fmt.Errorf("x509 credential: end-entity certificate key differs from the leaf's signature_key")
		}
		return nil
	}
	return fmt.Errorf("unsupported credential type 0x%04x", uint16(c.Type))
}
