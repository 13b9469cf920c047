package monitoring

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/pause"
	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Record string `json:"record"`
			Alert  string `json:"alert"`
			Expr   string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

// dashboard is the part of the Grafana dashboard the tests read.
type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		GridPos struct{ H, W, X, Y int } `json:"gridPos"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile("alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	if len(rf.Groups) == 0 {
		t.Fatal("alerts.yaml has no groups")
	}
	return rf
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	return d
}

// grafanaVars turns a dashboard expression into PromQL: Grafana replaces
// its variables before it sends a query.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$domain", "a.example")

// dashboardExprs returns every PromQL expression of the dashboard, by
// panel and query.
func dashboardExprs(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			out[fmt.Sprintf("panel %d (%s) query %s", p.ID, p.Title, q.RefID)] = grafanaVars.Replace(q.Expr)
		}
	}
	return out
}

// TestPromtool runs Prometheus's own checks: the rules' syntax, their unit
// tests (alerts_test.yaml), the example configuration, and the syntax of
// every dashboard query (as recording rules of a scratch file).
func TestPromtool(t *testing.T) {
	testutil.RequireTools(t, ".ci/run installs it: apt-get install prometheus", "promtool")
	promtool := func(args ...string) {
		t.Helper()
		out, err := exec.Command("promtool", args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	promtool("check", "rules", "alerts.yaml")
	promtool("test", "rules", "alerts_test.yaml")
	promtool("check", "config", "prometheus.yml")

	exprs := dashboardExprs(t, readDashboard(t))
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range exprs {
			if !yield(k) {
				return
			}
		}
	})
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, k := range keys {
		q, _ := json.Marshal(exprs[k]) // a JSON string is a YAML string
		fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %s\n", i, q)
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	promtool("check", "rules", file)
}

func TestDashboardShape(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q title %q", d.UID, d.Title)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["domain"] != "query" {
		t.Errorf("template variables %v: want a datasource and a domain picker", vars)
	}
	ids := map[int]bool{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if g := p.GridPos; g.W < 1 || g.H < 1 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: grid position %+v outside the 24 columns", p.Title, g)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: want queries on the ${datasource} variable", p.Title)
		}
		for _, q := range p.Targets {
			queries++
			if strings.TrimSpace(q.Expr) == "" {
				t.Errorf("panel %q query %s is empty", p.Title, q.RefID)
			}
			if !strings.Contains(q.Expr, `domain="$domain"`) {
				t.Errorf("panel %q query %s ignores the provider picker", p.Title, q.RefID)
			}
		}
	}
	if queries < 10 {
		t.Errorf("%d queries", queries)
	}
}

// PromQL pieces that are not metric names.
var (
	promStrings    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promMatchers   = regexp.MustCompile(`\{[^{}]*\}`)
	promRanges     = regexp.MustCompile(`\[[^\[\]]*\]`)
	promLabelLists = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promIdent      = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords   = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
		"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true, "start": true, "end": true}
	grafanaLabelValues = regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
)

// metricNames returns the metric names a PromQL expression selects: what
// remains once strings, label matchers, ranges, label lists, functions,
// keywords and numbers are set aside. (promtool checks the syntax.)
func metricNames(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	for prev := ""; prev != s; {
		prev = s
		s = promMatchers.ReplaceAllString(s, " ")
	}
	s = promRanges.ReplaceAllString(s, " ")
	s = promLabelLists.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		word := s[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsRune("0123456789.", rune(s[loc[0]-1])) {
			continue // the exponent or unit of a number or duration
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") || promKeywords[strings.ToLower(word)] {
			continue // a function, an aggregation or a keyword
		}
		if !slices.Contains(names, word) {
			names = append(names, word)
		}
	}
	return names
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (domain) (mimi:raft_is_leader:by_node) == 0`:                                                    {"mimi:raft_is_leader:by_node"},
		`histogram_quantile(0.99, sum by (job, le) (rate(mimi_raft_commit_duration_seconds_bucket[5m]))) > 0.5`: {"mimi_raft_commit_duration_seconds_bucket"},
		`up{job="mimi-hub"} == 0`: {"up"},
		`a * on (job, instance) group_left (x) b{l="v,w)", m=~"x{1,2}"} / ignoring(y) c offset 5m`:                             {"a", "b", "c"},
		`1e3 * foo + 0x1F - bar and on() baz unless qux or rate(quux[1m:30s])`:                                                 {"foo", "bar", "baz", "qux", "quux"},
		`sum(rate(x_total[$__rate_interval]) * on (job, instance) group_left () mimi_node_info{domain="$domain"}) without (a)`: {"x_total", "mimi_node_info"},
		`max_over_time(foo[5m]) > bool 3`: {"foo"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}

