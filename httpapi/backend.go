package httpapi

import (
	"context"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Backend is the replicated provider state as the API sees it. The cluster
// package implements it over Raft; it forwards writes to the leader and
// stamps them with the leader's time.
type Backend interface {
	// Domain is the provider's domain.
	Domain() string
	// Apply proposes a command and returns its result once it is committed
	// and applied. requestID (optional, at most 64 bytes) makes a retry
	// return the first result instead of applying twice; peer is the
	// authenticated provider for federation requests, empty for the
	// provider's own clients. A cluster without a leader fails with an
	// error for which Unavailable reports true.
	Apply(ctx context.Context, t fsm.CommandType, requestID []byte, peer string, body wire.Encoder) (*fsm.Result, error)
	// Propose is Apply for a proposal that may carry the credential of
	// the client it acts for (fsm.Proposal.Auth), which the state machine
	// checks in log order and refuses (fsm.Unauthenticated) once revoked.
	// The result's Index is the entry's log index.
	Propose(ctx context.Context, p *fsm.Proposal) (*fsm.Result, error)
	// AppliedIndex returns the index of the last entry this node's state
	// holds: what a read now sees.
	AppliedIndex() uint64
	// WaitApplied waits until this node's state holds the entry at index
	// (a client's read-your-writes token). An index the cluster has not
	// reached is refused (an *fsm.Error of kind Invalid).
	WaitApplied(ctx context.Context, index uint64) error
	// Read runs fn on the state under a read lock. With linearizable set it
	// first makes sure every write committed before the call is applied
	// here.
	Read(ctx context.Context, linearizable bool, fn func(*fsm.State) error) error
	// Changed returns a channel closed when the next command is applied.
	Changed() <-chan struct{}
}

// Unavailable reports whether err means the cluster cannot serve the
// request right now (no leader, shutting down, or a write's outcome is
// unknown): the API answers 503 with Retry-After. If the error also has a
// Reason() string method, that is the message the client sees.
type Unavailable interface {
	Unavailable() bool
}

// TooLarge reports whether err means the command was too large for the
// backend to store (a log entry's limit): the API answers 413.
type TooLarge interface {
	TooLarge() bool
}
