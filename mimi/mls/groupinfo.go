package mls

import (
	"bytes"
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// GroupContext summarizes a group's state in one epoch (RFC 9420 section
// 8.1).
type GroupContext struct {
	Version                 ProtocolVersion
	CipherSuite             CipherSuite
	GroupID                 []byte
	Epoch                   uint64
	TreeHash                []byte
	ConfirmedTranscriptHash []byte
	Extensions              Extensions
}

// EncodeTLS writes the group context.
func (g *GroupContext) EncodeTLS(w *wire.Writer) {
	w.Uint16(uint16(g.Version))
	w.Uint16(uint16(g.CipherSuite))
	w.Opaque(g.GroupID)
	w.Uint64(g.Epoch)
	w.Opaque(g.TreeHash)
	w.Opaque(g.ConfirmedTranscriptHash)
	w.Encode(g.Extensions)
}

// DecodeTLS reads the group context.
func (g *GroupContext) DecodeTLS(r *wire.Reader) {
	var v, cs uint16
	r.Uint16(&v)
	r.Uint16(&cs)
	g.Version, g.CipherSuite = ProtocolVersion(v), CipherSuite(cs)
	r.Opaque(&g.GroupID)
	r.Uint64(&g.Epoch)
	r.Opaque(&g.TreeHash)
	r.Opaque(&g.ConfirmedTranscriptHash)
	r.Decode(&g.Extensions)
}

// Equal reports whether two group contexts are identical.
func (g *GroupContext) Equal(o *GroupContext) bool {
	return g.Version == o.Version && g.CipherSuite == o.CipherSuite &&
		bytes.Equal(g.GroupID, o.GroupID) && g.Epoch == o.Epoch &&
		bytes.Equal(g.TreeHash, o.TreeHash) &&
		bytes.Equal(g.ConfirmedTranscriptHash, o.ConfirmedTranscriptHash) &&
		g.Extensions.Equal(o.Extensions)
}

// clone returns a deep copy that shares no memory with g, so that g's source
// buffer can be released.
func (g *GroupContext) clone() GroupContext {
	c := *g
	c.GroupID = bytes.Clone(g.GroupID)
	c.TreeHash = bytes.Clone(g.TreeHash)
	c.ConfirmedTranscriptHash = bytes.Clone(g.ConfirmedTranscriptHash)
	c.Extensions = cloneExtensions(g.Extensions)
	return c
}

func cloneExtensions(e Extensions) Extensions {
	if e == nil {
		return nil
	}
	out := make(Extensions, len(e))
	for i, x := range e {
		out[i] = Extension{Type: x.Type, Data: bytes.Clone(x.Data)}
	}
	return out
}

// GroupInfo describes a group to joiners (RFC 9420 section 12.4.3).
type GroupInfo struct {
	GroupContext    GroupContext
	Extensions      Extensions
	ConfirmationTag []byte
	Signer          LeafIndex
	Signature       []byte
}

func (g *GroupInfo) encodeContent(w *wire.Writer) {
	w.Encode(&g.GroupContext)
	w.Encode(g.Extensions)
	w.Opaque(g.ConfirmationTag)
	w.Uint32(uint32(g.Signer))
}

// EncodeTLS writes the GroupInfo.
func (g *GroupInfo) EncodeTLS(w *wire.Writer) {
	g.encodeContent(w)
	w.Opaque(g.Signature)
}

// DecodeTLS reads the GroupInfo.
func (g *GroupInfo) DecodeTLS(r *wire.Reader) {
	r.Decode(&g.GroupContext)
	r.Decode(&g.Extensions)
	r.Opaque(&g.ConfirmationTag)
	var s uint32
	r.Uint32(&s)
	g.Signer = LeafIndex(s)
	r.Opaque(&g.Signature)
}

// Sign sets the GroupInfo signature.
func (g *GroupInfo) Sign(key *SigningKey) error {
	tbs, err := wire.Marshal(wire.EncoderFunc(g.encodeContent))
	if err != nil {
		return err
	}
	g.Signature, err = key.SignWithLabel("GroupInfoTBS", tbs)
	return err
}

// VerifySignature checks the signature with the signer's key.
func (g *GroupInfo) VerifySignature(s *Suite, signatureKey []byte) error {
	tbs, err := wire.Marshal(wire.EncoderFunc(g.encodeContent))
	if err != nil {
		return err
	}
	return s.VerifyWithLabel(signatureKey, "GroupInfoTBS", tbs, g.Signature)
}

// RatchetTreeExtension returns the encoded tree of the ratchet_tree
// extension, if present; DecodeTree reads it.
func (g *GroupInfo) RatchetTreeExtension() ([]byte, bool) {
	return g.Extensions.Find(ExtRatchetTree)
}

// ExternalPub returns the external_pub extension's key, if present.
func (g *GroupInfo) ExternalPub() ([]byte, bool, error) {
	data, ok := g.Extensions.Find(ExtExternalPub)
	if !ok {
		return nil, false, nil
	}
	var pub []byte
	r := wire.NewReader(data)
	r.Opaque(&pub)
	if err := r.Finish(); err != nil {
		return nil, true, fmt.Errorf("external_pub extension: %w", err)
	}
	return pub, true, nil
}

// ExternalPubExtension encodes an external_pub extension.
func ExternalPubExtension(pub []byte) Extension {
	var w wire.Writer
	w.Opaque(pub)
	b, _ := w.Bytes()
	return Extension{Type: ExtExternalPub, Data: b}
}

// ExternalSender is a party allowed to send external proposals (RFC 9420
// section 12.1.8.1).
type ExternalSender struct {
	SignatureKey []byte
	Credential   Credential
}

// ExternalSenders is the external_senders extension body.
type ExternalSenders []ExternalSender

// EncodeTLS writes the external_senders list.
func (e ExternalSenders) EncodeTLS(w *wire.Writer) {
	w.Vector(func(w *wire.Writer) {
		for i := range e {
			w.Opaque(e[i].SignatureKey)
			w.Encode(&e[i].Credential)
		}
	})
}

// DecodeTLS reads the external_senders list.
func (e *ExternalSenders) DecodeTLS(r *wire.Reader) {
	var out ExternalSenders
	r.VectorEach(func(r *wire.Reader) {
		var s ExternalSender
		r.Opaque(&s.SignatureKey)
		r.Decode(&s.Credential)
		out = append(out, s)
	})
	*e = out
}

// RequiredCapabilities is the required_capabilities extension body (RFC 9420
// section 11.1).
type RequiredCapabilities struct {
	Extensions  []ExtensionType
	Proposals   []ProposalType
	Credentials []CredentialType
}

// EncodeTLS writes the required capabilities.
func (c *RequiredCapabilities) EncodeTLS(w *wire.Writer) {
	writeCodes(w, c.Extensions)
	writeCodes(w, c.Proposals)
	writeCodes(w, c.Credentials)
}

// DecodeTLS reads the required capabilities.
func (c *RequiredCapabilities) DecodeTLS(r *wire.Reader) {
	readCodes(r, &c.Extensions)
	readCodes(r, &c.Proposals)
	readCodes(r, &c.Credentials)
}

// SatisfiedBy reports why caps lacks a required capability, or nil.
func (c *RequiredCapabilities) SatisfiedBy(caps *Capabilities) error {
	for _, t := range c.Extensions {
		if !caps.SupportsExtension(t) {
			return fmt.Errorf("required extension 0x%04x not supported", uint16(t))
		}
	}
	for _, t := range c.Proposals {
		if !caps.SupportsProposal(t) {
			return fmt.Errorf("required proposal type 0x%04x not supported", uint16(t))
		}
	}
	for _, t := range c.Credentials {
		if !caps.SupportsCredential(t) {
			return fmt.Errorf("required credential type 0x%04x not supported", uint16(t))
		}
	}
	return nil
}

// EncryptedGroupSecrets carries one new member's GroupSecrets.
type EncryptedGroupSecrets struct {
	NewMember             []byte // KeyPackageRef
	EncryptedGroupSecrets HPKECiphertext
}

// Welcome invites new members (RFC 9420 section 12.4.3.1).
type Welcome struct {
	CipherSuite        CipherSuite
	Secrets            []EncryptedGroupSecrets
	EncryptedGroupInfo []byte
}

// EncodeTLS writes the Welcome.
func (wl *Welcome) EncodeTLS(w *wire.Writer) {
	w.Uint16(uint16(wl.CipherSuite))
	w.Vector(func(w *wire.Writer) {
		for i := range wl.Secrets {
			w.Opaque(wl.Secrets[i].NewMember)
			w.Encode(&wl.Secrets[i].EncryptedGroupSecrets)
		}
	})
	w.Opaque(wl.EncryptedGroupInfo)
}

// DecodeTLS reads the Welcome.
func (wl *Welcome) DecodeTLS(r *wire.Reader) {
	var cs uint16
	r.Uint16(&cs)
	wl.CipherSuite = CipherSuite(cs)
	wl.Secrets = nil
	r.VectorEach(func(r *wire.Reader) {
		var s EncryptedGroupSecrets
		r.Opaque(&s.NewMember)
		r.Decode(&s.EncryptedGroupSecrets)
		wl.Secrets = append(wl.Secrets, s)
	})
	r.Opaque(&wl.EncryptedGroupInfo)
}

// FindSecrets returns the entry addressed to the KeyPackage with reference
// ref.
func (wl *Welcome) FindSecrets(ref []byte) (*EncryptedGroupSecrets, bool) {
	for i := range wl.Secrets {
		if bytes.Equal(wl.Secrets[i].NewMember, ref) {
			return &wl.Secrets[i], true
		}
	}
	return nil, false
}

// GroupSecrets is what a Welcome encrypts to each new member.
type GroupSecrets struct {
	JoinerSecret []byte
	PathSecret   []byte // nil when absent
	HasPath      bool
	PSKs         []PreSharedKeyID
}

// EncodeTLS writes the group secrets.
func (g *GroupSecrets) EncodeTLS(w *wire.Writer) {
	w.Opaque(g.JoinerSecret)
	w.Optional(g.HasPath, func(w *wire.Writer) { w.Opaque(g.PathSecret) })
	w.Vector(func(w *wire.Writer) {
		for i := range g.PSKs {
			w.Encode(&g.PSKs[i])
		}
	})
}

// DecodeTLS reads the group secrets.
func (g *GroupSecrets) DecodeTLS(r *wire.Reader) {
	r.Opaque(&g.JoinerSecret)
	g.PathSecret = nil
	g.HasPath = r.Optional(func(r *wire.Reader) { r.Opaque(&g.PathSecret) })
	g.PSKs = nil
	r.VectorEach(func(r *wire.Reader) {
		var p PreSharedKeyID
		r.Decode(&p)
		g.PSKs = append(g.PSKs, p)
	})
}
