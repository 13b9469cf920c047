package hub_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// chromiumPath finds headless Chromium: $CHROMIUM, else chromium or
// chromium-browser in $PATH. Without one the test skips, except under
// CI, where .ci/run installs Debian's chromium and its absence fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "headless Chromium is needed for the dashboard test: apt-get install chromium (or set $CHROMIUM)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser starts headless Chromium (flags as on these machines: no
// sandbox as root, nothing that reaches out to the network) and returns a
// tab's context.
func browser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelTab)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return tab
}

// pageView is what the dashboard shows, read from the DOM.
type pageView struct {
	Leader    string            `json:"leader"`
	NodeCount string            `json:"nodeCount"`
	Roles     map[string]string `json:"roles"`
	Conn      string            `json:"conn"`
	Events    []string          `json:"events"`
	Rooms     string            `json:"rooms"`
}

const readPage = `(() => {
  const roles = {};
  for (const tr of document.querySelectorAll('#nodes tbody tr[data-node]')) roles[tr.dataset.node] = tr.dataset.role;
  return {
    leader: document.getElementById('leader').textContent,
    nodeCount: document.getElementById('node-count').textContent,
    roles,
    conn: document.getElementById('conn').textContent,
    events: [...document.querySelectorAll('#events tbody tr[data-kind]')].map((tr) => tr.dataset.kind),
    rooms: document.getElementById('room-count').textContent,
  };
})()`

