package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

func TestTokenClient(t *testing.T) {
	uri := "mimi://a.example/u/alice/d/phone"
	enc := base64.RawURLEncoding.EncodeToString([]byte(uri))
	secret := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	for _, tc := range []struct {
		tok string
		ok  bool
	}{
		{"mimi1." + enc + "." + secret, true},
		{"mimi1." + base64.URLEncoding.EncodeToString([]byte(uri)) + "." + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)), true},
		{"mimi2." + enc + "." + secret, false},
		{"mimi1." + enc, false},
		{"mimi1." + enc + ".", false},
		{"mimi1." + base64.RawURLEncoding.EncodeToString([]byte("mimi://a.example/u/alice")) + "." + secret, false},
		{"mimi1.!!." + secret, false},
	} {
		c, err := TokenClient(tc.tok)
		if (err == nil) != tc.ok || (tc.ok && c != proto.URI(uri)) {
			t.Errorf("TokenClient(%q) = %q, %v", tc.tok, c, err)
		}
	}
}

func TestNewUserChecks(t *testing.T) {
	if _, err := NewUser(UserConfig{BaseURL: "http://localhost:8444"}); err == nil {
		t.Error("a plain-HTTP base URL was accepted without AllowHTTP")
	}
	if _, err := NewUser(UserConfig{BaseURL: "http://localhost:8444", AllowHTTP: true}); err != nil {
		t.Error(err)
	}
	if _, err := NewUser(UserConfig{BaseURL: "https://localhost:8444/?x=1"}); err == nil {
		t.Error("a base URL with a query was accepted")
	}
	u, _ := NewUser(UserConfig{BaseURL: "https://localhost:8444"})
	if _, err := u.WhoAmI(context.Background()); err == nil || !strings.Contains(err.Error(), "no token") {
		t.Errorf("a call without a token: %v", err)
	}
}

// waits records the waits between tries instead of sleeping.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.d = append(w.d, d)
	return ctx.Err()
}

func (w *waits) get() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.d)
}

func (f *fakeAPI) keysReceived() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.keys)
}