// prometheusOwn are series Prometheus makes itself for every target.
var prometheusOwn = map[string]bool{"up": true}

// TestReferencedMetricsExist checks every metric name the alert rules
// and the dashboard use against what real nodes export: a 3-node provider
// that has forwarded a write and has fanout waiting for an unreachable
// peer, so that every labelled family has a series. A renamed metric, or
// a typo in a query, fails here instead of silently never alerting.
func TestReferencedMetricsExist(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a 3-node provider")
	}
	exported := scrapeLiveCluster(t)

	referenced := map[string][]string{} // name -> where
	recorded := map[string]bool{}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
			where := "alerts.yaml " + r.Alert + r.Record
			for _, n := range metricNames(r.Expr) {
				referenced[n] = append(referenced[n], where)
			}
		}
	}
	d := readDashboard(t)
	for where, expr := range dashboardExprs(t, d) {
		for _, n := range metricNames(expr) {
			referenced[n] = append(referenced[n], "dashboard "+where)
		}
	}
	for _, v := range d.Templating.List {
		for _, m := range grafanaLabelValues.FindAllStringSubmatch(v.Definition, -1) {
			referenced[m[1]] = append(referenced[m[1]], "dashboard variable "+v.Name)
		}
	}
	if len(referenced) < 15 {
		t.Fatalf("only %d metric names referenced: %v", len(referenced), referenced)
	}
	for name, where := range referenced {
		if !exported[name] && !recorded[name] && !prometheusOwn[name] {
			t.Errorf("%s (used by %s) is not exported by mimi-hub", name, strings.Join(where, ", "))
		}
	}
	if !t.Failed() {
		t.Logf("%d metric names referenced, all exported (of %d series names)", len(referenced), len(exported))
	}
}

const opsToken = "monitoring-test-token"

// scrapeLiveCluster runs a 3-node provider through writes and fanout and
// returns the series names its nodes' /metrics show.
func scrapeLiveCluster(t *testing.T) map[string]bool {
	t.Helper()
	c := testutil.StartCluster(t, testutil.ClusterOptions{Configure: func(i int, cfg *hub.Config) {
		cfg.AdminToken = opsToken
		// Nothing listens for b.example: what is queued for it stays
		// queued and its delivery fails.
		cfg.Peers = map[string]string{"b.example": "127.0.0.1:1"}
	}}, 3)
	follower := c.Followers(t)[0]
	leader := c.Leader(t)
	ctx := t.Context()
	alice, err := client.RegisterMember(ctx, follower.NewUser(t), "alice", "phone", client.MemberConfig{})
	if err != nil {
		t.Fatalf("register through a follower: %v", err)
	}
	if err := alice.API().Consent(ctx, &proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: alice.User(),
		Target: proto.UserURI("b.example", "bob")}); err != nil {
		t.Fatalf("consent request to b.example: %v", err)
	}
	exported := map[string]bool{}
	deadline := time.Now().Add(time.Minute)
	for {
		for _, p := range c.Nodes {
			for name := range scrape(t, p.OpsURL()) {
				exported[name] = true
			}
		}
		// The leader's failed delivery attempt is the last series to appear.
		if exported["mimi_fanout_failures_total"] && exported["mimi_raft_last_contact_seconds"] {
			break
		}
		if time.Now().After(deadline) || !pause.For(ctx, 100*time.Millisecond) {
			t.Fatalf("no fanout failure on leader %s within a minute; series: %d", leader.Config.NodeID, len(exported))
		}
	}
	return exported
}

// scrape returns the series names of one node's /metrics.
func scrape(t *testing.T, opsURL string) map[string]bool {
	t.Helper()
	resp, err := http.Get(opsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}
