package fsm

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/consent"
	"github.com/mimihub/mimi-hub/mimi/keymaterial"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Config is the provider's static configuration; every replica has the
// same.
type Config struct {
	Domain string
	// RequireConsent makes claims for local users need their explicit grant.
	RequireConsent bool
	// Room bounds decoding in rooms (room.Config.MaxVector).
	MaxVector int
	// InboxLimit bounds the unread items kept per client; older items are
	// dropped and the stream reports the gap.
	InboxLimit int
	// ReportLimit bounds the abuse reports kept.
	ReportLimit int
	// DedupWindow is how long (ms) a request id is remembered.
	DedupWindow uint64
}

// Defaults for zero Config fields.
const (
	defaultInboxLimit  = 10_000
	defaultReportLimit = 10_000
	defaultDedupWindow = 10 * 60 * 1000
	maxDedupEntries    = 200_000
)

func (c Config) withDefaults() Config {
	if c.InboxLimit == 0 {
		c.InboxLimit = defaultInboxLimit
	}
	if c.ReportLimit == 0 {
		c.ReportLimit = defaultReportLimit
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = defaultDedupWindow
	}
	return c
}

func (c Config) roomConfig() room.Config { return room.Config{Hub: c.Domain, MaxVector: c.MaxVector} }

// State is everything a provider replicates: the rooms it hosts, its users'
// clients, KeyPackages, consent, message streams, the fanout waiting for
// peers, and abuse reports. Every field iterates and encodes in sorted order.
type State struct {
	cfg     Config
	rooms   map[proto.URI]*room.Room
	keys    *keymaterial.Store
	consent *consent.Book
	users   map[proto.URI]*userRecord
	clients map[proto.URI]*clientRecord
	streams map[proto.URI]*roomStream // rooms local clients follow, hosted here or not
	outbox  map[string]*outQueue      // per peer domain
	reports []room.Report
	acct    accounts // accounts.go
	dedup   dedupTable
	// lastAt is the latest acceptance time applied: the FSM's clock never
	// runs backwards, even when a new leader's clock is behind the old one's.
	lastAt uint64
	// hubSecret (CmdHubKey) derives hubKeys, the hub's external-sender keys
	// (hubproposals.go); seedFanout remembers fanout without sequence
	// numbers (seedfanout.go).
	hubSecret  []byte
	hubKeys    *room.HubKeys
	seedFanout map[proto.URI]*digestRing
}

// userRecord is a local user's searchable profile.
type userRecord struct {
	profile []proto.ProfileField
}

// clientRecord is a local client: its token and its stream.
type clientRecord struct {
	tokenHash []byte
	inbox     inbox
}

func newState(cfg Config) (*State, error) {
	cfg = cfg.withDefaults()
	keys, err := keymaterial.NewStore(cfg.Domain)
	if err != nil {
		return nil, err
	}
	book, err := consent.NewBook(cfg.Domain, cfg.RequireConsent)
	if err != nil {
		return nil, err
	}
	return &State{
		cfg:     cfg,
		rooms:   map[proto.URI]*room.Room{},
		keys:    keys,
		consent: book,
		users:   map[proto.URI]*userRecord{},
		clients: map[proto.URI]*clientRecord{},
		streams: map[proto.URI]*roomStream{},
		outbox:  map[string]*outQueue{},
		acct:    newAccounts(),
		dedup:   dedupTable{entries: map[string]dedupEntry{}},

		seedFanout: map[proto.URI]*digestRing{},
	}, nil
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}

// stateVersion is the snapshot format. Version 2 added the hub section
// (the hub's external-sender secret, unnumbered-fanout digests), version 3
// the accounts section after the reports. Versions 1 and 2 still decode:
// without the sections they lack (no accounts: every client is a legacy
// device, no user has a password).
const stateVersion = 3

// EncodeTLS writes the whole state.
func (s *State) EncodeTLS(w *wire.Writer) { s.encode(w, stateVersion) }