// TestUserRetries checks the retry policy: 502/503/504 and dropped
// connections are retried with the same Idempotency-Key, honoring
// Retry-After; other answers are not; and a retried write is applied once.
func TestUserRetries(t *testing.T) {
	f := newFakeAPI(t)
	ctx := context.Background()
	u := f.user(t, nil)
	w := &waits{}
	u.sleep = w.sleep
	if _, err := u.Register(ctx, "alice", "phone", nil); err != nil {
		t.Fatal(err)
	}

	// 503 with Retry-After, then a dropped connection, then success.
	f.addFault(fault{suffix: "/v1/stream/ack", status: 503, retryAfter: "2"})
	f.addFault(fault{suffix: "/v1/stream/ack", drop: true})
	before := len(f.keysReceived())
	if err := u.Ack(ctx, 0); err != nil {
		t.Fatal(err)
	}
	keys := f.keysReceived()[before:]
	if len(keys) != 3 || keys[0] != keys[1] || keys[1] != keys[2] || keys[0] == "" || len(keys[0]) > 64 {
		t.Fatalf("Idempotency-Keys of one write and its retries: %q", keys)
	}
	// net/http itself retries a request with an Idempotency-Key once on a
	// reused connection that closed, so the drop costs a backoff or not.
	if got := w.get(); len(got) < 1 || len(got) > 2 || got[0] != 2*time.Second || (len(got) == 2 && (got[1] <= 0 || got[1] > time.Millisecond)) {
		t.Fatalf("waits %v, want Retry-After's 2s then at most a backoff of at most 1ms", got)
	}
	// Two dropped connections: at least one reaches the retry loop.
	f.addFault(fault{suffix: "/v1/stream/ack", drop: true})
	f.addFault(fault{suffix: "/v1/stream/ack", drop: true})
	n := len(w.get())
	if err := u.Ack(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if len(w.get()) == n {
		t.Fatal("dropped connections were not retried by the client")
	}
	if k := f.keysReceived(); k[len(k)-1] == keys[0] {
		t.Fatal("a new write reused the previous write's key")
	}

	// 4xx, including 429, is never retried.
	for _, status := range []int{400, 409, 429} {
		f.addFault(fault{suffix: "/v1/stream/ack", status: status, retryAfter: "1"})
		before = len(f.keysReceived())
		err := u.Ack(ctx, 0)
		var se *StatusError
		if !errors.As(err, &se) || se.Status != status || se.Kind != KindUnavailable || se.Message != "injected fault" {
			t.Fatalf("status %d: %v", status, err)
		}
		if n := len(f.keysReceived()) - before; n != 1 {
			t.Fatalf("status %d was sent %d times", status, n)
		}
	}

	// Tries run out.
	for range 3 {
		f.addFault(fault{suffix: "/v1/stream/ack", status: 504})
	}
	before = len(f.keysReceived())
	if err := u.Ack(ctx, 0); !IsRetryable(err) || len(f.keysReceived())-before != 3 {
		t.Fatalf("after 3 tries: %v, %d sent", err, len(f.keysReceived())-before)
	}

	// A Retry-After beyond MaxRetryWait ends the retries.
	f.addFault(fault{suffix: "/v1/stream/ack", status: 503, retryAfter: "3600"})
	n = len(w.get())
	if err := u.Ack(ctx, 0); RetryAfter(err) != time.Hour {
		t.Fatalf("long Retry-After: %v", err)
	}
	if len(w.get()) != n {
		t.Fatal("slept for a Retry-After beyond MaxRetryWait")
	}

	// GETs are retried too, without a key.
	f.addFault(fault{suffix: "/v1/whoami", status: 503})
	if id, err := u.WhoAmI(ctx); err != nil || id.Client != proto.ClientURI("a.example", "alice", "phone") || id.Domain != "a.example" {
		t.Fatalf("whoami after a 503: %+v, %v", id, err)
	}

	// A write applied whose answer was lost (502) is retried with its key
	// and answered from the first application: the room is created once.
	fx := newMLSFixture(t)
	gi, err := fx.group.GroupInfo(mls.GroupInfoOptions{ExternalPub: true})
	if err != nil {
		t.Fatal(err)
	}
	f.addFault(fault{suffix: "/v1/rooms", status: 502, afterApply: true})
	got, err := u.CreateRoom(ctx, "clubhouse", gi, wire.MustMarshal(fx.group.Tree()))
	if err != nil || got != fx.room {
		t.Fatalf("create room after a lost answer: %s, %v", got, err)
	}
	// A deliberate new attempt (new key) meets the existing room.
	if _, err := u.CreateRoom(ctx, "clubhouse", gi, wire.MustMarshal(fx.group.Tree())); !IsKind(err, KindConflict) {
		t.Fatalf("creating the room twice: %v", err)
	}
	// The caller's key is used when given.
	f.addFault(fault{suffix: "/v1/stream/ack", status: 503})
	if err := u.Ack(WithIdempotencyKey(ctx, "my-key"), 0); err != nil {
		t.Fatal(err)
	}
	if k := f.keysReceived(); k[len(k)-1] != "my-key" || k[len(k)-2] != "my-key" {
		t.Fatalf("keys %q", k[len(k)-2:])
	}
	// A canceled context stops the retries.
	f.addFault(fault{suffix: "/v1/stream/ack", status: 503})
	cctx, cancel := context.WithCancel(ctx)
	u.sleep = func(ctx context.Context, d time.Duration) error { cancel(); return ctx.Err() }
	if err := u.Ack(cctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled while waiting: %v", err)
	}
}

// TestUserWire checks the client API's wire details against a handler that
// inspects them.
func TestUserWire(t *testing.T) {
	fx := newMLSFixture(t)
	var mu sync.Mutex
	var got *http.Request
	var body []byte
	answer := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"code":1,"code_name":"wrongEpoch","description":"late"}`))
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Clone(context.Background())
		body, _ = io.ReadAll(r.Body)
		a := answer
		mu.Unlock()
		a(w)
	}))
	defer srv.Close()
	tok := "mimi1." + base64.RawURLEncoding.EncodeToString([]byte("mimi://a.example/u/alice/d/phone")) + ".c2VjcmV0"
	u, err := NewUser(UserConfig{BaseURL: srv.URL + "/", HTTPClient: srv.Client(), Token: tok, MaxResponse: 200})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	resp, err := u.Commit(ctx, fx.room, &CommitBundle{Commit: fx.commit.Message, GroupInfo: fx.commit.GroupInfo})
	if err != nil || resp.Code != proto.UpdateWrongEpoch || resp.Description != "late" {
		t.Fatalf("commit: %+v, %v (a refusal is an answer, not an error)", resp, err)
	}
	if got.Method != "POST" || got.URL.Path != "/v1/rooms/a.example/clubhouse/commit" {
		t.Fatalf("commit sent to %s %s", got.Method, got.URL.Path)
	}
	if got.Header.Get("Authorization") != "Bearer "+tok || got.Header.Get("Content-Type") != "application/mimi" ||
		got.Header.Get("Accept") != "application/json" || got.Header.Get(HeaderIdempotencyKey) == "" {
		t.Fatalf("headers %v", got.Header)
	}
	// The commit travels as its UpdateRoomRequest, the tree by reference.
	wantBody := wire.MustMarshal(&proto.UpdateRoomRequest{Message: fx.commit.Message, GroupInfo: fx.commit.GroupInfo,
		RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeByReference}})
	if !bytes.Equal(body, wantBody) {
		t.Fatalf("commit body of %d bytes, want the UpdateRoomRequest's %d", len(body), len(wantBody))
	}
	tree := wire.MustMarshal(fx.group.Tree())
	if _, err := u.Commit(ctx, fx.room, &CommitBundle{Commit: fx.commit.Message, GroupInfo: fx.commit.GroupInfo, RatchetTree: tree}); err != nil {
		t.Fatal(err)
	}
	var sent proto.UpdateRoomRequest
	if err := wire.Unmarshal(body, &sent); err != nil || sent.RatchetTree.Representation != proto.TreeFull || !bytes.Equal(sent.RatchetTree.Tree, tree) {
		t.Fatalf("commit body with a tree: %v", err)
	}

	// A message travels as the MLSMessage itself; the answer's
	// Mimi-Index becomes the client's read-your-writes token.
	mu.Lock()
	answer = func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(HeaderIndex, "42")
		w.Write([]byte(`{"code":0,"code_name":"success"}`))
	}
	mu.Unlock()
	if _, err := u.SendMessage(ctx, fx.room, fx.app); err != nil || got.Header.Get("Content-Type") != ContentTypeMIMI || !bytes.Equal(body, wire.MustMarshal(fx.app)) {
		t.Fatalf("message: %v, %s, %d bytes", err, got.Header.Get("Content-Type"), len(body))
	}
	if u.Index() != 42 {
		t.Fatalf("read-your-writes token %d after an answer at index 42", u.Index())
	}

	// The Welcome's tree is fetched as application/mimi, no older than
	// the token.
	mu.Lock()
	answer = func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/mimi")
		w.Header().Set(HeaderIndex, "7") // a lower index never lowers the token
		w.Write(tree)
	}
	mu.Unlock()
	u.cfg.MaxResponse = DefaultMaxResponse
	if got, err := u.WelcomeTree(ctx, fx.room, []byte{0xfb, 0xff}); err != nil || !bytes.Equal(got, tree) {
		t.Fatalf("welcome tree: %v", err)
	}
	if got.Method != "GET" || got.URL.Path != "/v1/rooms/a.example/clubhouse/tree" || got.URL.Query().Get("keypackage") != "-_8" || got.Header.Get("Accept") != "application/mimi" {
		t.Fatalf("welcome tree request %s %s %v", got.Method, got.URL, got.Header)
	}
	if got.Header.Get(HeaderMinIndex) != "42" || u.Index() != 42 {
		t.Fatalf("a read carried Mimi-Min-Index %q; token now %d", got.Header.Get(HeaderMinIndex), u.Index())
	}

	// Stream query and item decoding.
	entry := &proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: proto.UserURI("b.example", "bob"), Target: proto.UserURI("a.example", "alice")}
	items := []streamItemJSON{
		{Seq: 5, Kind: "message", Room: string(fx.room), HubSeq: 9, At: 1700000000123, Data: wire.MustMarshal(fx.app)},
		{Seq: 6, Kind: "consent", At: 1700000000124, Data: wire.MustMarshal(entry)},
		{Seq: 7, Kind: "room_terminal", Room: string(fx.room), Data: []byte{}},
	}
	mu.Lock()
	answer = func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		json.NewEncoder(w).Encode(map[string]any{"items": items, "gap": true, "last": 7})
	}
	mu.Unlock()
	// The fixture's app message is larger than MaxResponse: raise it.
	u.cfg.MaxResponse = DefaultMaxResponse
	page, err := u.Stream(ctx, StreamOptions{After: 4, Wait: 1500 * time.Millisecond, Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if q := got.URL.Query(); got.URL.Path != "/v1/stream" || q.Get("after") != "4" || q.Get("wait") != "2" || q.Get("limit") != "3" || got.Header.Get(HeaderIdempotencyKey) != "" {
		t.Fatalf("stream request %s", got.URL)
	}
	if !page.Gap || page.Last != 7 || len(page.Items) != 3 {
		t.Fatalf("page %+v", page)
	}
	it := page.Items[0]
	if it.Kind != ItemMessage || it.Room != fx.room || it.HubSeq != 9 || it.At.UnixMilli() != 1700000000123 {
		t.Fatalf("item %+v", it)
	}
	if m, err := it.MLSMessage(); err != nil || m.WireFormat != mls.WirePrivateMessage {
		t.Fatalf("item message: %v", err)
	}
	if _, err := it.ConsentEntry(); err == nil {
		t.Fatal("a message item decoded as a consent entry")
	}
	if e, err := page.Items[1].ConsentEntry(); err != nil || e.Requester != entry.Requester || e.Room != nil {
		t.Fatalf("consent item: %+v, %v", e, err)
	}
	if page.Items[2].Kind != "room_terminal" {
		t.Fatal("an unknown kind was not kept")
	}
	if _, err := u.Stream(ctx, StreamOptions{After: 5}); err == nil {
		t.Fatal("items at or before After were accepted")
	}
	if _, err := u.Stream(ctx, StreamOptions{Wait: 5 * time.Minute}); err != nil || got.URL.Query().Get("wait") != "60" {
		t.Fatalf("a long wait is capped at 60s: %s %v", got.URL, err)
	}

	// Error bodies.
	mu.Lock()
	answer = func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"no leader","kind":"unavailable"}`))
	}
	mu.Unlock()
	u.cfg.Tries = 1
	_, err = u.Room(ctx, fx.room)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 503 || se.Kind != KindUnavailable || se.Message != "no leader" || se.RetryAfter != 3*time.Second {
		t.Fatalf("error answer: %v", err)
	}
	if !strings.Contains(err.Error(), "room mimi://a.example/r/clubhouse") {
		t.Errorf("the error lacks context: %v", err)
	}

	// Size limit.
	u.cfg.MaxResponse = 100
	mu.Lock()
	answer = func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.(http.Flusher).Flush()
		w.Write([]byte(`{"client":"` + strings.Repeat("x", 200) + `"}`))
	}
	mu.Unlock()
	if _, err := u.WhoAmI(ctx); !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("a large answer: %v", err)
	}
	// A 2xx answer that is not JSON is an error.
	mu.Lock()
	answer = func(w http.ResponseWriter) { w.Header().Set("Content-Type", "text/plain"); w.Write([]byte("ok")) }
	mu.Unlock()
	if _, err := u.WhoAmI(ctx); err == nil || !strings.Contains(err.Error(), "Content-Type") {
		t.Fatalf("a text answer: %v", err)
	}
}

