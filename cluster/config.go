package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// Defaults applied by Start to zero-valued Config fields. The timing defaults
// are hashicorp/raft's own (tuned for a LAN); the snapshot policy keeps about
// 10k entries of log behind each snapshot so a lagging follower catches up by
// log replay rather than a snapshot transfer.
const (
	DefaultRaftAddr           = "127.0.0.1:0"
	DefaultSnapshotThreshold  = 8192
	DefaultSnapshotInterval   = 30 * time.Second
	DefaultTrailingLogs       = 10240
	DefaultSnapshotRetain     = 2
	DefaultApplyTimeout       = 10 * time.Second
	DefaultHeartbeatTimeout   = 1000 * time.Millisecond
	DefaultElectionTimeout    = 1000 * time.Millisecond
	DefaultLeaderLeaseTimeout = 500 * time.Millisecond
	DefaultCommitTimeout      = 10 * time.Millisecond
	DefaultStoreOpenTimeout   = 2 * time.Second
	DefaultTransportTimeout   = 10 * time.Second
	DefaultTransportMaxPool   = 3
	DefaultLeaderWait         = 5 * time.Second
	DefaultReconcileInterval  = time.Second
	DefaultDeadServerRemoval  = 15 * time.Minute
	DefaultPromoteAfter       = 5 * time.Second
	DefaultMaxPromoteLag      = 256
	DefaultMaxInFlight        = 2
	DefaultMaxForwards        = 16
	// DefaultMaxEntrySize bounds one log entry: the largest API body
	// (16 MiB) and the command around it, far below the 1 GiB a snapshot
	// record may hold.
	DefaultMaxEntrySize = 20 << 20

	// logCacheSize is the number of recent log entries kept in memory in
	// front of the BoltDB log store.
	logCacheSize = 512
)

