package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mimihub/mimi-hub/internal/devca"
)

// errRejected is the test FSM's own rejection, returned as a response.
var errRejected = errors.New("counter: rejected")

// counterFSM is a deterministic test FSM: each command is a decimal delta
// added to a running total (the response is the new total), "fail" is
// rejected with errRejected, and "block" waits for release.
type counterFSM struct {
	mu        sync.Mutex
	total     int64
	lastIndex uint64
	applied   int // Apply calls since construction, replays included
	restores  int

	blocked chan struct{} // signalled when a "block" entry starts waiting
	release chan struct{} // "block" waits on it
}

func newCounterFSM() *counterFSM {
	return &counterFSM{blocked: make(chan struct{}, 1), release: make(chan struct{})}
}

func (f *counterFSM) Apply(l *raft.Log) any {
	if string(l.Data) == "block" {
		select {
		case f.blocked <- struct{}{}:
		default:
		}
		<-f.release
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied++
	f.lastIndex = l.Index
	switch string(l.Data) {
	case "fail":
		return errRejected
	case "block":
		return f.total
	}
	d, err := strconv.ParseInt(string(l.Data), 10, 64)
	if err != nil {
		return err
	}
	f.total += d
	return f.total
}

type counterState struct {
	Total     int64
	LastIndex uint64
}

func (f *counterFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return counterSnapshot{f.total, f.lastIndex}, nil
}

func (f *counterFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var s counterState
	if err := json.NewDecoder(rc).Decode(&s); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.total, f.lastIndex = s.Total, s.LastIndex
	f.restores++
	return nil
}

func (f *counterFSM) state() (total int64, applied, restores int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.total, f.applied, f.restores
}

type counterSnapshot counterState

func (s counterSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(counterState(s)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (counterSnapshot) Release() {}

// testWriter sends log output to t.Log until the test's cleanups finish.
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { // registered first, so it runs last
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testWait bounds every wait in these tests. It only matters when a test
// fails or the machine is badly overloaded; the tests normally take
// milliseconds per step.
const testWait = 30 * time.Second

// testConfig is a bootstrapping single voter on loopback with fast timers.
func testConfig(t testing.TB, dir string) Config {
	return Config{
		NodeID:             "n1",
		DataDir:            dir,
		RaftAddr:           "127.0.0.1:0",
		BootstrapExpect:    1,
		HeartbeatTimeout:   50 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond, // a candidate must persist its vote in time
		LeaderLeaseTimeout: 50 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		ApplyTimeout:       testWait,
		StoreOpenTimeout:   200 * time.Millisecond,
		Logger:             testLogger(t),
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// startNode starts a node, shuts it down at the end of the test, and (if
// wantLeader) waits until it leads.
func startNode(t testing.TB, cfg Config, fsm raft.FSM, wantLeader bool) *Node {
	t.Helper()
	n, err := Start(ctxTimeout(t, testWait), cfg, fsm)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	if wantLeader {
		waitLeading(t, n)
	}
	return n
}

// waitLeading waits (bounded) until n is the leader.
func waitLeading(t testing.TB, n *Node) {
	t.Helper()
	ctx := ctxTimeout(t, testWait)
	for leading := range n.WatchLeadership(ctx) {
		if leading {
			return
		}
	}
	t.Fatalf("node did not become leader: %+v", n.Stats())
}

// crashStop stops n without the shutdown snapshot, leaving the log to be
// replayed, as after a crash.
func crashStop(t testing.TB, n *Node) {
	t.Helper()
	n.shutdownOnce.Do(func() {
		close(n.stopping)
		n.shutdown(context.Background(), false)
	})
	<-n.stopped
	if n.shutdownErr != nil {
		t.Fatalf("crash stop: %v", n.shutdownErr)
	}
}

// applyAll applies each delta in order and checks the running totals.
func applyAll(t testing.TB, n *Node, deltas ...int64) {
	t.Helper()
	for _, d := range deltas {
		if _, err := n.Apply(ctxTimeout(t, testWait), []byte(strconv.FormatInt(d, 10))); err != nil {
			t.Fatalf("Apply(%d): %v", d, err)
		}
	}
}

// readTotal does a linearizable read of the counter.
func readTotal(t testing.TB, n *Node, f *counterFSM) int64 {
	t.Helper()
	if err := n.Barrier(ctxTimeout(t, testWait)); err != nil {
		t.Fatalf("Barrier: %v", err)
	}
	total, _, _ := f.state()
	return total
}

func seq(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// testTLS issues a node certificate from a fresh cluster CA.
func testTLS(t testing.TB, ca *devca.CA, id string) *TLS {
	t.Helper()
	cert, err := ca.Issue(id + ".cluster.test")
	if err != nil {
		t.Fatal(err)
	}
	return &TLS{Certificate: cert, Roots: ca.Pool()}
}

func newTestCA(t testing.TB) *devca.CA {
	t.Helper()
	ca, err := devca.New()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}
