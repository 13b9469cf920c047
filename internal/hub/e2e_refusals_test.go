package hub_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
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

// fedCall is one raw request to a federation endpoint.
type fedCall struct {
	name string
	// cert is the client certificate presented; nil presents none.
	cert         *tls.Certificate
	method, path string
	body         []byte
	header       http.Header
	// chunked sends the body without a Content-Length, so the server
	// must read it to find out its size.
	chunked bool

	// status is the HTTP status the call must get. For 200 answers
	// carrying a MIMI code, code (UpdateRoomResponse) or giStatus
	// (GroupInfoResponse) is the code it must carry.
	status   int
	code     *proto.UpdateResponseCode
	giStatus *proto.GroupInfoCode
}

func updateCode(c proto.UpdateResponseCode) *proto.UpdateResponseCode { return &c }
func groupInfoCode(c proto.GroupInfoCode) *proto.GroupInfoCode        { return &c }

// do sends the call to provider to and checks its answer.
func (c fedCall) do(t *testing.T, net *testutil.Network, to string) {
	t.Helper()
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
		if c.chunked {
			body = io.MultiReader(body) // hides the length
		}
	}
	req, err := http.NewRequestWithContext(opCtx(t), c.method, "https://"+to+c.path, body)
	must(t, err, "request")
	req.Header.Set("Content-Type", client.ContentTypeMIMI)
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	resp, err := net.PeerClient(c.cert).Do(req)
	must(t, err, c.name)
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	must(t, err, "reading the answer")
	if resp.StatusCode != c.status {
		t.Fatalf("%s %s: HTTP %d %q, want %d", c.method, c.path, resp.StatusCode, answer, c.status)
	}
	switch {
	case c.code != nil:
		var ur proto.UpdateRoomResponse
		if err := wire.Unmarshal(answer, &ur); err != nil || ur.Code != *c.code {
			t.Fatalf("%s %s: answer %s (%q), %v; want %s", c.method, c.path, ur.Code, ur.Description, err, *c.code)
		}
	case c.giStatus != nil:
		var gi proto.GroupInfoResponse
		if err := wire.Unmarshal(answer, &gi); err != nil || gi.Status != *c.giStatus {
			t.Fatalf("%s %s: answer %s, %v; want %s", c.method, c.path, gi.Status, err, *c.giStatus)
		}
	case resp.StatusCode == http.StatusUnauthorized:
		if got := resp.Header.Get("WWW-Authenticate"); got == "" {
			t.Fatalf("%s %s: 401 without WWW-Authenticate", c.method, c.path)
		}
	}
}

