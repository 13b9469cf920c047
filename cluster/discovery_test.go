package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeDNS is a Resolver whose answers a test sets and changes.
type fakeDNS struct {
	mu      sync.Mutex
	hosts   map[string][]string
	srv     map[string][]*net.SRV
	lookups int
}

var errNoSuchHost = errors.New("no such host")

func newFakeDNS() *fakeDNS {
	return &fakeDNS{hosts: map[string][]string{}, srv: map[string][]*net.SRV{}}
}

func (d *fakeDNS) LookupHost(_ context.Context, host string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lookups++
	if a, ok := d.hosts[host]; ok {
		return slices.Clone(a), nil
	}
	return nil, fmt.Errorf("lookup %s: %w", host, errNoSuchHost)
}

func (d *fakeDNS) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lookups++
	if service != "" || proto != "" {
		return "", nil, fmt.Errorf("want the SRV name whole, got service %q proto %q", service, proto)
	}
	if s, ok := d.srv[name]; ok {
		return name, slices.Clone(s), nil
	}
	return "", nil, fmt.Errorf("lookup %s: %w", name, errNoSuchHost)
}

func (d *fakeDNS) setHost(name string, addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hosts[name] = addrs
}

func (d *fakeDNS) addSRV(name, target string, port int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.srv[name] = append(d.srv[name], &net.SRV{Target: target + ".", Port: uint16(port)})
}

func (d *fakeDNS) lookupCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lookups
}

func TestParseJoinEntry(t *testing.T) {
	for _, tc := range []struct {
		in         string
		name, port string
		err        bool
	}{
		{in: "10.0.0.1:8447"},
		{in: "[fd00::1]:8447"},
		{in: "n1.a.example:8447"},
		{in: "dns:mimi-hub.mimi.svc.cluster.local:8447", name: "mimi-hub.mimi.svc.cluster.local", port: "8447"},
		{in: "dns:_gossip._tcp.mimi-hub.mimi.svc.cluster.local", name: "_gossip._tcp.mimi-hub.mimi.svc.cluster.local"},
		{in: "dns:headless.", name: "headless."},
		{in: "10.0.0.1", err: true},
		{in: ":8447", err: true},
		{in: "10.0.0.1:0", err: true},
		{in: "10.0.0.1:65536", err: true},
		{in: "dns:", err: true},
		{in: "dns:a..b:8447", err: true},
		{in: "dns:bad name:8447", err: true},
		{in: "dns:a.example:http", err: true},
		{in: "dns:" + strings.Repeat("a", 64) + ".example", err: true},
		{in: "dns:" + strings.Repeat("abcdefg.", 32) + "x", err: true},
	} {
		e, err := parseJoinEntry(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("parseJoinEntry(%q) accepted it: %+v", tc.in, e)
			}
			continue
		}
		if err != nil || e.raw != tc.in || e.name != tc.name || e.port != tc.port {
			t.Errorf("parseJoinEntry(%q) = %+v, %v; want name %q port %q", tc.in, e, err, tc.name, tc.port)
		}
	}
}

