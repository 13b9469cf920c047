package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadBatch checks the sharing rule: a caller gets the index of a
// round that started after it arrived, callers that arrive while a round
// is in flight share the next one, and one round runs at a time.
func TestReadBatch(t *testing.T) {
	var b readBatch
	var rounds atomic.Uint64
	release := make(chan struct{})
	started := make(chan uint64, 10)
	var running atomic.Int32
	fetch := func(ctx context.Context) (uint64, error) {
		if running.Add(1) > 1 {
			t.Error("two rounds ran at once")
		}
		defer running.Add(-1)
		n := rounds.Add(1)
		started <- n
		<-release
		return n * 100, nil
	}
	roundCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), time.Minute)
	}
	ctx := t.Context()
	got := make([]uint64, 5)
	var wg sync.WaitGroup
	call := func(i int) {
		defer wg.Done()
		idx, err := b.get(ctx, roundCtx, fetch)
		if err != nil {
			t.Error(err)
		}
		got[i] = idx
	}
	wg.Add(1)
	go call(0)
	if n := <-started; n != 1 {
		t.Fatalf("round %d started first", n)
	}
	// Round 1 is in flight: these four arrive after it started, so they
	// must not get its index; they share round 2.
	for i := 1; i < 5; i++ {
		wg.Add(1)
		go call(i)
	}
	waitFor(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.next != nil && b.next.joined == 4
	})
	release <- struct{}{}
	if n := <-started; n != 2 {
		t.Fatalf("round %d started second", n)
	}
	release <- struct{}{}
	wg.Wait()
	if got[0] != 100 {
		t.Fatalf("the first caller got %d, want round 1's 100", got[0])
	}
	for i := 1; i < 5; i++ {
		if got[i] != 200 {
			t.Fatalf("caller %d got %d, want round 2's 200", i, got[i])
		}
	}
	if n := rounds.Load(); n != 2 {
		t.Fatalf("%d rounds for 5 callers, want 2", n)
	}
	// A caller that gives up returns at once; the round still completes.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { _, err := b.get(cctx, roundCtx, fetch); done <- err }()
	<-started
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a canceled caller got no error")
	}
	release <- struct{}{}
	waitFor(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return !b.inflight
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}
