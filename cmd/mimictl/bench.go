package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// Bench modes.
const (
	// benchMessages: senders send application messages
	// (provisionalMessage, POST /v1/rooms/{hub}/{room}/messages).
	benchMessages = "messages"
	// benchCommits: senders commit empty commits with a fresh UpdatePath
	// (updateRoom, POST /v1/rooms/{hub}/{room}/commit).
	benchCommits = "commits"
)

// Bench limits: every loop is bounded.
const (
	maxBenchSenders = 512
	// benchSetupLimit bounds registering, creating rooms and joining for
	// one level.
	benchSetupLimit = 3 * time.Minute
	// benchErrorPause slows a sender down after a failure.
	benchErrorPause = 10 * time.Millisecond
	// benchAddBatch is how many users one setup commit adds.
	benchAddBatch = 32
	// benchSetupParallel bounds concurrent registrations.
	benchSetupParallel = 8
)

// benchOptions are bench's flags.
type benchOptions struct {
	mode       string
	sharedRoom bool
	servers    []string
	ca, regKey string
	inprocess  bool
	senders    []int
	duration   time.Duration
	ops        int
	roomSize   int
	size       int
}

func benchCommand() *command {
	return &command{
		name: "bench", summary: "load a provider and print throughput and latency per number of senders",
		noProfile: true,
		help: `For each number of concurrent senders in -senders, registers that many
throwaway clients (one mimi/client Member each, spread round-robin over the
-server URLs), sets up their rooms, then lets every sender loop until
-duration passes or the level made -ops operations, and prints one table
row: senders, operations, errors, throughput and latency percentiles.

  -mode messages  application messages (provisionalMessage): senders share
                  rooms of -room-size members and send -size-byte messages
  -mode commits   empty commits with a fresh UpdatePath (updateRoom): each
                  sender commits to a room of its own, so commits do not
                  race for epochs; with -shared-room all senders commit to
                  one room, a commit that lost the race is refused
                  (wrongEpoch, counted in the "refused" column) and its
                  sender catches up before trying again

Latency is measured around the mimi/client call: encryption or commit
creation, the HTTPS request and the provider's Raft commit. With
-inprocess, bench starts a single-node provider in this process (temporary
data folder, development CA, loopback ports) and needs nothing else.`,
		setup: func(fs *flag.FlagSet) runFunc {
			o := &benchOptions{}
			mode := fs.String("mode", benchMessages, "what to measure: messages or commits")
			fs.BoolVar(&o.sharedRoom, "shared-room", false, "commits mode: all senders commit to one room, racing for its epochs")
			server := fs.String("server", "https://127.0.0.1:8444", "client API `URL`s of the provider, comma-separated (senders are spread round-robin)")
			fs.StringVar(&o.ca, "ca", "", "PEM `file` of the CA that signed the provider's certificate (default: the system roots)")
			fs.StringVar(&o.regKey, "registration-key", "", "the provider's registration `key` (default $MIMICTL_REGISTRATION_KEY)")
			fs.BoolVar(&o.inprocess, "inprocess", false, "start a single-node provider in this process instead of using -server")
			senders := fs.String("senders", "1,16,64", "comma-separated numbers of concurrent senders, one table row each")
			fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long each level runs (0: until -ops)")
			fs.IntVar(&o.ops, "ops", 0, "end each level after this many operations (0: run for -duration)")
			fs.IntVar(&o.roomSize, "room-size", 16, "messages mode: senders per room")
			fs.IntVar(&o.size, "size", 64, "messages mode: message size in bytes")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("bench", args, 0, 0); err != nil {
					return err
				}
				o.mode = *mode
				if o.regKey == "" {
					o.regKey = e.getenv("MIMICTL_REGISTRATION_KEY")
				}
				for _, s := range strings.Split(*server, ",") {
					if s = strings.TrimSpace(s); s != "" {
						o.servers = append(o.servers, s)
					}
				}
				var err error
				if o.senders, err = parseCounts(*senders); err != nil {
					return usagef("bench", "bench: -senders: %v", err)
				}
				switch {
				case o.mode != benchMessages && o.mode != benchCommits:
					return usagef("bench", "bench: -mode must be %s or %s", benchMessages, benchCommits)
				case o.sharedRoom && o.mode != benchCommits:
					return usagef("bench", "bench: -shared-room goes with -mode commits")
				case len(o.servers) == 0 && !o.inprocess:
					return usagef("bench", "bench: -server needs at least one URL")
				case o.duration < 0 || o.duration > time.Hour:
					return usagef("bench", "bench: -duration must be between 0 and 1h")
				case o.ops < 0 || o.ops > 100_000_000:
					return usagef("bench", "bench: -ops must be between 0 and 100000000")
				case o.duration == 0 && o.ops == 0:
					return usagef("bench", "bench: set -duration, -ops or both: every level must end")
				case o.roomSize < 1 || o.roomSize > maxBenchSenders:
					return usagef("bench", "bench: -room-size must be between 1 and %d", maxBenchSenders)
				case o.size < 1 || o.size > 1<<20:
					return usagef("bench", "bench: -size must be between 1 and 1048576")
				}
				return explain(e.bench(ctx, o))
			}
		},
	}
}

