package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/jepsen/internal/nfqueue"
	"github.com/mimihub/mimi-hub/jepsen/internal/testnet"
)

func rng() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func TestGrudges(t *testing.T) {
	nodes := []string{"n1", "n2", "n3", "n4", "n5"}
	refuses := func(g Grudge, a, b string) bool { return slices.Contains(g[a], b) }
	symmetric := func(t *testing.T, g Grudge) {
		t.Helper()
		for a, bs := range g {
			for _, b := range bs {
				if !refuses(g, b, a) {
					t.Errorf("%s refuses %s but not the other way: %v", a, b, g)
				}
			}
		}
	}
	t.Run("majority/minority", func(t *testing.T) {
		for seed := range uint64(20) {
			g, detail := MajorityMinority(nodes, rand.New(rand.NewPCG(seed, 0)))
			symmetric(t, g)
			// Every node is cut off from 2 (majority side) or 3 (minority).
			var two, three int
			for _, n := range nodes {
				switch len(g[n]) {
				case 2:
					two++
				case 3:
					three++
				default:
					t.Fatalf("%s refuses %v: %s", n, g[n], detail)
				}
			}
			if two != 3 || three != 2 {
				t.Errorf("sides of %d and %d, want a majority of 3: %s", two, three, detail)
			}
		}
	})
	t.Run("isolated node", func(t *testing.T) {
		g, _ := IsolateNode(nodes, "n3")
		symmetric(t, g)
		if len(g["n3"]) != 4 || len(g["n1"]) != 1 || !refuses(g, "n1", "n3") {
			t.Errorf("grudge %v does not isolate n3 alone", g)
		}
	})
	t.Run("bridge", func(t *testing.T) {
		for seed := range uint64(20) {
			g, detail := Bridge(nodes, rand.New(rand.NewPCG(seed, 0)))
			symmetric(t, g)
			var middle []string
			for _, n := range nodes {
				switch len(g[n]) {
				case 0:
					middle = append(middle, n)
				case 2:
				default:
					t.Fatalf("%s refuses %v: %s", n, g[n], detail)
				}
			}
			if len(middle) != 1 {
				t.Errorf("bridge %s has middle nodes %v, want one", detail, middle)
			}
		}
	})
	t.Run("minority", func(t *testing.T) {
		for seed := range uint64(20) {
			m := Minority(nodes, rand.New(rand.NewPCG(seed, 0)))
			if len(m) < 1 || len(m) > 2 {
				t.Errorf("minority %v of 5", m)
			}
		}
	})
}

// fakeCluster records what nemeses do to it.
type fakeCluster struct {
	mu     sync.Mutex
	nodes  []Node
	leader string
	spares int
	added  int
	calls  []string
	// applied and snapshot are what Progress reports.
	applied, snapshot uint64
}

func newFakeCluster(n int) *fakeCluster {
	c := &fakeCluster{leader: "n1", spares: 1}
	for i := range n {
		c.nodes = append(c.nodes, Node{ID: fmt.Sprintf("n%d", i+1), Namespace: fmt.Sprintf("ns%d", i+1), Addr: testnet.HostAddr(i)})
	}
	return c
}

func (c *fakeCluster) record(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, s)
}

