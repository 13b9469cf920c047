package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/httpapi"
)

func TestForwardResult(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{&cluster.NotLeaderError{}, "not_leader"},
		{fmt.Errorf("apply: %w", cluster.ErrShutdown), "shutdown"},
		{fmt.Errorf("apply: %w", cluster.ErrTimeout), "timeout"},
		{fmt.Errorf("apply: %w", context.DeadlineExceeded), "timeout"},
		{fmt.Errorf("apply: %w", context.Canceled), "canceled"},
		{errors.New("connection refused"), "error"},
	} {
		if got := forwardResult(tc.err); got != tc.want {
			t.Errorf("forwardResult(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// countingObserver counts the timings it receives.
type countingObserver struct{ committed, applied, forwarded, unlogged int }

func (o *countingObserver) Committed(time.Duration)        { o.committed++ }
func (o *countingObserver) FSMApplied(time.Duration)       { o.applied++ }
func (o *countingObserver) Forwarded(time.Duration, error) { o.forwarded++ }
func (o *countingObserver) AnsweredUnlogged(string)        { o.unlogged++ }

func TestObserver(t *testing.T) {
	m, err := newMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if m.observer(nil) != cluster.Observer(m) {
		t.Error("without another observer, the metrics observe alone")
	}
	other := &countingObserver{}
	o := m.observer(other)
	o.Committed(3 * time.Millisecond)
	o.FSMApplied(time.Microsecond)
	o.FSMApplied(time.Microsecond)
	o.Forwarded(time.Millisecond, nil)
	o.Forwarded(time.Millisecond, cluster.ErrNotLeader)
	o.AnsweredUnlogged("fanout")
	if *other != (countingObserver{1, 2, 2, 1}) {
		t.Errorf("the other observer got %+v, want 1 commit, 2 applies, 2 forwards, 1 unlogged", *other)
	}
	text, err := exposition(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"mimi_raft_commit_duration_seconds_count 1",
		"mimi_raft_fsm_apply_duration_seconds_count 2",
		`mimi_raft_forward_duration_seconds_count{result="ok"} 1`,
		`mimi_raft_forward_duration_seconds_count{result="not_leader"} 1`,
		"go_goroutines ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestMiddleware(t *testing.T) {
	for _, tc := range []struct {
		name    string
		route   string
		handler http.HandlerFunc
		code    string
	}{
		{"explicit status", "r.created", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) }, "201"},
		{"body without status", "r.body", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hi")) }, "200"},
		{"nothing written", "r.empty", func(w http.ResponseWriter, r *http.Request) {}, "200"},
		{"error", "r.error", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusConflict) }, "409"},
		{"informational first", "r.continue", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusAccepted)
		}, "202"},
		{"flushed", "r.flush", func(w http.ResponseWriter, r *http.Request) { http.NewResponseController(w).Flush() }, "200"},
		{"unmatched", "", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, "404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := newMetrics()
			if err != nil {
				t.Fatal(err)
			}
			h := m.middleware("client", func(*http.Request) string { return tc.route })(tc.handler)
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
			route := tc.route
			if route == "" {
				route = "unmatched"
			}
			text, err := exposition(m)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf(`mimi_http_request_duration_seconds_count{code="%s",route="%s",server="client"} 1`, tc.code, route)
			if !strings.Contains(text, want) || strings.Count(text, "mimi_http_request_duration_seconds_count") != 1 {
				t.Errorf("metrics lack %q, or hold other requests:\n%s", want, text)
			}
		})
	}
}

// exposition renders the registry in the text format.
func exposition(m *metrics) (string, error) {
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		return "", fmt.Errorf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String(), nil
}

func TestInstrumentedKeepsMiddleware(t *testing.T) {
	m, err := newMetrics()
	if err != nil {
		t.Fatal(err)
	}
	base := httpapi.Config{Middleware: make([]func(http.Handler) http.Handler, 1, 4)}
	base.Middleware[0] = func(h http.Handler) http.Handler { return h }
	got := m.instrumented(base, "federation")
	if len(got.Middleware) != 2 || len(base.Middleware) != 1 || &got.Middleware[0] == &base.Middleware[0] {
		t.Errorf("middleware: %d after, %d in the original; want 2 and 1, in a new slice", len(got.Middleware), len(base.Middleware))
	}
}

// TestOpsMetricsRoutes checks that the operations listener labels its
// requests with the route pattern they matched.
func TestOpsMetricsRoutes(t *testing.T) {
	h := startTestHub(t, func(c *Config) { c.AdminToken = "tok" })
	for _, path := range []string{"/healthz", "/readyz", "/v1/status", "/nowhere"} {
		h.get(t, path, "")
	}
	status, body := h.get(t, "/metrics", "")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", status, body)
	}
	for _, want := range []string{
		`mimi_http_request_duration_seconds_count{code="200",route="GET /healthz",server="ops"} 1`,
		`mimi_http_request_duration_seconds_count{code="200",route="GET /readyz",server="ops"} 1`,
		`mimi_http_request_duration_seconds_count{code="401",route="GET /v1/status",server="ops"} 1`,
		`mimi_http_request_duration_seconds_count{code="404",route="unmatched",server="ops"} 1`,
		`mimi_raft_is_leader 1`,
		`mimi_raft_voters 1`,
		`mimi_node_info{domain="a.example",node_id="a.example"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
