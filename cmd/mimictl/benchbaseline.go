package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/internal/freeport"
	"github.com/mimihub/mimi-hub/internal/systemtest"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// The side-by-side mode (bench -baseline) measures the provider and raw
// Raft on the same machine in the same run: three mimi-hub processes on
// 127.0.0.61-63, three baseline Raft processes (this executable's hidden
// bench-raft-node command: hashicorp/raft on the provider's own stores
// and timing, with a state machine that does nothing) on 127.0.0.64-66,
// and, for fanout, fake peer providers on 127.0.0.67. Levels alternate
// between them, so a machine shared with other work slows both alike.
const (
	sideFirstIP     = 61
	sideRaftFirstIP = 64
	sidePeersIP     = "127.0.0.67"
	// benchFanout is the side-by-side mode that fans messages out to fake
	// peer providers.
	benchFanout = "fanout"
	// sideDrainLimit bounds the wait for the peers to receive a fanout
	// level's messages.
	sideDrainLimit = 2 * time.Minute
	// maxPutBody bounds a baseline put.
	maxPutBody = 1 << 20
)

// What each side-by-side row measures.
const (
	sideRaft              = "raw raft"
	sideMessagesLeader    = "messages via leader"
	sideMessagesFollowers = "messages via followers"
	sideCommitsLeader     = "commits via leader"
	sideCommitsFollowers  = "commits via followers"
)

// sideRow is one side-by-side level.
type sideRow struct {
	Pass    int    `json:"pass"`
	Senders int    `json:"senders"`
	What    string `json:"what"`
	benchRow
	// VsRaft is OpsPerSec over the raw Raft row of the same pass and
	// senders; Vs over the row named VsWhat (the ratio a goal is about).
	VsRaft float64 `json:"vs_raw_raft"`
	VsWhat string  `json:"vs_what,omitempty"`
	Vs     float64 `json:"vs,omitempty"`
}

// fanoutRow is one fanout level: senders' messages fanned out to peers
// fake providers, each with a member in every room.
type fanoutRow struct {
	Pass  int `json:"pass"`
	Peers int `json:"peers"`
	benchRow
	// Drain is how long after the senders stopped the last peer received
	// the last message; Sustained is Ops over the level and the drain:
	// the rate at which messages reached every peer.
	Drain     time.Duration `json:"drain_ns"`
	Sustained float64       `json:"sustained_ops_per_s"`
	// Entries is how many Raft log entries the level appended (messages,
	// delivery records, everything), EntriesPerOp that over Ops.
	Entries      uint64  `json:"raft_entries"`
	EntriesPerOp float64 `json:"raft_entries_per_op"`
	// PerRequest is the messages a fanout request carried on average.
	PerRequest float64 `json:"messages_per_request"`
	// VsOnePeer is Sustained over the 1-peer row of the same pass.
	VsOnePeer float64 `json:"vs_one_peer,omitempty"`
}

