package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/internal/freeport"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// testCluster is a set of in-process nodes with TLS and gossip on
// loopback.
type testCluster struct {
	t     *testing.T
	ca    *devca.CA
	key   []byte
	nodes map[string]*clusterNode
	seeds []string // gossip addresses to join
}

type clusterNode struct {
	id     string
	cfg    Config
	node   *Node
	fsm    *fsm.FSM
	store  *Store
	gossip string
}

func newTestCluster(t *testing.T) *testCluster {
	return &testCluster{t: t, ca: newTestCA(t), key: bytes.Repeat([]byte{7}, 32), nodes: map[string]*clusterNode{}}
}

// freePort returns a loopback port free for both TCP and UDP right now,
// below the ephemeral range so that a restarted node finds it free.
func freePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Get("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// config returns a node configuration for the cluster.
func (c *testCluster) config(id string, expect int) Config {
	cfg := testConfig(c.t, c.t.TempDir())
	cfg.NodeID = id
	cfg.BootstrapExpect = expect
	cfg.TLS = testTLS(c.t, c.ca, id)
	cfg.RaftAddr = fmt.Sprintf("127.0.0.1:%d", freePort(c.t))
	cfg.Gossip = &GossipConfig{
		BindAddr:    fmt.Sprintf("127.0.0.1:%d", freePort(c.t)),
		Key:         c.key,
		ClusterName: "test",
		Profile:     "local",
		Join:        slices.Clone(c.seeds),
	}
	cfg.LeaderWait = 10 * time.Second
	cfg.ReconcileInterval = 100 * time.Millisecond
	cfg.PromoteAfter = 300 * time.Millisecond
	cfg.DeadServerRemoveAfter = time.Hour
	cfg.MinVoters = 3
	cfg.SnapshotInterval = time.Hour // snapshots only when a test asks
	return cfg
}

// start starts a node with cfg (from config, possibly modified).
func (c *testCluster) start(cfg Config) *clusterNode {
	c.t.Helper()
	return c.startState(cfg, fsm.Config{Domain: "a.example"})
}

// startState starts a node with cfg whose state machine has the
// configuration fc.
func (c *testCluster) startState(cfg Config, fc fsm.Config) *clusterNode {
	c.t.Helper()
	f, err := fsm.New(fc)
	if err != nil {
		c.t.Fatal(err)
	}
	n, err := Start(ctxTimeout(c.t, testWait), cfg, f)
	if err != nil {
		c.t.Fatalf("start %s: %v", cfg.NodeID, err)
	}
	cn := &clusterNode{id: cfg.NodeID, cfg: cfg, node: n, fsm: f, store: NewStore(n, f, "a.example"), gossip: cfg.Gossip.BindAddr}
	c.nodes[cfg.NodeID] = cn
	c.seeds = append(c.seeds, cfg.Gossip.BindAddr)
	c.t.Cleanup(func() { n.Shutdown(context.Background()) })
	return cn
}

// startN starts n nodes expecting n voters, joined to each other.
func (c *testCluster) startN(n int) {
	for _, cfg := range c.configs(n, nil) {
		c.start(cfg)
	}
}

// configs returns the configurations of n new nodes n1..nN expecting n
// voters, each joining the others; mod, when set, adjusts each first.
func (c *testCluster) configs(n int, mod func(cfg *Config)) []Config {
	var cfgs []Config
	for i := range n {
		cfg := c.config(fmt.Sprintf("n%d", i+1), n)
		if mod != nil {
			mod(&cfg)
		}
		cfgs = append(cfgs, cfg)
	}
	for i := range cfgs {
		for j := range cfgs {
			if i != j {
				cfgs[i].Gossip.Join = append(cfgs[i].Gossip.Join, cfgs[j].Gossip.BindAddr)
			}
		}
	}
	return cfgs
}

// waitFor polls cond (bounded by testWait).
func (c *testCluster) waitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leader waits for a ready leader among the running nodes.
func (c *testCluster) leader() *clusterNode {
	c.t.Helper()
	var l *clusterNode
	c.waitFor("a ready leader", func() bool {
		for _, n := range c.nodes {
			if !n.node.isStopping() && n.node.isReadyLeader() {
				l = n
				return true
			}
		}
		return false
	})
	return l
}

func (c *testCluster) follower() *clusterNode {
	l := c.leader()
	for _, id := range sortedKeys(c.nodes) {
		if n := c.nodes[id]; n != l && !n.node.isStopping() {
			return n
		}
	}
	c.t.Fatal("no follower")
	return nil
}

// voters returns the voters and non-voters of the configuration.
func (c *testCluster) suffrage(n *clusterNode) (voters, nonvoters []string) {
	f := n.node.raft.GetConfiguration()
	if f.Error() != nil {
		return nil, nil
	}
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, string(s.ID))
		} else {
			nonvoters = append(nonvoters, string(s.ID))
		}
	}
	slices.Sort(voters)
	slices.Sort(nonvoters)
	return voters, nonvoters
}

