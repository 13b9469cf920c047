package systemtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/internal/freeport"
	"github.com/mimihub/mimi-hub/internal/hub"
)

// ProviderConfig describes the nodes of one provider.
type ProviderConfig struct {
	// Binary is the mimi-hub executable (see Build).
	Binary string
	// Domain is the provider's domain, shared by its nodes.
	Domain string
	// Dir holds each node's data folder and log file.
	Dir string
	// DevCADir is the development CA folder (-dev-ca-dir), shared by the
	// nodes (so they share the provider certificate's CA, the cluster CA
	// and the gossip key) and by the other providers of the test.
	DevCADir string
	// Nodes is how many nodes NewProvider configures (n1, n2, ...).
	Nodes int
	// BootstrapExpect is their -bootstrap-expect; zero means Nodes.
	BootstrapExpect int
	// FirstIP is the last byte of the first node's loopback address
	// 127.0.0.FirstIP; later nodes take the following addresses. Give
	// each provider of a test its own range.
	FirstIP int
	// Peers maps other providers' domains to their federation host:port
	// (-peer).
	Peers map[string]string
	// PublicURL is -public-url: where peers reach the provider (through
	// a Proxy in front of its nodes); empty leaves the daemon's default.
	PublicURL string
	// Flags are more flags for every node (timings, snapshot policy).
	Flags []string
	// Env is added to every node's environment.
	Env []string
}

// Provider is the nodes of one provider.
type Provider struct {
	// Domain is the provider's domain.
	Domain string

	cfg    ProviderConfig
	mu     sync.Mutex
	nodes  []*Node
	nextIP int
}

// NewProvider configures cfg.Nodes nodes, which all join each other's
// gossip and expect BootstrapExpect voters, without starting them.
func NewProvider(cfg ProviderConfig) (*Provider, error) {
	if cfg.Binary == "" || cfg.Domain == "" || cfg.Dir == "" || cfg.DevCADir == "" {
		return nil, errors.New("systemtest: a provider needs Binary, Domain, Dir and DevCADir")
	}
	if cfg.FirstIP < 2 || cfg.FirstIP+cfg.Nodes > 250 {
		return nil, fmt.Errorf("systemtest: FirstIP %d: want 2 to %d", cfg.FirstIP, 250-cfg.Nodes)
	}
	if cfg.BootstrapExpect == 0 {
		cfg.BootstrapExpect = cfg.Nodes
	}
	p := &Provider{Domain: cfg.Domain, cfg: cfg, nextIP: cfg.FirstIP}
	var gossip []string
	for i := range cfg.Nodes {
		n, err := p.newNode(fmt.Sprintf("n%d", i+1))
		if err != nil {
			return nil, err
		}
		gossip = append(gossip, n.GossipAddr)
	}
	for _, n := range p.nodes {
		join := slices.DeleteFunc(slices.Clone(gossip), func(a string) bool { return a == n.GossipAddr })
		n.args = append(n.args, "-bootstrap-expect", strconv.Itoa(cfg.BootstrapExpect))
		if len(join) > 0 {
			n.args = append(n.args, "-join", strings.Join(join, ","))
		}
		n.args = append(n.args, cfg.Flags...)
	}
	return p, nil
}

