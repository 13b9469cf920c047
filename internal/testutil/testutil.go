// Package testutil starts in-process mimi-hub providers for tests: each a
// real hub.Start on loopback with its own data directory and single-voter
// Raft node, all with certificates from one development CA (internal/devca),
// ports chosen before the first start so that every provider's Peers map
// names the others, and short Raft and delivery timings.
//
// A Network's providers can be stopped and started again on the same data
// directory and ports, to test restarts. Clients reach a provider's client
// API with Provider.NewUser; raw federation requests go through
// Network.PeerClient with any certificate (Network.Issue makes more).
//
//	net := testutil.StartNetwork(t, testutil.Options{}, "a.example", "b.example")
//	alice, _ := client.RegisterMember(ctx, net.Provider("a.example").NewUser(t), "alice", "phone", client.MemberConfig{})
//
// Nothing here sleeps to synchronize: WaitState wakes on every command the
// provider's state machine applies.
//
// The package imports internal/hub, and so cluster, fsm and httpapi: tests
// of those packages use it from external test packages (package
// cluster_test).
package testutil

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/httpapi"
	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/internal/freeport"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/mimi/client"
)

// Wait bounds every wait of the helpers (a start, a stop, WaitState without
// a deadline of its own). It only matters when something is broken.
const Wait = 30 * time.Second

// RaftConfig returns Raft timings for tests: elections within about 100ms
// of a start instead of seconds.
func RaftConfig() cluster.Config {
	return cluster.Config{
		HeartbeatTimeout:   50 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		ApplyTimeout:       Wait,
		StoreOpenTimeout:   time.Second,
	}
}

// DeliveryConfig returns fanout delivery settings for tests: retries after
// 10ms to 200ms instead of up to 30s, so a provider that comes back is
// served at once.
func DeliveryConfig() cluster.DeliveryConfig {
	return cluster.DeliveryConfig{MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, RequestTimeout: 10 * time.Second}
}

// Options configure StartNetwork.
type Options struct {
	// Configure, when set, adjusts each provider's configuration before
	// its first start (RequireConsent, AssetHosts, ...). Addresses, peers,
	// certificates and data directories are already set.
	Configure func(cfg *hub.Config)
	// LogLevel is the level of the providers' logs, which go to the
	// test's log. Zero means slog.LevelError (Raft warns at every start);
	// set slog.LevelDebug to see every request.
	LogLevel slog.Level
}

// Network is a set of providers peering with each other.
type Network struct {
	// CA issued every provider's certificate and verifies them.
	CA *devca.CA

	t         testing.TB
	providers map[string]*Provider
	domains   []string
}

// Provider is one provider of a Network: its configuration (fixed at
// creation, so restarts reuse data directory and ports) and, while it
// runs, its hub.
type Provider struct {
	// Domain is the provider's domain.
	Domain string
	// Config starts the provider; change it only while it is stopped.
	Config hub.Config

	mu  sync.Mutex
	hub *hub.Hub
}

// StartNetwork configures one provider per domain and starts them all (in
// order), each ready to serve writes when it returns. The providers stop at
// the end of the test.
func StartNetwork(t testing.TB, opts Options, domains ...string) *Network {
	t.Helper()
	n := NewNetwork(t, opts, domains...)
	for _, d := range n.domains {
		n.providers[d].Start(t)
	}
	return n
}

// NewNetwork configures one provider per domain without starting them.
func NewNetwork(t testing.TB, opts Options, domains ...string) *Network {
	t.Helper()
	if len(domains) == 0 {
		t.Fatal("testutil: a network needs at least one domain")
	}
	ca, err := devca.New()
	if err != nil {
		t.Fatalf("testutil: CA: %v", err)
	}
	log := providerLogger(t, opts.LogLevel)
	n := &Network{CA: ca, t: t, providers: map[string]*Provider{}, domains: domains}
	addrs := FreeAddrs(t, 4*len(domains))
	peers := map[string]string{}
	for i, d := range domains {
		peers[d] = addrs[4*i]
	}
	for i, d := range domains {
		if _, dup := n.providers[d]; dup {
			t.Fatalf("testutil: domain %s listed twice", d)
		}
		cert, err := ca.Issue(d)
		if err != nil {
			t.Fatalf("testutil: certificate for %s: %v", d, err)
		}
		others := map[string]string{}
		for pd, a := range peers {
			if pd != d {
				others[pd] = a
			}
		}
		cfg := hubConfig(t, d, d, addrs[4*i:4*i+4], cert, ca, RaftConfig(), log)
		cfg.Peers = others
		if opts.Configure != nil {
			opts.Configure(&cfg)
		}
		n.providers[d] = &Provider{Domain: d, Config: cfg}
	}
	// Registered after the data directories, so it runs before they are
	// removed.
	t.Cleanup(func() {
		for _, d := range n.domains {
			if err := n.providers[d].stop(); err != nil {
				t.Errorf("testutil: stop %s: %v", d, err)
			}
		}
	})
	return n
}

