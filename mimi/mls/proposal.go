package mls

import (
	"bytes"
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// PSKType says where a pre-shared key comes from (RFC 9420 section 8.4).
type PSKType uint8

// PSK types.
const (
	PSKExternal   PSKType = 1
	PSKResumption PSKType = 2
)

// ResumptionPSKUsage says what a resumption PSK is for.
type ResumptionPSKUsage uint8

// Resumption PSK usages.
const (
	UsageApplication ResumptionPSKUsage = 1
	UsageReInit      ResumptionPSKUsage = 2
	UsageBranch      ResumptionPSKUsage = 3
)

// PreSharedKeyID names a PSK (RFC 9420 section 8.4).
type PreSharedKeyID struct {
	Type    PSKType
	ID      []byte             // external
	Usage   ResumptionPSKUsage // resumption
	GroupID []byte             // resumption
	Epoch   uint64             // resumption
	Nonce   []byte
}

// EncodeTLS writes the PSK id.
func (p *PreSharedKeyID) EncodeTLS(w *wire.Writer) {
	w.Uint8(uint8(p.Type))
	switch p.Type {
	case PSKExternal:
		w.Opaque(p.ID)
	case PSKResumption:
		w.Uint8(uint8(p.Usage))
		w.Opaque(p.GroupID)
		w.Uint64(p.Epoch)
	default:
		w.Fail(fmt.Errorf("cannot encode PSK type %d", p.Type))
	}
	w.Opaque(p.Nonce)
}

// DecodeTLS reads the PSK id.
func (p *PreSharedKeyID) DecodeTLS(r *wire.Reader) {
	var t uint8
	r.Uint8(&t)
	*p = PreSharedKeyID{Type: PSKType(t)}
	switch p.Type {
	case PSKExternal:
		r.Opaque(&p.ID)
	case PSKResumption:
		var u uint8
		r.Uint8(&u)
		p.Usage = ResumptionPSKUsage(u)
		if r.OK() && (u < 1 || u > 3) {
			r.Failf("unknown resumption PSK usage %d", u)
		}
		r.Opaque(&p.GroupID)
		r.Uint64(&p.Epoch)
	default:
		if r.OK() {
			r.Failf("unknown PSK type %d", t)
		}
	}
	r.Opaque(&p.Nonce)
}

// Equal reports whether two ids name the same PSK (nonce included).
func (p *PreSharedKeyID) Equal(o *PreSharedKeyID) bool {
	return p.Type == o.Type && bytes.Equal(p.ID, o.ID) && p.Usage == o.Usage &&
		bytes.Equal(p.GroupID, o.GroupID) && p.Epoch == o.Epoch && bytes.Equal(p.Nonce, o.Nonce)
}

// ReInit asks to restart the group with new parameters (RFC 9420 section
// 12.1.5).
type ReInit struct {
	GroupID     []byte
	Version     ProtocolVersion
	CipherSuite CipherSuite
	Extensions  Extensions
}

// EncodeTLS writes the ReInit body.
func (p *ReInit) EncodeTLS(w *wire.Writer) {
	w.Opaque(p.GroupID)
	w.Uint16(uint16(p.Version))
	w.Uint16(uint16(p.CipherSuite))
	w.Encode(p.Extensions)
}

// DecodeTLS reads the ReInit body.
func (p *ReInit) DecodeTLS(r *wire.Reader) {
	r.Opaque(&p.GroupID)
	var v, cs uint16
	r.Uint16(&v)
	r.Uint16(&cs)
	p.Version, p.CipherSuite = ProtocolVersion(v), CipherSuite(cs)
	r.Decode(&p.Extensions)
}

// Proposal is one proposed change (RFC 9420 section 12.1). Type selects which
// field holds the body. Proposal types this package does not define (custom
// ones, such as MIMI's) carry their body as one opaque<V>, in Body.
type Proposal struct {
	Type       ProposalType
	KeyPackage *KeyPackage     // add
	LeafNode   *LeafNode       // update
	Removed    LeafIndex       // remove
	PSK        *PreSharedKeyID // psk
	ReInit     *ReInit         // reinit
	KEMOutput  []byte          // external_init
	Extensions Extensions      // group_context_extensions
	Body       []byte          // any type not listed above, except self_remove, which is empty
}

// AddProposal proposes adding the owner of kp.
func AddProposal(kp *KeyPackage) *Proposal { return &Proposal{Type: ProposalAdd, KeyPackage: kp} }

// UpdateProposal proposes replacing the sender's leaf with leaf.
func UpdateProposal(leaf *LeafNode) *Proposal {
	return &Proposal{Type: ProposalUpdate, LeafNode: leaf}
}

// RemoveProposal proposes removing the member at leaf.
func RemoveProposal(leaf LeafIndex) *Proposal { return &Proposal{Type: ProposalRemove, Removed: leaf} }

// PSKProposal proposes injecting a PSK.
func PSKProposal(id *PreSharedKeyID) *Proposal { return &Proposal{Type: ProposalPSK, PSK: id} }

// GroupContextExtensionsProposal proposes replacing the group's extensions.
func GroupContextExtensionsProposal(ext Extensions) *Proposal {
	return &Proposal{Type: ProposalGroupContextExtensions, Extensions: ext}
}

// SelfRemoveProposal proposes removing the sender (draft-ietf-mls-extensions).
func SelfRemoveProposal() *Proposal { return &Proposal{Type: ProposalSelfRemove} }

// CustomProposal builds a proposal of a type this package does not define,
// whose body is the opaque<V> body.
func CustomProposal(t ProposalType, body []byte) *Proposal {
	return &Proposal{Type: t, Body: body}
}

// EncodeTLS writes the proposal.
func (p *Proposal) EncodeTLS(w *wire.Writer) {
	w.Uint16(uint16(p.Type))
	switch p.Type {
	case ProposalAdd:
		if p.KeyPackage == nil {
			w.Fail(fmt.Errorf("add proposal without a KeyPackage"))
			return
		}
		w.Encode(p.KeyPackage)
	case ProposalUpdate:
		if p.LeafNode == nil {
			w.Fail(fmt.Errorf("update proposal without a leaf node"))
			return
		}
		w.Encode(p.LeafNode)
	case ProposalRemove:
		w.Uint32(uint32(p.Removed))
	case ProposalPSK:
		if p.PSK == nil {
			w.Fail(fmt.Errorf("psk proposal without a PSK id"))
			return
		}
		w.Encode(p.PSK)
	case ProposalReInit:
		if p.ReInit == nil {
			w.Fail(fmt.Errorf("reinit proposal without a body"))
			return
		}
		w.Encode(p.ReInit)
	case ProposalExternalInit:
		w.Opaque(p.KEMOutput)
	case ProposalGroupContextExtensions:
		w.Encode(p.Extensions)
	case ProposalSelfRemove:
	default:
		w.Opaque(p.Body)
	}
}

// DecodeTLS reads the proposal.
func (p *Proposal) DecodeTLS(r *wire.Reader) {
	var t uint16
	r.Uint16(&t)
	*p = Proposal{Type: ProposalType(t)}
	switch p.Type {
	case ProposalAdd:
		p.KeyPackage = new(KeyPackage)
		r.Decode(p.KeyPackage)
	case ProposalUpdate:
		p.LeafNode = new(LeafNode)
		r.Decode(p.LeafNode)
	case ProposalRemove:
		var l uint32
		r.Uint32(&l)
		p.Removed = LeafIndex(l)
	case ProposalPSK:
		p.PSK = new(PreSharedKeyID)
		r.Decode(p.PSK)
	case ProposalReInit:
		p.ReInit = new(ReInit)
		r.Decode(p.ReInit)
	case ProposalExternalInit:
		r.Opaque(&p.KEMOutput)
	case ProposalGroupContextExtensions:
		r.Decode(&p.Extensions)
	case ProposalSelfRemove:
	case 0:
		if r.OK() {
			r.Failf("reserved proposal type 0")
		}
	default:
		r.Opaque(&p.Body)
	}
}

// AllowedFromExternalSender reports whether a sender outside the group may
// propose t (RFC 9420 section 12.1.8; SelfRemove: draft-ietf-mls-extensions).
// Custom types are decided by the group's ProposalPolicy.
func (t ProposalType) allowedFromExternalSender() bool {
	switch t {
	case ProposalAdd, ProposalRemove, ProposalPSK, ProposalReInit, ProposalGroupContextExtensions:
		return true
	}
	return false
}

// ProposalOrRef is a proposal carried in a Commit, by value or by reference.
// Exactly one field is set.
type ProposalOrRef struct {
	Proposal  *Proposal
	Reference []byte // ProposalRef
}

// EncodeTLS writes the ProposalOrRef.
func (p *ProposalOrRef) EncodeTLS(w *wire.Writer) {
	if p.Proposal != nil {
		w.Uint8(1)
		w.Encode(p.Proposal)
		return
	}
	w.Uint8(2)
	w.Opaque(p.Reference)
}

// DecodeTLS reads the ProposalOrRef.
func (p *ProposalOrRef) DecodeTLS(r *wire.Reader) {
	var t uint8
	r.Uint8(&t)
	*p = ProposalOrRef{}
	switch t {
	case 1:
		p.Proposal = new(Proposal)
		r.Decode(p.Proposal)
	case 2:
		r.Opaque(&p.Reference)
	default:
		if r.OK() {
			r.Failf("unknown ProposalOrRef type %d", t)
		}
	}
}

// HPKECiphertext is an HPKE encapsulation and ciphertext.
type HPKECiphertext struct {
	KEMOutput  []byte
	Ciphertext []byte
}

// EncodeTLS writes the ciphertext.
func (c *HPKECiphertext) EncodeTLS(w *wire.Writer) {
	w.Opaque(c.KEMOutput)
	w.Opaque(c.Ciphertext)
}

// DecodeTLS reads the ciphertext.
func (c *HPKECiphertext) DecodeTLS(r *wire.Reader) {
	r.Opaque(&c.KEMOutput)
	r.Opaque(&c.Ciphertext)
}

// UpdatePathNode is one refreshed node of an UpdatePath.
type UpdatePathNode struct {
	EncryptionKey       []byte
	EncryptedPathSecret []HPKECiphertext
}

// UpdatePath carries the committer's new leaf and direct path (RFC 9420
// section 7.6).
type UpdatePath struct {
	LeafNode LeafNode
	Nodes    []UpdatePathNode
}

// EncodeTLS writes the UpdatePath.
func (u *UpdatePath) EncodeTLS(w *wire.Writer) {
	w.Encode(&u.LeafNode)
	w.Vector(func(w *wire.Writer) {
		for i := range u.Nodes {
			n := &u.Nodes[i]
			w.Opaque(n.EncryptionKey)
			w.Vector(func(w *wire.Writer) {
				for j := range n.EncryptedPathSecret {
					w.Encode(&n.EncryptedPathSecret[j])
				}
			})
		}
	})
}

// DecodeTLS reads the UpdatePath.
func (u *UpdatePath) DecodeTLS(r *wire.Reader) {
	r.Decode(&u.LeafNode)
	u.Nodes = nil
	r.VectorEach(func(r *wire.Reader) {
		var n UpdatePathNode
		r.Opaque(&n.EncryptionKey)
		r.VectorEach(func(r *wire.Reader) {
			var c HPKECiphertext
			r.Decode(&c)
			n.EncryptedPathSecret = append(n.EncryptedPathSecret, c)
		})
		u.Nodes = append(u.Nodes, n)
	})
}

// Commit applies proposals and, optionally, refreshes the committer's path
// (RFC 9420 section 12.4).
type Commit struct {
	Proposals []ProposalOrRef
	Path      *UpdatePath
}

// EncodeTLS writes the Commit.
func (c *Commit) EncodeTLS(w *wire.Writer) {
	w.Vector(func(w *wire.Writer) {
		for i := range c.Proposals {
			w.Encode(&c.Proposals[i])
		}
	})
	w.Optional(c.Path != nil, func(w *wire.Writer) { w.Encode(c.Path) })
}

// DecodeTLS reads the Commit.
func (c *Commit) DecodeTLS(r *wire.Reader) {
	c.Proposals = nil
	r.VectorEach(func(r *wire.Reader) {
		var p ProposalOrRef
		r.Decode(&p)
		c.Proposals = append(c.Proposals, p)
	})
	c.Path = nil
	r.Optional(func(r *wire.Reader) {
		c.Path = new(UpdatePath)
		r.Decode(c.Path)
	})
}
