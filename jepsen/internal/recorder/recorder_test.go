package recorder

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/jepsen/internal/history"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// appMessage makes a real application message of a one-member group.
func appMessage(t *testing.T, text string) *mls.Message {
	t.Helper()
	s, err := client.DefaultSuite.Suite()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := s.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	g, err := mls.CreateGroup(s, signer, mls.CreateOptions{Credential: mls.BasicCredential([]byte("mimi://hub.example/u/a/d/1")),
		Lifetime: mls.Lifetime{NotAfter: 1 << 40}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := g.Encrypt([]byte(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// hubClient is a federation client of domain, trusting ca, that reaches
// f.example at addr.
func hubClient(t *testing.T, ca *devca.CA, domain, addr string) *client.Federation {
	t.Helper()
	cert, err := ca.Issue(domain)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.Pool()},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	f, err := client.NewFederation(client.FederationConfig{Domain: domain, HTTPClient: &http.Client{Transport: tr},
		Resolve: func(d string) (string, error) { return "https://" + d, nil }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRecorderRecordsFanout(t *testing.T) {
	ca, err := devca.New()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("f.example")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := history.New()
	r := Serve(ln, Config{Hub: "hub.example", Certificate: cert, Roots: ca.Pool(), History: h})
	defer r.Close(context.Background())

	m1, m2 := appMessage(t, "one"), appMessage(t, "two")
	room := proto.RoomURI("hub.example", "r1")
	batch := proto.FanoutBatch{{Message: m1, Timestamp: 1}, {Message: m2, Timestamp: 2}}
	if err := hubClient(t, ca, "hub.example", ln.Addr().String()).Fanout(context.Background(), "f.example", room, 7, batch, nil); err != nil {
		t.Fatalf("fanout: %v", err)
	}
	err = hubClient(t, ca, "evil.example", ln.Addr().String()).Fanout(context.Background(), "f.example", room, 9, batch, nil)
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("fanout from a domain that is not the hub: %v, want 403", err)
	}

	snap := h.Snapshot()
	if len(snap.Deliveries) != 1 {
		t.Fatalf("deliveries %+v, want the hub's one", snap.Deliveries)
	}
	d := snap.Deliveries[0]
	e1, _ := wire.Marshal(m1)
	if d.Room != string(room) || d.FirstSeq != 7 || len(d.Messages) != 2 || d.Messages[0].Digest != Digest(e1) || d.Messages[0].Kind != "application" || d.Status != http.StatusNoContent {
		t.Errorf("delivery %+v", d)
	}
	if req, msgs := r.Counts(); req != 2 || msgs != 2 {
		t.Errorf("counts %d requests %d messages", req, msgs)
	}
}