// benchSide runs the side-by-side mode.
func (e *env) benchSide(ctx context.Context, o *benchOptions) error {
	const domain = "side.example"
	fanout := slices.Contains(o.modes, benchFanout)
	var peers *fakePeers
	withPeers := func(caDir string) (map[string]string, error) {
		if !fanout {
			return nil, nil
		}
		ca, err := devca.LoadOrCreate(caDir)
		if err != nil {
			return nil, err
		}
		if peers, err = startFakePeers(sidePeersIP, maxInt(o.peers), ca); err != nil {
			return nil, err
		}
		return peers.peerMap(), nil
	}
	flags := append([]string{"-client-requests-per-second", "-1", "-client-bytes-per-second", "-1", "-no-account-rate-limits"}, o.hubArgs...)
	h, err := newHubProcesses(o, "baseline", domain, sideFirstIP, flags, withPeers)
	if err != nil {
		return err
	}
	defer h.close()
	if peers != nil {
		defer peers.close()
	}
	if err := h.start(ctx); err != nil {
		return err
	}
	raw, err := startBaselineNodes(ctx, h.dir, h.caDir, e.verbose)
	if err != nil {
		return err
	}
	defer raw.close()

	b := &bencher{e: e, o: o, ca: filepath.Join(h.caDir, "dev-ca.pem")}
	defer b.closeAll()
	var rnd [4]byte
	if _, err := crand.Read(rnd[:]); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	runPrefix := "side" + hex.EncodeToString(rnd[:])
	e.printf("target:  3 mimi-hub processes (%s) on 127.0.0.%d-%d, flags: %s\n", h.bin, sideFirstIP, sideFirstIP+2, strings.Join(flags, " "))
	e.printf("         3 raw Raft processes (hashicorp/raft, the provider's raft-boltdb/v2 stores and timing, a state machine that does nothing,\n")
	e.printf("         %d-byte puts over HTTPS to the leader) on 127.0.0.%d-%d\n", o.putSize, sideRaftFirstIP, sideRaftFirstIP+2)
	if fanout {
		e.printf("         fake peer providers peer1-%d.example on %s (fanout)\n", maxInt(o.peers), peers.addr)
	}
	e.printf("levels:  %s senders, %d pass(es), each level %s; GOMAXPROCS %d on %d CPUs\n\n", joinInts(o.senders), o.passes, o.duration, runtime.GOMAXPROCS(0), runtime.NumCPU())
	if err := e.emit(map[string]any{"target": "side-by-side", "binary": h.bin, "flags": flags, "senders": o.senders, "modes": o.modes, "peers": o.peers, "passes": o.passes, "duration_ns": o.duration}); err != nil {
		return err
	}
	var rows []sideRow
	var frows []fanoutRow
	progress := func(format string, args ...any) {
		if !e.json {
			fmt.Fprintf(e.stderr, "mimictl: "+format+"\n", args...)
		}
	}
	for pass := 1; pass <= o.passes && ctx.Err() == nil; pass++ {
		// Every pass registers senders and rooms of its own.
		b.prefix = fmt.Sprintf("%sp%d", runPrefix, pass)
		for _, n := range o.senders {
			var rawRow sideRow
			for _, what := range o.sideTargets() {
				progress("pass %d: %d senders: %s", pass, n, what)
				var row benchRow
				var err error
				if what == sideRaft {
					row, err = b.rawLevel(ctx, raw, n)
				} else {
					row, err = b.hubLevel(ctx, h.p, what, n)
				}
				if err != nil {
					e.printSide(rows, frows, o)
					return h.fail(err)
				}
				sr := sideRow{Pass: pass, Senders: n, What: what, benchRow: row}
				if what == sideRaft {
					rawRow = sr
				}
				sr.VsRaft = ratio(sr.OpsPerSec, rawRow.OpsPerSec)
				if ref := goalReference(what); ref != "" {
					for _, r := range rows {
						if r.Pass == pass && r.Senders == n && r.What == ref {
							sr.VsWhat, sr.Vs = ref, ratio(sr.OpsPerSec, r.OpsPerSec)
						}
					}
				}
				rows = append(rows, sr)
				if err := e.emit(sr); err != nil {
					return err
				}
			}
		}
		if fanout {
			var one float64
			for _, p := range o.peers {
				progress("pass %d: fanout to %d peers, %d senders", pass, p, o.fanoutSenders)
				fr, err := b.fanoutLevel(ctx, h.p, peers, p)
				if err != nil {
					e.printSide(rows, frows, o)
					return h.fail(err)
				}
				fr.Pass = pass
				if p == 1 {
					one = fr.Sustained
				}
				fr.VsOnePeer = ratio(fr.Sustained, one)
				frows = append(frows, fr)
				if err := e.emit(fr); err != nil {
					return err
				}
			}
		}
	}
	return e.printSide(rows, frows, o)
}

