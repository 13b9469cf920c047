package workload

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mimihub/mimi-hub/internal/pause"
	"github.com/mimihub/mimi-hub/jepsen/internal/history"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// CommitRace is the commit race workload.
type CommitRace struct {
	Env *Env
	// Rooms and Members size it; zero means 4 rooms of 3 members.
	Rooms, Members int
	// MaxRounds bounds the rounds per room; zero means 100000.
	MaxRounds int
	// ReadEvery is the pause between a room reader's reads; zero means
	// 100ms.
	ReadEvery time.Duration

	rooms []*raceRoom
}

// raceRoom is one room of the race.
type raceRoom struct {
	*mlsRoom
	readers []*identity // members' identities used for reads
	// readProc and settleProc number the room's reader and the round's
	// settling reads in the history.
	readProc, settleProc int
	epoch                uint64
	hash                 string
}

// Setup registers the members, creates the rooms and adds everyone, then
// records each room's starting state as the first link of its chain.
func (w *CommitRace) Setup(ctx context.Context) error {
	positive(&w.Rooms, 4)
	if w.Members <= 1 {
		w.Members = 3
	}
	e := w.Env
	for i := range w.Rooms {
		var ids []*identity
		for j := range w.Members {
			id, err := e.register(ctx, fmt.Sprintf("%s-race%d-m%d", e.cfg.Prefix, i, j), "d")
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		r, err := e.createRoom(ctx, ids[0], fmt.Sprintf("%s-race-%d", e.cfg.Prefix, i))
		if err != nil {
			return err
		}
		if err := e.add(ctx, r, ids[1:]); err != nil {
			return err
		}
		rr := &raceRoom{mlsRoom: r, readers: ids, readProc: e.nextProcess(), settleProc: e.nextProcess()}
		rr.epoch, rr.hash = r.head()
		// The server must agree with the members before the race starts.
		st, err := e.readRoom(ctx, rr, ids[0], -1)
		if err != nil {
			return err
		}
		if st.Epoch != rr.epoch || hex.EncodeToString(st.TranscriptHash) != rr.hash {
			return fmt.Errorf("room %s: the server has epoch %d %x, the members %d %s", r.uri, st.Epoch, st.TranscriptHash, rr.epoch, rr.hash)
		}
		e.cfg.History.Extend(string(r.uri), history.Link{Epoch: rr.epoch, Hash: rr.hash})
		w.rooms = append(w.rooms, rr)
	}
	return nil
}

// readRoom reads a room through a random node as id; with proc >= 0 the
// read is an operation of process proc in the history.
func (e *Env) readRoom(ctx context.Context, r *raceRoom, id *identity, proc int) (*client.RoomInfo, error) {
	ep, err := e.pick()
	if err != nil {
		return nil, err
	}
	api, err := e.api(id.token, ep)
	if err != nil {
		return nil, err
	}
	op := -1
	if proc >= 0 {
		op = e.cfg.History.Invoke(history.Op{Process: proc, Kind: history.KindRead, Room: string(r.uri), Node: ep.Node, As: string(id.client)})
	}
	// A read, once sent, runs to its answer even when the run ends.
	tctx, wrote := traced(context.WithoutCancel(ctx))
	info, err := api.Room(tctx, r.uri)
	if op >= 0 {
		e.cfg.History.Complete(op, func(o *history.Op) {
			o.Attempts = 1
			if err != nil {
				o.Result, o.Code = classifyAttempt(err, wrote.Load())
				o.Error = err.Error()
				return
			}
			o.Result = history.OK
			o.Epoch, o.Hash = info.Epoch, hex.EncodeToString(info.TranscriptHash)
		})
	}
	return info, err
}

// Run races commits in every room until ctx ends.
func (w *CommitRace) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(w.rooms))
	for i, r := range w.rooms {
		rctx, cancel := context.WithCancel(ctx)
		wg.Go(func() {
			defer cancel()
			errs[i] = w.runRoom(rctx, r)
		})
		wg.Go(func() { w.readLoop(rctx, r) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// readLoop reads the room's state as its members, until ctx ends.
func (w *CommitRace) readLoop(ctx context.Context, r *raceRoom) {
	every := w.ReadEvery
	positive(&every, 100*time.Millisecond)
	for range 1_000_000 {
		if !pause.For(ctx, every/2+time.Duration(w.Env.intn(int(every)))) {
			return
		}
		id := r.readers[w.Env.intn(len(r.readers))]
		_, _ = w.Env.readRoom(ctx, r, id, r.readProc)
	}
}

func (w *CommitRace) runRoom(ctx context.Context, r *raceRoom) error {
	maxRounds := w.MaxRounds
	positive(&maxRounds, 100_000)
	for range maxRounds {
		if ctx.Err() != nil {
			return nil
		}
		if err := w.round(ctx, r); err != nil {
			w.Env.cfg.History.Abandon(string(r.uri), err.Error())
			w.Env.log.Warn("room abandoned", "room", r.uri, "err", err)
			return nil
		}
	}
	return nil
}

// candidate is one member's commit in a round.
type candidate struct {
	m      *member
	bundle *client.CommitBundle
	hash   string
	key    string
	op     int
	last   attempt
	tries  int
}

// round runs one race at the room's current epoch and moves every member
// to the winner's epoch. An error abandons the room.
func (w *CommitRace) round(ctx context.Context, r *raceRoom) error {
	e, h := w.Env, w.Env.cfg.History
	k := 2 + w.Env.intn(len(r.members)-1)
	order := make([]int, len(r.members))
	for i := range order {
		order[i] = i
	}
	for i := len(order) - 1; i > 0; i-- {
		j := w.Env.intn(i + 1)
		order[i], order[j] = order[j], order[i]
	}
	var cands []*candidate
	for _, mi := range order[:min(k, len(order))] {
		m := r.members[mi]
		cb, err := m.group.Commit(mls.CommitOptions{ForcePath: true, IncludePending: true, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
		if err != nil {
			return fmt.Errorf("%s commit: %w", m.id.client, err)
		}
		hash, err := transcriptHash(cb.GroupInfo)
		if err != nil {
			return err
		}
		key, err := newKey()
		if err != nil {
			return err
		}
		cands = append(cands, &candidate{m: m, bundle: &client.CommitBundle{Commit: cb.Commit, GroupInfo: cb.GroupInfo}, hash: hash, key: key, op: -1})
	}
	send := func(c *candidate) {
		if c.op < 0 {
			c.op = h.Invoke(history.Op{Process: c.m.id.proc, Kind: history.KindCommit, Room: string(r.uri), Epoch: r.epoch, Parent: r.hash, Hash: c.hash, As: string(c.m.id.client)})
		}
		a := e.retryWrite(ctx, 2, c.key, func(ctx context.Context, ep Endpoint) (string, error) {
			api, err := e.api(c.m.id.token, ep)
			if err != nil {
				return "", err
			}
			resp, err := api.Commit(ctx, r.uri, c.bundle)
			if err != nil {
				return "", err
			}
			return resp.Code.String(), nil
		})
		c.tries += a.attempts
		if c.last.result == history.Unknown && a.result == history.Fail && a.err != nil {
			// A failed resend (no connection, a refusal from a node that
			// is behind) says nothing about the earlier attempt.
			a.result = history.Unknown
		}
		c.last = a
	}
	var wg sync.WaitGroup
	for _, c := range cands {
		wg.Go(func() { send(c) })
	}
	wg.Wait()

	winner, err := w.settle(ctx, r, cands, send)
	for _, c := range cands {
		if c.op < 0 {
			continue
		}
		h.Complete(c.op, func(o *history.Op) {
			o.Result, o.Code, o.Node, o.Attempts = c.last.result, c.last.code, c.last.node, c.tries
			if c.last.err != nil {
				o.Error = c.last.err.Error()
			}
		})
	}
	if err != nil {
		for _, c := range cands {
			c.m.group.DiscardPendingCommit()
		}
		return err
	}
	if winner == nil { // a void round, or ctx ended with it undecided
		for _, c := range cands {
			c.m.group.DiscardPendingCommit()
		}
		pause.For(ctx, 200*time.Millisecond)
		return nil
	}
	for _, m := range r.members {
		if m == winner.m {
			m.group.MergePendingCommit()
			continue
		}
		m.group.DiscardPendingCommit()
		if _, err := m.group.Process(winner.bundle.Commit); err != nil {
			return fmt.Errorf("%s processing the winning commit: %w", m.id.client, err)
		}
	}
	r.epoch, r.hash = r.members[0].group.Epoch(), winner.hash
	if r.epoch != cands[0].m.group.Epoch() {
		return errors.New("members disagree on the epoch after the round")
	}
	h.Extend(string(r.uri), history.Link{Epoch: r.epoch, Hash: r.hash})
	return nil
}

// settle finds the round's winner: the one accepted commit, or, when no
// answer says, the commit whose transcript hash the room now has. While the
// room has not moved, commits with unknown outcomes are sent again with
// their keys. It returns nil when ctx ends first or when every commit
// failed and the room did not move (a void round); an error when the
// room's state matches no candidate (the room is then abandoned).
func (w *CommitRace) settle(ctx context.Context, r *raceRoom, cands []*candidate, send func(*candidate)) (*candidate, error) {
	for try := 0; try < 120; try++ {
		var ok []*candidate
		unknown := 0
		for _, c := range cands {
			switch c.last.result {
			case history.OK:
				ok = append(ok, c)
			case history.Unknown:
				unknown++
			}
		}
		if len(ok) == 1 {
			return ok[0], nil
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		st, err := w.Env.readRoom(ctx, r, r.readers[w.Env.intn(len(r.readers))], r.settleProc)
		if err != nil {
			pause.For(ctx, 250*time.Millisecond)
			continue
		}
		got := hex.EncodeToString(st.TranscriptHash)
		switch {
		case st.Epoch == r.epoch+1:
			i := slices.IndexFunc(cands, func(c *candidate) bool { return c.hash == got })
			if i < 0 {
				return nil, fmt.Errorf("the room moved to epoch %d with %s, which none of this round's commits produces", st.Epoch, short(got))
			}
			return cands[i], nil
		case st.Epoch == r.epoch && got == r.hash && unknown == 0 && len(ok) == 0:
			// Every commit failed for sure and the room did not move: a
			// void round (the nodes were down, say).
			return nil, nil
		case st.Epoch == r.epoch && got == r.hash:
			// Nothing applied yet: send the undecided ones again.
			var wg sync.WaitGroup
			for _, c := range cands {
				if c.last.result == history.Unknown {
					wg.Go(func() { send(c) })
				}
			}
			wg.Wait()
			if unknown == 0 {
				pause.For(ctx, 250*time.Millisecond)
			}
		default:
			return nil, fmt.Errorf("the room is at epoch %d with %s, the members at %d with %s", st.Epoch, short(got), r.epoch, short(r.hash))
		}
	}
	return nil, fmt.Errorf("epoch %d undecided after many tries", r.epoch)
}

func short(h string) string {
	if len(h) > 8 {
		return h[:8]
	}
	return h
}

// RoomURIs returns the rooms' URIs.
func (w *CommitRace) RoomURIs() []proto.URI {
	var out []proto.URI
	for _, r := range w.rooms {
		out = append(out, r.uri)
	}
	return out
}

// ReadAt reads node ep's own copy of room r as one of its members, without
// the leader's confirmation (for comparing the nodes' final states).
func (w *CommitRace) ReadAt(ctx context.Context, r proto.URI, ep Endpoint) (*client.RoomInfo, error) {
	for _, rr := range w.rooms {
		if rr.uri != r {
			continue
		}
		api, err := w.Env.api(rr.readers[0].token, ep)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return api.LocalRoom(ctx, r)
	}
	return nil, fmt.Errorf("no race room %s", r)
}