// register applies a registration through store and returns the client.
func register(t *testing.T, s *Store, user string) proto.URI {
	t.Helper()
	client := proto.ClientURI("a.example", user, "phone")
	h := sha256.Sum256([]byte(user))
	res, err := s.Apply(ctxTimeout(t, testWait), fsm.CmdRegister, nil, "", &fsm.RegisterBody{Client: client, TokenHash: h[:]})
	if err != nil {
		t.Fatalf("register %s: %v", user, err)
	}
	if err := res.Err(); err != nil {
		t.Fatalf("register %s refused: %v", user, err)
	}
	return client
}

func hasClient(t *testing.T, s *Store, client proto.URI, linearizable bool) bool {
	t.Helper()
	var ok bool
	if err := s.Read(ctxTimeout(t, testWait), linearizable, func(st *fsm.State) error {
		ok = st.HasClient(client)
		return nil
	}); err != nil {
		t.Fatalf("read: %v", err)
	}
	return ok
}

func TestClusterBootstrapForwardAndRead(t *testing.T) {
	c := newTestCluster(t)
	c.startN(3)
	l := c.leader()
	if v, nv := c.suffrage(l); len(v) != 3 || len(nv) != 0 {
		t.Fatalf("configuration after bootstrap: voters %v, non-voters %v", v, nv)
	}
	// Writes through every node reach the leader; a linearizable read on
	// every node sees every write acknowledged before it.
	var clients []proto.URI
	for _, id := range sortedKeys(c.nodes) {
		clients = append(clients, register(t, c.nodes[id].store, "user-via-"+id))
	}
	for _, id := range sortedKeys(c.nodes) {
		for _, cl := range clients {
			if !hasClient(t, c.nodes[id].store, cl, true) {
				t.Fatalf("node %s: linearizable read misses %s", id, cl)
			}
		}
	}
	// A retried request id is applied once: the second answer is the first.
	f := c.follower()
	id := []byte("retry-me")
	h := sha256.Sum256([]byte("x"))
	body := &fsm.RegisterBody{Client: proto.ClientURI("a.example", "dup", "phone"), TokenHash: h[:]}
	r1, err := f.store.Apply(ctxTimeout(t, testWait), fsm.CmdRegister, id, "", body)
	if err != nil || r1.Err() != nil {
		t.Fatalf("first: %v %v", err, r1)
	}
	r2, err := l.store.Apply(ctxTimeout(t, testWait), fsm.CmdRegister, id, "", body)
	if err != nil || r2.Kind != r1.Kind || !bytes.Equal(r2.Body, r1.Body) {
		t.Fatalf("retry: %v %+v, want the first result %+v", err, r2, r1)
	}
	// Status from a follower names every node, with their own reports.
	st, err := f.node.Status(ctxTimeout(t, testWait))
	if err != nil {
		t.Fatal(err)
	}
	// (Leadership may have moved since l was found: a loaded machine can
	// miss a lease; the status must name whoever leads now.)
	if _, ok := c.nodes[st.LeaderID]; !ok || len(st.Servers) != 3 {
		t.Fatalf("status: %+v", st)
	}
	for _, s := range st.Servers {
		if s.Suffrage != "voter" || s.Gossip != StatusAlive || s.Info == nil || s.Info.AppliedIndex == 0 || s.Leader != (s.ID == st.LeaderID) {
			t.Fatalf("status of %s: %+v", s.ID, s)
		}
	}
}