// TestUserAPI runs the client API's calls against the fake server.
func TestUserAPI(t *testing.T) {
	f := newFakeAPI(t)
	ctx := context.Background()
	alice, bob := f.user(t, nil), f.user(t, nil)
	reg, err := alice.Register(ctx, "alice", "phone", []proto.ProfileField{{Source: proto.FieldVCardField, Name: "FN", Value: []byte("Alice")}})
	if err != nil || reg.Client != proto.ClientURI("a.example", "alice", "phone") || reg.User != proto.UserURI("a.example", "alice") || alice.Token() != reg.Token {
		t.Fatalf("register: %+v, %v", reg, err)
	}
	if _, err := bob.Register(ctx, "bob", "laptop", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.user(t, nil).Register(ctx, "bob", "laptop", nil); !IsKind(err, KindConflict) {
		t.Fatalf("registering twice: %v", err)
	}

	// KeyPackages.
	s, _ := DefaultSuite.Suite()
	signer, _ := s.GenerateSigningKey()
	now := uint64(time.Now().Unix())
	var kps []*mls.KeyPackage
	for i := range 3 {
		b, err := mls.NewKeyPackage(s, signer, mls.KeyPackageOptions{Credential: mls.BasicCredential([]byte("mimi://a.example/u/bob/d/laptop")),
			Capabilities: Capabilities(), Lifetime: mls.Lifetime{NotBefore: now - 60, NotAfter: now + 3600}, LastResort: i == 2})
		if err != nil {
			t.Fatal(err)
		}
		kps = append(kps, b.KeyPackage)
	}
	if err := bob.UploadKeyPackages(ctx, kps); err != nil {
		t.Fatal(err)
	}
	cnt, err := bob.KeyPackageCount(ctx)
	if err != nil || cnt.Count != 3 || !slices.Equal(cnt.LastResortSuites, []mls.CipherSuite{DefaultSuite}) {
		t.Fatalf("count: %+v, %v", cnt, err)
	}
	claim, err := alice.ClaimKeyMaterial(ctx, ClaimRequest{Users: []proto.URI{proto.UserURI("a.example", "bob"), proto.UserURI("a.example", "nobody")}, CipherSuites: []mls.CipherSuite{DefaultSuite}})
	if err != nil {
		t.Fatal(err)
	}
	if len(claim.Users) != 2 || claim.Users[0].Status != proto.UserSuccess || claim.Users[1].Status != proto.UserUnknown ||
		len(claim.Users[0].Clients) != 1 || claim.Users[0].Clients[0].KeyPackage.KeyPackage == nil ||
		!bytes.Equal(wire.MustMarshal(claim.Users[0].Clients[0].KeyPackage.KeyPackage), wire.MustMarshal(kps[0])) {
		t.Fatalf("claim: %+v", claim)
	}

	// Consent.
	rm := proto.RoomURI("a.example", "clubhouse")
	req := &proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: proto.UserURI("a.example", "alice"), Target: proto.UserURI("a.example", "bob"), Room: &rm}
	if err := alice.Consent(ctx, req); err != nil {
		t.Fatal(err)
	}
	grant := &proto.ConsentEntry{Operation: proto.ConsentGrant, Requester: req.Requester, Target: req.Target, KeyPackages: []*mls.Message{mls.NewKeyPackageMessage(kps[1])}}
	if err := bob.Consent(ctx, grant); err != nil {
		t.Fatal(err)
	}
	if err := alice.Consent(ctx, grant); !IsKind(err, KindNotAllowed) {
		t.Fatalf("granting for another user: %v", err)
	}
	if err := alice.Consent(ctx, &proto.ConsentEntry{Operation: proto.ConsentRequest, KeyPackages: grant.KeyPackages}); err == nil {
		t.Fatal("a request with KeyPackages was sent")
	}
	lists, err := bob.ConsentList(ctx)
	if err != nil || len(lists.Pending) != 1 || *lists.Pending[0].Room != rm || len(lists.Given) != 1 || len(lists.Given[0].KeyPackages) != 1 {
		t.Fatalf("bob's consent lists: %+v, %v", lists, err)
	}
	lists, err = alice.ConsentList(ctx)
	if err != nil || len(lists.Received) != 1 || lists.Received[0].Operation != proto.ConsentGrant {
		t.Fatalf("alice's consent lists: %+v, %v", lists, err)
	}

	// The stream carries consent items.
	page, err := bob.Stream(ctx, StreamOptions{})
	if err != nil || len(page.Items) != 1 || page.Items[0].Kind != ItemConsent || page.Items[0].Room != rm {
		t.Fatalf("bob's stream: %+v, %v", page, err)
	}
	if e, err := page.Items[0].ConsentEntry(); err != nil || e.Operation != proto.ConsentRequest {
		t.Fatalf("consent item: %+v, %v", e, err)
	}
	if err := bob.Ack(ctx, page.Items[0].Seq); err != nil {
		t.Fatal(err)
	}
	if page, err := bob.Stream(ctx, StreamOptions{After: 0}); err != nil || len(page.Items) != 0 || page.Last != 1 {
		t.Fatalf("after ack: %+v, %v", page, err)
	}
	// A long poll returns when an item arrives.
	done := make(chan *StreamPage)
	go func() {
		p, err := alice.Stream(ctx, StreamOptions{After: 1, Wait: 30 * time.Second})
		if err != nil {
			t.Error(err)
		}
		done <- p
	}()
	time.Sleep(50 * time.Millisecond)
	if err := bob.Consent(ctx, grant); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-done:
		if p == nil || len(p.Items) != 1 {
			t.Fatalf("long poll: %+v", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll did not return")
	}

	// Identifiers.
	res, err := bob.Identifiers(ctx, "a.example", &proto.IdentifierRequest{Type: proto.SearchHandle, Value: "@alice"})
	if err != nil || res.Code != proto.QuerySuccess || len(res.URIs) != 1 || res.URIs[0] != proto.UserURI("a.example", "alice") ||
		len(res.Profiles) != 1 || res.Profiles[0].Fields[0].Source != proto.FieldVCardField || string(res.Profiles[0].Fields[0].Value) != "Alice Liddell" {
		t.Fatalf("identifiers: %+v, %v", res, err)
	}
	if res, err := bob.Identifiers(ctx, "a.example", &proto.IdentifierRequest{Type: proto.SearchVCardField, Field: "EMAIL", Value: "x"}); err != nil || res.Code != proto.QueryUnsupportedField {
		t.Fatalf("identifiers by vCard field: %+v, %v", res, err)
	}

	// Rooms that do not exist.
	if _, err := alice.Room(ctx, rm); !IsKind(err, KindNotFound) {
		t.Fatalf("missing room: %v", err)
	}
	if gi, err := alice.ClaimGroupInfo(ctx, rm, []byte{1}); err != nil || gi.Status != proto.GroupInfoNoSuchRoom {
		t.Fatalf("GroupInfo of a missing room: %+v, %v", gi, err)
	}
	if err := alice.Subscribe(ctx, proto.UserURI("a.example", "x")); err == nil {
		t.Fatal("subscribed to a user URI")
	}
}
