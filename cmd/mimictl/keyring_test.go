package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
)

// TestKeyringCommands rotates the gossip key of a 3-node provider with
// mimictl cluster keyring: generate, install, use, remove, each shown on
// every node.
func TestKeyringCommands(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Configure: func(i int, cfg *hub.Config) { cfg.AdminToken = "t0ken" }}, 3)
	t.Setenv("MIMICTL_ADMIN_TOKEN", "t0ken")
	ops := c.Nodes[1].OpsURL()
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, append(args, "-ops", ops)...)
		if code != 0 {
			t.Fatalf("mimictl %q: exit %d\n%s\n%s", args, code, out, errOut)
		}
		return out
	}
	oldKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)) // testutil's
	code, gen, errOut := runCLI(t, "cluster", "keyring", "generate")
	if code != 0 {
		t.Fatalf("generate: %d %s", code, errOut)
	}
	newKey := strings.TrimSpace(gen)
	raw, err := cluster.DecodeGossipKey(newKey)
	if err != nil || len(raw) != 32 {
		t.Fatalf("generated %q: %v", newKey, err)
	}
	keyFile := filepath.Join(t.TempDir(), "new.key")
	os.WriteFile(keyFile, []byte(gen), 0o600)
	oldFP, newFP := cluster.KeyFingerprint(bytes.Repeat([]byte{7}, 32)), cluster.KeyFingerprint(raw)

	out := run(t, "cluster", "keyring", "install", "-key-file", keyFile)
	for _, n := range []string{"n1", "n2", "n3"} {
		if !hasRow(out, n, oldFP+"*", newFP) && !hasRow(out, n, newFP, oldFP+"*") {
			t.Errorf("after install:\n%s", out)
		}
	}
	if code, _, errOut := runCLI(t, "cluster", "keyring", "remove", oldKey, "-ops", ops); code != 1 || !strings.Contains(errOut, "HTTP 409") || !strings.Contains(errOut, "use another key everywhere first") {
		t.Errorf("removing the key in use: exit %d, %q", code, errOut)
	}
	run(t, "cluster", "keyring", "use", "-key-file", keyFile)
	out = run(t, "cluster", "keyring", "remove", oldKey)
	for _, n := range []string{"n1", "n2", "n3"} {
		if !hasRow(out, n, newFP+"*") || strings.Contains(out, oldFP) {
			t.Errorf("after remove:\n%s", out)
		}
	}
	if out := run(t, "cluster", "keyring", "list"); !hasRow(out, "n2", newFP+"*") {
		t.Errorf("list:\n%s", out)
	}
	if code, _, errOut := runCLI(t, "cluster", "keyring", "install", "bm90IGEga2V5", "-ops", ops); code != 2 || !strings.Contains(errOut, "key") {
		t.Errorf("installing a 9-byte key: exit %d, %q", code, errOut)
	}
}
