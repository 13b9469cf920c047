package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestSubscribeChecksCostBudget: subscribing to a room hosted elsewhere
// makes this provider fetch the room's GroupInfo and whole ratchet tree
// from its hub, under this provider's budget there. A client that asks
// again and again (a non-member, answered 403 each time) must pay for
// those answers as it pays for a tree it fetches itself, or one hostile
// user spends the provider's budget at that hub for everyone: once its
// byte budget is in debt it gets 429 and the hub is not asked.
func TestSubscribeChecksCostBudget(t *testing.T) {
	e := newEnv(t, "a.example", func(c *Config) {
		c.ClientBudget = Budget{Requests: 1000, Bytes: 1024} // bursts of 8 KiB
	})
	mallory := e.register("mallory", "x")
	remote := proto.RoomURI("b.example", "big")
	bob := newMember(t, "mimi://b.example/u/bob/d/x")
	g, err := mls.CreateGroup(suite(t), bob.signer, mls.CreateOptions{GroupOptions: groupOptions(), GroupID: []byte(remote),
		Credential: mls.BasicCredential([]byte(bob.uri)), Capabilities: caps, Lifetime: lifetime()})
	if err != nil {
		t.Fatal(err)
	}
	gi, err := g.GroupInfo(mls.GroupInfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.peers.groupInfo = &proto.GroupInfoResponse{Status: proto.GroupInfoSuccess, GroupInfo: gi,
		RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeFull, Tree: wire.MustMarshal(g.Tree())}}
	path := roomPath(remote, "subscription")
	untilOverBudget(t, "a non-member's subscription", http.StatusForbidden, func() *httptest.ResponseRecorder {
		return e.apiDo(http.MethodPut, path, mallory.token, nil)
	})
	e.peers.taken() // forget the calls so far
	wantJSONError(t, e.apiDo(http.MethodPut, path, mallory.token, nil), http.StatusTooManyRequests, kindLimit, "again in debt")
	if n := len(e.peers.taken()); n != 0 {
		t.Fatalf("a subscription refused for the budget still asked the hub")
	}
}
