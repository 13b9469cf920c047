package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/pause"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Sender delivers outbox items to peers; mimi/client.Federation, through
// FanoutEncoded, is one. Fanout's messages are FanoutMessage encodings, as
// the outbox keeps them (one copy shared by every peer's item).
type Sender interface {
	Fanout(ctx context.Context, peer string, room proto.URI, firstSeq uint64, messages [][]byte, exclude []proto.URI) error
	RequestConsent(ctx context.Context, targetDomain string, e *proto.ConsentEntry) error
	UpdateConsent(ctx context.Context, requesterDomain string, e *proto.ConsentEntry) error
	RemoveClients(ctx context.Context, room proto.URI, req *proto.RemoveClientsRequest) error
}

// PermanentError is implemented by errors for which retrying cannot help
// (the peer refused the request as malformed or unauthorized).
type PermanentError interface {
	Permanent() bool
}

// DeliveryConfig tunes the fanout delivery worker.
type DeliveryConfig struct {
	// BatchSize bounds the messages of one /fanout request, BatchBytes
	// their encoded size (a single larger message goes alone): a peer
	// meters fanout bytes per room and refuses bodies past its limit.
	BatchSize  int
	BatchBytes int
	// MinBackoff and MaxBackoff bound the retry delay; each failure doubles
	// it, with full jitter. A peer's Retry-After is honoured as a minimum.
	MinBackoff, MaxBackoff time.Duration
	// RequestTimeout bounds one delivery attempt.
	RequestTimeout time.Duration
	// RetryAfter extracts a peer's Retry-After from an error (0 if none).
	RetryAfter func(error) time.Duration
	Logger     *slog.Logger
}

func (c DeliveryConfig) withDefaults() DeliveryConfig {
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = 1 << 20
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 200 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 15 * time.Second
	}
	if c.RetryAfter == nil {
		c.RetryAfter = func(error) time.Duration { return 0 }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Delivery is the leader-only worker that drains the replicated outbox: one
// loop per peer reads only that peer's queue and delivers its items in
// order (a room's messages in hub order, several rooms' in requests of
// their own), and one recorder writes the progress of every peer through
// Raft, all peers in one entry (CmdDeliveredMany), one entry at a time. A
// peer's loop goes on from what it delivered without waiting for the
// record; a new leader resumes from what was recorded, so items delivered
// but not yet recorded are delivered again, which peers drop as
// duplicates (hub sequence numbers).
type Delivery struct {
	store  *Store
	sender Sender
	cfg    DeliveryConfig

	mu      sync.Mutex
	running map[string]context.CancelFunc
	// stats holds the peers whose loop runs, so it is bounded by the
	// peers something waits for; a loop that ends (its queue emptied and
	// was forgotten, or this node stopped leading) adds its peer's counts
	// to forgotten and drops them, so the sums never go down.
	stats     map[string]*PeerStats
	forgotten PeerStats
	updated   chan struct{} // closed and replaced when stats change
}

// PeerStats describes delivery to one peer.
type PeerStats struct {
	Delivered uint64    // items delivered
	Dropped   uint64    // items the peer refused for good
	Failures  uint64    // failed attempts
	LastError string    // the last failure
	RetryAt   time.Time // when the next attempt is due after a failure
}

// NewDelivery returns a delivery worker for store's outbox.
func NewDelivery(store *Store, sender Sender, cfg DeliveryConfig) *Delivery {
	return &Delivery{store: store, sender: sender, cfg: cfg.withDefaults(), running: map[string]context.CancelFunc{}, stats: map[string]*PeerStats{}, updated: make(chan struct{})}
}

// Stats returns a copy of the delivery statistics of the peers whose loop
// runs: those something waits for, while this node leads.
func (d *Delivery) Stats() map[string]PeerStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]PeerStats, len(d.stats))
	for p, s := range d.stats {
		out[p] = *s
	}
	return out
}

// Forgotten returns the counts (Delivered, Dropped, Failures) of the peers
// whose loop has ended since this worker was made, summed: with Stats they
// make counts that never go down, while Stats keeps nothing for a peer
// nothing waits for.
func (d *Delivery) Forgotten() PeerStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.forgotten
}

// Run delivers while this node leads, until ctx ends.
func (d *Delivery) Run(ctx context.Context) {
	d.store.node.whileLeading(ctx, d.lead)
}

