package fsm

import (
	"bytes"
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

// Config returns the bounds the state machine runs with, defaults filled
// in (operators compare the state's sizes with them).
func (f *FSM) Config() Config { return f.cfg }

// Apply implements raft.FSM: it decodes and applies one command and returns
// its *Result (a malformed entry yields an Invalid result, never a panic),
// or, for a CmdBatch, the *BatchResult of its commands.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var c Command
	var res *Result
	if err := wire.Unmarshal(l.Data, &c); err != nil {
		res = refused(Invalid, "command: %v", err)
	} else if c.Type == CmdBatch {
		f.mu.Lock()
		batch, r := f.state.applyBatch(&c)
		f.mu.Unlock()
		f.signal()
		if r != nil {
			return r // the whole batch was refused
		}
		return batch
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

// Snapshot implements raft.FSM. It runs on the FSM goroutine between two
// Apply calls and only captures a consistent view of the state (a copy of
// the tables' headers, references to what never changes in place): the
// encoding happens in Persist, while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	v, err := f.state.capture()
	f.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("fsm snapshot: %w", err)
	}
	return &snapshot{view: v}, nil
}

// Restore implements raft.FSM: it replaces the state with a snapshot's,
// decoding it as it is read.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := decodeState(f.cfg, rc)
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
func (f *FSM) Encode() ([]byte, error) { return f.encode(false) }

// EncodeContent returns the state's encoding with its clock (the last
// acceptance time) zeroed, to compare the content of two states: the clock
// moves with every command answered, refusals with a MIMI code included.
func (f *FSM) EncodeContent() ([]byte, error) { return f.encode(true) }

func (f *FSM) encode(noClock bool) ([]byte, error) {
	f.mu.Lock()
	v, err := f.state.capture()
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if noClock {
		v.lastAt = 0
	}
	var b bytes.Buffer
	if err := v.persist(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

type snapshot struct{ view *view }

// Persist streams the encoding to the sink.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.view.persist(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("fsm snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() { s.view = nil }
