package testutil

import (
	"net"
	"strconv"
	"testing"

	"github.com/mimihub/mimi-hub/internal/freeport"
)

// TestFreeAddrs checks FreeAddrs hands out distinct, bindable loopback
// addresses below the ephemeral port range, never the same one twice.
func TestFreeAddrs(t *testing.T) {
	seen := map[string]bool{}
	for range 3 {
		for _, a := range FreeAddrs(t, 8) {
			if seen[a] {
				t.Fatalf("%s handed out twice", a)
			}
			seen[a] = true
			host, port, err := net.SplitHostPort(a)
			if err != nil || host != "127.0.0.1" {
				t.Fatalf("address %q", a)
			}
			if p, _ := strconv.Atoi(port); p < freeport.Min || p >= freeport.Max {
				t.Fatalf("port %d outside [%d, %d)", p, freeport.Min, freeport.Max)
			}
			ln, err := net.Listen("tcp", a)
			if err != nil {
				t.Fatalf("%s is not free: %v", a, err)
			}
			ln.Close()
		}
	}
}
