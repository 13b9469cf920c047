package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// mlsFixture holds real MLS objects to put in MIMI bodies.
type mlsFixture struct {
	room   proto.URI
	client proto.URI
	signer *mls.SigningKey
	group  *mls.Group
	commit *proto.UpdateRoomRequest
	app    *mls.Message
}

func newMLSFixture(t *testing.T) *mlsFixture {
	t.Helper()
	s, err := DefaultSuite.Suite()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := s.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	fx := &mlsFixture{room: proto.RoomURI("a.example", "clubhouse"), client: proto.ClientURI("a.example", "alice", "phone"), signer: signer}
	now := uint64(time.Now().Unix())
	policy := proto.DefaultPolicy()
	fx.group, err = mls.CreateGroup(s, signer, mls.CreateOptions{
		GroupOptions: mls.GroupOptions{Config: room.MLSConfig(0)}, GroupID: []byte(fx.room),
		Extensions: mls.Extensions{policy.Extension(), fakeHubSenders(t)}, Credential: mls.BasicCredential([]byte(fx.client)),
		Capabilities: Capabilities(), Lifetime: mls.Lifetime{NotBefore: now - 60, NotAfter: now + 86400},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := fx.group.Commit(mls.CommitOptions{ForcePath: true, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
	if err != nil {
		t.Fatal(err)
	}
	fx.commit = &proto.UpdateRoomRequest{Message: b.Commit, GroupInfo: b.GroupInfo, RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeByReference}}
	fx.group.MergePendingCommit()
	if fx.app, err = fx.group.Encrypt([]byte("hello"), room.SenderHint(fx.client)); err != nil {
		t.Fatal(err)
	}
	return fx
}

// recorded is a request a test peer received.
type recorded struct {
	method string
	path   string // as sent, escaped
	header http.Header
	body   []byte
	// client lists the DNS names of the client certificate.
	client []string
}

// testPeer is a MIMI provider answering over mutual TLS.
type testPeer struct {
	srv *httptest.Server

	mu         sync.Mutex
	reqs       []recorded
	dirFetches int
	// directory, when set, is served (templates get the server's URL for
	// "BASE"); otherwise the directory is 404.
	directory *proto.Directory
	// answer writes the answer to a non-directory request.
	answer func(w http.ResponseWriter, r *http.Request)
}

func newTestPeer(t *testing.T, ca *testCA) *testPeer {
	t.Helper()
	p := &testPeer{}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "127.0.0.1", "a.example")},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool,
	}
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	return p
}

func (p *testPeer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var names []string
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		names = r.TLS.PeerCertificates[0].DNSNames
	}
	p.mu.Lock()
	if r.URL.Path == DirectoryPath {
		p.dirFetches++
		dir := p.directory
		p.mu.Unlock()
		if dir == nil {
			http.NotFound(w, r)
			return
		}
		d := &proto.Directory{}
		for _, e := range dir.Entries {
			e.URI = strings.ReplaceAll(e.URI, "BASE", p.srv.URL)
			d.Entries = append(d.Entries, e)
		}
		w.Header().Set("Content-Type", ContentTypeDirectory)
		w.Write(wire.MustMarshal(d))
		return
	}
	p.reqs = append(p.reqs, recorded{method: r.Method, path: r.URL.EscapedPath(), header: r.Header.Clone(), body: body, client: names})
	answer := p.answer
	p.mu.Unlock()
	if answer == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	answer(w, r)
}

func (p *testPeer) last(t *testing.T) recorded {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.reqs) == 0 {
		t.Fatal("the peer received no request")
	}
	return p.reqs[len(p.reqs)-1]
}

func (p *testPeer) fetches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dirFetches
}

