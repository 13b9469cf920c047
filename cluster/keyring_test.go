package cluster

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestClusterGossipKeyRotation rotates the gossip key of a live 3-node
// cluster through one node (install, use, remove), checks the unsafe
// steps are refused, and that a node restarted afterwards comes back with
// its saved keyring while a node with only the old key is not let in.
func TestClusterGossipKeyRotation(t *testing.T) {
	c := newTestCluster(t)
	c.startN(3)
	n1 := c.nodes["n1"]
	c.waitFor("three voters, all alive in n1's gossip", func() bool {
		v, _ := c.suffrage(c.leader())
		alive := 0
		for _, m := range n1.node.gossip.snapshot() {
			if m.Status == StatusAlive {
				alive++
			}
		}
		return len(v) == 3 && alive == 3
	})
	oldKey, newKey := c.key, bytes.Repeat([]byte{9}, 32)
	oldFP, newFP := KeyFingerprint(oldKey), KeyFingerprint(newKey)
	ctx := ctxTimeout(t, testWait)
	want := func(step string, got []NodeKeyring, keys []string, primary string) {
		t.Helper()
		if len(got) != 3 {
			t.Fatalf("%s: %d nodes answered, want 3: %+v", step, len(got), got)
		}
		for _, nk := range got {
			if nk.Error != "" || !slices.Equal(slices.Sorted(slices.Values(nk.Keys)), slices.Sorted(slices.Values(keys))) || nk.Primary != primary {
				t.Fatalf("%s: %s has %+v, want keys %v, primary %s", step, nk.Node, nk, keys, primary)
			}
		}
	}
	list, err := n1.node.Keyring(ctx, KeyringList, nil)
	if err != nil {
		t.Fatal(err)
	}
	want("before", list, []string{oldFP}, oldFP)

	if _, err := n1.node.Keyring(ctx, KeyringUse, newKey); !errors.Is(err, ErrKeyring) {
		t.Fatalf("use before install: %v, want a refusal", err)
	}
	got, err := n1.node.Keyring(ctx, KeyringInstall, newKey)
	if err != nil {
		t.Fatal(err)
	}
	want("installed", got, []string{oldFP, newFP}, oldFP)
	if _, err := n1.node.Keyring(ctx, KeyringRemove, oldKey); !errors.Is(err, ErrKeyring) {
		t.Fatalf("removing the key in use: %v, want a refusal", err)
	}
	if got, err = c.follower().node.Keyring(ctx, KeyringUse, newKey); err != nil {
		t.Fatal(err)
	}
	want("used", got, []string{oldFP, newFP}, newFP)
	if got, err = n1.node.Keyring(ctx, KeyringRemove, oldKey); err != nil {
		t.Fatal(err)
	}
	want("removed", got, []string{newFP}, newFP)
	if _, err := n1.node.Keyring(ctx, KeyringInstall, []byte("short")); !errors.Is(err, ErrKeyring) {
		t.Fatalf("installing a 5-byte key: %v", err)
	}
	// Gossip goes on under the new key: every node still sees the others.
	time.Sleep(500 * time.Millisecond)
	for _, n := range c.nodes {
		for _, m := range n.node.gossip.snapshot() {
			if m.Status != StatusAlive {
				t.Errorf("%s sees %s as %s after the rotation", n.id, m.ID, m.Status)
			}
		}
	}
	register(t, c.follower().store, "after-rotation")

	// A restarted node starts with its saved keyring, not the configured
	// (old) key, and is seen alive again.
	f := c.follower()
	if b, err := os.ReadFile(filepath.Join(f.cfg.DataDir, KeyringFile)); err != nil || bytes.Contains(b, []byte("old")) {
		t.Fatalf("saved keyring: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(f.cfg.DataDir, KeyringFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved keyring mode: %v %v", fi.Mode(), err)
	}
	crashStop(t, f.node)
	f.node.gossip.shutdown()
	delete(c.nodes, f.id)
	back := c.start(f.cfg)
	c.waitFor("the restarted node to be alive in the leader's gossip", func() bool {
		return slices.ContainsFunc(c.leader().node.gossip.snapshot(), func(m member) bool { return m.ID == back.id && m.Status == StatusAlive })
	})
	register(t, back.store, "via-restarted")

	// A new node with only the old key gets nowhere.
	stale := c.config("n9", 0)
	stale.Gossip.Join = c.seeds[:3]
	c.start(stale)
	time.Sleep(2 * time.Second)
	if slices.ContainsFunc(c.leader().node.gossip.snapshot(), func(m member) bool { return m.ID == "n9" }) {
		t.Fatal("a node with the removed key joined gossip")
	}
}
