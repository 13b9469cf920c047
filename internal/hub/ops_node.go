package hub

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Drill endpoints: disruptions an operator (or mimictl drill) causes on
// purpose, one node at a time.
//
//	POST /v1/node/step-down   this node, if it leads, hands leadership to another voter -> OpsLeaderAnswer; 409 if it does not lead
//	POST /v1/node/pause       OpsPauseRequest: this node stops accepting client and federation requests for N seconds -> OpsPauseAnswer
//
// A paused node answers every client API and federation request with 503
// and Retry-After, and /readyz with 503, so load balancers and clients go
// elsewhere; Raft, gossip and fanout delivery go on. It is in memory
// only: a restart ends it.

// MaxPause bounds POST /v1/node/pause.
const MaxPause = 10 * time.Minute

// OpsPauseRequest is the body of POST /v1/node/pause.
type OpsPauseRequest struct {
	// Seconds is how long the node refuses requests; 0 ends a pause.
	Seconds float64 `json:"seconds"`
}

// OpsPauseAnswer answers POST /v1/node/pause.
type OpsPauseAnswer struct {
	Node string `json:"node"`
	// Until is when the node accepts requests again; nil when it does now.
	Until *time.Time `json:"until,omitempty"`
}

// pausedUntil returns the end of the node's pause (zero if none).
func (h *Hub) pausedUntil() time.Time {
	ns := h.ops.pausedUntil.Load()
	if ns == 0 || time.Now().UnixNano() >= ns {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// acceptingOnly answers 503 while the node is paused.
func (h *Hub) acceptingOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if until := h.pausedUntil(); !until.IsZero() {
			left := time.Until(until)
			w.Header().Set("Retry-After", strconv.Itoa(int(left.Seconds())+1))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			b, _ := json.Marshal(struct {
				Error string `json:"error"`
				Kind  string `json:"kind"`
			}{fmt.Sprintf("this node is not accepting requests for %s more (paused by an operator); try another node", left.Round(time.Millisecond)), "unavailable"})
			w.Write(append(b, '\n'))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// opsPause serves POST /v1/node/pause.
func (h *Hub) opsPause(w http.ResponseWriter, r *http.Request) {
	var req OpsPauseRequest
	if !decodeOps(w, r, &req, false) {
		return
	}
	d := time.Duration(req.Seconds * float64(time.Second))
	if req.Seconds < 0 || d > MaxPause {
		opsError(w, http.StatusBadRequest, fmt.Sprintf("pause: seconds must be between 0 and %d", int(MaxPause.Seconds())))
		return
	}
	out := OpsPauseAnswer{Node: h.node.ID()}
	if d == 0 {
		h.ops.pausedUntil.Store(0)
		h.cfg.Logger.Warn("pause ended on request")
	} else {
		until := time.Now().Add(d)
		h.ops.pausedUntil.Store(until.UnixNano())
		out.Until = timePtr(until)
		h.cfg.Logger.Warn("paused on request: refusing client and federation requests", "for", d)
	}
	writeJSON(w, out)
}

// opsStepDown serves POST /v1/node/step-down.
func (h *Hub) opsStepDown(w http.ResponseWriter, r *http.Request) {
	if !h.node.IsLeader() {
		leader, _ := h.node.Leader()
		opsError(w, http.StatusConflict, fmt.Sprintf("step down: %s does not lead (the leader is %q)", h.node.ID(), leader))
		return
	}
	h.transferLeadership(w, r, "step down", "")
}
