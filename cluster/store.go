package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Store is the replicated provider state as the API uses it: commands go
// through Raft, reads go to the local FSM. It implements httpapi.Backend.
type Store struct {
	node   *Node
	fsm    *fsm.FSM
	domain string
	now    func() time.Time
}

// NewStore joins a started node and the FSM it applies to.
func NewStore(node *Node, f *fsm.FSM, domain string) *Store {
	return &Store{node: node, fsm: f, domain: domain, now: time.Now}
}

// Domain returns the provider's domain.
func (s *Store) Domain() string { return s.domain }

// Node returns the Raft node.
func (s *Store) Node() *Node { return s.node }

// FSM returns the state machine.
func (s *Store) FSM() *fsm.FSM { return s.fsm }

// unavailableError is a write the cluster cannot take now: there is no
// leader (or this node is shutting down). The API answers 503.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string     { return "cluster unavailable: " + e.err.Error() }
func (e *unavailableError) Unwrap() error     { return e.err }
func (e *unavailableError) Unavailable() bool { return true }

// Apply proposes a command, stamped with the leader's clock, and returns its
// result. The FSM keeps its clock monotonic whatever the stamp says.
func (s *Store) Apply(ctx context.Context, t fsm.CommandType, requestID []byte, peer string, body wire.Encoder) (*fsm.Result, error) {
	cmd, err := fsm.NewCommand(t, requestID, peer, body)
	if err != nil {
		return nil, err
	}
	if cmd, err = fsm.Stamp(cmd, uint64(s.now().UnixMilli())); err != nil {
		return nil, err
	}
	resp, err := s.node.Apply(ctx, cmd)
	if err != nil {
		if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrShutdown) {
			return nil, &unavailableError{err: err}
		}
		return nil, fmt.Errorf("apply %s: %w", t, err)
	}
	res, ok := resp.(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("apply %s: the FSM returned %T", t, resp)
	}
	return res, nil
}

// Read runs fn on the local state; linearizable reads wait until every
// write committed before the call is applied here.
func (s *Store) Read(ctx context.Context, linearizable bool, fn func(*fsm.State) error) error {
	if linearizable {
		if err := s.node.Barrier(ctx); err != nil {
			if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrShutdown) {
				return &unavailableError{err: err}
			}
			return err
		}
	}
	return s.fsm.Read(fn)
}

// Changed returns a channel closed when the next command is applied.
func (s *Store) Changed() <-chan struct{} { return s.fsm.Changed() }