// lead supervises one loop per peer with undelivered items, and the
// recorder.
func (d *Delivery) lead(ctx context.Context) {
	// Apply everything the previous leader committed before reading the
	// outbox, so nothing already delivered is sent again needlessly.
	if err := d.store.node.Barrier(ctx); err != nil {
		d.cfg.Logger.Warn("delivery: barrier after election", "err", err)
	}
	rec := newRecorder()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { d.record(ctx, rec) })
	for {
		changed := d.store.Changed()
		var peers []string
		_ = d.store.fsm.Read(func(s *fsm.State) error {
			peers = s.OutboxDomains()
			return nil
		})
		d.mu.Lock()
		for _, p := range peers {
			if _, ok := d.running[p]; ok {
				continue
			}
			pctx, cancel := context.WithCancel(ctx)
			d.running[p] = cancel
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.drain(pctx, p, rec)
				d.forget(p)
				cancel()
			}()
		}
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// window is how many of a peer's items one pass reads: enough for a full
// batch of each of a few rooms whose messages interleave in the queue.
func (d *Delivery) window() int { return 4 * d.cfg.BatchSize }

// drain delivers a peer's items until nothing waits for it.
func (d *Delivery) drain(ctx context.Context, peer string, rec *recorder) {
	backoff := d.cfg.MinBackoff
	var sent uint64 // every item up to here is delivered (recorded or not)
	for ctx.Err() == nil {
		changed := d.store.Changed()
		var items []fsm.OutItem
		var waiting bool
		_ = d.store.fsm.Read(func(s *fsm.State) error {
			items, waiting = s.OutboxAfter(peer, sent, d.window())
			return nil
		})
		if !waiting {
			return
		}
		if len(items) == 0 {
			// All delivered; the record is on its way.
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			continue
		}
		done, dropped, err := d.deliver(ctx, peer, items)
		if done > 0 {
			sent = items[done-1].ID
			rec.mark(peer, sent)
			d.note(peer, func(s *PeerStats) {
				s.Delivered += uint64(done - dropped)
				s.Dropped += uint64(dropped)
				if err == nil {
					s.LastError, s.RetryAt = "", time.Time{}
				}
			})
		}
		if err == nil {
			backoff = d.cfg.MinBackoff
			continue
		}
		if ctx.Err() != nil {
			return
		}
		wait := max(d.cfg.RetryAfter(err), time.Duration(rand.Int64N(int64(backoff))+1))
		d.note(peer, func(s *PeerStats) {
			s.Failures++
			s.LastError = err.Error()
			s.RetryAt = time.Now().Add(wait)
		})
		d.cfg.Logger.Info("delivery: peer unreachable; backing off", "peer", peer, "wait", wait, "err", err)
		if !pause.For(ctx, wait) {
			return
		}
		backoff = min(2*backoff, d.cfg.MaxBackoff)
	}
}

// request is one delivery: fanout messages of one room with consecutive
// sequence numbers and the same exclusions, or one other item.
type request struct {
	items []int // indexes into the window, ascending
	bytes int
}

// plan groups a window of items into requests. Fanout items of one room
// (and exclusions) join that room's open request while their numbers
// follow on and it has room; a consent or removeClients item is a
// request of its own, after which every room starts a new request, so
// each peer sees everything in queue order but for rooms, whose messages
// are independent of each other's.
func (d *Delivery) plan(items []fsm.OutItem) []request {
	var reqs []request
	open := map[string]int{} // room and exclusions -> request
	for i, it := range items {
		if it.Kind != fsm.OutFanout {
			reqs = append(reqs, request{items: []int{i}})
			clear(open)
			continue
		}
		k := groupKey(&it)
		if j, ok := open[k]; ok {
			r := &reqs[j]
			last := &items[r.items[len(r.items)-1]]
			if last.Seq+1 == it.Seq && len(r.items) < d.cfg.BatchSize && r.bytes+len(it.Data) <= d.cfg.BatchBytes {
				r.items = append(r.items, i)
				r.bytes += len(it.Data)
				continue
			}
		}
		open[k] = len(reqs)
		reqs = append(reqs, request{items: []int{i}, bytes: len(it.Data)})
	}
	return reqs
}

func groupKey(it *fsm.OutItem) string {
	var b strings.Builder
	b.WriteString(string(it.Room))
	for _, c := range it.Exclude {
		b.WriteByte(' ')
		b.WriteString(string(c))
	}
	return b.String()
}

// deliver sends a window's requests in order until one fails. It returns
// how many of the window's first items are done (delivered, or refused
// for good: dropped counts those) and the failure that stopped it.
func (d *Delivery) deliver(ctx context.Context, peer string, items []fsm.OutItem) (done, dropped int, err error) {
	state := make([]int8, len(items)) // 1 delivered, 2 dropped
	for _, r := range d.plan(items) {
		err = d.send(ctx, peer, items, r)
		if err != nil && !isPermanent(err) {
			break
		}
		mark := int8(1)
		if err != nil {
			mark = 2
			d.cfg.Logger.Error("delivery: peer refused items for good; dropping them", "peer", peer, "items", len(r.items), "err", err)
			err = nil
		}
		for _, i := range r.items {
			state[i] = mark
		}
	}
	for done < len(items) && state[done] != 0 {
		if state[done] == 2 {
			dropped++
		}
		done++
	}
	return done, dropped, err
}

