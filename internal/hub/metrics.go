package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/httpapi"
)

// Prometheus metrics, served on the operations listener at GET /metrics
// from a registry of the Hub's own (several hubs in one process, as in
// tests, do not share one). All names start with mimi_:
//
//	mimi_raft_commit_duration_seconds          histogram: proposal to FSM response, entries proposed on this node (leader)
//	mimi_raft_fsm_apply_duration_seconds       histogram: the FSM applying one entry, every node
//	mimi_raft_forward_duration_seconds{result} histogram: writes forwarded to the leader (result ok, not_leader, timeout, shutdown, canceled, error)
//	mimi_raft_term                             gauge: current term
//	mimi_raft_commit_index                     gauge: highest index known committed
//	mimi_raft_applied_index                    gauge: last index the FSM consumed
//	mimi_raft_last_log_index                   gauge: last index in the log
//	mimi_raft_last_snapshot_index              gauge: index of the latest snapshot (0: none)
//	mimi_raft_is_leader                        gauge: 1 on the leader, else 0
//	mimi_raft_state{state}                     gauge: 1 for the node's state (Leader, Follower, Candidate, Shutdown)
//	mimi_raft_last_contact_seconds             gauge: time since a follower last heard from the leader (followers that have)
//	mimi_raft_voters, mimi_raft_nonvoters      gauge: servers of the latest Raft configuration, by suffrage
//	mimi_fanout_queue_depth{peer}              gauge: outbox items waiting for a peer provider
//	mimi_fanout_lag_seconds{peer}              gauge: age of the oldest waiting item (0 when none waits)
//	mimi_fanout_delivered_total{peer}          counter: items this node delivered while leading
//	mimi_fanout_dropped_total{peer}            counter: items the peer refused for good
//	mimi_fanout_failures_total{peer}           counter: failed delivery attempts
//	mimi_fanout_queue_bytes{peer}              gauge: bytes of the items waiting for a peer provider
//	mimi_fanout_overflow_total{peer}           counter: items dropped undelivered because the peer's queue, or all queues together, were full
//	mimi_fanout_queue_bytes_limit              gauge: the bound on all peers' queue bytes together (-outbox-total-bytes)
//
// The fanout series name a peer only while something waits for it (its
// queue exists; for the delivery counters, while this node's loop for it
// runs): the state forgets a peer's queue once it empties, so a member who
// names ever more domains cannot grow the label set. A forgotten peer's
// counts move to the series with an empty peer label (peer=""), so each
// counter summed over peers never goes down; a peer queued to again
// starts from zero, which Prometheus reads as a counter reset.
//
//	mimi_stream_log_entries, _bytes            gauge: room messages stored for local readers (once per room)
//	mimi_stream_log_bytes_limit                gauge: the bound on those bytes (-log-bytes)
//	mimi_stream_inbox_bytes                    gauge: the clients' unacknowledged Welcomes and consent items
//	mimi_stream_log_retention_dropped_total, _bytes_total counter: room messages retention dropped before every local reader had read them (those readers get a gap)
//	mimi_writes_unlogged_total{command}        counter: writes answered from the state without a log entry (refusals and no-ops decided before Raft)
//	mimi_http_connections{server}              gauge: connections a listener holds
//	mimi_http_connections_limit{server}        gauge: the most it holds at once (-max-conns; absent without a bound)
//	mimi_http_connections_refused_total{server} counter: connections closed at once (their address held the most allowed)
//	mimi_state_config_mismatched_nodes         gauge: cluster nodes whose state machine configuration differs from this node's (fsm.Config.Digest)
//	mimi_node_info{domain,node_id}             gauge: always 1
//	mimi_http_request_duration_seconds{server,route,code} histogram: requests by server (federation, client, ops), route name and status code
//
// plus the Go runtime's (go_*) and the process's (process_*) collectors.