// parseCounts reads "1,16,64".
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxBenchSenders {
			return nil, fmt.Errorf("%q is not a number between 1 and %d", f, maxBenchSenders)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchRow is one level's result: one line of the table.
type benchRow struct {
	Senders int `json:"senders"`
	// Ops counts the operations the provider accepted.
	Ops int `json:"ops"`
	// Errors counts failed operations; Refused the commits refused as
	// wrongEpoch (-shared-room), which are not errors.
	Errors  int           `json:"errors"`
	Refused int           `json:"refused"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// OpsPerSec is Ops over Elapsed.
	OpsPerSec float64 `json:"ops_per_s"`
	// Latency percentiles of the accepted operations.
	P50 time.Duration `json:"p50_ns"`
	P90 time.Duration `json:"p90_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
	// FirstError is the first failure, to explain the errors column.
	FirstError string `json:"first_error,omitempty"`
}

// benchOp is one sender's operation: it returns refused=true when the hub
// refused a commit as wrongEpoch.
type benchOp func(ctx context.Context) (refused bool, err error)

// bencher runs the levels of one bench invocation.
type bencher struct {
	e       *env
	o       *benchOptions
	servers []string
	ca      string
	// prefix makes user names unique to this run.
	prefix string

	mu      sync.Mutex
	closers []func()
}

// bench runs the bench command.
func (e *env) bench(ctx context.Context, o *benchOptions) error {
	b := &bencher{e: e, o: o, servers: o.servers, ca: o.ca}
	defer b.closeAll()
	var rnd [4]byte
	if _, err := crand.Read(rnd[:]); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	b.prefix = "bench" + hex.EncodeToString(rnd[:])
	target := "server " + strings.Join(o.servers, ", ")
	if o.inprocess {
		p, cleanup, err := e.inprocessProvider(ctx, o.regKey)
		if err != nil {
			return err
		}
		defer cleanup()
		b.servers, b.ca = []string{p.ClientURL}, p.caFile
		target = "in-process single-node provider " + p.Domain + " at " + p.ClientURL
	}
	what := "application messages (provisionalMessage), " + strconv.Itoa(o.size) + " bytes, rooms of up to " + strconv.Itoa(o.roomSize) + " senders"
	if o.mode == benchCommits {
		what = "empty commits (updateRoom), one room per sender"
		if o.sharedRoom {
			what = "empty commits (updateRoom), all senders in one room"
		}
	}
	var bounds []string
	if o.duration > 0 {
		bounds = append(bounds, o.duration.String())
	}
	if o.ops > 0 {
		bounds = append(bounds, strconv.Itoa(o.ops)+" operations")
	}
	e.printf("target:  %s\nmode:    %s: %s\nlevels:  %s senders, each for at most %s; GOMAXPROCS %d\n\n",
		target, o.mode, what, joinInts(o.senders), strings.Join(bounds, " or "), runtime.GOMAXPROCS(0))
	if err := e.emit(map[string]any{"target": target, "mode": o.mode, "shared_room": o.sharedRoom, "servers": b.servers,
		"duration_ns": o.duration, "ops": o.ops, "gomaxprocs": runtime.GOMAXPROCS(0)}); err != nil {
		return err
	}
	var rows []benchRow
	for i, n := range o.senders {
		if !e.json {
			fmt.Fprintf(e.stderr, "mimictl: level %d of %d: %d senders: setting up\n", i+1, len(o.senders), n)
		}
		row, err := b.level(ctx, n)
		if err != nil {
			if ctx.Err() != nil && len(rows) > 0 {
				break // interrupted: print what was measured
			}
			return fmt.Errorf("bench with %d senders: %w", n, err)
		}
		if err := e.emit(row); err != nil {
			return err
		}
		rows = append(rows, row)
		b.closeAll()
		if ctx.Err() != nil {
			break
		}
	}
	if e.json {
		return nil
	}
	return printBenchTable(e, rows, o.sharedRoom)
}

// printBenchTable writes the rows as an aligned table, then the first
// error of each row that had errors.
func printBenchTable(e *env, rows []benchRow, refusals bool) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	head := "senders\tops\terrors\t"
	if refusals {
		head += "refused\t"
	}
	fmt.Fprintln(tw, head+"ops/s\tp50\tp90\tp99\tmax\t")
	for _, r := range rows {
		line := fmt.Sprintf("%d\t%d\t%d\t", r.Senders, r.Ops, r.Errors)
		if refusals {
			line += fmt.Sprintf("%d\t", r.Refused)
		}
		fmt.Fprintf(tw, "%s%.1f\t%s\t%s\t%s\t%s\t\n", line, r.OpsPerSec, roundDuration(r.P50), roundDuration(r.P90), roundDuration(r.P99), roundDuration(r.Max))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if r.FirstError != "" {
			fmt.Fprintf(e.stdout, "%d senders, first error: %s\n", r.Senders, r.FirstError)
		}
	}
	return nil
}