// printSide prints the side-by-side tables (nothing with -json).
func (e *env) printSide(rows []sideRow, frows []fanoutRow, o *benchOptions) error {
	if e.json {
		return nil
	}
	if len(rows) > 0 {
		if err := printSideTable(e, rows); err != nil {
			return err
		}
	}
	if len(frows) > 0 {
		e.printf("\nfanout: %d senders in rooms of %d, each room with one member at every peer; sustained = messages / (level + time until every peer had every message)\n", o.fanoutSenders, o.roomSize)
		return printFanoutTable(e, frows)
	}
	return nil
}

// sideTargets lists the rows of one senders level, in the order they run.
func (o *benchOptions) sideTargets() []string {
	out := []string{sideRaft}
	if slices.Contains(o.modes, benchMessages) {
		out = append(out, sideMessagesLeader, sideMessagesFollowers)
	}
	if slices.Contains(o.modes, benchCommits) {
		out = append(out, sideCommitsLeader, sideCommitsFollowers)
	}
	return out
}

// goalReference names the row a row's goal ratio divides by.
func goalReference(what string) string {
	switch what {
	case sideMessagesFollowers, sideCommitsLeader:
		return sideMessagesLeader
	case sideCommitsFollowers:
		return sideCommitsLeader
	}
	return ""
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

func maxInt(ns []int) int {
	m := 0
	for _, n := range ns {
		m = max(m, n)
	}
	return m
}

// hubLevel measures one provider row: what says the mode and route.
func (b *bencher) hubLevel(ctx context.Context, p *systemtest.Provider, what string, n int) (benchRow, error) {
	lctx, cancel := context.WithTimeout(ctx, failoverLimit)
	leader, err := p.WaitLeader(lctx)
	cancel()
	if err != nil {
		return benchRow{}, err
	}
	b.servers = nil
	followers := what == sideMessagesFollowers || what == sideCommitsFollowers
	for _, node := range p.Nodes() {
		if (node == leader) != followers {
			b.servers = append(b.servers, "https://"+node.ClientAddr)
		}
	}
	b.mode, b.via = benchMessages, viaLeader
	if what == sideCommitsLeader || what == sideCommitsFollowers {
		b.mode = benchCommits
	}
	if followers {
		b.via = viaFollowers
	}
	b.serverPIDs = nil
	for _, node := range p.Nodes() {
		b.serverPIDs = append(b.serverPIDs, node.Pid())
	}
	// The leader's last log index as the measured part starts: the
	// level's Raft entries per operation.
	var firstIndex uint64
	var statusErr error
	level := b.levels + 1 // the number setup gives the level
	profiles := hubProfiles{prefix: b.o.hubProfiles, duration: b.o.duration}
	b.onMeasure = func() {
		if st, err := leader.Status(ctx); err != nil {
			statusErr = err
		} else {
			firstIndex = st.Raft.LastIndex
		}
		profiles.start(ctx, p, leader, level, what, n)
	}
	row, err := b.level(ctx, n)
	b.closeAll()
	if err == nil {
		err = profiles.wait()
	}
	b.serverPIDs, b.onMeasure = nil, nil
	if err == nil && statusErr == nil {
		if st, serr := leader.Status(ctx); serr == nil {
			row.RaftEntriesPerOp = ratio(float64(st.Raft.LastIndex-firstIndex), float64(row.Ops))
		}
	}
	if err != nil {
		return benchRow{}, fmt.Errorf("%s, %d senders: %w", what, n, err)
	}
	row.Mode, row.Via = b.mode, b.via
	if after, _, err := p.Leader(ctx); err != nil || after != leader {
		row.Note = "the leader changed during the level; the route is mixed"
	}
	return row, nil
}

// fanoutLevel measures fanout to the first peers fake providers: the
// senders' rooms each get one member at every one of them, then the
// senders send messages for the level's duration, and the level ends when
// every peer has every accepted message.
func (b *bencher) fanoutLevel(ctx context.Context, p *systemtest.Provider, peers *fakePeers, n int) (fanoutRow, error) {
	leader, err := p.WaitLeader(ctx)
	if err != nil {
		return fanoutRow{}, err
	}
	b.servers, b.mode, b.via = []string{"https://" + leader.ClientAddr}, benchMessages, viaLeader
	defer b.closeAll()
	setupCtx, cancel := context.WithTimeout(ctx, benchSetupLimit)
	defer cancel()
	senders := b.o.fanoutSenders
	b.levels++
	tag := fmt.Sprintf("f%d-%d", n, b.levels)
	ms, err := b.members(setupCtx, tag, senders, 1)
	if err != nil {
		return fanoutRow{}, err
	}
	payload := []byte(strings.Repeat("x", b.o.size))
	var ops []benchOp
	for g := 0; g*b.o.roomSize < senders; g++ {
		group := ms[g*b.o.roomSize : min((g+1)*b.o.roomSize, senders)]
		var remote []proto.URI
		for _, d := range peers.domains[:n] {
			remote = append(remote, proto.UserURI(d, fmt.Sprintf("%s-%d", tag, g)))
		}
		r, err := shareRoom(setupCtx, fmt.Sprintf("%s-%s-%d", b.prefix, tag, g), group, remote)
		if err != nil {
			return fanoutRow{}, err
		}
		for _, m := range group {
			ops = append(ops, func(ctx context.Context) (bool, error) { return false, m.Send(ctx, r, payload) })
		}
	}
	// What setup fanned out (commits, Welcomes) is delivered before the
	// level starts.
	if err := waitOutboxEmpty(setupCtx, leader); err != nil {
		return fanoutRow{}, err
	}
	before, err := leader.Status(ctx)
	if err != nil {
		return fanoutRow{}, err
	}
	had, _ := peers.delivered()
	hadRequests := peers.fanoutRequests()
	profiles := hubProfiles{prefix: b.o.hubProfiles, duration: b.o.duration}
	b.onMeasure = func() { profiles.start(ctx, p, leader, b.levels, benchFanout, n) }
	b.serverPIDs = nil
	for _, node := range p.Nodes() {
		b.serverPIDs = append(b.serverPIDs, node.Pid())
	}
	row := b.measure(ctx, ops)
	b.onMeasure, b.serverPIDs = nil, nil
	ended := time.Now()
	want := had + uint64(row.Ops)*uint64(n)
	dctx, cancel := context.WithTimeout(ctx, sideDrainLimit)
	defer cancel()
	got, changed := peers.delivered()
	for got < want && dctx.Err() == nil {
		select {
		case <-changed:
		case <-dctx.Done():
		}
		got, changed = peers.delivered()
	}
	fr := fanoutRow{Peers: n, benchRow: row, Drain: time.Since(ended)}
	if err := profiles.wait(); err != nil {
		return fanoutRow{}, err
	}
	fr.Mode, fr.Senders = benchFanout, senders
	fr.PerRequest = ratio(float64(got-had), float64(peers.fanoutRequests()-hadRequests))
	// The rate at which messages reached every peer: all of them once
	// drained, else what arrived by the limit.
	fr.Sustained = float64(got-had) / float64(n) / (row.Elapsed + fr.Drain).Seconds()
	if got < want {
		fr.Note = fmt.Sprintf("not drained: %d of %d deliveries arrived within %s of the level's end", got-had, want-had, sideDrainLimit)
	}
	after, err := leader.Status(ctx)
	if err != nil {
		return fanoutRow{}, err
	}
	fr.Entries = after.Raft.LastIndex - before.Raft.LastIndex
	fr.EntriesPerOp = ratio(float64(fr.Entries), float64(row.Ops))
	if !after.Raft.Leader || after.Raft.Term != before.Raft.Term {
		fr.Note = "the leader changed during the level"
	}
	return fr, nil
}

// hubProfiles takes every node's CPU profile over the measured part of a
// level, for -hub-cpuprofile; with no prefix it does nothing.
type hubProfiles struct {
	prefix   string
	duration time.Duration
	started  int
	done     chan error
}

// start begins one profile per node, of the level's duration; the file is
// prefix-<level>-<what>-<n>-<node>-<role>.pprof.
func (h *hubProfiles) start(ctx context.Context, p *systemtest.Provider, leader *systemtest.Node, level int, what string, n int) {
	if h.prefix == "" {
		return
	}
	nodes := p.Nodes()
	h.done, h.started = make(chan error, len(nodes)), len(nodes)
	for _, node := range nodes {
		role := "follower"
		if node == leader {
			role = "leader"
		}
		file := fmt.Sprintf("%s-%d-%s-%d-%s-%s.pprof", h.prefix, level, strings.ReplaceAll(what, " ", "-"), n, node.ID, role)
		go func() { h.done <- node.CPUProfile(ctx, h.duration, file) }()
	}
}

// wait returns once every started profile is written, with the first
// error.
func (h *hubProfiles) wait() error {
	var err error
	for range h.started {
		if perr := <-h.done; perr != nil && err == nil {
			err = fmt.Errorf("-hub-cpuprofile: %w", perr)
		}
	}
	h.started = 0
	return err
}

// waitOutboxEmpty waits until nothing waits for any peer on the leader.
func waitOutboxEmpty(ctx context.Context, leader *systemtest.Node) error {
	for {
		st, err := leader.Status(ctx)
		if err == nil {
			waiting := uint64(0)
			for _, p := range st.Peers {
				waiting += p.Outbox
			}
			if waiting == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the outbox to drain: %w (last: %v)", ctx.Err(), err)
		case <-time.After(systemtest.Poll):
		}
	}
}

// printSideTable prints the side-by-side rows.
func printSideTable(e *env, rows []sideRow) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pass\tsenders\twhat\tops\terrors\tops/s\t× raw raft\tgoal ratio\tp50\tp99\tserver CPU/op\tsenders CPU/op\tentries/op\t")
	for _, r := range rows {
		goal := ""
		if r.VsWhat != "" {
			goal = fmt.Sprintf("%.2f × %s", r.Vs, r.VsWhat)
		}
		entries := "1" // raw Raft: one entry per put
		if r.What != sideRaft {
			entries = fmt.Sprintf("%.3f", r.RaftEntriesPerOp)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%d\t%.0f\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Pass, r.Senders, r.What, r.Ops, r.Errors, r.OpsPerSec, r.VsRaft, goal,
			roundDuration(r.P50), roundDuration(r.P99), cpuColumn(r.ServerCPUPerOp), cpuColumn(r.SendersCPUPerOp), entries)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if r.FirstError != "" {
			e.printf("pass %d, %d senders, %s, first error: %s\n", r.Pass, r.Senders, r.What, r.FirstError)
		}
		if r.Note != "" {
			e.printf("pass %d, %d senders, %s: %s\n", r.Pass, r.Senders, r.What, r.Note)
		}
	}
	return nil
}

