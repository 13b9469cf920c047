package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Store is the replicated provider state as the API uses it: commands go
// through Raft on the leader (forwarded there over the internal channel
// from any other node), reads go to the local FSM after a read index when
// they must be linearizable. It implements httpapi.Backend.
type Store struct {
	node   *Node
	fsm    *fsm.FSM
	domain string
	now    func() time.Time
}

// NewStore joins a started node and the FSM it applies to, and serves
// writes forwarded by the other nodes.
func NewStore(node *Node, f *fsm.FSM, domain string) *Store {
	s := &Store{node: node, fsm: f, domain: domain, now: time.Now}
	node.handleRPC(rpcApply, http.HandlerFunc(s.serveForwarded))
	return s
}

// Domain returns the provider's domain.
func (s *Store) Domain() string { return s.domain }

// Node returns the Raft node.
func (s *Store) Node() *Node { return s.node }

// FSM returns the state machine.
func (s *Store) FSM() *fsm.FSM { return s.fsm }

// unavailableError is a request the cluster cannot serve now: there is no
// leader, this node is shutting down, or a write's outcome is unknown.
// The API answers 503 with Retry-After.
type unavailableError struct {
	reason string
	err    error
}

func (e *unavailableError) Error() string     { return "cluster unavailable: " + e.err.Error() }
func (e *unavailableError) Unwrap() error     { return e.err }
func (e *unavailableError) Unavailable() bool { return true }

// Reason is a message for the API's client (it names no internal
// addresses).
func (e *unavailableError) Reason() string { return e.reason }

func unavailable(err error) error {
	switch {
	case errors.Is(err, ErrNotLeader):
		return &unavailableError{reason: "the cluster has no leader right now; retry", err: err}
	case errors.Is(err, ErrShutdown):
		return &unavailableError{reason: "this node is shutting down; retry", err: err}
	case ambiguous(err):
		return &unavailableError{reason: "the outcome of the write is unknown; retry with the same Idempotency-Key", err: err}
	}
	return err
}

// requestIDSize is the size of the request ids the store makes up for
// commands that come without one.
const requestIDSize = 16

// Apply proposes a command and returns its result. On a follower it is
// forwarded to the leader, which stamps it with its clock (the FSM keeps its
// clock monotonic whatever the stamp says). Every command carries a request
// id (a random one if the caller gave none), so when the outcome of an
// attempt is unknown the same command is sent again and the FSM returns
// the first result instead of applying it twice.
//
// Whatever the FSM can decide on a read (fsm.State.Admit: an unknown room,
// a sender who is not a member, a message at the wrong epoch, fanout for a
// room nobody follows, a repeated request ...) is answered from the local
// state, confirmed by a linearizable read, and never logged. A command
// whose encoding exceeds Config.MaxEntrySize is refused (ErrEntryTooLarge).
func (s *Store) Apply(ctx context.Context, t fsm.CommandType, requestID []byte, peer string, body wire.Encoder) (*fsm.Result, error) {
	ctx, cancel := s.node.withDefaultDeadline(ctx)
	defer cancel()
	if res, err := s.admit(ctx, t, requestID, peer, body); res != nil || err != nil {
		return res, err
	}
	if len(requestID) == 0 {
		requestID = make([]byte, requestIDSize)
		rand.Read(requestID)
	}
	cmd, err := fsm.NewCommand(t, requestID, peer, body)
	if err != nil {
		return nil, err
	}
	if err := s.node.checkEntrySize(t.String(), len(cmd)); err != nil {
		return nil, err
	}
	var res *fsm.Result
	err = s.node.onLeader(ctx, "apply "+t.String(), true, func(ctx context.Context, leader string, local bool) error {
		if local {
			var err error
			res, err = s.applyLocal(ctx, cmd)
			return err
		}
		var out []byte
		start := time.Now()
		err := s.node.rpc.call(ctx, leader, rpcApply, cmd, &out)
		s.node.cfg.Observer.Forwarded(time.Since(start), err)
		if err != nil {
			return err
		}
		var fa forwardedAnswer
		if err := wire.Unmarshal(out, &fa); err != nil {
			return fmt.Errorf("cluster: apply %s: leader's answer: %w", t, err)
		}
		res = &fa.Result
		// Read your writes: this node answers once its own state holds
		// the entry. The entry is committed either way; a wait cut short
		// by ctx only means a read right after may not see it yet.
		s.node.fsm.waitIndex(ctx, fa.Index, s.node.stopping)
		return nil
	})
	if err != nil {
		return nil, unavailable(err)
	}
	return res, nil
}

