package room

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/internal/pmap"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// A Welcome need not carry the ratchet tree (the seed's byReference): its
// recipient fetches the tree of the Welcome's epoch from the hub,
// authenticated as itself (WelcomeTree). The room remembers, for every
// client a commit added, the KeyPackageRef its Welcome names, the epoch it
// joins and the client; the group keeps the trees of those epochs (reverse
// deltas, mls.Follower.RetainTreesFrom). Both are bounded: a record lives
// WelcomeTreeTTL of command time, a room keeps at most MaxWelcomeRecords
// (the oldest go first) and at most MaxTreeHistoryBytes of past trees; a
// recipient asking later is told the tree is gone and joins by external
// commit instead.

// Bounds of the trees kept for Welcomes' recipients.
const (
	// WelcomeTreeTTL is how long (ms of command time) a Welcome's
	// recipient can fetch its tree.
	WelcomeTreeTTL = 24 * 60 * 60 * 1000
	// MaxWelcomeRecords bounds the recipients a room remembers.
	MaxWelcomeRecords = 4096
	// MaxTreeHistoryBytes bounds what a room keeps of past trees.
	MaxTreeHistoryBytes = 8 << 20
)

// Errors of WelcomeTree.
var (
	// ErrUnknownWelcome: the room has no Welcome for that KeyPackage (or
	// forgot it: WelcomeTreeTTL, MaxWelcomeRecords).
	ErrUnknownWelcome = errors.New("no such Welcome")
	// ErrTreeGone: the Welcome is known but the tree of its epoch is no
	// longer kept (MaxTreeHistoryBytes).
	ErrTreeGone = errors.New("the tree of the Welcome's epoch is no longer kept")
)

// welcomeRecord is a Welcome's new member, waiting for the tree of epoch.
type welcomeRecord struct {
	epoch  uint64
	client proto.URI
	at     uint64 // acceptance time, ms
}

// welcomeRecords are the remembered recipients by KeyPackageRef, and the
// same refs by age (8-byte epoch, 8-byte time, ref) so the oldest go first.
type welcomeRecords struct {
	byRef pmap.Map[string, welcomeRecord]
	byAge pmap.Map[string, struct{}]
}

func ageKey(w welcomeRecord, ref string) string {
	b := binary.BigEndian.AppendUint64(nil, w.epoch)
	b = binary.BigEndian.AppendUint64(b, w.at)
	return string(b) + ref
}

func (ws *welcomeRecords) add(ref string, w welcomeRecord) {
	if old, ok := ws.byRef.Get(ref); ok {
		ws.byAge = ws.byAge.Delete(ageKey(old, ref))
	}
	ws.byRef = ws.byRef.Set(ref, w)
	ws.byAge = ws.byAge.Set(ageKey(w, ref), struct{}{})
}

// oldest returns the oldest record.
func (ws *welcomeRecords) oldest() (string, welcomeRecord, bool) {
	k, _, ok := ws.byAge.Min()
	if !ok {
		return "", welcomeRecord{}, false
	}
	ref := k[16:]
	w, _ := ws.byRef.Get(ref)
	return ref, w, true
}

func (ws *welcomeRecords) remove(ref string) {
	if w, ok := ws.byRef.Get(ref); ok {
		ws.byRef = ws.byRef.Delete(ref)
		ws.byAge = ws.byAge.Delete(ageKey(w, ref))
	}
}

// recordWelcomes runs after a commit: it remembers the clients the commit
// added by Welcome, forgets what expired or no longer fits, and keeps the
// group's past trees back to the oldest remembered Welcome's epoch.
func (r *Room) recordWelcomes(added []mls.AddedMember, at uint64) {
	for _, a := range added {
		m, err := memberOf(a.Node)
		if err != nil {
			continue // planCommit refused such leaves
		}
		r.welcomes.add(string(a.KeyPackageRef), welcomeRecord{epoch: r.group.Epoch(), client: m.client, at: at})
	}
	r.trimWelcomes(at)
}

