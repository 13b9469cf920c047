package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Every write goes to the leader's Raft log through two queues that batch
// what arrives together (DESIGN.md, "Writes from any node"):
//
//   - on the leader, commands that arrive while Config.MaxInFlight entries
//     are in flight become one fsm.CmdBatch entry: one log write, one
//     replication, one FSM call for all of them;
//   - on a follower, writes that arrive while Config.MaxForwards requests
//     to the leader are in flight go to the leader in one internal
//     request, whose commands the leader puts into its own queue together.
//
// At low load nothing waits: a command is proposed (or forwarded) as soon
// as it arrives.

// Batching bounds.
const (
	// maxBatchBytes bounds the commands of one batch (a larger command
	// goes alone, up to Config.MaxEntrySize).
	maxBatchBytes = 1 << 20
	// maxQueued and maxQueuedBytes bound the commands waiting in one
	// queue; past either a write fails as unavailable (503), since the
	// node is far behind.
	maxQueued      = 1 << 16
	maxQueuedBytes = 256 << 20
)

// proposal is one encoded command waiting in a queue for its result.
type proposal struct {
	cmd []byte
	// admit asks the leader to decide the command on its own state first
	// (Store.admitForwarded): the follower's state could not.
	admit bool
	done  chan struct{}
	// Set before done closes: the result with its entry's index, or why
	// there is none (ErrNotLeader: nothing was done; an ambiguous error:
	// the outcome is unknown).
	res *fsm.Result
	err error
}

func newProposal(cmd []byte) *proposal { return &proposal{cmd: cmd, done: make(chan struct{})} }

// finish answers the proposal with a copy of res (several proposals may
// share one refusal) carrying index.
func (p *proposal) finish(res *fsm.Result, index uint64, err error) {
	if res != nil {
		r := *res
		r.Index = index
		p.res = &r
	}
	p.err = err
	close(p.done)
}

// wait waits for the answer or for ctx.
func (p *proposal) wait(ctx context.Context, op string) (*fsm.Result, error) {
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
		return nil, contextError(op, ctx)
	}
}

// batcher hands what is submitted to flush in batches, with at most limit
// flushes running at once: whatever arrives while they run waits and goes
// in the next batch.
type batcher struct {
	limit int
	flush func([]*proposal)

	mu       sync.Mutex
	queue    []*proposal
	queued   int // bytes of the queued commands
	inflight int
}

// submit queues proposals (together, in order) and starts a flush if one
// may run. It fails them at once when the queue is full.
func (b *batcher) submit(ps ...*proposal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	size := 0
	for _, p := range ps {
		size += len(p.cmd)
	}
	if len(b.queue)+len(ps) > maxQueued || (len(b.queue) > 0 && b.queued+size > maxQueuedBytes) {
		for _, p := range ps {
			p.finish(nil, 0, fmt.Errorf("cluster: %d writes (%d bytes) wait already: %w", len(b.queue), b.queued, ErrTimeout))
		}
		return
	}
	b.queue = append(b.queue, ps...)
	b.queued += size
	b.startLocked()
}

// startLocked starts flushes while there are queued proposals and room
// for a flush (b.mu held).
func (b *batcher) startLocked() {
	for b.inflight < b.limit && len(b.queue) > 0 {
		n, size := 0, 0
		for n < len(b.queue) && n < fsm.MaxBatch() {
			next := len(b.queue[n].cmd)
			if n > 0 && size+next > maxBatchBytes {
				break
			}
			size += next
			n++
		}
		batch := slices.Clone(b.queue[:n])
		b.queued -= size
		clear(b.queue[:n])
		b.queue = b.queue[n:]
		if len(b.queue) == 0 {
			b.queue = nil
		}
		b.inflight++
		go func() {
			b.flush(batch)
			b.mu.Lock()
			b.inflight--
			b.startLocked()
			b.mu.Unlock()
		}()
	}
}