func mustEntries(t *testing.T, in ...string) []joinEntry {
	t.Helper()
	var out []joinEntry
	for _, s := range in {
		e, err := parseJoinEntry(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func TestResolveJoin(t *testing.T) {
	dns := newFakeDNS()
	dns.setHost("headless.test", "10.1.0.3", "10.1.0.1", "10.1.0.2", "10.1.0.1")
	dns.setHost("n1.headless.test", "10.1.0.1")
	dns.setHost("n2.headless.test", "10.1.0.2", "fd00::2")
	dns.addSRV("_gossip._tcp.headless.test", "n1.headless.test", 8447)
	dns.addSRV("_gossip._tcp.headless.test", "n2.headless.test", 8447)
	dns.addSRV("_gossip._tcp.headless.test", "gone.headless.test", 8447)
	self := "10.1.0.1:8447"
	for _, tc := range []struct {
		name    string
		entries []string
		want    []string
		errs    []string
	}{
		{"A records at a port, without self, each once", []string{"dns:headless.test:8447"},
			[]string{"10.1.0.2:8447", "10.1.0.3:8447"}, nil},
		{"SRV records: each target's addresses at the record's port", []string{"dns:_gossip._tcp.headless.test"},
			[]string{"10.1.0.2:8447", "[fd00::2]:8447"}, []string{"gone.headless.test"}},
		{"static entries first, as given, even self", []string{"10.9.9.9:1", self, "dns:headless.test:8447"},
			[]string{"10.9.9.9:1", self, "10.1.0.2:8447", "10.1.0.3:8447"}, nil},
		{"a static entry is not repeated from DNS", []string{"10.1.0.3:8447", "dns:headless.test:8447"},
			[]string{"10.1.0.3:8447", "10.1.0.2:8447"}, nil},
		{"a name that does not resolve yet", []string{"dns:later.test:8447", "dns:headless.test:8447"},
			[]string{"10.1.0.2:8447", "10.1.0.3:8447"}, []string{"later.test"}},
		{"self is recognised in another spelling", []string{"dns:mapped.test:8447"}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dns.setHost("mapped.test", "::ffff:10.1.0.1")
			got, err := resolveJoin(t.Context(), dns, mustEntries(t, tc.entries...), self)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("addresses %q, want %q", got, tc.want)
			}
			if len(tc.errs) == 0 && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			for _, e := range tc.errs {
				if err == nil || !strings.Contains(err.Error(), e) || !errors.Is(err, errNoSuchHost) {
					t.Fatalf("error %v, want one naming %s", err, e)
				}
			}
		})
	}
}

// TestResolveJoinBounded: a DNS answer of thousands of records (broken or
// hostile) yields at most maxJoinAddrs addresses and as many lookups.
func TestResolveJoinBounded(t *testing.T) {
	dns := newFakeDNS()
	var many []string
	for i := range 5000 {
		many = append(many, fmt.Sprintf("10.2.%d.%d", i/256, i%256))
		dns.addSRV("_gossip._tcp.big.test", fmt.Sprintf("t%d.big.test", i), 8447)
		dns.setHost(fmt.Sprintf("t%d.big.test", i), many[i])
	}
	rand.Shuffle(len(many), func(i, j int) { many[i], many[j] = many[j], many[i] })
	dns.setHost("big.test", many...)
	for _, entry := range []string{"dns:big.test:8447", "dns:_gossip._tcp.big.test"} {
		before := dns.lookupCount()
		got, err := resolveJoin(t.Context(), dns, mustEntries(t, entry), "10.9.9.9:8447")
		if err != nil || len(got) != maxJoinAddrs {
			t.Fatalf("%s: %d addresses, %v; want %d", entry, len(got), err, maxJoinAddrs)
		}
		if n := dns.lookupCount() - before; n > maxJoinAddrs+1 {
			t.Fatalf("%s: %d lookups for one attempt", entry, n)
		}
	}
}

func TestLookupOne(t *testing.T) {
	dns := newFakeDNS()
	dns.setHost("one.test", "10.0.0.5")
	dns.setHost("dual.test", "fd00::5", "10.0.0.5")
	dns.setHost("v6.test", "fd00::5")
	dns.setHost("two.test", "10.0.0.5", "10.0.0.6")
	dns.setHost("dup.test", "10.0.0.5", "::ffff:10.0.0.5")
	dns.setHost("wild.test", "0.0.0.0")
	for name, want := range map[string]string{"one.test": "10.0.0.5", "dual.test": "10.0.0.5", "v6.test": "fd00::5", "dup.test": "10.0.0.5"} {
		if ip, err := lookupOne(t.Context(), dns, name); err != nil || ip.String() != want {
			t.Errorf("lookupOne(%s) = %v, %v; want %s", name, ip, err, want)
		}
	}
	for _, name := range []string{"two.test", "wild.test", "missing.test"} {
		if ip, err := lookupOne(t.Context(), dns, name); err == nil {
			t.Errorf("lookupOne(%s) = %v: want an error, not a guess", name, ip)
		}
	}
}

func TestAdvertiseAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1:8446":  "10.0.0.1:8446",
		"[fd00::1]:8446": "[fd00::1]:8446",
		"mimi-hub-0.mimi-hub.mimi.svc.cluster.local:8446": "mimi-hub-0.mimi-hub.mimi.svc.cluster.local:8446",
	} {
		a, err := advertiseAddr(in)
		if err != nil || a.String() != want {
			t.Errorf("advertiseAddr(%q) = %v, %v; want %s", in, a, err, want)
		}
	}
	for _, in := range []string{"0.0.0.0:8446", "[::]:8446", "n1:0", "n1", "bad host:8446"} {
		if a, err := advertiseAddr(in); err == nil {
			t.Errorf("advertiseAddr(%q) = %v: want an error", in, a)
		}
	}
}