// Provider returns the provider of domain (the test fails if there is none).
func (n *Network) Provider(domain string) *Provider {
	p, ok := n.providers[domain]
	if !ok {
		n.t.Fatalf("testutil: no provider %s", domain)
	}
	return p
}

// Domains lists the providers' domains in the order given.
func (n *Network) Domains() []string { return append([]string(nil), n.domains...) }

// Issue returns a certificate for domain from the network's CA, for raw
// federation requests (PeerClient) as a provider that may or may not be in
// the network.
func (n *Network) Issue(domain string) tls.Certificate {
	n.t.Helper()
	c, err := n.CA.Issue(domain)
	if err != nil {
		n.t.Fatalf("testutil: certificate for %s: %v", domain, err)
	}
	return c
}

// PeerClient returns an HTTP client for raw requests to the network's
// federation endpoints: URLs name a provider as https://{domain}/..., the
// connection goes to that provider's federation address, and its
// certificate is verified for the domain. cert is the client certificate
// presented; nil presents none.
func (n *Network) PeerClient(cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: n.CA.Pool(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	// ExpectContinueTimeout makes "Expect: 100-continue" requests wait for
	// the server's approval before sending their bodies.
	t := &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true, ExpectContinueTimeout: Wait}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			if p, ok := n.providers[host]; ok {
				addr = p.Config.FederationAddr
			}
		}
		return dialer.DialContext(ctx, network, addr)
	}
	return &http.Client{Transport: t, Timeout: Wait}
}

// Start starts the provider (again, after Stop: same data directory and
// ports) and waits until it leads its Raft cluster.
func (p *Provider) Start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hub != nil {
		t.Fatalf("testutil: %s is running", p.Domain)
	}
	h, err := hub.Start(ctx, p.Config)
	if err != nil {
		t.Fatalf("testutil: start %s: %v", p.Domain, err)
	}
	err = h.WaitReady(ctx)
	if err == nil {
		err = waitBounds(ctx, h)
	}
	if err != nil {
		_ = h.Close(context.Background())
		t.Fatalf("testutil: %s not ready: %v", p.Domain, err)
	}
	p.hub = h
}

