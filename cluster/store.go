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
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Store is the replicated provider state as the API uses it: commands go
// through Raft on the leader (forwarded there over the internal channel
// from any other node), batched with what arrives together (propose.go);
// reads go to the local FSM after a read index when they must be
// linearizable. It implements httpapi.Backend.
type Store struct {
	node   *Node
	fsm    *fsm.FSM
	domain string
	now    func() time.Time
	// leader batches the commands this node proposes while it leads,
	// forward those it sends the leader while it follows.
	leader, forward batcher
}

// NewStore joins a started node and the FSM it applies to, and serves
// writes forwarded by the other nodes.
func NewStore(node *Node, f *fsm.FSM, domain string) *Store {
	s := &Store{node: node, fsm: f, domain: domain, now: time.Now}
	s.leader = batcher{limit: node.cfg.MaxInFlight, flush: s.proposeBatch}
	s.forward = batcher{limit: node.cfg.MaxForwards, flush: s.forwardBatch}
	node.handleRPC(rpcApply, http.HandlerFunc(s.serveForwarded))
	node.handleRPC(rpcApplyBatch, http.HandlerFunc(s.serveForwardedBatch))
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

// Apply proposes a command without a client credential; see Propose.
func (s *Store) Apply(ctx context.Context, t fsm.CommandType, requestID []byte, peer string, body wire.Encoder) (*fsm.Result, error) {
	return s.Propose(ctx, &fsm.Proposal{Type: t, RequestID: requestID, Peer: peer, Body: body})
}

// Propose applies a proposal and returns its result, with the index of
// the entry it was applied in (fsm.Result.Index: the client's
// read-your-writes token). On a follower it is forwarded to the leader,
// which stamps it with its clock (the FSM keeps its clock monotonic
// whatever the stamp says), and answered as soon as the leader has
// applied it: the follower does not wait for its own copy. Every command
// carries a request id (a random one if the caller gave none), so when
// the outcome of an attempt is unknown the same command is sent again and
// the FSM returns the first result instead of applying it twice.
//
// Whatever the FSM can decide on a read (fsm.State.Admit: an unknown room,
// a sender who is not a member, a message at the wrong epoch, fanout for a
// room nobody follows, a repeated request, a revoked credential ...) is
// answered from the local state, confirmed by a linearizable read, and
// never logged. A commit's signatures are checked here, before it is
// proposed (fsm.Precheck): the record lets every replica skip them, and
// a commit whose own signature fails is refused without an entry. A
// command whose encoding exceeds Config.MaxEntrySize is refused
// (ErrEntryTooLarge).
func (s *Store) Propose(ctx context.Context, p *fsm.Proposal) (*fsm.Result, error) {
	ctx, cancel := s.node.withDefaultDeadline(ctx)
	defer cancel()
	res, pre := s.admitLocal(p)
	leaderAdmits := false
	if res != nil {
		if !s.node.isReadyLeader() {
			// This node's state may lag (a write it forwarded a moment
			// ago is not applied here yet): rather than wait until it
			// has caught up, let the leader decide on its own state.
			leaderAdmits, res, pre = true, nil, nil
		} else {
			var err error
			if res, pre, err = s.confirmAdmit(ctx, p); res != nil || err != nil {
				return res, err
			}
		}
	}
	verified, res, err := s.precheck(ctx, p, pre)
	if res != nil || err != nil {
		return res, err
	}
	if len(p.RequestID) == 0 {
		q := *p
		q.RequestID = make([]byte, requestIDSize)
		rand.Read(q.RequestID)
		p = &q
	}
	cmd, err := p.Command(verified)
	if err != nil {
		return nil, err
	}
	if err := s.node.checkEntrySize(p.Type.String(), len(cmd)); err != nil {
		return nil, err
	}
	op := "apply " + p.Type.String()
	err = s.node.onLeader(ctx, op, true, func(ctx context.Context, _ string, local bool) error {
		pr := newProposal(cmd)
		pr.admit = leaderAdmits
		switch {
		case !local:
			s.forward.submit(pr)
		case leaderAdmits:
			// This node leads now: it decides as it would for a follower.
			s.admitForwarded(ctx, pr)
		default:
			s.leader.submit(pr)
		}
		var err error
		res, err = pr.wait(ctx, op)
		return err
	})
	if err != nil {
		return nil, unavailable(err)
	}
	return res, nil
}

// admitLocal asks the FSM, on this node's state, whether it can answer a
// proposal without logging it (fsm.State.AdmitProposal); when it must be
// logged, it returns its signature checks (nil if none).
func (s *Store) admitLocal(p *fsm.Proposal) (*fsm.Result, *fsm.Precheck) {
	var res *fsm.Result
	var pre *fsm.Precheck
	_ = s.fsm.Read(func(st *fsm.State) error {
		if res = st.AdmitProposal(p); res == nil {
			pre = st.Precheck(p)
		}
		return nil
	})
	return res, pre
}

// confirmAdmit asks the FSM again on a linearizable read (a read index, no
// log entry): an answer it gives then holds.
func (s *Store) confirmAdmit(ctx context.Context, p *fsm.Proposal) (*fsm.Result, *fsm.Precheck, error) {
	var res *fsm.Result
	var pre *fsm.Precheck
	err := s.Read(ctx, true, func(st *fsm.State) error {
		if res = st.AdmitProposal(p); res == nil {
			pre = st.Precheck(p)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if res != nil {
		s.node.cfg.Observer.AnsweredUnlogged(p.Type.String())
		res.Index = s.node.FSMIndex()
	}
	return res, pre, nil
}

// admit is admitLocal confirmed by confirmAdmit when it answers.
func (s *Store) admit(ctx context.Context, p *fsm.Proposal) (*fsm.Result, *fsm.Precheck, error) {
	if res, pre := s.admitLocal(p); res == nil {
		return nil, pre, nil
	}
	return s.confirmAdmit(ctx, p)
}

// precheck makes a proposal's signature checks and returns the record for
// the command; when the commit's own signature fails it answers the
// refusal, once a linearizable read shows the room still at the state
// the checks were taken at (Apply refuses it the same way there).
func (s *Store) precheck(ctx context.Context, p *fsm.Proposal, pre *fsm.Precheck) (*mls.Verified, *fsm.Result, error) {
	if pre == nil {
		return nil, nil, nil
	}
	v, refusal := pre.Run()
	if refusal == nil {
		return v, nil, nil
	}
	var res *fsm.Result
	err := s.Read(ctx, true, func(st *fsm.State) error {
		if res = st.AdmitProposal(p); res == nil && pre.Current(st) {
			res = refusal
		}
		return nil
	})
	if err != nil || res == nil {
		return nil, nil, err // nil, nil: the room moved on; Apply decides, checking all
	}
	s.node.cfg.Observer.AnsweredUnlogged(p.Type.String())
	res.Index = s.node.FSMIndex()
	return nil, res, nil
}

// admitForwarded decides, on the leader, a command a follower could not
// decide on its own state: it is answered from the state (confirmed on a
// linearizable read) or queued, with its signature checks made here.
func (s *Store) admitForwarded(ctx context.Context, pr *proposal) {
	var p *fsm.Proposal
	var verified *mls.Verified
	var derr error
	_ = s.fsm.Read(func(st *fsm.State) error {
		p, verified, derr = st.ProposalOf(pr.cmd)
		return nil
	})
	if derr != nil {
		pr.finish(nil, 0, fmt.Errorf("%w: %v", errInvalidRPC, derr))
		return
	}
	res, pre, err := s.admit(ctx, p)
	if res == nil && err == nil && verified == nil {
		var v *mls.Verified
		if v, res, err = s.precheck(ctx, p, pre); v != nil {
			if cmd, cerr := p.Command(v); cerr == nil {
				pr.cmd = cmd
			}
		}
	}
	switch {
	case err != nil:
		pr.finish(nil, 0, err)
	case res != nil:
		pr.finish(res, res.Index, nil)
	default:
		s.leader.submit(pr)
	}
}

// forwardedAnswer is the leader's answer to one forwarded command (the
// single-command endpoint): the result and the entry's log index.
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

// serveForwarded applies one command another node forwarded (the
// endpoint of releases that forwarded commands one by one).
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
	pr := newProposal(cmd)
	s.leader.submit(pr)
	res, err := pr.wait(ctx, "forwarded apply")
	if err != nil {
		encodeRPCError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(wire.MustMarshal(&forwardedAnswer{Index: res.Index, Result: *res}))
}

// AppliedIndex returns the index of the last entry this node's state
// holds: a read of it sees every write answered with a lower or equal
// index.
func (s *Store) AppliedIndex() uint64 { return s.node.FSMIndex() }

// WaitApplied waits until this node's state holds the entry at index (a
// client's read-your-writes token): at once when it does, else after one
// read index round, until the entry arrives. An index beyond everything
// the leader has committed is refused (an fsm.Invalid error): no wait
// could reach it.
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	if s.node.FSMIndex() >= index {
		return nil
	}
	ctx, cancel := s.node.withDefaultDeadline(ctx)
	defer cancel()
	committed, err := s.node.ReadIndex(ctx)
	if err != nil {
		return unavailable(err)
	}
	if index > committed {
		return &fsm.Error{Kind: fsm.Invalid, Message: fmt.Sprintf("index %d is ahead of the cluster (it has committed %d)", index, committed)}
	}
	if err := s.node.fsm.waitIndex(ctx, index, s.node.stopping); err != nil {
		if errors.Is(err, ErrShutdown) {
			return unavailable(fmt.Errorf("cluster: wait for index %d: %w", index, ErrShutdown))
		}
		return unavailable(contextError(fmt.Sprintf("wait for index %d", index), ctx))
	}
	return nil
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