// newNode configures a node on the next loopback address.
func (p *Provider) newNode(id string) (*Node, error) {
	ip := fmt.Sprintf("127.0.0.%d", p.nextIP)
	p.nextIP++
	var ports [5]int
	for i := range ports {
		port, err := freeport.Get(ip)
		if err != nil {
			return nil, err
		}
		ports[i] = port
	}
	addr := func(i int) string { return net.JoinHostPort(ip, strconv.Itoa(ports[i])) }
	n := &Node{
		ID: id, IP: ip,
		FederationAddr: addr(0), ClientAddr: addr(1), OpsAddr: addr(2), RaftAddr: addr(3), GossipAddr: addr(4),
		DataDir: filepath.Join(p.cfg.Dir, p.cfg.Domain, id),
		LogFile: filepath.Join(p.cfg.Dir, p.cfg.Domain, id+".log"),
		bin:     p.cfg.Binary,
		env:     p.cfg.Env,
	}
	if err := os.MkdirAll(filepath.Dir(n.DataDir), 0o700); err != nil {
		return nil, fmt.Errorf("systemtest: %w", err)
	}
	n.args = []string{
		"-domain", p.cfg.Domain, "-node-id", id, "-data", n.DataDir, "-dev-ca-dir", p.cfg.DevCADir,
		"-federation-addr", n.FederationAddr, "-client-addr", n.ClientAddr, "-ops-addr", n.OpsAddr,
		"-raft-addr", n.RaftAddr, "-gossip-addr", n.GossipAddr, "-log-level", "info",
	}
	if p.cfg.PublicURL != "" {
		n.args = append(n.args, "-public-url", p.cfg.PublicURL)
	}
	for _, d := range slices.Sorted(func(yield func(string) bool) {
		for d := range p.cfg.Peers {
			if !yield(d) {
				return
			}
		}
	}) {
		n.args = append(n.args, "-peer", d+"="+p.cfg.Peers[d])
	}
	p.mu.Lock()
	p.nodes = append(p.nodes, n)
	p.mu.Unlock()
	return n, nil
}

// AddNode configures a node that joins the running cluster: a new
// -node-id on the next loopback address, -bootstrap-expect 0 and -join
// naming the other nodes' gossip addresses. flags come after the
// provider's Flags. It is not started.
func (p *Provider) AddNode(id string, flags ...string) (*Node, error) {
	var join []string
	for _, o := range p.Nodes() {
		join = append(join, o.GossipAddr)
	}
	n, err := p.newNode(id)
	if err != nil {
		return nil, err
	}
	n.args = append(n.args, "-bootstrap-expect", "0", "-join", strings.Join(join, ","))
	n.args = append(n.args, p.cfg.Flags...)
	n.args = append(n.args, flags...)
	return n, nil
}

// Nodes returns every configured node, in order of creation.
func (p *Provider) Nodes() []*Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.nodes)
}