// admit answers a command the FSM decides without applying it: first on
// the local state, then, since a follower's state may lag, on a
// linearizable read (a read index, no log entry). nil: it must be logged.
func (s *Store) admit(ctx context.Context, t fsm.CommandType, requestID []byte, peer string, body wire.Encoder) (*fsm.Result, error) {
	var res *fsm.Result
	check := func(st *fsm.State) error {
		res = st.Admit(t, requestID, peer, body)
		return nil
	}
	_ = s.fsm.Read(check)
	if res == nil {
		return nil, nil
	}
	if err := s.Read(ctx, true, check); err != nil {
		return nil, err
	}
	if res != nil {
		s.node.cfg.Observer.AnsweredUnlogged(t.String())
	}
	return res, nil
}

// forwardedAnswer is the leader's answer to a forwarded command: the
// result and the entry's log index.
type forwardedAnswer struct {
	Index  uint64
	Result fsm.Result
}

// EncodeTLS implements wire.Encoder.
func (a *forwardedAnswer) EncodeTLS(w *wire.Writer) {
	w.Uint64(a.Index)
	a.Result.EncodeTLS(w)
}

// DecodeTLS implements wire.Decoder.
func (a *forwardedAnswer) DecodeTLS(r *wire.Reader) {
	r.Uint64(&a.Index)
	a.Result.DecodeTLS(r)
}

// applyLocal stamps and applies an encoded command on the leader.
func (s *Store) applyLocal(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	res, _, err := s.applyLocalIndexed(ctx, cmd)
	return res, err
}

func (s *Store) applyLocalIndexed(ctx context.Context, cmd []byte) (*fsm.Result, uint64, error) {
	if !s.node.isReadyLeader() {
		id, addr := s.node.Leader()
		return nil, 0, &NotLeaderError{LeaderID: id, LeaderAddr: addr}
	}
	if err := s.node.checkEntrySize("apply", len(cmd)); err != nil {
		return nil, 0, err
	}
	stamped, err := fsm.Stamp(cmd, uint64(s.now().UnixMilli()))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errInvalidRPC, err)
	}
	resp, index, err := s.node.applyIndexed(ctx, stamped)
	if err != nil {
		return nil, 0, err
	}
	res, ok := resp.(*fsm.Result)
	if !ok {
		return nil, 0, fmt.Errorf("cluster: apply: the FSM returned %T", resp)
	}
	return res, index, nil
}

// serveForwarded applies a command another node forwarded.
func (s *Store) serveForwarded(w http.ResponseWriter, r *http.Request) {
	limit := s.node.cfg.MaxEntrySize
	cmd, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err == nil && len(cmd) > limit {
		encodeRPCError(w, s.node.checkEntrySize("forwarded apply", len(cmd)))
		return
	}
	if err != nil {
		encodeRPCError(w, fmt.Errorf("%w: unreadable or oversized command", errInvalidRPC))
		return
	}
	ctx, cancel := s.node.withDefaultDeadline(r.Context())
	defer cancel()
	res, index, err := s.applyLocalIndexed(ctx, cmd)
	if err != nil {
		encodeRPCError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(wire.MustMarshal(&forwardedAnswer{Index: index, Result: *res}))
}

// Read runs fn on the local state; linearizable reads first wait until
// every write committed before the call is applied here (see
// Node.Barrier), which works on followers too.
func (s *Store) Read(ctx context.Context, linearizable bool, fn func(*fsm.State) error) error {
	if linearizable {
		if err := s.node.Barrier(ctx); err != nil {
			return unavailable(err)
		}
	}
	return s.fsm.Read(fn)
}

// Changed returns a channel closed when the next command is applied.
func (s *Store) Changed() <-chan struct{} { return s.fsm.Changed() }
