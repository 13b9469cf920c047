package hub_test

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/mimi/client"
)

// attack is one request a hostile browser page (or a confused tool) sends
// to the operations listener.
type attack struct {
	name, method, path string
	header             http.Header
	token              string
	body               []byte
	// status and kind are the refusal expected.
	status int
	kind   string
}

// browserHeaders are the headers a browser adds to a request page origin
// sends to the listener: Origin and Sec-Fetch-Site, and the media type of
// a form or "simple" fetch body.
func browserHeaders(origin, site, contentType string) http.Header {
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	if site != "" {
		h.Set("Sec-Fetch-Site", site)
	}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return h
}

// opsAttacks are the attacks replayed against a listener with and without
// an admin token. token is the right token (or "" when the node has none).
func opsAttacks(token string, backup []byte) []attack {
	restore := func(name string, h http.Header, status int, kind string) attack {
		return attack{name: name, method: http.MethodPost, path: "/v1/cluster/restore", header: h, token: token, body: backup, status: status, kind: kind}
	}
	evil := "http://evil.example"
	as := []attack{
		// The attack: a form posting the backup as text/plain
		// from another site.
		restore("browser restore: text/plain from a foreign origin", browserHeaders(evil, "cross-site", "text/plain"), http.StatusForbidden, "not_allowed"),
		restore("foreign origin without Sec-Fetch-Site (older browser)", browserHeaders(evil, "", "application/octet-stream"), http.StatusForbidden, "not_allowed"),
		restore("Sec-Fetch-Site cross-site without Origin", browserHeaders("", "cross-site", "application/octet-stream"), http.StatusForbidden, "not_allowed"),
		restore("same-site subdomain page", browserHeaders("http://other.localhost", "same-site", "application/octet-stream"), http.StatusForbidden, "not_allowed"),
		restore("opaque origin (sandboxed frame)", browserHeaders("null", "", "application/octet-stream"), http.StatusForbidden, "not_allowed"),
		restore("text/plain without any browser header", browserHeaders("", "", "text/plain"), http.StatusUnsupportedMediaType, "invalid"),
		restore("form encoding", browserHeaders("", "", "application/x-www-form-urlencoded"), http.StatusUnsupportedMediaType, "invalid"),
		restore("multipart form", browserHeaders("", "", "multipart/form-data; boundary=x"), http.StatusUnsupportedMediaType, "invalid"),
		restore("no Content-Type", http.Header{}, http.StatusUnsupportedMediaType, "invalid"),
		restore("JSON is not a backup's media type", browserHeaders("", "", "application/json"), http.StatusUnsupportedMediaType, "invalid"),
		{name: "DNS rebinding: Host names the attacker's domain", method: http.MethodPost, path: "/v1/cluster/restore",
			header: http.Header{"Content-Type": {"application/octet-stream"}, "X-Host": {"evil.example:8445"}}, token: token, body: backup,
			status: http.StatusMisdirectedRequest, kind: "not_allowed"},
		{name: "DNS rebinding read of the status", method: http.MethodGet, path: "/v1/status",
			header: http.Header{"X-Host": {"rebind.evil.example"}}, token: token, status: http.StatusMisdirectedRequest, kind: "not_allowed"},
		{name: "cross-site read of the status", method: http.MethodGet, path: "/v1/status",
			header: browserHeaders(evil, "cross-site", ""), token: token, status: http.StatusForbidden, kind: "not_allowed"},
		{name: "cross-site leave with text/plain", method: http.MethodPost, path: "/v1/cluster/leave",
			header: browserHeaders(evil, "cross-site", "text/plain"), token: token, status: http.StatusForbidden, kind: "not_allowed"},
		{name: "leave with text/plain", method: http.MethodPost, path: "/v1/cluster/leave",
			header: browserHeaders("", "", "text/plain"), token: token, status: http.StatusUnsupportedMediaType, kind: "invalid"},
		{name: "transfer without a Content-Type", method: http.MethodPost, path: "/v1/cluster/transfer-leader",
			header: http.Header{}, token: token, status: http.StatusUnsupportedMediaType, kind: "invalid"},
		{name: "cross-site pprof", method: http.MethodGet, path: "/debug/pprof/cmdline",
			header: browserHeaders(evil, "cross-site", ""), token: token, status: http.StatusForbidden, kind: "not_allowed"},
		{name: "cross-site metrics", method: http.MethodGet, path: "/metrics",
			header: browserHeaders(evil, "cross-site", ""), status: http.StatusForbidden, kind: "not_allowed"},
	}
	if token != "" {
		noToken := restore("restore without the token", browserHeaders("", "", "application/octet-stream"), http.StatusUnauthorized, "not_allowed")
		noToken.token = ""
		as = append(as, noToken,
			attack{name: "pprof without the token", method: http.MethodGet, path: "/debug/pprof/cmdline", status: http.StatusUnauthorized, kind: "not_allowed"},
			attack{name: "dashboard data without the token", method: http.MethodGet, path: "/v1/cluster/status", status: http.StatusUnauthorized, kind: "not_allowed"},
		)
	}
	return as
}

