package main

import (
	"context"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/internal/pause"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// benchRooms: rooms of -members clients, built and measured one size at a
// time on a fresh in-process provider.
const benchRooms = "rooms"

// Bounds of the rooms mode.
const (
	maxBenchRoomMembers = 200_000
	// roomsAddBatch is how many members one building commit adds.
	roomsAddBatch = 1000
	// roomsFillBlock: building fills every parent node above blocks of
	// this many leaves (one path commit per block), as a room where
	// members have committed over time; below, paths stay blank, so a
	// commit encrypts to at most this many leaves of its own block.
	roomsFillBlock = 32
	// roomsSamples is how many adds, commits and messages each size
	// measures (the median is reported).
	roomsSamples = 15
	// roomsSizeLimit bounds building and measuring one size.
	roomsSizeLimit = 30 * time.Minute
)

// roomsRow is one size's figures: one table row, one JSON object.
type roomsRow struct {
	Members int `json:"members"`
	// AddE2EMs: adding one member (an Add commit with its Welcome, no
	// tree), the median HTTPS request through Raft, FSM and room engine.
	AddE2EMs float64 `json:"add_e2e_ms"`
	// AddEntryBytes: the Raft entry of that commit.
	AddEntryBytes int `json:"add_entry_bytes"`
	// CommitE2EMs: an empty commit with an UpdatePath by a random member.
	CommitE2EMs float64 `json:"commit_e2e_ms"`
	// MessageE2EMs: an application message.
	MessageE2EMs float64 `json:"message_e2e_ms"`
	// SnapshotBlockMs: the longest the FSM held its lock for a snapshot
	// (Apply waits that long).
	SnapshotBlockMs float64 `json:"snapshot_block_ms"`
	// RestartReadyMs: from starting the stopped provider to ready.
	RestartReadyMs float64 `json:"restart_ready_ms"`
	// BytesPerMember: the heap the room's restored state takes, per
	// member.
	BytesPerMember float64 `json:"bytes_per_member"`
}

// benchRoomsRun measures every size of -members and prints the table.
func (e *env) benchRoomsRun(ctx context.Context, o *benchOptions) error {
	e.printf("target:  a fresh in-process single-node provider per size (Raft with fsync, FSM, room engine)\n")
	e.printf("mode:    rooms of %s members, built with Add commits of %d, every parent above blocks of %d leaves filled; medians of %d\n", joinInts(o.members), roomsAddBatch, roomsFillBlock, roomsSamples)
	e.printf("         GOMAXPROCS %d\n\n", runtime.GOMAXPROCS(0))
	var rows []roomsRow
	for _, n := range o.members {
		sctx, cancel := context.WithTimeout(ctx, roomsSizeLimit)
		row, err := e.benchRoomSize(sctx, o, n)
		cancel()
		if err != nil {
			return fmt.Errorf("bench rooms, %d members: %w", n, err)
		}
		if err := e.emit(row); err != nil {
			return err
		}
		rows = append(rows, row)
	}
	if e.json {
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "members\tadd ms\tadd entry B\tcommit ms\tmessage ms\tsnapshot block ms\trestart ms\tB/member\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%.1f\t%d\t%.1f\t%.1f\t%.2f\t%.0f\t%.0f\t\n", r.Members, r.AddE2EMs, r.AddEntryBytes, r.CommitE2EMs, r.MessageE2EMs, r.SnapshotBlockMs, r.RestartReadyMs, r.BytesPerMember)
	}
	return tw.Flush()
}

// roomBench is one size's provider, client and room.
type roomBench struct {
	e       *env
	api     *client.User
	room    proto.URI
	alice   proto.URI
	group   *mls.Group
	suite   *mls.Suite
	signers []*mls.SigningKey // by leaf
	life    mls.Lifetime
	next    int // the next member's number
}

