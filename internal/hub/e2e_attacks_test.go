package hub_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/httpapi"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// apiCall is one raw request to a provider's client API.
type apiCall struct {
	method, path, token string
	body                any
}

// answer is a raw client API answer.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// rawAPI sends c to p's client API as an anonymous or hostile client would:
// no client library, whatever body it likes.
func rawAPI(t *testing.T, p *testutil.Provider, c apiCall) answer {
	t.Helper()
	var rd io.Reader
	if c.body != nil {
		b, err := json.Marshal(c.body)
		must(t, err, "encode")
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(opCtx(t), c.method, p.ClientURL()+c.path, rd)
	must(t, err, "request")
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: p.ClientTLS()}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	must(t, err, c.method+" "+c.path)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(t, err, "read answer")
	return answer{status: resp.StatusCode, header: resp.Header, body: body}
}

func (a answer) want(t *testing.T, status int, what string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: HTTP %d %s, want %d", what, a.status, a.body, status)
	}
}

// attackRegBurst is a.example's registration burst in TestAttacks.
const attackRegBurst = 30

// TestAttacks replays, against real listeners, every attack of issue 12
// that the accounts and peer rules close (the operations listener's are
// in ops tests). Each must be refused with a clear answer and change no
// provider's replicated state.
func TestAttacks(t *testing.T) {
	net := testutil.StartNetwork(t, testutil.Options{Configure: func(cfg *hub.Config) {
		// a.example is a -require-consent provider with account
		// limits (the default rates, a burst the attacks below fit in).
		if cfg.Domain == domainA {
			cfg.RequireConsent = true
			cfg.AccountRateLimits = httpapi.RateLimits{Registration: httpapi.Rate{Every: httpapi.DefaultRegistrationRate.Every, Burst: attackRegBurst}}
		}
	}}, domainA, domainB, domainC)
	a, b, c := net.Provider(domainA), net.Provider(domainB), net.Provider(domainC)
	providers := []*testutil.Provider{a, b, c}
	alice := newParty(t, a, "alice", "phone", nil)
	bob := newParty(t, b, "bob", "laptop", nil)
	carol := newParty(t, c, "carol", "phone", nil)
	// Alice lets Bob add her anywhere (so he can), and Carol too.
	for _, who := range []*party{bob, carol} {
		must(t, alice.m.API().Consent(opCtx(t), &proto.ConsentEntry{Operation: proto.ConsentGrant, Requester: who.m.User(), Target: alice.m.User()}), "grant")
		who.see(t, "consent grant "+short(who.m.User())+" alice any")
	}
	// A room hosted by b.example with Alice and Bob in it.
	w := newWorld(alice, bob)
	var err error
	w.room, err = bob.m.CreateRoom(opCtx(t), "r", proto.DefaultPolicy())
	must(t, err, "create room")
	w.join(bob)
	must(t, bob.m.AddUsers(opCtx(t), w.room, []proto.UserRoles{userRoles(alice, proto.RoleRegularUser)}), "add Alice")
	alice.see(t, "joined e1")
	w.join(alice)
	w.say(t, alice, "hello")
	w.check(t)
	must(t, alice.m.UploadKeyPackages(opCtx(t), 1, false), "more KeyPackages")

	// unchanged runs attack and checks no provider's state changed.
	unchanged := func(t *testing.T, attack func(t *testing.T)) {
		t.Helper()
		before := states(t, providers)
		attack(t)
		if after := states(t, providers); !equalStates(before, after) {
			t.Fatalf("the attack changed the state of %v", changed(before, after))
		}
		w.say(t, bob, "still fine")
		w.check(t)
	}

	t.Run("anyone adds a device to an existing user", func(t *testing.T) {
		unchanged(t, func(t *testing.T) {
			for _, name := range []string{"alice", "Alice", "ALICE", "\uff41lice", "a1ice"} {
				rawAPI(t, a, apiCall{method: "POST", path: "/v1/register", body: map[string]string{"user": name, "device": "evil"}}).want(t, 409, "register "+name+"/evil")
			}
			rawAPI(t, a, apiCall{method: "POST", path: "/v1/register", body: map[string]string{"user": "\u0430lice", "device": "evil"}}).want(t, 400, "a Cyrillic look-alike")
			rawAPI(t, a, apiCall{method: "POST", path: "/v1/devices", body: map[string]string{"user": "alice", "device": "evil", "password": "guessing"}}).want(t, 403, "a password device of a user without password")
			// Without a token nothing of Alice's is reachable: the room's
			// GroupInfo (for an external join) and her stream.
			rawAPI(t, a, apiCall{method: "POST", path: "/v1/rooms/b.example/r/groupinfo", body: map[string][]byte{"signature_key": {1}}}).want(t, 401, "groupinfo without a token")
			rawAPI(t, a, apiCall{method: "GET", path: "/v1/stream"}).want(t, 401, "stream without a token")
		})
		// A link request is accepted (it waits for Alice), but its token
		// reads nothing until one of her devices approves, and nobody
		// else's device can.
		ans := rawAPI(t, a, apiCall{method: "POST", path: "/v1/devices/link", body: map[string]string{"user": "alice", "device": "evil"}})
		ans.want(t, 202, "link request")
		var link struct{ Token, Code string }
		must(t, json.Unmarshal(ans.body, &link), "link answer")
		rawAPI(t, a, apiCall{method: "GET", path: "/v1/stream", token: link.Token}).want(t, 401, "an unapproved device's stream")
		mallory := newParty(t, a, "mallory", "x", nil)
		_, err := mallory.m.API().ApproveLink(opCtx(t), link.Code)
		if se := (*client.StatusError)(nil); !asStatus(err, &se) || se.Status != 404 {
			t.Fatalf("mallory approves alice's device: %v", err)
		}
		rawAPI(t, a, apiCall{method: "GET", path: "/v1/whoami", token: link.Token}).want(t, 401, "still unapproved")
	})

	t.Run("an anonymous link flood does not stop a device invitation", func(t *testing.T) {
		// The flood (the lead's finding): link requests for alice, all
		// from one address, until her waiting slots are full and her
		// link budget is spent. Her own new device cannot link now.
		var flood answer
		for i := range 2 * fsm.MaxPendingLinksPerUser {
			flood = rawAPI(t, a, apiCall{method: "POST", path: "/v1/devices/link", body: map[string]string{"user": "alice", "device": fmt.Sprint("flood", i)}})
			if flood.status == 429 {
				break
			}
			flood.want(t, 202, "a flood link request")
		}
		flood.want(t, 429, "the flood's last request")
		var waiting int
		a.Read(t, func(s *fsm.State) { waiting = len(s.PendingLinks(alice.m.User())) })
		if waiting != fsm.MaxPendingLinksPerUser {
			t.Fatalf("%d link requests wait for alice, want her %d slots full", waiting, fsm.MaxPendingLinksPerUser)
		}
		tablet := a.NewUser(t)
		var se *client.StatusError
		if _, err := tablet.RequestLink(opCtx(t), "alice", "tablet"); !asStatus(err, &se) || se.Status != 429 {
			t.Fatalf("alice's own link request during the flood: %v, want 429", err)
		}
		// An invitation from her phone is hers alone: the flood took
		// nothing of it.
		inv, err := alice.m.API().InviteDevice(opCtx(t))
		must(t, err, "alice invites a device")
		// Guesses: each one 404 with one message, refused before the
		// log (the applied index does not move), then the address's
		// redemption budget (DefaultRedeemRate) stops them.
		wrong := "AAAA-AAAA-AAAA"
		if normalized := strings.ReplaceAll(inv.Code, "-", ""); normalized == "AAAAAAAAAAAA" {
			wrong = "BBBB-BBBB-BBBB"
		}
		guesses := []map[string]string{
			{"user": "alice", "device": "evil", "code": wrong},
			{"user": "nobody", "device": "evil", "code": inv.Code},
			{"user": "mallory", "device": "evil", "code": inv.Code},
			{"user": "alice", "device": "evil", "code": "ZZZZ-ZZZZ-ZZZZ"},
		}
		unchanged(t, func(t *testing.T) {
			index := a.Hub(t).Store().AppliedIndex()
			var first string
			for _, g := range guesses {
				ans := rawAPI(t, a, apiCall{method: "POST", path: "/v1/devices/redeem", body: g})
				ans.want(t, 404, "redeem "+g["user"]+" "+g["code"])
				if first == "" {
					first = string(ans.body)
				}
				if string(ans.body) != first {
					t.Fatalf("two unmatched redemptions answer differently: %s and %s", first, ans.body)
				}
			}
			if after := a.Hub(t).Store().AppliedIndex(); after != index {
				t.Fatalf("unmatched redemptions reached the log: index %d -> %d", index, after)
			}
		})
		added, err := tablet.RedeemInvite(opCtx(t), "alice", "tablet", inv.Code)
		must(t, err, "alice's tablet redeems her invitation")
		id, err := tablet.WhoAmI(opCtx(t))
		must(t, err, "the invited tablet's token")
		if id.Client != added.Client || added.Client != proto.ClientURI(domainA, "alice", "tablet") {
			t.Fatalf("redeemed %s, whoami %s", added.Client, id.Client)
		}
		unchanged(t, func(t *testing.T) {
			ans := rawAPI(t, a, apiCall{method: "POST", path: "/v1/devices/redeem", body: guesses[0]})
			ans.want(t, 429, "a guess over the address's budget")
			if ra, err := strconv.Atoi(ans.header.Get("Retry-After")); err != nil || ra < 1 {
				t.Fatalf("429 without a Retry-After: %q", ans.header.Get("Retry-After"))
			}
		})
	})

	t.Run("consent bypass through a claim naming another provider's user", func(t *testing.T) {
		kpsBefore := keyPackages(t, a, alice)
		req := proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: carol.m.User(), TargetUsers: []proto.URI{alice.m.User()},
			Room: proto.RoomURI(domainB, "fake"), AcceptableSuites: []mls.CipherSuite{mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519}}
		certB := net.Issue(domainB)
		httpReq, err := http.NewRequestWithContext(opCtx(t), "POST", "https://"+domainA+"/claimKeymaterial/"+domainA, bytes.NewReader(wire.MustMarshal(&req)))
		must(t, err, "request")
		resp, err := net.PeerClient(&certB).Do(httpReq)
		must(t, err, "claim")
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var km proto.KeyMaterialResponse
		if resp.StatusCode != 200 || wire.Unmarshal(body, &km) != nil || len(km.Users) != 1 {
			t.Fatalf("claim: HTTP %d %q", resp.StatusCode, body)
		}
		if u := km.Users[0]; u.Status != proto.UserNoConsentForThisRoom || len(u.Clients) != 0 {
			t.Fatalf("b.example got %s with %d clients for carol's claim", u.Status, len(u.Clients))
		}
		if after := keyPackages(t, a, alice); after != kpsBefore {
			t.Fatalf("Alice has %d KeyPackages after the refused claim, %d before", after, kpsBefore)
		}
	})

	t.Run("subscribe to a remote room one is not in", func(t *testing.T) {
		eve := newParty(t, a, "eve", "x", nil)
		unchanged(t, func(t *testing.T) {
			rawAPI(t, a, apiCall{method: "PUT", path: "/v1/rooms/b.example/r/subscription", token: eve.m.API().Token()}).want(t, 403, "eve follows Bob's room")
		})
		// Once Alice has Bob's message, it has reached a.example: Eve,
		// there too, must not have it.
		w.say(t, bob, "secret")
		w.check(t)
		eve.quiet(t)
		// A member who stopped following comes back: the hub confirms.
		// (What reaches a.example while nobody there follows the room is
		// not kept: hence the check above, before Alice leaves.)
		must(t, alice.m.API().Unsubscribe(opCtx(t), w.room), "alice unsubscribes")
		rawAPI(t, a, apiCall{method: "PUT", path: "/v1/rooms/b.example/r/subscription", token: alice.m.API().Token()}).want(t, 204, "alice follows again")
		w.say(t, bob, "welcome back")
		w.check(t)
	})

	t.Run("Alice and alice", func(t *testing.T) {
		unchanged(t, func(t *testing.T) {
			for _, name := range []string{"Alice", "ALICE", "\uff21\uff2c\uff29\uff23\uff25", "al1ce", "aIice"} {
				ans := rawAPI(t, a, apiCall{method: "POST", path: "/v1/register", body: map[string]string{"user": name, "device": "x"}})
				if ans.status != 409 && ans.status != 400 {
					t.Fatalf("register %q: HTTP %d %s", name, ans.status, ans.body)
				}
			}
		})
	})

	t.Run("unlimited registrations", func(t *testing.T) {
		var users0, users1 int
		a.Read(t, func(s *fsm.State) { users0 = s.Counts().Users })
		var limited answer
		n := 0
		for i := range 200 {
			ans := rawAPI(t, a, apiCall{method: "POST", path: "/v1/register", body: map[string]string{"user": fmt.Sprintf("flood%d", i), "device": "x"}})
			if ans.status == 429 {
				limited = ans
				break
			}
			ans.want(t, 201, "a registration within the budget")
			n++
		}
		if limited.status != 429 || n > attackRegBurst {
			t.Fatalf("%d registrations before a 429 (burst %d)", n, attackRegBurst)
		}
		if ra, err := strconv.Atoi(limited.header.Get("Retry-After")); err != nil || ra < 1 {
			t.Fatalf("429 without a Retry-After: %q", limited.header.Get("Retry-After"))
		}
		a.Read(t, func(s *fsm.State) { users1 = s.Counts().Users })
		if users1-users0 != n {
			t.Fatalf("%d users created, %d registrations accepted", users1-users0, n)
		}
	})
}

