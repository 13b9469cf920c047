package systemtest

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/client"
)

// Domains of the tests: a.example hosts the rooms on a cluster;
// b.example is a single-node follower provider.
const (
	domainA = "a.example"
	domainB = "b.example"
)

// wait bounds each wait of a test (a start, an election, a catch-up). It
// only matters when something is broken.
const wait = 90 * time.Second

// fastRaft are Raft timings for nodes on one machine: an election within
// about half a second of losing the leader.
var fastRaft = []string{
	"-raft-heartbeat-timeout", "200ms",
	"-raft-election-timeout", "200ms",
	"-raft-lease-timeout", "100ms",
	"-leader-wait", "15s",
	// The load registers far more users from one address than a real
	// client would.
	"-no-account-rate-limits",
}

// world is one test's providers: a.example as a cluster of processes, and
// optionally b.example as one more process that peers with it through a
// Proxy standing for a.example's load balancer.
type world struct {
	t     *testing.T
	dir   string
	roots *x509.CertPool
	a     *Provider
	b     *Provider // nil without a follower provider
	proxy *Proxy    // a.example's federation endpoints, for b.example
}

// worldOptions configure newWorld.
type worldOptions struct {
	// nodes is the size of a.example's cluster.
	nodes int
	// flags are added to every a.example node's flags (after fastRaft).
	flags []string
	// follower adds b.example.
	follower bool
}

// newWorld configures and starts the providers, and waits until a.example
// has a leader every node follows. At the end of the test it kills every
// process, fails the test if a node's log reports a data race, and prints
// the logs' tails if the test failed (MIMI_SYSTEMTEST_LOGS=DIR also copies
// the full logs there).
func newWorld(t *testing.T, o worldOptions) *world {
	t.Helper()
	needBinary(t)
	dir := t.TempDir()
	caDir := filepath.Join(dir, "dev-ca")
	roots, err := DevCA(caDir)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, dir: dir, roots: roots}
	t.Cleanup(w.cleanup)

	// The proxy exists before a.example's nodes: b.example must know its
	// address when it starts, and a.example publishes it as its URL.
	var hub atomic.Pointer[Provider] // set once a.example is configured
	w.proxy, err = StartProxy("127.0.0.1:0", func() []string {
		a := hub.Load()
		if a == nil {
			return nil
		}
		var addrs []string
		for _, n := range a.Serving() {
			addrs = append(addrs, n.FederationAddr)
		}
		return addrs
	})
	if err != nil {
		t.Fatal(err)
	}
	_, proxyPort, _ := strings.Cut(w.proxy.Addr(), ":")
	peersOfA := map[string]string{}
	if o.follower {
		w.b, err = NewProvider(ProviderConfig{
			Binary: binary, Domain: domainB, Dir: dir, DevCADir: caDir, Nodes: 1, BootstrapExpect: 1, FirstIP: 31,
			Peers: map[string]string{domainA: w.proxy.Addr()},
			Flags: []string{"-leader-wait", "15s"},
		})
		if err != nil {
			t.Fatal(err)
		}
		peersOfA[domainB] = w.b.Nodes()[0].FederationAddr
	}
	w.a, err = NewProvider(ProviderConfig{
		Binary: binary, Domain: domainA, Dir: dir, DevCADir: caDir, Nodes: o.nodes, FirstIP: 11,
		Peers: peersOfA, PublicURL: "https://" + domainA + ":" + proxyPort,
		Flags: append(slices.Clone(fastRaft), o.flags...),
	})
	if err != nil {
		t.Fatal(err)
	}
	hub.Store(w.a)
	start := time.Now()
	for _, p := range w.providers() {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	for _, p := range w.providers() {
		leader, err := p.WaitServing(ctx)
		if err != nil {
			t.Fatalf("%s: %v", p.Domain, err)
		}
		t.Logf("%s: %d node(s) serving, %s leads, %v after start", p.Domain, len(p.Nodes()), leader.ID, time.Since(start).Round(time.Millisecond))
	}
	return w
}

