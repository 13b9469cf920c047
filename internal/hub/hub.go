// Package hub assembles one provider node from its parts: the Raft node and
// FSM (cluster, fsm), the federation and client API routers (httpapi), the
// outbound MIMI client (mimi/client) and the fanout delivery worker. The
// daemon (cmd/mimi-hub) and the end-to-end tests start providers through it,
// so both run exactly the same wiring.
package hub

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/httpapi"
	"github.com/mimihub/mimi-hub/internal/connlimit"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// Config describes one provider node.
type Config struct {
	// Domain is the provider's domain (its certificate names it).
	Domain string
	// DataDir holds the Raft log, stable store and snapshots.
	DataDir string
	// FederationAddr, ClientAddr and OpsAddr are the listen addresses of
	// the MIMI (mutual TLS), client API (TLS) and operations (plain HTTP)
	// servers; RaftAddr the Raft transport's.
	FederationAddr, ClientAddr, OpsAddr, RaftAddr string
	// PublicURL is where peers reach the federation endpoints (for the
	// directory); default https://{Domain}.
	PublicURL string
	// Certificate is the provider's certificate, used as TLS server
	// certificate and as client certificate towards peers.
	Certificate tls.Certificate
	// PeerRoots verify peers' certificates, both ways.
	PeerRoots *x509.CertPool
	// Peers maps peer domains to the host:port their federation endpoints
	// listen on, like a hosts file: requests still name the domain (and
	// its certificate must), but connect to that address. Unlisted domains
	// are reached at https://{domain}.
	Peers map[string]string
	// AssetHosts are the hosts downloadFile may fetch from.
	AssetHosts []string
	// AssetRoots verify the asset hosts' certificates; nil means the
	// system roots.
	AssetRoots *x509.CertPool
	// RegistrationKey, when set, guards client registration.
	RegistrationKey string
	// Registration is the policy for new users (httpapi.RegistrationOpen,
	// ...Key, ...Invite, ...Closed); default "key" with a RegistrationKey,
	// else "open".
	Registration string
	// AccountRateLimits bounds registration, device linking and password
	// attempts per source address and per account (zero: the defaults;
	// httpapi.RateLimits).
	AccountRateLimits httpapi.RateLimits
	// RequireConsent makes claims for local users need their grant.
	RequireConsent bool
	// AdminToken is the bearer token the ops listener's operator API, the
	// dashboard's data and pprof require (see opsguard.go). Empty means
	// none, which Start accepts only for an ops listener on a loopback
	// address.
	AdminToken string
	// OpsHosts are host names the ops listener answers to besides IP
	// literals and localhost (requests naming another host are refused,
	// against DNS rebinding).
	OpsHosts []string
	// NodeID names this node within its provider's cluster; default
	// Domain (a single node).
	NodeID string
	// Raft configures the Raft node: timing, snapshots, and for a cluster
	// of several nodes TLS (the cluster CA), Gossip and BootstrapExpect.
	// NodeID, DataDir and RaftAddr are set from the fields above. Without
	// Gossip the node is a single voter (BootstrapExpect 1).
	Raft cluster.Config
	// Delivery tunes the fanout worker.
	Delivery cluster.DeliveryConfig
	// State bounds the replicated state: room message retention, inbox,
	// outbox and subscription caps (fsm.Config; zero fields take its
	// defaults). Domain and RequireConsent come from the fields above.
	// Every node of a cluster must use the same values: they decide what
	// the state machine keeps.
	State fsm.Config
	// Limits bounds what each client and peer may send to this node and
	// how long its requests may take (httpapi.Config's budgets, body
	// limits and timeouts; zero fields take its defaults).
	Limits Limits
	// MaxConns and MaxConnsPerAddr bound the connections each listener
	// (federation, client, ops) holds, in all and from one source address
	// (defaults DefaultMaxConns and DefaultMaxConnsPerAddr; negative: no
	// bound).
	MaxConns, MaxConnsPerAddr int
	// OnLeave, when set, is called once after this node left its cluster
	// on request (POST /v1/cluster/leave), in its own goroutine: the
	// process should stop (mimi-hub cancels its run context). Without it,
	// the operator stops the process.
	OnLeave func()
	Logger  *slog.Logger
}

// Limits are the per-node request limits of Config (see httpapi.Config).
type Limits struct {
	ClientBudget   httpapi.Budget
	PeerBudget     httpapi.Budget
	RoomFanout     float64
	MaxMessageBody int64
	BodyTimeout    time.Duration
}

// Listener defaults.
const (
	DefaultMaxConns        = 8192
	DefaultMaxConnsPerAddr = 1024
	// readHeaderTimeout bounds a connection's TLS handshake and request
	// headers, idleTimeout a kept-alive connection between requests;
	// maxHeaderBytes the request headers.
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 64 << 10
)