func (e *env) benchRoomSize(ctx context.Context, o *benchOptions, n int) (roomsRow, error) {
	row := roomsRow{Members: n}
	dir, err := os.MkdirTemp("", "mimictl-bench-rooms-")
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(dir)
	ca, err := devca.New()
	if err != nil {
		return row, err
	}
	caFile, err := writeCA(ca, dir)
	if err != nil {
		return row, err
	}
	fed, err := reservePort()
	if err != nil {
		return row, err
	}
	cfg := localProviderConfig{Domain: "bench.example", DataDir: filepath.Join(dir, "node"), CA: ca, FederationAddr: fed, RegistrationKey: o.regKey, Logger: e.providerLogger()}
	p, err := startLocalProvider(ctx, cfg)
	if err != nil {
		return row, err
	}
	running := p
	defer func() {
		if running != nil {
			running.Close()
		}
	}()
	hc, tr, err := httpClient(caFile, o.regKey)
	if err != nil {
		return row, err
	}
	defer tr.CloseIdleConnections()
	rb := &roomBench{e: e, life: mls.Lifetime{NotBefore: uint64(time.Now().Add(-time.Hour).Unix()), NotAfter: uint64(time.Now().Add(48 * time.Hour).Unix())}}
	// Answers of big rooms are big; requests run long while building.
	if rb.api, err = client.NewUser(client.UserConfig{BaseURL: p.ClientURL, HTTPClient: hc, Timeout: 5 * time.Minute, MaxResponse: 512 << 20, Logger: e.providerLogger()}); err != nil {
		return row, err
	}
	if err := rb.create(ctx); err != nil {
		return row, err
	}
	e.progress("%d members: building the room", n)
	if err := rb.build(ctx, n); err != nil {
		return row, err
	}
	e.progress("%d members: filling the tree's parents", n)
	if err := rb.fill(ctx, n); err != nil {
		return row, err
	}

	e.progress("%d members: measuring", n)
	var adds, commits, messages []time.Duration
	var entries []int
	rng := rand.New(rand.NewPCG(uint64(n), 15))
	for range roomsSamples {
		d, entry, err := rb.add(ctx)
		if err != nil {
			return row, err
		}
		adds, entries = append(adds, d), append(entries, entry)
		l := mls.LeafIndex(1 + rng.IntN(n-1))
		if d, err = rb.pathCommit(ctx, l); err != nil {
			return row, err
		}
		commits = append(commits, d)
		if d, err = rb.message(ctx); err != nil {
			return row, err
		}
		messages = append(messages, d)
	}
	row.AddE2EMs, row.CommitE2EMs, row.MessageE2EMs = medianMs(adds), medianMs(commits), medianMs(messages)
	slices.Sort(entries)
	row.AddEntryBytes = entries[len(entries)/2]

	e.progress("%d members: a new member joins from a Welcome without the tree", n)
	if err := rb.join(ctx, p.ClientURL, hc, rng); err != nil {
		return row, fmt.Errorf("a joiner: %w", err)
	}

	store := p.Hub.Store()
	for range 3 {
		start := time.Now()
		snap, err := store.FSM().Snapshot()
		d := time.Since(start)
		if err != nil {
			return row, fmt.Errorf("snapshot: %w", err)
		}
		snap.Release()
		row.SnapshotBlockMs = max(row.SnapshotBlockMs, ms(d))
	}
	// Apply during a whole Raft snapshot (capture, then encoding and
	// writing while Apply goes on): messages keep being accepted.
	done := make(chan error, 1)
	go func() { done <- store.Node().Snapshot(ctx) }()
	var slowest time.Duration
	sent := 0
	for waiting := true; waiting; {
		select {
		case err := <-done:
			if err != nil {
				return row, fmt.Errorf("snapshot: %w", err)
			}
			waiting = false
		default:
			d, err := rb.message(ctx)
			if err != nil {
				return row, err
			}
			slowest, sent = max(slowest, d), sent+1
			// 50 a second: within a client's request budget.
			if !pause.For(ctx, 20*time.Millisecond) {
				return row, ctx.Err()
			}
		}
	}
	e.progress("%d members: %d messages accepted during a Raft snapshot, the slowest in %.1f ms", n, sent, ms(slowest))

	var enc []byte
	if err := store.FSM().Read(func(s *fsm.State) error {
		enc, _ = s.RoomEncoding(rb.room)
		return nil
	}); err != nil || enc == nil {
		return row, fmt.Errorf("reading the room's state: %v", err)
	}

	// Restart: a snapshot holds the state (as after any shutdown), then
	// the provider starts again from its data folder. The room's heap is
	// measured while it is stopped, so that nothing else allocates.
	if err := store.Node().Snapshot(ctx); err != nil {
		return row, fmt.Errorf("snapshot before restart: %w", err)
	}
	running = nil
	if err := p.Close(); err != nil {
		return row, fmt.Errorf("stopping: %w", err)
	}
	if row.BytesPerMember, err = roomHeap(enc, n); err != nil {
		return row, err
	}
	enc = nil
	runtime.GC()
	start := time.Now()
	p2, err := startLocalProvider(ctx, cfg)
	if err != nil {
		return row, fmt.Errorf("restarting: %w", err)
	}
	row.RestartReadyMs = ms(time.Since(start))
	running = p2
	return row, nil
}

