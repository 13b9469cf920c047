package testnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ErrBusy reports that another process holds the network lock.
var ErrBusy = errors.New("another jepsen run holds the test network")

// Lock is the machine-wide lock on the test network (one network at a
// time: they share the subnet). The kernel releases it when its holder
// dies, so a crashed run never blocks the next.
type Lock struct{ f *os.File }

const lockFile = "network.lock"

func openLock(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testnet: state directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testnet: lock: %w", err)
	}
	return f, nil
}

// TryLock takes the lock in dir (empty: DefaultStateDir) or fails with
// ErrBusy at once.
func TryLock(dir string) (*Lock, error) {
	if dir == "" {
		dir = DefaultStateDir
	}
	f, err := openLock(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("testnet: lock: %w", err)
	}
	// Say who holds it, for the runs that wait (holder).
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "pid %d: %s\n", os.Getpid(), strings.Join(os.Args, " "))
	}
	return &Lock{f: f}, nil
}

// holder reads who holds the lock in dir ("" if unknown).
func holder(dir string) string {
	if dir == "" {
		dir = DefaultStateDir
	}
	b, err := os.ReadFile(filepath.Join(dir, lockFile))
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if len(line) > 300 {
		line = line[:300] + "..."
	}
	return strings.TrimSpace(line)
}

// lockNotice is how often WaitLock repeats that it is still waiting.
const lockNotice = 30 * time.Second

// WaitLock takes the lock in dir, waiting while another run holds it,
// until ctx ends. While it waits it logs, at once and every 30 seconds,
// who holds the lock: two test runs at once (say two `go test ./...` as
// root) take turns instead of failing.
func WaitLock(ctx context.Context, dir string, log *slog.Logger) (*Lock, error) {
	start := time.Now()
	var noticed time.Time
	for {
		l, err := TryLock(dir)
		if !errors.Is(err, ErrBusy) {
			if err == nil && !noticed.IsZero() {
				log.Info("got the jepsen network lock", "waited", time.Since(start).Round(time.Second))
			}
			return l, err
		}
		if time.Since(noticed) >= lockNotice {
			noticed = time.Now()
			log.Warn("waiting for the jepsen network lock: another run uses the test network, this one starts when it ends",
				"holder", holder(dir), "waited", time.Since(start).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("testnet: waited %s for the network lock (held by %s): %w (%w)", time.Since(start).Round(time.Second), holder(dir), ctx.Err(), ErrBusy)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Unlock releases the lock.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}
