package hub_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/mimi/client"
)

// serial returns the serial number of the certificate addr presents.
func serial(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// keepAlive is a client API connection opened before a reload.
type keepAlive struct {
	conn *tls.Conn
	rd   *bufio.Reader
}

func openKeepAlive(t *testing.T, addr string, cfg *tls.Config) *keepAlive {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &keepAlive{conn: conn, rd: bufio.NewReader(conn)}
}

// get sends a request on the connection and returns the answer's status.
func (k *keepAlive) get(t *testing.T, path string) int {
	t.Helper()
	fmt.Fprintf(k.conn, "GET %s HTTP/1.1\r\nHost: a.example\r\n\r\n", path)
	resp, err := http.ReadResponse(k.rd, nil)
	if err != nil {
		t.Fatalf("on the connection opened before the reload: %v", err)
	}
	defer resp.Body.Close()
	b := make([]byte, 4096)
	for {
		if _, err := resp.Body.Read(b); err != nil {
			break
		}
	}
	return resp.StatusCode
}

// TestReloadRotatesCertificates replaces the provider certificate (from a
// new CA), the peer roots and the cluster TLS material of a live 3-node
// provider: connections opened before keep working, new handshakes show
// the new certificate, a peer certified by the new CA is accepted by the
// federation endpoints only after the reload, and writes go on through
// every node.
func TestReloadRotatesCertificates(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{}, 3)
	newCA, err := devca.New()
	if err != nil {
		t.Fatal(err)
	}
	newCert, err := newCA.Issue("a.example")
	if err != nil {
		t.Fatal(err)
	}
	peerCert, err := newCA.Issue("b.example")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.CA.Cert)
	roots.AddCert(newCA.Cert)
	clientTLS := &tls.Config{RootCAs: roots, ServerName: "a.example", MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	peerTLS := clientTLS.Clone()
	peerTLS.Certificates = []tls.Certificate{peerCert}

	before := map[string]string{}
	var held []*keepAlive
	for _, p := range c.Nodes {
		before[p.Config.NodeID] = serial(t, p.Config.ClientAddr, clientTLS)
		k := openKeepAlive(t, p.Config.ClientAddr, clientTLS)
		if code := k.get(t, "/v1/whoami"); code != http.StatusUnauthorized {
			t.Fatalf("whoami without a token: %d", code)
		}
		held = append(held, k)
	}
	// Before: the new CA's peer is not trusted by the federation endpoints.
	if conn, err := tls.Dial("tcp", c.Nodes[0].Config.FederationAddr, peerTLS); err == nil {
		_, err = conn.Write([]byte("GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"))
		if err == nil {
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
		if err == nil {
			t.Fatal("the federation endpoints accepted a peer of an untrusted CA")
		}
	}

	for _, p := range c.Nodes {
		h := p.Hub(t)
		ct := p.Config.Raft.TLS
		err := h.Reload(hub.Reload{Certificate: newCert, PeerRoots: roots, Peers: map[string]string{"b.example": "127.0.0.1:1"},
			ClusterTLS: &cluster.TLS{Certificate: ct.Certificate, Roots: ct.Roots}})
		if err != nil {
			t.Fatalf("reload %s: %v", p.Config.NodeID, err)
		}
	}
	for i, p := range c.Nodes {
		if s := serial(t, p.Config.ClientAddr, clientTLS); s == before[p.Config.NodeID] || s != newCert.Leaf.SerialNumber.String() {
			t.Errorf("%s presents serial %s after the reload (before %s, new %s)", p.Config.NodeID, s, before[p.Config.NodeID], newCert.Leaf.SerialNumber)
		}
		if code := held[i].get(t, "/v1/whoami"); code != http.StatusUnauthorized {
			t.Errorf("%s: the connection opened before the reload answered %d", p.Config.NodeID, code)
		}
		conn, err := tls.Dial("tcp", p.Config.FederationAddr, peerTLS)
		if err != nil {
			t.Errorf("%s: a peer of the new CA after the reload: %v", p.Config.NodeID, err)
			continue
		}
		conn.Close()
	}
	for i, p := range c.Nodes {
		api, err := client.NewUser(client.UserConfig{BaseURL: p.ClientURL(), TLS: clientTLS})
		must(t, err, "client")
		_, err = client.RegisterMember(opCtx(t), api, fmt.Sprintf("after%d", i), "phone", client.MemberConfig{})
		must(t, err, "register through "+p.Config.NodeID+" after the reload")
	}

	// A certificate for another domain is refused, and changes nothing.
	other, err := newCA.Issue("c.example")
	if err != nil {
		t.Fatal(err)
	}
	err = c.Nodes[0].Hub(t).Reload(hub.Reload{Certificate: other, PeerRoots: roots})
	if err == nil || !strings.Contains(err.Error(), "does not name a.example") {
		t.Fatalf("reload with a certificate for c.example: %v", err)
	}
	if s := serial(t, c.Nodes[0].Config.ClientAddr, clientTLS); s != newCert.Leaf.SerialNumber.String() {
		t.Errorf("a refused reload changed the certificate: serial %s", s)
	}
}
