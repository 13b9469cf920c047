package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/pause"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Sender delivers outbox items to peers; mimi/client.Federation is one.
type Sender interface {
	Fanout(ctx context.Context, peer string, room proto.URI, firstSeq uint64, batch proto.FanoutBatch, exclude []proto.URI) error
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
// loop per peer delivers that peer's items in order, records each delivery
// through Raft, and backs off on failure. A new leader resumes where the old
// one stopped, because the outbox and its delivered marks are replicated.
type Delivery struct {
	store  *Store
	sender Sender
	cfg    DeliveryConfig

	mu      sync.Mutex
	running map[string]context.CancelFunc
	stats   map[string]*PeerStats
	updated chan struct{} // closed and replaced when stats change
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

// Stats returns a copy of the per-peer delivery statistics.
func (d *Delivery) Stats() map[string]PeerStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]PeerStats, len(d.stats))
	for p, s := range d.stats {
		out[p] = *s
	}
	return out
}

// Run delivers while this node leads, until ctx ends.
func (d *Delivery) Run(ctx context.Context) {
	d.store.node.whileLeading(ctx, d.lead)
}

// lead supervises one loop per peer with undelivered items.
func (d *Delivery) lead(ctx context.Context) {
	// Apply everything the previous leader committed before reading the
	// outbox, so nothing already delivered is sent again needlessly.
	if err := d.store.node.Barrier(ctx); err != nil {
		d.cfg.Logger.Warn("delivery: barrier after election", "err", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		changed := d.store.Changed()
		var peers []string
		_ = d.store.fsm.Read(func(s *fsm.State) error {
			for _, q := range s.Outbox(1) {
				peers = append(peers, q.Domain)
			}
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
				d.drain(pctx, p)
				d.mu.Lock()
				delete(d.running, p)
				d.mu.Unlock()
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

// drain delivers a peer's items until its queue is empty.
func (d *Delivery) drain(ctx context.Context, peer string) {
	backoff := d.cfg.MinBackoff
	for ctx.Err() == nil {
		var items []fsm.OutItem
		_ = d.store.fsm.Read(func(s *fsm.State) error {
			for _, q := range s.Outbox(d.cfg.BatchSize) {
				if q.Domain == peer {
					items = q.Items
				}
			}
			return nil
		})
		if len(items) == 0 {
			return
		}
		n, err := d.deliver(ctx, peer, items)
		if err == nil || isPermanent(err) {
			if err != nil {
				d.cfg.Logger.Error("delivery: peer refused items for good; dropping them", "peer", peer, "items", n, "err", err)
			}
			last := items[n-1].ID
			body := &fsm.DeliveredBody{Domain: peer, UpTo: last}
			res, aerr := d.store.Apply(ctx, fsm.CmdDelivered, fmt.Appendf(nil, "delivered/%s/%d", peer, last), "", body)
			if aerr == nil {
				aerr = res.Err()
			}
			if aerr != nil {
				// Not leading any more, or Raft trouble: the items will be
				// delivered again (peers drop duplicates).
				d.cfg.Logger.Warn("delivery: recording delivery", "peer", peer, "err", aerr)
				if !pause.For(ctx, backoff) {
					return
				}
				continue
			}
			d.record(peer, func(s *PeerStats) {
				if err != nil {
					s.Dropped += uint64(n)
				} else {
					s.Delivered += uint64(n)
				}
				s.LastError, s.RetryAt = "", time.Time{}
			})
			backoff = d.cfg.MinBackoff
			continue
		}
		wait := max(d.cfg.RetryAfter(err), time.Duration(rand.Int64N(int64(backoff))+1))
		d.record(peer, func(s *PeerStats) {
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

// deliver sends the first request's worth of items: consecutive fanout
// messages of one room with consecutive sequence numbers and the same
// exclusions become one batch; a consent or removeClients item goes alone. It returns how
// many items it covered.
func (d *Delivery) deliver(ctx context.Context, peer string, items []fsm.OutItem) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	first := items[0]
	switch first.Kind {
	case fsm.OutRequestConsent, fsm.OutUpdateConsent:
		var e proto.ConsentEntry
		if err := wire.Unmarshal(first.Data, &e); err != nil {
			return 1, permanent(fmt.Errorf("outbox consent item %d: %w", first.ID, err))
		}
		if first.Kind == fsm.OutRequestConsent {
			return 1, d.sender.RequestConsent(ctx, peer, &e)
		}
		return 1, d.sender.UpdateConsent(ctx, peer, &e)
	case fsm.OutFanout:
		var batch proto.FanoutBatch
		n, size := 0, 0
		for _, it := range items {
			if it.Kind != fsm.OutFanout || it.Room != first.Room || it.Seq != first.Seq+uint64(n) || !slices.Equal(it.Exclude, first.Exclude) {
				break
			}
			if size += len(it.Data); n > 0 && size > d.cfg.BatchBytes {
				break
			}
			var fm proto.FanoutMessage
			if err := wire.Unmarshal(it.Data, &fm); err != nil {
				return n + 1, permanent(fmt.Errorf("outbox fanout item %d: %w", it.ID, err))
			}
			batch = append(batch, fm)
			n++
		}
		return n, d.sender.Fanout(ctx, peer, first.Room, first.Seq, batch, first.Exclude)
	case fsm.OutRemoveClients:
		var req proto.RemoveClientsRequest
		if err := wire.Unmarshal(first.Data, &req); err != nil {
			return 1, permanent(fmt.Errorf("outbox removeClients item %d: %w", first.ID, err))
		}
		return 1, d.sender.RemoveClients(ctx, first.Room, &req)
	}
	return 1, permanent(fmt.Errorf("outbox item %d has unknown kind %d", first.ID, first.Kind))
}

func (d *Delivery) record(peer string, f func(*PeerStats)) {
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
