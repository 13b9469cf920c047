package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestRoomInfoCostsBudget: a room's description lists every participant,
// and a room may have 100,000 (issue 15): a participant asking for it
// again and again must pay for the answers as for a tree it fetches, or
// one member keeps the node encoding megabytes of JSON. Once the byte
// budget is in debt: 429 with Retry-After.
func TestRoomInfoCostsBudget(t *testing.T) {
	e := newEnv(t, "a.example", func(c *Config) {
		c.ClientBudget = Budget{Requests: 1000, Bytes: 1024} // bursts of 8 KiB
	})
	alice := e.register("alice", "phone")
	id := e.createRoom(alice, "big")
	untilOverBudget(t, "room info", http.StatusOK, func() *httptest.ResponseRecorder {
		return e.apiDo(http.MethodGet, roomPath(id, ""), alice.token, nil)
	})
}