// Node returns the node named id, or nil.
func (p *Provider) Node(id string) *Node {
	for _, n := range p.Nodes() {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Serving returns the nodes whose processes run and are not paused.
func (p *Provider) Serving() []*Node {
	var out []*Node
	for _, n := range p.Nodes() {
		if n.Serving() {
			out = append(out, n)
		}
	}
	return out
}

// Start starts every configured node that is not running.
func (p *Provider) Start() error {
	for _, n := range p.Nodes() {
		if n.Running() {
			continue
		}
		if err := n.Start(); err != nil {
			return err
		}
	}
	return nil
}

// KillAll kills every running node (paused ones too).
func (p *Provider) KillAll() {
	for _, n := range p.Nodes() {
		if n.Paused() {
			n.Resume()
		}
		if n.Running() {
			n.Kill()
		}
	}
}

// Leader asks every serving node for its status and returns the node that
// leads in the highest term, with its status.
func (p *Provider) Leader(ctx context.Context) (*Node, *hub.OpsStatus, error) {
	var best *Node
	var bestSt *hub.OpsStatus
	var errs []error
	for _, n := range p.Serving() {
		st, err := n.Status(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Raft.Leader && (bestSt == nil || st.Raft.Term > bestSt.Raft.Term) {
			best, bestSt = n, st
		}
	}
	if best == nil {
		return nil, nil, fmt.Errorf("systemtest: %s: no serving node leads: %w", p.Domain, errors.Join(errs...))
	}
	return best, bestSt, nil
}

// Poll is how often the Wait functions look again.
const Poll = 50 * time.Millisecond

// WaitLeader waits until a serving node other than the excluded ones
// leads and every serving node knows it as the leader, and returns it.
func (p *Provider) WaitLeader(ctx context.Context, exclude ...*Node) (*Node, error) {
	var last error
	for {
		n, st, err := p.Leader(ctx)
		switch {
		case err != nil:
			last = err
		case slices.Contains(exclude, n):
			last = fmt.Errorf("systemtest: %s: %s still leads", p.Domain, n.ID)
		default:
			agreed := true
			for _, o := range p.Serving() {
				ost, err := o.Status(ctx)
				if err != nil || ost.Raft.LeaderID != st.NodeID {
					agreed = false
					last = fmt.Errorf("systemtest: %s: %s does not follow %s yet (%v)", p.Domain, o.ID, n.ID, err)
					break
				}
			}
			if agreed {
				return n, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a leader: %w (last: %v)", ctx.Err(), last)
		case <-time.After(Poll):
		}
	}
}

// WaitCaughtUp waits until node n has applied at least index.
func (n *Node) WaitCaughtUp(ctx context.Context, index uint64) (*hub.OpsStatus, error) {
	var last error
	for {
		st, err := n.Status(ctx)
		if err == nil && st.Raft.AppliedIndex >= index {
			return st, nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("applied %d of %d", st.Raft.AppliedIndex, index)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("systemtest: %s catching up to %d: %w (last: %v)", n.ID, index, ctx.Err(), last)
		case <-time.After(Poll):
		}
	}
}

// WaitServing waits until every serving node answers /readyz and a leader
// is agreed on, and returns the leader.
func (p *Provider) WaitServing(ctx context.Context) (*Node, error) {
	for _, n := range p.Serving() {
		for !n.Ready(ctx) {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("systemtest: %s/%s not ready: %w", p.Domain, n.ID, ctx.Err())
			case <-time.After(Poll):
			}
		}
	}
	return p.WaitLeader(ctx)
}

// Logs returns the tail of every node's log, for a failed test.
func (p *Provider) Logs(lines int) string {
	var b strings.Builder
	for _, n := range p.Nodes() {
		fmt.Fprintf(&b, "----- %s/%s (%s) -----\n%s\n", p.Domain, n.ID, n.LogFile, n.LogTail(lines))
	}
	return b.String()
}

// Races returns the nodes whose logs report a data race.
func (p *Provider) Races() []string {
	var out []string
	for _, n := range p.Nodes() {
		if c := n.LogCount(RaceMarker); c > 0 {
			out = append(out, fmt.Sprintf("%s/%s: %d data race(s), see %s", p.Domain, n.ID, c, n.LogFile))
		}
	}
	return out
}

// DevCA loads (or creates) the development CA in dir, the one every
// provider of a test shares through -dev-ca-dir, and returns the pool
// that verifies the providers' certificates.
func DevCA(dir string) (*x509.CertPool, error) {
	ca, err := devca.LoadOrCreate(dir)
	if err != nil {
		return nil, fmt.Errorf("systemtest: dev CA: %w", err)
	}
	return ca.Pool(), nil
}

// FailoverClient returns an HTTP client whose every new connection goes to
// the first address of addrs() that accepts it, in order: a stand-in for
// the load balancer in front of a provider's nodes. URLs name the
// provider (https://DOMAIN/...), and its certificate is verified against
// roots for that name. Connections live until the node closes them or
// dies; the request that notices is retried by mimi/client.
func FailoverClient(roots *x509.CertPool, addrs func() []string) *http.Client {
	dialer := &net.Dialer{Timeout: time.Second}
	t := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var errs []error
			for _, a := range addrs() {
				c, err := dialer.DialContext(ctx, network, a)
				if err == nil {
					return c, nil
				}
				errs = append(errs, err)
			}
			if len(errs) == 0 {
				return nil, errors.New("systemtest: no node to connect to")
			}
			return nil, errors.Join(errs...)
		},
	}
	return &http.Client{Transport: t}
}