func TestClusterFailoverKeepsAcknowledgedWrites(t *testing.T) {
	c := newTestCluster(t)
	c.startN(3)
	old := c.leader()
	before := register(t, c.follower().store, "before")
	// The leader dies without a goodbye (no transfer, no snapshot).
	crashStop(t, old.node)
	var f *clusterNode
	for _, id := range sortedKeys(c.nodes) {
		if n := c.nodes[id]; n != old {
			f = n
			break
		}
	}
	// A write through a survivor waits for the election and succeeds.
	after := register(t, f.store, "after")
	nl := c.leader()
	if nl == old {
		t.Fatal("the dead node still leads")
	}
	for _, cl := range []proto.URI{before, after} {
		if !hasClient(t, f.store, cl, true) {
			t.Fatalf("lost %s after failover", cl)
		}
	}
	// The old leader comes back as a follower and catches up.
	cfg := old.cfg
	delete(c.nodes, old.id)
	back := c.start(cfg)
	c.waitFor("the old leader to catch up", func() bool { return hasClient(t, back.store, after, false) })
	if !hasClient(t, back.store, after, true) {
		t.Fatal("restarted node misses a write")
	}
}

func TestClusterGracefulShutdownHandsOverLeadership(t *testing.T) {
	c := newTestCluster(t)
	c.startN(3)
	old := c.leader()
	if err := old.node.Shutdown(ctxTimeout(t, testWait)); err != nil {
		t.Fatal(err)
	}
	// Leadership was handed over (not lost to an election timeout), to
	// the node that leads now.
	to := old.node.handedTo.Load()
	if to == nil || *to == "" {
		t.Fatal("graceful shutdown did not hand leadership over")
	}
	delete(c.nodes, old.id)
	if l := c.leader(); l.id != *to {
		t.Fatalf("handed over to %s, but %s leads", *to, l.id)
	}
	register(t, c.follower().store, "after-handover")
}

