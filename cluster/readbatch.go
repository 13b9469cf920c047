package cluster

import (
	"context"
	"sync"
)

// readBatch shares read index rounds among concurrent callers, so that n
// linearizable reads arriving together cost one leadership confirmation
// (and, on a follower, one request to the leader) instead of n. Every
// request authenticates with a linearizable read, so without sharing the
// leader would confirm its leadership once per request.
//
// A caller may only use a round that started after it arrived: an index
// obtained earlier could miss a write acknowledged between that round's
// start and the caller's arrival. So a caller that finds a round in flight
// joins the next one, which starts as soon as the one in flight ends; at
// most one round runs at a time, and a caller waits at most two.
type readBatch struct {
	mu       sync.Mutex
	inflight bool
	next     *readRound // the round new callers join; nil until one does
}

// readRound is one shared read index request.
type readRound struct {
	done   chan struct{}
	idx    uint64
	err    error
	joined int // callers sharing it
}

// get returns a read index from a round that started after the call.
// fetch obtains the index; roundCtx gives each round its own context (the
// round outlives any one caller, who may give up while it runs).
func (b *readBatch) get(ctx context.Context, roundCtx func() (context.Context, context.CancelFunc), fetch func(context.Context) (uint64, error)) (uint64, error) {
	b.mu.Lock()
	if b.next == nil {
		b.next = &readRound{done: make(chan struct{})}
	}
	r := b.next
	r.joined++
	if !b.inflight {
		b.start(roundCtx, fetch)
	}
	b.mu.Unlock()
	select {
	case <-r.done:
		return r.idx, r.err
	case <-ctx.Done():
		return 0, contextError("read index", ctx)
	}
}

// start runs the waiting round (b.mu held) and, when it ends, the round
// that callers joined meanwhile, if any.
func (b *readBatch) start(roundCtx func() (context.Context, context.CancelFunc), fetch func(context.Context) (uint64, error)) {
	r := b.next
	b.next, b.inflight = nil, true
	go func() {
		ctx, cancel := roundCtx()
		r.idx, r.err = fetch(ctx)
		cancel()
		close(r.done)
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.next != nil {
			b.start(roundCtx, fetch)
			return
		}
		b.inflight = false
	}()
}
