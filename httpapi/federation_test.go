package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

func TestDirectory(t *testing.T) {
	e := newEnv(t, "a.example", func(c *Config) { c.PublicURL = "https://mimi.a.example/" })
	rec := e.fedDo(http.MethodGet, "/.well-known/mimi-protocol-directory", "", nil)
	want(t, rec, http.StatusOK, "directory")
	var d proto.Directory
	decodeMIMI(t, rec, &d)
	if len(d.Entries) != 10 {
		t.Fatalf("%d directory entries, want 10", len(d.Entries))
	}
	for p := proto.RequestConsent; p <= proto.IdentifierQuery; p++ {
		ent, ok := d.Find(p)
		if !ok {
			t.Fatalf("no entry for %s", p)
		}
		if !strings.HasPrefix(ent.URI, "https://mimi.a.example/") || strings.HasPrefix(ent.URI, "https://mimi.a.example//") {
			t.Errorf("%s: %s", p, ent.URI)
		}
		if (p == proto.DownloadFile) != (ent.Method == proto.MethodGet) {
			t.Errorf("%s: method %d", p, ent.Method)
		}
	}
	if ent, _ := d.Find(proto.ClaimKeyMaterial); ent.URI != "https://mimi.a.example/claimKeymaterial/{domain}" {
		t.Errorf("claimKeyMaterial at %s", ent.URI)
	}
	if ent, _ := d.Find(proto.IdentifierQuery); ent.Method != proto.MethodPost {
		t.Error("identifierQuery is not POST")
	}
	// Every listed template is served.
	for _, ent := range d.Entries {
		path := strings.TrimPrefix(ent.URI, "https://mimi.a.example")
		path = strings.NewReplacer("{targetDomain}", "a.example", "{requesterDomain}", "a.example", "{domain}", "a.example", "{roomId}", "r", "{url}", "x").Replace(path)
		method := http.MethodPost
		if ent.Method == proto.MethodGet {
			method = http.MethodGet
		}
		if rec := e.fedDo(method, path, "", nil); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s %s without a peer: %d", method, path, rec.Code)
		}
	}
}

// fedFixture is a provider a.example with a local user Alice (one
// KeyPackage) and a room hosted here, plus a room at b.example Alice
// follows.
type fedFixture struct {
	*env
	alice  *member
	room   proto.URI
	remote proto.URI    // mimi://b.example/r/x
	batch  *mls.Group   // a group of the remote room, to make fanout
	kp     *mls.Message // Alice's uploaded KeyPackage
}

func newFedFixture(t *testing.T) *fedFixture {
	e := newEnv(t, "a.example", func(c *Config) { c.MaxBody, c.MaxRoomBody = 4096, 64<<10 })
	f := &fedFixture{env: e, alice: e.register("alice", "phone")}
	f.kp = mls.NewKeyPackageMessage(e.upload(f.alice).KeyPackage)
	f.room = e.createRoom(f.alice, "r")
	f.remote = proto.RoomURI("b.example", "x")
	// Alice follows the remote room as a member welcomed into it would
	// (the subscription endpoint asks the hub, TestSubscribeRemoteRoom).
	if res, err := e.b.Apply(t.Context(), fsm.CmdSubscribe, nil, "", &fsm.SubscribeBody{Client: f.alice.uri, Room: f.remote, Subscribe: true}); err != nil || res.Err() != nil {
		t.Fatalf("subscribe: %v %v", err, res)
	}
	hubMember := newMember(t, "mimi://b.example/u/bob/d/x")
	pol := proto.DefaultPolicy()
	g, err := mls.CreateGroup(suite(t), hubMember.signer, mls.CreateOptions{GroupOptions: groupOptions(), GroupID: []byte(f.remote),
		Extensions: mls.Extensions{pol.Extension()}, Credential: mls.BasicCredential([]byte(hubMember.uri)), Capabilities: caps, Lifetime: lifetime()})
	if err != nil {
		t.Fatal(err)
	}
	f.batch = g
	return f
}

// fanoutBody encodes n application messages of the remote room.
func (f *fedFixture) fanoutBody(n int) []byte {
	f.t.Helper()
	var b proto.FanoutBatch
	for i := range n {
		m, err := f.batch.Encrypt([]byte(fmt.Sprint("m", i)), nil)
		if err != nil {
			f.t.Fatal(err)
		}
		b = append(b, proto.FanoutMessage{Message: m, Timestamp: t0})
	}
	return wire.MustMarshal(b)
}