func TestClusterMembership(t *testing.T) {
	c := newTestCluster(t)
	c.startN(3)
	l := c.leader()

	// A fourth node (expecting nothing, bootstrapping nothing) joins through
	// gossip: added as non-voter, promoted once caught up.
	n4 := c.start(c.config("n4", 0))
	c.waitFor("n4 to become a voter", func() bool {
		v, _ := c.suffrage(c.leader())
		return slices.Contains(v, "n4")
	})
	register(t, n4.store, "via-n4")

	// A node that fails is removed only after DeadServerRemoveAfter, and
	// never below MinVoters (3): here 4 voters, so n4 may go once late.
	for _, n := range c.nodes {
		n.node.cfg.DeadServerRemoveAfter = 500 * time.Millisecond
	}
	crashStop(t, n4.node)
	n4.node.gossip.shutdown()
	c.waitFor("the failed n4 to be removed", func() bool {
		v, nv := c.suffrage(c.leader())
		return len(v) == 3 && !slices.Contains(v, "n4") && len(nv) == 0
	})

	// Below MinVoters a failed voter stays: crash one of the three.
	victim := c.follower()
	crashStop(t, victim.node)
	victim.node.gossip.shutdown()
	time.Sleep(1500 * time.Millisecond) // three times the removal delay; must not remove
	if v, _ := c.suffrage(c.leader()); len(v) != 3 {
		t.Fatalf("a failed voter was removed below MinVoters: voters %v", v)
	}
	// It comes back and the cluster is whole again.
	delete(c.nodes, victim.id)
	back := c.start(victim.cfg)
	register(t, back.store, "via-returned")

	// A node that leaves gracefully is removed at once, whatever
	// MinVoters says (the operator decided).
	leaver := c.follower()
	if err := leaver.node.Leave(ctxTimeout(t, testWait)); err != nil {
		t.Fatalf("leave: %v", err)
	}
	c.waitFor("the leaver to be removed", func() bool {
		v, _ := c.suffrage(c.leader())
		return len(v) == 2 && !slices.Contains(v, leaver.id)
	})
	// It stays out: gossip says it left, so reconciliation never adds it
	// back while it is still running.
	for range 10 {
		time.Sleep(c.nodes[c.leader().id].cfg.ReconcileInterval)
		if v, nv := c.suffrage(c.leader()); slices.Contains(v, leaver.id) || slices.Contains(nv, leaver.id) {
			t.Fatalf("the node that left was added back: voters %v, non-voters %v", v, nv)
		}
	}
	leaver.node.Shutdown(ctxTimeout(t, testWait))
	delete(c.nodes, leaver.id)
	register(t, c.leader().store, "after-leave")
	// Once stopped, it is listed as left, not failed, on every node, and
	// nobody asks it for a report; the leader's events say so.
	for _, n := range c.nodes {
		if n.node.isStopping() {
			continue // n4, crashed above
		}
		for range 5 {
			st, err := n.node.Status(ctxTimeout(t, testWait))
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(st.Servers, func(s ServerStatus) bool { return s.ID == leaver.id })
			if i < 0 {
				t.Fatalf("%s does not list the node that left: %+v", n.id, st.Servers)
			}
			if s := st.Servers[i]; s.Gossip != StatusLeft || s.Suffrage != "none" || s.Error != "" {
				t.Fatalf("%s lists the node that left as %+v", n.id, s)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !slices.ContainsFunc(n.node.Events(), func(e Event) bool { return e.Kind == EventNodeLeft && e.Node == leaver.id }) {
			t.Errorf("%s's events lack the departure: %+v", n.id, n.node.Events())
		}
	}
	_ = l
}

func TestClusterTransferAndRemove(t *testing.T) {
	c := newTestCluster(t)
	c.startN(3)
	l := c.leader()
	f := c.follower()
	if err := f.node.TransferLeadership(ctxTimeout(t, testWait), f.id); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	c.waitFor("the follower to lead", func() bool { return f.node.isReadyLeader() })
	// The removal of a live voter is refused only if the rest would lose
	// quorum: here two of three remain, so it is allowed.
	if err := l.node.RemoveServer(ctxTimeout(t, testWait), l.id); err != nil {
		t.Fatalf("remove the old leader: %v", err)
	}
	if v, _ := c.suffrage(f); len(v) != 2 {
		t.Fatalf("voters after removal: %v", v)
	}
	// The leader never removes itself.
	err := f.node.RemoveServer(ctxTimeout(t, testWait), f.id)
	if err == nil || !strings.Contains(err.Error(), "cannot remove itself") {
		t.Fatalf("leader removing itself: %v", err)
	}
	// With one of the two remaining voters down, removing the other is
	// refused: the rest would have no live quorum.
	var other *clusterNode
	for _, id := range sortedKeys(c.nodes) {
		if id != l.id && id != f.id {
			other = c.nodes[id]
		}
	}
	_ = other
}

func TestClusterBackupRestore(t *testing.T) {
	c := newTestCluster(t)
	c.startN(3)
	f := c.follower()
	kept := register(t, f.store, "kept")
	var backup bytes.Buffer
	info, err := f.node.Backup(ctxTimeout(t, testWait), &backup)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if info.Index == 0 || info.Size == 0 {
		t.Fatalf("backup info %+v", info)
	}
	lost := register(t, f.store, "lost")
	if err := f.node.Restore(ctxTimeout(t, testWait), backup.Bytes()); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for _, id := range sortedKeys(c.nodes) {
		s := c.nodes[id].store
		c.waitFor("node "+id+" to hold the restored state", func() bool {
			return hasClient(t, s, kept, true) && !hasClient(t, s, lost, true)
		})
	}
	register(t, f.store, "after-restore")
	for _, bad := range [][]byte{[]byte("garbage"), backup.Bytes()[:backup.Len()-1], append([]byte(backupMagic), 0, 0, 0, 2, '{', '}')} {
		if err := f.node.Restore(ctxTimeout(t, testWait), bad); !errors.Is(err, ErrInvalidBackup) {
			t.Fatalf("restore of a broken backup (%d bytes): %v, want ErrInvalidBackup", len(bad), err)
		}
	}
}

func TestClusterLaggingNodeInstallsSnapshot(t *testing.T) {
	c := newTestCluster(t)
	var cfgs []Config
	for i := range 3 {
		cfg := c.config(fmt.Sprintf("n%d", i+1), 3)
		cfg.SnapshotThreshold = 16
		cfg.TrailingLogs = 8
		cfgs = append(cfgs, cfg)
	}
	for i := range cfgs {
		for j := range cfgs {
			if i != j {
				cfgs[i].Gossip.Join = append(cfgs[i].Gossip.Join, cfgs[j].Gossip.BindAddr)
			}
		}
	}
	for _, cfg := range cfgs {
		c.start(cfg)
	}
	l := c.leader()
	lag := c.follower()
	crashStop(t, lag.node)
	lag.node.gossip.shutdown()
	var last proto.URI
	for i := range 64 {
		last = register(t, l.store, fmt.Sprintf("u%d", i))
	}
	if err := l.node.Snapshot(ctxTimeout(t, testWait)); err != nil {
		t.Fatal(err)
	}
	if s := l.node.Stats(); s.LastSnapshotIndex <= lag.node.Stats().LastLogIndex+8 {
		t.Fatalf("the leader's log still reaches the lagging node: %+v", s)
	}
	delete(c.nodes, lag.id)
	back := c.start(lag.cfg)
	c.waitFor("the lagging node to catch up", func() bool { return hasClient(t, back.store, last, false) })
	// Raft records the installed snapshot just after the FSM restored it,
	// so the client can be visible a moment before: wait for the record.
	c.waitFor("the lagging node to record the snapshot it installed", func() bool { return back.node.Stats().LastSnapshotIndex > 0 })
}

func TestClusterRefusesUnauthenticatedPeers(t *testing.T) {
	c := newTestCluster(t)
	c.startN(1)
	n := c.leader()
	addr := n.node.Addr()
	// Plain TCP: the TLS handshake fails, nothing is served.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("R garbage that is not a TLS handshake"))
	conn.SetReadDeadline(time.Now().Add(testWait))
	reply, err := io.ReadAll(conn)
	conn.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("plain TCP: %v", err)
	}
	if len(reply) > 0 && reply[0] != 0x15 { // a TLS alert record at most
		t.Fatalf("plain TCP got an answer: %q", reply)
	}
	// TLS with a certificate from another CA: refused by the server.
	other := testTLS(t, newTestCA(t), "intruder")
	m := &mux{}
	m.configs.Store(newMuxTLS(other))
	ctx := ctxTimeout(t, 5*time.Second)
	tc, err := m.dial(ctx, addr, protoRPC)
	if err == nil {
		tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = tc.Read(make([]byte, 1))
		tc.Close()
	}
	if err == nil {
		t.Fatal("a peer from another CA was served")
	}
	// No client certificate at all: refused.
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		raw.Write([]byte{protoRPC})
		raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = raw.Read(make([]byte, 1))
		raw.Close()
	}
	if err == nil {
		t.Fatal("a peer without a certificate was served")
	}
	// The node still works.
	register(t, n.store, "still-fine")
}

