package hub_test

import (
	"testing"

	"github.com/mimihub/mimi-hub/httpapi"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// BenchmarkMessagePath sends application messages into a room of two
// members through the leader, and through a follower, of a 3-node
// in-process provider: the whole path of one message, the client
// library's encryption and request, the node's handler, Raft on three
// nodes, and every node's state machine. Its allocations per message
// (-benchmem) are the figure the allocation diet of the message path
// reports (docs/benchmarks.md); its time is one sender's latency.
//
//	go test ./internal/hub -run '^$' -bench MessagePath -benchmem -benchtime 2000x
func BenchmarkMessagePath(b *testing.B) {
	// One sender's budget would stop it: the provider is measured, not
	// what a client may send.
	cl := testutil.StartCluster(b, testutil.ClusterOptions{Configure: func(_ int, cfg *hub.Config) {
		cfg.Limits.ClientBudget = httpapi.Budget{Requests: -1, Bytes: -1}
	}}, 3)
	ctx := b.Context()
	for _, via := range []struct {
		name string
		p    *testutil.Provider
	}{{"leader", cl.Leader(b)}, {"follower", cl.Followers(b)[0]}} {
		member := func(name string) *client.Member {
			m, err := client.RegisterMember(ctx, via.p.NewUser(b), name, "phone", client.MemberConfig{})
			if err != nil {
				b.Fatal(err)
			}
			return m
		}
		alice, bob := member(via.name+"-alice"), member(via.name+"-bob")
		if err := bob.UploadKeyPackages(ctx, 1, false); err != nil {
			b.Fatal(err)
		}
		r, err := alice.CreateRoom(ctx, via.name, proto.DefaultPolicy())
		if err != nil {
			b.Fatal(err)
		}
		if err := alice.AddUsers(ctx, r, []proto.UserRoles{{User: bob.User(), Roles: []proto.Role{proto.RoleRegularUser}}}); err != nil {
			b.Fatal(err)
		}
		payload := make([]byte, 64)
		b.Run(via.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := alice.Send(ctx, r, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