// asStatus reports whether err carries a client API status.
func asStatus(err error, se **client.StatusError) bool {
	return err != nil && errors.As(err, se)
}

// keyPackages counts p's KeyPackages of party m.
func keyPackages(t *testing.T, p *testutil.Provider, m *party) int {
	var n int
	p.Read(t, func(s *fsm.State) {
		c, _ := s.KeyPackages(m.m.Client())
		n = c.KeyPackages
	})
	return n
}

// TestRevocationOnEveryNode revokes a device through one node of a 3-node
// provider and checks that the very next request with its token is
// refused by every node, the followers included, and the same for a
// suspended user through the operator API.
func TestRevocationOnEveryNode(t *testing.T) {
	cl := testutil.StartCluster(t, testutil.ClusterOptions{}, 3)
	leader, followers := cl.Leader(t), cl.Followers(t)
	ctx := opCtx(t)
	phone := leader.NewUser(t)
	_, err := phone.RegisterWith(ctx, "alice", "phone", client.RegisterOptions{Password: "correct horse"})
	must(t, err, "register")
	tablet := followers[0].NewUser(t)
	_, err = tablet.AddDeviceWithPassword(ctx, "alice", "tablet", "correct horse")
	must(t, err, "add the tablet with the password")
	for _, n := range cl.Nodes {
		rawAPI(t, n, apiCall{method: "GET", path: "/v1/whoami", token: tablet.Token()}).want(t, 200, "the tablet on "+n.Config.NodeID)
	}
	for round, via := range cl.Nodes {
		// Revoke through each node in turn, then ask every node at once.
		dev := fmt.Sprintf("t%d", round)
		u := via.NewUser(t)
		_, err := u.AddDeviceWithPassword(ctx, "alice", dev, "correct horse")
		must(t, err, "add "+dev)
		// A write first: writes check the token in log order (the
		// command carries it), not on a read index.
		rawAPI(t, via, apiCall{method: "POST", path: "/v1/stream/ack", token: u.Token(), body: map[string]any{"seq": 0}}).want(t, 204, dev+" writes on "+via.Config.NodeID)
		must(t, phone.RevokeDevice(ctx, dev), "revoke "+dev)
		for _, n := range cl.Nodes {
			rawAPI(t, n, apiCall{method: "GET", path: "/v1/whoami", token: u.Token()}).want(t, 401, dev+" revoked, asked on "+n.Config.NodeID)
			rawAPI(t, n, apiCall{method: "POST", path: "/v1/stream/ack", token: u.Token(), body: map[string]any{"seq": 0}}).want(t, 401, dev+" revoked, writing on "+n.Config.NodeID)
		}
	}
	// An operator suspends Alice through a follower's ops listener.
	body, _ := json.Marshal(hub.OpsSuspendRequest{User: "alice", Suspend: true})
	resp, err := http.Post(followers[1].OpsURL()+"/v1/users/suspend", "application/json", bytes.NewReader(body))
	must(t, err, "suspend")
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("suspend: HTTP %d", resp.StatusCode)
	}
	for _, n := range cl.Nodes {
		rawAPI(t, n, apiCall{method: "GET", path: "/v1/whoami", token: phone.Token()}).want(t, 401, "suspended, asked on "+n.Config.NodeID)
		rawAPI(t, n, apiCall{method: "POST", path: "/v1/stream/ack", token: phone.Token(), body: map[string]any{"seq": 0}}).want(t, 401, "suspended, writing on "+n.Config.NodeID)
	}
}