// mimiAnswer answers with the TLS encoding of v.
func mimiAnswer(v wire.Encoder) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ContentTypeMIMI)
		w.Write(wire.MustMarshal(v))
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestFederation returns b.example's client, which resolves every peer
// to srv.
func newTestFederation(t *testing.T, ca *testCA, srv *httptest.Server, mod func(*FederationConfig)) *Federation {
	t.Helper()
	cfg := FederationConfig{
		Domain:  "b.example",
		TLS:     &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "b.example")}, RootCAs: ca.pool},
		Resolve: func(string) (string, error) { return srv.URL, nil },
		Timeout: 10 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	f, err := NewFederation(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestFederationDefaultPaths sends every request to a peer without a
// directory and checks the seed's paths, the headers, the bodies and the
// answers.
func TestFederationDefaultPaths(t *testing.T) {
	ca := newTestCA(t)
	peer := newTestPeer(t, ca)
	f := newTestFederation(t, ca, peer.srv, nil)
	fx := newMLSFixture(t)
	ctx := context.Background()

	refused := &proto.UpdateRoomResponse{Code: proto.UpdateWrongEpoch, Description: "epoch 3 is taken"}
	kmReq := &proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: proto.UserURI("b.example", "bob"),
		TargetUsers: []proto.URI{proto.UserURI("c.example", "cathy")}, Room: fx.room, AcceptableSuites: []mls.CipherSuite{DefaultSuite}}
	kmResp := &proto.KeyMaterialResponse{Protocol: proto.MLS10, Users: []proto.UserKeyMaterial{{Status: proto.UserNoConsent, User: proto.UserURI("c.example", "cathy")}}}
	giReq := &proto.GroupInfoRequest{SignatureKey: fx.signer.PublicKey(), Credential: mls.BasicCredential([]byte(fx.client))}
	giResp := &proto.GroupInfoResponse{Status: proto.GroupInfoNotAuthorized}
	consent := &proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: proto.UserURI("b.example", "bob"), Target: proto.UserURI("a.example", "alice")}
	report := &proto.AbuseReport{ReportingUser: proto.UserURI("b.example", "bob"), AllegedAbuser: proto.UserURI("a.example", "alice"),
		GroupID: []byte(fx.room), Epoch: 1, Messages: []proto.AbusiveMessage{{Message: fx.app, Key: []byte("k"), Nonce: []byte("n")}}, Reason: proto.AbuseSpam}
	idReq := &proto.IdentifierRequest{Type: proto.SearchHandle, Value: "@alice"}
	idResp := &proto.IdentifierResponse{Code: proto.QuerySuccess, URIs: []proto.URI{proto.UserURI("a.example", "alice")}}
	batch := proto.FanoutBatch{{Message: fx.commit.Message, Timestamp: 1700000000000}, {Message: fx.app, Timestamp: 1700000000001}}

	tests := []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request)
		call   func() (wire.Encoder, error) // returns the decoded answer
		method string
		path   string
		body   wire.Encoder
		want   wire.Encoder
		header map[string]string
	}{
		{"updateRoom", mimiAnswer(refused), func() (wire.Encoder, error) { return f.UpdateRoom(ctx, fx.room, fx.commit) },
			"POST", "/updateRoom/clubhouse", fx.commit, refused, nil},
		{"provisionalMessage", mimiAnswer(&proto.UpdateRoomResponse{}), func() (wire.Encoder, error) { return f.ProvisionalMessage(ctx, fx.room, fx.app) },
			"POST", "/provisionalMessage/clubhouse", fx.app, &proto.UpdateRoomResponse{}, nil},
		{"claimKeyMaterial", mimiAnswer(kmResp), func() (wire.Encoder, error) { return f.ClaimKeyMaterial(ctx, "a.example", "c.example", kmReq) },
			"POST", "/claimKeymaterial/c.example", kmReq, kmResp, nil},
		{"claimGroupInfo", mimiAnswer(giResp), func() (wire.Encoder, error) { return f.ClaimGroupInfo(ctx, fx.room, giReq) },
			"POST", "/claimGroupInfo/clubhouse", giReq, giResp, nil},
		{"requestConsent", nil, func() (wire.Encoder, error) { return nil, f.RequestConsent(ctx, "a.example", consent) },
			"POST", "/requestConsent/a.example", consent, nil, nil},
		{"updateConsent", nil, func() (wire.Encoder, error) { return nil, f.UpdateConsent(ctx, "a.example", consent) },
			"POST", "/updateConsent/a.example", consent, nil, nil},
		{"reportAbuse", nil, func() (wire.Encoder, error) { return nil, f.ReportAbuse(ctx, fx.room, report) },
			"POST", "/reportAbuse/clubhouse", report, nil, nil},
		{"identifierQuery", mimiAnswer(idResp), func() (wire.Encoder, error) { return f.IdentifierQuery(ctx, "a.example", idReq) },
			"POST", "/identifierQuery/a.example", idReq, idResp, nil},
		{"fanout", nil, func() (wire.Encoder, error) {
			return nil, f.Fanout(ctx, "a.example", fx.room, 41, batch, []proto.URI{proto.ClientURI("a.example", "doug", "phone"), proto.ClientURI("a.example", "doug", "laptop")})
		}, "POST", "/fanout/clubhouse", batch, nil, map[string]string{
			HeaderSequence: "41", HeaderExclude: "mimi://a.example/u/doug/d/phone,mimi://a.example/u/doug/d/laptop"}},
		{"fanout without exclusions", nil, func() (wire.Encoder, error) { return nil, f.Fanout(ctx, "a.example", fx.room, 1, batch[:1], nil) },
			"POST", "/fanout/clubhouse", batch[:1], nil, map[string]string{HeaderSequence: "1", HeaderExclude: ""}},
		{"fanout of encoded messages", nil, func() (wire.Encoder, error) {
			encoded := make([][]byte, len(batch))
			for i := range batch {
				encoded[i] = wire.MustMarshal(&batch[i])
			}
			return nil, f.FanoutEncoded(ctx, "a.example", fx.room, 7, encoded, nil)
		}, "POST", "/fanout/clubhouse", batch, nil, map[string]string{HeaderSequence: "7", HeaderExclude: ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			peer.mu.Lock()
			peer.answer = tc.answer
			peer.mu.Unlock()
			got, err := tc.call()
			if err != nil {
				t.Fatal(err)
			}
			req := peer.last(t)
			if req.method != tc.method || req.path != tc.path {
				t.Errorf("request %s %s, want %s %s", req.method, req.path, tc.method, tc.path)
			}
			if ct := req.header.Get("Content-Type"); ct != ContentTypeMIMI {
				t.Errorf("Content-Type %q", ct)
			}
			if a := req.header.Get("Accept"); a != ContentTypeMIMI {
				t.Errorf("Accept %q", a)
			}
			if !bytes.Equal(req.body, wire.MustMarshal(tc.body)) {
				t.Errorf("the body is not the TLS encoding of the request")
			}
			if len(req.client) != 1 || req.client[0] != "b.example" {
				t.Errorf("client certificate names %v, want b.example", req.client)
			}
			for k, v := range tc.header {
				if got := req.header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if tc.want != nil && !bytes.Equal(wire.MustMarshal(got), wire.MustMarshal(tc.want)) {
				t.Errorf("answer %+v, want %+v", got, tc.want)
			}
		})
	}
	if n := peer.fetches(); n != 1 {
		t.Errorf("the missing directory was fetched %d times, want once (cached)", n)
	}
}