// send sends a to p's operations listener. An X-Host header becomes the
// request's Host.
func (a attack) send(t *testing.T, p *testutil.Provider) opsAnswer {
	t.Helper()
	return opsCall{method: a.method, path: a.path, body: a.body, token: a.token, header: a.header, exactHeader: true}.do(t, p)
}

// TestOpsBrowserAttacks replays the browser-borne attacks on the
// operations listener, with and without an admin token: each is refused
// with its own status and kind, and the state (a restore would shrink it
// back to the backup's users) does not change.
func TestOpsBrowserAttacks(t *testing.T) {
	for _, tc := range []struct{ name, token string }{{"with an admin token", "s3cret-t0ken"}, {"loopback without a token", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			net := testutil.StartNetwork(t, testutil.Options{Configure: func(cfg *hub.Config) { cfg.AdminToken = tc.token }}, "a.example")
			p := net.Provider("a.example")
			usersNow := func() int {
				var st hub.OpsStatus
				opsCall{method: http.MethodGet, path: "/v1/status", token: tc.token}.expect(t, p, http.StatusOK).decode(t, &st)
				return st.Counts.Users
			}
			_, err := client.RegisterMember(opCtx(t), p.NewUser(t), "alice", "phone", client.MemberConfig{})
			must(t, err, "register alice")
			backup := opsCall{method: http.MethodGet, path: "/v1/cluster/snapshot", token: tc.token}.expect(t, p, http.StatusOK).body
			_, err = client.RegisterMember(opCtx(t), p.NewUser(t), "bob", "phone", client.MemberConfig{})
			must(t, err, "register bob")
			if n := usersNow(); n != 2 {
				t.Fatalf("%d users, want 2", n)
			}
			for _, a := range opsAttacks(tc.token, backup) {
				t.Run(a.name, func(t *testing.T) {
					ans := a.send(t, p)
					if ans.status != a.status {
						t.Fatalf("%s %s: %d %s, want %d", a.method, a.path, ans.status, ans.body, a.status)
					}
					ans.wantError(t, a.kind)
					if n := usersNow(); n != 2 {
						t.Fatalf("after the attack the state holds %d users, want 2 (restored?)", n)
					}
				})
			}
			// The same restore, sent as mimictl sends it, works: the checks
			// refuse the browser, not the operator.
			opsCall{method: http.MethodPost, path: "/v1/cluster/restore", token: tc.token, body: backup}.expect(t, p, http.StatusOK)
			waitFor(t, "the restored state", func() bool { return usersNow() == 1 })
		})
	}
}

