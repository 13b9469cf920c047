package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestStartApplyRead(t *testing.T) {
	f := newCounterFSM()
	n := startNode(t, testConfig(t, t.TempDir()), f, true)

	for i, want := range []int64{5, 12} {
		resp, err := n.Apply(ctxTimeout(t, testWait), []byte([]string{"5", "7"}[i]))
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if resp != want {
			t.Fatalf("Apply response = %v, want %d", resp, want)
		}
	}
	if got := readTotal(t, n, f); got != 12 {
		t.Fatalf("total = %d, want 12", got)
	}
	if !n.IsLeader() {
		t.Fatal("IsLeader = false on a single voter")
	}
	if id, addr := n.Leader(); id != "n1" || addr != n.Addr() {
		t.Fatalf("Leader() = %q, %q; want n1, %s", id, addr, n.Addr())
	}
	s := n.Stats()
	if s.State != "Leader" || s.Term == 0 || s.NodeID != "n1" || s.LeaderID != "n1" {
		t.Fatalf("Stats = %+v", s)
	}
	if s.CommitIndex < 3 || s.AppliedIndex < 3 || s.LastLogIndex < s.CommitIndex {
		t.Fatalf("Stats indexes = %+v", s)
	}
}

func TestFSMErrorIsTheResponse(t *testing.T) {
	n := startNode(t, testConfig(t, t.TempDir()), newCounterFSM(), true)
	resp, err := n.Apply(ctxTimeout(t, testWait), []byte("fail"))
	if err != nil {
		t.Fatalf("Apply: err = %v, want nil (FSM errors are responses)", err)
	}
	if e, ok := resp.(error); !ok || !errors.Is(e, errRejected) {
		t.Fatalf("Apply response = %#v, want errRejected", resp)
	}
}

func TestRestartReplaysLog(t *testing.T) {
	dir := t.TempDir()
	f1 := newCounterFSM()
	n1 := startNode(t, testConfig(t, dir), f1, true)
	applyAll(t, n1, seq(1, 10)...)
	addr1 := n1.Addr()
	crashStop(t, n1)

	f2 := newCounterFSM()
	n2 := startNode(t, testConfig(t, dir), f2, true) // Bootstrap is set but ignored
	if got := readTotal(t, n2, f2); got != 55 {
		t.Fatalf("total after restart = %d, want 55", got)
	}
	if _, applied, restores := f2.state(); restores != 0 || applied != 10 {
		t.Fatalf("restart: applied=%d restores=%d, want 10 replayed entries and no restore", applied, restores)
	}
	if n2.Addr() == addr1 {
		t.Logf("restart reused port %s", addr1)
	}
	applyAll(t, n2, 45)
	if got := readTotal(t, n2, f2); got != 100 {
		t.Fatalf("total = %d, want 100", got)
	}
}

func TestRestartFromSnapshot(t *testing.T) {
	dir := t.TempDir()
	f1 := newCounterFSM()
	n1 := startNode(t, testConfig(t, dir), f1, true)
	applyAll(t, n1, seq(1, 10)...)
	if err := n1.Snapshot(ctxTimeout(t, testWait)); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if s := n1.Stats(); s.LastSnapshotIndex == 0 {
		t.Fatalf("no snapshot recorded: %+v", s)
	}
	applyAll(t, n1, seq(11, 15)...)
	crashStop(t, n1)

	f2 := newCounterFSM()
	n2 := startNode(t, testConfig(t, dir), f2, false)
	// The snapshot is restored before Start returns.
	if total, _, restores := f2.state(); restores != 1 || total != 55 {
		t.Fatalf("after Start: total=%d restores=%d, want the snapshot (55, 1 restore)", total, restores)
	}
	waitLeading(t, n2)
	if got := readTotal(t, n2, f2); got != 120 {
		t.Fatalf("total after restart = %d, want 120", got)
	}
	if _, applied, _ := f2.state(); applied != 5 {
		t.Fatalf("replayed %d entries, want the 5 after the snapshot", applied)
	}
}

