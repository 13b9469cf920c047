package systemtest

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// party is one MLS client of a scenario and everything it observed. Its
// Member is used by one goroutine at a time (the test's, or its own load
// loop), so a write whose outcome was unknown is settled by a Sync the
// party itself runs, and the party knows which of its writes the hub
// accepted.
type party struct {
	name     string
	provider *Provider
	m        *client.Member
	token    string
	// committer: the load loop also commits (empty commits with an
	// UpdatePath) besides sending messages.
	committer bool

	// extra are operations the load loop runs between its own (adding a
	// user while the load goes on).
	extra chan func(ctx context.Context, p *party) error

	mu sync.Mutex
	// events is everything Sync reported, in stream order.
	events []client.Event
	// timeline is the party's epochs in the room: the one it joined at
	// (or created the room at), then one per commit, its own included.
	timeline []uint64
	joined   bool
	// received counts the application messages received, by text.
	received map[string]int
	// pending is the party's write whose outcome is unknown.
	pending *write
}

// write is a message or commit a party submitted.
type write struct {
	kind   string // "send", "commit", "add users"
	text   string // messages
	sender string
	// epoch: the epoch a message was sent in, or the epoch a commit
	// made.
	epoch uint64
}

// newParty registers user/device with p (through a client that prefers
// node prefer) and uploads KeyPackages, a last-resort one among them. The
// member is saved once before it reads anything, so that its Syncs never
// acknowledge the stream: at the end the test reads every client's raw
// stream, with the hub's sequence numbers, from the start.
func newParty(t *testing.T, w *world, p *Provider, prefer *Node, user, device string) *party {
	t.Helper()
	ctx := w.ctx()
	api := w.user(p, prefer)
	m, err := client.RegisterMember(ctx, api, user, device, client.MemberConfig{})
	if err != nil {
		t.Fatalf("register %s/%s at %s: %v", user, device, p.Domain, err)
	}
	if err := m.UploadKeyPackages(ctx, 8, true); err != nil {
		t.Fatalf("KeyPackages of %s: %v", user, err)
	}
	if _, err := m.Save(); err != nil {
		t.Fatalf("save %s: %v", user, err)
	}
	return &party{name: user + "@" + p.Domain, provider: p, m: m, token: api.Token(), received: map[string]int{},
		extra: make(chan func(context.Context, *party) error, 4)}
}

func (p *party) String() string { return p.name }

// record notes events of Sync. Error and gap events fail the test at the
// end (check), not here: the load loop runs outside the test goroutine.
func (p *party) record(room proto.URI, epochBefore uint64, events []client.Event, l *load) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range events {
		p.events = append(p.events, e)
		switch e.Kind {
		case client.EventJoined:
			if e.Room == room {
				p.joined = true
				p.timeline = append(p.timeline, e.Epoch)
			}
		case client.EventCommit:
			if e.Room == room {
				p.timeline = append(p.timeline, e.Epoch)
			}
		case client.EventMessage:
			if e.Room == room {
				p.received[string(e.Text)]++
			}
		case client.EventResolved:
			// Sync settles a write whose outcome was unknown before it
			// reads the stream, so the room was still at epochBefore.
			if pw := p.pending; pw != nil && e.Room == room {
				p.pending = nil
				if e.Err != nil {
					l.note("%s: %s resolved as refused: %v", p, pw.kind, e.Err)
					continue
				}
				if pw.kind == "send" {
					pw.epoch = epochBefore
				} else {
					pw.epoch = epochBefore + 1
					p.timeline = append(p.timeline, pw.epoch)
				}
				l.accepted(pw)
			}
		}
	}
}

// sync runs one Sync (waiting up to wait for the first item).
func (p *party) sync(ctx context.Context, room proto.URI, wait time.Duration, l *load) error {
	before, _ := p.m.Epoch(room)
	events, err := p.m.SyncWait(ctx, wait)
	p.record(room, before, events, l)
	return err
}

