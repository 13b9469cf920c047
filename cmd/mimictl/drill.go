package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/pause"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// mimictl drill: a write-and-read probe through every node of a running
// provider, with optional disruptions caused through the nodes' operations
// listeners, and a report of how long writes were unavailable and whether
// any acknowledged write was lost.
//
// Each node gets a probe client of its own, registered through that node;
// the probes share one room. Every -interval each probe sends a numbered
// message through its node (the write: acknowledged when the hub accepted
// it) and reads its stream (the read), which brings it the other probes'
// messages. At the end every probe reads until it has seen every message
// the others had acknowledged (up to -settle): an acknowledged message a
// probe that could read never saw is lost.

// Bounds of the drill's flags.
const (
	maxDrillDuration = 24 * time.Hour
	minDrillInterval = 10 * time.Millisecond
	maxDrillNodes    = 16
	// drillSetupLimit bounds registering the probes and sharing the room.
	drillSetupLimit = 2 * time.Minute
)

// Disruption actions.
const (
	actionTransfer = "transfer"
	actionStepDown = "step-down"
	actionPause    = "pause"
)

// drillAction is one disruption of the -disrupt cycle.
type drillAction struct {
	Kind string
	// For is a pause's length.
	For time.Duration
}

func (a drillAction) String() string {
	if a.Kind == actionPause {
		return actionPause + ":" + a.For.String()
	}
	return a.Kind
}

// parseActions reads -disrupt: transfer, step-down and pause:DURATION,
// comma-separated.
func parseActions(s string) ([]drillAction, error) {
	var out []drillAction
	for _, f := range splitList(s) {
		kind, arg, _ := strings.Cut(f, ":")
		switch kind {
		case actionTransfer, actionStepDown:
			if arg != "" {
				return nil, fmt.Errorf("%q takes no argument", f)
			}
			out = append(out, drillAction{Kind: kind})
		case actionPause:
			d, err := time.ParseDuration(arg)
			if err != nil || d <= 0 || d > hub.MaxPause {
				return nil, fmt.Errorf("%q: want pause:DURATION, up to %s", f, hub.MaxPause)
			}
			out = append(out, drillAction{Kind: kind, For: d})
		default:
			return nil, fmt.Errorf("unknown disruption %q (transfer, step-down, pause:DURATION)", f)
		}
	}
	return out, nil
}

// drillOptions are the drill command's settings.
type drillOptions struct {
	servers, opsURLs []string
	ca, regKey       string
	tokens           adminTokenFlags
	duration         time.Duration
	interval         time.Duration
	timeout          time.Duration
	slow             time.Duration
	every            time.Duration
	settle           time.Duration
	actions          []drillAction
	html             string
}

