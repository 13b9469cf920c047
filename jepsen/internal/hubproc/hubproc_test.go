package hubproc

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/jepsen/internal/testnet"
)

// fakeBinary writes a script whose -h output lists flags.
func fakeBinary(t *testing.T, flags ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("#!/bin/sh\ncat >&2 <<'EOF'\nUsage of mimi-hub:\n")
	for _, f := range flags {
		b.WriteString("  -" + f + " string\n    \tsomething\n")
	}
	b.WriteString("EOF\n")
	p := filepath.Join(t.TempDir(), "mimi-hub")
	if err := os.WriteFile(p, []byte(b.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInspectAndArgs(t *testing.T) {
	single := []string{"domain", "data", "federation-addr", "client-addr", "ops-addr", "raft-addr", "dev-ca-dir", "log-level", "peer"}
	clustered := append(slices.Clone(single), "node-id", "join", "gossip-addr", "bootstrap-expect", "cluster-name", "admin-token", "snapshot-threshold")
	tests := []struct {
		name      string
		flags     []string
		bootstrap bool
		want      []string
		absent    []string
		notes     int
	}{
		{"single node", single, true,
			[]string{"-domain=hub.example", "-raft-addr=10.77.0.11:8446", "-peer=f.example=10.77.0.20:8443"},
			[]string{"-node-id", "-join", "-bootstrap-expect"}, 2},
		{"cluster, first start", clustered, true,
			[]string{"-node-id=n1", "-gossip-addr=10.77.0.11:8447", "-join=10.77.0.10:8447,10.77.0.12:8447", "-bootstrap-expect=3", "-snapshot-threshold=256"},
			nil, 1},
		{"cluster, restart or join", clustered, false, []string{"-node-id=n1", "-bootstrap-expect=0"}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Inspect(context.Background(), fakeBinary(t, tt.flags...))
			if err != nil {
				t.Fatal(err)
			}
			if b.Clustered() != slices.Contains(tt.flags, "node-id") {
				t.Errorf("Clustered() = %v", b.Clustered())
			}
			var hosts []testnet.Host
			for i := range 3 {
				hosts = append(hosts, testnet.Host{Index: i, Namespace: "ns", Addr: testnet.HostAddr(i)})
			}
			c := &Cluster{cfg: Config{Binary: b, Domain: "hub.example", Hosts: hosts, Nodes: 3, Dir: "/tmp/x", ClusterName: "mj1",
				Peers: map[string]string{"f.example": "10.77.0.20:8443"}, Settings: map[string]string{"snapshot-threshold": "256", "trailing-logs": "64"}}}
			for _, h := range hosts {
				c.initial = append(c.initial, h.Addr.String()+":8447")
			}
			args := c.args(&Node{ID: "n1", Host: hosts[1], Dir: "/tmp/x/n1"}, tt.bootstrap)
			for _, w := range tt.want {
				if !slices.Contains(args, w) {
					t.Errorf("args %v lack %s", args, w)
				}
			}
			for _, a := range tt.absent {
				if slices.ContainsFunc(args, func(s string) bool { return strings.HasPrefix(s, a+"=") }) {
					t.Errorf("args %v have %s", args, a)
				}
			}
			if len(c.notes) != tt.notes {
				t.Errorf("notes %v, want %d", c.notes, tt.notes)
			}
		})
	}
}

func TestInspectRefusesOtherPrograms(t *testing.T) {
	if _, err := Inspect(context.Background(), fakeBinary(t, "verbose")); err == nil {
		t.Error("a program without -domain was taken for mimi-hub")
	}
}