// load runs the parties' loops in a room and keeps the books: every write
// the hub acknowledged, every write whose outcome stayed unknown, errors.
type load struct {
	t       *testing.T
	w       *world
	room    proto.URI
	parties []*party

	stop     chan struct{}
	wg       sync.WaitGroup
	ops      atomic.Int64 // acknowledged writes
	finished atomic.Bool
	// quiet holds committers to messages while an extra operation (a
	// commit adding users) runs, so that it does not keep losing the
	// race for the next epoch.
	quiet atomic.Bool

	mu      sync.Mutex
	acked   []*write
	unknown []*write
	notes   []string
	errs    int
	refused int
}

// newLoad prepares the parties' loads. If the test fails before finish,
// the loops are stopped and their notes logged.
func newLoad(t *testing.T, w *world, room proto.URI, parties ...*party) *load {
	l := &load{t: t, w: w, room: room, parties: parties, stop: make(chan struct{})}
	t.Cleanup(func() {
		if !l.finished.Load() && t.Failed() {
			l.finish()
		}
	})
	return l
}

// progress describes each party's state, for a failure message.
func (l *load) progress() string {
	var parts []string
	for _, p := range l.parties {
		parts = append(parts, fmt.Sprintf("%s: joined %v, pending %v, %d acknowledged", p, p.isJoined(), p.hasPending(), l.ackedBy(p)))
	}
	return strings.Join(parts, "; ")
}

// note keeps a line for the test log.
func (l *load) note(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.notes) < 200 {
		l.notes = append(l.notes, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	}
}

func (l *load) accepted(w *write) {
	l.mu.Lock()
	l.acked = append(l.acked, w)
	l.mu.Unlock()
	l.ops.Add(1)
}

// ackedBy counts a party's acknowledged writes.
func (l *load) ackedBy(p *party) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := 0
	for _, w := range l.acked {
		if w.sender == p.name {
			c++
		}
	}
	return c
}

// start starts every party's loop.
func (l *load) start(ctx context.Context) {
	for _, p := range l.parties {
		l.wg.Go(func() { l.loop(ctx, p) })
	}
}

// finish stops the loops and waits for them.
func (l *load) finish() {
	if l.finished.Swap(true) {
		return
	}
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.notes {
		l.t.Log(n)
	}
	l.t.Logf("load: %d writes acknowledged, %d with unknown outcome, %d refused (wrong epoch), %d errors", len(l.acked), len(l.unknown), l.refused, l.errs)
}

// maxLoopOps bounds each party's loop.
const maxLoopOps = 2000

// loop is one party's load: settle what is unknown, sync, then send a
// message (or, for committers, every fourth time, commit), or run an
// extra operation.
func (l *load) loop(ctx context.Context, p *party) {
	for i := 0; i < maxLoopOps; i++ {
		select {
		case <-l.stop:
			l.settle(ctx, p)
			return
		case <-ctx.Done():
			return
		default:
		}
		wait := time.Duration(0)
		if !p.isJoined() {
			wait = time.Second
		}
		if err := p.sync(ctx, l.room, wait, l); err != nil {
			l.failed(p, "sync", err)
			continue
		}
		if p.hasPending() || !p.isJoined() {
			continue
		}
		select {
		case op := <-p.extra:
			l.quiet.Store(true)
			err := op(ctx, p)
			l.quiet.Store(false)
			if err != nil {
				l.failed(p, "extra operation", err)
			}
			continue
		default:
		}
		if p.committer && i%4 == 3 && !l.quiet.Load() {
			l.commit(ctx, p)
		} else {
			l.send(ctx, p, fmt.Sprintf("%s #%d", p.name, i))
		}
	}
}

func (p *party) isJoined() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.joined
}

func (p *party) hasPending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pending != nil
}

// failed counts an error and pauses the party a little.
func (l *load) failed(p *party, what string, err error) {
	l.mu.Lock()
	l.errs++
	l.mu.Unlock()
	l.note("%s: %s: %v", p, what, err)
	time.Sleep(100 * time.Millisecond)
}

