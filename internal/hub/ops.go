package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
)

// The operations listener (Config.OpsAddr) is plain HTTP for operators and
// orchestrators, never for users. /healthz, /readyz and /metrics need no
// token; the endpoints under /v1/ and /debug/pprof/ need `Authorization:
// Bearer <Config.AdminToken>`. Every route but /healthz and /readyz checks
// the Host and refuses cross-site browser requests, and every POST must
// declare its body's media type (opsguard.go).
//
//	GET  /healthz                  200 "ok" while the process serves
//	GET  /readyz                   200 "ready" when the node can serve (see Hub.Ready), else 503 and the reason
//	GET  /metrics                  Prometheus metrics (metrics.go)
//	GET  /v1/status                OpsStatus
//	GET  /v1/reports               OpsReports (?after=INDEX&limit=N)
//	GET  /v1/cluster/status        cluster.ClusterStatus: every node, its suffrage, gossip status and own report
//	POST /v1/cluster/transfer-leader  optional OpsServerRequest (no id: the most up-to-date voter) -> OpsLeaderAnswer
//	POST /v1/cluster/leave         this node leaves the cluster for good -> OpsLeaveAnswer; then it stops (Config.OnLeave) or must be stopped
//	POST /v1/cluster/join          OpsJoinRequest: gossip addresses to contact -> OpsJoinAnswer
//	POST /v1/cluster/remove        OpsServerRequest: remove a server (a dead node) from the Raft configuration now -> OpsRemoveAnswer
//	GET  /v1/cluster/snapshot      a backup of the replicated state (application/octet-stream, trailers Mimi-Backup-Index, -Term, -Size)
//	POST /v1/cluster/restore       body: a backup (Content-Type: application/octet-stream); replaces the state on every node -> OpsRestoreAnswer
//	GET  /v1/cluster/keyring       every node's gossip key fingerprints -> OpsKeyring (ops_keyring.go)
//	POST /v1/cluster/keyring       OpsKeyringRequest: install, use or remove a gossip key on every node -> OpsKeyring
//	POST /v1/node/step-down        this node, if it leads, hands leadership over (ops_node.go) -> OpsLeaderAnswer
//	POST /v1/node/pause            OpsPauseRequest: refuse client and federation requests for N seconds -> OpsPauseAnswer
//	GET  /debug/pprof/...          Go's profiles (net/http/pprof; ?seconds at most 60)
//	GET  /                         the operator dashboard's page (and /ui/: its script and style; no token, no data)
//	GET  /v1/dashboard             OpsDashboard: what the dashboard shows
//
// Errors are JSON {"error", "kind"}: 400 for bad input, 401 without the
// token, 403 for a cross-site request, 415 for a body of another media
// type, 421 for a foreign Host, 404 for an unknown
// server, 409 for a refused change (it would cost the quorum, the node is
// the leader, ...), 502 when no gossip peer answered, 503 with Retry-After
// while the cluster has no leader or the node is stopping, 504 when the
// outcome is unknown (see mimictl cluster status).
const (
	// DefaultReportsLimit is the page size of /v1/reports without ?limit.
	DefaultReportsLimit = 100
	// MaxReportsLimit is the largest ?limit /v1/reports accepts.
	MaxReportsLimit = 1000

	// ReadyMaxLag is how many committed log entries a follower's state
	// machine may trail by and still be ready.
	ReadyMaxLag = 128
	// maxOpsRequest bounds the JSON body of an operations request.
	maxOpsRequest = 64 << 10
	// clusterOpTimeout bounds a membership change requested through the
	// operations listener; restoreTimeout a restore, which ships the
	// backup to the leader and installs it.
	clusterOpTimeout = 30 * time.Second
	restoreTimeout   = 5 * time.Minute
	// transferSettle bounds the wait, after a leadership transfer, for
	// the new leader to announce itself.
	transferSettle = 5 * time.Second
)

// OpsStatus is the answer of GET /v1/status: this node's view of its
// provider.
type OpsStatus struct {
	// Domain is the provider's domain.
	Domain string `json:"domain"`
	// NodeID is this node's Raft id.
	NodeID string `json:"node_id"`
	// Ready is /readyz's verdict (see Hub.Ready); NotReady says why not.
	Ready    bool   `json:"ready"`
	NotReady string `json:"not_ready,omitempty"`
	// Raft is the node's Raft state.
	Raft OpsRaft `json:"raft"`
	// StateDigest names this node's state machine configuration
	// (fsm.Config.Digest); StateMismatches lists the cluster nodes that
	// advertise another one. BoundsReplicated says the state applies the
	// bounds the leader set through the log (fsm.Bounds), not this node's
	// own flags (before the first leader has).
	StateDigest      string   `json:"state_digest"`
	StateMismatches  []string `json:"state_mismatches,omitempty"`
	BoundsReplicated bool     `json:"bounds_replicated"`
	// Counts are the replicated state's sizes (as applied on this node).
	Counts OpsCounts `json:"counts"`
	// Peers describes fanout to each peer provider something waits for:
	// the replicated outbox and this node's delivery worker (which only
	// runs on the leader). A peer whose queue emptied is forgotten.
	Peers map[string]OpsPeer `json:"peers"`
	// LastAcceptedAt is the acceptance time of the last command applied;
	// nil before the first.
	LastAcceptedAt *time.Time `json:"last_accepted_at"`
	// PausedUntil is when a pause (POST /v1/node/pause) ends; nil when
	// the node accepts requests.
	PausedUntil *time.Time `json:"paused_until,omitempty"`
	// Now is the node's clock when it answered.
	Now time.Time `json:"now"`
}