// Hub is a running provider node.
type Hub struct {
	cfg      Config
	fsm      *fsm.FSM
	node     *cluster.Node
	store    *cluster.Store
	fed      *client.Federation
	delivery *cluster.Delivery
	metrics  *metrics
	ops      opsState
	servers  []*http.Server
	addrs    map[string]string
	// material is the TLS material and peer map SIGHUP can replace
	// (reload.go).
	material atomic.Pointer[material]
	// peerTransport carries federation requests; Reload swaps it.
	peerTransport swapTransport
	conns         map[string]*connlimit.Listener // bounded listeners, by server
	cancel        context.CancelFunc
	wg            sync.WaitGroup
	closed        sync.Once
	draining      chan struct{} // closed when Close begins
}

// Start starts a provider node: Raft (bootstrapping a single voter on first
// start), the delivery worker and the three servers.
func Start(ctx context.Context, cfg Config) (*Hub, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if _, err := proto.UserURI(cfg.Domain, "x").Parse(); err != nil {
		return nil, fmt.Errorf("hub: invalid domain %q", cfg.Domain)
	}
	if cfg.OpsAddr != "" && cfg.AdminToken == "" && !IsLoopbackAddr(cfg.OpsAddr) {
		return nil, fmt.Errorf("hub: the operations listener %s is not a loopback address: it needs an admin token", cfg.OpsAddr)
	}
	if err := checkRegistration(cfg.Registration, cfg.RegistrationKey); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("domain", cfg.Domain)
	state := cfg.State
	state.Domain, state.RequireConsent = cfg.Domain, cfg.RequireConsent
	f, err := fsm.New(state)
	if err != nil {
		return nil, err
	}
	if cfg.NodeID == "" {
		cfg.NodeID = cfg.Domain
	}
	rc := cfg.Raft
	rc.NodeID = cfg.NodeID
	rc.DataDir = filepath.Join(cfg.DataDir, "raft")
	rc.RaftAddr = cfg.RaftAddr
	if rc.Gossip == nil {
		rc.BootstrapExpect = 1
	}
	rc.Logger = log
	rc.StateDigest = f.Config().Digest()
	m, err := newMetrics()
	if err != nil {
		return nil, err
	}
	rc.Observer = m.observer(rc.Observer)
	node, err := cluster.Start(ctx, rc, f)
	if err != nil {
		return nil, fmt.Errorf("hub: raft: %w", err)
	}
	h := &Hub{cfg: cfg, fsm: f, node: node, store: cluster.NewStore(node, f, cfg.Domain), metrics: m, addrs: map[string]string{}, conns: map[string]*connlimit.Listener{}}
	h.material.Store(&material{cert: cfg.Certificate, peerRoots: cfg.PeerRoots, peers: maps.Clone(cfg.Peers)})
	h.peerTransport.set(h.newPeerTransport())
	fail := func(err error) (*Hub, error) {
		h.Close(context.Background())
		return nil, err
	}
	h.fed, err = client.NewFederation(client.FederationConfig{
		Domain:     cfg.Domain,
		HTTPClient: &http.Client{Transport: &h.peerTransport},
		Resolve: func(domain string) (string, error) {
			if addr, ok := h.material.Load().peers[domain]; ok {
				_, port, err := net.SplitHostPort(addr)
				if err != nil {
					return "", fmt.Errorf("peer %s address %q: %w", domain, addr, err)
				}
				return "https://" + net.JoinHostPort(domain, port), nil
			}
			return "https://" + domain, nil
		},
		Logger: log,
	})
	if err != nil {
		return fail(err)
	}
	dc := cfg.Delivery
	dc.RetryAfter = client.RetryAfter
	dc.Logger = log
	h.delivery = cluster.NewDelivery(h.store, permanentOn4xx{h.fed}, dc)
	runCtx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		h.delivery.Run(runCtx)
	}()
	go func() {
		defer h.wg.Done()
		h.store.RunMaintenance(runCtx, 0)
	}()
	if err := h.startOps(runCtx); err != nil {
		return fail(err)
	}

	h.draining = make(chan struct{})
	l := cfg.Limits
	api := httpapi.Config{PublicURL: cfg.PublicURL, AssetHosts: cfg.AssetHosts, RegistrationKey: cfg.RegistrationKey, Logger: log, Draining: h.draining,
		Registration: cfg.Registration, RateLimits: cfg.AccountRateLimits,
		ClientBudget: l.ClientBudget, PeerBudget: l.PeerBudget, RoomFanout: l.RoomFanout, MaxMessageBody: l.MaxMessageBody, BodyTimeout: l.BodyTimeout}
	if cfg.AssetRoots != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: cfg.AssetRoots, MinVersion: tls.VersionTLS12}
		api.AssetClient = &http.Client{Transport: tr}
	}
	serverTLS, fedTLS := h.serverTLS()
	for _, s := range []struct {
		name, addr string
		handler    http.Handler
		tls        *tls.Config
	}{
		{"federation", cfg.FederationAddr, h.acceptingOnly(httpapi.NewFederation(m.instrumented(api, "federation"), h.store, h.fed)), fedTLS},
		{"client", cfg.ClientAddr, h.acceptingOnly(httpapi.NewClientAPI(m.instrumented(api, "client"), h.store, h.fed)), serverTLS},
		{"ops", cfg.OpsAddr, httpapi.LimitBodies(h.opsHandler(), cmp.Or(l.BodyTimeout, httpapi.DefaultBodyTimeout), httpapi.DefaultBodyMinRate), nil},
	} {
		if s.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			return fail(fmt.Errorf("hub: %s listener: %w", s.name, err))
		}
		h.addrs[s.name] = ln.Addr().String()
		bounded := connlimit.Listen(ln, connlimit.Config{Name: s.name, Max: connBound(cfg.MaxConns, DefaultMaxConns),
			PerAddr: connBound(cfg.MaxConnsPerAddr, DefaultMaxConnsPerAddr), Refused: m.connRefused(s.name), Logger: log})
		h.conns[s.name] = bounded
		ln = bounded
		srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
		if s.tls != nil {
			srv.TLSConfig = s.tls
			ln = tls.NewListener(ln, s.tls)
		}
		h.servers = append(h.servers, srv)
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("server stopped", "server", s.name, "err", err)
			}
		}()
	}
	log.Info("provider started", "federation", h.addrs["federation"], "client", h.addrs["client"], "ops", h.addrs["ops"], "raft", node.Addr())
	return h, nil
}