func TestFederationEndpoints(t *testing.T) {
	f := newFedFixture(t)
	alice, bob := f.alice.user, proto.URI("mimi://b.example/u/bob")
	consent := func(op proto.ConsentOperation, requester, target proto.URI) []byte {
		return wire.MustMarshal(&proto.ConsentEntry{Operation: op, Requester: requester, Target: target})
	}
	claim := func(requester proto.URI, targets ...proto.URI) []byte {
		return wire.MustMarshal(&proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: requester, TargetUsers: targets})
	}
	otherProtocol := claim(bob, alice)
	otherProtocol[0] = 9
	big := bytes.Repeat([]byte{0}, 5000)
	huge := bytes.Repeat([]byte{0}, 70<<10)
	ident := wire.MustMarshal(&proto.IdentifierRequest{Type: proto.SearchHandle, Value: "alice"})
	fanout := f.fanoutBody(1)

	cases := []struct {
		name         string
		method, path string
		peer         string
		body         []byte
		hdr          []string
		status       int
		contains     string
	}{
		// Authentication.
		{"no peer", "POST", "/requestConsent/a.example", "", consent(proto.ConsentRequest, bob, alice), nil, 401, "unauthenticated"},
		{"a peer claiming our own domain", "POST", "/requestConsent/a.example", "a.example", consent(proto.ConsentRequest, bob, alice), nil, 403, "own domain"},
		{"a peer that is no domain", "POST", "/requestConsent/a.example", "B_example", consent(proto.ConsentRequest, bob, alice), nil, 401, "not a provider domain"},
		// requestConsent.
		{"requestConsent", "POST", "/requestConsent/a.example", "b.example", consent(proto.ConsentRequest, bob, alice), nil, 204, ""},
		{"requestConsent for another domain", "POST", "/requestConsent/c.example", "b.example", consent(proto.ConsentRequest, bob, alice), nil, 404, "not c.example"},
		{"requestConsent with a bad path domain", "POST", "/requestConsent/C_example", "b.example", consent(proto.ConsentRequest, bob, alice), nil, 400, "not a provider domain"},
		{"requestConsent from the wrong peer", "POST", "/requestConsent/a.example", "c.example", consent(proto.ConsentRequest, bob, alice), nil, 403, "may not send"},
		{"requestConsent carrying a grant", "POST", "/requestConsent/a.example", "b.example", consent(proto.ConsentGrant, bob, alice), nil, 400, "use updateConsent"},
		{"requestConsent for a remote target", "POST", "/requestConsent/a.example", "b.example", consent(proto.ConsentRequest, bob, "mimi://c.example/u/x"), nil, 400, "not a user of a.example"},
		{"requestConsent for an unknown user", "POST", "/requestConsent/a.example", "b.example", consent(proto.ConsentRequest, bob, "mimi://a.example/u/nobody"), nil, 404, "nobody"},
		{"requestConsent garbage", "POST", "/requestConsent/a.example", "b.example", []byte{7, 7}, nil, 400, "ConsentEntry"},
		{"requestConsent oversized", "POST", "/requestConsent/a.example", "b.example", big, nil, 413, "4096"},
		// updateConsent.
		{"updateConsent for another domain", "POST", "/updateConsent/c.example", "b.example", consent(proto.ConsentGrant, alice, bob), nil, 404, "not c.example"},
		{"updateConsent carrying a request", "POST", "/updateConsent/a.example", "b.example", consent(proto.ConsentRequest, alice, bob), nil, 400, "use requestConsent"},
		{"updateConsent from the wrong peer", "POST", "/updateConsent/a.example", "c.example", consent(proto.ConsentRevoke, alice, bob), nil, 403, "may not decide"},
		{"updateConsent for a remote requester", "POST", "/updateConsent/a.example", "b.example", consent(proto.ConsentRevoke, "mimi://c.example/u/x", bob), nil, 400, "not a user of a.example"},
		{"updateConsent revoke", "POST", "/updateConsent/a.example", "b.example", consent(proto.ConsentRevoke, alice, bob), nil, 204, ""},
		// claimKeymaterial on local users.
		{"claim from the wrong peer", "POST", "/claimKeymaterial/a.example", "b.example", claim("mimi://c.example/u/x", alice), nil, 403, "on behalf"},
		{"claim with targets elsewhere", "POST", "/claimKeymaterial/a.example", "b.example", claim(bob, "mimi://c.example/u/x"), nil, 400, "not a user of a.example"},
		{"claim of the reserved protocol", "POST", "/claimKeymaterial/a.example", "b.example", append([]byte{0}, claim(bob, alice)[1:]...), nil, 400, "reserved"},
		{"claim with no body", "POST", "/claimKeymaterial/a.example", "b.example", nil, nil, 400, "empty body"},
		{"claim garbage", "POST", "/claimKeymaterial/a.example", "b.example", []byte{1, 9}, nil, 400, "KeyMaterialRequest"},
		{"claim of another protocol, truncated", "POST", "/claimKeymaterial/a.example", "b.example", []byte{9, 5}, nil, 400, "protocol 9"},
		{"claim of another protocol from the wrong peer", "POST", "/claimKeymaterial/a.example", "c.example", otherProtocol, nil, 403, "on behalf"},
		{"claim oversized", "POST", "/claimKeymaterial/a.example", "b.example", big, nil, 413, ""},
		// Room requests.
		{"updateRoom garbage", "POST", "/updateRoom/r", "b.example", []byte{0, 1, 0, 1}, nil, 400, "updateRoom body"},
		{"updateRoom for a room not hosted here", "POST", "/updateRoom/nope", "b.example", f.updateBody(), nil, 404, "not hosted"},
		{"updateRoom with a bad room id", "POST", "/updateRoom/a%20b", "b.example", f.updateBody(), nil, 400, "not a room id"},
		{"updateRoom oversized", "POST", "/updateRoom/r", "b.example", huge, nil, 413, ""},
		{"provisionalMessage garbage", "POST", "/provisionalMessage/r", "b.example", []byte{0, 1}, nil, 400, "provisionalMessage body"},
		{"provisionalMessage for a room not hosted here", "POST", "/provisionalMessage/nope", "b.example", fanout[:len(fanout)-8], nil, 404, "not hosted"},
		{"reportAbuse garbage", "POST", "/reportAbuse/r", "b.example", []byte{1}, nil, 400, "reportAbuse body"},
		{"reportAbuse oversized", "POST", "/reportAbuse/r", "b.example", big, nil, 413, ""},
		// Fanout.
		{"fanout with a bad Mimi-Sequence", "POST", "/fanout/x", "b.example", fanout, []string{"Mimi-Sequence", "one"}, 400, "not a decimal"},
		{"fanout with Mimi-Sequence 0", "POST", "/fanout/x", "b.example", fanout, []string{"Mimi-Sequence", "0"}, 400, "not a decimal"},
		{"fanout with a bad Mimi-Exclude", "POST", "/fanout/x", "b.example", fanout, []string{"Mimi-Sequence", "1", "Mimi-Exclude", "mimi://a.example/u/alice"}, 400, "not a client URI"},
		{"fanout garbage", "POST", "/fanout/x", "b.example", []byte{0, 1, 0, 2}, []string{"Mimi-Sequence", "1"}, 400, "fanout body"},
		{"fanout empty", "POST", "/fanout/x", "b.example", nil, []string{"Mimi-Sequence", "1"}, 400, "fanout body"},
		{"fanout oversized", "POST", "/fanout/x", "b.example", huge, []string{"Mimi-Sequence", "1"}, 413, ""},
		{"fanout for a room nobody here follows", "POST", "/fanout/other", "b.example", fanout, []string{"Mimi-Sequence", "1"}, 204, ""},
		// Group info and identifiers.
		{"claimGroupInfo garbage", "POST", "/claimGroupInfo/r", "b.example", []byte{1, 2, 3}, nil, 400, "GroupInfoRequest"},
		{"identifierQuery", "POST", "/identifierQuery/a.example", "b.example", ident, nil, 200, ""},
		{"identifierQuery for another domain", "POST", "/identifierQuery/c.example", "b.example", ident, nil, 404, "not c.example"},
		{"identifierQuery garbage", "POST", "/identifierQuery/a.example", "b.example", []byte{99}, nil, 400, "search identifier type"},
		{"identifierQuery by GET", "GET", "/identifierQuery/a.example", "b.example", ident, nil, 405, "method"},
		// Routing.
		{"an unknown endpoint", "POST", "/nope", "b.example", nil, nil, 404, "no such MIMI endpoint"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := f.fedDo(c.method, c.path, c.peer, c.body, c.hdr...)
			if c.status >= 400 {
				wantTextError(t, rec, c.status, c.contains, c.name)
			} else {
				want(t, rec, c.status, c.name)
			}
		})
	}

	// A claim on a local user from a peer gets a KeyPackage, once.
	rec := f.fedDo(http.MethodPost, "/claimKeymaterial/a.example", "b.example", claim(bob, alice))
	want(t, rec, http.StatusOK, "claim")
	var km proto.KeyMaterialResponse
	if decodeMIMI(t, rec, &km); len(km.Users) != 1 || km.Users[0].Status != proto.UserSuccess ||
		!bytes.Equal(wire.MustMarshal(km.Users[0].Clients[0].KeyPackage), wire.MustMarshal(f.kp)) {
		t.Fatalf("claim: %+v", km)
	}
	rec = f.fedDo(http.MethodPost, "/claimKeymaterial/a.example", "b.example", claim(bob, alice))
	if decodeMIMI(t, rec, &km); km.Users[0].Status != proto.UserNoCompatibleMaterial || km.Users[0].Clients[0].Status != proto.ClientKeyMaterialExhausted {
		t.Fatalf("second claim: %+v", km)
	}
	// With an Idempotency-Key, a peer's retried claim gets the same
	// KeyPackage and spends one.
	kp := wire.MustMarshal(mls.NewKeyPackageMessage(f.upload(f.alice).KeyPackage))
	f.upload(f.alice)
	for range 2 {
		rec = f.fedDo(http.MethodPost, "/claimKeymaterial/a.example", "b.example", claim(bob, alice), "Idempotency-Key", "claim-7")
		if decodeMIMI(t, rec, &km); !bytes.Equal(wire.MustMarshal(km.Users[0].Clients[0].KeyPackage), kp) {
			t.Fatalf("retried claim: %+v", km)
		}
	}
	rec = f.fedDo(http.MethodPost, "/claimKeymaterial/a.example", "c.example", claim("mimi://c.example/u/cy", alice), "Idempotency-Key", "claim-7")
	if decodeMIMI(t, rec, &km); km.Users[0].Status != proto.UserSuccess || bytes.Equal(wire.MustMarshal(km.Users[0].Clients[0].KeyPackage), kp) {
		t.Fatalf("another peer's claim with the same key: %+v", km)
	}
	// Another protocol: incompatibleProtocol for every target.
	rec = f.fedDo(http.MethodPost, "/claimKeymaterial/a.example", "b.example", otherProtocol)
	want(t, rec, http.StatusOK, "other protocol")
	if b := rec.Body.Bytes(); b[0] != 9 || wire.Unmarshal(append([]byte{1}, b[1:]...), &km) != nil || km.Users[0].Status != proto.UserIncompatibleProtocol {
		t.Fatalf("other protocol: %x", b)
	}

	// The identifier query found Alice; the consent request reached her.
	rec = f.fedDo(http.MethodPost, "/identifierQuery/a.example", "b.example", ident)
	var ir proto.IdentifierResponse
	if decodeMIMI(t, rec, &ir); ir.Code != proto.QuerySuccess || !slices.Equal(ir.URIs, []proto.URI{alice}) {
		t.Fatalf("identifier query: %+v", ir)
	}
	if st := f.stream(f.alice, 0); !slices.Equal(kindsOf(st.Items), []string{"consent"}) {
		t.Fatalf("Alice's stream %+v", st)
	}
}

