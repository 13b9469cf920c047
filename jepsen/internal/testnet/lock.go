package testnet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	return &Lock{f: f}, nil
}

// WaitLock takes the lock in dir, waiting while another run holds it,
// until ctx ends.
func WaitLock(ctx context.Context, dir string) (*Lock, error) {
	for {
		l, err := TryLock(dir)
		if !errors.Is(err, ErrBusy) {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("testnet: waiting for the network lock: %w (%w)", ctx.Err(), ErrBusy)
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
