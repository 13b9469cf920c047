package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// Errors callers branch on. Besides these, Apply, Barrier and Snapshot
// return the context's error (wrapped) when the context is cancelled.
var (
	// ErrNotLeader: this node is not the leader, so the operation was not
	// performed. The returned error is a *NotLeaderError naming the leader
	// when it is known; errors.Is(err, ErrNotLeader) matches it.
	ErrNotLeader = errors.New("not the leader")

	// ErrTimeout: the context's deadline (or, for a context without one,
	// Config.ApplyTimeout) passed before the operation completed. For Apply
	// the outcome is unknown: the entry may still commit. The error also
	// matches context.DeadlineExceeded.
	ErrTimeout = errors.New("timed out")

	// ErrLeadershipLost: leadership was lost while the entry was in flight.
	// The outcome is unknown: the entry may still commit under the next
	// leader.
	ErrLeadershipLost = errors.New("leadership lost before the entry was known to be committed")

	// ErrShutdown: the node is shut down or shutting down.
	ErrShutdown = errors.New("node is shut down")

	// ErrNothingToSnapshot: Snapshot found no applied entries to capture.
	ErrNothingToSnapshot = errors.New("nothing new to snapshot")

	// ErrEntryTooLarge: the command's encoding exceeds
	// Config.MaxEntrySize; it was not applied. The returned error is an
	// *EntryTooLargeError.
	ErrEntryTooLarge = errors.New("log entry too large")
)

// EntryTooLargeError is a command refused before Raft because its encoding
// exceeds the per-entry limit.
type EntryTooLargeError struct {
	Op          string
	Size, Limit int
}

func (e *EntryTooLargeError) Error() string {
	if e.Limit == 0 {
		return "cluster: " + e.Op // as the leader reported it
	}
	return fmt.Sprintf("cluster: %s: the command is %d bytes; a log entry holds at most %d", e.Op, e.Size, e.Limit)
}

// Is makes errors.Is(err, ErrEntryTooLarge) true.
func (e *EntryTooLargeError) Is(target error) bool { return target == ErrEntryTooLarge }

// TooLarge tells the API to answer 413.
func (e *EntryTooLargeError) TooLarge() bool { return true }

// checkEntrySize refuses a command larger than the per-entry limit.
func (n *Node) checkEntrySize(op string, size int) error {
	if size > n.cfg.MaxEntrySize {
		return &EntryTooLargeError{Op: op, Size: size, Limit: n.cfg.MaxEntrySize}
	}
	return nil
}

// NotLeaderError reports that an operation needs the leader. LeaderID and
// LeaderAddr are empty when no leader is known (for example during an
// election); a caller can retry or forward the request to LeaderAddr.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
	cause      error
}

func (e *NotLeaderError) Error() string {
	if e.LeaderAddr == "" && e.LeaderID == "" {
		return "cluster: not the leader (no leader known)"
	}
	return fmt.Sprintf("cluster: not the leader (leader is %q at %s)", e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// Unwrap returns hashicorp/raft's underlying error, if any.
func (e *NotLeaderError) Unwrap() error { return e.cause }

// translate maps hashicorp/raft's errors onto this package's.
func (n *Node) translate(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		id, addr := n.Leader()
		return &NotLeaderError{LeaderID: id, LeaderAddr: addr, cause: err}
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("cluster: %s: %w (%w)", op, ErrLeadershipLost, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("cluster: %s: %w", op, ErrShutdown)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		// Enqueue timeouts are derived from the context deadline.
		return fmt.Errorf("cluster: %s: %w: %w", op, ErrTimeout, context.DeadlineExceeded)
	case errors.Is(err, raft.ErrNothingNewToSnapshot):
		return fmt.Errorf("cluster: %s: %w", op, ErrNothingToSnapshot)
	default:
		return fmt.Errorf("cluster: %s: %w", op, err)
	}
}

// contextError reports that ctx ended before op completed.
func contextError(op string, ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("cluster: %s: %w: %w", op, ErrTimeout, err)
	}
	return fmt.Errorf("cluster: %s: %w", op, err)
}