// updateBody is a well-formed updateRoom body (an empty commit of the
// remote room's group).
func (f *fedFixture) updateBody() []byte {
	f.t.Helper()
	b, err := f.batch.Commit(mls.CommitOptions{GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
	if err != nil {
		f.t.Fatal(err)
	}
	f.batch.DiscardPendingCommit()
	return wire.MustMarshal(&proto.UpdateRoomRequest{Message: b.Commit, GroupInfo: b.GroupInfo, RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeByReference}})
}

func TestFanout(t *testing.T) {
	f := newFedFixture(t)
	seq := func(n int) []string { return []string{"Mimi-Sequence", fmt.Sprint(n)} }
	// Messages 1-2, excluding Alice: she gets nothing.
	want(t, f.fedDo(http.MethodPost, "/fanout/x", "b.example", f.fanoutBody(2), append(seq(1), "Mimi-Exclude", "mimi://a.example/u/x/d/y, "+string(f.alice.uri))...), http.StatusNoContent, "excluded fanout")
	if st := f.stream(f.alice, 0); len(st.Items) != 0 {
		t.Fatalf("an excluded client got %+v", st)
	}
	// Messages 3-4, then again 4-5: Alice gets 3, 4, 5 once each, in order.
	want(t, f.fedDo(http.MethodPost, "/fanout/x", "b.example", f.fanoutBody(2), seq(3)...), http.StatusNoContent, "fanout")
	want(t, f.fedDo(http.MethodPost, "/fanout/x", "b.example", f.fanoutBody(2), seq(4)...), http.StatusNoContent, "overlapping fanout")
	st := f.stream(f.alice, 0)
	var hub []uint64
	for _, it := range st.Items {
		hub = append(hub, it.HubSeq)
		if it.Room != string(f.remote) || it.Kind != "message" {
			t.Fatalf("item %+v", it)
		}
	}
	if !slices.Equal(hub, []uint64{3, 4, 5}) {
		t.Fatalf("hub sequence %v, want 3 4 5", hub)
	}
	// Fanout for b's room can only come from b.
	want(t, f.fedDo(http.MethodPost, "/fanout/x", "c.example", f.fanoutBody(1), seq(6)...), http.StatusNoContent, "fanout of c's own room")
	if st := f.stream(f.alice, st.Last); len(st.Items) != 0 {
		t.Fatalf("c.example's fanout reached a follower of b's room: %+v", st)
	}
}

// TestFanoutWithoutSequence is fanout from a hub that implements only the
// seed: no Mimi-Sequence. Messages are taken in arrival order and a resent
// request is recognized by its messages' digests.
func TestFanoutWithoutSequence(t *testing.T) {
	f := newFedFixture(t)
	first, second := f.fanoutBody(2), f.fanoutBody(1)
	want(t, f.fedDo(http.MethodPost, "/fanout/x", "b.example", first), http.StatusNoContent, "seed fanout")
	want(t, f.fedDo(http.MethodPost, "/fanout/x", "b.example", first), http.StatusNoContent, "the same request again")
	want(t, f.fedDo(http.MethodPost, "/fanout/x", "b.example", second), http.StatusNoContent, "the next request")
	var batch proto.FanoutBatch
	if err := wire.Unmarshal(first, &batch); err != nil {
		t.Fatal(err)
	}
	st := f.stream(f.alice, 0)
	var hub []uint64
	for _, it := range st.Items {
		hub = append(hub, it.HubSeq)
	}
	if !slices.Equal(hub, []uint64{1, 2, 3}) || !bytes.Equal(st.Items[0].Data, wire.MustMarshal(batch[0].Message)) {
		t.Fatalf("stream %v, want three messages in arrival order", hub)
	}
}

func TestFederationBackendFailures(t *testing.T) {
	f := newFedFixture(t)
	body := wire.MustMarshal(&proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: "mimi://b.example/u/bob", Target: f.alice.user})
	gir := wire.MustMarshal(&proto.GroupInfoRequest{SignatureKey: []byte{1}, Credential: mls.BasicCredential([]byte("mimi://b.example/u/bob/d/x"))})
	for _, c := range []struct {
		name     string
		err      error
		status   int
		contains string
	}{
		{"unavailable", fmt.Errorf("apply: %w", unavailable{}), http.StatusServiceUnavailable, "no leader"},
		{"deadline", fmt.Errorf("apply: %w", context.DeadlineExceeded), http.StatusGatewayTimeout, "timed out"},
		{"internal", errors.New("disk on fire"), http.StatusInternalServerError, "internal error"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.b.setErr(c.err)
			defer f.b.setErr(nil)
			for _, rec := range []*httptest.ResponseRecorder{
				f.fedDo(http.MethodPost, "/requestConsent/a.example", "b.example", body),
				f.fedDo(http.MethodPost, "/claimGroupInfo/r", "b.example", gir),
			} {
				wantTextError(t, rec, c.status, c.contains, c.name)
				if got := rec.Header().Get("Retry-After"); (c.status == http.StatusServiceUnavailable) != (got == "1") {
					t.Fatalf("Retry-After %q with %d", got, c.status)
				}
				if strings.Contains(rec.Body.String(), "disk") {
					t.Fatal("an internal error leaked its cause")
				}
			}
		})
	}
}