// TestPasswordGuessesAcrossNodes: a guesser who spreads wrong passwords
// over every node of a 3-node cluster (the per-node rate limits off, as if
// it had addresses enough) gets PasswordFailureBurst guesses in all, not
// per node: then every node refuses every attempt, the right password
// too, with 429 and a Retry-After of about one interval.
func TestPasswordGuessesAcrossNodes(t *testing.T) {
	cl := testutil.StartCluster(t, testutil.ClusterOptions{}, 3)
	ctx := opCtx(t)
	phone := cl.Leader(t).NewUser(t)
	_, err := phone.RegisterWith(ctx, "alice", "phone", client.RegisterOptions{Password: "correct horse"})
	must(t, err, "register")
	guess := func(n *testutil.Provider, i int, password string) answer {
		return rawAPI(t, n, apiCall{method: "POST", path: "/v1/devices", body: map[string]string{"user": "alice", "device": fmt.Sprintf("d%d", i), "password": password}})
	}
	for i := range int(fsm.PasswordFailureBurst) {
		n := cl.Nodes[i%len(cl.Nodes)]
		guess(n, i, fmt.Sprintf("guess %d", i)).want(t, 403, fmt.Sprintf("guess %d on %s", i, n.Config.NodeID))
	}
	interval := int(fsm.PasswordFailureInterval / 1000)
	for _, n := range cl.Nodes {
		for _, pw := range []string{"one guess more", "correct horse"} {
			a := guess(n, 99, pw)
			a.want(t, 429, fmt.Sprintf("%q past the schedule on %s", pw, n.Config.NodeID))
			if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || ra < interval-120 || ra > interval {
				t.Fatalf("Retry-After %q on %s, want about %d s", a.header.Get("Retry-After"), n.Config.NodeID, interval)
			}
		}
	}
}
