package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// TestBatcher: what arrives while limit flushes run waits and goes, in
// order, in the next batch; batches are bounded by count and bytes; a full
// queue fails at once.
func TestBatcher(t *testing.T) {
	var mu sync.Mutex
	var batches [][]*proposal
	release := make(chan struct{})
	b := &batcher{limit: 1, flush: func(ps []*proposal) {
		mu.Lock()
		batches = append(batches, ps)
		first := len(batches) == 1
		mu.Unlock()
		if first {
			<-release // hold the first flush while more arrive
		}
		for _, p := range ps {
			p.finish(&fsm.Result{}, 1, nil)
		}
	}}
	var ps []*proposal
	for i := range 2 + fsm.MaxBatch() + 3 {
		p := newProposal(fmt.Appendf(nil, "%d", i))
		ps = append(ps, p)
		b.submit(p)
	}
	big := newProposal(make([]byte, maxBatchBytes))
	b.submit(big)
	close(release)
	for _, p := range append(ps, big) {
		if _, err := p.wait(ctxTimeout(t, testWait), "test"); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var sizes []int
	var order []*proposal
	for _, bt := range batches {
		sizes = append(sizes, len(bt))
		order = append(order, bt...)
	}
	// 1 alone (nothing waited), then the bound, then the rest but the
	// one too large to join them, which goes alone.
	if want := []int{1, fsm.MaxBatch(), 4, 1}; !slices.Equal(sizes, want) {
		t.Fatalf("batch sizes %v, want %v", sizes, want)
	}
	if !slices.Equal(order, append(ps, big)) {
		t.Fatal("the batches changed the order")
	}

	full := &batcher{limit: 0, flush: func([]*proposal) { t.Error("a batcher without room flushed") }}
	for range maxQueued {
		full.submit(newProposal(nil))
	}
	over := newProposal(nil)
	full.submit(over)
	if _, err := over.wait(context.Background(), "test"); !errors.Is(err, ErrTimeout) {
		t.Fatalf("a write beyond a full queue: %v", err)
	}

	// The byte bound: commands fill it, the next one waits for nothing.
	heavy := &batcher{limit: 0, flush: func([]*proposal) { t.Error("a batcher without room flushed") }}
	chunk := make([]byte, maxQueuedBytes/4)
	var queued []*proposal
	for range 4 {
		p := newProposal(chunk)
		heavy.submit(p)
		queued = append(queued, p)
	}
	tooMuch := newProposal([]byte{1})
	heavy.submit(tooMuch)
	select {
	case <-tooMuch.done: // refused at once, not queued
		if !errors.Is(tooMuch.err, ErrTimeout) {
			t.Fatalf("a write beyond the queue's bytes: %v", tooMuch.err)
		}
	default:
		t.Fatal("a write beyond the queue's bytes was queued")
	}
	for _, p := range queued {
		select {
		case <-p.done:
			t.Fatal("a write within the queue's bytes was answered")
		default:
		}
	}
	// What a flush takes leaves the count: the queue takes writes again.
	heavy.mu.Lock()
	heavy.limit = 1
	heavy.flush = func(b []*proposal) {
		for _, p := range b {
			p.finish(nil, 0, nil)
		}
	}
	heavy.startLocked()
	heavy.mu.Unlock()
	for _, p := range queued {
		p.wait(context.Background(), "test")
	}
	again := newProposal(chunk)
	heavy.submit(again)
	if _, err := again.wait(context.Background(), "test"); err != nil {
		t.Fatalf("a write after the queue drained: %v", err)
	}
}

// TestConcurrentWritesShareEntries: writes that arrive together through
// the leader and through a follower are applied in fewer entries than
// writes, each once, each answered with its entry's index; the follower
// answers without waiting for its own copy, and a read with the index as
// token on any node sees the write.
func TestConcurrentWritesShareEntries(t *testing.T) {
	c := newTestCluster(t)
	c.startN(3)
	l, f := c.leader(), c.follower()
	var other *clusterNode
	for _, n := range c.nodes {
		if n != l && n != f {
			other = n
		}
	}
	before := l.node.Stats().LastLogIndex
	const writers = 64
	results := make([]*fsm.Result, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		via := l
		if i%2 == 1 {
			via = f
		}
		wg.Go(func() {
			h := sha256.Sum256(fmt.Appendf(nil, "user%d", i))
			results[i], errs[i] = via.store.Apply(ctxTimeout(t, testWait), fsm.CmdRegister, fmt.Appendf(nil, "reg-%d", i), "",
				&fsm.RegisterBody{Client: proto.ClientURI("a.example", fmt.Sprintf("user%d", i), "phone"), TokenHash: h[:]})
		})
	}
	wg.Wait()
	for i := range writers {
		if errs[i] != nil || results[i].Err() != nil || results[i].Index <= before {
			t.Fatalf("write %d: %v %v, index %d", i, errs[i], results[i], results[i].Index)
		}
	}
	cmds := commandsSince(t, l.node, before)
	batches := 0
	for _, ct := range cmds {
		if ct == fsm.CmdBatch {
			batches++
		}
	}
	if len(cmds) >= writers || batches == 0 {
		t.Fatalf("%d writes took %d entries (%d batches)", writers, len(cmds), batches)
	}
	t.Logf("%d concurrent writes in %d entries", writers, len(cmds))
	// Read your writes anywhere: the follower that took a write, and the
	// node that did not.
	for i := range writers {
		for _, n := range []*clusterNode{f, other} {
			if err := n.store.WaitApplied(ctxTimeout(t, testWait), results[i].Index); err != nil {
				t.Fatalf("waiting on %s for index %d: %v", n.id, results[i].Index, err)
			}
			if !hasClient(t, n.store, proto.ClientURI("a.example", fmt.Sprintf("user%d", i), "phone"), false) {
				t.Fatalf("%s has index %d but not the write applied there", n.id, results[i].Index)
			}
		}
	}
	// A token beyond what the cluster committed is refused, not waited for.
	ahead := l.node.raft.CommitIndex() + 1000
	if err := other.store.WaitApplied(ctxTimeout(t, testWait), ahead); fsm.KindOf(err) != fsm.Invalid {
		t.Fatalf("a token ahead of the cluster: %v", err)
	}
}

// TestFollowerForwardsAtOnce: while the leader holds its entries, writes
// through a follower do not wait there for an earlier request's answer:
// up to MaxForwards of them are in flight to the leader at once (with the
// leader's own bound, 2, the others waited at the follower for a whole
// Raft round), and each is applied once the leader goes on.
func TestFollowerForwardsAtOnce(t *testing.T) {
	c := newTestCluster(t)
	c.startN(3)
	l, f := c.leader(), c.follower()
	const writers = 8
	if f.cfg.withDefaults().MaxForwards < writers {
		t.Fatalf("the default MaxForwards is below the %d writers this test sends", writers)
	}
	release := make(chan struct{})
	l.store.leader.mu.Lock()
	propose := l.store.leader.flush
	l.store.leader.flush = func(b []*proposal) {
		<-release
		propose(b)
	}
	l.store.leader.mu.Unlock()

	errs := make(chan error, writers)
	for i := range writers {
		go func() {
			h := sha256.Sum256(fmt.Appendf(nil, "fwd%d", i))
			res, err := f.store.Apply(ctxTimeout(t, testWait), fsm.CmdRegister, fmt.Appendf(nil, "fwd-%d", i), "",
				&fsm.RegisterBody{Client: proto.ClientURI("a.example", fmt.Sprintf("fwd%d", i), "phone"), TokenHash: h[:]})
			if err == nil {
				err = res.Err()
			}
			errs <- err
		}()
	}
	c.waitFor("every write forwarded to the leader", func() bool {
		f.store.forward.mu.Lock()
		defer f.store.forward.mu.Unlock()
		return f.store.forward.inflight == writers && len(f.store.forward.queue) == 0
	})
	close(release)
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := range writers {
		if !hasClient(t, l.store, proto.ClientURI("a.example", fmt.Sprintf("fwd%d", i), "phone"), true) {
			t.Fatalf("write %d is not applied", i)
		}
	}
}

// TestDeliveryRecordsAllPeersTogether: items for many peers are delivered
// per peer, and their delivery is recorded in far fewer entries than
// peers (CmdDeliveredMany), until nothing waits.
func TestDeliveryRecordsAllPeersTogether(t *testing.T) {
	s := startStore(t)
	ctx := ctxTimeout(t, 30*time.Second)
	h := sha256.Sum256([]byte("tok"))
	mustApply(t, s, fsm.CmdRegister, &fsm.RegisterBody{Client: proto.ClientURI("a.example", "alice", "phone"), TokenHash: h[:]})
	const peers = 20
	for i := range peers {
		for j := range 3 {
			mustApply(t, s, fsm.CmdConsent, &fsm.ConsentBody{Entry: proto.ConsentEntry{Operation: proto.ConsentRequest,
				Requester: proto.UserURI("a.example", "alice"), Target: proto.UserURI(fmt.Sprintf("p%d.example", i), fmt.Sprintf("u%d", j))}})
		}
	}
	before := s.node.Stats().LastLogIndex
	sender := &fakeSender{}
	d := NewDelivery(s, sender, DeliveryConfig{MinBackoff: time.Millisecond, Logger: testLogger(t)})
	go d.Run(ctx)
	waitOutbox(t, ctx, s, 0)
	sender.mu.Lock()
	delivered := len(sender.consent)
	sender.mu.Unlock()
	if delivered != 3*peers {
		t.Fatalf("delivered %d items, want %d", delivered, 3*peers)
	}
	cmds := commandsSince(t, s.node, before)
	for _, ct := range cmds {
		if ct != fsm.CmdDeliveredMany {
			t.Fatalf("delivery logged a %s", ct)
		}
	}
	if len(cmds) == 0 || len(cmds) > 3*peers/2 {
		t.Fatalf("%d items to %d peers recorded in %d entries", 3*peers, peers, len(cmds))
	}
	t.Logf("%d items to %d peers recorded in %d entries", 3*peers, peers, len(cmds))
}
