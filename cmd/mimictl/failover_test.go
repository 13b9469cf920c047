package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestFailoverTransport checks the node choice: an unreachable node is
// skipped at once with the body sent again, a 503 is answered but moves
// the next request on, and a node that answers stays the current one.
func TestFailoverTransport(t *testing.T) {
	var hits [3]atomic.Int32
	var bodies [3]atomic.Value
	handler := func(i int, status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			b, _ := io.ReadAll(r.Body)
			bodies[i].Store(string(b))
			w.WriteHeader(status)
		}
	}
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // nothing listens there now
	busy := httptest.NewServer(handler(1, http.StatusServiceUnavailable))
	defer busy.Close()
	good := httptest.NewServer(handler(2, http.StatusOK))
	defer good.Close()

	rt, err := newFailover(http.DefaultTransport, []string{deadURL, busy.URL, good.URL}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: rt}
	post := func() int {
		resp, err := c.Post("http://ignored.example/v1/x", "application/json", strings.NewReader(`{"n":1}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// The dead node is skipped; the busy one answers 503.
	if code := post(); code != http.StatusServiceUnavailable || hits[1].Load() != 1 || bodies[1].Load() != `{"n":1}` {
		t.Fatalf("first request: %d, busy node hit %d times with %v", code, hits[1].Load(), bodies[1].Load())
	}
	// The 503 moved the next request to the good node, which stays.
	for range 3 {
		if code := post(); code != http.StatusOK {
			t.Fatalf("later request: %d", code)
		}
	}
	if hits[2].Load() != 3 || hits[1].Load() != 1 || bodies[2].Load() != `{"n":1}` {
		t.Errorf("good node hit %d times, busy %d", hits[2].Load(), hits[1].Load())
	}
	for _, bad := range []string{"", "ftp://x", "https://a:1,https://b:2/other", "https://a:1/?q=1"} {
		if _, err := parseServers(bad); err == nil {
			t.Errorf("parseServers(%q) accepted", bad)
		}
	}
}

// TestProfileFailover registers a client with every node of a 3-node
// provider, stops the node it talks to while watch -follow runs, and
// checks that watch reconnects and prints what arrives meanwhile, and that
// other commands go on through another node.
func TestProfileFailover(t *testing.T) {
	c, caFile := startTestCluster(t, "fo.example", 3, "")
	var all []string
	for _, n := range c.Nodes {
		all = append(all, n.ClientURL)
	}
	alice, bob := newUser(t), newUser(t)
	// alice lists a node that does not exist first: registration skips it.
	alice.ok("register", "-server", "https://127.0.0.1:1,"+strings.Join(all, ","), "-ca", caFile, "-user", "alice", "-keys", "2")
	var p profile
	b, err := os.ReadFile(filepath.Join(alice.profile, profileFile))
	if err != nil || json.Unmarshal(b, &p) != nil || len(p.Servers) != 4 || p.Server != "https://127.0.0.1:1" {
		t.Fatalf("alice's profile: servers %v (%v)", p.Servers, err)
	}
	bob.ok("register", "-server", all[2], "-ca", caFile, "-user", "bob", "-keys", "2")
	alice.ok("create-room", "club")
	alice.ok("add", "club", "bob")
	bob.syncUntil("joined the room")

	ctx, cancel := context.WithCancel(t.Context())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runErr(ctx, []string{"-profile", alice.profile, "watch", "-follow", "-poll", "2s"}, &out, &errOut)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch -follow: %v", err)
		}
	}()
	bob.ok("send", "club", "before")
	waitOutput(t, &out, "bob@fo.example: before")

	// The node alice's client uses (the first live one) stops.
	if err := c.Nodes[0].Close(); err != nil {
		t.Fatal(err)
	}
	bob.ok("send", "club", "while n1 is down")
	waitOutput(t, &out, "bob@fo.example: while n1 is down")
	alice.ok("send", "club", "alice is still here")
	bob.syncUntil("alice@fo.example: alice is still here")
	if whoami := alice.ok("whoami"); !strings.Contains(whoami, all[1]) {
		t.Errorf("whoami does not list the nodes:\n%s", whoami)
	}
	t.Logf("watch's diagnostics:\n%s", errOut.String())
}

// TestWatchFollowReconnects stops the only node of a provider while
// watch -follow runs, starts it again on the same data and address, and
// checks that watch said it lost the provider, reconnected, and printed
// the message sent once it was back, once.
func TestWatchFollowReconnects(t *testing.T) {
	ca, dir, caFile := testCA(t)
	fed, err := reservePort()
	if err != nil {
		t.Fatal(err)
	}
	clientAddr, err := reservePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := localProviderConfig{Domain: "a.example", DataDir: filepath.Join(dir, "a"), CA: ca, FederationAddr: fed, ClientAddr: clientAddr, Logger: testLogger(t)}
	p, err := startLocalProvider(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	alice, bob := newUser(t), newUser(t)
	alice.ok("register", "-server", p.ClientURL, "-ca", caFile, "-user", "alice", "-keys", "2")
	bob.ok("register", "-server", p.ClientURL, "-ca", caFile, "-user", "bob", "-keys", "2")
	alice.ok("create-room", "club")
	alice.ok("add", "club", "bob")
	bob.syncUntil("joined the room")

	ctx, cancel := context.WithCancel(t.Context())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runErr(ctx, []string{"-profile", alice.profile, "watch", "-follow", "-poll", "2s"}, &out, &errOut)
	}()
	bob.ok("send", "club", "before the restart")
	waitOutput(t, &out, "bob@a.example: before the restart")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, &errOut, "lost the provider")
	if p, err = startLocalProvider(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	bob.ok("send", "club", "after the restart")
	waitOutput(t, &out, "bob@a.example: after the restart")
	waitOutput(t, &errOut, "reconnected")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("watch -follow: %v\n%s", err, errOut.String())
	}
	if n := strings.Count(out.String(), "before the restart"); n != 1 {
		t.Errorf("the message before the restart was printed %d times:\n%s", n, out.String())
	}
}

// waitOutput waits until out holds want.
func waitOutput(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("watch never printed %q; it printed:\n%s", want, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
