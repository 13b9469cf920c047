package workload_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/jepsen/internal/check"
	"github.com/mimihub/mimi-hub/jepsen/internal/history"
	"github.com/mimihub/mimi-hub/jepsen/internal/recorder"
	"github.com/mimihub/mimi-hub/jepsen/internal/workload"
)

// TestWorkloadsAgainstAnInProcessProvider runs every workload for a few
// seconds against a real single-node provider on loopback (no namespaces,
// no root), restarting it once in the middle, and checks that the history
// is clean and that each workload did something.
func TestWorkloadsAgainstAnInProcessProvider(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := testutil.NewNetwork(t, testutil.Options{Configure: func(cfg *hub.Config) {
		cfg.Peers["f.example"] = ln.Addr().String()
	}}, "hub.example")
	p := n.Provider("hub.example")
	p.Start(t)
	h := history.New()
	rec := recorder.Serve(ln, recorder.Config{Hub: "hub.example", Certificate: n.Issue("f.example"), Roots: n.CA.Pool(), History: h})
	defer rec.Close(context.Background())

	env := workload.NewEnv(workload.Config{
		Domain: "hub.example", Roots: n.CA.Pool(), History: h, Prefix: "t", Seed: 1, Timeout: 5 * time.Second,
		Endpoints: func() []workload.Endpoint { return []workload.Endpoint{{Node: "n1", URL: p.ClientURL()}} },
	})
	defer env.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	race := &workload.CommitRace{Env: env, Rooms: 2}
	kps := &workload.KeyPackages{Env: env, Targets: 2, Claimers: 3}
	msgs := &workload.Messages{Env: env, FollowerDomain: "f.example", Rooms: 1, Senders: 2}
	for name, setup := range map[string]func(context.Context) error{"race": race.Setup, "keypackages": kps.Setup, "messages": msgs.Setup} {
		if err := setup(ctx); err != nil {
			t.Fatalf("%s setup: %v", name, err)
		}
	}
	// Run until every kind of operation succeeded a few times on both
	// sides of a restart (bounded: the test fails if that takes a minute).
	runCtx, stop := context.WithTimeout(ctx, time.Minute)
	defer stop()
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{race.Run, kps.Run, msgs.Run} {
		wg.Go(func() { _ = run(runCtx) })
	}
	waitOK(t, runCtx, h, 3)
	p.Stop(t)
	p.Start(t)
	waitOK(t, runCtx, h, 6)
	stop()
	wg.Wait()

	// Final state: every race room through the node, the hub's order.
	for _, r := range race.RoomURIs() {
		info, err := race.ReadAt(ctx, r, workload.Endpoint{Node: "n1", URL: p.ClientURL()})
		f := history.Final{Node: "n1", Room: string(r)}
		if err != nil {
			f.Error = err.Error()
		} else {
			f.Epoch, f.Hash = info.Epoch, hexString(info.TranscriptHash)
		}
		h.AddFinal(f)
	}
	waitDelivered(t, p)
	if err := msgs.Observe(ctx); err != nil {
		t.Fatal(err)
	}

	snap := h.Snapshot()
	res := check.Run(snap, check.Options{})
	for _, a := range res.Anomalies {
		t.Errorf("anomaly: %v", a)
	}
	counts := map[history.Kind]int{}
	for _, o := range res.Ops {
		if o.Result == history.OK {
			counts[o.Kind]++
		}
	}
	for _, k := range []history.Kind{history.KindCommit, history.KindRead, history.KindClaim, history.KindSend} {
		if counts[k] == 0 {
			t.Errorf("no %s operation succeeded: %v", k, counts)
		}
	}
	if len(snap.Deliveries) == 0 || len(snap.Observed) == 0 {
		t.Errorf("%d deliveries, %d observed messages", len(snap.Deliveries), len(snap.Observed))
	}
	t.Logf("ok operations: %v; %d deliveries", counts, len(snap.Deliveries))
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

// waitOK waits until every kind of operation succeeded at least n times.
func waitOK(t *testing.T, ctx context.Context, h *history.History, n int) {
	t.Helper()
	for {
		counts := map[history.Kind]int{}
		for _, o := range h.Snapshot().Ops {
			if o.Result == history.OK {
				counts[o.Kind]++
			}
		}
		done := true
		for _, k := range []history.Kind{history.KindCommit, history.KindRead, history.KindClaim, history.KindSend} {
			done = done && counts[k] >= n
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("operations still missing when the run ended: %v", counts)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitDelivered waits until the provider's outbox for the follower is
// empty.
func waitDelivered(t *testing.T, p *testutil.Provider) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p.WaitState(ctx, t, "the outbox to f.example drained", func(s *fsm.State) bool {
		return s.OutboxDepth()["f.example"].Items == 0
	})
}