// inprocessBench is the provider bench -inprocess starts.
type inprocessBench struct {
	*localProvider
	caFile string
}

// inprocessProvider starts a single-node provider with a temporary data
// folder and a fresh development CA; cleanup stops it and removes the
// folder.
func (e *env) inprocessProvider(ctx context.Context, regKey string) (*inprocessBench, func(), error) {
	dir, err := os.MkdirTemp("", "mimictl-bench-")
	if err != nil {
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	fail := func(err error) (*inprocessBench, func(), error) {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("bench: in-process provider: %w", err)
	}
	ca, err := devca.New()
	if err != nil {
		return fail(err)
	}
	caFile, err := writeCA(ca, dir)
	if err != nil {
		return fail(err)
	}
	p, err := startLocalProvider(ctx, localProviderConfig{Domain: "bench.example", DataDir: dir, CA: ca, RegistrationKey: regKey, Logger: e.providerLogger()})
	if err != nil {
		return fail(err)
	}
	cleanup := func() {
		if err := p.Close(); err != nil {
			e.logger().Warn("stopping the in-process provider", "err", err)
		}
		os.RemoveAll(dir)
	}
	return &inprocessBench{localProvider: p, caFile: caFile}, cleanup, nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func (b *bencher) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.closers {
		c()
	}
	b.closers = nil
}

// newMember registers a throwaway client at server and uploads
// keyPackages KeyPackages.
func (b *bencher) newMember(ctx context.Context, server, name string, keyPackages int) (*client.Member, error) {
	hc, tr, err := httpClient(b.ca, b.o.regKey)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.closers = append(b.closers, tr.CloseIdleConnections)
	b.mu.Unlock()
	tr.MaxIdleConnsPerHost = 4
	// Senders log errors only (everything with -v): a warning per sender
	// cut off at the end of a level is noise.
	log := b.e.providerLogger()
	api, err := client.NewUser(client.UserConfig{BaseURL: server, HTTPClient: hc, Logger: log})
	if err != nil {
		return nil, err
	}
	m, err := client.RegisterMember(ctx, api, name, "bench", client.MemberConfig{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("registering %s at %s: %w", name, server, err)
	}
	if keyPackages > 0 {
		if err := m.UploadKeyPackages(ctx, keyPackages, false); err != nil {
			return nil, fmt.Errorf("KeyPackages of %s: %w", name, err)
		}
	}
	return m, nil
}

// members registers n senders, spread round-robin over the servers, a few
// at a time.
func (b *bencher) members(ctx context.Context, tag string, n, keyPackages int) ([]*client.Member, error) {
	out := make([]*client.Member, n)
	errs := make([]error, n)
	sem := make(chan struct{}, benchSetupParallel)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i], errs[i] = b.newMember(ctx, b.servers[i%len(b.servers)], fmt.Sprintf("%s-%s-%d", b.prefix, tag, i), keyPackages)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registering senders: %w", err)
	}
	return out, nil
}