// Config configures a Node. Zero-valued fields take the Default* values.
type Config struct {
	// NodeID identifies this server in the Raft configuration for all time.
	// Required.
	NodeID string

	// DataDir holds the Raft state: logs.db (the log), stable.db (term and
	// vote) and snapshots/. Created (0700) if missing. Required.
	DataDir string

	// RaftAddr is the address the Raft transport listens on, host:port.
	// Port 0 picks a free port. Default DefaultRaftAddr (loopback).
	RaftAddr string

	// AdvertiseAddr is the address other servers use to reach this one,
	// host:port. Empty means the address RaftAddr is bound to, which must
	// then not be an unspecified address (0.0.0.0 or ::). A DNS name is
	// kept as a name in the Raft configuration and resolved by the peers
	// at every dial, so the node may come back at another IP (a
	// Kubernetes pod's stable name); it need not resolve yet at start.
	AdvertiseAddr string

	// BootstrapExpect is the number of voters of a brand-new cluster. A node
	// with no Raft state bootstraps the cluster once it sees, through
	// gossip, exactly this many nodes that all expect the same number and
	// all have no state; every one of them writes the same configuration.
	// 1 bootstraps a single voter: at once without join peers, else once a
	// join peer answered and no node seen belongs to a cluster. A node with
	// join peers never bootstraps before one of them answered, whatever
	// the number, so a node meant to join cannot start a second history.
	// 0 never bootstraps: the node waits to be added by the leader of an
	// existing cluster. Nodes expecting 0 are not counted. A node with
	// Raft state never bootstraps again.
	BootstrapExpect int

	// TLS authenticates the Raft transport and the internal channel (both
	// on RaftAddr) with the cluster CA. Without it the node has no network
	// transport at all: it can only be a single voter.
	TLS *TLS

	// Gossip configures discovery (hashicorp/memberlist). Nil means no
	// gossip: a single node.
	Gossip *GossipConfig

	// LeaderWait bounds how long a request waits for a leader (during an
	// election) before failing as unavailable.
	LeaderWait time.Duration

	// Membership reconciliation, done by the leader from gossip.
	// ReconcileInterval is how often it runs (and after gossip events).
	ReconcileInterval time.Duration
	// DeadServerRemoveAfter is how long a server must have been failed in
	// gossip before it is removed from the Raft configuration. Removal
	// never takes the voters below MinVoters or a live quorum.
	DeadServerRemoveAfter time.Duration
	// PromoteAfter is how long a new non-voter must stay caught up (within
	// MaxPromoteLag entries of the leader's commit index) before it is
	// promoted to voter.
	PromoteAfter  time.Duration
	MaxPromoteLag uint64
	// MinVoters is the fewest voters dead-server removal leaves. Default
	// BootstrapExpect (at least 1).
	MinVoters int

	// SnapshotThreshold is how many log entries must accumulate since the
	// last snapshot before an automatic one is taken.
	SnapshotThreshold uint64
	// SnapshotInterval is how often the threshold is checked (randomly
	// staggered between 1x and 2x). After a snapshot Raft deletes the log
	// behind it in one BoltDB transaction, which holds up log appends:
	// the interval bounds that batch (at 2,000 writes a second, 30 s is
	// about 60,000 entries; 2 minutes meant seconds of stalled writes
	// and elections under sustained load, docs/benchmarks.md).
	SnapshotInterval time.Duration
	// TrailingLogs is how many entries are kept in the log after a snapshot.
	TrailingLogs uint64
	// SnapshotRetain is how many snapshots are kept on disk.
	SnapshotRetain int

	// ApplyTimeout bounds Apply and Barrier when the caller's context has
	// no deadline.
	ApplyTimeout time.Duration

	// MaxEntrySize bounds the encoding of one command: a larger one is
	// refused before Raft (ErrEntryTooLarge), also when forwarded.
	MaxEntrySize int

	// StateDigest names the state machine's configuration (fsm.Config's
	// Digest): nodes with different ones are configured differently.
	// Gossip carries it, and StateConfigMismatches lists the members
	// whose digest differs from this node's. Empty: not compared.
	StateDigest string

	// olderRelease makes the node advertise no log level, as a node of a
	// release before levels does (tests of the upgrade gate).
	olderRelease bool

	// MaxInFlight is how many log entries the leader has in flight before
	// the commands that arrive wait and go together in the next one
	// (propose.go).
	MaxInFlight int
	// MaxForwards is how many requests a follower has in flight to the
	// leader with forwarded writes before the writes that arrive wait and
	// go together in the next one. It is larger than MaxInFlight: a write
	// that waits here waits for an earlier request's whole trip (the
	// leader's queue and a Raft round), while one forwarded at once joins
	// the leader's next entry anyway, so this bound is about how many
	// requests a follower may hold open, not about batching.
	MaxForwards int

	// Raft timing. Tests shorten these; production keeps the defaults.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// CommitTimeout is the longest an idle leader waits before it sends
	// followers the new commit index (hashicorp/raft's default is 50ms).
	// Followers apply an entry only once they learn it committed, so at
	// low load this is the lag of a follower's copy: of a write forwarded
	// through it (which answers once applied there) and of every message
	// delivered to a client whose stream is on it.
	CommitTimeout time.Duration

	// StoreOpenTimeout bounds the wait for the BoltDB file locks, so a second
	// process on the same DataDir fails instead of hanging.
	StoreOpenTimeout time.Duration

	// TransportTimeout is the I/O deadline of transport RPCs.
	TransportTimeout time.Duration
	// TransportMaxPool is the number of pooled connections per peer.
	TransportMaxPool int

	// Logger receives the node's and hashicorp/raft's logs. Nil means
	// slog.Default().
	Logger *slog.Logger

	// Observer receives timings for metrics; nil means none.
	Observer Observer
}

// Observer receives a node's timings, for metrics. Its methods are called
// on hot paths and must not block.
type Observer interface {
	// Committed reports an entry proposed on this node (the leader): the
	// time from proposal until the FSM's response, so replication, commit
	// and apply together.
	Committed(d time.Duration)
	// FSMApplied reports the FSM applying one entry, on every node.
	FSMApplied(d time.Duration)
	// Forwarded reports a write this node forwarded to the leader: the
	// round trip, and the error if it failed.
	Forwarded(d time.Duration, err error)
	// AnsweredUnlogged reports a write of the named command type answered
	// from the state without a log entry (fsm.State.Admit).
	AnsweredUnlogged(command string)
}

// noObserver is the Observer when none is configured.
type noObserver struct{}

func (noObserver) Committed(time.Duration)        {}
func (noObserver) FSMApplied(time.Duration)       {}
func (noObserver) Forwarded(time.Duration, error) {}
func (noObserver) AnsweredUnlogged(string)        {}

