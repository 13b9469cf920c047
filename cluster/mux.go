package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mimihub/mimi-hub/internal/connlimit"
)

// TLS is a node's identity towards the other nodes of its cluster: a
// certificate issued by the cluster CA, and that CA. Raft and the internal
// channel accept only peers whose certificate chains to Roots, in both
// directions; host names are not checked, because nodes dial each other by
// address and membership of the cluster is what the CA certifies. Use a CA
// dedicated to one cluster.
type TLS struct {
	Certificate tls.Certificate
	Roots       *x509.CertPool
}

// Verify checks that a peer's certificate chain (DER, leaf first) leads to
// the cluster CA.
func (t *TLS) Verify(rawCerts [][]byte) error {
	if len(rawCerts) == 0 {
		return errors.New("peer presented no certificate")
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: t.Roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("peer certificate is not from the cluster CA: %w", err)
	}
	return nil
}

// check reports a TLS identity that cannot work: no certificate, or no
// roots.
func (t *TLS) check() error {
	if t == nil || len(t.Certificate.Certificate) == 0 || t.Roots == nil {
		return errors.New("cluster TLS needs a certificate and the cluster CA's roots")
	}
	leaf, err := x509.ParseCertificate(t.Certificate.Certificate[0])
	if err != nil {
		return fmt.Errorf("cluster certificate: %w", err)
	}
	if err := t.Verify(t.Certificate.Certificate); err != nil {
		return fmt.Errorf("this node's own certificate (%s) does not chain to the cluster CA roots given: %w", leaf.Subject, err)
	}
	return nil
}

func (t *TLS) serverConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{t.Certificate},
		ClientAuth:   tls.RequireAnyClientCert,
		MinVersion:   tls.VersionTLS13,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return t.Verify(raw)
		},
	}
}

func (t *TLS) clientConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{t.Certificate},
		MinVersion:   tls.VersionTLS13,
		// The chain is checked against the cluster CA below; the host
		// name is not (peers are dialled by address).
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return t.Verify(raw)
		},
	}
}

// Protocol bytes: the first byte a dialer writes on a new connection says
// which service it wants. Raft and the internal channel share one port.
const (
	protoRaft byte = 'R'
	protoRPC  byte = 'I'
)

// handshakeTimeout bounds a new connection's TLS handshake and first byte,
// so a silent peer cannot hold an accept slot.
const handshakeTimeout = 10 * time.Second

// Bounds on connections that have not yet proved they come from a node of
// this cluster (TLS handshake with the cluster CA and the cluster ID):
// beyond maxPending the mux stops accepting until one finishes, and a
// source address holding maxPendingPerAddr has its next ones closed. A
// connection that passed no longer counts, so nodes' own connections
// never wait behind strangers'.
const (
	maxPending        = 128
	maxPendingPerAddr = 16
)

// mux accepts mutually authenticated TLS connections on the Raft port and
// hands each to the service its first byte names.
type mux struct {
	ln        net.Listener
	advertise net.Addr
	// configs holds the TLS configurations new connections use; SetTLS
	// replaces them, connections already open keep theirs.
	configs atomic.Pointer[muxTLS]
	log     *slog.Logger
	subs    map[byte]*subListener
	ids     clusterIDs

	wg        sync.WaitGroup
	closeOnce sync.Once
	closed    chan struct{}
}

// muxTLS are the server and client TLS configurations of one TLS
// identity.
type muxTLS struct {
	server, client *tls.Config
}

func newMuxTLS(t *TLS) *muxTLS {
	return &muxTLS{server: t.serverConfig(), client: t.clientConfig()}
}

// clusterIDs lets the mux tell the nodes of this cluster from the nodes
// of another one that shares the CA: every connection opens with the
// dialer's cluster ID. A node with an ID refuses connections that name a
// different one; a node without one (an empty node being added) adopts the
// ID of the first Raft connection that names one.
type clusterIDs struct {
	get   func() string
	adopt func(string) error
}

// maxClusterID bounds the ID a connection may announce.
const maxClusterID = 64

func newMux(bind string, advertise net.Addr, t *TLS, ids clusterIDs, log *slog.Logger) (*mux, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", bind, err)
	}
	if advertise == nil {
		advertise = ln.Addr()
		if a, ok := advertise.(*net.TCPAddr); ok && a.IP.IsUnspecified() {
			ln.Close()
			return nil, fmt.Errorf("listening on %s: set an advertise address peers can dial", bind)
		}
	}
	ln = connlimit.Listen(ln, connlimit.Config{Name: "raft", Max: maxPending, PerAddr: maxPendingPerAddr, Logger: log})
	m := &mux{ln: ln, advertise: advertise, log: log, ids: ids, subs: map[byte]*subListener{}, closed: make(chan struct{})}
	m.configs.Store(newMuxTLS(t))
	for _, p := range []byte{protoRaft, protoRPC} {
		m.subs[p] = &subListener{addr: advertise, conns: make(chan net.Conn), closed: make(chan struct{}), open: map[*servedConn]struct{}{}}
	}
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

// acceptLoop hands every connection to route. The bounded listener
// retries transient failures (descriptor exhaustion above all) itself, so
// an error here means the port is closed or broken for good.
func (m *mux) acceptLoop() {
	defer m.wg.Done()
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
			default:
				m.log.Error("raft port accept failed for good; this node no longer accepts Raft connections", "err", err)
			}
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(conn)
		}()
	}
}