// cpuColumn prints a CPU time per operation, "-" when unknown.
func cpuColumn(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}

// printFanoutTable prints the fanout rows.
func printFanoutTable(e *env, rows []fanoutRow) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pass\tpeers\tmessages\terrors\tsent/s\tdrain\tsustained/s\t× 1 peer\tRaft entries/msg\tmsgs/request\tp50\tp99\tserver CPU/msg\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%.0f\t%s\t%.0f\t%.2f\t%.2f\t%.1f\t%s\t%s\t%s\t\n", r.Pass, r.Peers, r.Ops, r.Errors, r.OpsPerSec, roundDuration(r.Drain), r.Sustained, r.VsOnePeer,
			r.EntriesPerOp, r.PerRequest, roundDuration(r.P50), roundDuration(r.P99), cpuColumn(r.ServerCPUPerOp))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if r.FirstError != "" {
			e.printf("pass %d, %d peers, first error: %s\n", r.Pass, r.Peers, r.FirstError)
		}
		if r.Note != "" {
			e.printf("pass %d, %d peers: %s\n", r.Pass, r.Peers, r.Note)
		}
	}
	return nil
}

// baselineNodes are the three baseline Raft processes.
type baselineNodes struct {
	procs []*exec.Cmd
	apis  []string // their HTTPS put endpoints' host:port
	done  []chan struct{}
	ca    string // the CA file their certificates chain to
}

