package hub_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

const opsToken = "ops-t0ken"

// opsCall is one request to a node's operations listener.
type opsCall struct {
	method, path string
	body         []byte
	token        string // "" sends none
	// header holds extra headers; X-Host becomes the request's Host. A
	// POST declares the Content-Type its endpoint wants, unless
	// exactHeader says to send header as it is.
	header      http.Header
	exactHeader bool
}

// opsAnswer is what the listener answered.
type opsAnswer struct {
	status  int
	header  http.Header
	trailer http.Header
	body    []byte
}

// do sends c to p's operations listener.
func (c opsCall) do(t *testing.T, p *testutil.Provider) opsAnswer {
	t.Helper()
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(opCtx(t), c.method, p.OpsURL()+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.method == http.MethodPost && !c.exactHeader {
		req.Header.Set("Content-Type", "application/json")
		if c.path == "/v1/cluster/restore" {
			req.Header.Set("Content-Type", "application/octet-stream")
		}
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	if h := req.Header.Get("X-Host"); h != "" {
		req.Host = h
		req.Header.Del("X-Host")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s at %s: %v", c.method, c.path, p.Config.NodeID, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s at %s: reading: %v", c.method, c.path, p.Config.NodeID, err)
	}
	return opsAnswer{status: resp.StatusCode, header: resp.Header, trailer: resp.Trailer, body: b}
}

// admin sends an authorized request and wants status want.
func admin(t *testing.T, p *testutil.Provider, method, path string, body any, want int) opsAnswer {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case nil:
	case []byte:
		b = v
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	a := opsCall{method: method, path: path, body: b, token: opsToken}.do(t, p)
	if a.status != want {
		t.Fatalf("%s %s at %s: %d %s, want %d", method, path, p.Config.NodeID, a.status, a.body, want)
	}
	return a
}

// decode decodes a JSON answer.
func (a opsAnswer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decoding %s: %v", a.body, err)
	}
}

// wantError checks a JSON error answer's kind and that its message holds
// each of parts.
func (a opsAnswer) wantError(t *testing.T, kind string, parts ...string) {
	t.Helper()
	var e struct{ Error, Kind string }
	a.decode(t, &e)
	if e.Kind != kind {
		t.Errorf("error kind %q, want %q (%s)", e.Kind, kind, e.Error)
	}
	for _, p := range parts {
		if !strings.Contains(e.Error, p) {
			t.Errorf("error %q lacks %q", e.Error, p)
		}
	}
}

// waitFor polls cond until it holds (bounded by testutil.Wait).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testutil.Wait)

	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sample is one metric sample of the text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape fetches and parses p's /metrics.
func scrape(t *testing.T, p *testutil.Provider) []sample {
	t.Helper()
	a := opsCall{method: http.MethodGet, path: "/metrics"}.do(t, p)
	if a.status != http.StatusOK {
		t.Fatalf("GET /metrics at %s: %d %s", p.Config.NodeID, a.status, a.body)
	}
	var out []sample
	sc := bufio.NewScanner(bytes.NewReader(a.body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			t.Fatalf("metrics of %s: %v", p.Config.NodeID, err)
		}
		out = append(out, s)
	}
	return out
}

// parseSample parses `name{a="x",b="y"} value` (label values without
// escapes, as this server's are).
func parseSample(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	i := strings.LastIndexByte(line, ' ')
	if i < 0 {
		return s, fmt.Errorf("no value in %q", line)
	}
	v, err := strconv.ParseFloat(line[i+1:], 64)
	if err != nil {
		return s, fmt.Errorf("value of %q: %w", line, err)
	}
	s.value = v
	head := line[:i]
	name, rest, ok := strings.Cut(head, "{")
	s.name = name
	if !ok {
		return s, nil
	}
	rest = strings.TrimSuffix(rest, "}")
	for rest != "" {
		k, after, ok := strings.Cut(rest, `="`)
		if !ok {
			return s, fmt.Errorf("labels of %q", line)
		}
		val, after, ok := strings.Cut(after, `"`)
		if !ok {
			return s, fmt.Errorf("labels of %q", line)
		}
		s.labels[k] = val
		rest = strings.TrimPrefix(after, ",")
	}
	return s, nil
}