// Histogram buckets. Commits and forwards span a LAN round trip to a disk
// sync under load; FSM applies are in-memory work.
var (
	commitBuckets = prometheus.ExponentialBuckets(0.0005, 2, 16)  // 0.5ms .. 16s
	applyBuckets  = prometheus.ExponentialBuckets(0.00001, 2, 18) // 10µs .. 1.3s
	httpBuckets   = prometheus.ExponentialBuckets(0.001, 2, 16)   // 1ms .. 33s
)

// metrics is a hub's registry and the instruments fed by the cluster's
// Observer and the HTTP middleware. The Raft and fanout gauges are read
// at scrape time by a hubCollector.
type metrics struct {
	reg      *prometheus.Registry
	commit   prometheus.Histogram
	fsmApply prometheus.Histogram
	forward  *prometheus.HistogramVec
	http     *prometheus.HistogramVec
	// refusals keeps the recent answers of 400 and above (refusals.go).
	refusals *refusalLog
	unlogged *prometheus.CounterVec
	refused  *prometheus.CounterVec
}

// newMetrics returns a registry with the timing instruments and the Go
// runtime and process collectors.
func newMetrics() (*metrics, error) {
	m := &metrics{
		reg:      prometheus.NewRegistry(),
		refusals: newRefusalLog(),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mimi_raft_commit_duration_seconds",
			Help:    "Time from proposing an entry on this node (the leader) to the FSM's response: replication, commit and apply.",
			Buckets: commitBuckets,
		}),
		fsmApply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mimi_raft_fsm_apply_duration_seconds",
			Help:    "Time the state machine took to apply one log entry.",
			Buckets: applyBuckets,
		}),
		forward: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mimi_raft_forward_duration_seconds",
			Help:    "Round trip of a write this node forwarded to the leader, by result.",
			Buckets: commitBuckets,
		}, []string{"result"}),
		http: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mimi_http_request_duration_seconds",
			Help:    "HTTP request duration by server (federation, client, ops), route name and status code.",
			Buckets: httpBuckets,
		}, []string{"server", "route", "code"}),
		unlogged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mimi_writes_unlogged_total",
			Help: "Writes answered from the replicated state without a log entry (refusals and no-ops decided before Raft), by command type.",
		}, []string{"command"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mimi_http_connections_refused_total",
			Help: "Connections closed as soon as accepted because their source address held the most a listener allows.",
		}, []string{"server"}),
	}
	for _, c := range []prometheus.Collector{
		m.commit, m.fsmApply, m.forward, m.http, m.unlogged, m.refused,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("hub: metrics: %w", err)
		}
	}
	return m, nil
}

// Committed implements cluster.Observer.
func (m *metrics) Committed(d time.Duration) { m.commit.Observe(d.Seconds()) }

// FSMApplied implements cluster.Observer.
func (m *metrics) FSMApplied(d time.Duration) { m.fsmApply.Observe(d.Seconds()) }

// Forwarded implements cluster.Observer.
func (m *metrics) Forwarded(d time.Duration, err error) {
	m.forward.WithLabelValues(forwardResult(err)).Observe(d.Seconds())
}

// connRefused returns the counter of server's refused connections.
func (m *metrics) connRefused(server string) func() {
	c := m.refused.WithLabelValues(server)
	return c.Inc
}

// AnsweredUnlogged implements cluster.Observer.
func (m *metrics) AnsweredUnlogged(command string) { m.unlogged.WithLabelValues(command).Inc() }

// forwardResult names the outcome of a forwarded write for its label.
func forwardResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, cluster.ErrNotLeader):
		return "not_leader"
	case errors.Is(err, cluster.ErrShutdown):
		return "shutdown"
	case errors.Is(err, cluster.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}

// observer returns the Observer to give the Raft node: the metrics, and
// also other when the caller configured one.
func (m *metrics) observer(other cluster.Observer) cluster.Observer {
	if other == nil {
		return m
	}
	return teeObserver{m, other}
}