// TestClusterIgnoresForeignCluster: a node started by mistake with
// BootstrapExpect 1 but joined to an existing cluster's gossip bootstraps
// a cluster of its own. Neither leader may add the other's nodes: their
// histories must never meet.
func TestClusterIgnoresForeignCluster(t *testing.T) {
	c := newTestCluster(t)
	c.startN(3)
	l := c.leader()
	kept := register(t, l.store, "kept")
	// The rogue bootstrapped a cluster of its own elsewhere, and is then
	// pointed at this one.
	rogueCfg := c.config("rogue", 1)
	rogueCfg.Gossip.Join = nil
	rogue := c.start(rogueCfg)
	c.waitFor("the rogue node to lead its own cluster", func() bool { return rogue.node.isReadyLeader() })
	if rogue.node.ClusterID() == "" || rogue.node.ClusterID() == l.node.ClusterID() {
		t.Fatalf("cluster ids: rogue %q, real %q", rogue.node.ClusterID(), l.node.ClusterID())
	}
	if _, err := rogue.node.Join(c.seeds[:3]); err != nil {
		t.Fatal(err)
	}
	c.waitFor("gossip to connect both", func() bool {
		return len(rogue.node.gossip.snapshot()) == 4 && len(l.node.gossip.snapshot()) == 4
	})
	// Several reconcile passes on both leaders.
	time.Sleep(20 * l.cfg.ReconcileInterval)
	if v, nv := c.suffrage(l); len(v) != 3 || len(nv) != 0 || slices.Contains(v, "rogue") {
		t.Fatalf("the real cluster took in the rogue: voters %v, non-voters %v", v, nv)
	}
	if v, nv := c.suffrage(rogue); len(v) != 1 || len(nv) != 0 {
		t.Fatalf("the rogue took in real nodes: voters %v, non-voters %v", v, nv)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if !hasClient(t, c.nodes[id].store, kept, true) {
			t.Fatalf("node %s lost the real cluster's state", id)
		}
	}
}

