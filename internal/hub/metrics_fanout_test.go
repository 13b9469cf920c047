package hub_test

import (
	"testing"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// TestFanoutMetricsForgetDrainedPeers: the fanout series name a peer only
// while something waits for it. Once its queue empties, the state and the
// delivery worker forget it, its series go, and its counts move to the
// series with an empty peer label, so every counter summed over peers
// never goes down and the label set stays bounded by the peers with
// queued items.
func TestFanoutMetricsForgetDrainedPeers(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Configure: func(i int, cfg *hub.Config) {
		cfg.Peers = map[string]string{"b.example": "127.0.0.1:1"} // never answers: items stay
		cfg.State.OutboxLimit = 1                                 // the second item drops the first
	}}, 1)
	p := c.Nodes[0]
	ctx := opCtx(t)
	alice, err := client.RegisterMember(ctx, p.NewUser(t), "alice", "phone", client.MemberConfig{})
	must(t, err, "register alice")
	for _, target := range []string{"bob", "carl"} {
		must(t, alice.API().Consent(ctx, &proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: alice.User(), Target: proto.UserURI("b.example", target)}), "consent request")
	}
	peer := map[string]string{"peer": "b.example"}
	forgotten := map[string]string{"peer": ""}
	var failures float64
	waitFor(t, "b.example's queue to overflow and its delivery to fail", func() bool {
		m := scrape(t, p)
		o, _ := value(t, m, "mimi_fanout_overflow_total", peer)
		failures, _ = value(t, m, "mimi_fanout_failures_total", peer)
		return o == 1 && failures > 0
	})
	if v := mustValue(t, scrape(t, p), "mimi_fanout_overflow_total", forgotten); v != 0 {
		t.Fatalf("forgotten peers overflowed %v before any was forgotten", v)
	}
	// The delivery record empties the queue.
	res, err := p.Hub(t).Store().Apply(ctx, fsm.CmdDeliveredMany, nil, "", &fsm.DeliveredManyBody{Marks: []fsm.DeliveredBody{{Domain: "b.example", UpTo: 1 << 40}}})
	must(t, err, "record the delivery")
	must(t, res.Err(), "record the delivery")
	waitFor(t, "b.example to be forgotten", func() bool {
		m := scrape(t, p)
		for _, name := range []string{"mimi_fanout_queue_depth", "mimi_fanout_queue_bytes", "mimi_fanout_overflow_total", "mimi_fanout_lag_seconds", "mimi_fanout_failures_total"} {
			if _, ok := value(t, m, name, peer); ok {
				return false
			}
		}
		return true
	})
	m := scrape(t, p)
	if v := mustValue(t, m, "mimi_fanout_overflow_total", forgotten); v != 1 {
		t.Errorf("forgotten peers overflowed %v, want the 1 b.example dropped", v)
	}
	if v := mustValue(t, m, "mimi_fanout_failures_total", forgotten); v < failures {
		t.Errorf("forgotten peers' failures %v, fewer than b.example's %v", v, failures)
	}
}