// TestFederationRefusals sends refused requests to the federation
// endpoints of a real hub with raw HTTP clients: without a client
// certificate (401), with a certificate whose domain does not match what
// the request claims (403, or the seed's notAllowed / notAuthorized code in
// a 200 answer where the seed defines one, httpapi/DESIGN.md "Errors"), a
// commit for a past epoch (wrongEpoch), commits the room policy forbids
// (notAllowed), oversized bodies (413), garbage (400) and downloads of
// assets the hub may not fetch. After each refusal the state of every
// provider is byte for byte what it was, and the next valid request (a
// message from b.example's Bob to a.example's Alice) still goes through.
func TestFederationRefusals(t *testing.T) {
	// An asset host a.example may fetch from, whose certificate it does
	// not trust (its roots, hub.Config.AssetRoots, are the system's): downloads
	// from it fail upstream (502), as opposed to downloads the hub refuses
	// to make (403).
	assets := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "a picture") }))
	assets.Config.ErrorLog = log.New(io.Discard, "", 0)
	assets.StartTLS()
	t.Cleanup(assets.Close)
	assetHost := strings.TrimPrefix(assets.URL, "https://")

	net := testutil.StartNetwork(t, testutil.Options{Configure: func(cfg *hub.Config) {
		cfg.AssetHosts = []string{assetHost}
	}}, domainA, domainB, domainC)
	a, b, c := net.Provider(domainA), net.Provider(domainB), net.Provider(domainC)
	alice := newParty(t, a, "alice", "phone", nil)
	bob := newParty(t, b, "bob", "laptop", nil)
	w := newWorld(alice, bob)
	var err error
	w.room, err = alice.m.CreateRoom(opCtx(t), "r", proto.DefaultPolicy())
	must(t, err, "create room")
	w.join(alice)
	must(t, alice.m.AddUsers(opCtx(t), w.room, []proto.UserRoles{userRoles(bob, proto.RoleRegularUser)}), "add Bob")
	bob.see(t, "joined e1")
	w.join(bob)
	w.say(t, bob, "hi")
	w.check(t)

	certB, certX, certA := net.Issue(domainB), net.Issue("x.example"), net.Issue(domainA)
	providers := []*testutil.Provider{a, b, c}
	n := 0
	// refused runs calls that must change nothing, each followed by a
	// valid request.
	refused := func(t *testing.T, calls ...fedCall) {
		t.Helper()
		for _, call := range calls {
			t.Run(call.name, func(t *testing.T) {
				before := states(t, providers)
				call.do(t, net, domainA)
				if after := states(t, providers); !equalStates(before, after) {
					t.Fatalf("%s changed the state of %v", call.name, changed(before, after))
				}
				n++
				w.say(t, bob, fmt.Sprintf("still fine %d", n))
				w.check(t)
			})
		}
	}
	room := func(path string) string { return path + "/r" }
	bobURI, aliceURI := bob.m.User(), alice.m.User()

	t.Run("the directory needs no certificate", func(t *testing.T) {
		var dir proto.Directory
		req, _ := http.NewRequestWithContext(opCtx(t), http.MethodGet, "https://"+domainA+client.DirectoryPath, nil)
		resp, err := net.PeerClient(nil).Do(req)
		must(t, err, "directory")
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || wire.Unmarshal(body, &dir) != nil || len(dir.Entries) != 10 {
			t.Fatalf("directory: HTTP %d, %d entries", resp.StatusCode, len(dir.Entries))
		}
	})

	t.Run("no client certificate", func(t *testing.T) {
		refused(t,
			fedCall{name: "requestConsent", method: "POST", path: "/requestConsent/a.example", status: 401},
			fedCall{name: "updateConsent", method: "POST", path: "/updateConsent/a.example", status: 401},
			fedCall{name: "claimKeymaterial", method: "POST", path: "/claimKeymaterial/a.example", status: 401},
			fedCall{name: "updateRoom", method: "POST", path: room("/updateRoom"), status: 401},
			fedCall{name: "provisionalMessage", method: "POST", path: room("/provisionalMessage"), status: 401},
			fedCall{name: "fanout", method: "POST", path: room("/fanout"), header: http.Header{"Mimi-Sequence": {"1"}}, status: 401},
			fedCall{name: "claimGroupInfo", method: "POST", path: room("/claimGroupInfo"), status: 401},
			fedCall{name: "downloadFile", method: "GET", path: "/downloadFile/" + url.PathEscape(assets.URL+"/x.png"), status: 401},
			fedCall{name: "reportAbuse", method: "POST", path: room("/reportAbuse"), status: 401},
			fedCall{name: "identifierQuery", method: "POST", path: "/identifierQuery/a.example", status: 401},
		)
	})

	t.Run("certificate and claims disagree", func(t *testing.T) {
		roomURI := w.room
		bobMsg := messageOf(t, capture(t, bob.m, func(m *client.Member) error { return m.Send(opCtx(t), w.room, []byte("forged")) }))
		bobCommit := commitOf(t, capture(t, bob.m, func(m *client.Member) error { return m.CommitPending(opCtx(t), w.room) }))
		gir := wire.MustMarshal(&proto.GroupInfoRequest{SignatureKey: []byte{1, 2, 3}, Credential: mls.BasicCredential([]byte(proto.ClientURI(domainB, "bob", "tablet")))})
		// The same GroupInfo request from b.example succeeds: it is the
		// certificate that makes the difference.
		fedCall{name: "claimGroupInfo from b.example", cert: &certB, method: "POST", path: room("/claimGroupInfo"), body: gir,
			status: 200, giStatus: groupInfoCode(proto.GroupInfoSuccess)}.do(t, net, domainA)
		refused(t,
			fedCall{name: "x.example requests consent for Bob", cert: &certX, method: "POST", path: "/requestConsent/a.example", status: 403,
				body: wire.MustMarshal(&proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: bobURI, Target: aliceURI})},
			fedCall{name: "x.example grants consent as Bob", cert: &certX, method: "POST", path: "/updateConsent/a.example", status: 403,
				body: wire.MustMarshal(&proto.ConsentEntry{Operation: proto.ConsentGrant, Requester: aliceURI, Target: bobURI, Room: &roomURI})},
			fedCall{name: "x.example claims Alice's KeyPackages for Bob", cert: &certX, method: "POST", path: "/claimKeymaterial/a.example", status: 403,
				body: wire.MustMarshal(&proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: bobURI, TargetUsers: []proto.URI{aliceURI}})},
			fedCall{name: "x.example asks the hub to relay a claim for Bob", cert: &certX, method: "POST", path: "/claimKeymaterial/c.example", status: 403,
				body: wire.MustMarshal(&proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: bobURI, TargetUsers: []proto.URI{proto.UserURI(domainC, "cathy")}, Room: w.room})},
			fedCall{name: "x.example reports abuse as Bob", cert: &certX, method: "POST", path: room("/reportAbuse"), status: 403,
				body: wire.MustMarshal(&proto.AbuseReport{ReportingUser: bobURI, AllegedAbuser: aliceURI, GroupID: []byte(w.room), Epoch: 1, Reason: proto.AbuseSpam})},
			fedCall{name: "x.example sends Bob's message", cert: &certX, method: "POST", path: room("/provisionalMessage"), body: bobMsg,
				status: 200, code: updateCode(proto.UpdateNotAllowed)},
			fedCall{name: "x.example sends Bob's commit", cert: &certX, method: "POST", path: room("/updateRoom"), body: bobCommit,
				status: 200, code: updateCode(proto.UpdateNotAllowed)},
			fedCall{name: "x.example claims the GroupInfo for Bob's new client", cert: &certX, method: "POST", path: room("/claimGroupInfo"), body: gir,
				status: 200, giStatus: groupInfoCode(proto.GroupInfoNotAuthorized)},
			fedCall{name: "a certificate for the hub's own domain", cert: &certA, method: "POST", path: room("/updateRoom"), body: bobCommit, status: 403},
		)
	})

	t.Run("fanout for a room nobody follows", func(t *testing.T) {
		// b.example is the hub of its own rooms, so a.example accepts its
		// fanout for them, but keeps nothing when no client here follows
		// the room.
		m := mlsMessage(t, messageOf(t, capture(t, bob.m, func(m *client.Member) error { return m.Send(opCtx(t), w.room, []byte("x")) })))
		refused(t, fedCall{name: "fanout", cert: &certB, method: "POST", path: "/fanout/nobody-follows", header: http.Header{"Mimi-Sequence": {"1"}},
			body: wire.MustMarshal(&proto.FanoutBatch{{Message: m, Timestamp: 1}}), status: 204})
	})

	t.Run("commit for a past epoch", func(t *testing.T) {
		stale := commitOf(t, capture(t, bob.m, func(m *client.Member) error { return m.CommitPending(opCtx(t), w.room) }))
		must(t, alice.m.CommitPending(opCtx(t), w.room), "Alice commits")
		w.expect("commit alice/phone e2", alice)
		w.check(t)
		refused(t, fedCall{name: "stale commit", cert: &certB, method: "POST", path: room("/updateRoom"), body: stale,
			status: 200, code: updateCode(proto.UpdateWrongEpoch)})
	})

	t.Run("policy violations", func(t *testing.T) {
		// Bob is a regular user: he may neither remove Alice nor promote
		// himself. His provider forwards his commits; the hub refuses.
		remove := commitOf(t, capture(t, bob.m, func(m *client.Member) error { return m.RemoveUser(opCtx(t), w.room, aliceURI) }))
		promote := commitOf(t, capture(t, bob.m, func(m *client.Member) error {
			return m.SetRoles(opCtx(t), w.room, bobURI, []proto.Role{proto.RoleRegularUser, proto.RoleAdmin})
		}))
		refused(t,
			fedCall{name: "a regular user removes the owner", cert: &certB, method: "POST", path: room("/updateRoom"), body: remove,
				status: 200, code: updateCode(proto.UpdateNotAllowed)},
			fedCall{name: "a regular user promotes himself", cert: &certB, method: "POST", path: room("/updateRoom"), body: promote,
				status: 200, code: updateCode(proto.UpdateNotAllowed)},
		)
	})

	t.Run("oversized bodies", func(t *testing.T) {
		refused(t,
			// The room's limit is MaxRoomBody plus 1 KiB per member.
			fedCall{name: "updateRoom over the room's limit", cert: &certB, method: "POST", path: room("/updateRoom"),
				body: make([]byte, httpapi.DefaultMaxRoomBody+64<<10), chunked: true, status: 413},
			fedCall{name: "requestConsent over MaxBody", cert: &certB, method: "POST", path: "/requestConsent/a.example",
				body: make([]byte, httpapi.DefaultMaxBody+1), chunked: true, status: 413},
			// With a declared length the hub refuses before reading; the
			// client waits for its approval, so it sends no body.
			fedCall{name: "claimGroupInfo over MaxBody, declared", cert: &certB, method: "POST", path: room("/claimGroupInfo"),
				body: make([]byte, httpapi.DefaultMaxBody+1), header: http.Header{"Expect": {"100-continue"}}, status: 413},
		)
	})

	t.Run("garbage", func(t *testing.T) {
		junk := []byte("this is not a TLS-encoded MIMI struct")
		var calls []fedCall
		for _, p := range []struct {
			route, path string
			header      http.Header
		}{
			{"requestConsent", "/requestConsent/a.example", nil},
			{"updateConsent", "/updateConsent/a.example", nil},
			{"claimKeymaterial", "/claimKeymaterial/a.example", nil},
			{"updateRoom", room("/updateRoom"), nil},
			{"provisionalMessage", room("/provisionalMessage"), nil},
			{"fanout", room("/fanout"), http.Header{"Mimi-Sequence": {"1"}}},
			{"claimGroupInfo", room("/claimGroupInfo"), nil},
			{"reportAbuse", room("/reportAbuse"), nil},
			{"identifierQuery", "/identifierQuery/a.example", nil},
		} {
			calls = append(calls, fedCall{name: p.route, cert: &certB, method: "POST", path: p.path, header: p.header, body: junk, status: 400})
		}
		calls = append(calls,
			fedCall{name: "empty updateRoom", cert: &certB, method: "POST", path: room("/updateRoom"), body: []byte{}, status: 400},
			fedCall{name: "fanout without Mimi-Sequence", cert: &certB, method: "POST", path: room("/fanout"),
				body: wire.MustMarshal(&proto.FanoutBatch{}), status: 400},
			fedCall{name: "a room id that is no room id", cert: &certB, method: "POST", path: "/updateRoom/" + url.PathEscape("r r"), body: junk, status: 400},
		)
		refused(t, calls...)
	})

	t.Run("downloadFile", func(t *testing.T) {
		dl := func(u string) string { return "/downloadFile/" + url.PathEscape(u) }
		refused(t,
			fedCall{name: "a host that is not an asset host", cert: &certB, method: "GET", path: dl("https://evil.example/x.png"), status: 403},
			fedCall{name: "plain http from an asset host", cert: &certB, method: "GET", path: dl("http://" + assetHost + "/x.png"), status: 403},
			fedCall{name: "userinfo in the URL", cert: &certB, method: "GET", path: dl("https://user@" + assetHost + "/x.png"), status: 403},
			fedCall{name: "an asset host the hub cannot verify", cert: &certB, method: "GET", path: dl(assets.URL + "/x.png"), status: 502},
		)
	})
	w.check(t)
}

