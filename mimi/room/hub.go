package room

import (
	"bytes"
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// HubSecretSize is the length of the secret the hub's external-sender keys
// are derived from.
const HubSecretSize = 32

// hubKeyLabel separates the hub's external-sender keys from any other use
// of the secret.
const hubKeyLabel = "mimi-hub external sender"

// HubKeys are the hub's external-sender signature keys (RFC 9420 section
// 12.1.8.1), one per supported cipher suite, all derived from one secret
// that the provider's replicated state holds: every replica signs the same
// hub proposals with the same bytes. HubKeys is immutable and safe for
// concurrent use.
type HubKeys struct {
	hub  string
	keys map[mls.CipherSuite]*mls.SigningKey
}

// NewHubKeys derives the keys of hub from secret (HubSecretSize bytes).
func NewHubKeys(hub string, secret []byte) (*HubKeys, error) {
	if len(secret) != HubSecretSize {
		return nil, fmt.Errorf("hub keys: the secret is %d bytes, want %d", len(secret), HubSecretSize)
	}
	k := &HubKeys{hub: hub, keys: map[mls.CipherSuite]*mls.SigningKey{}}
	for _, cs := range mls.SupportedCipherSuites() {
		s, err := cs.Suite()
		if err != nil {
			return nil, fmt.Errorf("hub keys: %w", err)
		}
		if k.keys[cs], err = s.DeriveSigningKey(secret, hubKeyLabel); err != nil {
			return nil, fmt.Errorf("hub keys: %w", err)
		}
	}
	return k, nil
}

// HubCredential is the credential of hub's external sender: a basic
// credential whose identity is the provider URI mimi://hub.
func HubCredential(hub string) mls.Credential {
	return mls.BasicCredential([]byte(proto.ProviderURI(hub)))
}

// Sender returns the hub's external_senders entry for groups of suite cs.
func (k *HubKeys) Sender(cs mls.CipherSuite) (mls.ExternalSender, bool) {
	key, ok := k.keys[cs]
	if !ok {
		return mls.ExternalSender{}, false
	}
	return mls.ExternalSender{SignatureKey: key.PublicKey(), Credential: HubCredential(k.hub)}, true
}

// Senders returns the hub's external sender for every supported suite, in
// the order mls.SupportedCipherSuites lists them.
func (k *HubKeys) Senders() []SuiteSender {
	var out []SuiteSender
	for _, cs := range mls.SupportedCipherSuites() {
		if s, ok := k.Sender(cs); ok {
			out = append(out, SuiteSender{Suite: cs, Sender: s})
		}
	}
	return out
}

// SuiteSender is the hub's external sender for one cipher suite.
type SuiteSender struct {
	Suite  mls.CipherSuite
	Sender mls.ExternalSender
}

// sameSender reports whether two external_senders entries are equal.
func sameSender(a, b *mls.ExternalSender) bool {
	return bytes.Equal(a.SignatureKey, b.SignatureKey) && a.Credential.Equal(&b.Credential)
}

// checkExternalSenders enforces the rule on a group's external_senders
// (draft-ietf-mimi-protocol-06, "Authenticating proposals": it MUST hold the
// hub): with hub keys, the list is exactly the hub's entry for the suite;
// absent is allowed only where allowAbsent (a room from before hub keys
// keeps working without). Without keys nobody can be verified, so there
// may be none.
func (c Config) checkExternalSenders(cs mls.CipherSuite, ext mls.Extensions, allowAbsent bool) error {
	es, err := mls.ExternalSendersOf(ext)
	if err != nil {
		return err
	}
	_, present := ext.Find(mls.ExtExternalSenders)
	if c.Keys == nil {
		if present {
			return fmt.Errorf("the hub %s has no external-sender key yet, so the group may not list external senders", c.Hub)
		}
		return nil
	}
	if !present && allowAbsent {
		return nil
	}
	want, ok := c.Keys.Sender(cs)
	if !ok {
		return fmt.Errorf("the hub %s has no external-sender key for %s", c.Hub, cs)
	}
	if len(es) != 1 || !sameSender(&es[0], &want) {
		return fmt.Errorf("the group's external_senders must list exactly the hub %s's external sender for %s (the client API's GET /v1/hub gives it)", c.Hub, cs)
	}
	return nil
}

// hubSender returns the hub's index in the group's external_senders and its
// signing key, or false when the room cannot take hub proposals (created
// before the hub had keys, or the provider has none yet).
func (r *Room) hubSender() (uint32, *mls.SigningKey, bool) {
	if r.cfg.Keys == nil {
		return 0, nil, false
	}
	ctx := r.group.GroupContext()
	want, ok := r.cfg.Keys.Sender(ctx.CipherSuite)
	if !ok {
		return 0, nil, false
	}
	es, err := mls.ExternalSendersOf(ctx.Extensions)
	if err != nil {
		return 0, nil, false
	}
	for i := range es {
		if sameSender(&es[i], &want) {
			return uint32(i), r.cfg.Keys.keys[ctx.CipherSuite], true
		}
	}
	return 0, nil, false
}

// HubProposals reports whether the hub can send its own proposals to the
// room: its external sender is in the group's external_senders.
func (r *Room) HubProposals() bool {
	_, _, ok := r.hubSender()
	return ok
}

// SetHubKeys gives the room the hub's keys once the provider has them (a
// room restored or created before keeps working without hub proposals
// until its group lists the hub).
func (r *Room) SetHubKeys(k *HubKeys) { r.cfg.Keys = k }

// hubPropose makes, stores and queues a proposal of the hub itself, and
// returns its fanout. It is deterministic: every replica signs the same
// bytes.
func (r *Room) hubPropose(p *mls.Proposal, at uint64) (Effect, error) {
	index, key, ok := r.hubSender()
	if !ok {
		return Effect{}, fmt.Errorf("room %s does not list the hub as an external sender", r.id)
	}
	m, err := mls.NewExternalProposal(r.group.GroupID(), r.group.Epoch(), index, key, p)
	if err != nil {
		return Effect{}, err
	}
	res, err := r.group.ProcessProposal(m, at/1000, nil)
	if err != nil {
		return Effect{}, fmt.Errorf("the hub's own %s: %w", p.Type, err)
	}
	r.enqueue(res.Ref, res.Sender, res.Proposal)
	return r.accept(m, at, r.recipients("")), nil
}

// RemoveClients asks the hub to remove clients from the room with its own
// Remove proposals, queued for the next commit: a provider revoking its
// users' devices. From is the asking provider (the hub itself for its local
// clients); it may name only its own clients. Clients that are not members,
// or are already being removed, are skipped. A room whose group does not
// list the hub as an external sender refuses (ErrNotAllowed).
type RemoveClients struct {
	From    string
	Clients []proto.URI
}

func (q *RemoveClients) apply(r *Room, at uint64) Outcome {
	for _, c := range q.Clients {
		id, err := c.Parse()
		if err != nil || id.Kind != proto.KindClient {
			return Outcome{Err: fmt.Errorf("%w: %q is not a client URI", ErrInvalid, c)}
		}
		if id.Domain != q.From {
			return Outcome{Err: fmt.Errorf("%w: %s may remove only its own clients, not %s", ErrNotAllowed, q.From, c)}
		}
	}
	if !r.HubProposals() {
		return Outcome{Err: fmt.Errorf("%w: room %s predates hub proposals (its group does not list the hub as an external sender)", ErrNotAllowed, r.id)}
	}
	leaving := r.queuedRemovals()
	var effects []Effect
	for _, c := range q.Clients {
		l, ok := r.members.byClient[c]
		if !ok {
			continue
		}
		// Kept even when the client is already on its way out: whatever
		// removes it now may be undone (a lingering user may be active
		// again after an external commit), the revocation may not.
		r.addMandates(departure{client: c})
		if leaving[l] {
			continue
		}
		e, err := r.hubPropose(mls.RemoveProposal(l), at)
		if err != nil {
			continue // cannot happen for a member not being removed; see hubPropose
		}
		leaving[l] = true
		effects = append(effects, e)
	}
	return Outcome{Effects: effects}
}