// TestDNSDiscovery forms a 3-node cluster whose only join entry is an SRV
// name, with advertise addresses given as names, while the DNS answers
// change as they do when Kubernetes publishes pods one by one. n1 starts
// when DNS lists only itself: it must not count its own answer as a join
// peer, and must keep resolving until DNS names the others. n2 and n3 find
// n1 through DNS and the three form the cluster. The Raft configuration
// keeps the advertised names.
func TestDNSDiscovery(t *testing.T) {
	c := newTestCluster(t)
	dns := newFakeDNS()
	const srvName = "_gossip._tcp.mimi.test"
	var cfgs []Config
	for i := range 3 {
		id := fmt.Sprintf("n%d", i+1)
		cfg := c.config(id, 3)
		_, gport, _ := net.SplitHostPort(cfg.Gossip.BindAddr)
		_, rport, _ := net.SplitHostPort(cfg.RaftAddr)
		host := id + ".mimi.test"
		dns.setHost(host, "127.0.0.1")
		cfg.Gossip.AdvertiseAddr = net.JoinHostPort(host, gport)
		cfg.Gossip.Join = []string{"dns:" + srvName}
		cfg.Gossip.Resolver = dns
		cfg.AdvertiseAddr = net.JoinHostPort("localhost", rport) // resolved by the system at each dial
		cfgs = append(cfgs, cfg)
	}
	addRecord := func(cfg Config) {
		host, port, _ := net.SplitHostPort(cfg.Gossip.AdvertiseAddr)
		p, _ := strconv.Atoi(port)
		dns.addSRV(srvName, host, p)
	}
	resolvesAgain := func(what string) {
		t.Helper()
		before := dns.lookupCount()
		// One more attempt: the SRV name and its target.
		c.waitFor(what, func() bool { return dns.lookupCount() >= before+2 })
	}
	addRecord(cfgs[0])
	n1 := c.start(cfgs[0])
	resolvesAgain("n1 to resolve its join name again")
	if n1.node.joined.Load() {
		t.Fatal("n1 counts itself as a join peer that answered")
	}
	// n2 and n3 find n1 (DNS lists it) and the three bootstrap.
	c.start(cfgs[1])
	c.start(cfgs[2])
	l := c.leader()
	c.waitFor("three voters", func() bool {
		voters, _ := c.suffrage(l)
		return len(voters) == 3
	})
	// n1's DNS still names only itself: it goes on resolving.
	resolvesAgain("n1 to go on resolving")
	if n1.node.joined.Load() {
		t.Fatal("n1 joined although DNS never named another node to it")
	}
	addRecord(cfgs[1])
	addRecord(cfgs[2])
	c.waitFor("n1 to join once DNS names the others", n1.node.joined.Load)

	cf := l.node.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		t.Fatal(err)
	}
	for _, s := range cf.Configuration().Servers {
		if !strings.HasPrefix(string(s.Address), "localhost:") {
			t.Errorf("server %s at %q: the Raft configuration must keep the advertised name", s.ID, s.Address)
		}
	}
	register(t, c.follower().store, "alice") // forwarded to the leader at a named address
}
