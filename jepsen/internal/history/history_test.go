package history

import (
	"sync"
	"testing"
)

func TestHistoryRecordsConcurrently(t *testing.T) {
	h := New()
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Go(func() {
			for range 100 {
				id := h.Invoke(Op{Process: p, Kind: KindRead, Room: "r"})
				h.Complete(id, func(o *Op) { o.Result = OK; o.Epoch = 3 })
			}
		})
	}
	wg.Wait()
	h.Extend("r", Link{Epoch: 1, Hash: "a"})
	h.Extend("r", Link{Epoch: 2, Hash: "b"})
	h.Abandon("r", "first reason")
	h.Abandon("r", "second reason")
	s := h.Snapshot()
	if len(s.Ops) != 800 {
		t.Fatalf("%d operations, want 800", len(s.Ops))
	}
	for i, o := range s.Ops {
		if o.ID != i || o.Return < o.Call || o.Result != OK {
			t.Fatalf("operation %d: %+v", i, o)
		}
	}
	if c := s.Chains[0]; c.Head() != (Link{Epoch: 2, Hash: "b"}) || c.Abandoned != "first reason" {
		t.Errorf("chain %+v", c)
	}
	if s.End() < s.Ops[799].Return {
		t.Errorf("End %d before the last return %d", s.End(), s.Ops[799].Return)
	}
	// A snapshot is a copy.
	s.Ops[0].Result = Fail
	s.Chains[0].Links[0].Hash = "x"
	if again := h.Snapshot(); again.Ops[0].Result != OK || again.Chains[0].Links[0].Hash != "a" {
		t.Error("changing a snapshot changed the history")
	}
}