// proposeBatch is the leader's flush: one entry for the batch (the command
// itself when alone), stamped with the leader's clock.
func (s *Store) proposeBatch(batch []*proposal) {
	fail := func(err error) {
		for _, p := range batch {
			p.finish(nil, 0, err)
		}
	}
	if !s.node.isReadyLeader() {
		id, addr := s.node.Leader()
		fail(&NotLeaderError{LeaderID: id, LeaderAddr: addr})
		return
	}
	now := uint64(s.now().UnixMilli())
	var entry []byte
	var err error
	if len(batch) == 1 {
		entry, err = fsm.Stamp(batch[0].cmd, now)
	} else {
		cmds := make([][]byte, len(batch))
		for i, p := range batch {
			cmds[i] = p.cmd
		}
		entry, err = fsm.NewBatch(cmds, now)
	}
	if err != nil {
		fail(fmt.Errorf("%w: %v", errInvalidRPC, err))
		return
	}
	ctx, cancel := s.node.untilStopping(context.Background(), s.node.cfg.ApplyTimeout)
	defer cancel()
	resp, index, err := s.node.applyIndexed(ctx, entry)
	if err != nil {
		fail(err)
		return
	}
	switch r := resp.(type) {
	case *fsm.Result: // a lone command, or a batch refused as a whole
		for _, p := range batch {
			p.finish(r, index, nil)
		}
	case *fsm.BatchResult:
		if len(r.Results) != len(batch) {
			fail(fmt.Errorf("cluster: apply: the FSM answered %d results for %d commands", len(r.Results), len(batch)))
			return
		}
		for i, p := range batch {
			p.finish(r.Results[i], index, nil)
		}
	default:
		fail(fmt.Errorf("cluster: apply: the FSM returned %T", resp))
	}
}

// forwardBatch is a follower's flush: one internal request to the leader
// with every command of the batch.
func (s *Store) forwardBatch(batch []*proposal) {
	fail := func(err error) {
		for _, p := range batch {
			p.finish(nil, 0, err)
		}
	}
	id, leader := s.node.Leader()
	if leader == "" || leader == string(s.node.addr) || s.node.rpc == nil {
		fail(&NotLeaderError{LeaderID: id, LeaderAddr: leader})
		return
	}
	fb := forwardedBatch{Items: make([]forwardedCommand, len(batch))}
	for i, p := range batch {
		fb.Items[i] = forwardedCommand{Admit: p.admit, Command: p.cmd}
	}
	body, err := wire.Marshal(&fb)
	if err != nil {
		fail(err)
		return
	}
	ctx, cancel := s.node.untilStopping(context.Background(), s.node.cfg.ApplyTimeout)
	defer cancel()
	var out []byte
	start := time.Now()
	err = s.node.rpc.call(ctx, leader, rpcApplyBatch, body, &out)
	s.node.cfg.Observer.Forwarded(time.Since(start), err)
	if err != nil {
		fail(err)
		return
	}
	var ans forwardedAnswers
	if err := wire.Unmarshal(out, &ans); err != nil || len(ans.Items) != len(batch) {
		fail(fmt.Errorf("cluster: apply: the leader's answer: %w: %d answers for %d commands (%v)", errTransport, len(ans.Items), len(batch), err))
		return
	}
	for i, p := range batch {
		it := &ans.Items[i]
		if it.Code != "" {
			p.finish(nil, 0, (&rpcError{Code: it.Code, Message: it.Message, LeaderID: it.LeaderID, LeaderAddr: it.LeaderAddr}).decode("apply"))
			continue
		}
		p.finish(&it.Result, it.Index, nil)
	}
}

