package fsm

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
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
	// Room bounds decoding in rooms (room.Config.MaxVector).
	MaxVector int
	// Bounds are this node's state bounds, which it sets for every node
	// when it leads (bounds.go).
	Bounds
	// ReportLimit bounds the abuse reports kept.
	ReportLimit int
	// DedupWindow is how long (ms) a request id is remembered.
	DedupWindow uint64
}

// Retention bounds the room message logs: a room's messages are stored
// once for all its local readers and leave when every reader has read
// them or when these bounds are reached, oldest first. A reader still
// behind is told of a gap.
type Retention struct {
	// MaxAge is how long (ms) a message is kept unread.
	MaxAge uint64
	// RoomEntries and RoomBytes bound one room's log.
	RoomEntries int
	RoomBytes   int64
	// TotalBytes bounds all room logs together.
	TotalBytes int64
}

// Defaults for zero Config fields.
const (
	DefaultInboxLimit       = 1_000
	DefaultInboxBytes       = 4 << 20
	DefaultMaxSubscriptions = 10_000
	DefaultOutboxLimit      = 100_000
	DefaultOutboxBytes      = 64 << 20
	DefaultOutboxTotalBytes = 512 << 20
	DefaultRetentionAge     = 7 * 24 * 60 * 60 * 1000
	DefaultRoomEntries      = 100_000
	DefaultRoomBytes        = 16 << 20
	DefaultTotalLogBytes    = 512 << 20
	defaultReportLimit      = 10_000
	defaultDedupWindow      = 10 * 60 * 1000
	maxDedupEntries         = 200_000
	// maxReportBytes bounds the encoded abuse reports kept, together.
	maxReportBytes = 64 << 20
)