// find returns the samples of name whose labels include want.
func find(samples []sample, name string, want map[string]string) []sample {
	var out []sample
	for _, s := range samples {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
			}
		}
		if match {
			out = append(out, s)
		}
	}
	return out
}

// value returns the single sample of name with labels want; ok is false
// if there is none.
func value(t *testing.T, samples []sample, name string, want map[string]string) (float64, bool) {
	t.Helper()
	f := find(samples, name, want)
	switch len(f) {
	case 0:
		return 0, false
	case 1:
		return f[0].value, true
	}
	t.Fatalf("%d samples of %s%v", len(f), name, want)
	return 0, false
}

// mustValue is value that fails the test when the sample is missing.
func mustValue(t *testing.T, samples []sample, name string, want map[string]string) float64 {
	t.Helper()
	v, ok := value(t, samples, name, want)
	if !ok {
		t.Fatalf("no sample %s%v", name, want)
	}
	return v
}

// readyz returns a node's /readyz status and body.
func readyz(t *testing.T, p *testutil.Provider) (int, string) {
	t.Helper()
	a := opsCall{method: http.MethodGet, path: "/readyz"}.do(t, p)
	return a.status, string(a.body)
}

// clusterStatus reads GET /v1/cluster/status from p.
func clusterStatus(t *testing.T, p *testutil.Provider) cluster.ClusterStatus {
	t.Helper()
	var st cluster.ClusterStatus
	admin(t, p, http.MethodGet, "/v1/cluster/status", nil, http.StatusOK).decode(t, &st)
	return st
}

// voters lists the voters of a cluster status, sorted.
func voters(st cluster.ClusterStatus) []string {
	var out []string
	for _, s := range st.Servers {
		if s.Suffrage == "voter" {
			out = append(out, s.ID)
		}
	}
	slices.Sort(out)
	return out
}

// users reads the number of users p's state holds.
func users(t *testing.T, p *testutil.Provider) int {
	t.Helper()
	var st hub.OpsStatus
	admin(t, p, http.MethodGet, "/v1/status", nil, http.StatusOK).decode(t, &st)
	return st.Counts.Users
}