// startBaselineNodes starts three bench-raft-node processes of this
// executable with their data in dir and TLS certificates from the
// development CA in caDir, and waits until one leads.
func startBaselineNodes(ctx context.Context, dir, caDir string, verbose bool) (_ *baselineNodes, err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	bn := &baselineNodes{ca: filepath.Join(caDir, "dev-ca.pem")}
	defer func() {
		if err != nil {
			bn.close()
		}
	}()
	type addrs struct{ id, ip, raft, api string }
	var nodes []addrs
	var voters []string
	for i := range 3 {
		ip := fmt.Sprintf("127.0.0.%d", sideRaftFirstIP+i)
		rp, err := freeport.Get(ip)
		if err != nil {
			return nil, err
		}
		ap, err := freeport.Get(ip)
		if err != nil {
			return nil, err
		}
		a := addrs{id: fmt.Sprintf("r%d", i+1), ip: ip, raft: net.JoinHostPort(ip, strconv.Itoa(rp)), api: net.JoinHostPort(ip, strconv.Itoa(ap))}
		nodes = append(nodes, a)
		voters = append(voters, a.id+"="+a.raft)
	}
	for _, a := range nodes {
		logf, err := os.Create(filepath.Join(dir, "raw-raft-"+a.id+".log"))
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		args := []string{"bench-raft-node", "-id", a.id, "-data", filepath.Join(dir, "raw-raft-"+a.id), "-raft-addr", a.raft, "-api-addr", a.api,
			"-voters", strings.Join(voters, ","), "-dev-ca-dir", caDir}
		if verbose {
			args = append([]string{"-v"}, args...)
		}
		cmd := exec.Command(exe, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			return nil, fmt.Errorf("bench: starting a baseline node: %w", err)
		}
		done := make(chan struct{})
		go func() {
			cmd.Wait()
			logf.Close()
			close(done)
		}()
		bn.procs, bn.done, bn.apis = append(bn.procs, cmd), append(bn.done, done), append(bn.apis, a.api)
	}
	lctx, cancel := context.WithTimeout(ctx, failoverLimit)
	defer cancel()
	if _, err := bn.leader(lctx); err != nil {
		return nil, fmt.Errorf("bench: baseline Raft: %w (logs in %s)", err, dir)
	}
	return bn, nil
}