// serveForwardedBatch applies the commands a follower forwarded in one
// request: they join the leader's queue together, and the answer lists
// each one's result and entry index, or its error.
func (s *Store) serveForwardedBatch(w http.ResponseWriter, r *http.Request) {
	// A batch holds at most maxBatchBytes of commands, or one command up
	// to the entry limit.
	limit := int64(max(s.node.cfg.MaxEntrySize, maxBatchBytes)) + 64<<10
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil || int64(len(data)) > limit {
		encodeRPCError(w, fmt.Errorf("%w: unreadable or oversized batch", errInvalidRPC))
		return
	}
	var b forwardedBatch
	if err := wire.Unmarshal(data, &b); err != nil || len(b.Items) == 0 {
		encodeRPCError(w, fmt.Errorf("%w: batch: %v", errInvalidRPC, err))
		return
	}
	ctx, cancel := s.node.withDefaultDeadline(r.Context())
	defer cancel()
	ps := make([]*proposal, len(b.Items))
	var queued []*proposal
	for i, it := range b.Items {
		ps[i] = newProposal(it.Command)
		switch err := s.node.checkEntrySize("forwarded apply", len(it.Command)); {
		case err != nil:
			ps[i].finish(nil, 0, err)
		case it.Admit:
			go s.admitForwarded(ctx, ps[i])
		default:
			queued = append(queued, ps[i])
		}
	}
	s.leader.submit(queued...)
	ans := forwardedAnswers{Items: make([]forwardedItem, len(ps))}
	for i, p := range ps {
		res, err := p.wait(ctx, "forwarded apply")
		if err != nil {
			e, _ := rpcErrorOf(err)
			ans.Items[i] = forwardedItem{Code: e.Code, Message: e.Message, LeaderID: e.LeaderID, LeaderAddr: e.LeaderAddr}
			continue
		}
		ans.Items[i] = forwardedItem{Index: res.Index, Result: *res}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(wire.MustMarshal(&ans))
}

// forwardedBatch is what a follower forwards in one request: commands,
// each with whether the leader must decide it on its own state first.
type forwardedBatch struct {
	Items []forwardedCommand
}

type forwardedCommand struct {
	Admit   bool
	Command []byte
}

// EncodeTLS implements wire.Encoder.
func (b *forwardedBatch) EncodeTLS(w *wire.Writer) {
	w.Vector(func(w *wire.Writer) {
		for _, it := range b.Items {
			w.Bool(it.Admit)
			w.Opaque(it.Command)
		}
	})
}

// DecodeTLS implements wire.Decoder.
func (b *forwardedBatch) DecodeTLS(r *wire.Reader) {
	b.Items = nil
	r.VectorEach(func(r *wire.Reader) {
		var it forwardedCommand
		r.Bool(&it.Admit)
		r.Opaque(&it.Command)
		if r.OK() && len(b.Items) == fsm.MaxBatch() {
			r.Failf("a forwarded batch of more than %d commands", fsm.MaxBatch())
		}
		b.Items = append(b.Items, it)
	})
}

// forwardedAnswers is the leader's answer to a forwarded batch: one item
// per command, in order.
type forwardedAnswers struct {
	Items []forwardedItem
}

// forwardedItem is one command's answer: an error (Code and the rest, as
// rpcError) or the result and its entry's index.
type forwardedItem struct {
	Code, Message, LeaderID, LeaderAddr string
	Index                               uint64
	Result                              fsm.Result
}

// EncodeTLS implements wire.Encoder.
func (a *forwardedAnswers) EncodeTLS(w *wire.Writer) {
	w.Vector(func(w *wire.Writer) {
		for i := range a.Items {
			it := &a.Items[i]
			for _, s := range []string{it.Code, it.Message, it.LeaderID, it.LeaderAddr} {
				w.Opaque([]byte(s))
			}
			w.Uint64(it.Index)
			it.Result.EncodeTLS(w)
		}
	})
}

// DecodeTLS implements wire.Decoder.
func (a *forwardedAnswers) DecodeTLS(r *wire.Reader) {
	a.Items = nil
	r.VectorEach(func(r *wire.Reader) {
		var it forwardedItem
		for _, s := range []*string{&it.Code, &it.Message, &it.LeaderID, &it.LeaderAddr} {
			var b []byte
			r.Opaque(&b)
			*s = string(b)
		}
		r.Uint64(&it.Index)
		it.Result.DecodeTLS(r)
		a.Items = append(a.Items, it)
	})
}
