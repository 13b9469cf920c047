package hub_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/mimi/client"
)

// TestOpsNodeDrills checks the drill endpoints on a 3-node provider: a
// leader steps down and another voter leads, a follower refuses to, and a
// paused node refuses client requests and readiness while the others
// serve, until the pause ends.
func TestOpsNodeDrills(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Configure: func(i int, cfg *hub.Config) { cfg.AdminToken = opsToken }}, 3)
	leader := c.Leader(t)

	step(t, "the leader steps down", func(t *testing.T) {
		var out hub.OpsLeaderAnswer
		admin(t, leader, http.MethodPost, "/v1/node/step-down", nil, http.StatusOK).decode(t, &out)
		if out.LeaderID == "" || out.LeaderID == leader.Config.NodeID {
			t.Fatalf("after the step-down the leader is %q", out.LeaderID)
		}
		admin(t, leader, http.MethodPost, "/v1/node/step-down", nil, http.StatusConflict).wantError(t, "conflict", "does not lead")
	})

	follower := c.Followers(t)[0]
	other := c.Leader(t)
	step(t, "a paused node refuses requests, the others serve", func(t *testing.T) {
		for _, bad := range []string{`{"seconds": -1}`, `{"seconds": 601}`, `{"secs": 5}`} {
			admin(t, follower, http.MethodPost, "/v1/node/pause", bad, http.StatusBadRequest)
		}
		var out hub.OpsPauseAnswer
		admin(t, follower, http.MethodPost, "/v1/node/pause", hub.OpsPauseRequest{Seconds: 300}, http.StatusOK).decode(t, &out)
		if out.Until == nil || out.Node != follower.Config.NodeID {
			t.Fatalf("pause answer %+v", out)
		}
		_, err := client.RegisterMember(opCtx(t), follower.NewUser(t), "alice", "phone", client.MemberConfig{})
		if err == nil || !strings.Contains(err.Error(), "not accepting requests") {
			t.Fatalf("register on the paused node: %v", err)
		}
		if code, body := readyz(t, follower); code != http.StatusServiceUnavailable || !strings.Contains(body, "paused") {
			t.Errorf("/readyz of the paused node: %d %q", code, body)
		}
		var st hub.OpsStatus
		admin(t, follower, http.MethodGet, "/v1/status", nil, http.StatusOK).decode(t, &st)
		if st.PausedUntil == nil || st.Ready {
			t.Errorf("status of the paused node: paused until %v, ready %v", st.PausedUntil, st.Ready)
		}
		_, err = client.RegisterMember(opCtx(t), other.NewUser(t), "bob", "phone", client.MemberConfig{})
		must(t, err, "register bob on another node")
		var ended hub.OpsPauseAnswer
		admin(t, follower, http.MethodPost, "/v1/node/pause", hub.OpsPauseRequest{Seconds: 0}, http.StatusOK).decode(t, &ended)
		if ended.Until != nil {
			t.Errorf("ending the pause answered %+v", ended)
		}
		_, err = client.RegisterMember(opCtx(t), follower.NewUser(t), "carol", "phone", client.MemberConfig{})
		must(t, err, "register carol once the pause ended")
	})
}
