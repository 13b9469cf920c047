package consent

import (
	"fmt"
	"math"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// The snapshot of a Book, in the TLS presentation language:
//
//	struct {
//	    opaque domain<V>;
//	    bool require_consent;
//	    uint32 limits[6];                // in the order of the Limits fields
//	    ConsentEntry pending<V>;         // request; sorted by target, requester, room
//	    ConsentEntry decisions<V>;       // grant or revoke, no KeyPackages; same order
//	    ConsentEntry received<V>;        // grant; sorted by requester, target, room
//	} BookSnapshot;
//
// Rooms sort with "any room" first. The encoding is canonical: DecodeTLS
// rejects unsorted or repeated records and every record a live Book could
// not hold, so a decoded snapshot re-encodes byte for byte. Limits are not
// held against the records (they restrict growth only).

// EncodeTLS writes the book's snapshot.
func (b *Book) EncodeTLS(w *wire.Writer) {
	w.Opaque([]byte(b.domain))
	w.Bool(b.requireConsent)
	for _, p := range b.limits.fields() {
		w.Uint32(uint32(*p))
	}
	writeRecords(w, b.pending.all(), func(r record[struct{}]) proto.ConsentEntry {
		return proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: r.other, Target: r.owner, Room: roomOf(r.scope)}
	})
	writeRecords(w, b.decisions.all(), func(r record[proto.ConsentOperation]) proto.ConsentEntry {
		return proto.ConsentEntry{Operation: r.value, Requester: r.other, Target: r.owner, Room: roomOf(r.scope)}
	})
	writeRecords(w, b.received.all(), func(r record[[]*mls.Message]) proto.ConsentEntry {
		return proto.ConsentEntry{Operation: proto.ConsentGrant, Requester: r.owner, Target: r.other, Room: roomOf(r.scope), KeyPackages: r.value}
	})
}

func writeRecords[V any](w *wire.Writer, list []record[V], entry func(record[V]) proto.ConsentEntry) {
	w.Vector(func(w *wire.Writer) {
		for _, r := range list {
			e := entry(r)
			w.Encode(&e)
		}
	})
}

// DecodeTLS reads a snapshot into b, replacing its contents only when the
// whole snapshot is valid.
func (b *Book) DecodeTLS(r *wire.Reader) {
	var domain []byte
	var requireConsent bool
	var limits Limits
	r.Opaque(&domain)
	r.Bool(&requireConsent)
	for _, p := range limits.fields() {
		var v uint32
		r.Uint32(&v)
		*p = int(v)
	}
	if !r.OK() {
		return
	}
	if !validDomain(string(domain)) {
		r.Failf("consent snapshot: invalid domain %q", domain)
		return
	}
	if err := limits.validate(); err != nil {
		r.Failf("consent snapshot: %v", err)
		return
	}
	nb := newBook(string(domain), requireConsent, limits)

	readRecords(r, nb, "pending request", false, func(p parsed) error {
		if p.op != proto.ConsentRequest {
			return fmt.Errorf("operation %s, want request", p.op)
		}
		nb.pending.put(p.target, p.requester, p.scope, struct{}{})
		return nil
	})
	readRecords(r, nb, "decision", false, func(p parsed) error {
		if p.op != proto.ConsentGrant && p.op != proto.ConsentRevoke {
			return fmt.Errorf("operation %s, want grant or revoke", p.op)
		}
		if len(p.keyPackages) > 0 {
			return fmt.Errorf("a decision carries KeyPackages")
		}
		nb.decisions.put(p.target, p.requester, p.scope, p.op)
		return nil
	})
	readRecords(r, nb, "received grant", true, func(p parsed) error {
		if p.op != proto.ConsentGrant {
			return fmt.Errorf("operation %s, want grant", p.op)
		}
		nb.received.put(p.requester, p.target, p.scope, p.keyPackages)
		return nil
	})
	if r.OK() {
		*b = *nb
	}
}

// readRecords reads one record list. Records are keyed (target, requester,
// scope), or (requester, target, scope) when byRequester; the owner must be
// local and keys must strictly increase.
func readRecords(r *wire.Reader, nb *Book, what string, byRequester bool, add func(parsed) error) {
	var prev [3]proto.URI
	first := true
	r.VectorEach(func(r *wire.Reader) {
		var e proto.ConsentEntry
		r.Decode(&e)
		if !r.OK() {
			return
		}
		p, err := nb.parseWith(&e, maxLimit, math.MaxInt) // as kept, whatever today's bounds
		if err != nil {
			r.Failf("consent snapshot: %s: %v", what, err)
			return
		}
		key := [3]proto.URI{p.target, p.requester, p.scope}
		ownerDomain := p.tgtDomain
		if byRequester {
			key[0], key[1] = p.requester, p.target
			ownerDomain = p.reqDomain
		}
		if ownerDomain != nb.domain {
			r.Failf("consent snapshot: %s: %s is not local", what, key[0])
			return
		}
		if !first && compareKeys(prev[0], prev[1], prev[2], key[0], key[1], key[2]) >= 0 {
			r.Failf("consent snapshot: %s records out of order or repeated at %s, %s", what, key[0], key[1])
			return
		}
		prev, first = key, false
		if err := add(p); err != nil {
			r.Failf("consent snapshot: %s: %v", what, err)
		}
	})
}
