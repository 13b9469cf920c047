package hub

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
)

// The operations listener (Config.OpsAddr) is plain HTTP for operators and
// orchestrators, never for users. /healthz and /readyz are always open;
// the JSON endpoints under /v1/ need `Authorization: Bearer
// <Config.AdminToken>` when an admin token is configured.
//
//	GET /healthz      200 "ok" while the process serves
//	GET /readyz       200 "ready" when the node knows a Raft leader, else 503
//	GET /v1/status    OpsStatus
//	GET /v1/reports   OpsReports (?after=INDEX&limit=N)
const (
	// DefaultReportsLimit is the page size of /v1/reports without ?limit.
	DefaultReportsLimit = 100
	// MaxReportsLimit is the largest ?limit /v1/reports accepts.
	MaxReportsLimit = 1000
)

// OpsStatus is the answer of GET /v1/status: this node's view of its
// provider.
type OpsStatus struct {
	// Domain is the provider's domain.
	Domain string `json:"domain"`
	// NodeID is this node's Raft id.
	NodeID string `json:"node_id"`
	// Raft is the node's Raft state.
	Raft OpsRaft `json:"raft"`
	// Counts are the replicated state's sizes (as applied on this node).
	Counts OpsCounts `json:"counts"`
	// Peers describes fanout to each peer provider: the replicated outbox
	// and this node's delivery worker (which only runs on the leader).
	Peers map[string]OpsPeer `json:"peers"`
	// LastAcceptedAt is the acceptance time of the last command applied;
	// nil before the first.
	LastAcceptedAt *time.Time `json:"last_accepted_at"`
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
}

// OpsPeer describes fanout to one peer provider.
type OpsPeer struct {
	// Outbox is the number of items waiting for the peer.
	Outbox uint64 `json:"outbox"`
	// OldestEnqueued is when the oldest waiting item was queued; nil when
	// none waits.
	OldestEnqueued *time.Time `json:"oldest_enqueued,omitempty"`
	// Delivered, Dropped and Failures count this node's deliveries, items
	// the peer refused for good, and failed attempts, since this node
	// started leading.
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

// opsHandler serves the operations listener.
func (h *Hub) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if id, _ := h.node.Leader(); id == "" {
			http.Error(w, "no leader", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /v1/status", h.adminOnly(http.HandlerFunc(h.opsStatus)))
	mux.Handle("GET /v1/reports", h.adminOnly(http.HandlerFunc(h.opsReports)))
	mux.Handle("/v1/", h.adminOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		opsError(w, http.StatusNotFound, "no such operations endpoint: "+r.Method+" "+r.URL.Path)
	})))
	return mux
}

// adminOnly requires the admin bearer token when one is configured.
func (h *Hub) adminOnly(next http.Handler) http.Handler {
	if h.cfg.AdminToken == "" {
		return next
	}
	// Comparing digests keeps the comparison constant-time whatever the
	// presented token's length.
	want := sha256.Sum256([]byte(h.cfg.AdminToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		scheme, token, ok := strings.Cut(auth, " ")
		got := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mimi-hub ops"`)
			opsError(w, http.StatusUnauthorized, "missing or wrong admin token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// opsStatus serves GET /v1/status.
func (h *Hub) opsStatus(w http.ResponseWriter, r *http.Request) {
	st := h.node.Stats()
	out := OpsStatus{
		Domain: h.cfg.Domain,
		NodeID: st.NodeID,
		Raft: OpsRaft{
			State: st.State, Leader: st.State == "Leader", Addr: st.Addr, LeaderID: st.LeaderID, LeaderAddr: st.LeaderAddr,
			Term: st.Term, LastIndex: st.LastLogIndex, CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex,
			LastSnapshotIndex: st.LastSnapshotIndex,
		},
		Peers: map[string]OpsPeer{},
		Now:   time.Now().UTC(),
	}
	if !st.LastContact.IsZero() && !out.Raft.Leader {
		out.Raft.LastContact = timePtr(st.LastContact)
	}
	var depth map[string][2]uint64
	err := h.fsm.Read(func(s *fsm.State) error {
		c := s.Counts()
		out.Counts = OpsCounts{Rooms: c.Rooms, Users: c.Users, Clients: c.Clients, Streams: c.Streams, Reports: c.Reports, OutboxItems: c.OutboxItems}
		depth = s.OutboxDepth()
		if at := s.LastAcceptedAt(); at > 0 {
			out.LastAcceptedAt = msTime(at)
		}
		return nil
	})
	if err != nil {
		opsError(w, http.StatusInternalServerError, "reading the state: "+err.Error())
		return
	}
	for peer, d := range depth {
		p := OpsPeer{Outbox: d[0]}
		if d[0] > 0 && d[1] > 0 {
			p.OldestEnqueued = msTime(d[1])
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
	writeJSON(w, out)
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
	case http.StatusUnauthorized:
		kind = "not_allowed"
	case http.StatusNotFound:
		kind = "not_found"
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