// level sets up n senders and measures them.
func (b *bencher) level(ctx context.Context, n int) (benchRow, error) {
	setupCtx, cancel := context.WithTimeout(ctx, benchSetupLimit)
	defer cancel()
	tag := fmt.Sprintf("%c%d", b.o.mode[0], n)
	var ops []benchOp
	switch {
	case b.o.mode == benchMessages:
		ms, err := b.members(setupCtx, tag, n, 1)
		if err != nil {
			return benchRow{}, err
		}
		payload := []byte(strings.Repeat("x", b.o.size))
		for g := 0; g*b.o.roomSize < n; g++ {
			group := ms[g*b.o.roomSize : min((g+1)*b.o.roomSize, n)]
			r, err := b.room(setupCtx, fmt.Sprintf("%s-%s-%d", b.prefix, tag, g), group)
			if err != nil {
				return benchRow{}, err
			}
			for _, m := range group {
				ops = append(ops, func(ctx context.Context) (bool, error) { return false, m.Send(ctx, r, payload) })
			}
		}
	case b.o.sharedRoom:
		ms, err := b.members(setupCtx, tag, n, 1)
		if err != nil {
			return benchRow{}, err
		}
		r, err := b.room(setupCtx, b.prefix+"-"+tag, ms)
		if err != nil {
			return benchRow{}, err
		}
		for _, m := range ms {
			ops = append(ops, racingCommit(m, r))
		}
	default:
		ms, err := b.members(setupCtx, tag, n, 0)
		if err != nil {
			return benchRow{}, err
		}
		for i, m := range ms {
			r, err := m.CreateRoom(setupCtx, fmt.Sprintf("%s-%s-%d", b.prefix, tag, i), proto.DefaultPolicy())
			if err != nil {
				return benchRow{}, fmt.Errorf("creating rooms: %w", err)
			}
			ops = append(ops, func(ctx context.Context) (bool, error) { return false, m.CommitPending(ctx, r) })
		}
	}
	if err := ctx.Err(); err != nil {
		return benchRow{}, err
	}
	return b.measure(ctx, ops), nil
}

// racingCommit commits to a room other senders commit to as well: a
// commit refused as wrongEpoch lost the race, and the sender catches up
// (outside the measured time) before its next try.
func racingCommit(m *client.Member, r proto.URI) benchOp {
	behind := false
	return func(ctx context.Context) (bool, error) {
		if behind {
			if _, err := m.Sync(ctx); err != nil {
				return false, fmt.Errorf("catching up: %w", err)
			}
			behind = false
		}
		err := m.CommitPending(ctx, r)
		var re *client.RefusedError
		if errors.As(err, &re) && re.Code == proto.UpdateWrongEpoch {
			behind = true
			return true, nil
		}
		return false, err
	}
}