// outcome files a write's result: accepted, refused as wrongEpoch (the
// room moved on; the party syncs and goes on), unknown (kept pending until
// a Sync settles it), or failed.
func (l *load) outcome(p *party, w *write, err error) {
	var re *client.RefusedError
	switch {
	case err == nil:
		if w.kind != "send" {
			p.mu.Lock()
			p.timeline = append(p.timeline, w.epoch)
			p.mu.Unlock()
		}
		l.accepted(w)
	case errors.Is(err, client.ErrUnresolved):
		p.mu.Lock()
		p.pending = w
		p.mu.Unlock()
		l.mu.Lock()
		l.unknown = append(l.unknown, w)
		l.mu.Unlock()
		l.note("%s: %s: outcome unknown: %v", p, w.kind, err)
	case errors.As(err, &re) && re.Code == proto.UpdateWrongEpoch:
		l.mu.Lock()
		l.refused++
		l.mu.Unlock()
	default:
		l.failed(p, w.kind, err)
	}
}

func (l *load) send(ctx context.Context, p *party, text string) {
	err := p.m.Send(ctx, l.room, []byte(text))
	epoch, _ := p.m.Epoch(l.room)
	l.outcome(p, &write{kind: "send", text: text, sender: p.name, epoch: epoch}, err)
}

func (l *load) commit(ctx context.Context, p *party) {
	err := p.m.CommitPending(ctx, l.room)
	epoch, _ := p.m.Epoch(l.room)
	l.outcome(p, &write{kind: "commit", sender: p.name, epoch: epoch}, err)
}

// addUsers is an extra operation: add users (retried while the room moves
// on under it).
func (l *load) addUsers(users ...*party) func(ctx context.Context, p *party) error {
	return func(ctx context.Context, p *party) error {
		var roles []proto.UserRoles
		for _, u := range users {
			roles = append(roles, proto.UserRoles{User: u.m.User(), Roles: []proto.Role{proto.RoleRegularUser}})
		}
		for try := 0; try < 20; try++ {
			err := p.m.AddUsers(ctx, l.room, roles)
			epoch, _ := p.m.Epoch(l.room)
			var re *client.RefusedError
			if errors.As(err, &re) && re.Code == proto.UpdateWrongEpoch {
				if err := p.sync(ctx, l.room, 0, l); err != nil {
					return err
				}
				continue
			}
			l.outcome(p, &write{kind: "add users", sender: p.name, epoch: epoch}, err)
			if err == nil || errors.Is(err, client.ErrUnresolved) {
				l.note("%s: added %v at epoch %d (err %v)", p, roles, epoch, err)
				return nil
			}
			time.Sleep(200 * time.Millisecond)
		}
		return errors.New("adding users: refused 20 times")
	}
}

