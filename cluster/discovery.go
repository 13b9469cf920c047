package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Discovery by DNS. A join entry (GossipConfig.Join) is a gossip address,
// HOST:PORT, or a DNS name looked up again at every join attempt:
//
//	dns:NAME:PORT  every address NAME resolves to (A and AAAA) at PORT,
//	               e.g. a Kubernetes headless service:
//	               dns:mimi-hub.mimi.svc.cluster.local:8447
//	dns:NAME       the SRV records of NAME, each target's addresses at the
//	               record's port, e.g.
//	               dns:_gossip._tcp.mimi-hub.mimi.svc.cluster.local
//
// A name's answers change while a cluster forms (pods appear in a headless
// service's records as they start), so the node resolves again until a
// node other than itself answers; its own address is left out of every
// answer. Once gossip has joined, memberlist keeps the member list and DNS
// is not asked again.

// dnsJoinPrefix marks a join entry resolved through DNS.
const dnsJoinPrefix = "dns:"

// maxJoinAddrs bounds the addresses one resolution yields: a broken or
// hostile DNS answer cannot make a node dial thousands of addresses.
const maxJoinAddrs = 64

// resolveTimeout bounds the lookups of one join attempt and of the
// advertised gossip address at start.
const resolveTimeout = 5 * time.Second

// Resolver answers the DNS questions of dns: join entries and of advertise
// addresses given as names. *net.Resolver implements it.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// joinEntry is one parsed join entry.
type joinEntry struct {
	raw string
	// name is the DNS name of a dns: entry ("" for a static address).
	name string
	// port is the port of dns:NAME:PORT ("" for an SRV name).
	port string
}

// parseJoinEntry checks a join entry's syntax.
func parseJoinEntry(s string) (joinEntry, error) {
	rest, isDNS := strings.CutPrefix(s, dnsJoinPrefix)
	if !isDNS {
		host, port, err := net.SplitHostPort(s)
		if err != nil || host == "" || !validPort(port) {
			return joinEntry{}, fmt.Errorf("join %q: want HOST:PORT, dns:NAME:PORT or dns:SRVNAME", s)
		}
		return joinEntry{raw: s}, nil
	}
	e := joinEntry{raw: s, name: rest}
	if host, port, err := net.SplitHostPort(rest); err == nil {
		if !validPort(port) {
			return joinEntry{}, fmt.Errorf("join %q: bad port %q", s, port)
		}
		e.name, e.port = host, port
	}
	if !validDNSName(e.name) {
		return joinEntry{}, fmt.Errorf("join %q: %q is not a DNS name", s, e.name)
	}
	return e, nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n <= 65535
}

// validDNSName accepts names of letters, digits, '-' and '_' (SRV labels
// start with one) in dot-separated labels of 1-63 characters, at most 253
// in all, with an optional final dot.
func validDNSName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			default:
				return false
			}
		}
	}
	return true
}

// resolveJoin returns the gossip addresses to contact now: static entries
// as given (in their order, first), then what DNS answers for the dns:
// entries, sorted, each once, without self (this node's own gossip
// address), at most maxJoinAddrs of them. err joins the lookups that
// failed; the other entries' addresses are still returned.
func resolveJoin(ctx context.Context, r Resolver, entries []joinEntry, self string) ([]string, error) {
	var static, resolved []string
	var errs []error
	seen := map[string]bool{normalAddr(self): true}
	add := func(addr string) {
		key := normalAddr(addr)
		if seen[key] || len(resolved) >= maxJoinAddrs {
			return
		}
		seen[key] = true
		resolved = append(resolved, addr)
	}
	for _, e := range entries {
		switch {
		case e.name == "":
			// Listing itself among static peers is harmless, as always.
			static = append(static, e.raw)
			seen[normalAddr(e.raw)] = true
		case e.port != "":
			ips, err := r.LookupHost(ctx, e.name)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", e.raw, err))
			}
			for _, ip := range ips {
				add(net.JoinHostPort(ip, e.port))
			}
		default:
			_, srvs, err := r.LookupSRV(ctx, "", "", e.name)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", e.raw, err))
			}
			for _, srv := range srvs[:min(len(srvs), maxJoinAddrs)] {
				target := strings.TrimSuffix(srv.Target, ".")
				ips, err := r.LookupHost(ctx, target)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: target %s: %w", e.raw, target, err))
				}
				for _, ip := range ips {
					add(net.JoinHostPort(ip, strconv.Itoa(int(srv.Port))))
				}
			}
		}
	}
	slices.SortFunc(resolved, func(a, b string) int { return cmp.Compare(a, b) })
	return append(static, resolved...), errors.Join(errs...)
}

// normalAddr writes an IP:port in one form (::ffff:10.0.0.1 and 10.0.0.1
// are one address) so an answer can be matched against the node's own.
func normalAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		host = ip.String()
	}
	return net.JoinHostPort(host, port)
}

// hasDNSEntries reports whether any entry is resolved through DNS.
func hasDNSEntries(entries []joinEntry) bool {
	return slices.ContainsFunc(entries, func(e joinEntry) bool { return e.name != "" })
}

// lookupOne resolves host to the single address a node advertises: its
// one IPv4 address, else its one IPv6 address. Several of a family is an
// error, not a guess.
func lookupOne(ctx context.Context, r Resolver, host string) (net.IP, error) {
	addrs, err := r.LookupHost(ctx, host)
	if err != nil {
		return nil, err
	}
	var v4, v6 []net.IP
	for _, a := range addrs {
		switch ip := net.ParseIP(a); {
		case ip == nil || ip.IsUnspecified():
		case ip.To4() != nil:
			if !slices.ContainsFunc(v4, ip.Equal) {
				v4 = append(v4, ip)
			}
		default:
			if !slices.ContainsFunc(v6, ip.Equal) {
				v6 = append(v6, ip)
			}
		}
	}
	for _, ips := range [][]net.IP{v4, v6} {
		switch len(ips) {
		case 0:
		case 1:
			return ips[0], nil
		default:
			return nil, fmt.Errorf("%s resolves to several addresses %v: advertise one of them", host, ips)
		}
	}
	return nil, fmt.Errorf("%s resolves to no usable address", host)
}

// namedAddr is a Raft advertise address given as a DNS name: peers keep
// the name in the Raft configuration and resolve it at every dial, so a
// node that comes back with a new IP (a rescheduled Kubernetes pod, a
// recreated container) keeps its place.
type namedAddr string

func (a namedAddr) Network() string { return "tcp" }
func (a namedAddr) String() string  { return string(a) }

// splitAdvertise checks an advertise address, host:port with a non-zero
// port: a concrete IP (returned) or a DNS name (ip nil).
func splitAdvertise(s string) (host string, ip net.IP, port int, err error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", nil, 0, err
	}
	if !validPort(p) {
		return "", nil, 0, fmt.Errorf("%q: need a port from 1 to 65535", s)
	}
	port, _ = strconv.Atoi(p)
	if ip = net.ParseIP(host); ip != nil {
		if ip.IsUnspecified() {
			return "", nil, 0, fmt.Errorf("%q: need a concrete IP or a DNS name, not a wildcard", s)
		}
		return host, ip, port, nil
	}
	if !validDNSName(host) {
		return "", nil, 0, fmt.Errorf("%q: %q is neither an IP nor a DNS name", s, host)
	}
	return host, nil, port, nil
}