func (c *fakeCluster) Nodes() []Node                          { return slices.Clone(c.nodes) }
func (c *fakeCluster) Leader(context.Context) (string, error) { return c.leader, nil }
func (c *fakeCluster) Kill(_ context.Context, id string) error {
	c.record("kill " + id)
	return nil
}
func (c *fakeCluster) Start(_ context.Context, id string) error {
	c.record("start " + id)
	return nil
}
func (c *fakeCluster) Pause(_ context.Context, id string) error {
	c.record("pause " + id)
	return nil
}
func (c *fakeCluster) Resume(_ context.Context, id string) error {
	c.record("resume " + id)
	return nil
}
func (c *fakeCluster) Add(context.Context) (string, error) {
	c.spares--
	c.added++
	id := fmt.Sprintf("new%d", c.added)
	c.nodes = append(c.nodes, Node{ID: id})
	c.record("add " + id)
	return id, nil
}
func (c *fakeCluster) Remove(_ context.Context, id string) error {
	c.nodes = slices.DeleteFunc(c.nodes, func(n Node) bool { return n.ID == id })
	c.spares++
	c.record("remove " + id)
	return nil
}
func (c *fakeCluster) Replace(_ context.Context, id string) (string, error) {
	c.record("replace " + id)
	return id + "b", nil
}
func (c *fakeCluster) Spares() int { return c.spares }
func (c *fakeCluster) Settle(context.Context) error {
	c.record("settle")
	return nil
}
func (c *fakeCluster) Load(_ context.Context, n int, avoid []string) error {
	c.record(fmt.Sprintf("load %d avoiding %v", n, avoid))
	return nil
}
func (c *fakeCluster) CaughtUp(_ context.Context, id string) error {
	c.record("caught up " + id)
	c.applied += 600
	c.snapshot = c.applied - 10
	return nil
}
func (c *fakeCluster) Progress(context.Context, string) (uint64, uint64, error) {
	return c.applied, c.snapshot, nil
}

// fakeFW records iptables invocations; -N fails for chains already made.
type fakeFW struct {
	mu     sync.Mutex
	chains map[string]bool
	rules  []string
}

func (f *fakeFW) IPTables(_ context.Context, ns string, args ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.chains == nil {
		f.chains = map[string]bool{}
	}
	line := ns + " " + strings.Join(args, " ")
	if args[0] == "-N" {
		if f.chains[ns+args[1]] {
			return errors.New("chain exists")
		}
		f.chains[ns+args[1]] = true
	}
	f.rules = append(f.rules, line)
	return nil
}

func (f *fakeFW) matching(sub string) []string {
	var out []string
	for _, r := range f.rules {
		if strings.Contains(r, sub) {
			out = append(out, r)
		}
	}
	return out
}