// TestOpsSameOriginAllowed checks that the dashboard's own requests (same
// origin, as a browser sends them) and requests naming the listener by a
// configured host name pass the checks.
func TestOpsSameOriginAllowed(t *testing.T) {
	const token = "t0k"
	net := testutil.StartNetwork(t, testutil.Options{Configure: func(cfg *hub.Config) {
		cfg.AdminToken = token
		cfg.OpsHosts = []string{"ops.a.example"}
	}}, "a.example")
	p := net.Provider("a.example")
	self := "http://" + p.Config.OpsAddr
	for _, tc := range []struct {
		name   string
		header http.Header
	}{
		{"same-origin fetch", browserHeaders(self, "same-origin", "")},
		{"typed into the address bar", browserHeaders("", "none", "")},
		{"configured host name", http.Header{"X-Host": {"ops.a.example:9445"}}},
		{"localhost", http.Header{"X-Host": {"localhost"}}},
		{"IPv6 literal", http.Header{"X-Host": {"[::1]:9445"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opsCall{method: http.MethodGet, path: "/v1/status", token: token, header: tc.header}.expect(t, p, http.StatusOK)
		})
	}
	opsCall{method: http.MethodPost, path: "/v1/cluster/transfer-leader", token: token, header: browserHeaders(self, "same-origin", "application/json")}.
		expect(t, p, http.StatusConflict) // a single node: no other voter, but the request got through
}

// TestOpsPprof checks that the profiles need the token and bound their
// duration.
func TestOpsPprof(t *testing.T) {
	const token = "t0k"
	net := testutil.StartNetwork(t, testutil.Options{Configure: func(cfg *hub.Config) { cfg.AdminToken = token }}, "a.example")
	p := net.Provider("a.example")
	opsCall{method: http.MethodGet, path: "/debug/pprof/goroutine?debug=1"}.expect(t, p, http.StatusUnauthorized)
	a := opsCall{method: http.MethodGet, path: "/debug/pprof/goroutine?debug=1", token: token}.expect(t, p, http.StatusOK)
	if !containsAll(string(a.body), "goroutine profile:") {
		t.Errorf("goroutine profile: %.200s", a.body)
	}
	opsCall{method: http.MethodGet, path: "/debug/pprof/", token: token}.expect(t, p, http.StatusOK)
	opsCall{method: http.MethodGet, path: "/debug/pprof/profile?seconds=3600", token: token}.expect(t, p, http.StatusBadRequest).wantError(t, "invalid", "seconds")
}

// TestOpsNeedsTokenOffLoopback checks that a node refuses to start an ops
// listener on a non-loopback address without an admin token.
func TestOpsNeedsTokenOffLoopback(t *testing.T) {
	cfg := testutil.StartNetwork(t, testutil.Options{}, "a.example").Provider("a.example").Config
	cfg.DataDir = t.TempDir()
	cfg.FederationAddr, cfg.ClientAddr, cfg.RaftAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", "192.0.2.1:0", "ops.example:0"} {
		cfg.OpsAddr, cfg.AdminToken = addr, ""
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Wait)
		h, err := hub.Start(ctx, cfg)
		cancel()
		if err == nil {
			h.Close(context.Background())
			t.Fatalf("ops listener %s without a token: started", addr)
		}
		if !containsAll(err.Error(), "not a loopback address", "admin token") {
			t.Errorf("ops listener %s without a token: %v", addr, err)
		}
	}
	for addr, want := range map[string]bool{"127.0.0.1:8445": true, "127.0.0.3:1": true, "[::1]:8445": true, "localhost:8445": true,
		"0.0.0.0:8445": false, ":8445": false, "10.0.0.1:8445": false, "127.0.0.1": false} {
		if got := hub.IsLoopbackAddr(addr); got != want {
			t.Errorf("IsLoopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestAdminTokenFile checks the generated token file: 0600, stable across
// calls, the same for racing creators, and refused when empty.
func TestAdminTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "data", hub.AdminTokenFile)
	const racers = 8
	tokens := make([]string, racers)
	created := make([]bool, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			var err error
			tokens[i], created[i], err = hub.LoadOrCreateAdminToken(path)
			if err != nil {
				t.Errorf("racer %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	n := 0
	for i := range racers {
		if created[i] {
			n++
		}
		if tokens[i] != tokens[0] || len(tokens[i]) < 40 {
			t.Errorf("racer %d got %q, racer 0 %q", i, tokens[i], tokens[0])
		}
	}
	if n != 1 {
		t.Errorf("%d racers created the file, want 1", n)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v", err, fi.Mode())
	}
	again, made, err := hub.LoadOrCreateAdminToken(path)
	if err != nil || made || again != tokens[0] {
		t.Errorf("second start: %q %v %v, want the first token", again, made, err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("the data folder holds %d files, want only the token", len(entries))
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.ReadAdminToken(empty); !errors.Is(err, hub.ErrNoAdminToken) {
		t.Errorf("empty token file: %v, want ErrNoAdminToken", err)
	}
	if _, err := hub.ReadAdminToken(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing token file: %v, want ErrNotExist", err)
	}
}

// expect sends c and wants status.
func (c opsCall) expect(t *testing.T, p *testutil.Provider, status int) opsAnswer {
	t.Helper()
	a := c.do(t, p)
	if a.status != status {
		t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, a.status, a.body, status)
	}
	return a
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
