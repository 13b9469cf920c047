package client

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/proto"
)

// TestDirectoryCacheBounded: a provider's clients name the domains it
// contacts (identifier queries, claims), and every domain that answers
// is cached with its directory (or its absence). A hostile user naming a
// new domain per request (a wildcard DNS name and certificate) must not
// grow the cache without bound: it keeps at most MaxDirectories entries,
// makes room by dropping expired ones, and otherwise caches nothing new.
func TestDirectoryCacheBounded(t *testing.T) {
	ca := newTestCA(t)
	peer := newTestPeer(t, ca)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	const bound = 20
	f := newTestFederation(t, ca, peer.srv, func(c *FederationConfig) { c.Now = clock.Now; c.MaxDirectories = bound })
	ctx := context.Background()
	peer.answer = mimiAnswer(&proto.IdentifierResponse{Code: proto.QueryNotFound})
	cached := func() int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.dirs)
	}
	for i := range 3 * bound {
		if _, err := f.IdentifierQuery(ctx, fmt.Sprintf("d%d.evil.example", i), &proto.IdentifierRequest{Type: proto.SearchHandle, Value: "x"}); err != nil {
			t.Fatal(err)
		}
		if n := cached(); n > bound {
			t.Fatalf("%d directories cached after %d domains, the bound is %d", n, i+1, bound)
		}
	}
	// Once the entries expire, new domains are cached again.
	clock.Advance(DefaultDirectoryTTL + time.Second)
	if _, err := f.IdentifierQuery(ctx, "fresh.example", &proto.IdentifierRequest{Type: proto.SearchHandle, Value: "x"}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	_, ok := f.dirs["fresh.example"]
	f.mu.Unlock()
	if !ok || cached() > bound {
		t.Fatalf("after expiry: fresh.example cached %v, %d entries", ok, cached())
	}
}
