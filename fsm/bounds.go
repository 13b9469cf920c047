package fsm

import (
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Bounds are the limits that decide what the state keeps (when a log, an
// inbox or an outbox reaches one, Apply drops something), and the consent
// default that decides what it allows. Every replica must apply the log
// with the same bounds, or their states drift apart, so they are
// replicated state: CmdSetBounds sets them for every node, and until one
// has, a state applies its node's Config (the previous release's
// behaviour). The leader proposes its own configured bounds when they
// differ from the replicated ones (cluster.Store.RunMaintenance).
type Bounds struct {
	// InboxLimit and InboxBytes bound each client's inbox-only items
	// (Welcomes, consent notices) not yet acknowledged; older items are
	// dropped and the stream reports the gap. Room messages are not
	// counted here: Retention bounds them.
	InboxLimit int
	InboxBytes int64
	// Retention bounds the room message logs.
	Retention Retention
	// MaxSubscriptions bounds the rooms one client follows.
	MaxSubscriptions int
	// OutboxLimit and OutboxBytes bound each peer's undelivered items; a
	// full queue drops its oldest. OutboxTotalBytes bounds all peers'
	// together: past it, the largest queue drops its oldest.
	OutboxLimit      int
	OutboxBytes      int64
	OutboxTotalBytes int64
	// RequireConsent makes claims for local users need their explicit
	// grant (the consent book's default).
	RequireConsent bool
}

// maxBound keeps every bound far from overflowing the arithmetic that
// compares sizes with it (and an int on any platform the hub runs on).
const maxBound = 1 << 50

// BoundsBody sets the replicated bounds (CmdSetBounds).
type BoundsBody struct {
	Bounds Bounds
}

// EncodeTLS writes the body.
func (b *BoundsBody) EncodeTLS(w *wire.Writer) { b.Bounds.encode(w) }

// DecodeTLS reads the body.
func (b *BoundsBody) DecodeTLS(r *wire.Reader) { b.Bounds.decode(r) }

func (b *Bounds) encode(w *wire.Writer) {
	for _, v := range []uint64{uint64(b.InboxLimit), uint64(b.InboxBytes), b.Retention.MaxAge, uint64(b.Retention.RoomEntries),
		uint64(b.Retention.RoomBytes), uint64(b.Retention.TotalBytes), uint64(b.MaxSubscriptions), uint64(b.OutboxLimit),
		uint64(b.OutboxBytes), uint64(b.OutboxTotalBytes)} {
		w.Uint64(v)
	}
	w.Bool(b.RequireConsent)
}

func (b *Bounds) decode(r *wire.Reader) {
	var v [10]uint64
	for i := range v {
		r.Uint64(&v[i])
		v[i] = min(v[i], maxBound+1) // validate refuses it; no overflow on the way
	}
	*b = Bounds{InboxLimit: int(v[0]), InboxBytes: int64(v[1]),
		Retention:        Retention{MaxAge: v[2], RoomEntries: int(v[3]), RoomBytes: int64(v[4]), TotalBytes: int64(v[5])},
		MaxSubscriptions: int(v[6]), OutboxLimit: int(v[7]), OutboxBytes: int64(v[8]), OutboxTotalBytes: int64(v[9])}
	r.Bool(&b.RequireConsent)
}

// validate refuses a bound that is not positive or is beyond maxBound,
// naming the first in a fixed order (the refusal is a replicated result).
func (b Bounds) validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{{"inbox items", int64(b.InboxLimit)}, {"inbox bytes", b.InboxBytes}, {"retention age", int64(min(b.Retention.MaxAge, maxBound+1))},
		{"room log entries", int64(b.Retention.RoomEntries)}, {"room log bytes", b.Retention.RoomBytes}, {"log bytes", b.Retention.TotalBytes},
		{"subscriptions", int64(b.MaxSubscriptions)}, {"outbox items", int64(b.OutboxLimit)}, {"outbox bytes", b.OutboxBytes},
		{"outbox total bytes", b.OutboxTotalBytes}} {
		if f.v <= 0 || f.v > maxBound {
			return fmt.Errorf("the %s bound is %d; want 1 to %d", f.name, f.v, int64(maxBound))
		}
	}
	return nil
}

// setBounds applies CmdSetBounds. A tighter bound takes effect where the
// state next changes under it (the next message of a room, the next
// enqueue, the next prune), as any bound does.
func (s *State) setBounds(b *BoundsBody) *Result {
	if err := b.Bounds.validate(); err != nil {
		return refused(Invalid, "%v", err)
	}
	if s.boundsSet && s.cfg.Bounds == b.Bounds {
		return answerUnchanged(nil)
	}
	s.useBounds(b.Bounds)
	return success(nil)
}

// useBounds makes b the bounds this state applies, replicated.
func (s *State) useBounds(b Bounds) {
	s.cfg.Bounds = b
	s.consent.SetRequireConsent(b.RequireConsent)
	s.boundsSet = true
}

// Bounds returns the bounds this state applies the log with, and whether
// they came through the log (CmdSetBounds) rather than from this node's
// configuration.
func (s *State) Bounds() (b Bounds, replicated bool) { return s.cfg.Bounds, s.boundsSet }