// waitBounds waits until h's state applies bounds set through the log,
// numbers its outbox state-wide and applies this release's rules, the
// entries the leader proposes as it starts leading (fsm.Bounds,
// fsm.CmdOutboxIDs, fsm.CmdLogLevel), so that they do not
// land in the middle of a test's first steps.
func waitBounds(ctx context.Context, h *hub.Hub) error {
	for {
		var set, wide, level bool
		_ = h.Store().FSM().Read(func(s *fsm.State) error {
			_, set = s.Bounds()
			wide = s.OutboxStateWide()
			level = s.RulesLevel() == fsm.LogLevel
			return nil
		})
		if set && wide && level {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testutil: the state bounds set %v, the outbox numbered state-wide %v, this release's log level %v through the log: %w", set, wide, level, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Stop closes the provider (servers, delivery, Raft with its shutdown
// snapshot); Start brings it back.
func (p *Provider) Stop(t testing.TB) {
	t.Helper()
	if err := p.stop(); err != nil {
		t.Fatalf("testutil: stop %s: %v", p.Domain, err)
	}
}

func (p *Provider) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hub == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	err := p.hub.Close(ctx)
	p.hub = nil
	if err != nil && ctx.Err() != nil {
		// A stop that outlives Wait is a hang to diagnose: say where every
		// goroutine of the test binary waits.
		var stacks bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		err = fmt.Errorf("%w\ngoroutines when the stop timed out:\n%s", err, stacks.Bytes()[:min(stacks.Len(), 256<<10)])
	}
	return err
}

// Hub returns the running hub (the test fails if the provider is stopped).
func (p *Provider) Hub(t testing.TB) *hub.Hub {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hub == nil {
		t.Fatalf("testutil: %s is stopped", p.Domain)
	}
	return p.hub
}

// Running reports whether the provider runs.
func (p *Provider) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hub != nil
}

// ClientURL is the base URL of the provider's client API.
func (p *Provider) ClientURL() string { return "https://" + p.Config.ClientAddr }

// ClientTLS is the TLS configuration a client of the provider uses: the
// network's CA as roots, the certificate verified for the domain.
func (p *Provider) ClientTLS() *tls.Config {
	roots := p.Config.PeerRoots
	return &tls.Config{RootCAs: roots, ServerName: p.Domain, MinVersion: tls.VersionTLS12}
}

// NewUser returns a client API client of the provider, with no token.
// Failed requests are retried quickly (Tries 3, 20ms backoff).
func (p *Provider) NewUser(t testing.TB) *client.User {
	t.Helper()
	u, err := client.NewUser(client.UserConfig{BaseURL: p.ClientURL(), TLS: p.ClientTLS(), RetryBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("testutil: client of %s: %v", p.Domain, err)
	}
	return u
}

// Read runs fn on the provider's current state.
func (p *Provider) Read(t testing.TB, fn func(s *fsm.State)) {
	t.Helper()
	_ = p.Hub(t).Store().FSM().Read(func(s *fsm.State) error { fn(s); return nil })
}

// WaitState waits until cond holds for the provider's state, re-checking
// after every command its state machine applies, and fails the test when
// ctx ends first (within Wait when ctx has no deadline).
func (p *Provider) WaitState(ctx context.Context, t testing.TB, what string, cond func(s *fsm.State) bool) {
	t.Helper()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, Wait)
		defer cancel()
	}
	f := p.Hub(t).Store().FSM()
	for {
		changed := f.Changed()
		var ok bool
		_ = f.Read(func(s *fsm.State) error { ok = cond(s); return nil })
		if ok {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("%s: waiting for %s: %v", p.Domain, what, ctx.Err())
		}
	}
}

// FreeAddrs returns n distinct loopback addresses (127.0.0.1:port) free at
// the time of the call, below the ephemeral range (see internal/freeport)
// and never returned before in this process.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		a, err := freeport.Addr("127.0.0.1")
		if err != nil {
			t.Fatalf("testutil: %v", err)
		}
		out[i] = a
	}
	return out
}

// testWriter sends log lines to t.Log until the test's cleanups are done
// (logging after a test ended would panic).
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func newTestWriter(t testing.TB) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() { // registered first, so it runs last
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// providerLogger returns the logger of test providers: text to the test's
// log at level, where zero means errors only (Raft warns at every start).
func providerLogger(t testing.TB, level slog.Level) *slog.Logger {
	if level == 0 {
		level = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: level}))
}

// hubConfig returns the configuration of node id of provider domain, its
// data in a fresh folder, listening on addrs (federation, client, ops,
// Raft), with a provider certificate and peer roots from ca.
func hubConfig(t testing.TB, domain, id string, addrs []string, cert tls.Certificate, ca *devca.CA, raft cluster.Config, log *slog.Logger) hub.Config {
	return hub.Config{
		Domain:         domain,
		NodeID:         id,
		DataDir:        filepath.Join(t.TempDir(), id),
		FederationAddr: addrs[0],
		ClientAddr:     addrs[1],
		OpsAddr:        addrs[2],
		RaftAddr:       addrs[3],
		Certificate:    cert,
		PeerRoots:      ca.Pool(),
		Raft:           raft,
		Delivery:       DeliveryConfig(),
		// Tests make many accounts from one address; the attack suite
		// sets limits of its own (Options.Configure).
		AccountRateLimits: httpapi.NoRateLimits,
		Logger:            log,
	}
}