// send makes one request.
func (d *Delivery) send(ctx context.Context, peer string, items []fsm.OutItem, r request) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	first := &items[r.items[0]]
	switch first.Kind {
	case fsm.OutRequestConsent, fsm.OutUpdateConsent:
		var e proto.ConsentEntry
		if err := wire.Unmarshal(first.Data, &e); err != nil {
			return permanent(fmt.Errorf("outbox consent item %d: %w", first.ID, err))
		}
		if first.Kind == fsm.OutRequestConsent {
			return d.sender.RequestConsent(ctx, peer, &e)
		}
		return d.sender.UpdateConsent(ctx, peer, &e)
	case fsm.OutFanout:
		msgs := make([][]byte, len(r.items))
		for j, i := range r.items {
			msgs[j] = items[i].Data
		}
		return d.sender.Fanout(ctx, peer, first.Room, first.Seq, msgs, first.Exclude)
	case fsm.OutRemoveClients:
		var req proto.RemoveClientsRequest
		if err := wire.Unmarshal(first.Data, &req); err != nil {
			return permanent(fmt.Errorf("outbox removeClients item %d: %w", first.ID, err))
		}
		return d.sender.RemoveClients(ctx, first.Room, &req)
	}
	return permanent(fmt.Errorf("outbox item %d has unknown kind %d", first.ID, first.Kind))
}

// recorder collects the peers' delivery progress for the record loop.
type recorder struct {
	mu    sync.Mutex
	marks map[string]uint64
	wake  chan struct{} // holds a value while marks wait
}

func newRecorder() *recorder {
	return &recorder{marks: map[string]uint64{}, wake: make(chan struct{}, 1)}
}

// mark notes that peer's items up to id were delivered.
func (r *recorder) mark(peer string, id uint64) {
	r.mu.Lock()
	r.marks[peer] = max(r.marks[peer], id)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// take returns the marks noted since the last take, sorted by peer.
func (r *recorder) take() []fsm.DeliveredBody {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]fsm.DeliveredBody, 0, len(r.marks))
	for p, id := range r.marks {
		out = append(out, fsm.DeliveredBody{Domain: p, UpTo: id})
	}
	clear(r.marks)
	slices.SortFunc(out, func(a, b fsm.DeliveredBody) int { return strings.Compare(a.Domain, b.Domain) })
	return out
}

// record writes the noted progress through Raft, every peer's in one
// entry, one entry at a time: while one is in flight the next marks
// gather. A mark that could not be written is noted again, and on a new
// leader the items are delivered again.
func (d *Delivery) record(ctx context.Context, rec *recorder) {
	backoff := d.cfg.MinBackoff
	for {
		select {
		case <-ctx.Done():
			return
		case <-rec.wake:
		}
		marks := rec.take()
		if len(marks) == 0 {
			continue
		}
		res, err := d.store.Apply(ctx, fsm.CmdDeliveredMany, nil, "", &fsm.DeliveredManyBody{Marks: marks})
		if err == nil {
			err = res.Err()
		}
		if err == nil {
			backoff = d.cfg.MinBackoff
			continue
		}
		d.cfg.Logger.Warn("delivery: recording delivery", "peers", len(marks), "err", err)
		for _, m := range marks {
			rec.mark(m.Domain, m.UpTo)
		}
		if !pause.For(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, d.cfg.MaxBackoff)
	}
}

// forget ends what the worker keeps for peer once its loop has returned:
// the loop's place and the peer's stats, whose counts join forgotten.
func (d *Delivery) forget(peer string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.running, peer)
	if s, ok := d.stats[peer]; ok {
		d.forgotten.Delivered += s.Delivered
		d.forgotten.Dropped += s.Dropped
		d.forgotten.Failures += s.Failures
		delete(d.stats, peer)
	}
	close(d.updated)
	d.updated = make(chan struct{})
}

func (d *Delivery) note(peer string, f func(*PeerStats)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats[peer]
	if s == nil {
		s = &PeerStats{}
		d.stats[peer] = s
	}
	f(s)
	close(d.updated)
	d.updated = make(chan struct{})
}

// statsChanged returns a channel closed at the next stats change.
func (d *Delivery) statsChanged() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.updated
}

type permanentError struct{ error }

func (permanentError) Permanent() bool { return true }
func (e permanentError) Unwrap() error { return e.error }

func permanent(err error) error { return permanentError{err} }

func isPermanent(err error) bool {
	var p PermanentError
	return errors.As(err, &p) && p.Permanent()
}