// encode writes the state in format version (tests write version 1 to
// check it still decodes).
func (s *State) encode(w *wire.Writer, version uint8) {
	w.Uint8(version)
	w.Vector(func(w *wire.Writer) {
		for _, id := range sortedKeys(s.rooms) {
			w.Vector(func(w *wire.Writer) { s.rooms[id].EncodeTLS(w) })
		}
	})
	w.Vector(func(w *wire.Writer) { s.keys.EncodeTLS(w) })
	w.Vector(func(w *wire.Writer) { s.consent.EncodeTLS(w) })
	w.Vector(func(w *wire.Writer) {
		for _, u := range sortedKeys(s.users) {
			u.EncodeTLS(w)
			w.Vector(func(w *wire.Writer) {
				for i := range s.users[u].profile {
					s.users[u].profile[i].EncodeTLS(w)
				}
			})
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, c := range sortedKeys(s.clients) {
			rec := s.clients[c]
			c.EncodeTLS(w)
			w.Opaque(rec.tokenHash)
			rec.inbox.EncodeTLS(w)
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, id := range sortedKeys(s.streams) {
			id.EncodeTLS(w)
			s.streams[id].EncodeTLS(w)
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, d := range sortedKeys(s.outbox) {
			w.Opaque([]byte(d))
			s.outbox[d].EncodeTLS(w)
		}
	})
	w.Vector(func(w *wire.Writer) {
		for i := range s.reports {
			encodeReport(w, &s.reports[i])
		}
	})
	if version >= 3 {
		s.acct.EncodeTLS(w)
	}
	s.dedup.EncodeTLS(w)
	if version >= 2 {
		w.Vector(s.encodeHubSection)
	}
	w.Uint64(s.lastAt) // last: the clock
}

// decodeState reads a snapshot into a fresh state for cfg.
func decodeState(cfg Config, data []byte) (*State, error) {
	s, err := newState(cfg)
	if err != nil {
		return nil, err
	}
	r := wire.NewReader(data)
	var v uint8
	r.Uint8(&v)
	if r.OK() && (v < 1 || v > stateVersion) {
		return nil, fmt.Errorf("snapshot format %d, want %d (or 1 or 2)", v, stateVersion)
	}
	var rooms [][]byte
	r.VectorEach(func(r *wire.Reader) {
		var b []byte
		r.Opaque(&b)
		rooms = append(rooms, b)
	})
	var keys, book []byte
	r.Opaque(&keys)
	r.Opaque(&book)
	r.VectorEach(func(r *wire.Reader) {
		var u proto.URI
		u.DecodeTLS(r)
		rec := &userRecord{}
		r.VectorEach(func(r *wire.Reader) {
			var f proto.ProfileField
			f.DecodeTLS(r)
			rec.profile = append(rec.profile, f)
		})
		s.users[u] = rec
	})
	r.VectorEach(func(r *wire.Reader) {
		var c proto.URI
		c.DecodeTLS(r)
		rec := &clientRecord{}
		r.Opaque(&rec.tokenHash)
		rec.tokenHash = bytes.Clone(rec.tokenHash)
		rec.inbox.DecodeTLS(r)
		s.clients[c] = rec
	})
	r.VectorEach(func(r *wire.Reader) {
		var id proto.URI
		id.DecodeTLS(r)
		st := &roomStream{}
		st.DecodeTLS(r)
		s.streams[id] = st
	})
	r.VectorEach(func(r *wire.Reader) {
		var d []byte
		r.Opaque(&d)
		q := &outQueue{}
		q.DecodeTLS(r)
		s.outbox[string(d)] = q
	})
	r.VectorEach(func(r *wire.Reader) {
		var rep room.Report
		decodeReport(r, &rep)
		s.reports = append(s.reports, rep)
	})
	if v >= 3 {
		s.acct.DecodeTLS(r)
	}
	s.dedup.DecodeTLS(r)
	if v >= 2 {
		r.Vector(s.decodeHubSection)
	}
	r.Uint64(&s.lastAt)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("decode snapshot: %w", err)
	}
	if s.hubSecret != nil {
		if s.hubKeys, err = room.NewHubKeys(cfg.Domain, s.hubSecret); err != nil {
			return nil, fmt.Errorf("decode snapshot: %w", err)
		}
	}
	for _, b := range rooms {
		rm, err := room.Restore(s.roomConfig(), bytes.Clone(b))
		if err != nil {
			return nil, err
		}
		s.rooms[rm.ID()] = rm
	}
	if err := wire.Unmarshal(bytes.Clone(keys), s.keys); err != nil {
		return nil, fmt.Errorf("decode key material: %w", err)
	}
	if err := wire.Unmarshal(bytes.Clone(book), s.consent); err != nil {
		return nil, fmt.Errorf("decode consent: %w", err)
	}
	if s.keys.Domain() != cfg.Domain || s.consent.Domain() != cfg.Domain {
		return nil, fmt.Errorf("the snapshot belongs to %s, this provider is %s", s.keys.Domain(), cfg.Domain)
	}
	for _, u := range sortedKeys(s.users) {
		s.acct.noteUser(u)
	}
	return s, nil
}

func encodeReport(w *wire.Writer, r *room.Report) {
	r.Room.EncodeTLS(w)
	w.Encode(r.Body)
	w.Uint64(r.ReceivedAt)
	w.Uint32(uint32(r.Verified))
}

func decodeReport(rd *wire.Reader, r *room.Report) {
	r.Room.DecodeTLS(rd)
	r.Body = new(proto.AbuseReport)
	r.Body.DecodeTLS(rd)
	rd.Uint64(&r.ReceivedAt)
	var v uint32
	rd.Uint32(&v)
	r.Verified = int(v)
}

// dedupTable remembers the results of recent request ids. Entries expire by
// the commands' own acceptance times, so every replica forgets the same.
type dedupTable struct {
	entries map[string]dedupEntry
	order   []string // insertion order, oldest first
}

type dedupEntry struct {
	at     uint64
	result []byte
}

func (d *dedupTable) get(id []byte) (*Result, bool) {
	e, ok := d.entries[string(id)]
	if !ok {
		return nil, false
	}
	var r Result
	if err := wire.Unmarshal(e.result, &r); err != nil {
		return nil, false
	}
	return &r, true
}

func (d *dedupTable) put(id []byte, at, window uint64, r *Result) {
	for len(d.order) > 0 {
		oldest := d.entries[d.order[0]]
		if oldest.at+window >= at && len(d.order) < maxDedupEntries {
			break
		}
		delete(d.entries, d.order[0])
		d.order = d.order[1:]
	}
	if _, ok := d.entries[string(id)]; ok {
		return
	}
	d.entries[string(id)] = dedupEntry{at: at, result: wire.MustMarshal(r)}
	d.order = append(d.order, string(id))
}

// EncodeTLS writes the table in insertion order.
func (d *dedupTable) EncodeTLS(w *wire.Writer) {
	w.Vector(func(w *wire.Writer) {
		for _, id := range d.order {
			w.Opaque([]byte(id))
			w.Uint64(d.entries[id].at)
			w.Opaque(d.entries[id].result)
		}
	})
}

// DecodeTLS reads the table.
func (d *dedupTable) DecodeTLS(r *wire.Reader) {
	d.entries, d.order = map[string]dedupEntry{}, nil
	r.VectorEach(func(r *wire.Reader) {
		var id, res []byte
		var at uint64
		r.Opaque(&id)
		r.Uint64(&at)
		r.Opaque(&res)
		d.entries[string(id)] = dedupEntry{at: at, result: bytes.Clone(res)}
		d.order = append(d.order, string(id))
	})
}