// settle syncs a party until nothing of its is pending (bounded).
func (l *load) settle(ctx context.Context, p *party) {
	deadline := time.Now().Add(wait)
	for p.hasPending() && time.Now().Before(deadline) && ctx.Err() == nil {
		if err := p.sync(ctx, l.room, 0, l); err != nil {
			l.note("%s: settling: %v", p, err)
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// waitFor waits (bounded by wait) until cond holds, checking every 100ms.
// state, if given, describes the situation in the failure message.
func waitFor(t *testing.T, what string, cond func() bool, state ...func() string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			var s []string
			for _, f := range state {
				s = append(s, f())
			}
			t.Fatalf("timed out waiting for %s; %s", what, strings.Join(s, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setupRoom has creator create a room and add the others (in one commit),
// and waits until each of them has joined.
func setupRoom(t *testing.T, w *world, creator *party, others ...*party) proto.URI {
	t.Helper()
	ctx := w.ctx()
	room, err := creator.m.CreateRoom(ctx, "room1", proto.DefaultPolicy())
	if err != nil {
		t.Fatalf("%s creates a room: %v", creator, err)
	}
	creator.joined = true
	creator.timeline = []uint64{0}
	var roles []proto.UserRoles
	for _, o := range others {
		roles = append(roles, proto.UserRoles{User: o.m.User(), Roles: []proto.Role{proto.RoleRegularUser}})
	}
	if err := creator.m.AddUsers(ctx, room, roles); err != nil {
		t.Fatalf("%s adds %v: %v", creator, others, err)
	}
	creator.timeline = append(creator.timeline, 1)
	l := newLoad(t, w, room) // books for the setup's Syncs
	for _, o := range others {
		for i := 0; !o.isJoined(); i++ {
			if i > 60 {
				t.Fatalf("%s did not join %s", o, room)
			}
			if err := o.sync(ctx, room, time.Second, l); err != nil {
				t.Fatalf("%s: sync: %v", o, err)
			}
		}
	}
	return room
}

// hubView watches the room on every serving node of the hub, through
// linearizable GET /v1/rooms reads, and remembers the transcript hash each
// epoch was reported with: two different hashes for one epoch would be an
// epoch accepted twice.
type hubView struct {
	w     *world
	room  proto.URI
	token string

	mu        sync.Mutex
	users     map[*Node]*client.User
	hashes    map[uint64][]byte
	conflicts []string
	reads     int
	stop      chan struct{}
	done      chan struct{}
}

func watchHub(w *world, room proto.URI, token string) *hubView {
	h := &hubView{w: w, room: room, token: token, users: map[*Node]*client.User{}, hashes: map[uint64][]byte{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for {
			for _, n := range w.a.Serving() {
				h.read(n)
			}
			select {
			case <-h.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return h
}

// read asks one node.
func (h *hubView) read(n *Node) (*client.RoomInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h.mu.Lock()
	u, ok := h.users[n]
	if !ok {
		u = h.w.pinnedUser(h.w.a, n, h.token)
		h.users[n] = u
	}
	h.mu.Unlock()
	info, err := u.Room(ctx, h.room)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reads++
	if prev, ok := h.hashes[info.Epoch]; ok && !bytes.Equal(prev, info.TranscriptHash) {
		h.conflicts = append(h.conflicts, fmt.Sprintf("%s reports epoch %d with transcript hash %x, earlier %x", n.ID, info.Epoch, info.TranscriptHash, prev))
	} else if !ok {
		h.hashes[info.Epoch] = info.TranscriptHash
	}
	return info, nil
}

// finish stops watching, reads every serving node once more (they must
// all answer, at the same epoch and hash), and fails the test on any
// conflict. It returns the final epoch.
func (h *hubView) finish(t *testing.T) uint64 {
	t.Helper()
	close(h.stop)
	<-h.done
	var final *client.RoomInfo
	for _, n := range h.w.a.Serving() {
		info, err := h.read(n)
		if err != nil {
			t.Fatalf("final read of %s on %s: %v", h.room, n.ID, err)
		}
		if final != nil && (info.Epoch != final.Epoch || !bytes.Equal(info.TranscriptHash, final.TranscriptHash) || info.Sequence != final.Sequence) {
			t.Errorf("%s: epoch %d seq %d hash %x; another node: epoch %d seq %d hash %x", n.ID, info.Epoch, info.Sequence, info.TranscriptHash, final.Epoch, final.Sequence, final.TranscriptHash)
		}
		final = info
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conflicts {
		t.Errorf("epoch accepted twice: %s", c)
	}
	t.Logf("hub view: %d reads over the run, %d epochs seen, final epoch %d, hub sequence %d", h.reads, len(h.hashes), final.Epoch, final.Sequence)
	return final.Epoch
}

// drain syncs every party until each has received every acknowledged
// message it must see (bounded).
func (l *load) drain(ctx context.Context) {
	t := l.t
	t.Helper()
	deadline := time.Now().Add(wait)
	for _, p := range l.parties {
		for {
			missing := l.missing(p)
			if len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				l.explainMissing(ctx, p)
				t.Fatalf("%s is still missing %d acknowledged messages, e.g. %q", p, len(missing), missing[0])
			}
			if err := p.sync(ctx, l.room, time.Second, l); err != nil {
				t.Logf("%s: drain: %v", p, err)
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
}

// explainMissing logs what a failed drain needs to tell a lost message
// from one that arrived and could not be processed: p's error and gap
// events, and the hub sequence numbers of the room messages in its raw
// stream with the holes between them.
func (l *load) explainMissing(ctx context.Context, p *party) {
	t := l.t
	// The drain's context may be what ran out (a request that hung):
	// look with a fresh one, and keep the provider's goroutines.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	for _, n := range p.provider.Nodes() {
		if !n.Running() {
			continue
		}
		stacks, err := n.Goroutines(ctx)
		t.Logf("goroutines of %s/%s (err %v):\n%s", p.provider.Domain, n.ID, err, stacks)
	}
	var buf bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&buf, 2)
	for g := range strings.SplitSeq(buf.String(), "\n\n") {
		if strings.Contains(g, "mimi-hub/mimi/client.") {
			t.Logf("test goroutine in the client:\n%s", g)
		}
	}
	p.mu.Lock()
	for _, e := range p.events {
		if e.Kind == client.EventError || e.Kind == client.EventGap {
			t.Logf("%s: stream item %d (room %s): %s: %v", p, e.Seq, e.Room, e.Kind, e.Err)
		}
	}
	p.mu.Unlock()
	u := l.w.user(p.provider, nil)
	u.SetToken(p.token)
	var seqs []uint64
	var after uint64
	for page := 0; page < 100; page++ {
		sp, err := u.Stream(ctx, client.StreamOptions{After: after, Limit: 1000})
		if err != nil {
			t.Logf("%s: reading the raw stream: %v", p, err)
			break
		}
		for _, it := range sp.Items {
			after = it.Seq
			if it.Room == l.room && it.Kind == client.ItemMessage {
				seqs = append(seqs, it.HubSeq)
			}
		}
		if len(sp.Items) == 0 || after >= sp.Last {
			break
		}
	}
	var holes []string
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			holes = append(holes, fmt.Sprintf("%d..%d", seqs[i-1], seqs[i]))
		}
	}
	t.Logf("%s: raw stream holds %d room messages, hub sequences %v; jumps: %v", p, len(seqs), seqs, holes)
	for _, o := range l.parties {
		if o != p {
			t.Logf("%s misses %v", o, l.missing(o))
		}
	}
	l.mu.Lock()
	for _, w := range l.acked {
		t.Logf("acknowledged %s by %s at epoch %d: %q", w.kind, w.sender, w.epoch, w.text)
	}
	l.mu.Unlock()
}

// missing lists the acknowledged messages p must have received (sent by
// another party in an epoch p was a member of) and has not.
func (l *load) missing(p *party) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.timeline) == 0 {
		return []string{"(not joined)"}
	}
	joinedAt := p.timeline[0]
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, w := range l.acked {
		if w.kind == "send" && w.sender != p.name && w.epoch >= joinedAt && p.received[w.text] == 0 {
			out = append(out, w.text)
		}
	}
	return out
}

// finalRound has every party send one more message and waits until every
// other party decrypted it: all parties then hold the same epoch secrets,
// which derive from the whole transcript.
func (l *load) finalRound(ctx context.Context) {
	t := l.t
	t.Helper()
	for _, p := range l.parties {
		done := func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return slices.ContainsFunc(l.acked, func(w *write) bool { return w.sender == p.name && strings.HasPrefix(w.text, "last from ") })
		}
		for try := 0; !done(); try++ {
			if try > 20 {
				t.Fatalf("%s could not send its last message", p)
			}
			if err := p.sync(ctx, l.room, 0, l); err != nil {
				t.Logf("%s: sync: %v", p, err)
				continue
			}
			if p.hasPending() {
				continue
			}
			l.send(ctx, p, fmt.Sprintf("last from %s (%d)", p.name, try))
		}
	}
	l.drain(ctx)
}

// check verifies every party's observations against the books and the
// hub's final epoch:
//
//   - no error or gap events (a duplicated or out-of-order commit fails to
//     process; a duplicated message fails to decrypt);
//   - its epochs follow each other one by one from the one it joined at
//     to the hub's final epoch: every accepted commit reached it once, and
//     no epoch was accepted twice;
//   - every acknowledged commit made by another party is in its stream;
//   - it received each message at most once, only messages some party
//     sent, and every acknowledged message sent in an epoch it was in.
func (l *load) check(finalEpoch uint64) {
	t := l.t
	t.Helper()
	l.mu.Lock()
	acked := slices.Clone(l.acked)
	sent := map[string]bool{}
	for _, w := range append(slices.Clone(l.acked), l.unknown...) {
		if w.kind == "send" {
			sent[w.text] = true
		}
	}
	l.mu.Unlock()
	for _, p := range l.parties {
		p.mu.Lock()
		for _, e := range p.events {
			if e.Kind == client.EventError || e.Kind == client.EventGap {
				t.Errorf("%s: stream item %d: %s: %v", p, e.Seq, e.Kind, e.Err)
			}
		}
		tl := p.timeline
		if len(tl) == 0 {
			t.Errorf("%s never joined", p)
			p.mu.Unlock()
			continue
		}
		for i := 1; i < len(tl); i++ {
			if tl[i] != tl[i-1]+1 {
				t.Errorf("%s: epochs %v: %d follows %d", p, tl, tl[i], tl[i-1])
				break
			}
		}
		if last := tl[len(tl)-1]; last != finalEpoch {
			t.Errorf("%s ends at epoch %d, the hub at %d (timeline %v)", p, last, finalEpoch, tl)
		}
		if e, _ := p.m.Epoch(l.room); e != finalEpoch {
			t.Errorf("%s's group is at epoch %d, the hub at %d", p, e, finalEpoch)
		}
		commits := map[uint64]string{}
		for _, e := range p.events {
			if e.Kind == client.EventCommit && e.Room == l.room {
				commits[e.Epoch] = string(e.Sender)
			}
		}
		for _, w := range acked {
			if w.kind != "send" && w.sender != p.name && w.epoch > tl[0] {
				if _, ok := commits[w.epoch]; !ok {
					t.Errorf("%s never saw %s's acknowledged %s of epoch %d", p, w.sender, w.kind, w.epoch)
				}
			}
		}
		for text, n := range p.received {
			if n != 1 {
				t.Errorf("%s received %q %d times", p, text, n)
			}
			if !sent[text] {
				t.Errorf("%s received %q, which nobody sent", p, text)
			}
		}
		p.mu.Unlock()
		if m := l.missing(p); len(m) > 0 {
			t.Errorf("%s lacks %d acknowledged messages: %q", p, len(m), m)
		}
	}
}

// checkStreams reads every party's raw stream from the start (the parties
// never acknowledged it) and checks that the room's items come in strictly
// increasing hub sequence (hub order, no duplicates), and that any two
// parties received each message under the same hub sequence number.
func (l *load) checkStreams(ctx context.Context) {
	t := l.t
	t.Helper()
	seqOf := map[string]uint64{} // message text -> hub sequence
	for _, p := range l.parties {
		u := l.w.user(p.provider, nil)
		u.SetToken(p.token)
		hubSeq := map[uint64]uint64{} // stream seq -> hub seq
		var last, after uint64
		items := 0
		for page := 0; ; page++ {
			if page > 100 {
				t.Fatalf("%s: stream longer than 100 pages", p)
			}
			sp, err := u.Stream(ctx, client.StreamOptions{After: after, Limit: 1000})
			if err != nil {
				t.Fatalf("%s: reading the stream: %v", p, err)
			}
			if sp.Gap {
				t.Errorf("%s: the stream reports dropped items", p)
			}
			for _, it := range sp.Items {
				after = it.Seq
				if it.Room != l.room || it.Kind != client.ItemMessage {
					continue
				}
				items++
				if it.HubSeq <= last {
					t.Errorf("%s: stream item %d has hub sequence %d after %d", p, it.Seq, it.HubSeq, last)
				}
				last = it.HubSeq
				hubSeq[it.Seq] = it.HubSeq
			}
			if len(sp.Items) == 0 || after >= sp.Last {
				break
			}
		}
		p.mu.Lock()
		for _, e := range p.events {
			if e.Kind != client.EventMessage || e.Room != l.room {
				continue
			}
			hs, ok := hubSeq[e.Seq]
			if !ok {
				t.Errorf("%s: message %q (stream item %d) is not in the raw stream", p, e.Text, e.Seq)
				continue
			}
			if prev, ok := seqOf[string(e.Text)]; ok && prev != hs {
				t.Errorf("%s received %q as hub message %d, another party as %d", p, e.Text, hs, prev)
			}
			seqOf[string(e.Text)] = hs
		}
		p.mu.Unlock()
		t.Logf("%s: %d room messages in its stream, in hub order up to %d", p, items, last)
	}
}

// shortHex is a hash for logs.
func shortHex(b []byte) string {
	if len(b) > 6 {
		b = b[:6]
	}
	return hex.EncodeToString(b)
}
