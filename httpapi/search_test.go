package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestIdentifierQueryRate: every identifier query is a pass over the
// provider's users (BenchmarkIdentifierQuery in fsm), so an account and a
// peer each have a search budget beside the request budget; past it, 429
// with Retry-After, and another account or peer still searches.
func TestIdentifierQueryRate(t *testing.T) {
	e := newEnv(t, "a.example", func(c *Config) {
		c.RateLimits = NoRateLimits
		c.RateLimits.Search = Rate{Every: time.Hour, Burst: 3}
		c.RateLimits.PeerSearch = Rate{Every: time.Hour, Burst: 2}
	})
	mallory, alice := e.register("mallory", "x"), e.register("alice", "phone")
	query := map[string]any{"domain": "a.example", "type": "wholeProfile", "value": "a"}
	for i := range 3 {
		want(t, e.apiDo(http.MethodPost, "/v1/identifiers", mallory.token, query), http.StatusOK, fmt.Sprint("search ", i))
	}
	rec := e.apiDo(http.MethodPost, "/v1/identifiers", mallory.token, query)
	wantJSONError(t, rec, http.StatusTooManyRequests, kindLimit, "a search over the account's budget")
	if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 || ra > 3600 {
		t.Fatalf("Retry-After %q", rec.Header().Get("Retry-After"))
	}
	want(t, e.apiDo(http.MethodPost, "/v1/identifiers", alice.token, query), http.StatusOK, "another account")

	body := wire.MustMarshal(&proto.IdentifierRequest{Type: proto.SearchWholeProfile, Value: "a"})
	for i := range 2 {
		want(t, e.fedDo(http.MethodPost, "/identifierQuery/a.example", "b.example", body), http.StatusOK, fmt.Sprint("peer search ", i))
	}
	rec = e.fedDo(http.MethodPost, "/identifierQuery/a.example", "b.example", body)
	wantTextError(t, rec, http.StatusTooManyRequests, "identifier queries", "a search over the peer's budget")
	if rec.Header().Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	want(t, e.fedDo(http.MethodPost, "/identifierQuery/a.example", "c.example", body), http.StatusOK, "another peer")
}
