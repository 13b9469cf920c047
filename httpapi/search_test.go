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

// TestIdentifierAnswersCostBudget: another provider's answer to a relayed
// identifier query is whatever it sends (up to the federation client's
// 64 MiB), re-encoded here as JSON for the client. A user relaying to a
// provider it controls must pay for those answers as for a tree it
// fetches: once its byte budget is in debt, 429 before the relay.
func TestIdentifierAnswersCostBudget(t *testing.T) {
	e := newEnv(t, "a.example", func(c *Config) {
		c.ClientBudget = Budget{Requests: 1000, Bytes: 1024} // bursts of 8 KiB
	})
	mallory := e.register("mallory", "x")
	big := &proto.IdentifierResponse{Code: proto.QuerySuccess}
	for i := range 20 {
		u := proto.UserURI("evil.example", fmt.Sprint("u", i))
		big.URIs = append(big.URIs, u)
		big.Profiles = append(big.Profiles, proto.UserProfile{URI: u, Fields: []proto.ProfileField{{Source: proto.FieldVCardField, Name: "FN", Value: make([]byte, 1024)}}})
	}
	e.peers.ident = big
	query := map[string]any{"domain": "evil.example", "type": "partialName", "value": "u"}
	want(t, e.apiDo(http.MethodPost, "/v1/identifiers", mallory.token, query), http.StatusOK, "a large relayed answer")
	e.peers.taken()
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/identifiers", mallory.token, query), http.StatusTooManyRequests, kindLimit, "the next, in debt")
	if n := len(e.peers.taken()); n != 0 {
		t.Fatal("a query refused for the budget was relayed")
	}
}
