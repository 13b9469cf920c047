package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// GossipConfig configures discovery with hashicorp/memberlist. Gossip only
// finds nodes and tells who is alive; the Raft configuration, changed by
// the leader, is what makes a node a member.
type GossipConfig struct {
	// BindAddr is the host:port memberlist listens on (TCP and UDP).
	BindAddr string
	// AdvertiseAddr is the host:port other nodes reach it at; empty means
	// BindAddr, which must then name a concrete IP. It is never guessed:
	// a host name (a container's own name) is resolved once at start and
	// must give one IPv4 or one IPv6 address.
	AdvertiseAddr string
	// Join lists other nodes: gossip addresses (HOST:PORT) or DNS names
	// (dns:NAME:PORT for every address of NAME, dns:NAME for its SRV
	// records; see discovery.go). Any one node that answers is enough.
	// The node keeps retrying in the background, resolving the names
	// again each time, until one does.
	Join []string
	// Resolver answers the DNS questions of dns: join entries and of a
	// named AdvertiseAddr; nil means net.DefaultResolver.
	Resolver Resolver
	// Key encrypts and authenticates gossip (AES-GCM, 16, 24 or 32 bytes).
	// Every node of a cluster has the same key. Required. Once the keys
	// were rotated through Node.Keyring, the node starts with the keyring
	// it saved in DataDir instead (keyring.go).
	Key []byte
	// ClusterName labels every gossip packet; nodes of other clusters
	// (another label) are ignored even if they share the key.
	ClusterName string
	// Profile picks memberlist's timing: "lan" (default) or "local"
	// (fast failure detection, for tests on one machine).
	Profile string
}

func (g *GossipConfig) validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(g.BindAddr); err != nil {
		errs = append(errs, fmt.Errorf("gossip BindAddr: %w", err))
	}
	if a := g.AdvertiseAddr; a != "" {
		if _, _, _, err := splitAdvertise(a); err != nil {
			errs = append(errs, fmt.Errorf("gossip AdvertiseAddr: %w", err))
		}
	} else if _, err := concreteAddr(g.BindAddr); err != nil {
		errs = append(errs, fmt.Errorf("gossip BindAddr %q: without AdvertiseAddr it must be a concrete IP:port", g.BindAddr))
	}
	if len(g.Join) > maxJoinAddrs {
		errs = append(errs, fmt.Errorf("gossip Join lists %d entries; at most %d", len(g.Join), maxJoinAddrs))
	}
	for _, j := range g.Join {
		if _, err := parseJoinEntry(j); err != nil {
			errs = append(errs, fmt.Errorf("gossip %w", err))
		}
	}
	switch len(g.Key) {
	case 16, 24, 32:
	default:
		errs = append(errs, fmt.Errorf("gossip Key must be 16, 24 or 32 bytes, not %d", len(g.Key)))
	}
	if g.ClusterName == "" {
		errs = append(errs, errors.New("gossip ClusterName is required"))
	}
	switch g.Profile {
	case "", "lan", "local":
	default:
		errs = append(errs, fmt.Errorf("gossip Profile %q: want lan or local", g.Profile))
	}
	return errors.Join(errs...)
}

// concreteAddr parses host:port where host is an IP that is not
// unspecified and port is not zero.
func concreteAddr(s string) (*net.TCPAddr, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host)
	p, err := strconv.Atoi(port)
	if ip == nil || ip.IsUnspecified() || err != nil || p <= 0 || p > 65535 {
		return nil, fmt.Errorf("%q: need a concrete IP and port", s)
	}
	return &net.TCPAddr{IP: ip, Port: p}, nil
}

// nodeMeta is what a node tells the others about itself through gossip
// (memberlist limits it to 512 bytes).
type nodeMeta struct {
	Version  int    `json:"v"`
	RaftAddr string `json:"raft"`
	Expect   int    `json:"expect"`
	HasState bool   `json:"state"`
	// ClusterID names the Raft history the node belongs to; empty for an
	// empty node.
	ClusterID string `json:"cluster,omitempty"`
	// Leaving is set by a node about to leave for good (Node.Leave), so
	// that the others record its departure as "left", not "failed":
	// memberlist's leave notification does not say which it was.
	Leaving bool `json:"leaving,omitempty"`
	// StateDigest is Config.StateDigest.
	StateDigest string `json:"sd,omitempty"`
	// LogLevel is the command set the node's release applies
	// (fsm.LogLevel; 0 for a release before levels).
	LogLevel int `json:"log,omitempty"`
}

// MemberStatus is a node's gossip status.
type MemberStatus string

// Gossip statuses.
const (
	StatusAlive   MemberStatus = "alive"
	StatusSuspect MemberStatus = "suspect"
	StatusFailed  MemberStatus = "failed" // memberlist: dead
	StatusLeft    MemberStatus = "left"   // left gracefully
)

// member is what gossip knows about a node.
type member struct {
	ID         string
	GossipAddr string
	Meta       nodeMeta
	Status     MemberStatus
	// Since is when Status last changed (local clock).
	Since time.Time
}

