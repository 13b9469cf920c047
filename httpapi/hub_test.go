package httpapi

import (
	"net/http"
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

func TestHubEndpoint(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	wantJSONError(t, e.apiDo(http.MethodGet, "/v1/hub", "", nil), http.StatusUnauthorized, kindNotAllowed, "without a token")
	first := e.hubExtension(alice)
	if again := e.hubExtension(alice); !slices.Equal(again.Data, first.Data) {
		t.Fatal("the hub's external sender changed between two requests")
	}
	if n := e.b.count(fsm.CmdHubKey); n != 1 {
		t.Fatalf("%d CmdHubKey proposed, want 1 (the first request sets the key)", n)
	}
	var es mls.ExternalSenders
	if err := wire.Unmarshal(first.Data, &es); err != nil || len(es) != 1 || string(es[0].Credential.Identity) != "mimi://a.example" {
		t.Fatalf("external senders %+v, %v", es, err)
	}
}

// TestRemoveClientsEndpoint: a provider asks the hub to remove its own
// clients from a room hosted here (DECISIONS.md item 27).
func TestRemoveClientsEndpoint(t *testing.T) {
	f := newFedFixture(t)
	body := func(clients ...proto.URI) []byte {
		return wire.MustMarshal(&proto.RemoveClientsRequest{Clients: clients})
	}
	bob := proto.ClientURI("b.example", "bob", "laptop")
	for _, c := range []struct {
		name, path, peer string
		body             []byte
		status           int
		contains         string
	}{
		{"another provider's client", "/removeClients/r", "b.example", body(f.alice.uri), 403, "only its own clients"},
		{"a client URI that is not one", "/removeClients/r", "b.example", body("mimi://b.example/u/bob"), 400, "not a client URI"},
		{"nobody", "/removeClients/r", "b.example", body(), 400, "1 to"},
		{"garbage", "/removeClients/r", "b.example", []byte{7}, 400, "RemoveClientsRequest"},
		{"a room not hosted here", "/removeClients/nope", "b.example", body(bob), 404, "not hosted"},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantTextError(t, f.fedDo(http.MethodPost, c.path, c.peer, c.body), c.status, c.contains, c.name)
		})
	}
	// Bob is not in the room: nothing to do, 204.
	want(t, f.fedDo(http.MethodPost, "/removeClients/r", "b.example", body(bob)), http.StatusNoContent, "a client that is not a member")
	// a.example's own client, asked by a.example's peer identity, is
	// refused before anything: a provider does not federate with itself.
	wantTextError(t, f.fedDo(http.MethodPost, "/removeClients/r", "a.example", body(f.alice.uri)), http.StatusForbidden, "own domain", "from itself")
}

// TestClaimAsksForRoomCapabilities: a claim for a room hosted here asks the
// foreign provider for what the room requires, so it serves a KeyPackage
// that can be added.
func TestClaimAsksForRoomCapabilities(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	id := e.createRoom(alice, "r")
	rec := e.apiDo(http.MethodPost, "/v1/keymaterial", alice.token, map[string]any{"users": []string{"mimi://b.example/u/bob"}, "room": id})
	want(t, rec, http.StatusOK, "claim")
	calls := e.peers.taken()
	if len(calls) != 1 {
		t.Fatalf("%d claims relayed", len(calls))
	}
	rc := calls[0].body.(*proto.KeyMaterialRequest).RequiredCapabilities
	if !slices.Contains(rc.Proposals, proto.ProposalParticipantListPatch) || !slices.Contains(rc.Proposals, mls.ProposalSelfRemove) || !slices.Contains(rc.Extensions, proto.ExtBasePolicy) {
		t.Fatalf("the claim asks for %+v", rc)
	}
}
