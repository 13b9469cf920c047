package cluster

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

// TestClusterRotatesTLS rotates a live 3-node cluster onto a new cluster
// CA without a restart: every node first trusts both CAs, then presents
// a certificate from the new one, then trusts it alone. Writes go on
// through every step; a node restarted with only the new material rejoins
// (its connections are all new ones); a peer holding the old CA's
// certificate is refused at the end.
func TestClusterRotatesTLS(t *testing.T) {
	c := newTestCluster(t)
	c.startN(3)
	oldCA, newCA := c.ca, newTestCA(t)
	both := x509.NewCertPool()
	both.AddCert(oldCA.Cert)
	both.AddCert(newCA.Cert)
	steps := []struct {
		name string
		tls  func(id string) *TLS
	}{
		{"trust both CAs", func(id string) *TLS {
			return &TLS{Certificate: c.nodes[id].cfg.TLS.Certificate, Roots: both}
		}},
		{"new certificates", func(id string) *TLS {
			return &TLS{Certificate: testTLS(t, newCA, id).Certificate, Roots: both}
		}},
		{"trust the new CA only", func(id string) *TLS { return testTLS(t, newCA, id) }},
	}
	for i, st := range steps {
		for _, id := range sortedKeys(c.nodes) {
			n := c.nodes[id]
			tl := st.tls(id)
			if err := n.node.SetTLS(tl); err != nil {
				t.Fatalf("%s: %s: %v", st.name, id, err)
			}
			n.cfg.TLS = tl
		}
		register(t, c.follower().store, "after-step-"+string(rune('a'+i)))
	}
	// A node restarted with the new material only: all its connections
	// are new, both ways.
	f := c.follower()
	crashStop(t, f.node)
	delete(c.nodes, f.id)
	f.cfg.Gossip.Join = c.seeds
	back := c.start(f.cfg)
	c.waitFor("the restarted node to catch up", func() bool {
		return back.node.FSMIndex() >= c.leader().node.raft.CommitIndex() && back.node.Stats().LeaderID != ""
	})
	register(t, back.store, "via-restarted")

	// The old CA's identity is refused now.
	m := &mux{}
	m.configs.Store(newMuxTLS(testTLS(t, oldCA, "old")))
	tc, err := m.dial(ctxTimeout(t, 5*time.Second), c.leader().node.Addr(), protoRPC)
	if err == nil {
		tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = tc.Read(make([]byte, 1))
		tc.Close()
	}
	if err == nil {
		t.Fatal("a peer with the old CA's certificate was served after the rotation")
	}

	// A certificate that does not chain to the roots given is refused
	// before it replaces anything.
	err = back.node.SetTLS(&TLS{Certificate: testTLS(t, oldCA, "x").Certificate, Roots: newCA.Pool()})
	if err == nil || !strings.Contains(err.Error(), "does not chain") {
		t.Fatalf("SetTLS with a certificate of another CA: %v", err)
	}
}
