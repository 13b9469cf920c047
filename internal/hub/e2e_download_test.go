package hub_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
)

// TestFederationDownloadFile: a peer downloads an asset through the hub
// (downloadFile), which fetches it from an allowed asset host whose
// certificate it verifies against AssetRoots. An allowed host it cannot
// verify fails upstream (502).
func TestFederationDownloadFile(t *testing.T) {
	assetCA, err := devca.New()
	must(t, err, "asset CA")
	assetCert, err := assetCA.Issue("assets.example", "127.0.0.1")
	must(t, err, "asset host certificate")
	// serve starts an asset host; without a certificate it presents
	// httptest's own, which no root in AssetRoots verifies.
	serve := func(body string, cert *tls.Certificate) *httptest.Server {
		s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/png")
			fmt.Fprintf(w, "%s at %s", body, r.URL.Path)
		}))
		s.Config.ErrorLog = log.New(io.Discard, "", 0)
		if cert != nil {
			s.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
		}
		s.StartTLS()
		t.Cleanup(s.Close)
		return s
	}
	trusted, unknown := serve("a picture", &assetCert), serve("a stranger's picture", nil)
	roots := assetCA.Pool()
	net := testutil.StartNetwork(t, testutil.Options{Configure: func(cfg *hub.Config) {
		cfg.AssetHosts = []string{strings.TrimPrefix(trusted.URL, "https://"), strings.TrimPrefix(unknown.URL, "https://")}
		cfg.AssetRoots = roots
	}}, domainA, domainB)
	certB := net.Issue(domainB)
	peer := net.PeerClient(&certB)

	for _, tc := range []struct {
		asset      string
		status     int
		body, kind string
	}{
		{trusted.URL + "/files/cat.png", http.StatusOK, "a picture at /files/cat.png", "image/png"},
		{unknown.URL + "/files/cat.png", http.StatusBadGateway, "", ""},
	} {
		req, err := http.NewRequestWithContext(opCtx(t), http.MethodGet, "https://"+domainA+"/downloadFile/"+url.PathEscape(tc.asset), nil)
		must(t, err, "request")
		resp, err := peer.Do(req)
		must(t, err, "downloadFile "+tc.asset)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		must(t, err, "read the body")
		if resp.StatusCode != tc.status {
			t.Fatalf("downloadFile %s: %s (%s), want %d", tc.asset, resp.Status, body, tc.status)
		}
		if tc.status == http.StatusOK && (string(body) != tc.body || resp.Header.Get("Content-Type") != tc.kind) {
			t.Fatalf("downloadFile %s: %q (%s), want %q (%s)", tc.asset, body, resp.Header.Get("Content-Type"), tc.body, tc.kind)
		}
	}
}
