package hub_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
)

// TestMetricsBounds checks the gauges the capacity alerts divide by: the
// configured -log-bytes, -outbox-total-bytes and -max-conns, defaults
// filled in, and no
// connection bound at all for a listener without one (a ratio with no
// denominator never fires).
func TestMetricsBounds(t *testing.T) {
	servers := []string{"federation", "client", "ops"}
	for _, tc := range []struct {
		name      string
		maxConns  int
		logBytes  int64
		outbox    int64
		wantConns float64 // 0: no series
		wantLog   float64
		wantOut   float64
	}{
		{name: "defaults", wantConns: hub.DefaultMaxConns, wantLog: fsm.DefaultTotalLogBytes, wantOut: fsm.DefaultOutboxTotalBytes},
		{name: "configured", maxConns: 64, logBytes: 3 << 20, outbox: 5 << 20, wantConns: 64, wantLog: 3 << 20, wantOut: 5 << 20},
		{name: "unbounded connections", maxConns: -1, logBytes: 1 << 30, wantLog: 1 << 30, wantOut: fsm.DefaultOutboxTotalBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.StartCluster(t, testutil.ClusterOptions{Configure: func(i int, cfg *hub.Config) {
				cfg.MaxConns = tc.maxConns
				cfg.State.Retention.TotalBytes = tc.logBytes
				cfg.State.OutboxTotalBytes = tc.outbox
			}}, 1)
			m := scrape(t, c.Nodes[0])
			if got := mustValue(t, m, "mimi_fanout_queue_bytes_limit", nil); got != tc.wantOut {
				t.Errorf("mimi_fanout_queue_bytes_limit = %v, want %v", got, tc.wantOut)
			}
			if got := mustValue(t, m, "mimi_stream_log_bytes_limit", nil); got != tc.wantLog {
				t.Errorf("mimi_stream_log_bytes_limit = %v, want %v", got, tc.wantLog)
			}
			for _, server := range servers {
				labels := map[string]string{"server": server}
				got, ok := value(t, m, "mimi_http_connections_limit", labels)
				switch {
				case tc.wantConns == 0 && ok:
					t.Errorf("%s: mimi_http_connections_limit = %v without a bound, want no series", server, got)
				case tc.wantConns != 0 && got != tc.wantConns:
					t.Errorf("%s: mimi_http_connections_limit = %v (present %v), want %v", server, got, ok, tc.wantConns)
				}
				// The gauge it bounds is there either way.
				mustValue(t, m, "mimi_http_connections", labels)
			}
		})
	}
}

// TestStateConfigMismatch: a node started with other state bounds than
// the rest is reported on every node, through gossip (the metric and the
// status name it), and a cluster of one configuration reports nothing.
func TestStateConfigMismatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		odd  bool
		want []float64 // per node
	}{
		{name: "same bounds", want: []float64{0, 0, 0}},
		// The odd one out differs from both others.
		{name: "one node's inbox bound differs", odd: true, want: []float64{1, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.StartCluster(t, testutil.ClusterOptions{Configure: func(i int, cfg *hub.Config) {
				if tc.odd && i == 2 {
					cfg.State.InboxLimit = 17
				}
			}}, 3)
			// The cluster formed through gossip, so every node has seen the
			// others' digests; a mismatch may still take a gossip round.
			deadline := time.Now().Add(testutil.Wait)
			for {
				var got []float64
				for _, n := range c.Nodes {
					got = append(got, mustValue(t, scrape(t, n), "mimi_state_config_mismatched_nodes", nil))
				}
				if slices.Equal(got, tc.want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("mimi_state_config_mismatched_nodes on the three nodes: %v, want %v", got, tc.want)
				}
				time.Sleep(50 * time.Millisecond)
			}
			var st0, st2 hub.OpsStatus
			admin(t, c.Nodes[0], http.MethodGet, "/v1/status", nil, http.StatusOK).decode(t, &st0)
			admin(t, c.Nodes[2], http.MethodGet, "/v1/status", nil, http.StatusOK).decode(t, &st2)
			var want []string
			if tc.odd {
				want = []string{st2.NodeID}
			}
			if st0.StateDigest == "" || (st0.StateDigest != st2.StateDigest) != tc.odd || !slices.Equal(st0.StateMismatches, want) {
				t.Errorf("node 0's status: digest %q, mismatches %v; node 2's digest %q (id %s)", st0.StateDigest, st0.StateMismatches, st2.StateDigest, st2.NodeID)
			}
		})
	}
}

// TestOddNodeKeepsReplicatedBounds: every node applies the log with the
// replicated state bounds, which the first leader set from its own
// configuration; when leadership moves to a node configured otherwise by
// mistake, it does not impose its values (they would change only once
// every node runs them: cluster TestBoundsChangeWhenEveryServerAgrees),
// so the replicas never apply an entry with different bounds.
func TestOddNodeKeepsReplicatedBounds(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Configure: func(i int, cfg *hub.Config) {
		if i == 2 {
			cfg.State.InboxLimit = 17
		}
	}}, 3)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Wait)
	defer cancel()
	moveLeadership := func(to *testutil.Provider) {
		t.Helper()
		if leader := c.Leader(t); leader != to {
			if err := leader.Hub(t).Store().Node().TransferLeadership(ctx, to.Config.NodeID); err != nil {
				t.Fatalf("transfer leadership to %s: %v", to.Config.NodeID, err)
			}
		}
		for c.Leader(t) != to {
			time.Sleep(20 * time.Millisecond)
		}
	}
	applies := func(n *testutil.Provider, want fsm.Bounds) bool {
		var ok bool
		_ = n.Hub(t).Store().FSM().Read(func(s *fsm.State) error { b, replicated := s.Bounds(); ok = replicated && b == want; return nil })
		return ok
	}
	moveLeadership(c.Nodes[0])
	want := c.Nodes[0].Hub(t).Store().FSM().Config().Bounds
	for _, n := range c.Nodes {
		n.WaitState(ctx, t, "the bounds the first leader set", func(s *fsm.State) bool { b, replicated := s.Bounds(); return replicated && b == want })
	}
	moveLeadership(c.Nodes[2])
	// The odd leader's maintenance checks at once as it starts leading;
	// watch for a while that nothing changes.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		for _, n := range c.Nodes {
			if !applies(n, want) {
				t.Fatalf("%s no longer applies the replicated bounds once the odd node leads", n.Config.NodeID)
			}
		}
	}
	var st hub.OpsStatus
	admin(t, c.Nodes[1], http.MethodGet, "/v1/status", nil, http.StatusOK).decode(t, &st)
	if !st.BoundsReplicated {
		t.Errorf("node 1's status says its bounds are its own flags, not the replicated ones")
	}
}