func TestPartitionDropsBetweenSidesAndHeals(t *testing.T) {
	for _, mode := range []string{PartitionMajority, PartitionLeader, PartitionBridge} {
		t.Run(mode, func(t *testing.T) {
			c := newFakeCluster(5)
			fw := &fakeFW{}
			p := &Partition{Cluster: c, Rules: Rules{FW: fw}, Modes: []string{mode}, Rand: rng()}
			f, err := p.Start(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			drops := fw.matching("-j DROP")
			if len(drops) == 0 {
				t.Fatalf("no DROP rule for %s (%s)", mode, f.Detail)
			}
			// Each DROP pair is in both directions inside a namespace.
			if in, out := len(fw.matching("-A MJ-IN")), len(fw.matching("-A MJ-OUT")); in != out {
				t.Errorf("%d input rules, %d output rules", in, out)
			}
			if mode == PartitionLeader {
				n1 := fw.matching("ns1 -A MJ-IN")
				if len(n1) != 4 || !slices.Equal(f.Targets, []string{"n1", "n2", "n3", "n4", "n5"}) {
					t.Errorf("leader n1 isolated with rules %v, targets %v", n1, f.Targets)
				}
			}
			if err := p.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			if flushes := fw.matching("-F MJ-"); len(flushes) < 10 {
				t.Errorf("heal flushed %d chains, want both chains of 5 nodes: %v", len(flushes), flushes)
			}
		})
	}
}

func TestLossAndDelayRules(t *testing.T) {
	c := newFakeCluster(3)
	fw := &fakeFW{}
	l := &Loss{Cluster: c, Rules: Rules{FW: fw}, Probability: 0.3}
	if _, err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := fw.matching("--probability 0.3000 -j DROP"); len(got) != 6 {
		t.Errorf("loss rules %v, want one per ordered pair of 3 nodes", got)
	}
	if err := l.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	var opened []string
	var closed int
	d := &Delay{Cluster: c, Rules: Rules{FW: fw}, Delay: 30 * time.Millisecond, Queue: 9,
		Open: func(ns string, cfg nfqueue.Config) (Closer, error) {
			opened = append(opened, fmt.Sprintf("%s q%d %v", ns, cfg.Queue, cfg.Delay))
			return closerFunc(func() { closed++ }), nil
		}}
	if _, err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(opened) != 3 || opened[0] != "ns1 q9 30ms" {
		t.Errorf("queues opened: %v", opened)
	}
	if got := fw.matching("-j NFQUEUE --queue-num 9 --queue-bypass"); len(got) != 6 {
		t.Errorf("queue rules %v", got)
	}
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if closed != 3 {
		t.Errorf("%d queues closed, want 3", closed)
	}
}

type closerFunc func()

func (f closerFunc) Close(context.Context) error { f(); return nil }

func TestProcessNemesesHealWhatTheyBroke(t *testing.T) {
	tests := []struct {
		name      string
		nem       func(c *fakeCluster) Nemesis
		verb, fix string
	}{
		{"kill", func(c *fakeCluster) Nemesis { return &Kill{Cluster: c, Rand: rng(), Targets: []string{TargetMinority}} }, "kill", "start"},
		{"kill leader", func(c *fakeCluster) Nemesis { return &Kill{Cluster: c, Rand: rng(), Targets: []string{TargetLeader}} }, "kill", "start"},
		{"pause", func(c *fakeCluster) Nemesis { return &Pause{Cluster: c, Rand: rng()} }, "pause", "resume"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeCluster(5)
			n := tt.nem(c)
			f, err := n.Start(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Targets) == 0 || len(f.Targets) > 2 {
				t.Fatalf("targets %v: want one or a minority of 5", f.Targets)
			}
			if tt.name == "kill leader" && !slices.Equal(f.Targets, []string{"n1"}) {
				t.Errorf("killed %v, want the leader n1", f.Targets)
			}
			if err := n.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, id := range f.Targets {
				want = append(want, tt.verb+" "+id)
			}
			for _, id := range f.Targets {
				want = append(want, tt.fix+" "+id)
			}
			if !slices.Equal(c.calls, want) {
				t.Errorf("calls %v, want %v", c.calls, want)
			}
			// A second Stop has nothing left to heal.
			if err := n.Stop(context.Background()); err != nil || len(c.calls) != len(want) {
				t.Errorf("second Stop: %v, calls %v", err, c.calls)
			}
		})
	}
}

func TestMembershipStaysNearBase(t *testing.T) {
	c := newFakeCluster(3)
	m := &Membership{Cluster: c, Rand: rng()}
	for range 20 {
		if _, err := m.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := m.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := len(c.Nodes()); n < 3 || n > 4 {
			t.Fatalf("cluster of %d nodes after %v", n, c.calls)
		}
	}
	kinds := map[string]int{}
	for _, call := range c.calls {
		kinds[strings.Fields(call)[0]]++
	}
	if kinds["settle"] != 20 {
		t.Errorf("%d changes settled, want all 20", kinds["settle"])
	}
	if kinds["add"] == 0 || kinds["replace"] == 0 {
		t.Errorf("20 changes never added or never replaced: %v", c.calls)
	}
}

func TestSnapshotHoldsBackAFollower(t *testing.T) {
	c := newFakeCluster(3)
	s := &Snapshot{Cluster: c, Loader: c, Rand: rng(), Writes: 500}
	f, err := s.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Targets) != 1 || f.Targets[0] == "n1" {
		t.Fatalf("held back %v; want one follower, not the leader n1", f.Targets)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := f.Targets[0]
	want := []string{"pause " + id, fmt.Sprintf("load 500 avoiding [%s]", id), "resume " + id, "caught up " + id}
	if !slices.Equal(c.calls, want) {
		t.Errorf("calls %v, want %v", c.calls, want)
	}
	if r := s.Result(); !strings.Contains(r, "by InstallSnapshot") {
		t.Errorf("result %q, want a snapshot install", r)
	}
}

// fakeNemesis counts starts and stops; cancel, when set, ends the
// schedule's context during the first fault.
type fakeNemesis struct {
	starts, stops int
	cancel        context.CancelFunc
	failStart     bool
}