// Digest names everything in c that Apply depends on, defaults filled
// in. The bounds among it are replicated (Bounds), but a node configured
// with others sets its own whenever it leads, and the rest (the domain,
// MaxVector) must match or the states drift apart. The
// cluster advertises it, and a node whose digest differs from another's
// is reported (cluster.Node.StateConfigMismatches).
func (c Config) Digest() string {
	c = c.withDefaults()
	if c.MaxVector == 0 {
		c.MaxVector = defaultMaxVector
	}
	var w wire.Writer
	w.Opaque([]byte(c.Domain))
	w.Uint64(uint64(c.MaxVector))
	c.Bounds.encode(&w)
	w.Uint64(uint64(c.ReportLimit))
	w.Uint64(c.DedupWindow)
	b, _ := w.Bytes()
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func (c Config) withDefaults() Config {
	setDefault(&c.InboxLimit, DefaultInboxLimit)
	setDefault(&c.InboxBytes, DefaultInboxBytes)
	setDefault(&c.MaxSubscriptions, DefaultMaxSubscriptions)
	setDefault(&c.OutboxLimit, DefaultOutboxLimit)
	setDefault(&c.OutboxBytes, DefaultOutboxBytes)
	setDefault(&c.OutboxTotalBytes, DefaultOutboxTotalBytes)
	setDefault(&c.Retention.MaxAge, DefaultRetentionAge)
	setDefault(&c.Retention.RoomEntries, DefaultRoomEntries)
	setDefault(&c.Retention.RoomBytes, DefaultRoomBytes)
	setDefault(&c.Retention.TotalBytes, DefaultTotalLogBytes)
	setDefault(&c.ReportLimit, defaultReportLimit)
	setDefault(&c.DedupWindow, defaultDedupWindow)
	return c
}

func setDefault[T int | int64 | uint64](field *T, def T) {
	if *field <= 0 {
		*field = def
	}
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
	reports fifo[keptReport]          // reports.go
	// reportBytes is the reports' size, derived.
	reportBytes int64
	acct        accounts // accounts.go
	dedup       dedupTable
	// lastAt is the latest acceptance time applied: the FSM's clock never
	// runs backwards, even when a new leader's clock is behind the old one's.
	lastAt uint64
	// nextSeq is the next delivery seq: stream items are numbered in one
	// provider-wide order.
	nextSeq uint64
	// outWide says outbox item ids are numbered state-wide and empty
	// queues forgotten (CmdOutboxIDs, or a format 5 snapshot); before,
	// each queue numbers its own items and is kept once empty, as the
	// previous release did, so that replaying its entries gives its
	// states.
	outWide bool
	// outNext is the next outbox item id once outWide (0 until the first
	// item): ids are unique state-wide and never reused, so a queue
	// forgotten when it emptied and made again later cannot be trimmed by
	// a late delivery record meant for the old one.
	outNext uint64
	// outDroppedGone counts the items dropped undelivered from queues
	// since forgotten (outQueue.dropped), so the drops summed over all
	// peers never go down.
	outDroppedGone uint64
	// boundsSet says the state bounds in cfg came through the log
	// (CmdSetBounds), not from this node's configuration.
	boundsSet bool
	// hubSecret (CmdHubKey) derives hubKeys, the hub's external-sender keys
	// (hubproposals.go).
	hubSecret []byte

	// Derived state, rebuilt on restore and never encoded.
	hubKeys  *room.HubKeys
	logs     indexHeap[*roomStream] // streams with non-empty logs, oldest entry first
	logBytes int64                  // bytes of all room logs
	outHeap  indexHeap[*outQueue]   // peers with undelivered items, largest queue first
	outBytes int64                  // bytes of all outbox queues
	// retentionDropped counts the room-log entries (and their bytes)
	// retention dropped since this state was made: readers still behind
	// lose them (a gap). Never encoded: a restore starts it again at
	// zero, as a process restart starts any counter.
	retentionDropped      uint64
	retentionDroppedBytes int64
	// frozen holds the rooms' copies taken by the last snapshot capture
	// and unchanged since, so the next capture copies only changed rooms;
	// keysEnc, consentEnc and acctEnc the encodings of the key material
	// store, the consent book and the accounts, nil once a command may
	// have changed them (keysUnchanged).
	frozen                       map[proto.URI]*room.Room
	keysEnc, consentEnc, acctEnc []byte
}

// userRecord is a local user's searchable profile.
type userRecord struct {
	profile []proto.ProfileField
}

// clientRecord is a local client: its token, how far it has read, its
// inbox-only items and the rooms it has windows on.
type clientRecord struct {
	tokenHash []byte
	// cursor is the delivery seq the client acknowledged: it has read
	// everything up to it.
	cursor uint64
	inbox  inbox
	rooms  []proto.URI // sorted
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
		dedup:   dedupTable{index: map[string]int{}},
		frozen:  map[proto.URI]*room.Room{},
		logs:    newLogHeap(),
		outHeap: newOutHeap(),
	}, nil
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
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

// dedupTable remembers the results of recent request ids, oldest first.
// Entries expire by the commands' own acceptance times, so every replica
// forgets the same.
type dedupTable struct {
	q     fifo[dedupEntry]
	index map[string]int // request id -> position (base + index in q)
	base  int            // entries dropped so far
}

type dedupEntry struct {
	id     string
	at     uint64
	result []byte
}

func (d *dedupTable) get(id []byte) (*Result, bool) {
	pos, ok := d.index[string(id)]
	if !ok {
		return nil, false
	}
	var r Result
	if err := wire.Unmarshal(d.q.items[pos-d.base].result, &r); err != nil {
		return nil, false
	}
	return &r, true
}

func (d *dedupTable) put(id []byte, at, window uint64, r *Result) {
	n := 0
	for items := d.q.items; n < len(items); n++ {
		if items[n].at+window >= at && len(items)-n < maxDedupEntries {
			break
		}
		delete(d.index, items[n].id)
	}
	d.q.drop(n)
	d.base += n
	if _, ok := d.index[string(id)]; ok {
		return
	}
	d.add(dedupEntry{id: string(id), at: at, result: wire.MustMarshal(r)})
}

func (d *dedupTable) add(e dedupEntry) {
	d.index[e.id] = d.base + len(d.q.items)
	d.q.push(e)
}
