package mls

import (
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// A server that follows groups (a MIMI hub) sends its own proposals as an
// external sender (RFC 9420 section 12.1.8.1). A replicated hub must produce
// the same bytes on every replica, so its key is derived from a shared
// secret and its signatures are deterministic.

// DeriveSigningKey derives a signature key for the suite from secret: the
// same secret and label give the same key on every machine. EdDSA keys are
// the expanded seed (32 bytes for Ed25519, 57 for Ed448); ECDSA scalars are
// drawn until one is in range (each try succeeds with probability above
// 1 - 2^-32).
func (s *Suite) DeriveSigningKey(secret []byte, label string) (*SigningKey, error) {
	prk := s.Extract(nil, secret)
	size, topMask := s.sig.rawKeySize()
	for try := 0; try < 64; try++ {
		raw, err := s.ExpandWithLabel(prk, label, []byte{byte(try)}, size)
		if err != nil {
			return nil, fmt.Errorf("derive signing key: %w", err)
		}
		raw[0] &= topMask
		if k, err := s.ParseSigningKey(raw); err == nil {
			return k, nil
		}
	}
	return nil, fmt.Errorf("derive signing key for %s: no valid key in 64 tries", s.id)
}

// signDeterministic signs like SignWithLabel, but so that a message signed
// twice yields the same bytes (RFC 6979 nonces for ECDSA; EdDSA is
// deterministic anyway).
func (k *SigningKey) signDeterministic(label string, content []byte) ([]byte, error) {
	msg, err := labeled(label, content)
	if err != nil {
		return nil, err
	}
	return k.key.signDeterministic(msg)
}

// NewExternalProposal frames p as a proposal of the external sender at
// index in a group's external_senders, for the given group and epoch, and
// signs it with key deterministically: every replica of a hub that builds
// the same proposal gets the same message. Receivers verify it like any
// external proposal (Follower.ProcessProposal, Group.Process).
func NewExternalProposal(groupID []byte, epoch uint64, index uint32, key *SigningKey, p *Proposal) (*Message, error) {
	ac := &AuthenticatedContent{WireFormat: WirePublicMessage, Content: FramedContent{
		GroupID: groupID, Epoch: epoch, Sender: Sender{Type: SenderExternal, Index: index},
		ContentType: ContentProposal, Proposal: p,
	}}
	tbs, err := framedContentTBS(ac.WireFormat, &ac.Content, nil)
	if err != nil {
		return nil, fmt.Errorf("external proposal: %w", err)
	}
	if ac.Auth.Signature, err = key.signDeterministic("FramedContentTBS", tbs); err != nil {
		return nil, fmt.Errorf("external proposal: %w", err)
	}
	m := NewPublicMessage(&PublicMessage{Content: ac.Content, Auth: ac.Auth})
	// Round-trip once so that the message is exactly what a receiver
	// decodes (and what snapshots store).
	out, err := DecodeMessage(wire.MustMarshal(m))
	if err != nil {
		return nil, fmt.Errorf("external proposal: %w", err)
	}
	return out, nil
}

// ExternalSendersExtension returns the external_senders GroupContext
// extension listing senders.
func ExternalSendersExtension(senders ExternalSenders) Extension {
	return Extension{Type: ExtExternalSenders, Data: wire.MustMarshal(senders)}
}

// ExternalSendersOf returns the external_senders a GroupContext's
// extensions list (nil when there is no such extension).
func ExternalSendersOf(ext Extensions) (ExternalSenders, error) {
	data, ok := ext.Find(ExtExternalSenders)
	if !ok {
		return nil, nil
	}
	var es ExternalSenders
	if err := wire.Unmarshal(data, &es); err != nil {
		return nil, fmt.Errorf("external_senders: %w", err)
	}
	return es, nil
}