// OpsRaft is the Raft part of OpsStatus (see cluster.Stats).
type OpsRaft struct {
	// State is "Leader", "Follower", "Candidate" or "Shutdown".
	State string `json:"state"`
	// Leader reports whether this node is the leader.
	Leader bool `json:"leader"`
	// Addr is this node's Raft address.
	Addr string `json:"addr"`
	// LeaderID and LeaderAddr name the leader this node knows ("" if none).
	LeaderID   string `json:"leader_id"`
	LeaderAddr string `json:"leader_addr"`
	// Term is the current term.
	Term uint64 `json:"term"`
	// LastIndex is the index of the last log entry; CommitIndex the last
	// known committed; AppliedIndex the last handed to the state machine.
	LastIndex    uint64 `json:"last_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// LastSnapshotIndex is the index of the latest snapshot (0: none).
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	// LastContact is when a follower last heard from the leader; nil on
	// the leader and before any contact.
	LastContact *time.Time `json:"last_contact"`
}

// OpsCounts are the sizes of the replicated state (fsm.Counts).
type OpsCounts struct {
	Rooms       int `json:"rooms"`
	Users       int `json:"users"`
	Clients     int `json:"clients"`
	Streams     int `json:"streams"`
	Reports     int `json:"reports"`
	OutboxItems int `json:"outbox_items"`
	// OutboxBytes is the size of what waits for peers.
	OutboxBytes int64 `json:"outbox_bytes"`
	// OutboxDroppedForgotten counts the items dropped undelivered
	// (OpsPeer.Overflowed) from peers' queues that have since emptied:
	// the state forgets such a queue, and Peers lists it no more.
	OutboxDroppedForgotten uint64 `json:"outbox_dropped_forgotten"`
	// LogEntries and LogBytes are the room messages stored for local
	// readers (once per room, not per reader).
	LogEntries int   `json:"log_entries"`
	LogBytes   int64 `json:"log_bytes"`
	// InboxItems and InboxBytes are the clients' unacknowledged Welcomes
	// and consent notices.
	InboxItems int   `json:"inbox_items"`
	InboxBytes int64 `json:"inbox_bytes"`
}

// OpsPeer describes fanout to one peer provider.
type OpsPeer struct {
	// Outbox is the number of items waiting for the peer, OutboxBytes
	// their size.
	Outbox      uint64 `json:"outbox"`
	OutboxBytes int64  `json:"outbox_bytes"`
	// Overflowed counts items dropped undelivered because the peer's
	// queue was full.
	Overflowed uint64 `json:"overflowed"`
	// OldestEnqueued is when the oldest waiting item was queued; nil when
	// none waits.
	OldestEnqueued *time.Time `json:"oldest_enqueued,omitempty"`
	// Delivered, Dropped and Failures count this node's deliveries, items
	// the peer refused for good, and failed attempts, since this node's
	// delivery loop for the peer started (it ends when the queue empties
	// or the node stops leading; the metrics keep the sums).
	Delivered uint64 `json:"delivered"`
	Dropped   uint64 `json:"dropped"`
	Failures  uint64 `json:"failures"`
	// LastError is the last failure ("" if none).
	LastError string `json:"last_error,omitempty"`
	// RetryAt is when the next attempt is due after a failure.
	RetryAt *time.Time `json:"retry_at,omitempty"`
}

// OpsReports is the answer of GET /v1/reports: a page of abuse reports,
// oldest first.
type OpsReports struct {
	// Reports are the reports whose index is above the request's after,
	// at most limit of them.
	Reports []OpsReport `json:"reports"`
	// Next is the index to pass as ?after= for the following page (the
	// last report's index, or the request's after when the page is
	// empty).
	Next uint64 `json:"next"`
	// More reports whether reports follow this page.
	More bool `json:"more"`
	// Total is the number of reports the provider keeps (it drops the
	// oldest beyond its limit).
	Total int `json:"total"`
}

// OpsReport is one abuse report (room.Report) as operators see it.
type OpsReport struct {
	// Index identifies the report and orders the list. It does not change
	// while the provider keeps the report, even as older reports are
	// dropped: it is the hub's acceptance time in milliseconds times 1000
	// plus the report's rank among the reports accepted in the same
	// millisecond.
	Index uint64 `json:"index"`
	// ReceivedAt is when the hub accepted the report.
	ReceivedAt time.Time `json:"received_at"`
	// Room is the room the report is about.
	Room proto.URI `json:"room"`
	// ReportingUser and AllegedAbuser are user URIs.
	ReportingUser proto.URI `json:"reporting_user"`
	AllegedAbuser proto.URI `json:"alleged_abuser"`
	// AllegedAbuserLeaf is the alleged abuser's leaf index, at Epoch.
	AllegedAbuserLeaf uint32 `json:"alleged_abuser_leaf"`
	Epoch             uint64 `json:"epoch"`
	// Reason is the abuse type's name (or its number when unknown) and
	// Note the reporter's free text.
	Reason string `json:"reason"`
	Note   string `json:"note,omitempty"`
	// Messages is the number of reported messages; Verified how many the
	// hub could decrypt with the disclosed keys and found sent by the
	// alleged abuser.
	Messages int `json:"messages"`
	Verified int `json:"verified"`
}

// opsState is the operations listener's state in a Hub.
type opsState struct {
	// readyLeader is whether this node leads and has applied every entry
	// of earlier terms (cluster.Node.WatchLeadership).
	readyLeader atomic.Bool
	// leaveOnce calls Config.OnLeave at most once.
	leaveOnce sync.Once
	// rooms caches the dashboard's room summary.
	rooms roomStats
	// pausedUntil is when a pause asked for through POST /v1/node/pause
	// ends (Unix nanoseconds; 0: not paused).
	pausedUntil atomic.Int64
}

// startOps registers the hub's metrics collector and follows this node's
// leadership for readiness until ctx ends. Start calls it once the
// delivery worker exists.
func (h *Hub) startOps(ctx context.Context) error {
	if err := h.metrics.reg.Register(hubCollector{h}); err != nil {
		return fmt.Errorf("hub: metrics: %w", err)
	}
	leading := h.node.WatchLeadership(ctx)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for v := range leading {
			h.ops.readyLeader.Store(v)
		}
		h.ops.readyLeader.Store(false)
	}()
	return nil
}

// opsHandler serves the operations listener. Every route but /healthz and
// /readyz is behind the guard (opsguard.go).
func (h *Hub) opsHandler() http.Handler {
	g := newOpsGuard(h.cfg.AdminToken, h.cfg.OpsHosts)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if err := h.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", g.wrap(routeChecks{}, h.metrics.handler()))
	methods := map[string]string{} // the method of each /v1/ path
	register := func(method, path string, c routeChecks, f http.Handler) {
		c.token = true
		mux.Handle(method+" "+path, g.wrap(c, f))
		methods[path] = method
	}
	// admin registers an operator endpoint: admin token, JSON bodies.
	admin := func(method, path string, f http.HandlerFunc) { register(method, path, routeChecks{}, f) }
	admin(http.MethodGet, "/v1/status", h.opsStatus)
	admin(http.MethodGet, "/v1/reports", h.opsReports)
	admin(http.MethodGet, "/v1/cluster/status", h.opsClusterStatus)
	admin(http.MethodPost, "/v1/cluster/transfer-leader", h.opsTransferLeader)
	admin(http.MethodPost, "/v1/cluster/leave", h.opsLeave)
	admin(http.MethodPost, "/v1/cluster/join", h.opsJoin)
	admin(http.MethodPost, "/v1/cluster/remove", h.opsRemove)
	admin(http.MethodGet, "/v1/cluster/snapshot", h.opsSnapshot)
	register(http.MethodPost, "/v1/cluster/restore", routeChecks{body: "application/octet-stream"}, http.HandlerFunc(h.opsRestore))
	admin(http.MethodGet, "/v1/cluster/keyring", h.opsKeyringList)
	admin(http.MethodPost, "/v1/cluster/keyring", h.opsKeyringChange)
	admin(http.MethodPost, "/v1/node/step-down", h.opsStepDown)
	admin(http.MethodPost, "/v1/node/pause", h.opsPause)
	h.userOps(admin) // ops_users.go
	mux.Handle("/v1/", g.wrap(routeChecks{token: true}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m, ok := methods[r.URL.Path]; ok {
			w.Header().Set("Allow", m)
			opsError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: use %s", r.Method, r.URL.Path, m))
			return
		}
		opsError(w, http.StatusNotFound, "no such operations endpoint: "+r.Method+" "+r.URL.Path)
	})))
	h.registerPprof(mux, g)
	h.registerDashboard(mux, g, admin)
	return h.metrics.middleware("ops", func(r *http.Request) string { return r.Pattern })(mux)
}

// Ready reports whether this node can serve requests now, and if not why:
// a leader must have applied every entry of earlier terms; a follower must
// know the leader, have heard from it within twice the Raft heartbeat
// timeout, and have applied all but at most ReadyMaxLag committed entries.
// GET /readyz answers it.
func (h *Hub) Ready() error {
	if until := h.pausedUntil(); !until.IsZero() {
		return fmt.Errorf("paused by an operator for %s more", time.Until(until).Round(time.Millisecond))
	}
	st := h.node.Stats()
	switch {
	case st.State == "Shutdown":
		return errors.New("the node is shutting down")
	case st.State == "Leader":
		if !h.ops.readyLeader.Load() {
			return errors.New("leader, but still applying the entries of earlier terms")
		}
		return nil
	case st.LeaderID == "":
		return fmt.Errorf("%s: no leader known (an election, or this node is not a member yet)", strings.ToLower(st.State))
	}
	limit := 2 * h.cfg.Raft.HeartbeatTimeout
	if limit == 0 {
		limit = 2 * cluster.DefaultHeartbeatTimeout
	}
	if st.LastContact.IsZero() {
		return fmt.Errorf("no contact with the leader %s yet", st.LeaderID)
	}
	if age := time.Since(st.LastContact); age > limit {
		return fmt.Errorf("last contact with the leader %s was %s ago (limit %s)", st.LeaderID, age.Round(time.Millisecond), limit)
	}
	if st.CommitIndex > st.FSMIndex && st.CommitIndex-st.FSMIndex > ReadyMaxLag {
		return fmt.Errorf("catching up: applied index %d is %d entries behind the commit index %d", st.FSMIndex, st.CommitIndex-st.FSMIndex, st.CommitIndex)
	}
	return nil
}

// opsStatus serves GET /v1/status.
func (h *Hub) opsStatus(w http.ResponseWriter, r *http.Request) {
	out, err := h.status()
	if err != nil {
		opsError(w, http.StatusInternalServerError, "reading the state: "+err.Error())
		return
	}
	writeJSON(w, out)
}

// status is this node's OpsStatus.
func (h *Hub) status() (OpsStatus, error) {
	st := h.node.Stats()
	out := OpsStatus{
		Domain: h.cfg.Domain,
		NodeID: st.NodeID,
		Ready:  true,
		Raft: OpsRaft{
			State: st.State, Leader: st.State == "Leader", Addr: st.Addr, LeaderID: st.LeaderID, LeaderAddr: st.LeaderAddr,
			Term: st.Term, LastIndex: st.LastLogIndex, CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex,
			LastSnapshotIndex: st.LastSnapshotIndex,
		},
		StateDigest:     h.fsm.Config().Digest(),
		StateMismatches: h.node.StateConfigMismatches(),
		Peers:           map[string]OpsPeer{},
		Now:             time.Now().UTC(),
	}
	if !st.LastContact.IsZero() && !out.Raft.Leader {
		out.Raft.LastContact = timePtr(st.LastContact)
	}
	if err := h.Ready(); err != nil {
		out.Ready, out.NotReady = false, err.Error()
	}
	if until := h.pausedUntil(); !until.IsZero() {
		out.PausedUntil = timePtr(until)
	}
	var depth map[string]fsm.PeerDepth
	err := h.fsm.Read(func(s *fsm.State) error {
		c := s.Counts()
		out.Counts = OpsCounts{Rooms: c.Rooms, Users: c.Users, Clients: c.Clients, Streams: c.Streams, Reports: c.Reports, OutboxItems: c.OutboxItems,
			OutboxBytes: c.OutboxBytes, OutboxDroppedForgotten: c.OutboxDroppedGone, LogEntries: c.LogEntries, LogBytes: c.LogBytes, InboxItems: c.InboxItems, InboxBytes: c.InboxBytes}
		depth = s.OutboxDepth()
		_, out.BoundsReplicated = s.Bounds()
		if at := s.LastAcceptedAt(); at > 0 {
			out.LastAcceptedAt = msTime(at)
		}
		return nil
	})
	if err != nil {
		return OpsStatus{}, err
	}
	for peer, d := range depth {
		p := OpsPeer{Outbox: uint64(d.Items), OutboxBytes: d.Bytes, Overflowed: d.Dropped}
		if d.Items > 0 && d.Oldest > 0 {
			p.OldestEnqueued = msTime(d.Oldest)
		}
		out.Peers[peer] = p
	}
	for peer, s := range h.delivery.Stats() {
		p := out.Peers[peer]
		p.Delivered, p.Dropped, p.Failures, p.LastError = s.Delivered, s.Dropped, s.Failures, s.LastError
		if !s.RetryAt.IsZero() {
			p.RetryAt = timePtr(s.RetryAt)
		}
		out.Peers[peer] = p
	}
	return out, nil
}

// opsReports serves GET /v1/reports.
func (h *Hub) opsReports(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, err := queryUint(q.Get("after"), 0)
	if err != nil {
		opsError(w, http.StatusBadRequest, "after: "+err.Error())
		return
	}
	limit, err := queryUint(q.Get("limit"), DefaultReportsLimit)
	if err != nil || limit == 0 || limit > MaxReportsLimit {
		opsError(w, http.StatusBadRequest, fmt.Sprintf("limit: want 1 to %d", MaxReportsLimit))
		return
	}
	var reports []room.Report
	if err := h.fsm.Read(func(s *fsm.State) error {
		reports = s.Reports()
		return nil
	}); err != nil {
		opsError(w, http.StatusInternalServerError, "reading the state: "+err.Error())
		return
	}
	idx := reportIndexes(reports)
	start, _ := slices.BinarySearch(idx, after+1)
	end := min(start+int(limit), len(reports))
	out := OpsReports{Reports: []OpsReport{}, Next: after, More: end < len(reports), Total: len(reports)}
	for i := start; i < end; i++ {
		out.Reports = append(out.Reports, opsReport(idx[i], &reports[i]))
		out.Next = idx[i]
	}
	writeJSON(w, out)
}

// reportIndexes gives each report (in acceptance order, so with
// non-decreasing ReceivedAt) its OpsReport.Index: ReceivedAt*1000 plus its
// rank within its millisecond, and in any case more than the previous
// report's index, so the indexes strictly increase.
func reportIndexes(reports []room.Report) []uint64 {
	out := make([]uint64, len(reports))
	for i := range reports {
		out[i] = reports[i].ReceivedAt * 1000
		if i > 0 && out[i] <= out[i-1] {
			out[i] = out[i-1] + 1
		}
	}
	return out
}

func opsReport(index uint64, r *room.Report) OpsReport {
	o := OpsReport{Index: index, ReceivedAt: *msTime(r.ReceivedAt), Room: r.Room, Verified: r.Verified}
	if b := r.Body; b != nil {
		o.ReportingUser, o.AllegedAbuser, o.AllegedAbuserLeaf, o.Epoch = b.ReportingUser, b.AllegedAbuser, b.AllegedAbuserAt, b.Epoch
		o.Reason, o.Note, o.Messages = AbuseTypeName(b.Reason), b.Note, len(b.Messages)
	}
	return o
}

// AbuseTypeName names an abuse type as the operations API and mimictl do:
// spam, harassment, hate, violence, sexual, impersonation, illegal, other,
// or the number of an unknown type.
func AbuseTypeName(t proto.AbuseType) string {
	switch t {
	case proto.AbuseSpam:
		return "spam"
	case proto.AbuseHarassment:
		return "harassment"
	case proto.AbuseHate:
		return "hate"
	case proto.AbuseViolence:
		return "violence"
	case proto.AbuseSexual:
		return "sexual"
	case proto.AbuseImpersonation:
		return "impersonation"
	case proto.AbuseIllegal:
		return "illegal"
	case proto.AbuseOther:
		return "other"
	}
	return strconv.Itoa(int(t))
}

func queryUint(v string, def uint64) (uint64, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a non-negative integer", v)
	}
	return n, nil
}

func msTime(ms uint64) *time.Time {
	t := time.UnixMilli(int64(ms)).UTC()
	return &t
}

func timePtr(t time.Time) *time.Time {
	t = t.UTC()
	return &t
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		opsError(w, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(b, '\n'))
}

// opsError writes a JSON error body like the client API's.
func opsError(w http.ResponseWriter, status int, msg string) {
	kind := "invalid"
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusMisdirectedRequest:
		kind = "not_allowed"
	case http.StatusUnsupportedMediaType:
		kind = "invalid"
	case http.StatusNotFound:
		kind = "not_found"
	case http.StatusConflict:
		kind = "conflict"
	case http.StatusRequestEntityTooLarge:
		kind = "limit"
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		kind = "unavailable"
	case http.StatusInternalServerError:
		kind = "internal"
	}
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
		Kind  string `json:"kind"`
	}{msg, kind})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// OpsServerRequest is the body of POST /v1/cluster/remove and, optionally,
// of POST /v1/cluster/transfer-leader: a server's Raft node id.
type OpsServerRequest struct {
	ID string `json:"id"`
}

// OpsLeaderAnswer answers POST /v1/cluster/transfer-leader: the leader
// once the transfer is done (empty if none announced itself in time).
type OpsLeaderAnswer struct {
	LeaderID   string `json:"leader_id"`
	LeaderAddr string `json:"leader_addr"`
}

// OpsRemoveAnswer answers POST /v1/cluster/remove.
type OpsRemoveAnswer struct {
	// Removed is the id of the server no longer in the configuration.
	Removed string `json:"removed"`
}

// OpsLeaveAnswer answers POST /v1/cluster/leave.
type OpsLeaveAnswer struct {
	// Left is the id of the node that left (the one asked).
	Left string `json:"left"`
	// ShuttingDown reports whether the node is stopping by itself
	// (Config.OnLeave is set, as in mimi-hub); if not, stop it now.
	ShuttingDown bool `json:"shutting_down"`
}

// OpsJoinRequest is the body of POST /v1/cluster/join: gossip addresses
// (host:port) of nodes to contact.
type OpsJoinRequest struct {
	Addrs []string `json:"addrs"`
}

// OpsJoinAnswer answers POST /v1/cluster/join.
type OpsJoinAnswer struct {
	// Contacted is the number of nodes that answered.
	Contacted int `json:"contacted"`
}

// OpsRestoreAnswer answers POST /v1/cluster/restore.
type OpsRestoreAnswer struct {
	// Bytes is the size of the backup restored.
	Bytes int `json:"bytes"`
}

// Backup trailers of GET /v1/cluster/snapshot: the snapshot's last log
// index and term, and its size (the body's size less the backup header).
// They arrive only when the whole backup was written.
const (
	TrailerBackupIndex = "Mimi-Backup-Index"
	TrailerBackupTerm  = "Mimi-Backup-Term"
	TrailerBackupSize  = "Mimi-Backup-Size"
)

// raftServers returns the latest Raft configuration (from this node's
// log, no network) as status entries.
func (h *Hub) raftServers() ([]cluster.ServerStatus, error) {
	servers, err := h.node.Servers()
	if err != nil {
		return nil, err
	}
	out := make([]cluster.ServerStatus, 0, len(servers))
	for _, s := range servers {
		suffrage := "nonvoter"
		if s.Voter {
			suffrage = "voter"
		}
		out = append(out, cluster.ServerStatus{ID: s.ID, RaftAddr: s.RaftAddr, Suffrage: suffrage})
	}
	return out, nil
}

// suffrageCounts counts the voters and non-voters of the latest Raft
// configuration; ok is false if it could not be read.
func (h *Hub) suffrageCounts() (voters, nonvoters int, ok bool) {
	servers, err := h.node.Servers()
	if err != nil {
		return 0, 0, false
	}
	for _, s := range servers {
		if s.Voter {
			voters++
		} else {
			nonvoters++
		}
	}
	return voters, nonvoters, true
}

// findServer looks a server up in the latest Raft configuration.
func findServer(servers []cluster.ServerStatus, id string) (cluster.ServerStatus, bool) {
	for _, s := range servers {
		if s.ID == id {
			return s, true
		}
	}
	return cluster.ServerStatus{}, false
}

// countSuffrage counts the servers of a suffrage.
func countSuffrage(servers []cluster.ServerStatus, suffrage string) int {
	n := 0
	for _, s := range servers {
		if s.Suffrage == suffrage {
			n++
		}
	}
	return n
}

// serverIDs lists servers' ids of a suffrage ("" for all), for messages.
func serverIDs(servers []cluster.ServerStatus, suffrage string) string {
	var ids []string
	for _, s := range servers {
		if suffrage == "" || s.Suffrage == suffrage {
			ids = append(ids, s.ID)
		}
	}
	slices.Sort(ids)
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// clusterError answers a failed cluster operation: no leader or a node
// stopping is 503 with Retry-After, an unknown outcome 504, and any other
// failure status (the operation was refused or failed).
func (h *Hub) clusterError(w http.ResponseWriter, r *http.Request, op string, err error, status int) {
	switch {
	case errors.Is(err, cluster.ErrNotLeader):
		status = http.StatusServiceUnavailable
		err = fmt.Errorf("the cluster has no leader right now; retry shortly (%w)", err)
	case errors.Is(err, cluster.ErrShutdown):
		status = http.StatusServiceUnavailable
		err = fmt.Errorf("this node is shutting down; ask another node (%w)", err)
	case errors.Is(err, cluster.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
		err = fmt.Errorf("timed out; the outcome is unknown, check the cluster's status (%w)", err)
	case errors.Is(err, context.Canceled):
		status = http.StatusServiceUnavailable
	}
	level := slog.LevelWarn
	if status == http.StatusInternalServerError {
		level = slog.LevelError
	}
	h.cfg.Logger.Log(r.Context(), level, "operations request failed", "op", op, "status", status, "err", err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	opsError(w, status, op+": "+err.Error())
}

// decodeOps decodes a JSON request body into v strictly; an empty body
// leaves v as it is when optional.
func decodeOps(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxOpsRequest))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	switch {
	case err == nil:
		return true
	case errors.Is(err, io.EOF) && optional:
		return true
	case errors.Is(err, io.EOF):
		opsError(w, http.StatusBadRequest, "missing JSON body")
	default:
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			opsError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", maxOpsRequest))
			return false
		}
		opsError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
	}
	return false
}

// opsClusterStatus serves GET /v1/cluster/status.
func (h *Hub) opsClusterStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), clusterOpTimeout)
	defer cancel()
	st, err := h.node.Status(ctx)
	if err != nil {
		h.clusterError(w, r, "cluster status", err, http.StatusInternalServerError)
		return
	}
	writeJSON(w, st)
}

// opsTransferLeader serves POST /v1/cluster/transfer-leader.
func (h *Hub) opsTransferLeader(w http.ResponseWriter, r *http.Request) {
	var req OpsServerRequest
	if !decodeOps(w, r, &req, true) {
		return
	}
	if req.ID != "" {
		servers, err := h.raftServers()
		if err != nil {
			h.clusterError(w, r, "transfer leadership", err, http.StatusInternalServerError)
			return
		}
		if s, ok := findServer(servers, req.ID); !ok || s.Suffrage != "voter" {
			opsError(w, http.StatusBadRequest, fmt.Sprintf("transfer leadership: %q is not a voter of this cluster (voters: %s)", req.ID, serverIDs(servers, "voter")))
			return
		}
	}
	h.transferLeadership(w, r, "transfer leadership", req.ID)
}

// transferLeadership hands leadership to the voter id ("" for the most
// up-to-date one) and answers the new leader once it announced itself.
func (h *Hub) transferLeadership(w http.ResponseWriter, r *http.Request, op, id string) {
	ctx, cancel := context.WithTimeout(r.Context(), clusterOpTimeout)
	defer cancel()
	before, _ := h.node.Leader()
	if err := h.node.TransferLeadership(ctx, id); err != nil {
		h.clusterError(w, r, op, err, http.StatusConflict)
		return
	}
	// The new leader announces itself with its first heartbeat.
	var out OpsLeaderAnswer
	settle, cancelSettle := context.WithTimeout(ctx, transferSettle)
	defer cancelSettle()
	for {
		leader, addr := h.node.Leader()
		done := leader != "" && (leader == id || (id == "" && leader != before))
		if done || settle.Err() != nil {
			if leader != "" {
				out = OpsLeaderAnswer{LeaderID: leader, LeaderAddr: addr}
			}
			break
		}
		select {
		case <-settle.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	h.cfg.Logger.Info("leadership transferred on request", "op", op, "from", before, "to", out.LeaderID)
	writeJSON(w, out)
}

// opsLeave serves POST /v1/cluster/leave: this node leaves the cluster.
func (h *Hub) opsLeave(w http.ResponseWriter, r *http.Request) {
	self := h.node.ID()
	servers, err := h.raftServers()
	if err != nil {
		h.clusterError(w, r, "leave", err, http.StatusInternalServerError)
		return
	}
	// A node not (or no longer) in the configuration may leave too: the
	// leader's removal is idempotent, and it still leaves gossip.
	if me, ok := findServer(servers, self); ok && me.Suffrage == "voter" && countSuffrage(servers, "voter") == 1 {
		opsError(w, http.StatusConflict, fmt.Sprintf("leave: %s is the only voter; the cluster would be gone", self))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), clusterOpTimeout)
	defer cancel()
	if err := h.node.Leave(ctx); err != nil {
		h.clusterError(w, r, "leave", err, http.StatusConflict)
		return
	}
	out := OpsLeaveAnswer{Left: self, ShuttingDown: h.cfg.OnLeave != nil}
	h.cfg.Logger.Info("left the cluster on request", "shutting_down", out.ShuttingDown)
	writeJSON(w, out)
	if h.cfg.OnLeave != nil {
		// In its own goroutine: it may close the hub, whose servers wait
		// for this request to finish.
		h.ops.leaveOnce.Do(func() { go h.cfg.OnLeave() })
	}
}

// opsJoin serves POST /v1/cluster/join.
func (h *Hub) opsJoin(w http.ResponseWriter, r *http.Request) {
	var req OpsJoinRequest
	if !decodeOps(w, r, &req, false) {
		return
	}
	if len(req.Addrs) == 0 {
		opsError(w, http.StatusBadRequest, `join: "addrs" lists no gossip address`)
		return
	}
	for _, a := range req.Addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" || port == "" {
			opsError(w, http.StatusBadRequest, fmt.Sprintf("join: %q is not a host:port gossip address", a))
			return
		}
	}
	if h.cfg.Raft.Gossip == nil {
		opsError(w, http.StatusConflict, "join: this node runs without gossip (a single-node provider)")
		return
	}
	k, err := h.node.Join(req.Addrs)
	if err != nil && k == 0 {
		h.clusterError(w, r, "join", err, http.StatusBadGateway)
		return
	}
	h.cfg.Logger.Info("joined gossip peers on request", "addrs", req.Addrs, "contacted", k, "err", err)
	writeJSON(w, OpsJoinAnswer{Contacted: k})
}

// opsRemove serves POST /v1/cluster/remove.
func (h *Hub) opsRemove(w http.ResponseWriter, r *http.Request) {
	var req OpsServerRequest
	if !decodeOps(w, r, &req, false) {
		return
	}
	if req.ID == "" {
		opsError(w, http.StatusBadRequest, `remove: "id" names no server`)
		return
	}
	servers, err := h.raftServers()
	if err != nil {
		h.clusterError(w, r, "remove", err, http.StatusInternalServerError)
		return
	}
	if _, ok := findServer(servers, req.ID); !ok {
		opsError(w, http.StatusNotFound, fmt.Sprintf("remove: no server %q in the Raft configuration (members: %s)", req.ID, serverIDs(servers, "")))
		return
	}
	if leader, _ := h.node.Leader(); leader == req.ID {
		opsError(w, http.StatusConflict, fmt.Sprintf("remove: %s is the leader; transfer leadership first", req.ID))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), clusterOpTimeout)
	defer cancel()
	if err := h.node.RemoveServer(ctx, req.ID); err != nil {
		h.clusterError(w, r, "remove", err, http.StatusConflict)
		return
	}
	h.cfg.Logger.Info("removed a server on request", "id", req.ID)
	writeJSON(w, OpsRemoveAnswer{Removed: req.ID})
}

// opsSnapshot serves GET /v1/cluster/snapshot: it streams a backup. The
// headers go out with the first bytes, so a failure before them is an
// ordinary error answer; a failure after them aborts the connection, and
// the missing trailers tell the client its copy is incomplete.
func (h *Hub) opsSnapshot(w http.ResponseWriter, r *http.Request) {
	name := fmt.Sprintf("mimi-hub-%s-%s-%s.backup", h.cfg.Domain, h.node.ID(), time.Now().UTC().Format("20060102T150405Z"))
	bw := &backupWriter{w: w, name: name}
	info, err := h.node.Backup(r.Context(), bw)
	if err != nil {
		if !bw.started {
			h.clusterError(w, r, "snapshot", err, http.StatusInternalServerError)
			return
		}
		h.cfg.Logger.Error("backup failed while streaming; aborting the answer", "err", err)
		panic(http.ErrAbortHandler)
	}
	w.Header().Set(TrailerBackupIndex, strconv.FormatUint(info.Index, 10))
	w.Header().Set(TrailerBackupTerm, strconv.FormatUint(info.Term, 10))
	w.Header().Set(TrailerBackupSize, strconv.FormatInt(info.Size, 10))
	h.cfg.Logger.Info("backup streamed", "index", info.Index, "term", info.Term, "size", info.Size)
}

// backupWriter sends the backup's headers before its first bytes.
type backupWriter struct {
	w       http.ResponseWriter
	name    string
	started bool
}

func (b *backupWriter) Write(p []byte) (int, error) {
	if !b.started {
		b.started = true
		hdr := b.w.Header()
		hdr.Set("Content-Type", "application/octet-stream")
		hdr.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": b.name}))
		hdr.Set("Cache-Control", "no-store")
		hdr.Set("Trailer", strings.Join([]string{TrailerBackupIndex, TrailerBackupTerm, TrailerBackupSize}, ", "))
		b.w.WriteHeader(http.StatusOK)
	}
	return b.w.Write(p)
}

// opsRestore serves POST /v1/cluster/restore.
func (h *Hub) opsRestore(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, cluster.MaxBackupSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			opsError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("restore: a backup is at most %d bytes", cluster.MaxBackupSize))
			return
		}
		opsError(w, http.StatusBadRequest, "restore: reading the backup: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), restoreTimeout)
	defer cancel()
	if err := h.node.Restore(ctx, body); err != nil {
		if errors.Is(err, cluster.ErrInvalidBackup) {
			opsError(w, http.StatusBadRequest, "restore: "+err.Error()+" (make one with GET /v1/cluster/snapshot)")
			return
		}
		h.clusterError(w, r, "restore", err, http.StatusInternalServerError)
		return
	}
	h.cfg.Logger.Warn("restored a backup on request: the state is the backup's", "bytes", len(body))
	writeJSON(w, OpsRestoreAnswer{Bytes: len(body)})
}
