package consent

import (
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// Check says whether requester may claim the key material of the local user
// target for room (nil: no room named), as a key material user code:
//
//   - UserSuccess: allowed. The decision that counts is the target's room
//     decision for room if there is one, else its decision for any room,
//     else the provider's default (allowed unless requireConsent). With no
//     room named only the any-room decision and the default count. A user
//     always consents to itself.
//   - UserNoConsentForThisRoom: not allowed here, but allowed into some
//     other room (a room grant, or an any-room grant or default that a
//     revoke for this room overrides). With no room named: allowed only
//     into specific rooms, so the claim must name one.
//   - UserNoConsent: allowed into no room; also the answer, failing closed,
//     when target is not a local user or an identifier is malformed.
func (b *Book) Check(target, requester proto.URI, room *proto.URI) proto.KeyMaterialUserCode {
	if b.localUser(target) != nil {
		return proto.UserNoConsent
	}
	if _, err := userDomain(requester); err != nil {
		return proto.UserNoConsent
	}
	if room != nil {
		if id, err := room.Parse(); err != nil || id.Kind != proto.KindRoom {
			return proto.UserNoConsent
		}
	}
	if target == requester {
		return proto.UserSuccess
	}
	d := b.decisions.pair(target, requester)
	anyAllowed := !b.requireConsent
	if op, ok := d[anyRoom]; ok {
		anyAllowed = op == proto.ConsentGrant
	}
	if room == nil {
		if anyAllowed {
			return proto.UserSuccess
		}
	} else if op, ok := d[*room]; ok {
		if op == proto.ConsentGrant {
			return proto.UserSuccess
		}
	} else if anyAllowed {
		return proto.UserSuccess
	}
	// Refused here; is the requester allowed into any other room? (Only a
	// yes/no comes out of ranging over d, so its order cannot show.)
	if anyAllowed {
		return proto.UserNoConsentForThisRoom
	}
	for scope, op := range d {
		if scope != anyRoom && op == proto.ConsentGrant && (room == nil || scope != *room) {
			return proto.UserNoConsentForThisRoom
		}
	}
	return proto.UserNoConsent
}

// CheckRelayed is Check for a claim that the hub of room relays for a
// requester of another provider. The hub is trusted for its own room, not
// for who the requester is (seed section 7.3: claims go through the hub,
// which names the requester in a body it writes itself), so a grant the
// target gave the requester for any room does not count here: only the
// target's decision for this very room, else the provider's default
// (allowed unless requireConsent), and an any-room revoke still refuses.
// room must be named.
func (b *Book) CheckRelayed(target, requester proto.URI, room *proto.URI) proto.KeyMaterialUserCode {
	code := b.Check(target, requester, room)
	if code != proto.UserSuccess || room == nil || target == requester {
		return code
	}
	d := b.decisions.pair(target, requester)
	if op, ok := d[*room]; ok {
		if op == proto.ConsentGrant {
			return proto.UserSuccess
		}
		return proto.UserNoConsentForThisRoom
	}
	if op, ok := d[anyRoom]; ok && op == proto.ConsentGrant && b.requireConsent {
		// Allowed only by the any-room grant, which a hub cannot invoke
		// for someone else's user.
		return proto.UserNoConsentForThisRoom
	}
	return code
}

// entries turns records into consent entries. Records are (owner, other);
// requesterIsOwner says which of them is the requester.
func entries[V any](list []record[V], op func(V) proto.ConsentOperation, requesterIsOwner bool) []proto.ConsentEntry {
	out := make([]proto.ConsentEntry, 0, len(list))
	for _, r := range list {
		e := proto.ConsentEntry{Operation: op(r.value), Requester: r.other, Target: r.owner, Room: roomOf(r.scope)}
		if requesterIsOwner {
			e.Requester, e.Target = r.owner, r.other
		}
		out = append(out, e)
	}
	return out
}

// Pending returns the requests addressed to the local user target that it
// has not answered, as request entries sorted by requester, then scope (any
// room first, then rooms in order).
func (b *Book) Pending(target proto.URI) ([]proto.ConsentEntry, error) {
	if err := b.localUser(target); err != nil {
		return nil, fmt.Errorf("consent: pending requests: %w", err)
	}
	return entries(b.pending.owned(target), func(struct{}) proto.ConsentOperation { return proto.ConsentRequest }, false), nil
}

// Given returns the decisions in force that the local user target has
// made, as grant and revoke entries sorted by requester, then scope.
// Decisions an any-room decision replaced are gone.
func (b *Book) Given(target proto.URI) ([]proto.ConsentEntry, error) {
	if err := b.localUser(target); err != nil {
		return nil, fmt.Errorf("consent: given consents: %w", err)
	}
	return entries(b.decisions.owned(target), func(op proto.ConsentOperation) proto.ConsentOperation { return op }, false), nil
}

// Received returns the grants the local user requester has received, with
// their KeyPackages (copies), sorted by target, then scope. A grant stays
// here after the target revokes it: the requester learns nothing of
// revokes.
func (b *Book) Received(requester proto.URI) ([]proto.ConsentEntry, error) {
	if err := b.localUser(requester); err != nil {
		return nil, fmt.Errorf("consent: received grants: %w", err)
	}
	list := b.received.owned(requester)
	out := entries(list, func([]*mls.Message) proto.ConsentOperation { return proto.ConsentGrant }, true)
	for i, r := range list {
		kps, err := cloneMessages(r.value)
		if err != nil {
			return nil, fmt.Errorf("consent: received grants: %v", err)
		}
		out[i].KeyPackages = kps
	}
	return out, nil
}
