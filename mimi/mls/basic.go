package mls

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// ProtocolVersion is an MLS protocol version.
type ProtocolVersion uint16

// MLS10 is the only protocol version, mls10.
const MLS10 ProtocolVersion = 1

// ExtensionType identifies an extension (RFC 9420 section 17.3).
type ExtensionType uint16

// Extension types of RFC 9420. These are the "default" extension types that
// capabilities never list.
const (
	ExtApplicationID        ExtensionType = 0x0001
	ExtRatchetTree          ExtensionType = 0x0002
	ExtRequiredCapabilities ExtensionType = 0x0003
	ExtExternalPub          ExtensionType = 0x0004
	ExtExternalSenders      ExtensionType = 0x0005
)

// isDefault reports whether t is one of RFC 9420's default extension types.
func (t ExtensionType) isDefault() bool { return t >= 1 && t <= 5 }

// ProposalType identifies a proposal (RFC 9420 section 17.4).
type ProposalType uint16

// Proposal types: those of RFC 9420 and SelfRemove from
// draft-ietf-mls-extensions.
const (
	ProposalAdd                    ProposalType = 0x0001
	ProposalUpdate                 ProposalType = 0x0002
	ProposalRemove                 ProposalType = 0x0003
	ProposalPSK                    ProposalType = 0x0004
	ProposalReInit                 ProposalType = 0x0005
	ProposalExternalInit           ProposalType = 0x0006
	ProposalGroupContextExtensions ProposalType = 0x0007
	ProposalSelfRemove             ProposalType = 0x000a
)

// isDefault reports whether t is one of RFC 9420's default proposal types.
func (t ProposalType) isDefault() bool { return t >= 1 && t <= 7 }

func (t ProposalType) String() string {
	switch t {
	case ProposalAdd:
		return "add"
	case ProposalUpdate:
		return "update"
	case ProposalRemove:
		return "remove"
	case ProposalPSK:
		return "psk"
	case ProposalReInit:
		return "reinit"
	case ProposalExternalInit:
		return "external_init"
	case ProposalGroupContextExtensions:
		return "group_context_extensions"
	case ProposalSelfRemove:
		return "self_remove"
	}
	return fmt.Sprintf("proposal type 0x%04x", uint16(t))
}

// CredentialType identifies a credential format (RFC 9420 section 17.5).
type CredentialType uint16

// Credential types of RFC 9420.
const (
	CredentialBasic CredentialType = 0x0001
	CredentialX509  CredentialType = 0x0002
)

// LeafIndex numbers the leaves of a ratchet tree from the left, from 0.
type LeafIndex uint32

// Extension is one typed extension value; Data is the extension's encoding.
type Extension struct {
	Type ExtensionType
	Data []byte
}

// Extensions is an extension list. A valid list holds each type at most once.
type Extensions []Extension

// Find returns the data of the extension of type t.
func (e Extensions) Find(t ExtensionType) ([]byte, bool) {
	for _, x := range e {
		if x.Type == t {
			return x.Data, true
		}
	}
	return nil, false
}

// Has reports whether the list holds an extension of type t.
func (e Extensions) Has(t ExtensionType) bool {
	_, ok := e.Find(t)
	return ok
}

// checkUnique reports an extension type listed twice (RFC 9420 section 13.4).
func (e Extensions) checkUnique() error {
	for i := range e {
		for j := i + 1; j < len(e); j++ {
			if e[i].Type == e[j].Type {
				return fmt.Errorf("extension type 0x%04x appears twice", uint16(e[i].Type))
			}
		}
	}
	return nil
}

// Equal reports whether two lists are identical, order included.
func (e Extensions) Equal(o Extensions) bool {
	return slices.EqualFunc(e, o, func(a, b Extension) bool {
		return a.Type == b.Type && bytes.Equal(a.Data, b.Data)
	})
}

// EncodeTLS writes Extension extensions<V>.
func (e Extensions) EncodeTLS(w *wire.Writer) {
	w.Vector(func(w *wire.Writer) {
		for _, x := range e {
			w.Uint16(uint16(x.Type))
			w.Opaque(x.Data)
		}
	})
}

// DecodeTLS reads Extension extensions<V>.
func (e *Extensions) DecodeTLS(r *wire.Reader) {
	var out Extensions
	r.VectorEach(func(r *wire.Reader) {
		var x Extension
		var t uint16
		r.Uint16(&t)
		x.Type = ExtensionType(t)
		r.Opaque(&x.Data)
		out = append(out, x)
	})
	*e = out
}