// roomHeap measures the heap a room's state takes once restored, per
// member. A small room is restored several times over (up to 16 MiB of
// state in all) so that the garbage collector's noise does not swamp it,
// and the least of three measurements counts: the provider runs beside it,
// and what it allocates meanwhile only adds.
func roomHeap(enc []byte, members int) (float64, error) {
	copies := max(1, min(1000, (16<<20)/len(enc)))
	best := int64(-1)
	for range 3 {
		rooms := make([]*room.Room, copies)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range rooms {
			rm, err := room.Restore(room.Config{Hub: "bench.example"}, enc)
			if err != nil {
				return 0, fmt.Errorf("restoring the room: %w", err)
			}
			rooms[i] = rm
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(rooms)
		if d := int64(after.HeapAlloc) - int64(before.HeapAlloc); best < 0 || d < best {
			best = d
		}
	}
	runtime.KeepAlive(enc)
	return float64(best) / float64(copies*members), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func medianMs(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return ms(s[len(s)/2])
}

// progress tells a waiting person what is happening (not with -json).
func (e *env) progress(format string, args ...any) {
	if !e.json {
		fmt.Fprintf(e.stderr, "mimictl: "+format+"\n", args...)
	}
}

// create registers alice and has her create the room.
func (rb *roomBench) create(ctx context.Context) error {
	reg, err := rb.api.Register(ctx, "alice", "bench", nil)
	if err != nil {
		return err
	}
	rb.alice = reg.Client
	hub, err := rb.api.Hub(ctx)
	if err != nil {
		return err
	}
	if rb.suite, err = mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite(); err != nil {
		return err
	}
	senders, ok := hub.ExternalSenders[rb.suite.ID()]
	if !ok {
		return fmt.Errorf("the provider has no external sender for %s", rb.suite.ID())
	}
	policy := proto.DefaultPolicy()
	rc := room.RequiredCapabilitiesOf(mls.Extensions{policy.Extension()})
	ext := mls.Extensions{policy.Extension(), {Type: mls.ExtRequiredCapabilities, Data: wire.MustMarshal(&rc)}, {Type: mls.ExtExternalSenders, Data: senders}}
	signer, err := rb.suite.GenerateSigningKey()
	if err != nil {
		return err
	}
	rb.room = proto.RoomURI("bench.example", "big")
	rb.group, err = mls.CreateGroup(rb.suite, signer, mls.CreateOptions{
		GroupOptions: mls.GroupOptions{Config: room.MLSConfig(0), PastEpochs: mls.NoPastEpochs},
		GroupID:      []byte(rb.room), Extensions: ext, Credential: mls.BasicCredential([]byte(rb.alice)),
		Capabilities: client.Capabilities(), Lifetime: rb.life,
	})
	if err != nil {
		return err
	}
	rb.signers = []*mls.SigningKey{signer}
	gi, err := rb.group.GroupInfo(mls.GroupInfoOptions{ExternalPub: true})
	if err != nil {
		return err
	}
	if _, err = rb.api.CreateRoom(ctx, "big", gi, wire.MustMarshal(rb.group.Tree())); err != nil {
		return err
	}
	// Alice's stream would keep every commit of the other members (the
	// bench's puppets): the snapshot would measure her inbox, not the
	// room.
	return rb.api.Unsubscribe(ctx, rb.room)
}

// keyPackages makes count members' KeyPackages and signing keys, in
// parallel.
func (rb *roomBench) keyPackages(count int) ([]*mls.KeyPackage, []*mls.SigningKey, error) {
	kps := make([]*mls.KeyPackage, count)
	signers := make([]*mls.SigningKey, count)
	errs := make([]error, count)
	first := rb.next
	rb.next += count
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < count; i += workers {
				s, err := rb.suite.GenerateSigningKey()
				if err != nil {
					errs[i] = err
					continue
				}
				uri := proto.ClientURI("bench.example", "m"+strconv.Itoa(first+i), "d")
				b, err := mls.NewKeyPackage(rb.suite, s, mls.KeyPackageOptions{Credential: mls.BasicCredential([]byte(uri)), Capabilities: client.Capabilities(), Lifetime: rb.life})
				kps[i], signers[i], errs[i] = b.KeyPackage, s, err
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, nil, err
		}
	}
	return kps, signers, nil
}

// submit commits opts as leaf with its signer, sends the bundle and
// merges it: the request's duration and the Raft entry it made.
func (rb *roomBench) submit(ctx context.Context, leaf mls.LeafIndex, opts mls.CommitOptions) (time.Duration, int, error) {
	if err := rb.group.ActAs(leaf, rb.signers[leaf]); err != nil {
		return 0, 0, err
	}
	opts.GroupInfo.ExternalPub = true
	b, err := rb.group.Commit(opts)
	if err != nil {
		return 0, 0, err
	}
	var resp *proto.UpdateRoomResponse
	d, err := overBudget(ctx, func() (err error) {
		resp, err = rb.api.Commit(ctx, rb.room, &client.CommitBundle{Commit: b.Commit, Welcome: b.Welcome, GroupInfo: b.GroupInfo})
		return err
	})
	if err == nil && resp.Code != proto.UpdateSuccess {
		err = fmt.Errorf("the hub refused: %s: %s", resp.Code, resp.Description)
	}
	if err != nil {
		rb.group.DiscardPendingCommit()
		return 0, 0, err
	}
	rb.group.MergePendingCommit()
	// The entry the client API logs for it (the request id a retry key
	// gives is 32 bytes).
	body := wire.MustMarshal(&proto.UpdateRoomRequest{Message: b.Commit, Welcome: b.Welcome, GroupInfo: b.GroupInfo, RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeByReference}})
	entry, err := fsm.NewCommand(fsm.CmdUpdateRoom, make([]byte, 32), "", &fsm.RoomBody{Room: rb.room, Request: body})
	if err != nil {
		return 0, 0, err
	}
	return d, len(entry), nil
}

