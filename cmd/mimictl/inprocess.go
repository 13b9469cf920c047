package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/internal/hub"
)

// localProvider is a single-node provider running in this process on
// loopback (bench -inprocess and the tests).
type localProvider struct {
	Hub    *hub.Hub
	Domain string
	// ClientURL is the client API's URL.
	ClientURL string
	// FederationAddr is the federation endpoints' host:port.
	FederationAddr string
	// OpsURL is the operations listener's URL.
	OpsURL string
}

// localProviderConfig describes a localProvider.
type localProviderConfig struct {
	Domain  string
	DataDir string
	CA      *devca.CA
	// FederationAddr is the federation listen address; empty picks a free
	// loopback port.
	FederationAddr string
	// Peers maps peer domains to their federation host:port.
	Peers map[string]string
	// RegistrationKey guards registration when set.
	RegistrationKey string
	// AdminToken guards the operations listener's /v1/ endpoints when set.
	AdminToken string
	Logger     *slog.Logger
}

// reservePort returns a free loopback address. Providers must know each
// other's federation addresses before they start, so tests and the bench
// pick them first.
func reservePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("reserving a port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("reserving a port: %w", err)
	}
	return addr, nil
}

// startLocalProvider starts a provider with a certificate from cfg.CA and
// waits until it leads its single-node Raft cluster.
func startLocalProvider(ctx context.Context, cfg localProviderConfig) (*localProvider, error) {
	// Exactly one DNS name: peers take a provider's domain from its
	// certificate's only DNS name (httpapi.PeerFromTLS). Clients reach
	// the client API at 127.0.0.1.
	cert, err := cfg.CA.Issue(cfg.Domain, "127.0.0.1", "::1")
	if err != nil {
		return nil, fmt.Errorf("certificate for %s: %w", cfg.Domain, err)
	}
	fed := cfg.FederationAddr
	if fed == "" {
		if fed, err = reservePort(); err != nil {
			return nil, err
		}
	}
	_, port, err := net.SplitHostPort(fed)
	if err != nil {
		return nil, fmt.Errorf("federation address %q: %w", fed, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h, err := hub.Start(ctx, hub.Config{
		Domain:          cfg.Domain,
		DataDir:         cfg.DataDir,
		FederationAddr:  fed,
		ClientAddr:      "127.0.0.1:0",
		OpsAddr:         "127.0.0.1:0",
		AdminToken:      cfg.AdminToken,
		RaftAddr:        "127.0.0.1:0",
		PublicURL:       "https://" + net.JoinHostPort(cfg.Domain, port),
		Certificate:     cert,
		PeerRoots:       cfg.CA.Pool(),
		Peers:           cfg.Peers,
		RegistrationKey: cfg.RegistrationKey,
		Raft: cluster.Config{
			HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
			LeaderLeaseTimeout: 100 * time.Millisecond,
		},
		Delivery: cluster.DeliveryConfig{MinBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second},
		Logger:   log,
	})
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", cfg.Domain, err)
	}
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := h.WaitReady(readyCtx); err != nil {
		h.Close(context.Background())
		return nil, fmt.Errorf("%s did not become ready: %w", cfg.Domain, err)
	}
	return &localProvider{Hub: h, Domain: cfg.Domain, ClientURL: "https://" + h.Addr("client"), FederationAddr: fed, OpsURL: "http://" + h.Addr("ops")}, nil
}

// Close stops the provider.
func (p *localProvider) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.Hub.Close(ctx)
}

// writeCA writes the CA certificate into dir and returns the file's path.
func writeCA(ca *devca.CA, dir string) (string, error) {
	path := filepath.Join(dir, "dev-ca.pem")
	if err := os.WriteFile(path, ca.PEM, 0o644); err != nil {
		return "", fmt.Errorf("writing the CA certificate: %w", err)
	}
	return path, nil
}
