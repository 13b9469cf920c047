package main

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/mimihub/mimi-hub/internal/systemtest"
)

// Soak limits.
const (
	maxSoak = 24 * time.Hour
	// soakFirstIP is where the soak's nodes listen: 127.0.0.51 to .53.
	soakFirstIP = 51
)

// soakNode is one node's footprint at a report.
type soakNode struct {
	ID     string `json:"id"`
	Leader bool   `json:"leader"`
	// RSS is the process's resident memory, Anon the part that is not
	// mapped files (heap and stacks; the rest is mostly the BoltDB log
	// store's pages, which the kernel may reclaim); -1 where /proc cannot
	// say.
	RSS  int64 `json:"rss_bytes"`
	Anon int64 `json:"rss_anon_bytes"`
	// Snapshot is the size of its newest Raft snapshot, RaftLog of its
	// log store (logs.db).
	Snapshot int64 `json:"snapshot_bytes"`
	RaftLog  int64 `json:"raft_log_bytes"`
	// RoomLogs is what its state machine keeps of room messages for
	// local readers (retention bounds it).
	RoomLogs int64 `json:"room_log_bytes"`
}

// soakRow is one report: the load since the last report and every node's
// footprint now.
type soakRow struct {
	At         time.Duration `json:"at_ns"` // since the load began
	Ops        int           `json:"ops"`
	Errors     int           `json:"errors"`
	OpsPerSec  float64       `json:"ops_per_s"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	Nodes      []soakNode    `json:"nodes"`
	FirstError string        `json:"first_error,omitempty"`
}

// soakMeter collects the senders' results between two reports.
type soakMeter struct {
	mu       sync.Mutex
	lat      []time.Duration
	errors   int
	firstErr error
}

func (m *soakMeter) record(d time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.errors++
		if m.firstErr == nil {
			m.firstErr = err
		}
		return
	}
	m.lat = append(m.lat, d)
}

// take returns what was collected since the last take and starts anew.
func (m *soakMeter) take() ([]time.Duration, int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	lat, errs, first := m.lat, m.errors, m.firstErr
	m.lat, m.errors, m.firstErr = make([]time.Duration, 0, len(lat)), 0, nil
	return lat, errs, first
}

// benchSoak runs the messages load against a 3-node cluster of mimi-hub
// processes for o.soak and reports throughput and every node's resident
// memory, newest snapshot, Raft log and room logs every o.report.
func (e *env) benchSoak(ctx context.Context, o *benchOptions) error {
	const domain = "soak.example"
	// The load is the provider's capacity, not what one client may send.
	flags := append([]string{"-client-requests-per-second", "-1", "-client-bytes-per-second", "-1"}, o.hubArgs...)
	h, err := newHubProcesses(o, "soak", domain, soakFirstIP, flags, nil)
	if err != nil {
		return err
	}
	defer h.close()
	p, bin, caDir, fail := h.p, h.bin, h.caDir, h.fail
	if err := h.start(ctx); err != nil {
		return err
	}

	b := &bencher{e: e, o: o, mode: benchMessages, ca: filepath.Join(caDir, "dev-ca.pem")}
	defer b.closeAll()
	var rnd [4]byte
	if _, err := crand.Read(rnd[:]); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	b.prefix = "soak" + hex.EncodeToString(rnd[:])
	for _, n := range p.Nodes() {
		b.servers = append(b.servers, "https://"+n.ClientAddr)
	}
	n := o.senders[0]
	e.printf("target:  3 mimi-hub processes (%s), %s on 127.0.0.%d-%d, flags: %s\n", bin, domain, soakFirstIP, soakFirstIP+2, strings.Join(flags, " "))
	e.printf("load:    %d senders spread over the 3 nodes: %s\n", n, o.modeDescription(benchMessages))
	e.printf("soak:    %s, a report every %s; GOMAXPROCS %d (senders and nodes share this machine's %d CPUs)\n\n", o.soak, o.report, runtime.GOMAXPROCS(0), runtime.NumCPU())
	if err := e.emit(map[string]any{"target": "soak", "binary": bin, "flags": flags, "senders": n, "soak_ns": o.soak, "report_ns": o.report}); err != nil {
		return err
	}
	if !e.json {
		fmt.Fprintf(e.stderr, "mimictl: soak: setting up %d senders\n", n)
	}
	ops, err := b.setup(ctx, n)
	if err != nil {
		return fail(err)
	}

	runCtx, stop := context.WithTimeout(ctx, o.soak)
	defer stop()
	meter := &soakMeter{}
	var wg sync.WaitGroup
	for _, op := range ops {
		wg.Go(func() {
			for runCtx.Err() == nil {
				t0 := time.Now()
				_, err := op(runCtx)
				if err != nil && runCtx.Err() != nil {
					return
				}
				meter.record(time.Since(t0), err)
				if err != nil {
					time.Sleep(benchErrorPause)
				}
			}
		})
	}
	var rows []soakRow
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	if !e.json {
		fmt.Fprintln(tw, "at\tops/s\terrors\tp50\tp99\tRSS MiB (n1 n2 n3)\tanon MiB\tsnapshot MiB\tRaft log MiB\troom logs MiB\t")
		tw.Flush()
	}
	start, last := time.Now(), time.Now()
	tick := time.NewTicker(o.report)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-tick.C:
		case <-runCtx.Done():
			done = true
			wg.Wait()
		}
		now := time.Now()
		interval := now.Sub(last)
		last = now
		if done && interval < o.report/2 {
			break // a stub of an interval says nothing
		}
		lat, errs, first := meter.take()
		row := soakRow{At: now.Sub(start).Round(time.Second), Ops: len(lat), Errors: errs, OpsPerSec: float64(len(lat)) / interval.Seconds()}
		if first != nil {
			row.FirstError = first.Error()
		}
		slices.Sort(lat)
		row.P50, row.P99 = percentile(lat, 50), percentile(lat, 99)
		row.Nodes = soakNodes(ctx, p)
		rows = append(rows, row)
		if err := e.emit(row); err != nil {
			return err
		}
		if !e.json {
			fmt.Fprintf(tw, "%s\t%.0f\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", row.At, row.OpsPerSec, row.Errors, roundDuration(row.P50), roundDuration(row.P99),
				nodeColumn(row.Nodes, func(n soakNode) int64 { return n.RSS }), nodeColumn(row.Nodes, func(n soakNode) int64 { return n.Anon }),
				nodeColumn(row.Nodes, func(n soakNode) int64 { return n.Snapshot }),
				nodeColumn(row.Nodes, func(n soakNode) int64 { return n.RaftLog }), nodeColumn(row.Nodes, func(n soakNode) int64 { return n.RoomLogs }))
			tw.Flush()
		}
	}
	if e.json || len(rows) == 0 {
		return nil
	}
	first, final := rows[0], rows[len(rows)-1]
	maxOf := func(r soakRow, f func(soakNode) int64) int64 {
		var m int64
		for _, n := range r.Nodes {
			m = max(m, f(n))
		}
		return m
	}
	rss := func(n soakNode) int64 { return n.RSS }
	anon := func(n soakNode) int64 { return n.Anon }
	snap := func(n soakNode) int64 { return n.Snapshot }
	fmt.Fprintf(e.stdout, "\nthroughput: first report %.0f ops/s, last %.0f ops/s (%.0f%% of the first)\n", first.OpsPerSec, final.OpsPerSec, 100*final.OpsPerSec/max(first.OpsPerSec, 1))
	mid := rows[len(rows)/2]
	fmt.Fprintf(e.stdout, "largest RSS: %s MiB at %s, %s MiB at %s (half way), %s MiB at %s\n", mib(maxOf(first, rss)), first.At, mib(maxOf(mid, rss)), mid.At, mib(maxOf(final, rss)), final.At)
	fmt.Fprintf(e.stdout, "largest anonymous RSS: %s MiB at %s, %s MiB at %s (half way), %s MiB at %s\n", mib(maxOf(first, anon)), first.At, mib(maxOf(mid, anon)), mid.At, mib(maxOf(final, anon)), final.At)
	fmt.Fprintf(e.stdout, "largest snapshot: %s MiB at %s, %s MiB at %s (half way), %s MiB at %s\n", mib(maxOf(first, snap)), first.At, mib(maxOf(mid, snap)), mid.At, mib(maxOf(final, snap)), final.At)
	var errs int
	for _, r := range rows {
		errs += r.Errors
		if r.FirstError != "" {
			fmt.Fprintf(e.stdout, "at %s, first error: %s\n", r.At, r.FirstError)
		}
	}
	fmt.Fprintf(e.stdout, "errors: %d\n", errs)
	return nil
}

// soakNodes measures every node.
func soakNodes(ctx context.Context, p *systemtest.Provider) []soakNode {
	var out []soakNode
	for _, n := range p.Nodes() {
		rss, anon := rssOf(n.Pid())
		sn := soakNode{ID: n.ID, RSS: rss, Anon: anon, RaftLog: fileSize(filepath.Join(n.DataDir, "raft", "logs.db")), Snapshot: newestSnapshot(filepath.Join(n.DataDir, "raft", "snapshots"))}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if st, err := n.Status(sctx); err == nil {
			sn.Leader, sn.RoomLogs = st.Raft.Leader, st.Counts.LogBytes
		}
		cancel()
		out = append(out, sn)
	}
	return out
}

// rssOf reads a process's resident memory and its anonymous part from
// /proc (-1 when unknown).
func rssOf(pid int) (rss, anon int64) {
	rss, anon = -1, -1
	if pid == 0 {
		return rss, anon
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return rss, anon
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "RssAnon") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(val), "kB")), 10, 64)
		if err != nil {
			continue
		}
		if key == "VmRSS" {
			rss = kb << 10
		} else {
			anon = kb << 10
		}
	}
	return rss, anon
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return st.Size()
}

// newestSnapshot returns the size of the newest complete snapshot in a
// file snapshot store's folder (0: none yet). Names are term-index-time,
// so the newest sorts last within a term; compare by modification time.
func newestSnapshot(dir string) int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var newest time.Time
	var size int64
	for _, en := range entries {
		if !en.IsDir() || strings.HasSuffix(en.Name(), ".tmp") {
			continue
		}
		st, err := os.Stat(filepath.Join(dir, en.Name(), "state.bin"))
		if err != nil {
			continue
		}
		if st.ModTime().After(newest) {
			newest, size = st.ModTime(), st.Size()
		}
	}
	return size
}

func mib(b int64) string {
	if b < 0 {
		return "?"
	}
	return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64)
}

// nodeColumn formats one figure of every node, the leader's marked *.
func nodeColumn(nodes []soakNode, f func(soakNode) int64) string {
	var parts []string
	for _, n := range nodes {
		s := mib(f(n))
		if n.Leader {
			s += "*"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}