// states waits until no provider has undelivered outbox items and returns
// each provider's encoded state without its clock. The state machine's
// clock (the last acceptance time, encoded last) moves with every command
// that is answered, refusals the seed answers with a code included; it is
// no content.
func states(t *testing.T, ps []*testutil.Provider) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, p := range ps {
		p.WaitState(t.Context(), t, "an empty outbox", func(s *fsm.State) bool { return s.Counts().OutboxItems == 0 })
	}
	for _, p := range ps {
		enc, err := p.Hub(t).Store().FSM().EncodeContent()
		must(t, err, "encode state")
		out[p.Domain] = enc
	}
	return out
}

func equalStates(x, y map[string][]byte) bool { return len(changed(x, y)) == 0 && len(x) == len(y) }

// changed lists the domains whose states differ.
func changed(x, y map[string][]byte) []string {
	var out []string
	for d, s := range x {
		if !bytes.Equal(s, y[d]) {
			out = append(out, d)
		}
	}
	return out
}

// capture runs act on a copy of m whose client API only records: the
// copy's requests are answered 400, so it discards what it did, and m
// itself is untouched. It returns the JSON body of the copy's last write.
func capture(t *testing.T, m *client.Member, act func(copy *client.Member) error) []byte {
	t.Helper()
	state, err := m.Save()
	must(t, err, "save member")
	var mu sync.Mutex
	var last []byte
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		last = body
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"recorded","kind":"invalid"}`)
	}))
	defer rec.Close()
	api, err := client.NewUser(client.UserConfig{BaseURL: rec.URL, AllowHTTP: true, Tries: 1})
	must(t, err, "recording client")
	cp, err := client.LoadMember(api, state, client.MemberConfig{})
	must(t, err, "load member")
	if err := act(cp); !isStatus(err, http.StatusBadRequest) {
		t.Fatalf("the recorded request: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if last == nil {
		t.Fatal("nothing recorded")
	}
	return last
}

// commitOf turns a recorded client API commit into an updateRoom body.
func commitOf(t *testing.T, body []byte) []byte {
	t.Helper()
	// mimi/client sends commits as application/mimi: the UpdateRoomRequest
	// itself.
	var bin proto.UpdateRoomRequest
	if wire.Unmarshal(body, &bin) == nil {
		bin.RatchetTree = proto.RatchetTreeOption{Representation: proto.TreeByReference}
		return wire.MustMarshal(&bin)
	}
	var in struct {
		Commit    []byte `json:"commit"`
		Welcome   []byte `json:"welcome"`
		GroupInfo []byte `json:"group_info"`
	}
	must(t, json.Unmarshal(body, &in), "recorded commit")
	req := &proto.UpdateRoomRequest{Message: mlsMessage(t, in.Commit), GroupInfo: mlsMessage(t, in.GroupInfo),
		RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeByReference}}
	if len(in.Welcome) > 0 {
		req.Welcome = mlsMessage(t, in.Welcome)
	}
	return wire.MustMarshal(req)
}

// messageOf turns a recorded client API message into a provisionalMessage
// body.
func messageOf(t *testing.T, body []byte) []byte {
	t.Helper()
	// mimi/client sends messages as application/mimi: the MLSMessage
	// itself.
	var bin mls.Message
	if wire.Unmarshal(body, &bin) == nil {
		return body
	}
	var in struct {
		Message []byte `json:"message"`
	}
	must(t, json.Unmarshal(body, &in), "recorded message")
	return wire.MustMarshal(mlsMessage(t, in.Message))
}