func TestFederationDownloadFile(t *testing.T) {
	ca := newTestCA(t)
	peer := newTestPeer(t, ca)
	f := newTestFederation(t, ca, peer.srv, func(c *FederationConfig) { c.MaxDownload = 10 })
	ctx := context.Background()
	size := 10
	peer.answer = func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "want GET", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Write(bytes.Repeat([]byte{'x'}, size))
	}
	asset := "https://assets.c.example/files/a b.png?v=1"
	body, err := f.DownloadFile(ctx, "a.example", asset)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(body)
	body.Close()
	if err != nil || len(data) != 10 {
		t.Fatalf("downloaded %d bytes, %v", len(data), err)
	}
	if got, want := peer.last(t).path, "/downloadFile/https:%2F%2Fassets.c.example%2Ffiles%2Fa%20b.png%3Fv=1"; got != want {
		t.Fatalf("path %s, want %s", got, want)
	}
	// Over the limit, streamed (a Content-Length is checked at once).
	size = 11
	body, err = f.DownloadFile(ctx, "a.example", asset)
	if err != nil {
		if !errors.Is(err, ErrResponseTooLarge) {
			t.Fatal(err)
		}
	} else {
		_, err = io.ReadAll(body)
		body.Close()
		if !errors.Is(err, ErrResponseTooLarge) {
			t.Fatalf("reading past the limit: %v", err)
		}
	}
	peer.answer = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.(http.Flusher).Flush() // no Content-Length
		w.Write(bytes.Repeat([]byte{'x'}, 64))
	}
	body, err = f.DownloadFile(ctx, "a.example", asset)
	if err != nil {
		t.Fatal(err)
	}
	if _, err = io.ReadAll(body); !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("reading a chunked answer past the limit: %v", err)
	}
	body.Close()
	peer.answer = func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not an asset host of a peer", http.StatusForbidden)
	}
	_, err = f.DownloadFile(ctx, "a.example", asset)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusForbidden || se.Message != "not an asset host of a peer" {
		t.Fatalf("refused download: %v", err)
	}
}

