package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
)

// testHub is a single-node provider for a.example on loopback.
type testHub struct {
	*Hub
	roots *x509.CertPool
}

// startTestHub starts a provider; mod adjusts its configuration.
func startTestHub(t *testing.T, mod func(*Config)) *testHub {
	t.Helper()
	ca, err := devca.New()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("a.example", "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Domain: "a.example", DataDir: t.TempDir(),
		FederationAddr: "127.0.0.1:0", ClientAddr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		PublicURL: "https://a.example", Certificate: cert, PeerRoots: ca.Pool(),
		Raft:     cluster.Config{HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond, LeaderLeaseTimeout: 100 * time.Millisecond},
		Delivery: cluster.DeliveryConfig{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
		Logger:   slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if err := h.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return &testHub{Hub: h, roots: ca.Pool()}
}

// get sends GET path to the ops listener with the Authorization header
// auth (none when empty) and returns the status and body.
func (h *testHub) get(t *testing.T, path, auth string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+h.Addr("ops")+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// getJSON fetches path and decodes a 200 answer into out.
func (h *testHub) getJSON(t *testing.T, path string, out any) {
	t.Helper()
	status, body := h.get(t, path, "")
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// member registers a client of user on h and uploads KeyPackages.
func (h *testHub) member(t *testing.T, ctx context.Context, user string) *client.Member {
	t.Helper()
	api, err := client.NewUser(client.UserConfig{BaseURL: "https://" + h.Addr("client"), TLS: &tls.Config{RootCAs: h.roots}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := client.RegisterMember(ctx, api, user, "phone", client.MemberConfig{})
	if err != nil {
		t.Fatalf("register %s: %v", user, err)
	}
	if err := m.UploadKeyPackages(ctx, 3, false); err != nil {
		t.Fatalf("upload %s: %v", user, err)
	}
	return m
}

func TestOpsHealth(t *testing.T) {
	h := startTestHub(t, func(c *Config) { c.AdminToken = "secret" })
	for _, tc := range []struct{ path, want string }{{"/healthz", "ok\n"}, {"/readyz", "ready\n"}} {
		status, body := h.get(t, tc.path, "")
		if status != http.StatusOK || string(body) != tc.want {
			t.Errorf("GET %s without a token: %d %q, want 200 %q", tc.path, status, body, tc.want)
		}
	}
}

func TestOpsAdminToken(t *testing.T) {
	h := startTestHub(t, func(c *Config) { c.AdminToken = "s3cret" })
	for _, tc := range []struct {
		name, path, auth string
		want             int
	}{
		{"no header", "/v1/status", "", http.StatusUnauthorized},
		{"wrong token", "/v1/status", "Bearer nope", http.StatusUnauthorized},
		{"prefix of the token", "/v1/status", "Bearer s3cre", http.StatusUnauthorized},
		{"wrong scheme", "/v1/status", "Basic s3cret", http.StatusUnauthorized},
		{"token without scheme", "/v1/status", "s3cret", http.StatusUnauthorized},
		{"right token", "/v1/status", "Bearer s3cret", http.StatusOK},
		{"scheme in lower case", "/v1/status", "bearer s3cret", http.StatusOK},
		{"reports need it too", "/v1/reports", "", http.StatusUnauthorized},
		{"reports with it", "/v1/reports", "Bearer s3cret", http.StatusOK},
		{"unknown endpoint without it", "/v1/nothing", "", http.StatusUnauthorized},
		{"unknown endpoint with it", "/v1/nothing", "Bearer s3cret", http.StatusNotFound},
		{"cluster status needs it", "/v1/cluster/status", "", http.StatusUnauthorized},
		{"cluster status with it", "/v1/cluster/status", "Bearer s3cret", http.StatusOK},
		{"snapshot needs it", "/v1/cluster/snapshot", "", http.StatusUnauthorized},
		{"wrong method without it", "/v1/cluster/leave", "", http.StatusUnauthorized},
		{"wrong method with it", "/v1/cluster/leave", "Bearer s3cret", http.StatusMethodNotAllowed},
		{"metrics are open", "/metrics", "", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := h.get(t, tc.path, tc.auth)
			if status != tc.want {
				t.Errorf("GET %s with %q: %d %s, want %d", tc.path, tc.auth, status, body, tc.want)
			}
		})
	}
}

func TestOpsStatus(t *testing.T) {
	// b.example is listed at a port where nothing listens, so what is
	// queued for it stays queued and its delivery fails.
	h := startTestHub(t, func(c *Config) { c.Peers = map[string]string{"b.example": "127.0.0.1:1"} })
	var before OpsStatus
	h.getJSON(t, "/v1/status", &before)
	if before.Domain != "a.example" || before.NodeID != "a.example" {
		t.Errorf("domain %q, node %q; want a.example for both", before.Domain, before.NodeID)
	}
	if !before.Raft.Leader || before.Raft.State != "Leader" || before.Raft.LeaderID != "a.example" || before.Raft.Term == 0 {
		t.Errorf("raft %+v: want this node leading in a term > 0", before.Raft)
	}
	if before.Raft.AppliedIndex == 0 || before.Raft.LastIndex < before.Raft.AppliedIndex {
		t.Errorf("raft indexes %+v: want applied > 0 and last >= applied", before.Raft)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := h.member(t, ctx, "alice")
	// A consent request for a user of b.example goes to the outbox.
	err := alice.API().Consent(ctx, &proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: alice.User(), Target: proto.UserURI("b.example", "bob")})
	if err != nil {
		t.Fatal(err)
	}
	var after OpsStatus
	for {
		h.getJSON(t, "/v1/status", &after)
		if after.Peers["b.example"].Failures > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no failed delivery to b.example reported: %+v", after.Peers)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if after.Counts.Users != 1 || after.Counts.Clients != 1 || after.Counts.OutboxItems != 1 {
		t.Errorf("counts %+v: want 1 user, 1 client, 1 outbox item", after.Counts)
	}
	b := after.Peers["b.example"]
	if b.Outbox != 1 || b.OldestEnqueued == nil || b.LastError == "" || b.Delivered != 0 {
		t.Errorf("peer b.example %+v: want 1 queued item, its enqueue time, a last error and nothing delivered", b)
	}
	if after.LastAcceptedAt == nil || after.Raft.AppliedIndex <= before.Raft.AppliedIndex {
		t.Errorf("after writes: last accepted %v, applied %d (was %d)", after.LastAcceptedAt, after.Raft.AppliedIndex, before.Raft.AppliedIndex)
	}
}

func TestOpsReports(t *testing.T) {
	h := startTestHub(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice, bob := h.member(t, ctx, "alice"), h.member(t, ctx, "bob")
	r, err := alice.CreateRoom(ctx, "club", proto.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.AddUsers(ctx, r, []proto.UserRoles{{User: bob.User(), Roles: []proto.Role{proto.RoleRegularUser}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 3
	for i := range n {
		if err := alice.Send(ctx, r, fmt.Appendf(nil, "spam %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	events, err := bob.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reported := 0
	for i := range events {
		if events[i].Kind != client.EventMessage {
			continue
		}
		if err := bob.ReportAbuse(ctx, &events[i], proto.AbuseSpam, fmt.Sprintf("note %d", reported)); err != nil {
			t.Fatal(err)
		}
		reported++
	}
	if reported != n {
		t.Fatalf("bob received %d messages, want %d: %+v", reported, n, events)
	}

	var all OpsReports
	h.getJSON(t, "/v1/reports", &all)
	if len(all.Reports) != n || all.Total != n || all.More {
		t.Fatalf("reports: %d of %d (more %v), want %d", len(all.Reports), all.Total, all.More, n)
	}
	for i, rep := range all.Reports {
		if i > 0 && rep.Index <= all.Reports[i-1].Index {
			t.Errorf("report %d has index %d after %d: indexes must increase", i, rep.Index, all.Reports[i-1].Index)
		}
		want := OpsReport{Room: r, ReportingUser: bob.User(), AllegedAbuser: alice.User(), Reason: "spam", Note: fmt.Sprintf("note %d", i), Messages: 1}
		got := rep
		got.Index, got.ReceivedAt, got.Epoch, got.AllegedAbuserLeaf, got.Verified = 0, time.Time{}, 0, 0, 0
		if got != want {
			t.Errorf("report %d: %+v, want %+v", i, got, want)
		}
		if rep.Verified != 1 {
			t.Errorf("report %d: %d verified messages, want 1 (the room is still in the message's epoch)", i, rep.Verified)
		}
	}
	if all.Next != all.Reports[n-1].Index {
		t.Errorf("next %d, want the last index %d", all.Next, all.Reports[n-1].Index)
	}

	// Paging two at a time visits the same reports.
	var paged []OpsReport
	after := uint64(0)
	for range n + 1 {
		var page OpsReports
		h.getJSON(t, fmt.Sprintf("/v1/reports?after=%d&limit=2", after), &page)
		paged = append(paged, page.Reports...)
		after = page.Next
		if !page.More {
			break
		}
	}
	if len(paged) != n {
		t.Fatalf("paging found %d reports, want %d", len(paged), n)
	}
	for i := range paged {
		if paged[i] != all.Reports[i] {
			t.Errorf("paged report %d: %+v, want %+v", i, paged[i], all.Reports[i])
		}
	}
	var empty OpsReports
	h.getJSON(t, fmt.Sprintf("/v1/reports?after=%d", all.Next), &empty)
	if len(empty.Reports) != 0 || empty.More || empty.Next != all.Next || empty.Reports == nil {
		t.Errorf("after the last report: %+v, want an empty list, no more, next unchanged", empty)
	}

	for _, q := range []string{"after=-1", "after=x", "limit=0", fmt.Sprintf("limit=%d", MaxReportsLimit+1), "limit=y"} {
		status, body := h.get(t, "/v1/reports?"+q, "")
		if status != http.StatusBadRequest || !strings.Contains(string(body), `"kind":"invalid"`) {
			t.Errorf("GET /v1/reports?%s: %d %s, want 400 invalid", q, status, body)
		}
	}
}

func TestReportIndexes(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   []uint64
		want []uint64
	}{
		{"empty", nil, []uint64{}},
		{"distinct times", []uint64{5, 7, 9}, []uint64{5000, 7000, 9000}},
		{"same millisecond", []uint64{5, 5, 5, 6}, []uint64{5000, 5001, 5002, 6000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reports := make([]room.Report, len(tc.at))
			for i, at := range tc.at {
				reports[i].ReceivedAt = at
			}
			got := reportIndexes(reports)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("indexes of %v: %v, want %v", tc.at, got, tc.want)
			}
		})
	}
	// More than 1000 reports in one millisecond still get increasing
	// indexes, borrowing from the next millisecond.
	reports := make([]room.Report, 1002)
	for i := range reports {
		reports[i].ReceivedAt = 1
	}
	reports[1001].ReceivedAt = 2
	got := reportIndexes(reports)
	if got[999] != 1999 || got[1000] != 2000 || got[1001] != 2001 {
		t.Errorf("crowded millisecond: ..., %d, %d, %d; want 1999, 2000, 2001", got[999], got[1000], got[1001])
	}
	// Dropping the oldest report leaves the others' indexes unchanged.
	if again := reportIndexes([]room.Report{{ReceivedAt: 5}, {ReceivedAt: 6}}[1:]); again[0] != 6000 {
		t.Errorf("after dropping the oldest: %v, want [6000]", again)
	}
}