func (w *world) providers() []*Provider {
	if w.b == nil {
		return []*Provider{w.a}
	}
	return []*Provider{w.a, w.b}
}

func (w *world) cleanup() {
	t := w.t
	for _, p := range w.providers() {
		if p != nil {
			p.KillAll()
		}
	}
	if w.proxy != nil {
		w.proxy.Close()
	}
	for _, p := range w.providers() {
		if p == nil {
			continue
		}
		for _, r := range p.Races() {
			t.Errorf("data race in a node: %s", r)
		}
	}
	if dst := os.Getenv("MIMI_SYSTEMTEST_LOGS"); dst != "" {
		w.copyLogs(filepath.Join(dst, strings.ReplaceAll(t.Name(), "/", "_")))
	}
	if t.Failed() {
		for _, p := range w.providers() {
			if p != nil {
				t.Logf("logs of %s:\n%s", p.Domain, p.Logs(150))
			}
		}
	}
}

func (w *world) copyLogs(dst string) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		w.t.Logf("copying logs: %v", err)
		return
	}
	for _, p := range w.providers() {
		for _, n := range p.Nodes() {
			src, err := os.Open(n.LogFile)
			if err != nil {
				continue
			}
			out, err := os.Create(filepath.Join(dst, p.Domain+"-"+n.ID+".log"))
			if err == nil {
				io.Copy(out, src)
				out.Close()
			}
			src.Close()
		}
	}
	w.t.Logf("node logs copied to %s", dst)
}

// ctx returns a context bounded by wait.
func (w *world) ctx() context.Context {
	ctx, cancel := context.WithTimeout(w.t.Context(), wait)
	w.t.Cleanup(cancel)
	return ctx
}

// user returns a client API client of provider p (any of its nodes,
// preferring prefer when it serves).
func (w *world) user(p *Provider, prefer *Node) *client.User {
	w.t.Helper()
	hc := FailoverClient(w.roots, func() []string {
		var addrs []string
		if prefer != nil && prefer.Serving() {
			addrs = append(addrs, prefer.ClientAddr)
		}
		for _, n := range p.Serving() {
			if n != prefer {
				addrs = append(addrs, n.ClientAddr)
			}
		}
		return addrs
	})
	u, err := client.NewUser(client.UserConfig{BaseURL: "https://" + p.Domain, HTTPClient: hc, Tries: 6, RetryBackoff: 200 * time.Millisecond, Timeout: 30 * time.Second})
	if err != nil {
		w.t.Fatal(err)
	}
	return u
}

// pinnedUser returns a client of node n only, with the given token, that
// does not retry.
func (w *world) pinnedUser(p *Provider, n *Node, token string) *client.User {
	w.t.Helper()
	hc := FailoverClient(w.roots, func() []string { return []string{n.ClientAddr} })
	u, err := client.NewUser(client.UserConfig{BaseURL: "https://" + p.Domain, HTTPClient: hc, Tries: 1, Token: token, Timeout: 10 * time.Second})
	if err != nil {
		w.t.Fatal(err)
	}
	return u
}

// describe is a one-line summary of a provider's nodes for the test log.
func describe(ctx context.Context, p *Provider) string {
	var parts []string
	for _, n := range p.Nodes() {
		switch {
		case !n.Running():
			parts = append(parts, n.ID+":down")
		case n.Paused():
			parts = append(parts, n.ID+":paused")
		default:
			st, err := n.Status(ctx)
			if err != nil {
				parts = append(parts, n.ID+":?")
				continue
			}
			parts = append(parts, fmt.Sprintf("%s:%s/t%d/c%d/a%d/s%d", n.ID, st.Raft.State, st.Raft.Term, st.Raft.CommitIndex, st.Raft.AppliedIndex, st.Raft.LastSnapshotIndex))
		}
	}
	return strings.Join(parts, " ")
}