// room has ms[0] create a room and add the others, and waits until every
// one of them has joined it at its latest epoch.
func (b *bencher) room(ctx context.Context, id string, ms []*client.Member) (proto.URI, error) {
	r, err := ms[0].CreateRoom(ctx, id, proto.DefaultPolicy())
	if err != nil {
		return "", fmt.Errorf("creating a room: %w", err)
	}
	for i := 1; i < len(ms); i += benchAddBatch {
		var users []proto.UserRoles
		for _, m := range ms[i:min(i+benchAddBatch, len(ms))] {
			users = append(users, proto.UserRoles{User: m.User(), Roles: []proto.Role{proto.RoleRegularUser}})
		}
		if err := ms[0].AddUsers(ctx, r, users); err != nil {
			return "", fmt.Errorf("adding senders to %s: %w", r, err)
		}
	}
	want, _ := ms[0].Epoch(r)
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms[1:] {
		wg.Go(func() {
			// Each round waits up to a second; setupCtx bounds the rounds.
			for ctx.Err() == nil {
				if _, err := m.SyncWait(ctx, time.Second); err != nil {
					errs[i] = err
					return
				}
				if e, ok := m.Epoch(r); ok && e == want {
					return
				}
			}
			errs[i] = fmt.Errorf("%s did not reach epoch %d of %s: %w", m.Client(), want, r, ctx.Err())
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("joining %s: %w", r, err)
	}
	return r, nil
}

// measure runs every op in its own goroutine until the duration passes or
// the level made -ops operations, and summarizes the latencies of the
// accepted ones.
func (b *bencher) measure(ctx context.Context, ops []benchOp) benchRow {
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if b.o.duration > 0 {
		runCtx, cancel = context.WithTimeout(ctx, b.o.duration)
	}
	defer cancel()
	// started counts operations begun, so that -ops ends the level.
	var started atomic.Int64
	claim := func() bool { return b.o.ops == 0 || started.Add(1) <= int64(b.o.ops) }
	lat := make([][]time.Duration, len(ops))
	errs, refused := make([]int, len(ops)), make([]int, len(ops))
	firstErr := make([]error, len(ops))
	start := time.Now()
	var wg sync.WaitGroup
	for i, op := range ops {
		wg.Go(func() {
			for runCtx.Err() == nil && claim() {
				t0 := time.Now()
				lost, err := op(runCtx)
				d := time.Since(t0)
				switch {
				case err != nil && runCtx.Err() != nil:
					return // cut off by the end of the level
				case err != nil:
					errs[i]++
					if firstErr[i] == nil {
						firstErr[i] = err
					}
					time.Sleep(benchErrorPause)
				case lost:
					refused[i]++
				default:
					lat[i] = append(lat[i], d)
				}
			}
		})
	}
	wg.Wait()
	return summarize(lat, errs, refused, firstErr, time.Since(start))
}

// summarize builds a row from each sender's latencies and counts.
func summarize(lat [][]time.Duration, errs, refused []int, firstErr []error, elapsed time.Duration) benchRow {
	all := slices.Concat(lat...)
	slices.Sort(all)
	row := benchRow{Senders: len(lat), Ops: len(all), Elapsed: elapsed}
	if elapsed > 0 {
		row.OpsPerSec = float64(len(all)) / elapsed.Seconds()
	}
	if len(all) > 0 {
		row.P50, row.P90, row.P99, row.Max = percentile(all, 50), percentile(all, 90), percentile(all, 99), all[len(all)-1]
	}
	for i := range lat {
		row.Errors += errs[i]
		row.Refused += refused[i]
		if row.FirstError == "" && firstErr[i] != nil {
			row.FirstError = firstErr[i].Error()
		}
	}
	return row
}

// percentile returns the p-th percentile of sorted (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}
