package cluster

import (
	"context"
	"sync"
)

// leadership fans this node's leadership state out to any number of
// watchers. Each watcher has a one-slot channel holding the latest state not
// yet received: a slow watcher never blocks Raft and never sees a stale
// value, but coalesced transitions can show as two equal values in a row
// (true, true means leadership was lost and regained in between).
type leadership struct {
	mu     sync.Mutex
	leader bool
	closed bool
	subs   map[chan bool]func() bool // watcher -> stops its context.AfterFunc
}

func newLeadership() *leadership {
	return &leadership{subs: make(map[chan bool]func() bool)}
}

// offer replaces ch's pending value with v. Only callers holding l.mu send
// on ch, so after the drain the send cannot block.
func offer(ch chan bool, v bool) {
	select {
	case <-ch:
	default:
	}
	ch <- v
}

// set publishes a new state.
func (l *leadership) set(v bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.leader = v
	for ch := range l.subs {
		offer(ch, v)
	}
}

// close publishes false and closes every watcher's channel; later watchers
// get a closed channel.
func (l *leadership) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	l.leader = false
	for ch, stop := range l.subs {
		stop()
		offer(ch, false)
		close(ch)
		delete(l.subs, ch)
	}
}

// watch registers a watcher until ctx ends or the node shuts down. The
// channel first carries the current state.
func (l *leadership) watch(ctx context.Context) <-chan bool {
	ch := make(chan bool, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		close(ch)
		return ch
	}
	ch <- l.leader
	l.subs[ch] = context.AfterFunc(ctx, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if _, ok := l.subs[ch]; ok {
			delete(l.subs, ch)
			close(ch)
		}
	})
	return ch
}

// whileLeading runs fn each time this node becomes the ready leader, with a
// context that ends when it stops leading (or ctx ends), until ctx ends or
// the node shuts down. Runs never overlap: the next begins after the
// previous returned, and whileLeading returns after the last.
func (n *Node) whileLeading(ctx context.Context, fn func(ctx context.Context)) {
	leading := n.WatchLeadership(ctx)
	stop := func() {}
	defer func() { stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case lead, ok := <-leading:
			if !ok {
				return
			}
			stop()
			stop = func() {}
			if lead {
				lctx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() {
					defer close(done)
					fn(lctx)
				}()
				stop = func() {
					cancel()
					<-done
				}
			}
		}
	}
}
