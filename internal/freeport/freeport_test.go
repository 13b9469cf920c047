package freeport

import (
	"net"
	"strconv"
	"sync"
	"testing"
)

// TestAddr checks that concurrent callers get distinct, bindable addresses
// below the ephemeral range, never the same one twice.
func TestAddr(t *testing.T) {
	const callers, each = 4, 8
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range each {
				a, err := Addr("127.0.0.1")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[a] {
					t.Errorf("%s handed out twice", a)
				}
				seen[a] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != callers*each {
		t.Fatalf("%d addresses, want %d", len(seen), callers*each)
	}
	for a := range seen {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("address %q", a)
		}
		if p, _ := strconv.Atoi(port); p < Min || p >= Max {
			t.Fatalf("port %d outside [%d, %d)", p, Min, Max)
		}
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("%s is not free: %v", a, err)
		}
		ln.Close()
	}
}