func TestDownloadFile(t *testing.T) {
	assets := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cat.png":
			w.Header().Set("Content-Type", "image/png")
			_, _ = io.WriteString(w, "PNG-BYTES")
		case "/big":
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write(make([]byte, 1000))
		case "/chunked":
			for range 10 {
				_, _ = w.Write(make([]byte, 50))
				w.(http.Flusher).Flush()
			}
		case "/away":
			http.Redirect(w, r, "https://evil.example/x", http.StatusFound)
		case "/fail":
			http.Error(w, "boom", http.StatusInternalServerError)
		default:
			http.NotFound(w, r)
		}
	}))
	defer assets.Close()
	u, _ := url.Parse(assets.URL)
	e := newEnv(t, "a.example", func(c *Config) {
		c.AssetHosts = []string{u.Host}
		c.AssetClient = assets.Client()
		c.MaxDownload = 100
	})
	get := func(target string) *httptest.ResponseRecorder {
		return e.fedDo(http.MethodGet, "/downloadFile/"+url.PathEscape(target), "b.example", nil)
	}
	rec := get(assets.URL + "/cat.png")
	want(t, rec, http.StatusOK, "download")
	if rec.Body.String() != "PNG-BYTES" || rec.Header().Get("Content-Type") != "image/png" {
		t.Fatalf("downloaded %q (%s)", rec.Body.String(), rec.Header().Get("Content-Type"))
	}
	// Slashes left unescaped work too.
	want(t, e.fedDo(http.MethodGet, "/downloadFile/"+strings.Replace(url.PathEscape(assets.URL+"/cat.png"), "%2F", "/", 1), "b.example", nil), http.StatusOK, "half-escaped")
	for _, c := range []struct {
		name, url string
		status    int
		contains  string
	}{
		{"a host not allowed", "https://evil.example/cat.png", 403, "not one"},
		{"plain http", "http://" + u.Host + "/cat.png", 403, "not one"},
		{"credentials in the URL", "https://user:pw@" + u.Host + "/cat.png", 403, "not one"},
		{"a missing asset", assets.URL + "/nope", 404, "no such asset"},
		{"a failing host", assets.URL + "/fail", 502, "500"},
		{"an asset over the limit", assets.URL + "/big", 502, "1000 bytes"},
		{"a redirect to another host", assets.URL + "/away", 502, "not an allowed asset host"},
	} {
		t.Run(c.name, func(t *testing.T) { wantTextError(t, get(c.url), c.status, c.contains, c.name) })
	}
	wantTextError(t, e.fedDo(http.MethodGet, "/downloadFile/"+url.PathEscape(assets.URL+"/cat.png"), "", nil), 401, "unauthenticated", "anonymous download")

	// A streamed asset that turns out too large is cut off, not
	// truncated silently.
	srv := httptest.NewServer(e.fed)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/downloadFile/"+url.PathEscape(assets.URL+"/chunked"), nil)
	req.Header.Set(testPeerHeader, "b.example")
	resp, err := srv.Client().Do(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("an oversized streamed asset was delivered without error")
	}
}