// trimWelcomes drops expired and excess records (the ones whose tree is
// gone first), keeps the past trees back to the oldest record whose tree
// is still kept, within the byte bound, and moves the records whose tree
// the byte bound dropped aside: they only answer that the tree is gone
// (ErrTreeGone) until they expire, and keep no tree alive.
func (r *Room) trimWelcomes(at uint64) {
	for _, ws := range []*welcomeRecords{&r.goneWelcomes, &r.welcomes} {
		for {
			ref, w, ok := ws.oldest()
			if !ok || w.at+WelcomeTreeTTL >= at && r.welcomes.byRef.Len()+r.goneWelcomes.byRef.Len() <= MaxWelcomeRecords {
				break
			}
			ws.remove(ref)
		}
	}
	from := r.group.Epoch() + 1
	if _, w, ok := r.welcomes.oldest(); ok {
		from = w.epoch
	}
	r.group.RetainTreesFrom(from, r.cfg.maxTreeHistory())
	for {
		ref, w, ok := r.welcomes.oldest()
		if !ok || w.epoch >= r.group.OldestTree() {
			break
		}
		r.welcomes.remove(ref)
		r.goneWelcomes.add(ref, w)
	}
}

// WelcomeTree returns the ratchet tree of the epoch a Welcome joins, for
// the Welcome's recipient: client, whose KeyPackage ref the Welcome names,
// asking through its provider from. The view stays valid while the room
// goes on. Errors: ErrUnknownWelcome, ErrNotAllowed (another client or
// provider), ErrTreeGone.
func (r *Room) WelcomeTree(from string, client proto.URI, ref []byte) (*mls.TreeView, error) {
	w, ok := r.welcomes.byRef.Get(string(ref))
	gone, wasGone := r.goneWelcomes.byRef.Get(string(ref))
	switch {
	case wasGone:
		w = gone
	case !ok:
		return nil, fmt.Errorf("%w: room %s has no Welcome for KeyPackage %x (a recipient can fetch its tree for %d hours)", ErrUnknownWelcome, r.id, ref, WelcomeTreeTTL/3_600_000)
	}
	if d, _ := w.client.Domain(); w.client != client || d != from {
		return nil, fmt.Errorf("%w: the Welcome for KeyPackage %x is not for %s of %s", ErrNotAllowed, ref, client, from)
	}
	if wasGone {
		return nil, fmt.Errorf("%w (epoch %d): join by external commit instead", ErrTreeGone, w.epoch)
	}
	view, err := r.group.TreeAt(w.epoch)
	if err != nil {
		return nil, fmt.Errorf("%w (epoch %d): join by external commit instead: %v", ErrTreeGone, w.epoch, err)
	}
	return view, nil
}

// Members returns the number of member clients (the group's non-blank
// leaves).
func (r *Room) Members() int { return r.group.Tree().NumMembers() }

// encodeWelcomes writes the records in ref order (room state version 3).
func (ws *welcomeRecords) encode(w *wire.Writer) {
	w.Vector(func(w *wire.Writer) {
		for ref, rec := range ws.byRef.All() {
			w.Opaque([]byte(ref))
			w.Uint64(rec.epoch)
			rec.client.EncodeTLS(w)
			w.Uint64(rec.at)
		}
	})
}

func (ws *welcomeRecords) decode(rd *wire.Reader) {
	var last string
	rd.VectorEach(func(rd *wire.Reader) {
		var ref []byte
		var rec welcomeRecord
		rd.Opaque(&ref)
		rd.Uint64(&rec.epoch)
		rec.client.DecodeTLS(rd)
		rd.Uint64(&rec.at)
		if rd.OK() && ws.byRef.Len() > 0 && last >= string(ref) {
			rd.Failf("Welcome records are not sorted and unique")
		}
		last = string(ref)
		ws.add(string(ref), rec)
	})
}