// addMembers has alice add count new members (and their users) in one
// commit.
func (rb *roomBench) addMembers(ctx context.Context, count int) (time.Duration, int, error) {
	kps, signers, err := rb.keyPackages(count)
	if err != nil {
		return 0, 0, err
	}
	patch := &proto.ParticipantListPatch{}
	props := []*mls.Proposal{nil}
	for _, kp := range kps {
		user, _ := proto.URI(kp.LeafNode.Credential.Identity).UserOf()
		patch.AddUsers = append(patch.AddUsers, proto.UserRoles{User: user, Roles: []proto.Role{proto.RoleRegularUser}})
		props = append(props, mls.AddProposal(kp))
	}
	props[0] = patch.Proposal()
	d, entry, err := rb.submit(ctx, 0, mls.CommitOptions{Proposals: props})
	if err != nil {
		return 0, 0, err
	}
	// Adds fill the leftmost free leaves and the room only grows here,
	// so the new members take the leaves after the last, in order.
	rb.signers = append(rb.signers, signers...)
	if rb.group.Tree().NumMembers() != len(rb.signers) {
		return 0, 0, fmt.Errorf("the tree has %d members, the bench %d", rb.group.Tree().NumMembers(), len(rb.signers))
	}
	return d, entry, nil
}

// build grows the room to n members.
func (rb *roomBench) build(ctx context.Context, n int) error {
	for len(rb.signers) < n {
		if _, _, err := rb.addMembers(ctx, min(roomsAddBatch, n-len(rb.signers))); err != nil {
			return err
		}
	}
	return nil
}

// fill has one member of every block of roomsFillBlock leaves commit a
// path, blocks in bit-reversed order so that each commit finds most of
// its copath already filled.
func (rb *roomBench) fill(ctx context.Context, n int) error {
	blocks := (n + roomsFillBlock - 1) / roomsFillBlock
	width := bits.Len(uint(blocks - 1))
	for i := range 1 << width {
		b := int(bits.Reverse(uint(i)) >> (bits.UintSize - width))
		if width == 0 {
			b = 0
		}
		if b >= blocks {
			continue
		}
		if _, err := rb.pathCommit(ctx, mls.LeafIndex(b*roomsFillBlock)); err != nil {
			return err
		}
	}
	return nil
}

// add measures adding one member.
func (rb *roomBench) add(ctx context.Context) (time.Duration, int, error) {
	return rb.addMembers(ctx, 1)
}