// connBound turns a configured bound into connlimit's: 0 is def,
// negative none.
func connBound(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// Addr returns the bound address of a server: "federation", "client" or
// "ops".
func (h *Hub) Addr(server string) string { return h.addrs[server] }

// Store returns the replicated state.
func (h *Hub) Store() *cluster.Store { return h.store }

// Delivery returns the fanout worker.
func (h *Hub) Delivery() *cluster.Delivery { return h.delivery }

// WaitReady waits until the node can serve linearizable requests: a
// leader is known (a single node elects itself) and this node's state has
// caught up with it.
func (h *Hub) WaitReady(ctx context.Context) error {
	for {
		err := h.node.Barrier(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops the servers (letting requests in flight finish until ctx
// ends), the delivery worker and Raft, which snapshots on the way out.
func (h *Hub) Close(ctx context.Context) error {
	var errs []error
	h.closed.Do(func() {
		if h.draining != nil {
			close(h.draining) // long polls answer now instead of holding the shutdown
		}
		for _, s := range h.servers {
			if err := s.Shutdown(ctx); err != nil {
				errs = append(errs, err)
				s.Close()
			}
		}
		if h.cancel != nil {
			h.cancel()
		}
		h.wg.Wait()
		if err := h.node.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	})
	return errors.Join(errs...)
}

// permanentOn4xx marks a peer's 4xx refusals (but 408 and 429) as permanent
// for the delivery worker: resending the same request cannot succeed.
type permanentOn4xx struct{ *client.Federation }

type permanentError struct{ error }

func (permanentError) Permanent() bool { return true }
func (e permanentError) Unwrap() error { return e.error }

func classify(err error) error {
	var se *client.StatusError
	if errors.As(err, &se) && se.Status >= 400 && se.Status < 500 && se.Status != http.StatusRequestTimeout && se.Status != http.StatusTooManyRequests {
		return permanentError{err}
	}
	return err
}

func (p permanentOn4xx) Fanout(ctx context.Context, peer string, room proto.URI, firstSeq uint64, messages [][]byte, exclude []proto.URI) error {
	return classify(p.Federation.FanoutEncoded(ctx, peer, room, firstSeq, messages, exclude))
}

func (p permanentOn4xx) RequestConsent(ctx context.Context, domain string, e *proto.ConsentEntry) error {
	return classify(p.Federation.RequestConsent(ctx, domain, e))
}

func (p permanentOn4xx) UpdateConsent(ctx context.Context, domain string, e *proto.ConsentEntry) error {
	return classify(p.Federation.UpdateConsent(ctx, domain, e))
}

func (p permanentOn4xx) RemoveClients(ctx context.Context, room proto.URI, req *proto.RemoveClientsRequest) error {
	return classify(p.Federation.RemoveClients(ctx, room, req))
}
