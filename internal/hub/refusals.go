package hub

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Refusals the dashboard shows: every answer of 400 or above on the three
// servers (but /healthz and /readyz, which orchestrators poll), kept as the
// last maxRefusals in memory with a count per server and status since the
// node started. They are this node's own; each node keeps its own.
const (
	maxRefusals = 100
	// maxRefusalMessage bounds the error text kept per refusal, of the
	// first maxRefusalBody bytes of the answer.
	maxRefusalMessage = 240
	maxRefusalBody    = 1024
)

// Refusal is one refused request as the dashboard lists it.
type Refusal struct {
	At     time.Time `json:"at"`
	Server string    `json:"server"`
	Route  string    `json:"route"`
	Status int       `json:"status"`
	// Message is the start of the answer's error text.
	Message string `json:"message,omitempty"`
}

// refusalLog keeps the recent refusals and the counts.
type refusalLog struct {
	mu     sync.Mutex
	recent []Refusal
	counts map[string]uint64 // "server status", e.g. "client 409"
}

func newRefusalLog() *refusalLog { return &refusalLog{counts: map[string]uint64{}} }

// add records a refusal; body is the start of the answer.
func (l *refusalLog) add(server, route string, status int, body []byte) {
	if route == "GET /healthz" || route == "GET /readyz" {
		return
	}
	r := Refusal{At: time.Now().UTC(), Server: server, Route: route, Status: status, Message: errorText(body)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recent) == maxRefusals {
		l.recent = slices.Delete(l.recent, 0, 1)
	}
	l.recent = append(l.recent, r)
	l.counts[server+" "+strconv.Itoa(status)]++
}

// snapshot returns the recent refusals, newest first, and the counts.
func (l *refusalLog) snapshot() ([]Refusal, map[string]uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := slices.Clone(l.recent)
	slices.Reverse(out)
	return out, maps.Clone(l.counts)
}

// errorText extracts the message of a JSON error answer ({"error": ...}
// or {"message": ...}), else the text itself, shortened.
func errorText(body []byte) string {
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	text := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil {
		text = e.Error
		if text == "" {
			text = e.Message
		}
	}
	if len(text) > maxRefusalMessage {
		text = strings.ToValidUTF8(text[:maxRefusalMessage], "") + "..."
	}
	return text
}