func drillCommand() *command {
	return &command{
		name: "drill", summary: "probe every node with writes and reads, optionally disrupt the cluster, report unavailability and losses (operator)",
		noProfile: true,
		help: `Runs a failover drill against a running provider (any deployment). Each node
in -server (client API URLs) gets a throwaway probe client registered
through it; the probes share one room. Every -interval each probe sends a
numbered message through its own node and reads its stream, for
-duration. With -every and -disrupt, the drill disrupts the cluster
through the operations listeners (-ops, in the same order as -server):

  transfer        hand leadership to another voter (POST /v1/cluster/transfer-leader)
  step-down       ask the current leader to step down (POST /v1/node/step-down)
  pause:DURATION  a node, in turn, refuses client requests that long (POST /v1/node/pause)

The actions are taken in turn, one every -every. Without them the drill
only watches: run it while you kill -9 a node, reboot a machine or
replace a node by hand, and it reports what the clients saw.

At the end each probe reads until it has seen every message the others'
nodes acknowledged (up to -settle). The report lists, per node, writes,
failures and latency; per disruption, the time from it to the first
accepted write through each node; every unavailability window (writes
failing, or slower than -slow, through a node) with its errors by kind;
the p99 latency during disruptions and windows and outside them; and
"N acknowledged writes lost". The exit status is 1 if any was lost.
-json prints the report as JSON; -html FILE writes it with an SVG
timeline. The probe users and room stay on the provider (named
drill-RUN-nI).`,
		setup: func(fs *flag.FlagSet) runFunc {
			o := &drillOptions{}
			server := fs.String("server", "https://127.0.0.1:8444", "client API `URL`s of the nodes, comma-separated")
			opsURLs := fs.String("ops", "", "operations listener `URL`s of the same nodes, in the same order (needed for disruptions; shows the leader)")
			fs.StringVar(&o.ca, "ca", "", "PEM `file` of the CA that signed the provider's certificate (default: the system roots)")
			fs.StringVar(&o.regKey, "registration-key", "", "the provider's registration `key` (default $MIMICTL_REGISTRATION_KEY)")
			o.tokens.define(fs)
			fs.DurationVar(&o.duration, "duration", time.Minute, "how long the probes run")
			fs.DurationVar(&o.interval, "interval", 200*time.Millisecond, "time between one probe's writes")
			fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "longest wait for one write or read (with the client's own retries)")
			fs.DurationVar(&o.slow, "slow", time.Second, "a write slower than this counts as unavailability")
			fs.DurationVar(&o.every, "every", 0, "time between disruptions (0: none, the drill only watches)")
			disrupt := fs.String("disrupt", actionTransfer, "disruptions taken in turn: transfer, step-down, pause:DURATION (comma-separated)")
			fs.DurationVar(&o.settle, "settle", 30*time.Second, "at the end, how long the probes may read to find every acknowledged write")
			fs.StringVar(&o.html, "html", "", "also write the report with an SVG timeline to this HTML `file`")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("drill", args, 0, 0); err != nil {
					return err
				}
				if o.regKey == "" {
					o.regKey = e.getenv("MIMICTL_REGISTRATION_KEY")
				}
				o.servers, o.opsURLs = splitList(*server), splitList(*opsURLs)
				var err error
				if o.actions, err = parseActions(*disrupt); err != nil {
					return usagef("drill", "drill: -disrupt: %v", err)
				}
				if err := o.check(); err != nil {
					return err
				}
				rep, err := e.drill(ctx, o)
				if err != nil {
					return explain(err)
				}
				if err := e.writeDrillReport(rep, o.html); err != nil {
					return err
				}
				if rep.Lost > 0 {
					return fmt.Errorf("drill: %d acknowledged writes lost", rep.Lost)
				}
				return nil
			}
		},
	}
}

func (o *drillOptions) check() error {
	bad := func(format string, args ...any) error { return usagef("drill", "drill: "+format, args...) }
	switch {
	case len(o.servers) == 0 || len(o.servers) > maxDrillNodes:
		return bad("-server lists %d nodes; want 1 to %d", len(o.servers), maxDrillNodes)
	case len(o.opsURLs) > 0 && len(o.opsURLs) != len(o.servers):
		return bad("-ops lists %d URLs for %d -server nodes; list one per node, in the same order", len(o.opsURLs), len(o.servers))
	case o.every > 0 && len(o.opsURLs) == 0:
		return bad("disruptions (-every) go through the operations listeners: give -ops")
	case o.duration <= 0 || o.duration > maxDrillDuration:
		return bad("-duration must be between 0 and %s", maxDrillDuration)
	case o.interval < minDrillInterval:
		return bad("-interval must be at least %s", minDrillInterval)
	case o.timeout <= 0 || o.slow <= 0 || o.settle < 0 || o.every < 0:
		return bad("-timeout and -slow must be positive, -settle and -every not negative")
	case o.every > 0 && len(o.actions) == 0:
		return bad("-every needs at least one -disrupt action")
	}
	return nil
}