// uint16Code is any of the uint16 code point types listed in capabilities.
type uint16Code interface {
	~uint16
}

func writeCodes[T uint16Code](w *wire.Writer, codes []T) {
	w.Vector(func(w *wire.Writer) {
		for _, c := range codes {
			w.Uint16(uint16(c))
		}
	})
}

func readCodes[T uint16Code](r *wire.Reader, out *[]T) {
	var codes []T
	r.VectorEach(func(r *wire.Reader) {
		var c uint16
		r.Uint16(&c)
		codes = append(codes, T(c))
	})
	*out = codes
}

// Capabilities lists what a client supports (RFC 9420 section 7.2).
type Capabilities struct {
	Versions     []ProtocolVersion
	CipherSuites []CipherSuite
	Extensions   []ExtensionType
	Proposals    []ProposalType
	Credentials  []CredentialType
}

// EncodeTLS writes the capabilities.
func (c *Capabilities) EncodeTLS(w *wire.Writer) {
	writeCodes(w, c.Versions)
	writeCodes(w, c.CipherSuites)
	writeCodes(w, c.Extensions)
	writeCodes(w, c.Proposals)
	writeCodes(w, c.Credentials)
}

// DecodeTLS reads the capabilities.
func (c *Capabilities) DecodeTLS(r *wire.Reader) {
	readCodes(r, &c.Versions)
	readCodes(r, &c.CipherSuites)
	readCodes(r, &c.Extensions)
	readCodes(r, &c.Proposals)
	readCodes(r, &c.Credentials)
}

// SupportsExtension reports support for t; default types are always supported.
func (c *Capabilities) SupportsExtension(t ExtensionType) bool {
	return t.isDefault() || slices.Contains(c.Extensions, t)
}

// SupportsProposal reports support for t; default types are always supported.
func (c *Capabilities) SupportsProposal(t ProposalType) bool {
	return t.isDefault() || slices.Contains(c.Proposals, t)
}

// SupportsCredential reports support for t. Credential types have no
// defaults.
func (c *Capabilities) SupportsCredential(t CredentialType) bool {
	return slices.Contains(c.Credentials, t)
}

// Credential binds identities to a signature key (RFC 9420 section 5.3).
type Credential struct {
	Type         CredentialType
	Identity     []byte   // basic
	Certificates [][]byte // x509: DER certificates, end entity first
}

// BasicCredential returns a basic credential for identity.
func BasicCredential(identity []byte) Credential {
	return Credential{Type: CredentialBasic, Identity: identity}
}

// EncodeTLS writes the credential.
func (c *Credential) EncodeTLS(w *wire.Writer) {
	w.Uint16(uint16(c.Type))
	switch c.Type {
	case CredentialBasic:
		w.Opaque(c.Identity)
	case CredentialX509:
		w.Vector(func(w *wire.Writer) {
			for _, cert := range c.Certificates {
				w.Opaque(cert)
			}
		})
	default:
		w.Fail(fmt.Errorf("cannot encode credential type 0x%04x", uint16(c.Type)))
	}
}

// DecodeTLS reads the credential. Credential types other than basic and x509
// carry no length, so they cannot be skipped and are rejected.
func (c *Credential) DecodeTLS(r *wire.Reader) {
	var t uint16
	r.Uint16(&t)
	c.Type = CredentialType(t)
	c.Identity, c.Certificates = nil, nil
	switch c.Type {
	case CredentialBasic:
		r.Opaque(&c.Identity)
	case CredentialX509:
		var certs [][]byte
		r.VectorEach(func(r *wire.Reader) {
			var cert []byte
			r.Opaque(&cert)
			certs = append(certs, cert)
		})
		c.Certificates = certs
	default:
		if r.OK() {
			r.Failf("unsupported credential type 0x%04x", t)
		}
	}
}

// Equal reports whether two credentials are identical.
func (c *Credential) Equal(o *Credential) bool {
	return c.Type == o.Type && bytes.Equal(c.Identity, o.Identity) &&
		slices.EqualFunc(c.Certificates, o.Certificates, bytes.Equal)
}

// Lifetime bounds a KeyPackage leaf's validity, in seconds since the Unix
// epoch, both ends inclusive.
type Lifetime struct {
	NotBefore uint64
	NotAfter  uint64
}

// Contains reports whether t (Unix seconds) lies within the lifetime.
func (l Lifetime) Contains(t uint64) bool { return l.NotBefore <= t && t <= l.NotAfter }