// teeObserver passes every timing to each of its observers.
type teeObserver []cluster.Observer

func (t teeObserver) Committed(d time.Duration) {
	for _, o := range t {
		o.Committed(d)
	}
}

func (t teeObserver) FSMApplied(d time.Duration) {
	for _, o := range t {
		o.FSMApplied(d)
	}
}

func (t teeObserver) Forwarded(d time.Duration, err error) {
	for _, o := range t {
		o.Forwarded(d, err)
	}
}

func (t teeObserver) AnsweredUnlogged(command string) {
	for _, o := range t {
		o.AnsweredUnlogged(command)
	}
}

// handler serves the registry in the Prometheus exposition formats.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// instrumented returns api with the HTTP duration middleware of server
// ("federation" or "client") added; routes are labelled by their names.
func (m *metrics) instrumented(api httpapi.Config, server string) httpapi.Config {
	api.Middleware = append(append([]func(http.Handler) http.Handler(nil), api.Middleware...), m.middleware(server, httpapi.RouteName))
	return api
}

// middleware observes each request's duration, labelled with server, the
// route route(r) names once the request has been served ("unmatched" if
// none) and the status code.
func (m *metrics) middleware(server string, route func(*http.Request) string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			cw := &codeWriter{ResponseWriter: w}
			defer func() {
				name := route(r)
				if name == "" {
					name = "unmatched"
				}
				code := cw.code
				if code == 0 {
					code = http.StatusOK
				}
				m.http.WithLabelValues(server, name, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
				if code >= 400 {
					m.refusals.add(server, name, code, cw.errBody)
				}
			}()
			next.ServeHTTP(cw, r)
		})
	}
}

// codeWriter records the status code of a response, and the start of
// the body of an error answer.
type codeWriter struct {
	http.ResponseWriter
	code    int
	errBody []byte
}