// TestFederationDirectory checks that requests follow the peer's directory,
// that it is cached for its TTL, and that primitives it lacks use the
// seed's paths.
func TestFederationDirectory(t *testing.T) {
	ca := newTestCA(t)
	peer := newTestPeer(t, ca)
	peer.directory = &proto.Directory{Entries: []proto.DirectoryEntry{
		{Primitive: proto.UpdateRoom, Method: proto.MethodPost, URI: "BASE/mimi/v1/rooms/{roomId}/update"},
		{Primitive: proto.IdentifierQuery, Method: proto.MethodGet, URI: "BASE/mimi/v1/who/{domain}"},
		{Primitive: proto.ClaimKeyMaterial, Method: proto.MethodPost, URI: "BASE/mimi/v1/km/{targetDomain}"},
		{Primitive: proto.DownloadFile, Method: proto.MethodGet, URI: "BASE/mimi/v1/files/{url}"},
		{Primitive: proto.ReportAbuse, Method: proto.MethodPost, URI: "BASE/mimi/v1/abuse/{nonsense}"},
	}}
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	f := newTestFederation(t, ca, peer.srv, func(c *FederationConfig) { c.Now = clock.Now; c.DirectoryTTL = time.Minute })
	fx := newMLSFixture(t)
	ctx := context.Background()

	peer.answer = mimiAnswer(&proto.UpdateRoomResponse{})
	if _, err := f.UpdateRoom(ctx, fx.room, fx.commit); err != nil {
		t.Fatal(err)
	}
	if r := peer.last(t); r.method != "POST" || r.path != "/mimi/v1/rooms/clubhouse/update" {
		t.Fatalf("updateRoom went to %s %s", r.method, r.path)
	}
	peer.answer = mimiAnswer(&proto.IdentifierResponse{Code: proto.QueryNotFound})
	if _, err := f.IdentifierQuery(ctx, "a.example", &proto.IdentifierRequest{Type: proto.SearchEmail, Value: "x@y"}); err != nil {
		t.Fatal(err)
	}
	if r := peer.last(t); r.method != "GET" || r.path != "/mimi/v1/who/a.example" || len(r.body) == 0 {
		t.Fatalf("identifierQuery went to %s %s with %d bytes", r.method, r.path, len(r.body))
	}
	peer.answer = mimiAnswer(&proto.KeyMaterialResponse{Protocol: proto.MLS10})
	if _, err := f.ClaimKeyMaterial(ctx, "a.example", "c.example", &proto.KeyMaterialRequest{Protocol: proto.MLS10}); err != nil {
		t.Fatal(err)
	}
	if r := peer.last(t); r.path != "/mimi/v1/km/c.example" {
		t.Fatalf("claimKeyMaterial went to %s", r.path)
	}
	// Not in the directory: the seed's path.
	peer.answer = mimiAnswer(&proto.UpdateRoomResponse{})
	if _, err := f.ProvisionalMessage(ctx, fx.room, fx.app); err != nil {
		t.Fatal(err)
	}
	if r := peer.last(t); r.path != "/provisionalMessage/clubhouse" {
		t.Fatalf("provisionalMessage went to %s", r.path)
	}
	// A template with a placeholder the request cannot fill is an error.
	if err := f.ReportAbuse(ctx, fx.room, &proto.AbuseReport{Reason: proto.AbuseSpam}); err == nil || !strings.Contains(err.Error(), "{nonsense}") {
		t.Fatalf("unfillable template: %v", err)
	}
	dir, err := f.Directory(ctx, "a.example")
	if err != nil || len(dir.Entries) != 5 {
		t.Fatalf("directory: %v, %v", dir, err)
	}
	if n := peer.fetches(); n != 1 {
		t.Fatalf("directory fetched %d times within its TTL", n)
	}
	clock.Advance(2 * time.Minute)
	if _, err := f.Directory(ctx, "a.example"); err != nil {
		t.Fatal(err)
	}
	if n := peer.fetches(); n != 2 {
		t.Fatalf("directory fetched %d times after its TTL, want 2", n)
	}

	// Without a directory, Directory says 404.
	peer.mu.Lock()
	peer.directory = nil
	peer.mu.Unlock()
	clock.Advance(2 * time.Minute)
	_, err = f.Directory(ctx, "a.example")
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusNotFound {
		t.Fatalf("directory of a peer without one: %v", err)
	}
}