func TestGracefulShutdownSnapshots(t *testing.T) {
	dir := t.TempDir()
	f1 := newCounterFSM()
	n1 := startNode(t, testConfig(t, dir), f1, true)
	applyAll(t, n1, seq(1, 5)...)
	if err := n1.Shutdown(ctxTimeout(t, testWait)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	f2 := newCounterFSM()
	n2 := startNode(t, testConfig(t, dir), f2, true)
	if got := readTotal(t, n2, f2); got != 15 {
		t.Fatalf("total after restart = %d, want 15", got)
	}
	if _, applied, restores := f2.state(); restores != 1 || applied != 0 {
		t.Fatalf("restart: applied=%d restores=%d, want everything from the shutdown snapshot", applied, restores)
	}
}

func TestShutdownIdempotent(t *testing.T) {
	n := startNode(t, testConfig(t, t.TempDir()), newCounterFSM(), true)
	applyAll(t, n, 1)
	watch := n.WatchLeadership(t.Context())

	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = n.Shutdown(ctxTimeout(t, testWait)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Shutdown #%d: %v", i, err)
		}
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown again: %v", err)
	}

	// The watcher saw the final false, then the close.
	var last bool
	for v := range watch {
		last = v
	}
	if last {
		t.Fatal("last leadership value before close = true")
	}
	if _, ok := <-n.WatchLeadership(t.Context()); ok {
		t.Fatal("WatchLeadership after Shutdown: channel not closed")
	}

	ctx := ctxTimeout(t, testWait)
	if _, err := n.Apply(ctx, []byte("1")); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Apply after Shutdown: %v, want ErrShutdown", err)
	}
	if err := n.Barrier(ctx); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Barrier after Shutdown: %v, want ErrShutdown", err)
	}
	if err := n.Snapshot(ctx); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Snapshot after Shutdown: %v, want ErrShutdown", err)
	}
	if _, _, err := n.WaitLeader(ctx); !errors.Is(err, ErrShutdown) {
		t.Fatalf("WaitLeader after Shutdown: %v, want ErrShutdown", err)
	}
	if n.IsLeader() {
		t.Fatal("IsLeader after Shutdown")
	}
	if s := n.Stats(); s.State != "Shutdown" {
		t.Fatalf("Stats().State = %q after Shutdown", s.State)
	}
}

func TestApplyHonoursContext(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.ApplyTimeout = 300 * time.Millisecond
	f := newCounterFSM()
	n := startNode(t, cfg, f, true)
	var once sync.Once
	unblock := func() { once.Do(func() { close(f.release) }) }
	t.Cleanup(unblock) // runs before the Shutdown cleanup

	t.Run("expired", func(t *testing.T) {
		ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
		defer cancel()
		_, err := n.Apply(ctx, []byte("1"))
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Apply with expired ctx: %v", err)
		}
	})

	// From here the FSM is stuck on a "block" entry.
	blocked := make(chan error, 1)
	go func() {
		_, err := n.Apply(context.Background(), []byte("block"))
		blocked <- err
	}()
	select {
	case <-f.blocked:
	case <-time.After(testWait):
		t.Fatal("FSM never reached the block entry")
	}

	t.Run("deadline", func(t *testing.T) {
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := n.Apply(ctx, []byte("1"))
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Apply: %v, want ErrTimeout", err)
		}
		if d := time.Since(start); d > testWait/2 {
			t.Fatalf("Apply returned after %v", d)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(20*time.Millisecond, cancel)
		_, err := n.Apply(ctx, []byte("1"))
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
			t.Fatalf("Apply: %v, want context.Canceled", err)
		}
	})
	t.Run("barrier", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		if err := n.Barrier(ctx); !errors.Is(err, ErrTimeout) {
			t.Fatalf("Barrier: %v, want ErrTimeout", err)
		}
	})
	t.Run("ApplyTimeout", func(t *testing.T) {
		start := time.Now()
		_, err := n.Apply(context.Background(), []byte("1"))
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("Apply: %v, want ErrTimeout from Config.ApplyTimeout", err)
		}
		if d := time.Since(start); d > testWait/2 {
			t.Fatalf("Apply returned after %v", d)
		}
	})

	if err := <-blocked; !errors.Is(err, ErrTimeout) {
		t.Fatalf("blocked Apply: %v, want ErrTimeout", err)
	}
	// The "block" entry timed out for its caller but was committed and
	// applied all the same: after a timeout the outcome is unknown, not a
	// failure. The entries behind it (the deadline, cancel and ApplyTimeout
	// cases) were most likely enqueued in time, so committed too; the
	// expired one was never enqueued.
	unblock()
	total := readTotal(t, n, f)
	if _, applied, _ := f.state(); applied < 1 || total > 3 || int64(applied) != total+1 {
		t.Fatalf("after unblocking: total=%d applied=%d; want the block entry plus up to 3 increments", total, applied)
	}
}

