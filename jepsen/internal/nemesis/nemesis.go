package nemesis

import (
	"context"
	"net/netip"
	"slices"
	"sync"
)

// Node is a cluster node as the nemeses see it.
type Node struct {
	// ID is the node's Raft id.
	ID string
	// Namespace is the network namespace the node runs in.
	Namespace string
	// Addr is the node's address on the test network.
	Addr netip.Addr
}

// Cluster is what the nemeses act on.
type Cluster interface {
	// Nodes returns the nodes that are meant to be members now (running,
	// killed or paused).
	Nodes() []Node
	// Leader returns the id of the current leader as the cluster reports
	// it.
	Leader(ctx context.Context) (string, error)
	// Kill sends SIGKILL to a node's process and waits for it to die.
	Kill(ctx context.Context, id string) error
	// Start starts a killed node again on its data.
	Start(ctx context.Context, id string) error
	// Pause and Resume send SIGSTOP and SIGCONT.
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
}

// Members is the membership part of a cluster (the membership nemesis).
type Members interface {
	Cluster
	// Add starts a new node on a spare host, joining the cluster, and
	// returns its id.
	Add(ctx context.Context) (string, error)
	// Remove makes a node leave gracefully and stops it.
	Remove(ctx context.Context, id string) error
	// Replace kills a node for good (its data is wiped) and starts a fresh
	// node in its place, joining the cluster; it returns the new id.
	Replace(ctx context.Context, id string) (string, error)
	// Spares is how many more nodes Add can start.
	Spares() int
	// Settle waits until the cluster's voters are exactly its members:
	// a joined node promoted, a departed or dead one removed.
	Settle(ctx context.Context) error
}

// Loader drives writes through the cluster (the snapshot nemesis).
type Loader interface {
	// Load makes n writes through the nodes but those in avoid (a paused
	// node would only make the writes time out).
	Load(ctx context.Context, n int, avoid []string) error
	// CaughtUp waits until node id has applied everything the leader
	// committed.
	CaughtUp(ctx context.Context, id string) error
	// Progress returns node id's applied index and the index of its
	// latest snapshot.
	Progress(ctx context.Context, id string) (applied, snapshot uint64, err error)
}

// Reporter is a nemesis that says, after healing, how its fault played
// out (the snapshot nemesis: whether the node caught up by snapshot).
type Reporter interface {
	Result() string
}

// Fault describes an injected fault.
type Fault struct {
	// Targets are the nodes affected.
	Targets []string
	// Detail says more (the partition's sides, the loss rate).
	Detail string
}

// Nemesis injects one kind of fault.
type Nemesis interface {
	// Kind names the fault ("kill", "partition", ...).
	Kind() string
	// Start injects the fault.
	Start(ctx context.Context) (Fault, error)
	// Stop heals it; without a fault in force it does nothing.
	Stop(ctx context.Context) error
}

// Window is the time a fault was in force, in the history's clock
// (nanoseconds since the run started). End is 0 while it lasts.
type Window struct {
	Kind    string   `json:"kind"`
	Targets []string `json:"targets"`
	Detail  string   `json:"detail,omitempty"`
	Start   int64    `json:"start"`
	End     int64    `json:"end"`
	// Result is what the nemesis observed after healing, if it says.
	Result string `json:"result,omitempty"`
	// Error is set when the fault could not be injected or healed.
	Error string `json:"error,omitempty"`
}

// Log records fault windows. It is safe for concurrent use.
type Log struct {
	now     func() int64
	mu      sync.Mutex
	windows []Window
}

// NewLog returns a log reading time from now.
func NewLog(now func() int64) *Log { return &Log{now: now} }

// Begin records the start of a fault and returns its index.
func (l *Log) Begin(kind string, f Fault) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.windows = append(l.windows, Window{Kind: kind, Targets: slices.Clone(f.Targets), Detail: f.Detail, Start: l.now()})
	return len(l.windows) - 1
}

// End records the end of window i, with the error of healing if any and
// what the nemesis observed.
func (l *Log) End(i int, err error, result string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.windows[i].End = l.now()
	l.windows[i].Result = result
	if err != nil {
		l.windows[i].Error = err.Error()
	}
}

// Failed records a fault that could not be injected.
func (l *Log) Failed(kind string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.now()
	l.windows = append(l.windows, Window{Kind: kind, Start: t, End: t, Error: err.Error()})
}

// Windows returns a copy of the windows.
func (l *Log) Windows() []Window {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := slices.Clone(l.windows)
	for i := range out {
		out[i].Targets = slices.Clone(out[i].Targets)
	}
	return out
}

func ids(nodes []Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.ID
	}
	return out
}