func TestFederationDirectoryErrors(t *testing.T) {
	ca := newTestCA(t)
	ctx := context.Background()
	fx := newMLSFixture(t)
	for _, tc := range []struct {
		name  string
		serve func(w http.ResponseWriter, r *http.Request)
		want  string
	}{
		{"wrong content type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>"))
		}, "Content-Type"},
		{"trailing bytes", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ContentTypeDirectory)
			w.Write(append(wire.MustMarshal(&proto.Directory{}), 0))
		}, "trailing"},
		{"http template", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ContentTypeDirectory)
			w.Write(wire.MustMarshal(&proto.Directory{Entries: []proto.DirectoryEntry{{Primitive: proto.UpdateRoom, Method: proto.MethodPost, URI: "http://a.example/u/{roomId}"}}}))
		}, "not an https URL"},
		{"server error", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) }, "503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(tc.serve))
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "127.0.0.1")}}
			srv.StartTLS()
			defer srv.Close()
			f := newTestFederation(t, ca, srv, nil)
			_, err := f.UpdateRoom(ctx, fx.room, fx.commit)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func TestFederationErrors(t *testing.T) {
	ca := newTestCA(t)
	peer := newTestPeer(t, ca)
	clock := &fakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	f := newTestFederation(t, ca, peer.srv, func(c *FederationConfig) { c.Now = clock.Now; c.MaxResponse = 64 })
	fx := newMLSFixture(t)
	ctx := context.Background()

	tests := []struct {
		name      string
		answer    func(w http.ResponseWriter, r *http.Request)
		status    int
		message   string
		retry     time.Duration
		retryable bool
		is        error
	}{
		{"503 with seconds", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			http.Error(w, "no leader", http.StatusServiceUnavailable)
		}, 503, "no leader", 7 * time.Second, true, nil},
		{"429 with a date", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", clock.Now().Add(90*time.Second).Format(http.TimeFormat))
			w.WriteHeader(http.StatusTooManyRequests)
		}, 429, "", 90 * time.Second, true, nil},
		{"500 with a JSON body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"error":"disk full","kind":"internal"}`))
		}, 500, "disk full", 0, true, nil},
		{"400", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "bad body\x1b[31m", http.StatusBadRequest) }, 400, "bad body?[31m", 0, false, nil},
		{"403", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusForbidden) }, 403, "", 0, false, nil},
		{"501", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotImplemented) }, 501, "", 0, false, nil},
		{"too large", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ContentTypeMIMI)
			w.Write(make([]byte, 65))
		}, 0, "", 0, false, ErrResponseTooLarge},
		{"too large, chunked", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ContentTypeMIMI)
			w.(http.Flusher).Flush()
			w.Write(make([]byte, 200))
		}, 0, "", 0, false, ErrResponseTooLarge},
		{"trailing bytes", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ContentTypeMIMI)
			w.Write(append(wire.MustMarshal(&proto.UpdateRoomResponse{}), 0))
		}, 0, "", 0, false, nil},
		{"unknown response code", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ContentTypeMIMI)
			w.Write([]byte{9, 0})
		}, 0, "", 0, false, nil},
		{"wrong content type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{}`))
		}, 0, "", 0, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			peer.mu.Lock()
			peer.answer = tc.answer
			peer.mu.Unlock()
			resp, err := f.UpdateRoom(ctx, fx.room, fx.commit)
			if err == nil {
				t.Fatalf("no error, answer %+v", resp)
			}
			if !strings.Contains(err.Error(), "updateRoom") || !strings.Contains(err.Error(), "a.example") {
				t.Errorf("the error lacks context: %v", err)
			}
			var se *StatusError
			if tc.status != 0 {
				if !errors.As(err, &se) {
					t.Fatalf("%v is not a *StatusError", err)
				}
				if se.Status != tc.status || se.Message != tc.message || se.RetryAfter != tc.retry {
					t.Errorf("got %d %q %s, want %d %q %s", se.Status, se.Message, se.RetryAfter, tc.status, tc.message, tc.retry)
				}
			} else if errors.As(err, &se) {
				t.Fatalf("a 2xx answer gave %v", err)
			}
			if IsRetryable(err) != tc.retryable {
				t.Errorf("IsRetryable = %v", !tc.retryable)
			}
			if RetryAfter(err) != tc.retry {
				t.Errorf("RetryAfter = %s", RetryAfter(err))
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("%v is not %v", err, tc.is)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {" 12 ", 12 * time.Second}, {"-3", 0}, {"1.5", 0}, {"soon", 0},
		{"99999999999999999999", 0}, {"9999999999", maxRetryAfter},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"Thursday, 02-Jan-25 03:05:05 GMT", time.Minute}, // RFC 850
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestIsRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("decode"), false},
		{fmt.Errorf("x: %w", &StatusError{Status: 502}), true},
		{&StatusError{Status: 505}, false},
		{&StatusError{Status: 409}, false},
		{&TransportError{Err: io.ErrUnexpectedEOF}, true},
		{&TransportError{Err: context.DeadlineExceeded}, true},
		{&TransportError{Err: context.Canceled}, false},
		{&TransportError{Err: tls.AlertError(116)}, false},
	} {
		if got := IsRetryable(tc.err); got != tc.want {
			t.Errorf("IsRetryable(%v) = %v", tc.err, got)
		}
	}
}