// TestClusterJoinerWithExpectOneJoins: a new node given join peers and
// BootstrapExpect 1 (a single-node configuration copied to a new machine)
// asks its peers first, finds a cluster, and is added to it instead of
// starting a history of its own that would take writes apart from it.
func TestClusterJoinerWithExpectOneJoins(t *testing.T) {
	c := newTestCluster(t)
	c.startN(3)
	kept := register(t, c.leader().store, "kept")
	joiner := c.start(c.config("n4", 1))
	c.waitFor("n4 to become a voter of the cluster", func() bool {
		v, _ := c.suffrage(c.leader())
		return slices.Contains(v, "n4")
	})
	if got, want := joiner.node.ClusterID(), c.leader().node.ClusterID(); got != want {
		t.Fatalf("n4's cluster id %q, the cluster's %q", got, want)
	}
	if !hasClient(t, joiner.store, kept, true) {
		t.Fatal("n4 does not hold the cluster's state")
	}
	register(t, joiner.store, "via-n4")
}

// TestClusterRemovedNodeRejoins: a node removed from this cluster (say
// after a long outage) keeps the cluster's ID and is added again when it
// comes back with its state.
func TestClusterRemovedNodeRejoins(t *testing.T) {
	c := newTestCluster(t)
	c.startN(3)
	l := c.leader()
	f := c.follower()
	crashStop(t, f.node)
	f.node.gossip.shutdown()
	if err := l.node.RemoveServer(ctxTimeout(t, testWait), f.id); err != nil {
		t.Fatalf("remove: %v", err)
	}
	after := register(t, l.store, "after-removal")
	delete(c.nodes, f.id)
	back := c.start(f.cfg)
	c.waitFor("the removed node to be a voter again", func() bool {
		v, _ := c.suffrage(c.leader())
		return slices.Contains(v, f.id)
	})
	c.waitFor("it to catch up", func() bool { return hasClient(t, back.store, after, false) })
}