// route authenticates conn, reads its protocol byte and hands it over.
func (m *mux) route(raw net.Conn) {
	conn := tls.Server(raw, m.configs.Load().server)
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		m.log.Warn("refused a connection on the raft port", "remote", raw.RemoteAddr(), "err", err)
		raw.Close()
		return
	}
	var b [2]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		conn.Close()
		return
	}
	sub, ok := m.subs[b[0]]
	if !ok || b[1] > maxClusterID {
		m.log.Warn("unknown protocol on the raft port", "remote", raw.RemoteAddr(), "byte", b[0])
		conn.Close()
		return
	}
	id := make([]byte, b[1])
	if _, err := io.ReadFull(conn, id); err != nil {
		conn.Close()
		return
	}
	conn.SetDeadline(time.Time{})
	if !m.admit(b[0], string(id), raw.RemoteAddr()) {
		conn.Close()
		return
	}
	if c, ok := raw.(*connlimit.Conn); ok {
		c.Release() // a node of this cluster: no longer a stranger
	}
	select {
	case sub.conns <- conn:
	case <-sub.closed:
		conn.Close()
	case <-m.closed:
		conn.Close()
	}
}

// admit decides whether a connection announcing cluster ID id may reach
// the service proto.
func (m *mux) admit(proto byte, id string, remote net.Addr) bool {
	if m.ids.get == nil {
		return true
	}
	mine := m.ids.get()
	switch {
	case id == "" || id == mine:
		return true
	case mine == "" && proto == protoRaft:
		// An empty node: the first cluster whose leader replicates to it
		// is the one that added it.
		if err := m.ids.adopt(id); err != nil {
			m.log.Error("could not adopt the cluster id", "err", err)
			return false
		}
		return m.ids.get() == id
	case mine == "":
		return true // an empty node answers questions (bootstrap, status)
	default:
		m.log.Warn("refused a node of another cluster", "remote", remote, "its_cluster", id, "this_cluster", mine)
		return false
	}
}

// dial opens an authenticated connection to a peer's Raft port for proto.
func (m *mux) dial(ctx context.Context, addr string, proto byte) (*tls.Conn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{KeepAlive: 30 * time.Second}, Config: m.configs.Load().client}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn := c.(*tls.Conn)
	if dl, ok := ctx.Deadline(); ok {
		conn.SetWriteDeadline(dl)
	}
	var id string
	if m.ids.get != nil {
		id = m.ids.get()
	}
	if _, err := conn.Write(append([]byte{proto, byte(len(id))}, id...)); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetWriteDeadline(time.Time{})
	return conn, nil
}

// close stops accepting, closes the sub-listeners, then closes the
// connections already handed over and waits (up to handlerDrain) for
// their services to let go of them. The wait matters: Raft's transport
// serves a heartbeat on the connection's own goroutine and writes the
// term to the stable store, so the stores may only close once every
// handler has returned (otherwise raft panics on the closed database).
func (m *mux) close() {
	m.closeOnce.Do(func() {
		close(m.closed)
		m.ln.Close()
		for _, s := range m.subs {
			s.Close()
		}
	})
	m.wg.Wait()
	for p, s := range m.subs {
		if !s.drain(handlerDrain) {
			m.log.Warn("connections still being served after the mux closed", "proto", p, "waited", handlerDrain)
		}
	}
}

// handlerDrain bounds how long close waits for a service to return from
// the connections it was handed.
const handlerDrain = 5 * time.Second

// subListener is the net.Listener one service accepts from. It tracks
// the connections it hands out until their service closes them.
type subListener struct {
	addr      net.Addr
	conns     chan net.Conn
	closeOnce sync.Once
	closed    chan struct{}

	mu      sync.Mutex
	open    map[*servedConn]struct{}
	serving sync.WaitGroup
}

func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		sc := &servedConn{Conn: c, l: l}
		l.mu.Lock()
		l.open[sc] = struct{}{}
		l.serving.Add(1)
		l.mu.Unlock()
		return sc, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *subListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

// drain closes the sockets of the connections still served, which
// unblocks their handlers' reads, and waits up to d for every handler to
// close its connection. It reports whether all did.
func (l *subListener) drain(d time.Duration) bool {
	l.mu.Lock()
	for sc := range l.open {
		sc.Conn.Close() // the socket only: the handler's own Close marks it done
	}
	l.mu.Unlock()
	done := make(chan struct{})
	go func() {
		l.serving.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// servedConn is a connection a service accepted; its first Close tells
// the sub-listener the service is done with it.
type servedConn struct {
	net.Conn
	l    *subListener
	once sync.Once
}

func (c *servedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.open, c)
		c.l.mu.Unlock()
		c.l.serving.Done()
	})
	return err
}

func (l *subListener) Addr() net.Addr { return l.addr }

// raftLayer is the raft.StreamLayer over the mux.
type raftLayer struct {
	*subListener
	m *mux
}

func (l raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.m.dial(ctx, string(addr), protoRaft)
}

// SetTLS replaces the node's identity towards the other nodes (its cluster
// certificate and the cluster CA roots) for the connections it opens or
// accepts from now on; connections already open are not dropped. To
// rotate the cluster CA, first give every node roots holding the old and
// the new CA, then new certificates, then the new roots alone. The
// certificate must chain to the roots given.
func (n *Node) SetTLS(t *TLS) error {
	if n.mux == nil {
		return errors.New("cluster: set TLS: this node has no network transport (no TLS configured at start)")
	}
	if err := t.check(); err != nil {
		return fmt.Errorf("cluster: set TLS: %w", err)
	}
	n.mux.configs.Store(newMuxTLS(t))
	n.log.Info("cluster TLS material replaced; new connections use it")
	return nil
}