// gossip runs memberlist for one node and keeps the member table.
type gossip struct {
	ml  *memberlist.Memberlist
	log *slog.Logger
	// self is the address this node advertises (IP:port).
	self     string
	resolver Resolver

	mu      sync.Mutex
	meta    nodeMeta
	members map[string]*member
	notify  chan struct{} // one-slot: something changed
	now     func() time.Time
	// onStatus is told when a known node's status changes (not when a
	// node is first seen), outside the lock.
	onStatus func(id string, from, to MemberStatus)
	// keys is the keyring gossip encrypts with (keyring.go).
	keys *keyringState
}

func startGossip(ctx context.Context, cfg *GossipConfig, id string, meta nodeMeta, keys *keyringState, log *slog.Logger, onStatus func(id string, from, to MemberStatus)) (*gossip, error) {
	g := &gossip{log: log.With("component", "gossip"), meta: meta, members: map[string]*member{},
		notify: make(chan struct{}, 1), now: time.Now, resolver: cfg.Resolver, onStatus: onStatus, keys: keys}
	if g.resolver == nil {
		g.resolver = net.DefaultResolver
	}
	var mc *memberlist.Config
	if cfg.Profile == "local" {
		mc = memberlist.DefaultLocalConfig()
	} else {
		mc = memberlist.DefaultLANConfig()
	}
	mc.Name = id
	host, port, _ := net.SplitHostPort(cfg.BindAddr)
	mc.BindAddr = host
	mc.BindPort, _ = strconv.Atoi(port)
	adv := cfg.AdvertiseAddr
	if adv == "" {
		adv = cfg.BindAddr
	}
	host, ip, advPort, err := splitAdvertise(adv)
	if err != nil {
		return nil, fmt.Errorf("gossip advertise address: %w", err)
	}
	if ip == nil {
		lctx, cancel := context.WithTimeout(ctx, resolveTimeout)
		ip, err = lookupOne(lctx, g.resolver, host)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("gossip advertise address %s: %w", adv, err)
		}
		g.log.Info("resolved the gossip advertise address", "name", adv, "ip", ip.String())
	}
	mc.AdvertiseAddr, mc.AdvertisePort = ip.String(), advPort
	g.self = net.JoinHostPort(mc.AdvertiseAddr, strconv.Itoa(advPort))
	mc.Keyring = keys.ring // cfg.Key, or the keyring saved after a rotation
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.Label = cfg.ClusterName
	mc.Delegate = g
	mc.Events = g
	mc.Logger = slog.NewLogLogger(g.log.Handler(), slog.LevelDebug)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.BindAddr, err)
	}
	g.ml = ml
	return g, nil
}

// join contacts the given addresses; it succeeds if any one answers.
func (g *gossip) join(addrs []string) (int, error) {
	return g.ml.Join(addrs)
}

// resolve turns join entries into the addresses to contact now (see
// resolveJoin).
func (g *gossip) resolve(ctx context.Context, entries []joinEntry) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	return resolveJoin(ctx, g.resolver, entries, g.self)
}

// setMeta changes what this node advertises and pushes it out.
func (g *gossip) setMeta(update func(*nodeMeta)) {
	g.mu.Lock()
	update(&g.meta)
	g.mu.Unlock()
	if err := g.ml.UpdateNode(5 * time.Second); err != nil {
		g.log.Warn("gossip metadata update not acknowledged", "err", err)
	}
}

// leave announces a graceful departure and waits (bounded) for it to
// spread: first in the metadata (the others then record the departure as
// left), then through memberlist.
func (g *gossip) leave(timeout time.Duration) error {
	g.setMeta(func(m *nodeMeta) { m.Leaving = true })
	return g.ml.Leave(timeout)
}

func (g *gossip) shutdown() error { return g.ml.Shutdown() }

// leftRetention is how long a node that left stays in the member table
// (status "left"); then it is forgotten. Failed nodes stay: membership
// reconciliation times their removal.
const leftRetention = 10 * time.Minute

