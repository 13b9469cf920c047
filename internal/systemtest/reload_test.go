package systemtest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/client"
)

// TestSIGHUPRotatesCertificates rotates the certificates of a live
// 3-node provider of mimi-hub processes: each node's development provider
// and cluster certificates are removed and the node gets SIGHUP, which
// issues and loads new ones. The processes keep running, connections
// opened before keep answering, new handshakes show the new certificates,
// and writes go on through every node; a node restarted afterwards rejoins
// with its new cluster certificate.
func TestSIGHUPRotatesCertificates(t *testing.T) {
	w := newWorld(t, worldOptions{nodes: 3})
	ctx := w.ctx()
	nodes := w.a.Nodes()
	tlsCfg := &tls.Config{RootCAs: w.roots, ServerName: domainA, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
	type held struct {
		conn   *tls.Conn
		rd     *bufio.Reader
		serial string
	}
	get := func(h *held) (int, error) {
		fmt.Fprintf(h.conn, "GET /v1/whoami HTTP/1.1\r\nHost: %s\r\n\r\n", domainA)
		resp, err := http.ReadResponse(h.rd, nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	var conns []*held
	for _, n := range nodes {
		conn, err := tls.Dial("tcp", n.ClientAddr, tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		h := &held{conn: conn, rd: bufio.NewReader(conn), serial: conn.ConnectionState().PeerCertificates[0].SerialNumber.String()}
		if code, err := get(h); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("%s before: %d %v", n.ID, code, err)
		}
		conns = append(conns, h)
	}
	for _, n := range nodes {
		for _, f := range []string{"dev-cert.pem", "dev-key.pem", "dev-node-cert.pem", "dev-node-key.pem"} {
			if err := os.Remove(filepath.Join(n.DataDir, f)); err != nil {
				t.Fatal(err)
			}
		}
		if err := n.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(wait)
	for i, n := range nodes {
		for n.LogCount("reloaded TLS material and peers") == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s never reloaded:\n%s", n.ID, n.LogTail(30))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !n.Running() {
			t.Fatalf("%s exited on SIGHUP", n.ID)
		}
		conn, err := tls.Dial("tcp", n.ClientAddr, tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		if s := conn.ConnectionState().PeerCertificates[0].SerialNumber.String(); s == conns[i].serial {
			t.Errorf("%s still presents serial %s after the reload", n.ID, s)
		}
		conn.Close()
		if code, err := get(conns[i]); err != nil || code != http.StatusUnauthorized {
			t.Errorf("%s: the connection opened before the reload: %d %v", n.ID, code, err)
		}
		if c := n.LogCount("msg=stopping"); c != 0 {
			t.Errorf("%s logged stopping on SIGHUP", n.ID)
		}
	}
	for i, n := range nodes {
		api := w.user(w.a, n)
		if _, err := client.RegisterMember(ctx, api, fmt.Sprintf("after-reload-%d", i), "phone", client.MemberConfig{}); err != nil {
			t.Fatalf("register through %s after the reload: %v", n.ID, err)
		}
	}
	// A follower restarted now connects to the others with its new cluster
	// certificate only: they accept it.
	leader, err := w.a.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var f *Node
	for _, n := range nodes {
		if n != leader {
			f = n
			break
		}
	}
	if err := f.Terminate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	for !f.Ready(ctx) {
		if ctx.Err() != nil {
			t.Fatalf("%s did not rejoin after the rotation:\n%s", f.ID, f.LogTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := client.RegisterMember(ctx, w.user(w.a, f), "after-restart", "phone", client.MemberConfig{}); err != nil {
		t.Fatalf("register through the restarted %s: %v", f.ID, err)
	}
	if strings.Contains(f.LogTail(200), "refused a connection on the raft port") {
		t.Logf("note: refusals in %s's log:\n%s", f.ID, f.LogTail(50))
	}
}