// TestClusterOps runs the operations listener of a 3-node provider:
// readiness, metrics after writes, and every cluster endpoint, refusals
// included.
func TestClusterOps(t *testing.T) {
	var left [3]atomic.Int32 // OnLeave calls per node
	c := testutil.StartCluster(t, testutil.ClusterOptions{Configure: func(i int, cfg *hub.Config) {
		cfg.AdminToken = opsToken
		// b.example is listed at a port where nothing listens, so what is
		// queued for it stays queued and its delivery fails.
		cfg.Peers = map[string]string{"b.example": "127.0.0.1:1"}
		cfg.OnLeave = func() { left[i].Add(1) }
		cfg.Raft.LeaderWait = 3 * time.Second
	}}, 3)

	step(t, "every node becomes ready", func(t *testing.T) {
		for _, p := range c.Nodes {
			waitFor(t, p.Config.NodeID+" ready", func() bool {
				status, _ := readyz(t, p)
				return status == http.StatusOK
			})
			if status, body := readyz(t, p); status != http.StatusOK || body != "ready\n" {
				t.Errorf("readyz of %s: %d %q", p.Config.NodeID, status, body)
			}
		}
	})

	leader := c.Leader(t)
	follower := c.Followers(t)[0]
	step(t, "writes through a follower and the leader", func(t *testing.T) {
		ctx := opCtx(t)
		alice, err := client.RegisterMember(ctx, follower.NewUser(t), "alice", "phone", client.MemberConfig{})
		must(t, err, "register alice at a follower")
		_, err = client.RegisterMember(ctx, leader.NewUser(t), "bob", "phone", client.MemberConfig{})
		must(t, err, "register bob at the leader")
		// A consent request for a user of b.example goes to the outbox.
		must(t, alice.API().Consent(ctx, &proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: alice.User(), Target: proto.UserURI("b.example", "bob")}), "consent request")
	})

	step(t, "metrics", func(t *testing.T) {
		leaders := 0.0
		for _, p := range c.Nodes {
			id := p.Config.NodeID
			var m []sample
			// The outbox item reaches every node; the leader's delivery
			// fails at least once.
			waitFor(t, "the fanout metrics of "+id, func() bool {
				m = scrape(t, p)
				d, ok := value(t, m, "mimi_fanout_queue_depth", map[string]string{"peer": "b.example"})
				if !ok || d != 1 {
					return false
				}
				if p == leader {
					f, ok := value(t, m, "mimi_fanout_failures_total", map[string]string{"peer": "b.example"})
					return ok && f > 0
				}
				return true
			})
			isLeader := mustValue(t, m, "mimi_raft_is_leader", nil)
			leaders += isLeader
			if (isLeader == 1) != (p == leader) {
				t.Errorf("%s: is_leader %v", id, isLeader)
			}
			if v := mustValue(t, m, "mimi_node_info", map[string]string{"domain": "a.example", "node_id": id}); v != 1 {
				t.Errorf("%s: node_info %v", id, v)
			}
			term, commit, applied, last := mustValue(t, m, "mimi_raft_term", nil), mustValue(t, m, "mimi_raft_commit_index", nil),
				mustValue(t, m, "mimi_raft_applied_index", nil), mustValue(t, m, "mimi_raft_last_log_index", nil)
			if term < 1 || applied < 1 || commit < 1 || last < commit {
				t.Errorf("%s: term %v, commit %v, applied %v, last %v", id, term, commit, applied, last)
			}
			mustValue(t, m, "mimi_raft_last_snapshot_index", nil)
			state := "Follower"
			if p == leader {
				state = "Leader"
			}
			if v := mustValue(t, m, "mimi_raft_state", map[string]string{"state": state}); v != 1 {
				t.Errorf("%s: mimi_raft_state{state=%q} %v", id, state, v)
			}
			if v, n := mustValue(t, m, "mimi_raft_voters", nil), mustValue(t, m, "mimi_raft_nonvoters", nil); v != 3 || n != 0 {
				t.Errorf("%s: %v voters, %v non-voters; want 3 and 0", id, v, n)
			}
			contact, ok := value(t, m, "mimi_raft_last_contact_seconds", nil)
			if ok == (p == leader) || contact < 0 {
				t.Errorf("%s: last contact %v (present %v); want it on followers only", id, contact, ok)
			}
			if lag := mustValue(t, m, "mimi_fanout_lag_seconds", map[string]string{"peer": "b.example"}); lag < 0 {
				t.Errorf("%s: fanout lag %v", id, lag)
			}
			if n := mustValue(t, m, "mimi_raft_fsm_apply_duration_seconds_count", nil); n < 1 {
				t.Errorf("%s: %v FSM applies observed", id, n)
			}
			if n := mustValue(t, m, "mimi_raft_commit_duration_seconds_count", nil); p == leader && n < 1 {
				t.Errorf("%s: %v commits observed on the leader", id, n)
			}
			if p == follower {
				if n := mustValue(t, m, "mimi_raft_forward_duration_seconds_count", map[string]string{"result": "ok"}); n < 1 {
					t.Errorf("%s: %v forwarded writes observed", id, n)
				}
				if n := mustValue(t, m, "mimi_http_request_duration_seconds_count", map[string]string{"server": "client", "route": "client.register", "code": "201"}); n < 1 {
					t.Errorf("%s: %v registrations observed", id, n)
				}
			}
			if len(find(m, "go_goroutines", nil)) != 1 {
				t.Errorf("%s: no go_goroutines", id)
			}
			if runtime.GOOS == "linux" && len(find(m, "process_start_time_seconds", nil)) != 1 {
				t.Errorf("%s: no process_start_time_seconds", id)
			}
			// The ops listener's own requests are measured too: the
			// scrapes above, and a refused one.
			opsCall{method: http.MethodGet, path: "/v1/status"}.do(t, p)
			m = scrape(t, p)
			if n := mustValue(t, m, "mimi_http_request_duration_seconds_count", map[string]string{"server": "ops", "route": "GET /metrics", "code": "200"}); n < 1 {
				t.Errorf("%s: %v scrapes observed", id, n)
			}
			if n := mustValue(t, m, "mimi_http_request_duration_seconds_count", map[string]string{"server": "ops", "route": "GET /v1/status", "code": "401"}); n != 1 {
				t.Errorf("%s: %v refused status requests observed", id, n)
			}
		}
		if leaders != 1 {
			t.Errorf("is_leader sums to %v across the nodes, want 1", leaders)
		}
	})

	step(t, "status", func(t *testing.T) {
		if a := (opsCall{method: http.MethodGet, path: "/v1/cluster/status"}).do(t, follower); a.status != http.StatusUnauthorized {
			t.Errorf("cluster status without the token: %d", a.status)
		}
		st := clusterStatus(t, follower)
		if st.ReportedBy != follower.Config.NodeID || st.LeaderID != leader.Config.NodeID || st.Term == 0 {
			t.Errorf("status %+v: want reported by %s, leader %s", st, follower.Config.NodeID, leader.Config.NodeID)
		}
		if v := voters(st); strings.Join(v, ",") != "n1,n2,n3" {
			t.Errorf("voters %v", v)
		}
		for _, s := range st.Servers {
			if s.Info == nil || s.Gossip != cluster.StatusAlive || s.Leader != (s.ID == leader.Config.NodeID) {
				t.Errorf("server %+v: want its report, alive, leader mark on %s", s, leader.Config.NodeID)
			}
		}
		var ops hub.OpsStatus
		admin(t, follower, http.MethodGet, "/v1/status", nil, http.StatusOK).decode(t, &ops)
		if !ops.Ready || ops.NotReady != "" {
			t.Errorf("/v1/status of a caught-up follower: ready %v (%q)", ops.Ready, ops.NotReady)
		}
	})

	var backup []byte
	step(t, "snapshot and restore", func(t *testing.T) {
		a := admin(t, follower, http.MethodGet, "/v1/cluster/snapshot", nil, http.StatusOK)
		backup = a.body
		if !bytes.HasPrefix(backup, []byte("mimi-hub-backup/1\n")) {
			t.Fatalf("backup starts with %q", backup[:min(len(backup), 20)])
		}
		if cd := a.header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename=mimi-hub-a.example-`+follower.Config.NodeID+"-") || !strings.HasSuffix(cd, ".backup") {
			t.Errorf("Content-Disposition %q", cd)
		}
		index, _ := strconv.ParseUint(a.trailer.Get(hub.TrailerBackupIndex), 10, 64)
		size, _ := strconv.Atoi(a.trailer.Get(hub.TrailerBackupSize))
		if index == 0 || size == 0 || size >= len(backup) {
			t.Errorf("trailers %v: want the index and the snapshot's size (the body is %d bytes)", a.trailer, len(backup))
		}
		if n := users(t, leader); n != 2 {
			t.Fatalf("%d users before, want 2", n)
		}
		_, err := client.RegisterMember(opCtx(t), leader.NewUser(t), "carol", "phone", client.MemberConfig{})
		must(t, err, "register carol")
		if n := users(t, leader); n != 3 {
			t.Fatalf("%d users after carol's registration, want 3", n)
		}
		for _, bad := range []struct {
			name string
			body []byte
		}{{"empty", []byte{}}, {"garbage", []byte("not a backup")}} {
			admin(t, follower, http.MethodPost, "/v1/cluster/restore", bad.body, http.StatusBadRequest).wantError(t, "invalid", "not a valid mimi-hub backup")
		}
		var out hub.OpsRestoreAnswer
		admin(t, follower, http.MethodPost, "/v1/cluster/restore", backup, http.StatusOK).decode(t, &out)
		if out.Bytes != len(backup) {
			t.Errorf("restored %d bytes, want %d", out.Bytes, len(backup))
		}
		for _, p := range c.Nodes {
			waitFor(t, p.Config.NodeID+" to hold the restored state", func() bool { return users(t, p) == 2 })
		}
	})

	step(t, "transfer leadership", func(t *testing.T) {
		for _, tc := range []struct {
			name, body, kind, msg string
			want                  int
		}{
			{"unknown server", `{"id":"n9"}`, "invalid", `"n9" is not a voter of this cluster (voters: n1, n2, n3)`, http.StatusBadRequest},
			{"bad JSON", `{"id":`, "invalid", "invalid JSON body", http.StatusBadRequest},
			{"unknown field", `{"node":"n1"}`, "invalid", "unknown field", http.StatusBadRequest},
		} {
			t.Run(tc.name, func(t *testing.T) {
				admin(t, follower, http.MethodPost, "/v1/cluster/transfer-leader", tc.body, tc.want).wantError(t, tc.kind, tc.msg)
			})
		}
		target := follower.Config.NodeID
		var out hub.OpsLeaderAnswer
		admin(t, leader, http.MethodPost, "/v1/cluster/transfer-leader", hub.OpsServerRequest{ID: target}, http.StatusOK).decode(t, &out)
		if out.LeaderID != target || out.LeaderAddr == "" {
			t.Fatalf("after transferring to %s: %+v", target, out)
		}
		if l := c.Leader(t); l != follower {
			t.Fatalf("leader %s, want %s", l.Config.NodeID, target)
		}
		// Without an id, the most up-to-date other voter takes over.
		admin(t, leader, http.MethodPost, "/v1/cluster/transfer-leader", nil, http.StatusOK).decode(t, &out)
		if out.LeaderID == "" || out.LeaderID == target {
			t.Fatalf("after a transfer away from %s: %+v", target, out)
		}
		leader = c.Leader(t)
		if leader.Config.NodeID != out.LeaderID {
			t.Fatalf("leader %s, answer said %s", leader.Config.NodeID, out.LeaderID)
		}
	})

	followers := c.Followers(t)
	step(t, "join", func(t *testing.T) {
		for _, tc := range []struct {
			name, body, msg string
			want            int
		}{
			{"no body", "", "missing JSON body", http.StatusBadRequest},
			{"no addresses", `{"addrs":[]}`, "lists no gossip address", http.StatusBadRequest},
			{"not host:port", `{"addrs":["localhost"]}`, `"localhost" is not a host:port`, http.StatusBadRequest},
			{"too large", `{"addrs":["` + strings.Repeat("x", 70<<10) + `"]}`, "request body over", http.StatusRequestEntityTooLarge},
		} {
			t.Run(tc.name, func(t *testing.T) {
				kind := "invalid"
				if tc.want == http.StatusRequestEntityTooLarge {
					kind = "limit"
				}
				admin(t, followers[0], http.MethodPost, "/v1/cluster/join", tc.body, tc.want).wantError(t, kind, tc.msg)
			})
		}
		var out hub.OpsJoinAnswer
		admin(t, followers[0], http.MethodPost, "/v1/cluster/join", hub.OpsJoinRequest{Addrs: []string{leader.Config.Raft.Gossip.BindAddr}}, http.StatusOK).decode(t, &out)
		if out.Contacted != 1 {
			t.Errorf("contacted %d, want 1", out.Contacted)
		}
	})

	dead, alive := followers[0], followers[1]
	step(t, "remove", func(t *testing.T) {
		for _, tc := range []struct {
			name, body, kind, msg string
			want                  int
		}{
			{"no id", `{}`, "invalid", `"id" names no server`, http.StatusBadRequest},
			{"unknown server", `{"id":"n9"}`, "not_found", `no server "n9" in the Raft configuration (members: n1, n2, n3)`, http.StatusNotFound},
			{"the leader", `{"id":"` + leader.Config.NodeID + `"}`, "conflict", "is the leader; transfer leadership first", http.StatusConflict},
		} {
			t.Run(tc.name, func(t *testing.T) {
				admin(t, alive, http.MethodPost, "/v1/cluster/remove", tc.body, tc.want).wantError(t, tc.kind, tc.msg)
			})
		}
		// With one follower down, removing the other would leave the
		// leader and a dead voter: no live quorum.
		dead.Stop(t)
		waitFor(t, "gossip to see "+dead.Config.NodeID+" fail", func() bool {
			for _, s := range clusterStatus(t, leader).Servers {
				if s.ID == dead.Config.NodeID {
					return s.Gossip == cluster.StatusFailed || s.Gossip == cluster.StatusLeft
				}
			}
			return false
		})
		// (Leadership may have moved while the node stopped.)
		if leader = c.Leader(t); leader == alive {
			alive = c.Followers(t)[0]
		}
		admin(t, leader, http.MethodPost, "/v1/cluster/remove", hub.OpsServerRequest{ID: alive.Config.NodeID}, http.StatusConflict).wantError(t, "conflict", "live quorum")
		// Retiring the dead node is allowed.
		var out hub.OpsRemoveAnswer
		admin(t, alive, http.MethodPost, "/v1/cluster/remove", hub.OpsServerRequest{ID: dead.Config.NodeID}, http.StatusOK).decode(t, &out)
		if out.Removed != dead.Config.NodeID {
			t.Errorf("answer %+v", out)
		}
		want := []string{leader.Config.NodeID, alive.Config.NodeID}
		slices.Sort(want)
		if v := voters(clusterStatus(t, leader)); !slices.Equal(v, want) {
			t.Errorf("voters %v, want %v", v, want)
		}
	})

	step(t, "leave", func(t *testing.T) {
		i := slices.Index(c.Nodes, alive)
		var out hub.OpsLeaveAnswer
		admin(t, alive, http.MethodPost, "/v1/cluster/leave", nil, http.StatusOK).decode(t, &out)
		if out.Left != alive.Config.NodeID || !out.ShuttingDown {
			t.Errorf("answer %+v", out)
		}
		waitFor(t, "OnLeave", func() bool { return left[i].Load() == 1 })
		if v := voters(clusterStatus(t, leader)); !slices.Equal(v, []string{leader.Config.NodeID}) {
			t.Errorf("voters %v, want only the leader", v)
		}
		alive.Stop(t) // as mimi-hub does from OnLeave
		// The last voter cannot leave.
		admin(t, leader, http.MethodPost, "/v1/cluster/leave", nil, http.StatusConflict).wantError(t, "conflict", "is the only voter")
		if status, _ := readyz(t, leader); status != http.StatusOK {
			t.Errorf("readyz of the last voter: %d", status)
		}
		if n := left[i].Load(); n != 1 {
			t.Errorf("OnLeave called %d times, want once", n)
		}
		if left[slices.Index(c.Nodes, leader)].Load() != 0 {
			t.Error("OnLeave called on a node that did not leave")
		}
	})
}

// TestOpsNoLeader runs the operations listener of the first node of a
// 3-node cluster started alone: it never bootstraps, so it knows no
// leader.
func TestOpsNoLeader(t *testing.T) {
	c := testutil.NewCluster(t, testutil.ClusterOptions{Configure: func(i int, cfg *hub.Config) {
		cfg.AdminToken = opsToken
		cfg.Raft.LeaderWait = 300 * time.Millisecond
	}}, 3)
	p := c.Nodes[0]
	p.Launch(t)
	if status, body := readyz(t, p); status != http.StatusServiceUnavailable || body != "not ready: follower: no leader known (an election, or this node is not a member yet)\n" {
		t.Errorf("readyz: %d %q", status, body)
	}
	var ops hub.OpsStatus
	admin(t, p, http.MethodGet, "/v1/status", nil, http.StatusOK).decode(t, &ops)
	if ops.Ready || !strings.Contains(ops.NotReady, "no leader known") {
		t.Errorf("/v1/status: ready %v (%q)", ops.Ready, ops.NotReady)
	}
	if v := voters(clusterStatus(t, p)); len(v) != 0 {
		t.Errorf("voters %v before the bootstrap", v)
	}
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/v1/cluster/transfer-leader", ""},
		{http.MethodGet, "/v1/cluster/snapshot", ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			a := admin(t, p, tc.method, tc.path, body, http.StatusServiceUnavailable)
			a.wantError(t, "unavailable", "no leader right now; retry shortly")
			if a.header.Get("Retry-After") != "1" {
				t.Errorf("Retry-After %q", a.header.Get("Retry-After"))
			}
		})
	}
	admin(t, p, http.MethodPost, "/v1/cluster/remove", `{"id":"n2"}`, http.StatusNotFound).wantError(t, "not_found", `no server "n2" in the Raft configuration (members: none)`)
	m := scrape(t, p)
	for _, tc := range []struct {
		name string
		want float64
	}{{"mimi_raft_is_leader", 0}, {"mimi_raft_voters", 0}, {"mimi_raft_nonvoters", 0}, {"mimi_raft_term", 0}} {
		if v := mustValue(t, m, tc.name, nil); v != tc.want {
			t.Errorf("%s %v, want %v", tc.name, v, tc.want)
		}
	}
	if len(find(m, "mimi_raft_last_contact_seconds", nil)) != 0 {
		t.Error("last contact reported before any")
	}
}

// TestOpsSingleNodeCluster checks the cluster endpoints of a provider
// without gossip (one voter).
func TestOpsSingleNodeCluster(t *testing.T) {
	net := testutil.StartNetwork(t, testutil.Options{}, "a.example")
	p := net.Provider("a.example")
	_, err := client.RegisterMember(opCtx(t), p.NewUser(t), "alice", "phone", client.MemberConfig{})
	must(t, err, "register alice")
	st := clusterStatus(t, p)
	if len(st.Servers) != 1 || !st.Servers[0].Leader || st.Servers[0].Suffrage != "voter" {
		t.Errorf("status %+v", st)
	}
	for _, tc := range []struct {
		name, path, body, kind, msg string
		want                        int
	}{
		{"join without gossip", "/v1/cluster/join", `{"addrs":["127.0.0.1:1"]}`, "conflict", "runs without gossip", http.StatusConflict},
		{"leave as the only voter", "/v1/cluster/leave", "", "conflict", "is the only voter", http.StatusConflict},
		{"remove itself, the leader", "/v1/cluster/remove", `{"id":"a.example"}`, "conflict", "is the leader", http.StatusConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin(t, p, http.MethodPost, tc.path, tc.body, tc.want).wantError(t, tc.kind, tc.msg)
		})
	}
	a := admin(t, p, http.MethodGet, "/v1/cluster/leave", nil, http.StatusMethodNotAllowed)
	a.wantError(t, "invalid", "GET /v1/cluster/leave: use POST")
	if a.header.Get("Allow") != http.MethodPost {
		t.Errorf("Allow %q, want POST", a.header.Get("Allow"))
	}
	var out hub.OpsLeaderAnswer
	admin(t, p, http.MethodPost, "/v1/cluster/transfer-leader", `{"id":"a.example"}`, http.StatusOK).decode(t, &out)
	if out.LeaderID != "a.example" {
		t.Errorf("transfer to itself: %+v", out)
	}
	m := scrape(t, p)
	if v := mustValue(t, m, "mimi_raft_is_leader", nil); v != 1 {
		t.Errorf("is_leader %v", v)
	}
	if v := mustValue(t, m, "mimi_raft_voters", nil); v != 1 {
		t.Errorf("voters %v", v)
	}
	if n := mustValue(t, m, "mimi_raft_commit_duration_seconds_count", nil); n < 1 {
		t.Errorf("%v commits observed", n)
	}
	if len(find(m, "mimi_raft_last_contact_seconds", nil)) != 0 {
		t.Error("last contact reported on the leader")
	}
}
