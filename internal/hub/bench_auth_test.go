package hub_test

import (
	"net/http"
	"testing"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/testutil"
)

// BenchmarkAuthRead measures what authenticating a request costs on a
// 3-node provider: the state read it needs, stale (a local read, how
// tokens were checked before revocation had to cut them at once) beside
// linearizable (a read index first, which on a follower asks the leader),
// on the leader and on a follower; and a whole authenticated request
// (GET /v1/whoami) through a follower.
//
//	go test ./internal/hub -run '^$' -bench AuthRead -benchtime 2000x
func BenchmarkAuthRead(b *testing.B) {
	cl := testutil.StartCluster(b, testutil.ClusterOptions{}, 3)
	leader, follower := cl.Leader(b), cl.Followers(b)[0]
	ctx := b.Context()
	u := leader.NewUser(b)
	reg, err := u.Register(ctx, "alice", "phone", nil)
	if err != nil {
		b.Fatal(err)
	}
	check := func(s *fsm.State) error {
		_ = s.HasClient(reg.Client)
		return nil
	}
	for _, n := range []struct {
		name string
		p    *testutil.Provider
	}{{"leader", leader}, {"follower", follower}} {
		store := n.p.Hub(b).Store()
		for _, lin := range []bool{false, true} {
			name := n.name + "/stale"
			if lin {
				name = n.name + "/linearizable"
			}
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					if err := store.Read(ctx, lin, check); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	b.Run("follower/whoami", func(b *testing.B) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: follower.ClientTLS()}}
		defer hc.CloseIdleConnections()
		for b.Loop() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, follower.ClientURL()+"/v1/whoami", nil)
			req.Header.Set("Authorization", "Bearer "+reg.Token)
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("whoami: HTTP %d", resp.StatusCode)
			}
		}
	})
}
