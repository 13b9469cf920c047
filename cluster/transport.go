package cluster

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// TransportFactory builds the Raft transport of a node. Start calls it once;
// the node owns the result and closes it on Shutdown (hashicorp/raft closes
// transports that implement raft.WithClose).
type TransportFactory func(TransportOptions) (raft.Transport, error)

// TransportOptions are what Start hands a TransportFactory.
type TransportOptions struct {
	// BindAddr is the listen address (Config.RaftAddr).
	BindAddr string
	// Advertise is the address peers dial (Config.AdvertiseAddr); nil means
	// the bound address.
	Advertise net.Addr
	// MaxPool is the number of pooled connections per peer.
	MaxPool int
	// Timeout is the I/O deadline of an RPC.
	Timeout time.Duration
	// Logger is the node's logger.
	Logger *slog.Logger
}

// TCPTransport is the default TransportFactory: hashicorp/raft's
// NetworkTransport over plain TCP. Use it on loopback or a trusted network
// only; it neither authenticates nor encrypts.
func TCPTransport(o TransportOptions) (raft.Transport, error) {
	t, err := raft.NewTCPTransportWithConfig(o.BindAddr, o.Advertise, networkConfig(o))
	if err != nil {
		return nil, fmt.Errorf("raft TCP transport on %s: %w", o.BindAddr, err)
	}
	return t, nil
}

// StreamTransport returns a TransportFactory that runs hashicorp/raft's
// NetworkTransport over the stream layer newLayer returns. This is the slot
// for an authenticated (TLS) stream layer: newLayer listens on o.BindAddr,
// reports o.Advertise (or its bound address) from Addr, and dials peers.
func StreamTransport(newLayer func(TransportOptions) (raft.StreamLayer, error)) TransportFactory {
	return func(o TransportOptions) (raft.Transport, error) {
		layer, err := newLayer(o)
		if err != nil {
			return nil, fmt.Errorf("raft stream layer on %s: %w", o.BindAddr, err)
		}
		cfg := networkConfig(o)
		cfg.Stream = layer
		return raft.NewNetworkTransportWithConfig(cfg), nil
	}
}

func networkConfig(o TransportOptions) *raft.NetworkTransportConfig {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &raft.NetworkTransportConfig{
		MaxPool: o.MaxPool,
		Timeout: o.Timeout,
		Logger:  newHCLogger(logger, "raft-net"),
	}
}