// TestFederationMutualTLS checks both sides of mutual TLS.
func TestFederationMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	peer := newTestPeer(t, ca)
	fx := newMLSFixture(t)
	ctx := context.Background()

	// Configuration checks.
	if _, err := NewFederation(FederationConfig{Domain: "b.example", TLS: &tls.Config{RootCAs: ca.pool}}); err == nil {
		t.Error("a federation client without a client certificate was built")
	}
	if _, err := NewFederation(FederationConfig{Domain: "b.example", TLS: &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "c.example")}}}); err == nil {
		t.Error("a client certificate naming another domain was accepted")
	}
	if _, err := NewFederation(FederationConfig{Domain: "B_example", HTTPClient: http.DefaultClient}); err == nil {
		t.Error("an invalid domain was accepted")
	}

	// A client without a certificate is refused by the peer; retrying
	// cannot help.
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	f, err := NewFederation(FederationConfig{Domain: "b.example", HTTPClient: noCert, Resolve: func(string) (string, error) { return peer.srv.URL, nil }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.UpdateRoom(ctx, fx.room, fx.commit)
	var te *TransportError
	if !errors.As(err, &te) || IsRetryable(err) {
		t.Fatalf("without a client certificate: %v (retryable %v)", err, IsRetryable(err))
	}

	// A peer whose certificate the roots do not vouch for is refused.
	other := newTestCA(t)
	f = newTestFederation(t, ca, peer.srv, func(c *FederationConfig) { c.TLS.RootCAs = other.pool })
	_, err = f.UpdateRoom(ctx, fx.room, fx.commit)
	if !errors.As(err, &te) || IsRetryable(err) {
		t.Fatalf("untrusted peer: %v (retryable %v)", err, IsRetryable(err))
	}

	// Base URLs must be https.
	f = newTestFederation(t, ca, peer.srv, func(c *FederationConfig) {
		c.Resolve = func(string) (string, error) { return "http://127.0.0.1:1", nil }
	})
	if _, err := f.UpdateRoom(ctx, fx.room, fx.commit); err == nil || !strings.Contains(err.Error(), "https") {
		t.Fatalf("http base URL: %v", err)
	}
}

func TestFederationTransportError(t *testing.T) {
	ca := newTestCA(t)
	peer := newTestPeer(t, ca)
	fx := newMLSFixture(t)
	f := newTestFederation(t, ca, peer.srv, nil)
	peer.answer = func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	_, err := f.UpdateRoom(context.Background(), fx.room, fx.commit)
	var te *TransportError
	if !errors.As(err, &te) || !IsRetryable(err) {
		t.Fatalf("dropped connection: %v (retryable %v)", err, IsRetryable(err))
	}
	// A deadline is a retryable timeout.
	peer.answer = func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	f = newTestFederation(t, ca, peer.srv, func(c *FederationConfig) { c.Timeout = 200 * time.Millisecond })
	_, err = f.UpdateRoom(context.Background(), fx.room, fx.commit)
	if !errors.As(err, &te) || !IsRetryable(err) {
		t.Fatalf("timeout: %v (retryable %v)", err, IsRetryable(err))
	}
	// Argument checks happen before anything is sent.
	if err := f.Fanout(context.Background(), "a.example", fx.room, 1, nil, nil); err == nil {
		t.Error("an empty fanout batch was sent")
	}
	if err := f.Fanout(context.Background(), "a.example", fx.room, 1, proto.FanoutBatch{{Message: fx.app}}, []proto.URI{"mimi://a,b"}); err == nil {
		t.Error("an exclusion with a comma was sent")
	}
	if _, err := f.UpdateRoom(context.Background(), proto.UserURI("a.example", "alice"), fx.commit); err == nil {
		t.Error("a user URI was taken for a room")
	}
}

// TestFederationIdempotencyKey: a request sent with a context that
// carries an idempotency key (WithIdempotencyKey) carries it in the
// Idempotency-Key header, so a provider relaying its client's write can
// retry the relay without the hub applying it twice; without one, no
// header is sent.
func TestFederationIdempotencyKey(t *testing.T) {
	ca := newTestCA(t)
	peer := newTestPeer(t, ca)
	peer.answer = mimiAnswer(&proto.UpdateRoomResponse{})
	f := newTestFederation(t, ca, peer.srv, nil)
	fx := newMLSFixture(t)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"with a key", WithIdempotencyKey(ctx, "relay-key-1"), "relay-key-1"},
		{"without", ctx, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := f.UpdateRoom(c.ctx, fx.room, fx.commit); err != nil {
				t.Fatal(err)
			}
			if got := peer.last(t).header.Get(HeaderIdempotencyKey); got != c.want {
				t.Errorf("updateRoom: Idempotency-Key %q, want %q", got, c.want)
			}
			if _, err := f.ProvisionalMessage(c.ctx, fx.room, fx.app); err != nil {
				t.Fatal(err)
			}
			if got := peer.last(t).header.Get(HeaderIdempotencyKey); got != c.want {
				t.Errorf("provisionalMessage: Idempotency-Key %q, want %q", got, c.want)
			}
		})
	}
	if got := IdempotencyKey(WithIdempotencyKey(ctx, "k")); got != "k" {
		t.Errorf("IdempotencyKey: %q", got)
	}
}

// TestRedactedURL: a request URL is logged without its password.
func TestRedactedURL(t *testing.T) {
	u, err := url.Parse("https://hub:s3cret@a.example/fanout/clubhouse")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Debug("mimi request", "url", redactedURL{u})
	if out := buf.String(); strings.Contains(out, "s3cret") || !strings.Contains(out, "url=https://hub:xxxxx@a.example/fanout/clubhouse") {
		t.Errorf("logged %q, want the URL with its password redacted", out)
	}
}
