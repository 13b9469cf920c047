package keymaterial

import (
	"bytes"
	"maps"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// The snapshot of a Store, in the TLS presentation language:
//
//	struct {
//	    IdentifierUri client;
//	    KeyPackage regular<V>;       // oldest first
//	    KeyPackage last_resort<V>;   // ascending suite
//	} ClientRecord;
//
//	struct {
//	    IdentifierUri user;
//	    bool deleted;
//	    ClientRecord clients<V>;     // ascending URI; empty when deleted
//	} UserRecord;
//
//	struct {
//	    opaque ref<V>;               // KeyPackageRef
//	    IdentifierUri client;
//	    uint64 not_after;
//	} RouteRecord;
//
//	struct {
//	    opaque ref<V>;
//	    uint64 not_after;
//	} SpentRecord;
//
//	struct {
//	    opaque ref<V>;               // a route's KeyPackageRef
//	    IdentifierUri room;          // the room it was claimed for
//	} RouteRoom;
//
//	struct {
//	    opaque domain<V>;
//	    uint32 limits[3];            // in the order of the Limits fields
//	    UserRecord users<V>;         // ascending URI
//	    RouteRecord routes<V>;       // ascending ref
//	    SpentRecord spent<V>;        // ascending ref
//	    RouteRoom route_rooms<V>;    // ascending ref; only when not empty
//	} StoreSnapshot;
//
// route_rooms came later: it is written only when a route is bound to a
// room, so a store without such routes encodes as before, and a snapshot
// without it (every earlier one) decodes with routes for any room. A
// release before it cannot restore a snapshot that has it.
//
// DecodeTLS rejects anything a live Store could not hold: records out of
// order or repeated, identifiers that are not local or not under their
// user, KeyPackages whose credential does not name their client, whose
// leaf is not of the key_package source, whose suite is unsupported, that
// sit in the wrong list or repeat a KeyPackageRef, routes to clients that
// do not exist, and records of handed-out KeyPackages that are still
// stored. Limits are not held against the contents (they restrict growth
// only), and signatures are not verified again.

// maxRefLen bounds a KeyPackageRef (the longest hash of a supported suite).
const maxRefLen = 64

// EncodeTLS writes the store's snapshot.
func (s *Store) EncodeTLS(w *wire.Writer) {
	w.Opaque([]byte(s.domain))
	for _, p := range s.limits.fields() {
		w.Uint32(uint32(*p))
	}
	w.Vector(func(w *wire.Writer) {
		for _, u := range slices.Sorted(maps.Keys(s.users)) {
			usr := s.users[u]
			u.EncodeTLS(w)
			w.Bool(usr.deleted)
			w.Vector(func(w *wire.Writer) {
				for _, c := range slices.Sorted(maps.Keys(usr.clients)) {
					encodeClient(w, c, usr.clients[c])
				}
			})
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, ref := range slices.Sorted(maps.Keys(s.routes)) {
			w.Opaque([]byte(ref))
			s.routes[ref].client.EncodeTLS(w)
			w.Uint64(s.routes[ref].notAfter)
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, ref := range slices.Sorted(maps.Keys(s.spent)) {
			w.Opaque([]byte(ref))
			w.Uint64(s.spent[ref])
		}
	})
	var bound []string
	for _, ref := range slices.Sorted(maps.Keys(s.routes)) {
		if s.routes[ref].room != "" {
			bound = append(bound, ref)
		}
	}
	if len(bound) > 0 {
		w.Vector(func(w *wire.Writer) {
			for _, ref := range bound {
				w.Opaque([]byte(ref))
				s.routes[ref].room.EncodeTLS(w)
			}
		})
	}
}

func encodeClient(w *wire.Writer, c proto.URI, cl *client) {
	c.EncodeTLS(w)
	w.Vector(func(w *wire.Writer) {
		for _, e := range cl.regular {
			w.Raw(e.enc)
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, suite := range slices.Sorted(maps.Keys(cl.lastResort)) {
			w.Raw(cl.lastResort[suite].enc)
		}
	})
}

// DecodeTLS reads a snapshot into s, replacing its contents only when the
// whole snapshot is valid.
func (s *Store) DecodeTLS(r *wire.Reader) {
	var domain []byte
	var limits Limits
	r.Opaque(&domain)
	for _, p := range limits.fields() {
		var v uint32
		r.Uint32(&v)
		*p = int(v)
	}
	if !r.OK() {
		return
	}
	if !validDomain(string(domain)) {
		r.Failf("key material snapshot: invalid domain %q", domain)
		return
	}
	if err := limits.validate(); err != nil {
		r.Failf("key material snapshot: %v", err)
		return
	}
	ns := newStore(string(domain), limits)

	var prevUser proto.URI
	r.VectorEach(func(r *wire.Reader) {
		var u proto.URI
		var deleted bool
		u.DecodeTLS(r)
		r.Bool(&deleted)
		if !r.OK() {
			return
		}
		if _, err := ns.parseLocal(u, proto.KindUser); err != nil {
			r.Failf("key material snapshot: user: %v", err)
			return
		}
		if prevUser != "" && u <= prevUser {
			r.Failf("key material snapshot: users out of order or repeated at %s", u)
			return
		}
		prevUser = u
		usr := &user{deleted: deleted, clients: make(map[proto.URI]*client)}
		ns.users[u] = usr
		var prevClient proto.URI
		r.VectorEach(func(r *wire.Reader) {
			if deleted {
				r.Failf("key material snapshot: deleted user %s has clients", u)
				return
			}
			c, cl := ns.decodeClient(r, u)
			if !r.OK() {
				return
			}
			if prevClient != "" && c <= prevClient {
				r.Failf("key material snapshot: clients out of order or repeated at %s", c)
				return
			}
			prevClient = c
			usr.clients[c] = cl
		})
	})

	var prevRef []byte
	r.VectorEach(func(r *wire.Reader) {
		var ref []byte
		var rt route
		r.Opaque(&ref)
		rt.client.DecodeTLS(r)
		r.Uint64(&rt.notAfter)
		if !r.OK() || !checkRef(r, "route", ref, prevRef) {
			return
		}
		prevRef = ref
		if _, err := ns.client(rt.client); err != nil {
			r.Failf("key material snapshot: route: %v", err)
			return
		}
		ns.routes[string(ref)] = rt
	})

	prevRef = nil
	r.VectorEach(func(r *wire.Reader) {
		var ref []byte
		var notAfter uint64
		r.Opaque(&ref)
		r.Uint64(&notAfter)
		if !r.OK() || !checkRef(r, "handed-out KeyPackage", ref, prevRef) {
			return
		}
		prevRef = ref
		if _, ok := ns.index[string(ref)]; ok {
			r.Failf("key material snapshot: handed-out KeyPackage %x is still stored", ref)
			return
		}
		ns.spent[string(ref)] = notAfter
	})

	if !r.Empty() {
		decodeRouteRooms(r, ns)
	}
	if r.OK() {
		*s = *ns
	}
}

// decodeRouteRooms reads route_rooms into ns's routes: each names a route,
// in ascending order, and a room; the list, when present, is not empty.
func decodeRouteRooms(r *wire.Reader, ns *Store) {
	var prevRef []byte
	r.VectorEach(func(r *wire.Reader) {
		var ref []byte
		var room proto.URI
		r.Opaque(&ref)
		room.DecodeTLS(r)
		if !r.OK() || !checkRef(r, "route room", ref, prevRef) {
			return
		}
		prevRef = ref
		rt, ok := ns.routes[string(ref)]
		if !ok {
			r.Failf("key material snapshot: a room for route %x, which does not exist", ref)
			return
		}
		if id, err := room.Parse(); err != nil || id.Kind != proto.KindRoom {
			r.Failf("key material snapshot: route %x: %q is not a room", ref, room)
			return
		}
		rt.room = room
		ns.routes[string(ref)] = rt
	})
	if r.OK() && prevRef == nil {
		r.Failf("key material snapshot: an empty list of route rooms")
	}
}

// checkRef checks a KeyPackageRef's length and that it follows prev.
func checkRef(r *wire.Reader, what string, ref, prev []byte) bool {
	if len(ref) == 0 || len(ref) > maxRefLen {
		r.Failf("key material snapshot: %s KeyPackageRef of %d bytes", what, len(ref))
		return false
	}
	if prev != nil && bytes.Compare(ref, prev) <= 0 {
		r.Failf("key material snapshot: %s records out of order or repeated at %x", what, ref)
		return false
	}
	return true
}

// decodeClient reads a ClientRecord of user u and indexes its KeyPackages.
func (s *Store) decodeClient(r *wire.Reader, u proto.URI) (proto.URI, *client) {
	var c proto.URI
	c.DecodeTLS(r)
	if !r.OK() {
		return c, nil
	}
	if _, err := s.parseLocal(c, proto.KindClient); err != nil {
		r.Failf("key material snapshot: client: %v", err)
		return c, nil
	}
	if owner, _ := c.UserOf(); owner != u {
		r.Failf("key material snapshot: client %s listed under %s", c, u)
		return c, nil
	}
	cl := &client{lastResort: make(map[mls.CipherSuite]*entry)}
	r.VectorEach(func(r *wire.Reader) {
		if e := s.decodeKeyPackage(r, c, false); e != nil {
			cl.regular = append(cl.regular, e)
		}
	})
	var prev mls.CipherSuite // 0 is reserved: no stored KeyPackage has it
	r.VectorEach(func(r *wire.Reader) {
		e := s.decodeKeyPackage(r, c, true)
		if e == nil {
			return
		}
		if e.kp.CipherSuite <= prev {
			r.Failf("key material snapshot: last-resort KeyPackages of %s out of order or repeated at %s", c, e.kp.CipherSuite)
			return
		}
		prev = e.kp.CipherSuite
		cl.lastResort[e.kp.CipherSuite] = e
	})
	return c, cl
}

// decodeKeyPackage reads one stored KeyPackage of client c and indexes it.
func (s *Store) decodeKeyPackage(r *wire.Reader, c proto.URI, lastResort bool) *entry {
	enc := r.Capture(func(r *wire.Reader) { r.Decode(new(mls.KeyPackage)) })
	if !r.OK() {
		return nil
	}
	e, err := decodeEntry(bytes.Clone(enc))
	if err != nil {
		r.Failf("key material snapshot: KeyPackage of %s: %v", c, err)
		return nil
	}
	ln := &e.kp.LeafNode
	switch {
	case e.kp.Version != mls.MLS10 || ln.Source != mls.SourceKeyPackage:
		r.Failf("key material snapshot: KeyPackage of %s is not an mls10 key_package", c)
	case ln.Credential.Type != mls.CredentialBasic || proto.URI(ln.Credential.Identity) != c:
		r.Failf("key material snapshot: KeyPackage of %s names another identity", c)
	case e.kp.IsLastResort() != lastResort:
		r.Failf("key material snapshot: KeyPackage of %s in the wrong list (last resort %t)", c, e.kp.IsLastResort())
	case s.index[string(e.ref)] != "":
		r.Failf("key material snapshot: KeyPackage %x stored twice", e.ref)
	default:
		s.index[string(e.ref)] = c
		return e
	}
	return nil
}