func (w *codeWriter) WriteHeader(code int) {
	// Informational answers (100 Continue, 103 Early Hints) precede the
	// final one.
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *codeWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if w.code >= 400 && len(w.errBody) < maxRefusalBody {
		w.errBody = append(w.errBody, b[:min(len(b), maxRefusalBody-len(w.errBody))]...)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *codeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush forwards to the underlying writer when it can flush (streamed
// answers).
func (w *codeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if w.code == 0 {
			w.code = http.StatusOK
		}
		f.Flush()
	}
}

// Descriptions of the gauges and counters read at scrape time.
var (
	descTerm          = prometheus.NewDesc("mimi_raft_term", "Current Raft term.", nil, nil)
	descCommitIndex   = prometheus.NewDesc("mimi_raft_commit_index", "Highest log index known to be committed.", nil, nil)
	descAppliedIndex  = prometheus.NewDesc("mimi_raft_applied_index", "Index of the last log entry the state machine consumed.", nil, nil)
	descLastLogIndex  = prometheus.NewDesc("mimi_raft_last_log_index", "Index of the last entry in the log.", nil, nil)
	descSnapshotIndex = prometheus.NewDesc("mimi_raft_last_snapshot_index", "Index of the latest snapshot (0: none).", nil, nil)
	descIsLeader      = prometheus.NewDesc("mimi_raft_is_leader", "1 if this node is the Raft leader, else 0.", nil, nil)
	descState         = prometheus.NewDesc("mimi_raft_state", "1 for this node's Raft state, 0 for the others.", []string{"state"}, nil)
	descLastContact   = prometheus.NewDesc("mimi_raft_last_contact_seconds", "Time since this follower last heard from the leader (absent on the leader and before any contact).", nil, nil)
	descVoters        = prometheus.NewDesc("mimi_raft_voters", "Voters in the latest Raft configuration.", nil, nil)
	descNonvoters     = prometheus.NewDesc("mimi_raft_nonvoters", "Non-voters in the latest Raft configuration.", nil, nil)
	descQueueDepth    = prometheus.NewDesc("mimi_fanout_queue_depth", "Outbox items waiting for delivery to a peer provider.", []string{"peer"}, nil)
	descLag           = prometheus.NewDesc("mimi_fanout_lag_seconds", "Age of the oldest outbox item waiting for a peer provider (0 when none waits).", []string{"peer"}, nil)
	descDelivered     = prometheus.NewDesc("mimi_fanout_delivered_total", "Outbox items this node delivered to a peer provider while leading.", []string{"peer"}, nil)
	descDropped       = prometheus.NewDesc("mimi_fanout_dropped_total", "Outbox items a peer provider refused for good.", []string{"peer"}, nil)
	descFailures      = prometheus.NewDesc("mimi_fanout_failures_total", "Failed delivery attempts to a peer provider.", []string{"peer"}, nil)
	descQueueBytes    = prometheus.NewDesc("mimi_fanout_queue_bytes", "Bytes of the outbox items waiting for a peer provider.", []string{"peer"}, nil)
	descQueueOverflow = prometheus.NewDesc("mimi_fanout_overflow_total", "Outbox items dropped undelivered because the peer's queue was full (-outbox-items, -outbox-bytes), or all peers' queues together were (-outbox-total-bytes: the largest queue drops).", []string{"peer"}, nil)
	descQueueLimit    = prometheus.NewDesc("mimi_fanout_queue_bytes_limit", "Bound on the bytes waiting for all peer providers together (-outbox-total-bytes); past it the largest queue drops its oldest.", nil, nil)
	descLogBytes      = prometheus.NewDesc("mimi_stream_log_bytes", "Bytes of room messages stored for local readers (all room logs).", nil, nil)
	descLogEntries    = prometheus.NewDesc("mimi_stream_log_entries", "Room messages stored for local readers (all room logs).", nil, nil)
	descLogBytesLimit = prometheus.NewDesc("mimi_stream_log_bytes_limit", "Bound on the bytes of room messages stored for local readers (-log-bytes); retention drops the oldest beyond it.", nil, nil)
	descRetained      = prometheus.NewDesc("mimi_stream_log_retention_dropped_total", "Room messages retention (age, per-room and -log-bytes bounds) dropped before every local reader had read them; those readers get a gap. Counts from the node's start or its last snapshot install.", nil, nil)
	descRetainedBytes = prometheus.NewDesc("mimi_stream_log_retention_dropped_bytes_total", "Bytes of the room messages mimi_stream_log_retention_dropped_total counts.", nil, nil)
	descInboxBytes    = prometheus.NewDesc("mimi_stream_inbox_bytes", "Bytes of the clients' unacknowledged inbox-only items (Welcomes, consent).", nil, nil)
	descConns         = prometheus.NewDesc("mimi_http_connections", "Connections a listener (federation, client, ops) holds.", []string{"server"}, nil)
	descConnsLimit    = prometheus.NewDesc("mimi_http_connections_limit", "Connections a listener (federation, client, ops) holds at most (-max-conns); more wait. Absent without a bound.", []string{"server"}, nil)
	descStateMismatch = prometheus.NewDesc("mimi_state_config_mismatched_nodes", "Cluster nodes (gossip members not failed or gone) whose state machine configuration (the -retention, -log-bytes, -room-log-*, -inbox-*, -outbox-* and -max-subscriptions bounds, the domain, -require-consent) differs from this node's: the replicated bounds change only once every node is configured alike.", nil, nil)
	descNodeInfo      = prometheus.NewDesc("mimi_node_info", "Always 1; names this node's provider domain and Raft node id.", []string{"domain", "node_id"}, nil)
)

// raftStates are the values of mimi_raft_state's label.
var raftStates = []string{"Leader", "Follower", "Candidate", "Shutdown"}

// hubCollector reads a hub's Raft and fanout state at scrape time.
type hubCollector struct {
	h *Hub
}

// Describe implements prometheus.Collector.
func (c hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descTerm, descCommitIndex, descAppliedIndex, descLastLogIndex, descSnapshotIndex, descIsLeader, descState,
		descLastContact, descVoters, descNonvoters, descQueueDepth, descLag, descQueueBytes, descQueueOverflow, descQueueLimit, descLogBytes, descLogBytesLimit, descLogEntries, descRetained, descRetainedBytes, descInboxBytes, descConns, descConnsLimit, descDelivered, descDropped, descFailures, descStateMismatch, descNodeInfo,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c hubCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.h
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descNodeInfo, 1, h.cfg.Domain, h.node.ID())

	st := h.node.Stats()
	gauge(descTerm, float64(st.Term))
	gauge(descCommitIndex, float64(st.CommitIndex))
	gauge(descAppliedIndex, float64(st.FSMIndex))
	gauge(descLastLogIndex, float64(st.LastLogIndex))
	gauge(descSnapshotIndex, float64(st.LastSnapshotIndex))
	leader := st.State == "Leader"
	gauge(descIsLeader, boolValue(leader))
	for _, s := range raftStates {
		gauge(descState, boolValue(st.State == s), s)
	}
	if !leader && !st.LastContact.IsZero() {
		gauge(descLastContact, time.Since(st.LastContact).Seconds())
	}
	if voters, nonvoters, ok := h.suffrageCounts(); ok {
		gauge(descVoters, float64(voters))
		gauge(descNonvoters, float64(nonvoters))
	}

	var depth map[string]fsm.PeerDepth
	var counts fsm.Counts
	var bounds fsm.Bounds // what the state applies: replicated, or this node's own until then
	_ = h.fsm.Read(func(s *fsm.State) error {
		depth, counts = s.OutboxDepth(), s.Counts()
		bounds, _ = s.Bounds()
		return nil
	})
	gauge(descLogBytes, float64(counts.LogBytes))
	gauge(descLogBytesLimit, float64(bounds.Retention.TotalBytes))
	gauge(descQueueLimit, float64(bounds.OutboxTotalBytes))
	gauge(descStateMismatch, float64(len(h.node.StateConfigMismatches())))
	gauge(descLogEntries, float64(counts.LogEntries))
	gauge(descInboxBytes, float64(counts.InboxBytes))
	counter(descQueueOverflow, counts.OutboxDroppedGone, forgottenPeer)
	counter(descRetained, counts.RetentionDropped)
	counter(descRetainedBytes, uint64(counts.RetentionDroppedBytes))
	for server, l := range h.conns {
		gauge(descConns, float64(l.Open()), server)
		if limit := l.Max(); limit > 0 {
			gauge(descConnsLimit, float64(limit), server)
		}
	}
	now := time.Now()
	for peer, d := range depth {
		gauge(descQueueDepth, float64(d.Items), peer)
		gauge(descQueueBytes, float64(d.Bytes), peer)
		counter(descQueueOverflow, d.Dropped, peer)
		lag := 0.0
		if d.Items > 0 && d.Oldest > 0 {
			lag = max(now.Sub(time.UnixMilli(int64(d.Oldest))).Seconds(), 0)
		}
		gauge(descLag, lag, peer)
	}
	for peer, s := range h.delivery.Stats() {
		counter(descDelivered, s.Delivered, peer)
		counter(descDropped, s.Dropped, peer)
		counter(descFailures, s.Failures, peer)
	}
	gone := h.delivery.Forgotten()
	counter(descDelivered, gone.Delivered, forgottenPeer)
	counter(descDropped, gone.Dropped, forgottenPeer)
	counter(descFailures, gone.Failures, forgottenPeer)
}

// forgottenPeer is the peer label of the counts of peers forgotten since
// (no domain is empty).
const forgottenPeer = ""

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