func (f *fakeNemesis) Kind() string { return "fake" }
func (f *fakeNemesis) Start(context.Context) (Fault, error) {
	f.starts++
	if f.cancel != nil {
		f.cancel()
	}
	if f.failStart {
		return Fault{}, errors.New("no")
	}
	return Fault{Targets: []string{"n1"}}, nil
}
func (f *fakeNemesis) Stop(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	f.stops++
	return nil
}

func TestScheduleRecordsWindowsAndAlwaysHeals(t *testing.T) {
	clock := int64(0)
	now := func() int64 { clock++; return clock }
	t.Run("bounded", func(t *testing.T) {
		n := &fakeNemesis{}
		log := NewLog(now)
		s := &Schedule{Nemeses: []Nemesis{n}, Quiet: time.Microsecond, Fault: time.Microsecond, MaxFaults: 3, Rand: rng(), Log: log}
		if err := s.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		ws := log.Windows()
		if n.starts != 3 || n.stops != 3 || len(ws) != 3 {
			t.Fatalf("starts %d stops %d windows %d; want 3 each", n.starts, n.stops, len(ws))
		}
		for _, w := range ws {
			if w.End <= w.Start || w.Kind != "fake" || len(w.Targets) != 1 {
				t.Errorf("window %+v", w)
			}
		}
	})
	t.Run("heals after cancellation", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		n := &fakeNemesis{cancel: cancel}
		log := NewLog(now)
		s := &Schedule{Nemeses: []Nemesis{n}, Quiet: time.Microsecond, Fault: time.Hour, Rand: rng(), Log: log}
		if err := s.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if n.starts != 1 || n.stops != 1 {
			t.Errorf("starts %d stops %d; want the fault healed once", n.starts, n.stops)
		}
		if ws := log.Windows(); len(ws) != 1 || ws[0].End == 0 {
			t.Errorf("windows %+v", ws)
		}
	})
	t.Run("failed start is recorded and healed", func(t *testing.T) {
		n := &fakeNemesis{failStart: true}
		log := NewLog(now)
		s := &Schedule{Nemeses: []Nemesis{n}, Quiet: time.Microsecond, MaxFaults: 1, Rand: rng(), Log: log}
		if err := s.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if ws := log.Windows(); len(ws) != 1 || ws[0].Error == "" || n.stops != 1 {
			t.Errorf("windows %+v, stops %d", ws, n.stops)
		}
	})
}

func TestPartitionOnARealNetwork(t *testing.T) {
	testnet.RequireHost(t, "ip", "iptables")
	lock := testnet.LockForTest(t) // waits its turn; the budget starts after
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := testnet.Create(ctx, testnet.Config{Hosts: 3, Lock: lock})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.Background())
	listen := func(h testnet.Host) string {
		var ln net.Listener
		if err := h.Do(func() error {
			var err error
			ln, err = net.Listen("tcp", netip.AddrPortFrom(h.Addr, 0).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		return ln.Addr().String()
	}
	a1, a2 := listen(n.Hosts[1]), listen(n.Hosts[2])
	reach := func(addr string) bool {
		var ok bool
		_ = n.Hosts[0].Do(func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				ok = true
			}
			return nil
		})
		return ok
	}
	r := Rules{FW: IPTables{}}
	for _, h := range n.Hosts {
		if err := r.Prepare(ctx, h.Namespace); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Prepare(ctx, n.Hosts[0].Namespace); err != nil {
		t.Fatalf("Prepare is not idempotent: %v", err)
	}
	if err := r.Drop(ctx, n.Hosts[0].Namespace, n.Hosts[1].Addr); err != nil {
		t.Fatal(err)
	}
	if reach(a1) {
		t.Error("host 0 reaches host 1 through the partition")
	}
	if !reach(a2) {
		t.Error("host 0 cannot reach host 2, which is on its side")
	}
	if err := r.Flush(ctx, n.Hosts[0].Namespace); err != nil {
		t.Fatal(err)
	}
	if !reach(a1) {
		t.Error("host 0 cannot reach host 1 after healing")
	}
}