// TestDashboardInChromium loads the dashboard of a 3-node provider in
// headless Chromium: the login form refuses a wrong token and keeps the
// right one out of the URL, the page shows the leader and node count the
// API reports, and when the leader is stopped the page shows the new
// leader and the stopped node as unreachable, on its own.
func TestDashboardInChromium(t *testing.T) {
	chromiumPath(t) // skip before starting a cluster
	c := testutil.StartCluster(t, testutil.ClusterOptions{Configure: func(i int, cfg *hub.Config) { cfg.AdminToken = opsToken }}, 3)
	leader := c.Leader(t)
	viewer := c.Followers(t)[0]
	_, err := client.RegisterMember(opCtx(t), leader.NewUser(t), "alice", "phone", client.MemberConfig{})
	must(t, err, "register alice")

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	tab := browser(t, ctx)
	view := func() pageView {
		t.Helper()
		v, err := chromedp.Run(tab, chromedp.Evaluate[pageView](readPage))
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		return v
	}
	waitPage := func(what string, cond func(pageView, cluster.ClusterStatus) bool) pageView {
		t.Helper()
		deadline := time.Now().Add(testutil.Wait)
		for {
			v := view()
			st := clusterStatus(t, viewer)
			if cond(v, st) {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("the page never showed %s: page %+v, API leader %q", what, v, st.LeaderID)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	step(t, "a wrong token is refused", func(t *testing.T) {
		err := chromedp.Do(tab,
			chromedp.Navigate("http://"+viewer.Config.OpsAddr+"/"),
			chromedp.WaitVisible("#login-form"),
			chromedp.SendKeys("#token", "not-the-token"),
			chromedp.Click(`#login-form button[type="submit"]`),
		)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Run(tab, chromedp.Poll[bool](`document.getElementById('login-error').textContent !== ''`)); err != nil {
			t.Fatal(err)
		}
		msg, err := chromedp.Run(tab, chromedp.Text("#login-error"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(msg, "refused the token") {
			t.Errorf("login error %q", msg)
		}
	})

	step(t, "the right token shows the cluster as the API sees it", func(t *testing.T) {
		if _, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById('token').value = ''`)); err != nil {
			t.Fatal(err)
		}
		err := chromedp.Do(tab,
			chromedp.SendKeys("#token", opsToken),
			chromedp.Click(`#login-form button[type="submit"]`),
		)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Run(tab, chromedp.Poll[bool](`!document.getElementById('board').hidden`)); err != nil {
			t.Fatalf("the board never showed: %v", err)
		}
		v := waitPage("the API's leader and three nodes", func(v pageView, st cluster.ClusterStatus) bool {
			return v.Leader == st.LeaderID && v.NodeCount == strconv.Itoa(len(voters(st))) && len(v.Roles) == 3
		})
		if v.Leader != leader.Config.NodeID || v.NodeCount != "3" || v.Rooms != "0" {
			t.Errorf("page shows leader %q, %s nodes, %s rooms; want %s, 3, 0", v.Leader, v.NodeCount, v.Rooms, leader.Config.NodeID)
		}
		for id, role := range v.Roles {
			want := "follower"
			if id == leader.Config.NodeID {
				want = "leader"
			}
			if role != want {
				t.Errorf("node %s shown as %q, want %q", id, role, want)
			}
		}
		if v := waitPage("the connection as live", func(v pageView, _ cluster.ClusterStatus) bool { return strings.HasPrefix(v.Conn, "live") }); v.Conn == "" {
			t.Errorf("connection status %q", v.Conn)
		}
		href, err := chromedp.Run(tab, chromedp.Evaluate[string](`location.href`))
		if err != nil {
			t.Fatal(err)
		}
		stored, err := chromedp.Run(tab, chromedp.Evaluate[string](`sessionStorage.getItem('mimi-hub-ops-token')`))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(href, opsToken) || stored != opsToken {
			t.Errorf("URL %q, sessionStorage %q: the token belongs in sessionStorage only", href, stored)
		}
		if os.Getenv("MIMI_DASHBOARD_SCREENSHOT") != "" {
			if png, err := chromedp.Run(tab, chromedp.FullScreenshot(100)); err == nil {
				os.WriteFile(os.Getenv("MIMI_DASHBOARD_SCREENSHOT"), png, 0o644)
			}
		}
	})

	step(t, "stopping the leader changes the page by itself", func(t *testing.T) {
		old := leader.Config.NodeID
		leader.Stop(t)
		v := waitPage("a new leader and the old one unreachable", func(v pageView, st cluster.ClusterStatus) bool {
			return st.LeaderID != "" && st.LeaderID != old && v.Leader == st.LeaderID && v.Roles[old] == "unreachable"
		})
		if v.NodeCount != "3" {
			t.Errorf("page shows %s nodes: the stopped node is still a voter", v.NodeCount)
		}
		if !slices.Contains(v.Events, "leader") {
			t.Errorf("page's events %v lack the leader change", v.Events)
		}
	})

	step(t, "the page's data needs the token", func(t *testing.T) {
		status, err := chromedp.Run(tab, chromedp.Evaluate[int](`fetch('/v1/dashboard').then((r) => r.status)`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusUnauthorized {
			t.Errorf("GET /v1/dashboard without the token from the page: %d, want 401", status)
		}
	})
}

// TestDashboardData checks GET /v1/dashboard: rooms, fanout, events and
// refusals as a single node reports them.
func TestDashboardData(t *testing.T) {
	net := testutil.StartNetwork(t, testutil.Options{Configure: func(cfg *hub.Config) { cfg.AdminToken = opsToken }}, "a.example")
	p := net.Provider("a.example")
	ctx := opCtx(t)
	alice, err := client.RegisterMember(ctx, p.NewUser(t), "alice", "phone", client.MemberConfig{})
	must(t, err, "register alice")
	for _, id := range []string{"quiet", "chatty"} {
		r, err := alice.CreateRoom(ctx, id, proto.DefaultPolicy())
		must(t, err, "create room "+id)
		if id == "chatty" {
			for i := range 3 {
				must(t, alice.Send(ctx, r, []byte("hello "+strconv.Itoa(i))), "send")
			}
		}
	}
	// A refusal to show: a request without a token.
	opsCall{method: http.MethodGet, path: "/v1/status"}.expect(t, p, http.StatusUnauthorized)

	var d hub.OpsDashboard
	admin(t, p, http.MethodGet, "/v1/dashboard", nil, http.StatusOK).decode(t, &d)
	if d.Rooms.Count != 2 || len(d.Rooms.Largest) != 2 || len(d.Rooms.Busiest) != 2 {
		t.Fatalf("rooms %+v", d.Rooms)
	}
	if b := d.Rooms.Busiest[0]; !strings.HasSuffix(string(b.ID), "/r/chatty") || b.Messages < 3 {
		t.Errorf("busiest room %+v, want chatty with its 3 messages", b)
	}
	if d.Cluster == nil || d.Cluster.LeaderID != "a.example" || d.Node.Domain != "a.example" {
		t.Errorf("cluster %+v (%s), node %s", d.Cluster, d.ClusterError, d.Node.Domain)
	}
	if !slices.ContainsFunc(d.Events, func(e cluster.Event) bool { return e.Kind == cluster.EventLeader && e.Node == "a.example" }) {
		t.Errorf("events %+v lack the election", d.Events)
	}
	if len(d.Refusals) == 0 || d.Refusals[0].Status != http.StatusUnauthorized || d.Refusals[0].Route != "GET /v1/status" ||
		!strings.Contains(d.Refusals[0].Message, "admin token") || d.RefusalCounts["ops 401"] == 0 {
		t.Errorf("refusals %+v, counts %v", d.Refusals, d.RefusalCounts)
	}
	b, _ := json.Marshal(d)
	if strings.Contains(string(b), opsToken) {
		t.Error("the dashboard's data holds the admin token")
	}
	// The page and its assets need no token and forbid framing.
	page := opsCall{method: http.MethodGet, path: "/"}.expect(t, p, http.StatusOK)
	if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	if !strings.Contains(string(page.body), `/ui/app.js`) {
		t.Errorf("page: %.200s", page.body)
	}
	for _, asset := range []string{"/ui/app.js", "/ui/app.css"} {
		opsCall{method: http.MethodGet, path: asset}.expect(t, p, http.StatusOK)
	}
	opsCall{method: http.MethodGet, path: "/", header: http.Header{"X-Host": {"evil.example"}}}.expect(t, p, http.StatusMisdirectedRequest)
}