func TestRouteNamesAndMiddleware(t *testing.T) {
	names := make(chan string, 10)
	mw := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			names <- RouteName(r)
			next.ServeHTTP(w, r)
		})
	}
	e := newEnv(t, "a.example", func(c *Config) { c.Middleware = []func(http.Handler) http.Handler{mw} })
	e.fedDo(http.MethodGet, "/.well-known/mimi-protocol-directory", "", nil)
	e.fedDo(http.MethodPost, "/updateRoom/x", "b.example", nil)
	e.apiDo(http.MethodGet, "/v1/whoami", "", nil)
	got := []string{<-names, <-names, <-names}
	if !slices.Equal(got, []string{RouteDirectory, RouteUpdateRoom, RouteWhoami}) {
		t.Fatalf("route names %v", got)
	}
	// The exported constructor serves the same API.
	wantJSONError(t, func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		NewClientAPI(e.cfg, e.b, e.peers).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/whoami", nil))
		return rec
	}(), http.StatusUnauthorized, kindNotAllowed, "whoami without token")
	// Unmatched requests answer in each API's error format.
	wantJSONError(t, e.apiDo(http.MethodGet, "/v2/nothing", "", nil), http.StatusNotFound, kindNotFound, "unknown client path")
	wantJSONError(t, e.apiDo(http.MethodDelete, "/v1/whoami", "", nil), http.StatusMethodNotAllowed, kindInvalid, "wrong method")
}
