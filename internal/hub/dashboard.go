package hub

import (
	"cmp"
	"context"
	"embed"
	"io/fs"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// The operator dashboard: a page on the operations listener (GET /, its
// script and style under /ui/, embedded in the binary, no external assets)
// that asks for the admin token, keeps it in the tab's sessionStorage and
// polls GET /v1/dashboard with it as a bearer token every two seconds.
// The page itself holds no data; everything it shows comes from
// /v1/dashboard, behind the token. Its Content-Security-Policy allows only
// its own script, style and requests, and no framing.

//go:embed dashboard
var dashboardFiles embed.FS

// dashboardCSP is the page's Content-Security-Policy.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const (
	// dashboardTopRooms is how many rooms the largest and busiest lists
	// hold.
	dashboardTopRooms = 5
	// roomStatsEvery bounds how often the room table is walked for the
	// dashboard; answers in between reuse the last walk.
	roomStatsEvery = 2 * time.Second
	// dashboardClusterTimeout bounds the cluster status a dashboard
	// answer asks the other nodes for.
	dashboardClusterTimeout = 5 * time.Second
)

// OpsDashboard is the answer of GET /v1/dashboard: what the operator
// dashboard shows, as the node asked sees it.
type OpsDashboard struct {
	// Node is this node's status (its fanout table included).
	Node OpsStatus `json:"node"`
	// Cluster lists every node with its own report; ClusterError says
	// why it is missing (the cluster has no leader or the node is
	// stopping).
	Cluster      *cluster.ClusterStatus `json:"cluster,omitempty"`
	ClusterError string                 `json:"cluster_error,omitempty"`
	// Rooms summarizes the hosted rooms.
	Rooms OpsRooms `json:"rooms"`
	// Events are this node's recent cluster events, newest first.
	Events []cluster.Event `json:"events"`
	// Refusals are this node's recent answers of 400 and above, newest
	// first, and RefusalCounts their numbers since it started, by server
	// and status ("client 409").
	Refusals      []Refusal         `json:"refusals"`
	RefusalCounts map[string]uint64 `json:"refusal_counts"`
}

// OpsRooms summarizes the hosted rooms.
type OpsRooms struct {
	Count int `json:"count"`
	// Largest are the rooms with the most members; Busiest those that
	// sequenced the most messages per minute over the last Window
	// seconds (by total messages before a window was measured).
	Largest []OpsRoom `json:"largest"`
	Busiest []OpsRoom `json:"busiest"`
	Window  float64   `json:"window_seconds"`
}

// OpsRoom is one room in OpsRooms.
type OpsRoom struct {
	ID        proto.URI `json:"id"`
	Members   int       `json:"members"`
	Messages  uint64    `json:"messages"`
	Epoch     uint64    `json:"epoch"`
	PerMinute float64   `json:"per_minute"`
}

// roomStats caches the room walk and measures message rates between walks.
// Its memory is one entry per hosted room.
type roomStats struct {
	mu     sync.Mutex
	at     time.Time
	rooms  OpsRooms
	lastAt time.Time
	last   map[proto.URI]uint64 // sequence per room at lastAt
}

// summary returns the rooms summary, walking the rooms at most every
// roomStatsEvery.
func (rs *roomStats) summary(h *Hub) (OpsRooms, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	now := time.Now()
	if !rs.at.IsZero() && now.Sub(rs.at) < roomStatsEvery {
		return rs.rooms, nil
	}
	var sizes []fsm.RoomSize
	if err := h.fsm.Read(func(s *fsm.State) error {
		sizes = s.RoomSizes()
		return nil
	}); err != nil {
		return OpsRooms{}, err
	}
	window := now.Sub(rs.lastAt).Seconds()
	rooms := make([]OpsRoom, len(sizes))
	seqs := make(map[proto.URI]uint64, len(sizes))
	for i, r := range sizes {
		rooms[i] = OpsRoom{ID: r.ID, Members: r.Members, Messages: r.Sequence, Epoch: r.Epoch}
		if prev, ok := rs.last[r.ID]; ok && window > 0 && r.Sequence >= prev {
			rooms[i].PerMinute = float64(r.Sequence-prev) * 60 / window
		}
		seqs[r.ID] = r.Sequence
	}
	out := OpsRooms{Count: len(rooms)}
	if rs.last != nil {
		out.Window = window
	}
	out.Largest = topRooms(rooms, func(a, b OpsRoom) int { return cmp.Or(cmp.Compare(b.Members, a.Members), cmp.Compare(a.ID, b.ID)) })
	out.Busiest = topRooms(rooms, func(a, b OpsRoom) int {
		return cmp.Or(cmp.Compare(b.PerMinute, a.PerMinute), cmp.Compare(b.Messages, a.Messages), cmp.Compare(a.ID, b.ID))
	})
	rs.at, rs.rooms, rs.lastAt, rs.last = now, out, now, seqs
	return out, nil
}

// topRooms returns the first dashboardTopRooms rooms in order.
func topRooms(rooms []OpsRoom, order func(a, b OpsRoom) int) []OpsRoom {
	sorted := slices.SortedFunc(slices.Values(rooms), order)
	return append([]OpsRoom{}, sorted[:min(len(sorted), dashboardTopRooms)]...) // [] rather than null in JSON
}

// opsDashboard serves GET /v1/dashboard.
func (h *Hub) opsDashboard(w http.ResponseWriter, r *http.Request) {
	var out OpsDashboard
	var err error
	if out.Node, err = h.status(); err != nil {
		opsError(w, http.StatusInternalServerError, "reading the state: "+err.Error())
		return
	}
	if out.Rooms, err = h.ops.rooms.summary(h); err != nil {
		opsError(w, http.StatusInternalServerError, "reading the rooms: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dashboardClusterTimeout)
	defer cancel()
	if st, err := h.node.Status(ctx); err != nil {
		out.ClusterError = err.Error()
	} else {
		out.Cluster = &st
	}
	out.Events = append([]cluster.Event{}, h.node.Events()...)
	slices.Reverse(out.Events)
	out.Refusals, out.RefusalCounts = h.metrics.refusals.snapshot()
	if out.Refusals == nil {
		out.Refusals = []Refusal{}
	}
	writeJSON(w, out)
}

// registerDashboard serves the page and its assets (no token: they hold
// no data) and its data (behind the token).
func (h *Hub) registerDashboard(mux *http.ServeMux, g *opsGuard, admin func(method, path string, f http.HandlerFunc)) {
	ui, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		panic(err) // the embedded folder exists: a build without it does not compile
	}
	page := func(next http.Handler) http.Handler {
		return g.wrap(routeChecks{allowCrossSite: true}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hdr := w.Header()
			hdr.Set("Content-Security-Policy", dashboardCSP)
			hdr.Set("X-Frame-Options", "DENY")
			hdr.Set("X-Content-Type-Options", "nosniff")
			hdr.Set("Referrer-Policy", "no-referrer")
			hdr.Set("Cache-Control", "no-cache")
			next.ServeHTTP(w, r)
		}))
	}
	mux.Handle("GET /{$}", page(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, ui, "index.html")
	})))
	mux.Handle("GET /ui/", page(http.StripPrefix("/ui/", http.FileServerFS(ui))))
	mux.Handle("GET /favicon.ico", page(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent) // none; browsers ask anyway
	})))
	admin(http.MethodGet, "/v1/dashboard", h.opsDashboard)
}
