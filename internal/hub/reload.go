package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
)

// Reloading without a restart (mimi-hub does it on SIGHUP). The servers
// take the certificate from material on every TLS handshake
// (GetCertificate) and the federation server its peer roots
// (GetConfigForClient); federation requests go through a transport that
// Reload replaces, letting requests in flight finish on the old one. So
// connections already open are never dropped, and new ones use the new
// material.

// material is what Reload replaces.
type material struct {
	cert      tls.Certificate
	peerRoots *x509.CertPool
	peers     map[string]string
}

// Reload is the material a running Hub can take without a restart.
type Reload struct {
	// Certificate and PeerRoots replace Config.Certificate and
	// Config.PeerRoots.
	Certificate tls.Certificate
	PeerRoots   *x509.CertPool
	// Peers replaces Config.Peers.
	Peers map[string]string
	// ClusterTLS, when set, replaces the node's cluster certificate and
	// CA roots (cluster.Node.SetTLS).
	ClusterTLS *cluster.TLS
}

// Reload replaces the hub's TLS material and peer map. It checks
// everything before it replaces anything.
func (h *Hub) Reload(r Reload) error {
	if len(r.Certificate.Certificate) == 0 || r.PeerRoots == nil {
		return errors.New("hub: reload: a certificate and peer roots are required")
	}
	leaf, err := x509.ParseCertificate(r.Certificate.Certificate[0])
	if err != nil {
		return fmt.Errorf("hub: reload: certificate: %w", err)
	}
	if err := leaf.VerifyHostname(h.cfg.Domain); err != nil {
		return fmt.Errorf("hub: reload: the new certificate does not name %s: %w", h.cfg.Domain, err)
	}
	for d, a := range r.Peers {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("hub: reload: peer %s address %q: %w", d, a, err)
		}
	}
	if r.ClusterTLS != nil && h.cfg.Raft.TLS != nil {
		if err := h.node.SetTLS(r.ClusterTLS); err != nil {
			return fmt.Errorf("hub: reload: %w", err)
		}
	}
	h.material.Store(&material{cert: r.Certificate, peerRoots: r.PeerRoots, peers: maps.Clone(r.Peers)})
	old := h.peerTransport.set(h.newPeerTransport())
	if old != nil {
		old.CloseIdleConnections() // busy ones finish their requests
	}
	h.cfg.Logger.Info("reloaded TLS material and peers", "certificate_expires", leaf.NotAfter.UTC().Format(time.RFC3339), "peers", len(r.Peers), "cluster_tls", r.ClusterTLS != nil)
	return nil
}

// serverTLS returns the TLS configurations of the client API and of the
// federation endpoints (which also ask peers for certificates), both
// reading the current material.
func (h *Hub) serverTLS() (server, federation *tls.Config) {
	server = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c := h.material.Load().cert
			return &c, nil
		},
	}
	federation = server.Clone()
	federation.ClientAuth = tls.VerifyClientCertIfGiven
	base := federation.Clone()
	federation.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.NextProtos = federation.NextProtos // what the HTTP server set up
		c.ClientCAs = h.material.Load().peerRoots
		return c, nil
	}
	return server, federation
}

// newPeerTransport returns the transport of federation requests for the
// current material: mutual TLS with the provider's certificate, peers
// verified against the peer roots for the domain a request names, and
// connections to listed peers dialed at their configured address.
func (h *Hub) newPeerTransport() *http.Transport {
	m := h.material.Load()
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{Certificates: []tls.Certificate{m.cert}, RootCAs: m.peerRoots, MinVersion: tls.VersionTLS12}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err == nil {
			if to, ok := m.peers[host]; ok {
				addr = to
			}
		}
		return dialer.DialContext(ctx, network, addr)
	}
	return t
}

// swapTransport sends each request through the transport set last.
type swapTransport struct {
	cur atomic.Pointer[http.Transport]
}

// set installs t and returns the transport it replaces.
func (s *swapTransport) set(t *http.Transport) *http.Transport { return s.cur.Swap(t) }

// RoundTrip implements http.RoundTripper.
func (s *swapTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return s.cur.Load().RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// current transport.
func (s *swapTransport) CloseIdleConnections() { s.cur.Load().CloseIdleConnections() }