// leader returns the API address of the node that leads, waiting for one.
func (bn *baselineNodes) leader(ctx context.Context) (string, error) {
	hc, tr, err := httpClient(bn.ca, "")
	if err != nil {
		return "", err
	}
	defer tr.CloseIdleConnections()
	for {
		for _, a := range bn.apis {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+a+"/status", nil)
			resp, err := hc.Do(req)
			if err != nil {
				continue
			}
			var st struct {
				Leader bool `json:"leader"`
			}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && st.Leader {
				return a, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no baseline node leads: %w", ctx.Err())
		case <-time.After(systemtest.Poll):
		}
	}
}

// close stops the nodes (SIGTERM, then SIGKILL after 10 s).
func (bn *baselineNodes) close() {
	for _, p := range bn.procs {
		p.Process.Signal(syscall.SIGTERM)
	}
	for i, p := range bn.procs {
		select {
		case <-bn.done[i]:
		case <-time.After(10 * time.Second):
			p.Process.Kill()
			<-bn.done[i]
		}
	}
}

// rawLevel measures n senders putting o.putSize bytes to the baseline
// leader, each over its own HTTPS connection.
func (b *bencher) rawLevel(ctx context.Context, raw *baselineNodes, n int) (benchRow, error) {
	lctx, cancel := context.WithTimeout(ctx, failoverLimit)
	leader, err := raw.leader(lctx)
	cancel()
	if err != nil {
		return benchRow{}, err
	}
	payload := bytes.Repeat([]byte{'x'}, b.o.putSize)
	var ops []benchOp
	for range n {
		hc, tr, err := httpClient(raw.ca, "")
		if err != nil {
			return benchRow{}, err
		}
		tr.MaxIdleConnsPerHost = 4
		b.closers = append(b.closers, tr.CloseIdleConnections)
		url := "https://" + leader + "/put"
		ops = append(ops, func(ctx context.Context) (bool, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
			if err != nil {
				return false, err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return false, err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				return false, fmt.Errorf("put: HTTP %d", resp.StatusCode)
			}
			return false, nil
		})
	}
	b.serverPIDs = nil
	for _, p := range raw.procs {
		b.serverPIDs = append(b.serverPIDs, p.Process.Pid)
	}
	row := b.measure(ctx, ops)
	b.closeAll()
	b.serverPIDs = nil
	return row, nil
}

