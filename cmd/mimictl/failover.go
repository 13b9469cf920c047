package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

// A profile may name several nodes of its provider's cluster (register
// -server a,b,c). Requests go to one node at a time; failoverTransport
// moves to the next when the current one cannot be reached (the request
// is sent again at once, since it never left) or answers 503 or fails
// mid-request (the next request, and so mimi/client's retry of this one
// with the same idempotency key, goes to the next node). Every node serves
// the same provider, so which one answers does not matter.

// maxServers bounds the nodes a profile names.
const maxServers = 16

// parseServers reads a comma-separated list of client API URLs: https
// (or http), a host, the same path on every one, no query.
func parseServers(list string) ([]string, error) {
	servers := splitList(list)
	if len(servers) == 0 || len(servers) > maxServers {
		return nil, fmt.Errorf("want 1 to %d client API URLs, got %d", maxServers, len(servers))
	}
	var path string
	for i, s := range servers {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("%q is not a client API URL (https://HOST:PORT)", s)
		}
		p := strings.TrimRight(u.Path, "/")
		if i > 0 && p != path {
			return nil, fmt.Errorf("%q: every node's URL must have the same path (%q)", s, path)
		}
		path = p
		servers[i] = strings.TrimRight(s, "/")
	}
	return servers, nil
}

// failoverTransport sends each request to the current node, and moves to
// the next node as described above.
type failoverTransport struct {
	next    http.RoundTripper
	servers []*url.URL
	cur     atomic.Int32
	log     *slog.Logger
}

// newFailover returns next itself for a single server.
func newFailover(next http.RoundTripper, servers []string, log *slog.Logger) (http.RoundTripper, error) {
	if len(servers) < 2 {
		return next, nil
	}
	f := &failoverTransport{next: next, log: log}
	for _, s := range servers {
		u, err := url.Parse(s)
		if err != nil {
			return nil, err
		}
		f.servers = append(f.servers, u)
	}
	return f, nil
}

// RoundTrip implements http.RoundTripper.
func (f *failoverTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	n := int32(len(f.servers))
	start := f.cur.Load()
	var err error
	for i := range n {
		idx := (start + i) % n
		req := r.Clone(r.Context())
		req.URL.Scheme, req.URL.Host, req.Host = f.servers[idx].Scheme, f.servers[idx].Host, ""
		if i > 0 && r.Body != nil && r.Body != http.NoBody {
			if r.GetBody == nil {
				break // the body cannot be sent again
			}
			if req.Body, err = r.GetBody(); err != nil {
				break
			}
		}
		var resp *http.Response
		resp, err = f.next.RoundTrip(req)
		if err == nil || !neverSent(err) {
			f.cur.CompareAndSwap(start, idx) // this node answers (or was reached)
		}
		switch {
		case err == nil && resp.StatusCode == http.StatusServiceUnavailable:
			// This node cannot serve now (paused, stopping, or the whole
			// cluster has no leader): the retry goes elsewhere.
			f.moveFrom(idx, "it answered 503")
			return resp, nil
		case err == nil:
			return resp, nil
		case !neverSent(err) || r.Context().Err() != nil:
			f.moveFrom(idx, err.Error())
			return nil, err
		}
		f.log.Debug("node unreachable; trying the next one", "node", f.servers[idx].Host, "err", err)
	}
	f.moveFrom(start, "no node answered")
	return nil, err
}

// moveFrom makes the node after idx current, unless another request moved
// already.
func (f *failoverTransport) moveFrom(idx int32, why string) {
	next := (idx + 1) % int32(len(f.servers))
	if f.cur.CompareAndSwap(idx, next) {
		f.log.Debug("switching to the next node", "from", f.servers[idx].Host, "to", f.servers[next].Host, "why", why)
	}
}

// neverSent reports an error that happened before the request reached a
// server: no connection could be made.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