// pathCommit measures an empty commit with an UpdatePath by leaf.
func (rb *roomBench) pathCommit(ctx context.Context, leaf mls.LeafIndex) (time.Duration, error) {
	d, _, err := rb.submit(ctx, leaf, mls.CommitOptions{ForcePath: true})
	return d, err
}

// message measures an application message from alice.
func (rb *roomBench) message(ctx context.Context) (time.Duration, error) {
	if err := rb.group.ActAs(0, rb.signers[0]); err != nil {
		return 0, err
	}
	m, err := rb.group.Encrypt(make([]byte, 64), room.SenderHint(rb.alice))
	if err != nil {
		return 0, err
	}
	var resp *proto.UpdateRoomResponse
	d, err := overBudget(ctx, func() (err error) {
		resp, err = rb.api.SendMessage(ctx, rb.room, m)
		return err
	})
	if err == nil && resp.Code != proto.UpdateSuccess {
		err = fmt.Errorf("the hub refused the message: %s: %s", resp.Code, resp.Description)
	}
	return d, err
}

// join checks the whole path a real joiner takes: a registered client
// (mimi/client.Member) uploads a KeyPackage, alice claims it through the
// room and adds it with a Welcome that carries no tree, two random members
// commit, and the joiner syncs: it fetches the tree of its Welcome's
// epoch (GET .../tree), joins, processes the two commits and must then
// agree with the hub on the epoch and the member count.
func (rb *roomBench) join(ctx context.Context, base string, hc *http.Client, rng *rand.Rand) error {
	api, err := client.NewUser(client.UserConfig{BaseURL: base, HTTPClient: hc, Timeout: 5 * time.Minute, MaxResponse: 512 << 20, Logger: rb.e.providerLogger()})
	if err != nil {
		return err
	}
	m, err := client.RegisterMember(ctx, api, "joiner", "bench", client.MemberConfig{Logger: rb.e.providerLogger()})
	if err != nil {
		return err
	}
	if err := m.UploadKeyPackages(ctx, 1, false); err != nil {
		return err
	}
	claim, err := rb.api.ClaimKeyMaterial(ctx, client.ClaimRequest{Users: []proto.URI{m.User()}, Room: rb.room, CipherSuites: []mls.CipherSuite{rb.suite.ID()}})
	if err != nil {
		return err
	}
	if len(claim.Users) != 1 || len(claim.Users[0].Clients) != 1 || claim.Users[0].Clients[0].KeyPackage == nil {
		return fmt.Errorf("claiming the joiner's KeyPackage: %+v", claim.Users)
	}
	patch := &proto.ParticipantListPatch{AddUsers: []proto.UserRoles{{User: m.User(), Roles: []proto.Role{proto.RoleRegularUser}}}}
	if _, _, err := rb.submit(ctx, 0, mls.CommitOptions{Proposals: []*mls.Proposal{patch.Proposal(), mls.AddProposal(claim.Users[0].Clients[0].KeyPackage.KeyPackage)}}); err != nil {
		return err
	}
	rb.signers = append(rb.signers, nil) // the joiner's leaf: never acted as
	for range 2 {
		if _, err := rb.pathCommit(ctx, mls.LeafIndex(1+rng.IntN(len(rb.signers)-2))); err != nil {
			return err
		}
	}
	events, err := m.Sync(ctx)
	if err != nil {
		return err
	}
	if len(events) == 0 || events[0].Kind != client.EventJoined {
		return fmt.Errorf("the joiner's first event is not its joining: %+v", events)
	}
	epoch, ok := m.Epoch(rb.room)
	members, err := m.Members(rb.room)
	if !ok || err != nil || epoch != rb.group.Epoch() || len(members) != rb.group.Tree().NumMembers() {
		return fmt.Errorf("the joiner is at epoch %d with %d members, the room at %d with %d (%v)", epoch, len(members), rb.group.Epoch(), rb.group.Tree().NumMembers(), err)
	}
	return nil
}

// overBudget runs a request, and again after the wait a 429 asks for (the
// provider's per-client budget: a bench sends faster than a person), at
// most 20 times. It returns the duration of the attempt that was answered.
func overBudget(ctx context.Context, send func() error) (time.Duration, error) {
	for try := 1; ; try++ {
		start := time.Now()
		err := send()
		d := time.Since(start)
		wait := client.RetryAfter(err)
		if err == nil || !client.IsKind(err, client.KindLimit) || wait <= 0 || try == 20 {
			return d, err
		}
		if !pause.For(ctx, wait) {
			return d, ctx.Err()
		}
	}
}