// baselineNodeCommand is the hidden command bench -baseline starts three
// of: one baseline Raft node (cluster.StartBaseline) and an HTTPS front
// through which bench's senders put entries.
func baselineNodeCommand() *command {
	return &command{
		name: "bench-raft-node", summary: "(internal) one raw Raft node of bench -baseline", noProfile: true, hidden: true,
		help: `Runs one raw Raft node for bench -baseline: hashicorp/raft on the
provider's raft-boltdb/v2 stores with its Raft timing and a state machine
that does nothing, over raft's TCP transport, and an HTTPS listener
(certificate from the development CA in -dev-ca-dir) where POST /put
replicates its body as one log entry (204; 421 when not the leader) and
GET /status says whether the node leads. It runs until SIGTERM.`,
		setup: func(fs *flag.FlagSet) runFunc {
			id := fs.String("id", "", "the node's Raft `ID`")
			data := fs.String("data", "", "the node's data `folder`")
			raftAddr := fs.String("raft-addr", "", "Raft transport `host:port`")
			apiAddr := fs.String("api-addr", "", "HTTPS put endpoint `host:port`")
			voters := fs.String("voters", "", "every voter as `ID=HOST:PORT`, comma-separated")
			caDir := fs.String("dev-ca-dir", "", "development CA `folder` that issues the HTTPS certificate")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("bench-raft-node", args, 0, 0); err != nil {
					return err
				}
				vs := map[string]string{}
				for _, v := range splitList(*voters) {
					k, a, ok := strings.Cut(v, "=")
					if !ok {
						return usagef("bench-raft-node", "bench-raft-node: -voters: %q is not ID=HOST:PORT", v)
					}
					vs[k] = a
				}
				if *id == "" || *data == "" || *raftAddr == "" || *apiAddr == "" || len(vs) == 0 || *caDir == "" {
					return usagef("bench-raft-node", "bench-raft-node: -id, -data, -raft-addr, -api-addr, -voters and -dev-ca-dir are required")
				}
				return e.runBaselineNode(ctx, cluster.BaselineConfig{NodeID: *id, DataDir: *data, RaftAddr: *raftAddr, Voters: vs,
					Timing: cluster.Config{Logger: e.providerLogger()}}, *apiAddr, *caDir)
			}
		},
	}
}

// runBaselineNode serves one baseline node until ctx ends.
func (e *env) runBaselineNode(ctx context.Context, cfg cluster.BaselineConfig, apiAddr, caDir string) error {
	ca, err := devca.LoadOrCreate(caDir)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(apiAddr)
	if err != nil {
		return err
	}
	cert, err := ca.Issue("baseline.example", host)
	if err != nil {
		return err
	}
	node, err := cluster.StartBaseline(cfg)
	if err != nil {
		return err
	}
	defer node.Shutdown()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPutBody))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		if !node.IsLeader() {
			http.Error(w, "not the leader", http.StatusMisdirectedRequest)
			return
		}
		if err := node.Apply(r.Context(), body); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]bool{"leader": node.IsLeader()})
	})
	ln, err := net.Listen("tcp", apiAddr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(e.providerLogger().Handler(), slog.LevelDebug)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	err = srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