// withDefaults returns c with every zero-valued field set to its default.
func (c Config) withDefaults() Config {
	setDefault(&c.RaftAddr, DefaultRaftAddr)
	setDefault(&c.SnapshotThreshold, DefaultSnapshotThreshold)
	setDefault(&c.SnapshotInterval, DefaultSnapshotInterval)
	setDefault(&c.TrailingLogs, DefaultTrailingLogs)
	setDefault(&c.SnapshotRetain, DefaultSnapshotRetain)
	setDefault(&c.ApplyTimeout, DefaultApplyTimeout)
	setDefault(&c.MaxEntrySize, DefaultMaxEntrySize)
	setDefault(&c.MaxInFlight, DefaultMaxInFlight)
	setDefault(&c.MaxForwards, DefaultMaxForwards)
	setDefault(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	setDefault(&c.ElectionTimeout, DefaultElectionTimeout)
	setDefault(&c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	setDefault(&c.CommitTimeout, DefaultCommitTimeout)
	setDefault(&c.StoreOpenTimeout, DefaultStoreOpenTimeout)
	setDefault(&c.TransportTimeout, DefaultTransportTimeout)
	setDefault(&c.TransportMaxPool, DefaultTransportMaxPool)
	setDefault(&c.LeaderWait, DefaultLeaderWait)
	setDefault(&c.ReconcileInterval, DefaultReconcileInterval)
	setDefault(&c.DeadServerRemoveAfter, DefaultDeadServerRemoval)
	setDefault(&c.PromoteAfter, DefaultPromoteAfter)
	setDefault(&c.MaxPromoteLag, DefaultMaxPromoteLag)
	setDefault(&c.MinVoters, max(c.BootstrapExpect, 1))
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Observer == nil {
		c.Observer = noObserver{}
	}
	return c
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// validate checks a Config that has been through withDefaults.
func (c Config) validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("NodeID is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir is required"))
	}
	if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
		errs = append(errs, fmt.Errorf("RaftAddr: %w", err))
	}
	if c.AdvertiseAddr != "" {
		if _, err := advertiseAddr(c.AdvertiseAddr); err != nil {
			errs = append(errs, err)
		}
	}
	if c.SnapshotRetain < 1 {
		errs = append(errs, errors.New("SnapshotRetain must be at least 1"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ApplyTimeout", c.ApplyTimeout},
		{"StoreOpenTimeout", c.StoreOpenTimeout},
		{"TransportTimeout", c.TransportTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", d.name))
		}
	}
	if c.TransportMaxPool < 0 {
		errs = append(errs, errors.New("TransportMaxPool must not be negative"))
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, errors.New("BootstrapExpect must not be negative"))
	}
	if c.TLS == nil && (c.BootstrapExpect > 1 || c.Gossip != nil) {
		errs = append(errs, errors.New("a cluster of several nodes needs TLS (the cluster CA)"))
	}
	if c.Gossip != nil {
		if err := c.Gossip.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		// The Raft timing rules (lease <= heartbeat <= election, minimums)
		// are raft's; check them here so Start fails before touching disk.
		if err := raft.ValidateConfig(c.raftConfig(nil)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster: invalid config: %w", err)
	}
	return nil
}

// advertiseAddr parses an advertised host:port. Raft peers dial it, so it
// must be a concrete IP or a DNS name (kept as a name: see namedAddr).
func advertiseAddr(s string) (net.Addr, error) {
	host, ip, port, err := splitAdvertise(s)
	if err != nil {
		return nil, fmt.Errorf("AdvertiseAddr: %w", err)
	}
	if ip == nil {
		return namedAddr(net.JoinHostPort(host, strconv.Itoa(port))), nil
	}
	return &net.TCPAddr{IP: ip, Port: port}, nil
}

// raftConfig maps c onto hashicorp/raft's configuration.
func (c Config) raftConfig(logger *slog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.SnapshotInterval = c.SnapshotInterval
	rc.TrailingLogs = c.TrailingLogs
	if logger != nil {
		rc.Logger = newHCLogger(logger, "raft")
	}
	return rc
}

// hasJoinPeers reports whether the node was given gossip peers to join.
func (c *Config) hasJoinPeers() bool { return c.Gossip != nil && len(c.Gossip.Join) > 0 }
