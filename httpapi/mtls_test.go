package httpapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// testCA issues certificates for the mTLS test.
type testCA struct {
	t    *testing.T
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{t: t, cert: cert, key: key, pool: pool}
}

// issue makes a leaf certificate for names (DNS) and ips.
func (ca *testCA) issue(serial int64, usage x509.ExtKeyUsage, names []string, ips ...net.IP) tls.Certificate {
	ca.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ca.t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: names, IPAddresses: ips}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestMutualTLS runs the federation router behind real mutual TLS with
// the default peer identity (the client certificate's DNS SAN).
func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	e := newEnv(t, "a.example", func(c *Config) { c.PeerIdentity = nil })
	e.register("alice", "phone")
	srv := httptest.NewUnstartedServer(e.fed)
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.issue(2, x509.ExtKeyUsageServerAuth, nil, net.IPv4(127, 0, 0, 1))},
		ClientCAs:    ca.pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	defer srv.Close()

	query := wire.MustMarshal(&proto.IdentifierRequest{Type: proto.SearchHandle, Value: "alice"})
	post := func(cert *tls.Certificate) (int, string, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}
		if cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Post(srv.URL+"/identifierQuery/a.example", mimiContentType, bytes.NewReader(query))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}

	b := ca.issue(3, x509.ExtKeyUsageClientAuth, []string{"B.Example."})
	status, body, err := post(&b)
	if err != nil || status != http.StatusOK {
		t.Fatalf("b.example's query: %d %q %v", status, body, err)
	}
	var resp proto.IdentifierResponse
	if err := wire.Unmarshal([]byte(body), &resp); err != nil || resp.Code != proto.QuerySuccess {
		t.Fatalf("b.example's answer %+v %v", resp, err)
	}

	for _, c := range []struct {
		name     string
		cert     *tls.Certificate
		contains string
	}{
		{"no client certificate", nil, "no verified TLS client certificate"},
		{"a certificate with two domains", ptr(ca.issue(4, x509.ExtKeyUsageClientAuth, []string{"b.example", "c.example"})), "names 2 DNS domains"},
		{"a certificate without domain", ptr(ca.issue(5, x509.ExtKeyUsageClientAuth, nil)), "names no DNS domain"},
		{"a wildcard certificate", ptr(ca.issue(6, x509.ExtKeyUsageClientAuth, []string{"*.b.example"})), "not a provider domain"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body, err := post(c.cert)
			if err != nil || status != http.StatusUnauthorized || !strings.Contains(body, c.contains) {
				t.Fatalf("%d %q %v", status, body, err)
			}
		})
	}
	// A certificate of an unknown CA fails the handshake.
	if _, _, err := post(ptr(other.issue(7, x509.ExtKeyUsageClientAuth, []string{"b.example"}))); err == nil {
		t.Fatal("a certificate of another CA was accepted")
	}
}

func ptr[T any](v T) *T { return &v }

// TestRealClient runs the outbound client of mimi/client (as b.example)
// against the federation router (a.example) over mutual TLS: it finds the
// endpoints in the directory, and a refusal reaches it as a StatusError.
func TestRealClient(t *testing.T) {
	ca := newTestCA(t)
	var fedH atomic.Pointer[http.Handler] // set once the server's URL is known
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*fedH.Load()).ServeHTTP(w, r) }))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.issue(2, x509.ExtKeyUsageServerAuth, nil, net.IPv4(127, 0, 0, 1))},
		ClientCAs:    ca.pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}
	srv.StartTLS()
	defer srv.Close()
	e := newEnv(t, "a.example", func(c *Config) { c.PeerIdentity, c.PublicURL = nil, srv.URL })
	fedH.Store(&e.fed)
	alice := e.register("alice", "phone")
	e.upload(alice)

	fed, err := client.NewFederation(client.FederationConfig{
		Domain:  "b.example",
		TLS:     &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(3, x509.ExtKeyUsageClientAuth, []string{"b.example"})}},
		Resolve: func(string) (string, error) { return srv.URL, nil },
		Logger:  testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir, err := fed.Directory(ctx, "a.example")
	if err != nil || len(dir.Entries) != 10 {
		t.Fatalf("directory %+v, %v", dir, err)
	}
	ir, err := fed.IdentifierQuery(ctx, "a.example", &proto.IdentifierRequest{Type: proto.SearchHandle, Value: "alice"})
	if err != nil || ir.Code != proto.QuerySuccess || ir.URIs[0] != alice.user {
		t.Fatalf("identifier query %+v, %v", ir, err)
	}
	bob := proto.URI("mimi://b.example/u/bob")
	if err := fed.RequestConsent(ctx, "a.example", &proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: bob, Target: alice.user}); err != nil {
		t.Fatalf("consent request: %v", err)
	}
	km, err := fed.ClaimKeyMaterial(ctx, "a.example", "a.example", &proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: bob, TargetUsers: []proto.URI{alice.user}})
	if err != nil || km.Users[0].Status != proto.UserSuccess {
		t.Fatalf("claim %+v, %v", km, err)
	}
	_, err = fed.ClaimKeyMaterial(ctx, "a.example", "a.example", &proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: "mimi://c.example/u/x", TargetUsers: []proto.URI{alice.user}})
	var se *client.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusForbidden {
		t.Fatalf("a claim on behalf of another provider's user: %v", err)
	}
	if s, ok := peerRefusal(err); !ok || s != http.StatusForbidden {
		t.Fatalf("peerRefusal(%v) = %d, %v", err, s, ok)
	}
}
