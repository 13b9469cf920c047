package client

import (
	"context"
	"fmt"
	"testing"
)

// TestDirectoryCacheBounded: a hostile peer makes this provider look up
// ever new domains (names under a wildcard DNS record of its own, each
// answering that it has no directory, which is cached), for instance by
// asking the hub to relay key material claims to them. The cache keeps at
// most maxCachedDirectories entries, dropping the expired and then those
// that expire first; a fresh entry still answers from the cache.
func TestDirectoryCacheBounded(t *testing.T) {
	ca := newTestCA(t)
	peer := newTestPeer(t, ca)
	f := newTestFederation(t, ca, peer.srv, nil)
	ctx := context.Background()
	for i := range maxCachedDirectories + 200 {
		if _, err := f.Directory(ctx, fmt.Sprintf("p%d.evil.example", i)); err == nil {
			t.Fatal("the peer has no directory, yet one was returned")
		}
		f.mu.Lock()
		n := len(f.dirs)
		f.mu.Unlock()
		if n > maxCachedDirectories {
			t.Fatalf("after %d domains the directory cache holds %d, at most %d", i+1, n, maxCachedDirectories)
		}
	}
	before := peer.fetches()
	last := fmt.Sprintf("p%d.evil.example", maxCachedDirectories+199)
	if _, err := f.Directory(ctx, last); err == nil || peer.fetches() != before {
		t.Fatalf("the newest domain was not answered from the cache (%d fetches, %d before)", peer.fetches(), before)
	}
}
