package fsm

import (
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// FSM is the provider's Raft state machine. Apply runs commands in log
// order; reads take a shared lock and see the state as of the last applied
// entry (callers wanting linearizable reads barrier through Raft first).
type FSM struct {
	cfg Config

	mu    sync.RWMutex
	state *State

	// changed is closed and replaced after every applied command, so that
	// long-polling readers wake up. It carries no state.
	changedMu sync.Mutex
	changed   chan struct{}
}

// New returns an FSM with empty state.
func New(cfg Config) (*FSM, error) {
	s, err := newState(cfg)
	if err != nil {
		return nil, fmt.Errorf("fsm: %w", err)
	}
	return &FSM{cfg: s.cfg, state: s, changed: make(chan struct{})}, nil
}

// Apply implements raft.FSM: it decodes and applies one command and returns
// its *Result (a malformed entry yields an Invalid result, never a panic).
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var c Command
	var res *Result
	if err := wire.Unmarshal(l.Data, &c); err != nil {
		res = refused(Invalid, "command: %v", err)
	} else {
		f.mu.Lock()
		res = f.state.apply(&c)
		f.mu.Unlock()
	}
	f.signal()
	return res
}

func (f *FSM) signal() {
	f.changedMu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.changedMu.Unlock()
}

// Changed returns a channel closed at the next applied command.
func (f *FSM) Changed() <-chan struct{} {
	f.changedMu.Lock()
	defer f.changedMu.Unlock()
	return f.changed
}

// Read runs fn with the state under the read lock. fn must not keep
// references into the state after it returns.
func (f *FSM) Read(fn func(s *State) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return fn(f.state)
}

// Snapshot implements raft.FSM. The state is encoded under the read lock, so
// Apply may continue while the snapshot is written.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	data, err := wire.Marshal(f.state)
	f.mu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("fsm snapshot: %w", err)
	}
	return &snapshot{data: data}, nil
}

// Restore implements raft.FSM: it replaces the state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("fsm restore: %w", err)
	}
	s, err := decodeState(f.cfg, data)
	if err != nil {
		return fmt.Errorf("fsm restore: %w", err)
	}
	f.mu.Lock()
	f.state = s
	f.mu.Unlock()
	f.signal()
	return nil
}

// Encode returns the state's encoding, as a snapshot holds it.
func (f *FSM) Encode() ([]byte, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return wire.Marshal(f.state)
}

type snapshot struct{ data []byte }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		sink.Cancel()
		return fmt.Errorf("fsm snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
