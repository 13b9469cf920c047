package httpapi

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gorilla/mux"

	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// mimiContentType is the media type of TLS-presentation bodies.
const mimiContentType = "application/mimi"

// maxIdempotencyKey bounds the Idempotency-Key header.
const maxIdempotencyKey = 64

// PeerFromTLS returns the domain of the provider that sent r: the one DNS
// subject alternative name of its verified TLS client certificate
// (r.TLS.VerifiedChains[0][0]). A request without a verified client
// certificate, or whose certificate names no or several domains, is not
// authenticated.
func PeerFromTLS(r *http.Request) (string, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", errors.New("no verified TLS client certificate")
	}
	return domainOfCert(r.TLS.VerifiedChains[0][0])
}

func domainOfCert(c *x509.Certificate) (string, error) {
	switch len(c.DNSNames) {
	case 0:
		return "", errors.New("the client certificate names no DNS domain")
	case 1:
	default:
		return "", fmt.Errorf("the client certificate names %d DNS domains; a provider's certificate must name exactly one", len(c.DNSNames))
	}
	d := strings.ToLower(strings.TrimSuffix(c.DNSNames[0], "."))
	if !validDomain(d) {
		return "", fmt.Errorf("the client certificate's DNS name %q is not a provider domain", c.DNSNames[0])
	}
	return d, nil
}

// validDomain reports whether d is a provider domain as identifiers use it.
func validDomain(d string) bool {
	_, err := proto.UserURI(d, "x").Parse()
	return err == nil
}

// pathVar returns a path variable, unescaped (routers match on the escaped
// path).
func pathVar(r *http.Request, name string) (string, error) {
	v, err := url.PathUnescape(mux.Vars(r)[name])
	if err != nil {
		return "", fail(http.StatusBadRequest, "path {%s}: %v", name, err)
	}
	return v, nil
}

// domainVar returns a path variable that must be a provider domain.
func domainVar(r *http.Request, name string) (string, error) {
	d, err := pathVar(r, name)
	if err != nil {
		return "", err
	}
	if !validDomain(d) {
		return "", fail(http.StatusBadRequest, "path {%s}: %q is not a provider domain", name, d)
	}
	return d, nil
}

// roomVar returns the room a path names: {roomId} at hub.
func roomVar(r *http.Request, name, hub string) (proto.URI, error) {
	id, err := pathVar(r, name)
	if err != nil {
		return "", err
	}
	uri := proto.RoomURI(hub, id)
	if _, err := uri.Parse(); err != nil {
		return "", fail(http.StatusBadRequest, "path {%s}: %q is not a room id ([A-Za-z0-9._~-], 1 to 255 characters)", name, id)
	}
	return uri, nil
}

// decode decodes a MIMI body strictly (400 with the decoder's reason).
func decode(data []byte, v wire.Decoder, maxVector int, what string) error {
	if err := proto.Decode(data, v, maxVector); err != nil {
		return fail(http.StatusBadRequest, "%s: %v", what, err)
	}
	return nil
}

// writeMIMI writes v as an application/mimi response.
func writeMIMI(w http.ResponseWriter, status int, v wire.Encoder) error {
	b, err := wire.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	writeRawMIMI(w, status, b)
	return nil
}

func writeRawMIMI(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", mimiContentType)
	h.Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// readConsistency reads a GET's ?consistency= parameter. "linearizable"
// (the default) answers after every write acknowledged before the request
// is applied on this node; "stale" answers from this node's state at once,
// which may lag the leader by the entries still in flight (monitoring, and
// comparing nodes, want exactly that).
func readConsistency(r *http.Request) (linearizable bool, err error) {
	switch v := r.URL.Query().Get("consistency"); v {
	case "", "linearizable":
		return true, nil
	case "stale":
		return false, nil
	default:
		return false, fail(http.StatusBadRequest, "consistency=%q: want linearizable or stale", v)
	}
}

// requestID derives a command's request id from the Idempotency-Key
// header: SHA-256 over the principal (a client URI or peer domain), the
// operation and the key, so principals and operations never collide and
// the id fits the backend's 64 bytes. No header, no id.
func requestID(r *http.Request, principal, operation string) ([]byte, error) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return nil, nil
	}
	if len(key) > maxIdempotencyKey {
		return nil, fail(http.StatusBadRequest, "Idempotency-Key is %d bytes; at most %d", len(key), maxIdempotencyKey)
	}
	h := sha256.New()
	for _, s := range []string{"mimi-hub request id", principal, operation, key} {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	return h.Sum(nil), nil
}

// assetAllowed reports whether downloadFile may fetch u.
func (c *Config) assetAllowed(u *url.URL) bool {
	if u.Scheme != "https" || u.User != nil || u.Host == "" {
		return false
	}
	host, hostPort := strings.ToLower(u.Hostname()), strings.ToLower(u.Host)
	for _, a := range c.AssetHosts {
		a = strings.ToLower(a)
		if a == host || a == hostPort {
			return true
		}
	}
	return false
}
