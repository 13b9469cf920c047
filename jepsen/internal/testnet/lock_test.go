package testnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log destination safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWaitLockWaitsItsTurn holds the network lock as another run would
// and checks that a second taker waits, says who holds the lock, and gets
// it once released; and that a bounded wait ends with a clear error.
func TestWaitLockWaitsItsTurn(t *testing.T) {
	dir := t.TempDir()
	first, err := TryLock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TryLock(dir); !errors.Is(err, ErrBusy) {
		t.Fatalf("second TryLock: %v, want ErrBusy", err)
	}
	if h := holder(dir); !strings.HasPrefix(h, fmt.Sprintf("pid %d: ", os.Getpid())) {
		t.Errorf("holder %q, want this process", h)
	}

	// A bounded wait fails clearly.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = WaitLock(ctx, dir, slog.New(slog.DiscardHandler))
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "held by pid") {
		t.Fatalf("bounded wait: %v", err)
	}

	// An unbounded wait logs at once and gets the lock when it is free.
	var logs syncBuffer
	got := make(chan *Lock, 1)
	go func() {
		l, err := WaitLock(context.Background(), dir, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "waiting for the jepsen network lock") {
		if time.Now().After(deadline) {
			t.Fatalf("no waiting line: %q", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("the waiting line does not say who holds the lock: %q", logs.String())
	}
	select {
	case <-got:
		t.Fatal("got the lock while it was held")
	case <-time.After(300 * time.Millisecond):
	}
	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-got:
		defer l.Unlock()
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not get the released lock")
	}
	if !strings.Contains(logs.String(), "got the jepsen network lock") {
		t.Errorf("no line when the lock came: %q", logs.String())
	}
}
