package cluster

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{NodeID: "n1", DataDir: "/x"}.withDefaults()
	if err := c.validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	want := Config{
		NodeID: "n1", DataDir: "/x", RaftAddr: "127.0.0.1:0",
		SnapshotThreshold: 8192, SnapshotInterval: 30 * time.Second, TrailingLogs: 10240, SnapshotRetain: 2,
		ApplyTimeout: 10 * time.Second, MaxEntrySize: 20 << 20,
		HeartbeatTimeout: time.Second, ElectionTimeout: time.Second,
		LeaderLeaseTimeout: 500 * time.Millisecond, CommitTimeout: 10 * time.Millisecond,
		StoreOpenTimeout: 2 * time.Second, TransportTimeout: 10 * time.Second, TransportMaxPool: 3,
		LeaderWait: 5 * time.Second, ReconcileInterval: time.Second, DeadServerRemoveAfter: 15 * time.Minute,
		PromoteAfter: 5 * time.Second, MaxPromoteLag: 256, MinVoters: 1, MaxInFlight: 2, MaxForwards: 16,
	}
	c.Logger, c.Observer = nil, nil
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("withDefaults =\n%+v\nwant\n%+v", c, want)
	}
	rc := Config{NodeID: "n1", DataDir: "/x", SnapshotThreshold: 7, TrailingLogs: 3}.withDefaults().raftConfig(nil)
	if rc.LocalID != "n1" || rc.SnapshotThreshold != 7 || rc.TrailingLogs != 3 || rc.HeartbeatTimeout != time.Second {
		t.Fatalf("raftConfig = %+v", rc)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no id", func(c *Config) { c.NodeID = "" }, "NodeID"},
		{"no dir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"bad addr", func(c *Config) { c.RaftAddr = "nope" }, "RaftAddr"},
		{"unspecified advertise", func(c *Config) { c.AdvertiseAddr = "0.0.0.0:7000" }, "AdvertiseAddr"},
		{"lease above heartbeat", func(c *Config) {
			c.HeartbeatTimeout, c.LeaderLeaseTimeout = 100*time.Millisecond, time.Second
		}, "LeaderLeaseTimeout"},
		{"negative timeout", func(c *Config) { c.ApplyTimeout = -1 }, "ApplyTimeout"},
		{"several voters without TLS", func(c *Config) { c.BootstrapExpect = 3 }, "needs TLS"},
		{"gossip without key", func(c *Config) {
			c.TLS = &TLS{}
			c.Gossip = &GossipConfig{BindAddr: "127.0.0.1:7946", ClusterName: "c"}
		}, "gossip Key"},
		{"gossip on an unspecified address", func(c *Config) {
			c.TLS = &TLS{}
			c.Gossip = &GossipConfig{BindAddr: "0.0.0.0:7946", ClusterName: "c", Key: make([]byte, 32)}
		}, "concrete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{NodeID: "n1", DataDir: "/x"}
			tc.mod(&c)
			err := c.withDefaults().validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate = %v, want an error about %s", err, tc.want)
			}
		})
	}
}

func TestDataDirLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	cfg := testConfig(t, dir)
	cfg.TLS = testTLS(t, newTestCA(t), "n1")
	cfg.AdvertiseAddr = "127.0.0.1:7999" // advertised, not bound
	n := startNode(t, cfg, newCounterFSM(), true)
	if n.Addr() != "127.0.0.1:7999" {
		t.Fatalf("Addr = %s, want the advertised address", n.Addr())
	}
	applyAll(t, n, 1)
	if err := n.Snapshot(ctxTimeout(t, testWait)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"logs.db", "stable.db", "snapshots"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("data dir: %v", err)
		}
	}
	snaps, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots: %v, %v", snaps, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode: %v, %v", fi.Mode(), err)
	}
}

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), "raft")
	var h hclog.Logger = l
	h.Debug("hidden")
	h.Named("net").With("peer", "n2").Info("hello", "fmt", hclog.Fmt("%d-%s", 7, "x"), "hex", hclog.Hex(255), "odd")
	h.Error("bad")
	if h.IsDebug() || h.IsTrace() || !h.IsInfo() || !h.IsError() || h.GetLevel() != hclog.Info {
		t.Fatalf("levels: debug=%v trace=%v info=%v level=%v", h.IsDebug(), h.IsTrace(), h.IsInfo(), h.GetLevel())
	}
	if got := h.Named("net").Name(); got != "raft.net" {
		t.Fatalf("Named = %q", got)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d records:\n%s", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{
		"msg": "hello", "level": "INFO", "logger": "raft.net", "peer": "n2",
		"fmt": "7-x", "hex": "0xff", hclog.MissingKey: "odd",
	} {
		if rec[k] != v {
			t.Errorf("record[%q] = %v, want %v (%s)", k, rec[k], v, lines[0])
		}
	}
	if !strings.Contains(lines[1], `"level":"ERROR"`) {
		t.Errorf("error record: %s", lines[1])
	}
	h.StandardLogger(nil).Print("from std")
	if !strings.Contains(buf.String(), "from std") {
		t.Error("StandardLogger output missing")
	}
}