// drillWrite is one probe write, or with Read one read of a probe's
// stream.
type drillWrite struct {
	Node  int           `json:"node"`
	Read  bool          `json:"read,omitempty"`
	Seq   int           `json:"seq,omitempty"`
	Start time.Duration `json:"start_ns"` // since the drill began
	Took  time.Duration `json:"took_ns"`
	Error string        `json:"error,omitempty"`
	Kind  string        `json:"kind,omitempty"` // error kind
}

func (w drillWrite) ok() bool           { return w.Error == "" }
func (w drillWrite) end() time.Duration { return w.Start + w.Took }

// drillDisruption is one disruption the drill caused.
type drillDisruption struct {
	At     time.Duration `json:"at_ns"`
	Action string        `json:"action"`
	// Target is the node asked (its -ops URL's node id when known).
	Target string        `json:"target"`
	Took   time.Duration `json:"took_ns"`
	Result string        `json:"result"`
	Error  string        `json:"error,omitempty"`
	// FirstAccepted is, per node, the time from the disruption to the
	// end of the first write started after it that the node accepted;
	// nil when none was.
	FirstAccepted []*time.Duration `json:"first_accepted_ns"`
}

// drillWindow is a stretch of time in which writes through a node failed
// or were slow: from the start of the first such write to the end of the
// next accepted one.
type drillWindow struct {
	Node   int            `json:"node"`
	Start  time.Duration  `json:"start_ns"`
	End    time.Duration  `json:"end_ns"`
	Open   bool           `json:"still_open,omitempty"` // no write was accepted after it
	Failed int            `json:"failed"`
	Slow   int            `json:"slow"`
	Errors map[string]int `json:"errors,omitempty"`
}

