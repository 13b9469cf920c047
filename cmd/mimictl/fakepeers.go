package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// fakePeers are the peer providers bench's fanout levels fan out to: one
// HTTPS listener that answers for every peer domain (the certificate
// follows the TLS server name), hands out a fresh KeyPackage for any user
// a claim names (so the senders can add "remote" users to their rooms),
// and takes /fanout, counting each (domain, room, hub sequence) once.
type fakePeers struct {
	domains []string
	addr    string
	srv     *http.Server
	ln      net.Listener

	mu sync.Mutex
	// last is the highest hub sequence received per domain and room;
	// received counts messages received for the first time.
	last     map[string]uint64
	received uint64
	// requests counts the /fanout requests that brought a new message.
	requests uint64
	changed  chan struct{}
}

// maxFakePeerBody bounds a request body the fake peers read.
const maxFakePeerBody = 64 << 20

// startFakePeers serves n peer domains peerK.example on ip, with
// certificates from ca (the CA the provider's nodes trust for peers).
func startFakePeers(ip string, n int, ca *devca.CA) (*fakePeers, error) {
	f := &fakePeers{last: map[string]uint64{}, changed: make(chan struct{})}
	certs := map[string]*tls.Certificate{}
	for i := 1; i <= n; i++ {
		d := fmt.Sprintf("peer%d.example", i)
		c, err := ca.Issue(d)
		if err != nil {
			return nil, fmt.Errorf("fake peer %s: %w", d, err)
		}
		certs[d] = &c
		f.domains = append(f.domains, d)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if c, ok := certs[h.ServerName]; ok {
			return c, nil
		}
		return nil, fmt.Errorf("no fake peer %q", h.ServerName)
	}}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, fmt.Errorf("fake peers: %w", err)
	}
	f.ln, f.addr = ln, ln.Addr().String()
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	go f.srv.Serve(tls.NewListener(ln, tc))
	return f, nil
}

// peerMap maps the first n domains to the listener, as -peer flags.
func (f *fakePeers) peerMap() map[string]string {
	out := map[string]string{}
	for _, d := range f.domains {
		out[d] = f.addr
	}
	return out
}

func (f *fakePeers) close() { f.srv.Close() }

// delivered returns how many messages arrived for the first time so far,
// and a channel closed at the next arrival.
func (f *fakePeers) delivered() (uint64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.received, f.changed
}

// fanoutRequests is how many /fanout requests brought new messages.
func (f *fakePeers) fanoutRequests() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// ServeHTTP answers the requests a hub sends a peer.
func (f *fakePeers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	domain := r.TLS.ServerName
	body, err := io.ReadAll(io.LimitReader(r.Body, maxFakePeerBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch {
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/fanout/"):
		f.fanout(w, r, domain, body)
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/claimKeymaterial/"):
		f.claim(w, domain, body)
	case r.Method == http.MethodPost:
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r) // the directory: the seed's default paths apply
	}
}

func (f *fakePeers) fanout(w http.ResponseWriter, r *http.Request, domain string, body []byte) {
	var batch proto.FanoutBatch
	if err := proto.Decode(body, &batch, maxFakePeerBody); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	first, err := strconv.ParseUint(r.Header.Get(client.HeaderSequence), 10, 64)
	if err != nil || first == 0 {
		http.Error(w, "no Mimi-Sequence", http.StatusBadRequest)
		return
	}
	key := domain + " " + r.URL.Path
	end := first + uint64(len(batch)) - 1
	f.mu.Lock()
	if prev := f.last[key]; end > prev {
		f.received += end - max(prev, first-1)
		f.requests++
		f.last[key] = end
		close(f.changed)
		f.changed = make(chan struct{})
	}
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// claim answers a claim with a fresh KeyPackage for one client of every
// user named (mimi://DOMAIN/u/NAME/d/fake).
func (f *fakePeers) claim(w http.ResponseWriter, domain string, body []byte) {
	var req proto.KeyMaterialRequest
	if err := proto.Decode(body, &req, maxFakePeerBody); err != nil || len(req.AcceptableSuites) == 0 {
		http.Error(w, fmt.Sprintf("claim: %v", errors.Join(err, errors.New("no suites"))), http.StatusBadRequest)
		return
	}
	suite, err := req.AcceptableSuites[0].Suite()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp := &proto.KeyMaterialResponse{Protocol: req.Protocol}
	now := uint64(time.Now().Unix())
	for _, u := range req.TargetUsers {
		id, err := u.Parse()
		if err != nil || id.Domain != domain {
			http.Error(w, fmt.Sprintf("claim: %s is not a user of %s", u, domain), http.StatusBadRequest)
			return
		}
		c := proto.URI(fmt.Sprintf("mimi://%s/u/%s/d/fake", domain, id.User))
		key, err := suite.GenerateSigningKey()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		b, err := mls.NewKeyPackage(suite, key, mls.KeyPackageOptions{Credential: mls.BasicCredential([]byte(c)), Capabilities: client.Capabilities(),
			Lifetime: mls.Lifetime{NotBefore: now - 3600, NotAfter: now + 86400}})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp.Users = append(resp.Users, proto.UserKeyMaterial{Status: proto.UserSuccess, User: u, Clients: []proto.ClientKeyMaterial{
			{Status: proto.ClientSuccess, Client: c, KeyPackage: &mls.Message{Version: mls.MLS10, WireFormat: mls.WireKeyPackage, KeyPackage: b.KeyPackage}},
		}})
	}
	w.Header().Set("Content-Type", client.ContentTypeMIMI)
	w.Write(wire.MustMarshal(resp))
}