func TestNotLeader(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.BootstrapExpect = 0
	cfg.LeaderWait = 50 * time.Millisecond
	n := startNode(t, cfg, newCounterFSM(), false)

	ctx := ctxTimeout(t, testWait)
	_, err := n.Apply(ctx, []byte("1"))
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Apply on a follower: %v, want ErrNotLeader", err)
	}
	var nle *NotLeaderError
	if !errors.As(err, &nle) || nle.LeaderAddr != "" || nle.LeaderID != "" {
		t.Fatalf("Apply error = %#v, want *NotLeaderError with no known leader", err)
	}
	if !errors.Is(err, raft.ErrNotLeader) {
		t.Fatalf("Apply error does not wrap raft.ErrNotLeader: %v", err)
	}
	if err := n.Barrier(ctx); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Barrier on a follower: %v, want ErrNotLeader", err)
	}
	if err := n.Snapshot(ctx); !errors.Is(err, ErrNothingToSnapshot) {
		t.Fatalf("Snapshot with nothing applied: %v, want ErrNothingToSnapshot", err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, _, err := n.WaitLeader(short); !errors.Is(err, ErrTimeout) {
		t.Fatalf("WaitLeader without a cluster: %v, want ErrTimeout", err)
	}
	if n.IsLeader() {
		t.Fatal("unbootstrapped node is leader")
	}
	if n.Stats().State != "Follower" {
		t.Fatalf("state = %s", n.Stats().State)
	}
}

func TestNotLeaderErrorMessage(t *testing.T) {
	e := &NotLeaderError{LeaderID: "n2", LeaderAddr: "10.0.0.2:7000"}
	if !strings.Contains(e.Error(), "10.0.0.2:7000") || !errors.Is(e, ErrNotLeader) {
		t.Fatalf("NotLeaderError = %q", e.Error())
	}
}

func TestSnapshotPolicyFromConfig(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.SnapshotThreshold = 5
	cfg.SnapshotInterval = 10 * time.Millisecond
	cfg.TrailingLogs = 2
	n := startNode(t, cfg, newCounterFSM(), true)

	rc := n.raft.ReloadableConfig()
	if rc.SnapshotThreshold != 5 || rc.SnapshotInterval != 10*time.Millisecond || rc.TrailingLogs != 2 {
		t.Fatalf("raft config = %+v", rc)
	}
	applyAll(t, n, seq(1, 20)...)

	deadline := time.Now().Add(testWait)
	for {
		s := n.Stats()
		first, err := n.st.logDB.FirstIndex()
		if err != nil {
			t.Fatal(err)
		}
		// An automatic snapshot was taken and the log compacted behind it,
		// keeping TrailingLogs entries.
		if s.LastSnapshotIndex >= 5 && first > 1 && first >= s.LastSnapshotIndex-2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no automatic snapshot/compaction: stats %+v, first log index %d", s, first)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	startNode(t, testConfig(t, dir), newCounterFSM(), false)
	cfg := testConfig(t, dir)
	cfg.StoreOpenTimeout = 50 * time.Millisecond
	n, err := Start(ctxTimeout(t, testWait), cfg, newCounterFSM())
	if err == nil {
		n.Shutdown(context.Background())
		t.Fatal("second Start on the same data dir succeeded")
	}
	if !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second Start: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Start(canceled, testConfig(t, t.TempDir()), newCounterFSM()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with cancelled ctx: %v", err)
	}
	if _, err := Start(t.Context(), testConfig(t, t.TempDir()), nil); err == nil {
		t.Fatal("Start with nil FSM succeeded")
	}
	// A port in use: the transport fails and the stores are released.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.RaftAddr = l.Addr().String()
	cfg.TLS = testTLS(t, newTestCA(t), "n1")
	if _, err := Start(t.Context(), cfg, newCounterFSM()); err == nil {
		t.Fatal("Start on a busy port succeeded")
	}
	startNode(t, testConfig(t, dir), newCounterFSM(), true) // the files are not left locked
}

func TestWatchLeadership(t *testing.T) {
	n := startNode(t, testConfig(t, t.TempDir()), newCounterFSM(), false)
	ctx, cancel := context.WithCancel(t.Context())
	w := n.WatchLeadership(ctx)
	timeout := time.After(testWait)
	for leading := false; !leading; {
		select {
		case leading = <-w:
		case <-timeout:
			t.Fatal("no leadership notification")
		}
	}
	// A late watcher gets the current state at once.
	if v := <-n.WatchLeadership(t.Context()); !v {
		t.Fatal("late watcher got false")
	}
	cancel()
	select {
	case _, ok := <-w:
		for ok {
			_, ok = <-w
		}
	case <-time.After(testWait):
		t.Fatal("watch channel not closed after ctx cancel")
	}
}

func TestBootstrapOnlyWhenNew(t *testing.T) {
	dir := t.TempDir()
	f := newCounterFSM()
	n := startNode(t, testConfig(t, dir), f, true)
	applyAll(t, n, 1)
	if err := n.Shutdown(ctxTimeout(t, testWait)); err != nil {
		t.Fatal(err)
	}
	// A restart with BootstrapExpect still 1 must not write a second
	// configuration: the node comes back with its log and leads again.
	f2 := newCounterFSM()
	n2 := startNode(t, testConfig(t, dir), f2, true)
	if got := readTotal(t, n2, f2); got != 1 {
		t.Fatalf("total after restart = %d, want 1", got)
	}
	if s := n2.Stats(); s.LastLogIndex < 3 {
		t.Fatalf("log after restart: %+v", s)
	}
}

func TestShutdownDuringApplies(t *testing.T) {
	dir := t.TempDir()
	f := newCounterFSM()
	n := startNode(t, testConfig(t, dir), f, true)

	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := int64(0)
	for range 4 {
		wg.Go(func() {
			for range 200 {
				_, err := n.Apply(ctxTimeout(t, testWait), []byte("1"))
				switch {
				case err == nil:
					mu.Lock()
					acked++
					mu.Unlock()
				case errors.Is(err, ErrShutdown), errors.Is(err, ErrLeadershipLost):
					return
				default:
					t.Errorf("Apply during shutdown: %v", err)
					return
				}
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	if err := n.Shutdown(ctxTimeout(t, testWait)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wg.Wait()

	// Every acknowledged entry survives the restart.
	f2 := newCounterFSM()
	n2 := startNode(t, testConfig(t, dir), f2, true)
	if got := readTotal(t, n2, f2); got < acked {
		t.Fatalf("total after restart = %d, but %d applies were acknowledged", got, acked)
	}
}

// TestRestartReapsUnfinishedSnapshots: a snapshot a crash left half
// written (its ".tmp" folder, as the file snapshot store leaves it under
// kill -9) is removed at the next start, and the last complete snapshot
// still restores.
func TestRestartReapsUnfinishedSnapshots(t *testing.T) {
	dir := t.TempDir()
	n1 := startNode(t, testConfig(t, dir), newCounterFSM(), true)
	applyAll(t, n1, seq(1, 10)...)
	if err := n1.Snapshot(ctxTimeout(t, testWait)); err != nil {
		t.Fatal(err)
	}
	crashStop(t, n1)

	// What a crash in the middle of the next snapshots leaves behind.
	store, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		sink, err := store.Create(raft.SnapshotVersionMax, uint64(20+i), 9, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sink.Write([]byte("half a snapshot")); err != nil {
			t.Fatal(err)
		}
	}
	tmp := func() []string {
		entries, _ := os.ReadDir(filepath.Join(dir, snapshotsDir))
		var out []string
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".tmp") {
				out = append(out, e.Name())
			}
		}
		return out
	}
	if len(tmp()) != 3 {
		t.Fatalf("setup: %v", tmp())
	}

	f2 := newCounterFSM()
	n2 := startNode(t, testConfig(t, dir), f2, true)
	if left := tmp(); len(left) != 0 {
		t.Fatalf("unfinished snapshots left after restart: %v", left)
	}
	if got := readTotal(t, n2, f2); got != 55 {
		t.Fatalf("total after restart = %d, want the complete snapshot's 55", got)
	}
}
