package hub

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// The operations listener's guard. The listener is plain HTTP on a private
// address, but a browser on the operator's machine can be made to send it
// requests: a form or fetch from a hostile page (cross-site request
// forgery), or a page whose host name the attacker re-points at the
// listener's address (DNS rebinding). Every route but /healthz and /readyz
// therefore checks, in this order, before its handler runs:
//
//  1. Host: an IP literal, "localhost", or a name in Config.OpsHosts.
//     A rebinding page's requests name the attacker's host and are refused
//     (421 Misdirected Request).
//  2. Cross-site: a request a browser marks as cross-site or same-site
//     (Sec-Fetch-Site), or whose Origin is not the listener itself, is
//     refused (403), whatever its method. Tools such as curl and mimictl
//     send neither header.
//  3. The admin token (the operator API, the dashboard's data, pprof):
//     `Authorization: Bearer TOKEN`, compared in constant time (401).
//  4. A request that changes something (any method but GET and HEAD)
//     must declare its body's media type: application/json, or
//     application/octet-stream for a backup (415). The media types a form
//     or a "simple" cross-origin fetch can send (text/plain, form
//     encodings) are never accepted, so such a request cannot get past a
//     browser without a CORS preflight, which this listener never grants.
//
// /metrics passes checks 1 and 2 only: Prometheus scrapes it without a
// token. The dashboard's page and script (GET /, /ui/) pass check 1 only
// (a link from another site may open the page) and hold no data: the page
// asks for the token and sends it as a header from sessionStorage (never
// in a URL or cookie) to GET /v1/dashboard, which passes every check.

// AdminTokenFile is the name of the file, in a node's data directory, that
// holds the admin token mimi-hub generated on first start (0600).
const AdminTokenFile = "admin-token"

// maxAdminTokenFile bounds the size of a token file read.
const maxAdminTokenFile = 4 << 10

// ErrNoAdminToken: an admin token file holds no token.
var ErrNoAdminToken = errors.New("no admin token")

// ReadAdminToken reads an admin token file: its first line, trimmed.
func ReadAdminToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	defer f.Close()
	b := make([]byte, maxAdminTokenFile+1)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return "", fmt.Errorf("admin token %s: %w", path, ErrNoAdminToken)
	}
	if n > maxAdminTokenFile {
		return "", fmt.Errorf("admin token %s: longer than %d bytes", path, maxAdminTokenFile)
	}
	line, _, _ := strings.Cut(string(b[:n]), "\n")
	if tok := strings.TrimSpace(line); tok != "" {
		return tok, nil
	}
	return "", fmt.Errorf("admin token %s: %w", path, ErrNoAdminToken)
}

// LoadOrCreateAdminToken returns the token in path, creating the file
// (0600, with a new random token of 256 bits) if it does not exist. created
// reports whether this call made it. Several processes may race to create
// the same file (the nodes of a local cluster sharing one): the file
// appears whole or not at all (written aside, then linked into place), and
// every racer reads the winner's token.
func LoadOrCreateAdminToken(path string) (token string, created bool, err error) {
	tok, err := ReadAdminToken(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return tok, false, err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", false, fmt.Errorf("admin token: %w", err)
	}
	tok = base64.RawURLEncoding.EncodeToString(raw[:])
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", false, fmt.Errorf("admin token: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".admin-token-*")
	if err != nil {
		return "", false, fmt.Errorf("admin token: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(tok + "\n")
	if err := errors.Join(werr, tmp.Chmod(0o600), tmp.Sync(), tmp.Close()); err != nil {
		return "", false, fmt.Errorf("admin token: writing %s: %w", tmp.Name(), err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			tok, err := ReadAdminToken(path)
			return tok, false, err
		}
		return "", false, fmt.Errorf("admin token: %w", err)
	}
	return tok, true, nil
}

// IsLoopbackAddr reports whether a listen address (host:port) binds a
// loopback address only: 127.0.0.0/8, ::1 or "localhost".
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// opsGuard holds the checks of the operations listener's routes.
type opsGuard struct {
	hasToken bool
	token    [sha256.Size]byte
	// hosts are the lower-case host names (besides IP literals and
	// localhost) requests may name.
	hosts map[string]bool
}

func newOpsGuard(token string, hosts []string) *opsGuard {
	g := &opsGuard{hasToken: token != "", token: sha256.Sum256([]byte(token)), hosts: map[string]bool{"localhost": true}}
	for _, h := range hosts {
		g.hosts[strings.ToLower(strings.TrimSuffix(h, "."))] = true
	}
	return g
}

// routeChecks are the checks a route needs beyond Host and cross-site.
type routeChecks struct {
	// token: the admin token is required (when one is configured).
	token bool
	// body is the media type a mutating request's body must declare
	// (default application/json).
	body string
	// allowCrossSite lets other sites link to the route (the dashboard's
	// page, which holds no data).
	allowCrossSite bool
}

// wrap returns next behind the Host and cross-site checks and those of c.
func (g *opsGuard) wrap(c routeChecks, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.checkHost(r.Host); err != nil {
			opsError(w, http.StatusMisdirectedRequest, err.Error())
			return
		}
		if err := crossSite(r); err != nil && !c.allowCrossSite {
			opsError(w, http.StatusForbidden, err.Error())
			return
		}
		if c.token && !g.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mimi-hub ops"`)
			opsError(w, http.StatusUnauthorized, "missing or wrong admin token")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			want := c.body
			if want == "" {
				want = "application/json"
			}
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != want {
				opsError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("%s %s needs Content-Type: %s (got %q)", r.Method, r.URL.Path, want, r.Header.Get("Content-Type")))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// authorized checks the bearer token. Comparing digests keeps the
// comparison constant-time whatever the presented token's length.
func (g *opsGuard) authorized(r *http.Request) bool {
	if !g.hasToken {
		return true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return ok && strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare(got[:], g.token[:]) == 1
}

// checkHost accepts a Host header naming an IP literal, localhost or a
// configured name (any port).
func (g *opsGuard) checkHost(hostport string) error {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if net.ParseIP(host) != nil || g.hosts[strings.ToLower(host)] {
		return nil
	}
	return fmt.Errorf("this operations listener does not answer to host %q: use its IP address, localhost, or a name given to mimi-hub with -ops-host", hostport)
}

// crossSite refuses requests a browser sends on behalf of another site.
func crossSite(r *http.Request) error {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		return fmt.Errorf("cross-site request refused (Sec-Fetch-Site: %s): the operations listener serves only its own pages and non-browser clients", site)
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || origin == "null" || !strings.EqualFold(u.Host, r.Host) || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("cross-site request refused: Origin %q is not this listener (%s)", origin, r.Host)
	}
	return nil
}
