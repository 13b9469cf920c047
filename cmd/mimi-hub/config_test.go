package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.json")
	os.WriteFile(file, []byte(`{"domain":"a.example","join":["10.0.0.1:8447"],"dead_node_remove_after":"1h","peer":{"b.example":"10.0.0.9:443"}}`), 0o600)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"domian":"typo"}`), 0o600)
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c config)
		err   string
	}{
		{name: "defaults", check: func(t *testing.T, c config) {
			if c.Domain != "localhost" || c.NodeID != "localhost" || c.ClusterName != "localhost" || c.BootstrapExpect != 1 ||
				c.GossipAddr != "127.0.0.1:8447" || c.PublicURL != "https://localhost:8443" || c.DevCADir != filepath.Join("mimi-hub-data", "dev-ca") {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "file then env then flags", args: []string{"-config", file, "-node-id", "n2", "-join", "10.0.0.2:8447,10.0.0.3:8447", "-peer", "c.example=10.0.0.8:443"},
			env: map[string]string{"MIMI_HUB_NODE_ID": "from-env", "MIMI_HUB_BOOTSTRAP_EXPECT": "3", "MIMI_HUB_LEADER_WAIT": "2s"},
			check: func(t *testing.T, c config) {
				if c.Domain != "a.example" || c.NodeID != "n2" || c.BootstrapExpect != 3 || time.Duration(c.LeaderWait) != 2*time.Second ||
					time.Duration(c.DeadNodeRemoveAfter) != time.Hour {
					t.Fatalf("%+v", c)
				}
				if !slices.Equal(c.Join, []string{"10.0.0.1:8447", "10.0.0.2:8447", "10.0.0.3:8447"}) {
					t.Fatalf("join = %v", c.Join)
				}
				if c.Peers["b.example"] != "10.0.0.9:443" || c.Peers["c.example"] != "10.0.0.8:443" {
					t.Fatalf("peers = %v", c.Peers)
				}
			}},
		{name: "unknown file key", args: []string{"-config", bad}, err: "unknown field"},
		{name: "bad duration", args: []string{"-leader-wait", "soon"}, err: "invalid"},
		{name: "bad env", env: map[string]string{"MIMI_HUB_BOOTSTRAP_EXPECT": "three"}, err: "MIMI_HUB_BOOTSTRAP_EXPECT"},
		{name: "join-only needs join", args: []string{"-bootstrap-expect", "0"}, err: "give -join"},
		{name: "join without bootstrap-expect only joins", args: []string{"-join", "10.0.0.1:8447"}, check: func(t *testing.T, c config) {
			if c.BootstrapExpect != 0 {
				t.Fatalf("bootstrap-expect = %d, want 0: a joining node must not bootstrap a cluster of its own", c.BootstrapExpect)
			}
		}},
		{name: "cert without key", args: []string{"-cert", "x.pem"}, err: "go together"},
		{name: "cluster cert without CA", args: []string{"-cluster-cert", "x.pem", "-cluster-key", "k.pem"}, err: "-cluster-ca"},
		{name: "stray argument", args: []string{"extra"}, err: "unexpected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestDevMaterial(t *testing.T) {
	dir := t.TempDir()
	c, err := loadConfig([]string{"-data", filepath.Join(dir, "n1"), "-dev-ca-dir", filepath.Join(dir, "ca"), "-domain", "a.example", "-node-id", "n1"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.loadMaterial(discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.cert.Leaf.DNSNames, []string{"a.example"}) {
		t.Fatalf("provider certificate names %v, want exactly the domain", m.cert.Leaf.DNSNames)
	}
	if len(m.gossipKey) != 32 || m.cluster.Roots == nil {
		t.Fatalf("material %+v", m)
	}
	// A second node sharing the dev CA folder gets the same CAs and key,
	// and the first node's stored certificates are reused.
	c2 := c
	c2.DataDir, c2.NodeID = filepath.Join(dir, "n2"), "n2"
	m2, err := c2.loadMaterial(discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if string(m2.gossipKey) != string(m.gossipKey) {
		t.Fatal("nodes of one dev cluster got different gossip keys")
	}
	if err := m.cluster.Verify(m2.cluster.Certificate.Certificate); err != nil {
		t.Fatalf("node 1 does not trust node 2: %v", err)
	}
	again, err := c.loadMaterial(discardLogger())
	if err != nil || string(again.cert.Certificate[0]) != string(m.cert.Certificate[0]) {
		t.Fatalf("certificate not reused: %v", err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestDeployConfigs: the example configurations in deploy/ load.
func TestDeployConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "deploy", "config", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configurations: %v", err)
	}
	for _, f := range files {
		c, err := loadConfig([]string{"-config", f}, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if c.BootstrapExpect != 3 || len(c.Join) != 3 || c.ClusterCert == "" || c.GossipKeyFile == "" {
			t.Errorf("%s: %+v", f, c)
		}
	}
}

// TestAdminTokenConfig checks how a node gets its admin token: generated
// into the data folder and printed once, explicit, or explicitly none
// (loopback only).
func TestAdminTokenConfig(t *testing.T) {
	dir := t.TempDir()
	noEnv := func(string) string { return "" }
	load := func(t *testing.T, args ...string) (config, error) {
		t.Helper()
		return loadConfig(append([]string{"-data", filepath.Join(dir, "data")}, args...), noEnv, io.Discard)
	}
	t.Run("generated on first start, printed once", func(t *testing.T) {
		c, err := load(t)
		if err != nil {
			t.Fatal(err)
		}
		var first, second strings.Builder
		tok, err := c.adminToken(&first)
		if err != nil || len(tok) < 40 {
			t.Fatalf("token %q: %v", tok, err)
		}
		path := filepath.Join(dir, "data", "admin-token")
		if !strings.Contains(first.String(), tok) || !strings.Contains(first.String(), path) {
			t.Errorf("first start printed %q: want the token and %s", first.String(), path)
		}
		again, err := c.adminToken(&second)
		if err != nil || again != tok || second.Len() != 0 {
			t.Errorf("second start: %q %v, printed %q; want the same token, silently", again, err, second.String())
		}
	})
	t.Run("a token file shared by several nodes", func(t *testing.T) {
		shared := filepath.Join(dir, "shared-token")
		c, err := load(t, "-admin-token-file", shared)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := c.adminToken(io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(shared); strings.TrimSpace(string(b)) != tok {
			t.Errorf("file holds %q, node runs with %q", b, tok)
		}
	})
	for _, tc := range []struct {
		name, want, err string
		args            []string
	}{
		{name: "explicit token", args: []string{"-admin-token", "s3cret"}, want: "s3cret"},
		{name: "explicitly none on loopback", args: []string{"-admin-token", ""}, want: ""},
		{name: "none on a public address", args: []string{"-admin-token", "", "-ops-addr", "0.0.0.0:8445"}, err: "only on a loopback address"},
		{name: "token and file", args: []string{"-admin-token", "x", "-admin-token-file", "f"}, err: "exclude each other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(t, tc.args...)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			tok, err := c.adminToken(&out)
			if err != nil || tok != tc.want || out.Len() != 0 {
				t.Fatalf("token %q (%v), printed %q; want %q", tok, err, out.String(), tc.want)
			}
		})
	}
	t.Run("explicitly none in the config file", func(t *testing.T) {
		file := filepath.Join(dir, "none.json")
		os.WriteFile(file, []byte(`{"admin_token": "", "ops_addr": "0.0.0.0:8445"}`), 0o600)
		if _, err := load(t, "-config", file); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Fatalf("err = %v, want the loopback refusal", err)
		}
	})
}