// snapshot returns the member table, sorted by ID.
func (g *gossip) snapshot() []member {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	out := make([]member, 0, len(g.members))
	for id, m := range g.members {
		if m.Status == StatusLeft && now.Sub(m.Since) > leftRetention {
			delete(g.members, id)
			continue
		}
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b member) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// changed returns the one-slot channel signalled on membership changes.
func (g *gossip) changed() <-chan struct{} { return g.notify }

func (g *gossip) update(n *memberlist.Node, status MemberStatus) {
	var meta nodeMeta
	if len(n.Meta) > 0 {
		if err := json.Unmarshal(n.Meta, &meta); err != nil {
			g.log.Warn("unreadable gossip metadata", "node", n.Name, "err", err)
		}
	}
	g.mu.Lock()
	m, ok := g.members[n.Name]
	if !ok {
		m = &member{ID: n.Name}
		g.members[n.Name] = m
	}
	from := m.Status
	if m.Status != status {
		m.Since = g.now()
	}
	m.Status = status
	m.GossipAddr = n.Address()
	var differs bool
	if len(n.Meta) > 0 {
		differs = meta.StateDigest != m.Meta.StateDigest && stateDigestsDiffer(g.meta.StateDigest, meta.StateDigest)
		m.Meta = meta
	}
	self := g.meta.StateDigest
	g.mu.Unlock()
	if differs {
		g.log.Error("a node's state machine configuration differs from this node's: each sets its own state bounds through the log whenever it leads, so they change with leadership; give every node the same values (mimi_state_config_mismatched_nodes)",
			"node", n.Name, "its_digest", meta.StateDigest, "this_digest", self)
	}
	if ok && from != status && g.onStatus != nil {
		g.onStatus(n.Name, from, status)
	}
	select {
	case g.notify <- struct{}{}:
	default:
	}
}

// stateDigestsDiffer reports whether two advertised state digests say
// the nodes are configured differently (an empty one says nothing).
func stateDigestsDiffer(a, b string) bool { return a != "" && b != "" && a != b }

// stateMismatches lists, sorted, the members still in the cluster (not
// failed or left) whose state digest differs from this node's.
func (g *gossip) stateMismatches(self string) []string {
	var out []string
	mine := g.advertised().StateDigest
	for _, m := range g.snapshot() {
		if m.ID == self || m.Status == StatusFailed || m.Status == StatusLeft {
			continue
		}
		if stateDigestsDiffer(mine, m.Meta.StateDigest) {
			out = append(out, m.ID)
		}
	}
	return out
}

// belowLogLevel lists, sorted, the servers (Raft IDs) whose advertised
// log level is below level, or that gossip does not know.
func (g *gossip) belowLogLevel(servers []string, level int) []string {
	return g.notAdvertising(servers, func(m nodeMeta) bool { return m.LogLevel >= level })
}

// digestOtherwise lists, sorted, the servers (Raft IDs) that do not
// advertise the state digest digest: configured otherwise, advertising
// none, or unknown to gossip.
func (g *gossip) digestOtherwise(servers []string, digest string) []string {
	return g.notAdvertising(servers, func(m nodeMeta) bool { return m.StateDigest == digest })
}

// notAdvertising lists, sorted, the servers (Raft IDs) whose last known
// metadata does not satisfy ok, or that gossip does not know. A failed
// member counts by what it advertised last: it may come back as it was.
func (g *gossip) notAdvertising(servers []string, ok func(nodeMeta) bool) []string {
	known := map[string]nodeMeta{}
	for _, m := range g.snapshot() {
		known[m.ID] = m.Meta
	}
	var out []string
	for _, id := range servers {
		if m, found := known[id]; !found || !ok(m) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// advertised returns what this node advertises.
func (g *gossip) advertised() nodeMeta {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.meta
}

// NodeMeta implements memberlist.Delegate.
func (g *gossip) NodeMeta(limit int) []byte {
	g.mu.Lock()
	b, _ := json.Marshal(g.meta)
	g.mu.Unlock()
	if len(b) > limit {
		g.log.Error("gossip metadata too large", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}

// NotifyMsg, GetBroadcasts, LocalState and MergeRemoteState implement
// memberlist.Delegate; this node uses only the metadata.
func (g *gossip) NotifyMsg([]byte)                           {}
func (g *gossip) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (g *gossip) LocalState(join bool) []byte                { return nil }
func (g *gossip) MergeRemoteState(buf []byte, join bool)     {}

// NotifyJoin implements memberlist.EventDelegate.
func (g *gossip) NotifyJoin(n *memberlist.Node) { g.update(n, StatusAlive) }

// NotifyUpdate implements memberlist.EventDelegate.
func (g *gossip) NotifyUpdate(n *memberlist.Node) { g.update(n, gossipStatus(n)) }

// NotifyLeave implements memberlist.EventDelegate: a node failed or left.
// memberlist v0.6.0 hands over the node with its state before the change
// (it updates its own record's state, not the Node inside), so a
// departure is recognized by the metadata the leaving node set first.
func (g *gossip) NotifyLeave(n *memberlist.Node) {
	g.mu.Lock()
	m := g.members[n.Name]
	leaving := m != nil && m.Meta.Leaving
	g.mu.Unlock()
	var meta nodeMeta
	if len(n.Meta) > 0 && json.Unmarshal(n.Meta, &meta) == nil && meta.Leaving {
		leaving = true
	}
	if leaving || n.State == memberlist.StateLeft {
		g.update(n, StatusLeft)
		return
	}
	g.update(n, StatusFailed)
}

func gossipStatus(n *memberlist.Node) MemberStatus {
	switch n.State {
	case memberlist.StateSuspect:
		return StatusSuspect
	case memberlist.StateDead:
		return StatusFailed
	case memberlist.StateLeft:
		return StatusLeft
	}
	return StatusAlive
}