// drillNode is one node's line of the report.
type drillNode struct {
	Server   string        `json:"server"`
	Ops      string        `json:"ops,omitempty"`
	ID       string        `json:"id,omitempty"`
	Writes   int           `json:"writes"`
	Accepted int           `json:"accepted"`
	Failed   int           `json:"failed"`
	Reads    int           `json:"reads"`
	ReadErrs int           `json:"read_errors"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
	Max      time.Duration `json:"max_ns"`
	// Missing counts the acknowledged writes of the other nodes this
	// node's probe never read; -1 when it could not finish reading.
	Missing  int    `json:"missing"`
	ReadNote string `json:"read_note,omitempty"`
}

// drillReport is the drill's result.
type drillReport struct {
	Run         string            `json:"run"`
	Room        proto.URI         `json:"room"`
	Started     time.Time         `json:"started"`
	Duration    time.Duration     `json:"duration_ns"`
	Interval    time.Duration     `json:"interval_ns"`
	Slow        time.Duration     `json:"slow_ns"`
	Nodes       []drillNode       `json:"nodes"`
	Disruptions []drillDisruption `json:"disruptions"`
	Windows     []drillWindow     `json:"windows"`
	Errors      map[string]int    `json:"errors"`
	// During are the writes that overlap a disruption's recovery or a
	// window; Outside the others.
	During  latencySummary `json:"during"`
	Outside latencySummary `json:"outside"`
	// Acknowledged counts accepted writes; Lost those a probe that
	// finished reading never saw; Unacknowledged those read although
	// their write failed (the outcome was unknown, and they had applied);
	// Duplicates messages read twice by one probe.
	Acknowledged   int          `json:"acknowledged"`
	Lost           int          `json:"lost"`
	LostWrites     []string     `json:"lost_writes,omitempty"`
	Unacknowledged int          `json:"unacknowledged_applied"`
	Duplicates     int          `json:"duplicates"`
	Writes         []drillWrite `json:"writes"`
}

// latencySummary summarizes write latencies.
type latencySummary struct {
	Writes int           `json:"writes"`
	P50    time.Duration `json:"p50_ns"`
	P99    time.Duration `json:"p99_ns"`
	Max    time.Duration `json:"max_ns"`
}

func summarizeLatency(ds []time.Duration) latencySummary {
	slices.Sort(ds)
	s := latencySummary{Writes: len(ds)}
	if len(ds) > 0 {
		s.P50, s.P99, s.Max = percentile(ds, 50), percentile(ds, 99), ds[len(ds)-1]
	}
	return s
}

// probe is one node's probe client and what it read.
type probe struct {
	node   int
	member *client.Member
	// writes is false for the second probe of a single node, which only
	// reads (what the first one writes).
	writes bool
	// seen counts each message read, keyed "NODE SEQ".
	seen map[string]int
	// readAll is whether the final read reached the end of the stream.
	readAll bool
}

// drill runs the drill command.
func (e *env) drill(ctx context.Context, o *drillOptions) (*drillReport, error) {
	var raw [4]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	run := "drill-" + hex.EncodeToString(raw[:])
	rep := &drillReport{Run: run, Interval: o.interval, Slow: o.slow, Errors: map[string]int{}}
	for i, s := range o.servers {
		n := drillNode{Server: s}
		if len(o.opsURLs) > 0 {
			n.Ops = o.opsURLs[i]
			if st, err := e.drillOpsStatus(ctx, o, i); err == nil {
				n.ID = st.NodeID
			}
		}
		rep.Nodes = append(rep.Nodes, n)
	}
	probes, closeAll, err := e.drillSetup(ctx, o, run, rep)
	defer closeAll()
	if err != nil {
		return nil, err
	}
	if !e.json {
		fmt.Fprintf(e.stderr, "mimictl: drill %s: %d probes in %s, one write per %s each, for %s\n", run, len(probes), rep.Room, o.interval, o.duration)
	}

	start := time.Now()
	rep.Started = start.UTC()
	runCtx, stop := context.WithTimeout(ctx, o.duration)
	defer stop()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Go(func() {
			ws := e.probeLoop(runCtx, o, p, run, rep.Room, start)
			mu.Lock()
			rep.Writes = append(rep.Writes, ws...)
			mu.Unlock()
		})
	}
	if o.every > 0 {
		wg.Go(func() { rep.Disruptions = e.disruptLoop(runCtx, o, rep, start) })
	}
	wg.Wait()
	rep.Duration = time.Since(start)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("drill interrupted: %w", ctx.Err())
	}
	e.settle(ctx, o, probes, ackedKeys(rep.Writes), run)
	rep.analyze(o, probes)
	return rep, nil
}

// drillSetup registers a probe per node (two on a single node, so that
// one reads what the other writes) and has them share a room.
func (e *env) drillSetup(ctx context.Context, o *drillOptions, run string, rep *drillReport) ([]*probe, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, drillSetupLimit)
	defer cancel()
	servers := o.servers
	if len(servers) == 1 {
		servers = []string{servers[0], servers[0]}
	}
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	var ms []*client.Member
	for i, s := range servers {
		m, tr, err := e.newMember(ctx, memberSetup{server: s, ca: o.ca, regKey: o.regKey, user: fmt.Sprintf("%s-n%d", run, i+1), device: "probe", keyPackages: 1})
		if tr != nil {
			closers = append(closers, tr.CloseIdleConnections)
		}
		if err != nil {
			return nil, closeAll, fmt.Errorf("setting up the probe of node %d: %w", i+1, err)
		}
		ms = append(ms, m)
	}
	r, err := shareRoom(ctx, run, ms, nil)
	if err != nil {
		return nil, closeAll, fmt.Errorf("setting up the probes' room: %w", err)
	}
	rep.Room = r
	var probes []*probe
	for i, m := range ms {
		probes = append(probes, &probe{node: min(i, len(o.servers)-1), writes: i < len(o.servers), member: m, seen: map[string]int{}})
	}
	return probes, closeAll, nil
}

// probeLoop writes and reads through one node until ctx ends.
func (e *env) probeLoop(ctx context.Context, o *drillOptions, p *probe, run string, room proto.URI, start time.Time) []drillWrite {
	var out []drillWrite
	next := time.Now()
	for seq := 1; ctx.Err() == nil; seq++ {
		if p.writes {
			w := drillWrite{Node: p.node, Seq: seq, Start: time.Since(start)}
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.timeout)
			err := p.member.Send(wctx, room, []byte(fmt.Sprintf("%s %d %d", run, p.node, seq)))
			cancel()
			w.Took = time.Since(start) - w.Start
			if err != nil {
				w.Error, w.Kind = sanitize(err.Error()), errorKind(err)
			}
			out = append(out, w)
		}
		rd := drillWrite{Node: p.node, Read: true, Start: time.Since(start)}
		if err := p.read(context.WithoutCancel(ctx), o.timeout, run); err != nil {
			rd.Error, rd.Kind = sanitize(err.Error()), errorKind(err)
		}
		rd.Took = time.Since(start) - rd.Start
		out = append(out, rd)
		next = next.Add(o.interval)
		if d := time.Until(next); d > 0 {
			pause.For(ctx, d)
		} else {
			next = time.Now()
		}
	}
	return out
}

// read syncs the probe's stream once and records the messages.
func (p *probe) read(ctx context.Context, timeout time.Duration, run string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	events, err := p.member.Sync(ctx)
	for _, ev := range events {
		if ev.Kind != client.EventMessage {
			continue
		}
		f := strings.Fields(string(ev.Text))
		if len(f) == 3 && f[0] == run {
			p.seen[f[1]+" "+f[2]]++
		}
	}
	return err
}

// settle lets every probe read until it has every acknowledged write of
// the other nodes' probes, or -settle passes.
func (e *env) settle(ctx context.Context, o *drillOptions, probes []*probe, acked map[string]bool, run string) {
	deadline := time.Now().Add(o.settle)
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Go(func() {
			for {
				if err := p.read(ctx, o.timeout, run); err == nil {
					p.readAll = true
					if p.hasAll(acked) {
						return
					}
				}
				if time.Now().After(deadline) || ctx.Err() != nil {
					return
				}
				pause.For(ctx, 200*time.Millisecond)
			}
		})
	}
	wg.Wait()
}

// errorKind names a failed write's error for the report.
func errorKind(err error) string {
	var se *client.StatusError
	var re *client.RefusedError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("HTTP %d", se.Status)
	case errors.As(err, &re):
		return "refused: " + re.Code.String()
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, client.ErrUnresolved):
		return "outcome unknown"
	}
	var te *client.TransportError
	if errors.As(err, &te) {
		return "transport"
	}
	return "other"
}

// drillOpsStatus reads GET /v1/status of node i.
func (e *env) drillOpsStatus(ctx context.Context, o *drillOptions, i int) (*hub.OpsStatus, error) {
	var st hub.OpsStatus
	of := &opsFlags{url: o.opsURLs[i], adminTokenFlags: o.tokens}
	if _, err := of.get(ctx, e, "/v1/status", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// disruptLoop takes the -disrupt actions in turn, one every -every, until
// ctx ends.
func (e *env) disruptLoop(ctx context.Context, o *drillOptions, rep *drillReport, start time.Time) []drillDisruption {
	var out []drillDisruption
	pauses := 0
	for k := 0; ; k++ {
		if !pause.For(ctx, time.Until(start.Add(time.Duration(k+1)*o.every))) {
			return out
		}
		a := o.actions[k%len(o.actions)]
		d := drillDisruption{At: time.Since(start), Action: a.String()}
		target := -1
		var err error
		switch a.Kind {
		case actionTransfer:
			target = k % len(o.opsURLs)
			var ans hub.OpsLeaderAnswer
			_, err = (&opsFlags{url: o.opsURLs[target], adminTokenFlags: o.tokens}).post(ctx, e, "/v1/cluster/transfer-leader", nil, &ans)
			d.Result = "leader " + ans.LeaderID
		case actionStepDown:
			if target, err = e.drillLeader(ctx, o); err == nil {
				var ans hub.OpsLeaderAnswer
				_, err = (&opsFlags{url: o.opsURLs[target], adminTokenFlags: o.tokens}).post(ctx, e, "/v1/node/step-down", nil, &ans)
				d.Result = "leader " + ans.LeaderID
			}
		case actionPause:
			target = pauses % len(o.opsURLs)
			pauses++
			_, err = (&opsFlags{url: o.opsURLs[target], adminTokenFlags: o.tokens}).post(ctx, e, "/v1/node/pause", hub.OpsPauseRequest{Seconds: a.For.Seconds()}, nil)
			d.Result = "paused for " + a.For.String()
		}
		d.Took = time.Since(start) - d.At
		if target >= 0 {
			d.Target = rep.nodeName(target)
		}
		if err != nil {
			d.Error = sanitize(err.Error())
			d.Result = "failed"
		}
		if !e.json {
			fmt.Fprintf(e.stderr, "mimictl: +%s %s %s: %s\n", fmtOffset(d.At), d.Action, d.Target, firstNonEmpty(d.Error, d.Result))
		}
		out = append(out, d)
	}
}

// drillLeader finds the node that leads, asking each node's operations
// listener.
func (e *env) drillLeader(ctx context.Context, o *drillOptions) (int, error) {
	var last error
	for i := range o.opsURLs {
		st, err := e.drillOpsStatus(ctx, o, i)
		if err != nil {
			last = err
			continue
		}
		if st.Raft.Leader {
			return i, nil
		}
	}
	return -1, fmt.Errorf("no node says it leads (last error: %v)", last)
}

// nodeName names node i: its Raft id when known, else n1, n2...
func (r *drillReport) nodeName(i int) string {
	if i >= 0 && i < len(r.Nodes) && r.Nodes[i].ID != "" {
		return r.Nodes[i].ID
	}
	return "n" + strconv.Itoa(i+1)
}

// analyze computes the report from the writes and what the probes read.
func (r *drillReport) analyze(o *drillOptions, probes []*probe) {
	slices.SortFunc(r.Writes, func(a, b drillWrite) int { return int(a.Start - b.Start) })
	lat := make([][]time.Duration, len(r.Nodes))
	for _, w := range r.Writes {
		n := &r.Nodes[w.Node]
		if w.Read {
			n.Reads++
			if !w.ok() {
				n.ReadErrs++
				r.Errors["read: "+w.Kind]++
			}
			continue
		}
		n.Writes++
		if w.ok() {
			n.Accepted++
			r.Acknowledged++
			lat[w.Node] = append(lat[w.Node], w.Took)
		} else {
			n.Failed++
			r.Errors[w.Kind]++
		}
	}
	for i := range r.Nodes {
		s := summarizeLatency(lat[i])
		r.Nodes[i].P50, r.Nodes[i].P99, r.Nodes[i].Max = s.P50, s.P99, s.Max
	}
	// Windows, per node: from the first failed or slow write or read to
	// the end of the next accepted write.
	for i := range r.Nodes {
		var cur *drillWindow
		for _, w := range r.Writes {
			if w.Node != i {
				continue
			}
			bad := !w.ok() || w.Took >= o.slow
			if bad && cur == nil {
				cur = &drillWindow{Node: i, Start: w.Start, Errors: map[string]int{}}
			}
			if cur == nil {
				continue
			}
			switch {
			case !w.ok() && w.Read:
				cur.Failed++
				cur.Errors["read: "+w.Kind]++
			case !w.ok():
				cur.Failed++
				cur.Errors[w.Kind]++
			case bad:
				cur.Slow++
			}
			if w.ok() && !w.Read {
				cur.End = w.end()
				r.Windows = append(r.Windows, *cur)
				cur = nil
			}
		}
		if cur != nil {
			cur.End, cur.Open = r.Duration, true
			r.Windows = append(r.Windows, *cur)
		}
	}
	slices.SortFunc(r.Windows, func(a, b drillWindow) int { return int(a.Start - b.Start) })
	// Time to the first accepted write after each disruption; until the
	// last node's, the cluster is recovering from it.
	var recovering [][2]time.Duration
	for di := range r.Disruptions {
		d := &r.Disruptions[di]
		d.FirstAccepted = make([]*time.Duration, len(r.Nodes))
		var last time.Duration
		for _, w := range r.Writes {
			// Started once the disruption was done: a write already under
			// way when it was asked for proves nothing.
			if !w.Read && w.Start >= d.At+d.Took && w.ok() && d.FirstAccepted[w.Node] == nil {
				v := w.end() - d.At
				d.FirstAccepted[w.Node] = &v
				last = max(last, v)
			}
		}
		recovering = append(recovering, [2]time.Duration{d.At, d.At + last})
	}
	var during, outside []time.Duration
	for _, w := range r.Writes {
		if !w.ok() || w.Read {
			continue
		}
		in := slices.ContainsFunc(recovering, func(iv [2]time.Duration) bool { return w.end() > iv[0] && w.Start < iv[1] }) ||
			slices.ContainsFunc(r.Windows, func(win drillWindow) bool {
				return win.Node == w.Node && w.end() > win.Start && w.Start < win.End
			})
		if in {
			during = append(during, w.Took)
		} else {
			outside = append(outside, w.Took)
		}
	}
	r.During, r.Outside = summarizeLatency(during), summarizeLatency(outside)
	// Losses: every acknowledged write must have been read by every probe
	// of another node that finished reading.
	acked := ackedKeys(r.Writes)
	lost := map[string]bool{}
	applied := map[string]bool{}
	for _, p := range probes {
		n := &r.Nodes[p.node]
		for k, c := range p.seen {
			if c > 1 {
				r.Duplicates += c - 1
			}
			if !acked[k] {
				applied[k] = true
			}
		}
		if !p.readAll {
			n.Missing = -1
			n.ReadNote = "could not read to the end of its stream through this node"
			continue
		}
		for k := range acked {
			if !p.ownWrite(k) && p.seen[k] == 0 {
				n.Missing++
				lost[k] = true
			}
		}
	}
	r.Lost = len(lost)
	r.Unacknowledged = len(applied)
	for k := range lost {
		node, seq, _ := strings.Cut(k, " ")
		i, _ := strconv.Atoi(node)
		r.LostWrites = append(r.LostWrites, r.nodeName(i)+" #"+seq)
	}
	slices.Sort(r.LostWrites)
}

// ackedKeys returns the "NODE SEQ" keys of the accepted writes.
func ackedKeys(writes []drillWrite) map[string]bool {
	acked := map[string]bool{}
	for _, w := range writes {
		if w.ok() && !w.Read {
			acked[fmt.Sprintf("%d %d", w.Node, w.Seq)] = true
		}
	}
	return acked
}

// ownWrite reports whether key names a write of this probe, which it
// does not read back.
func (p *probe) ownWrite(key string) bool {
	return p.writes && strings.HasPrefix(key, strconv.Itoa(p.node)+" ")
}

// hasAll reports whether the probe read every key of acked written
// through another node.
func (p *probe) hasAll(acked map[string]bool) bool {
	for k := range acked {
		if !p.ownWrite(k) && p.seen[k] == 0 {
			return false
		}
	}
	return true
}

// fmtOffset writes a time since the drill began.
func fmtOffset(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s" }

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// writeDrillReport prints the report (text or JSON) and writes the HTML
// timeline when asked.
func (e *env) writeDrillReport(r *drillReport, htmlFile string) error {
	if htmlFile != "" {
		if err := writeDrillHTML(r, htmlFile); err != nil {
			return fmt.Errorf("writing %s: %w", htmlFile, err)
		}
		if !e.json {
			fmt.Fprintf(e.stderr, "mimictl: wrote the timeline to %s\n", htmlFile)
		}
	}
	if e.json {
		return e.emit(r)
	}
	return printDrillReport(e, r)
}
