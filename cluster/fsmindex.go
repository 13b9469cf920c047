package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// noopExtension marks the log entries a new leader appends to learn that
// its FSM has caught up (see Node.markReady). The entries carry no data;
// the marker lives in raft.Log.Extensions, so it can never collide with an
// FSM command.
var noopExtension = []byte("mimi-hub/cluster-noop")

// snapshotMagic opens every snapshot the node writes: the index of the last
// entry the FSM had consumed follows it, then the FSM's own snapshot.
const snapshotMagic = "mimi-hub-snapshot/1\n"

// indexedFSM wraps the application FSM to track the index of the last log
// entry it consumed. hashicorp/raft's AppliedIndex counts entries handed to
// the FSM goroutine, not entries applied, and never shows the FSM noop and
// barrier entries at all; linearizable reads need the former and must not
// wait for the latter. The wrapper sees every command and configuration
// entry (it is a raft.ConfigurationStore), and the node makes sure every
// term's invisible noop is followed by a visible one of its own.
type indexedFSM struct {
	inner raft.FSM
	obs   Observer

	mu      sync.Mutex
	index   uint64
	changed chan struct{} // closed and replaced when index moves
}

func newIndexedFSM(inner raft.FSM, obs Observer) *indexedFSM {
	return &indexedFSM{inner: inner, obs: obs, changed: make(chan struct{})}
}

var (
	_ raft.FSM                = (*indexedFSM)(nil)
	_ raft.ConfigurationStore = (*indexedFSM)(nil)
)

// Apply implements raft.FSM.
func (f *indexedFSM) Apply(l *raft.Log) any {
	if bytes.Equal(l.Extensions, noopExtension) {
		f.advance(l.Index)
		return nil
	}
	start := time.Now()
	resp := f.inner.Apply(l)
	f.obs.FSMApplied(time.Since(start))
	f.advance(l.Index)
	return resp
}

// StoreConfiguration implements raft.ConfigurationStore: configuration
// entries count as consumed like commands.
func (f *indexedFSM) StoreConfiguration(index uint64, _ raft.Configuration) {
	f.advance(index)
}

func (f *indexedFSM) advance(index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if index <= f.index {
		return
	}
	f.index = index
	close(f.changed)
	f.changed = make(chan struct{})
}

// Index returns the index of the last entry the FSM consumed.
func (f *indexedFSM) Index() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.index
}

// waitIndex blocks until the FSM has consumed index, ctx ends or stop
// closes.
func (f *indexedFSM) waitIndex(ctx context.Context, index uint64, stop <-chan struct{}) error {
	for {
		f.mu.Lock()
		done, ch := f.index >= index, f.changed
		f.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return ErrShutdown
		}
	}
}

// Snapshot implements raft.FSM. It runs on the FSM goroutine, so the index
// read here is exactly the state the inner snapshot captures.
func (f *indexedFSM) Snapshot() (raft.FSMSnapshot, error) {
	s, err := f.inner.Snapshot()
	if err != nil {
		return nil, err
	}
	return &indexedSnapshot{index: f.Index(), inner: s}, nil
}

// Restore implements raft.FSM: it reads the header, restores the inner FSM
// from the rest and resets the index to the snapshot's.
func (f *indexedFSM) Restore(rc io.ReadCloser) error {
	index, err := readSnapshotHeader(rc)
	if err != nil {
		rc.Close()
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if err := f.inner.Restore(rc); err != nil {
		return err
	}
	f.mu.Lock()
	f.index = index
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	return nil
}

// readSnapshotHeader reads the magic and the consumed index.
func readSnapshotHeader(r io.Reader) (uint64, error) {
	var hdr [len(snapshotMagic) + 8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, fmt.Errorf("read header: %w", err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return 0, errors.New("not a mimi-hub snapshot (bad header)")
	}
	return binary.BigEndian.Uint64(hdr[len(snapshotMagic):]), nil
}

type indexedSnapshot struct {
	index uint64
	inner raft.FSMSnapshot
}

func (s *indexedSnapshot) Persist(sink raft.SnapshotSink) error {
	hdr := binary.BigEndian.AppendUint64([]byte(snapshotMagic), s.index)
	if _, err := sink.Write(hdr); err != nil {
		sink.Cancel()
		return fmt.Errorf("write snapshot header: %w", err)
	}
	return s.inner.Persist(sink)
}

func (s *indexedSnapshot) Release() { s.inner.Release() }
