package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// fakeSender records deliveries and fails as told.
type fakeSender struct {
	mu       sync.Mutex
	fail     []error // errors to return, in order, before succeeding
	calls    int
	consent  []proto.ConsentEntry
	fanouts  []fanoutCall
	removals []proto.RemoveClientsRequest
	done     chan struct{}
}

type fanoutCall struct {
	peer     string
	room     proto.URI
	firstSeq uint64
	n        int
	exclude  []proto.URI
}

func (f *fakeSender) next() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(f.fail) > 0 {
		err := f.fail[0]
		f.fail = f.fail[1:]
		return err
	}
	return nil
}

func (f *fakeSender) RequestConsent(_ context.Context, _ string, e *proto.ConsentEntry) error {
	if err := f.next(); err != nil {
		return err
	}
	f.mu.Lock()
	f.consent = append(f.consent, *e)
	f.mu.Unlock()
	select {
	case f.done <- struct{}{}:
	default:
	}
	return nil
}

func (f *fakeSender) UpdateConsent(ctx context.Context, d string, e *proto.ConsentEntry) error {
	return f.RequestConsent(ctx, d, e)
}

func (f *fakeSender) RemoveClients(_ context.Context, room proto.URI, req *proto.RemoveClientsRequest) error {
	if err := f.next(); err != nil {
		return err
	}
	f.mu.Lock()
	f.removals = append(f.removals, *req)
	f.mu.Unlock()
	return nil
}

func (f *fakeSender) Fanout(_ context.Context, peer string, room proto.URI, firstSeq uint64, messages [][]byte, exclude []proto.URI) error {
	if err := f.next(); err != nil {
		return err
	}
	for _, m := range messages {
		var fm proto.FanoutMessage
		if err := wire.Unmarshal(m, &fm); err != nil {
			return permanent(err)
		}
	}
	f.mu.Lock()
	f.fanouts = append(f.fanouts, fanoutCall{peer, room, firstSeq, len(messages), exclude})
	f.mu.Unlock()
	return nil
}

type retryLater struct{ after time.Duration }

func (e retryLater) Error() string { return "503 busy" }

type refusedForGood struct{}

func (refusedForGood) Error() string   { return "403 forbidden" }
func (refusedForGood) Permanent() bool { return true }

func startStore(t *testing.T) *Store {
	t.Helper()
	f, err := fsm.New(fsm.Config{Domain: "a.example"})
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, testConfig(t, t.TempDir()), f, true)
	return NewStore(n, f, "a.example")
}

// waitOutbox waits until s's outbox holds n items.
func waitOutbox(t *testing.T, ctx context.Context, s *Store, n int) {
	t.Helper()
	for {
		changed := s.Changed()
		if outboxLen(t, s) == n {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("the outbox holds %d items, want %d", outboxLen(t, s), n)
		}
	}
}

func outboxLen(t *testing.T, s *Store) int {
	n := 0
	_ = s.Read(context.Background(), false, func(st *fsm.State) error {
		for _, q := range st.Outbox(1000) {
			n += len(q.Items)
		}
		return nil
	})
	return n
}

// TestDeliveryRetriesThenDelivers queues a consent request for b.example,
// has the peer fail twice (honouring its Retry-After) and checks the item is
// delivered once and marked delivered through Raft.
func TestDeliveryRetriesThenDelivers(t *testing.T) {
	s := startStore(t)
	ctx := ctxTimeout(t, 30*time.Second)
	h := sha256.Sum256([]byte("tok"))
	alice := proto.ClientURI("a.example", "alice", "phone")
	mustApply(t, s, fsm.CmdRegister, &fsm.RegisterBody{Client: alice, TokenHash: h[:]})
	mustApply(t, s, fsm.CmdConsent, &fsm.ConsentBody{Entry: proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: proto.UserURI("a.example", "alice"), Target: proto.UserURI("b.example", "bob")}})
	if n := outboxLen(t, s); n != 1 {
		t.Fatalf("%d outbox items, want 1", n)
	}

	sender := &fakeSender{fail: []error{retryLater{10 * time.Millisecond}, errors.New("connection refused")}, done: make(chan struct{}, 1)}
	var retryAfterCalls int
	d := NewDelivery(s, sender, DeliveryConfig{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Logger: testLogger(t),
		RetryAfter: func(err error) time.Duration {
			var r retryLater
			if errors.As(err, &r) {
				retryAfterCalls++
				return r.after
			}
			return 0
		}})
	go d.Run(ctx)
	select {
	case <-sender.done:
	case <-ctx.Done():
		t.Fatal("nothing delivered")
	}
	waitStats(t, ctx, d, func(st PeerStats) bool { return st.Delivered == 1 })
	waitOutbox(t, ctx, s, 0) // the delivery is recorded through Raft
	st := peerTotals(d, "b.example")
	if sender.calls != 3 || st.Delivered != 1 || st.Failures != 2 || retryAfterCalls == 0 {
		t.Fatalf("calls %d, stats %+v, Retry-After consulted %d times", sender.calls, st, retryAfterCalls)
	}
	if len(sender.consent) != 1 || sender.consent[0].Target != proto.UserURI("b.example", "bob") {
		t.Fatalf("delivered %+v", sender.consent)
	}
}

func TestDeliveryDropsWhatAPeerRefusesForGood(t *testing.T) {
	s := startStore(t)
	ctx := ctxTimeout(t, 30*time.Second)
	h := sha256.Sum256([]byte("tok"))
	mustApply(t, s, fsm.CmdRegister, &fsm.RegisterBody{Client: proto.ClientURI("a.example", "alice", "phone"), TokenHash: h[:]})
	for _, target := range []string{"bob", "carl"} {
		mustApply(t, s, fsm.CmdConsent, &fsm.ConsentBody{Entry: proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: proto.UserURI("a.example", "alice"), Target: proto.UserURI("b.example", target)}})
	}
	sender := &fakeSender{fail: []error{refusedForGood{}}, done: make(chan struct{}, 1)}
	d := NewDelivery(s, sender, DeliveryConfig{MinBackoff: time.Millisecond, Logger: testLogger(t)})
	go d.Run(ctx)
	waitStats(t, ctx, d, func(st PeerStats) bool { return st.Delivered+st.Dropped == 2 })
	st := peerTotals(d, "b.example")
	if st.Dropped != 1 || st.Delivered != 1 || len(sender.consent) != 1 || sender.consent[0].Target != proto.UserURI("b.example", "carl") {
		t.Fatalf("stats %+v, delivered %+v", st, sender.consent)
	}
}

// TestDeliveryBatches checks how outbox items become requests: consecutive
// messages of one room go together; a change of room, a sequence gap or
// other exclusions start a new request.
func TestDeliveryBatches(t *testing.T) {
	s, _ := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	signer, _ := s.GenerateSigningKey()
	g, err := mls.CreateGroup(s, signer, mls.CreateOptions{Credential: mls.BasicCredential([]byte("x"))})
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := g.Encrypt([]byte("m"), nil)
	fm := wire.MustMarshal(&proto.FanoutMessage{Message: msg, Timestamp: 1})
	r1, r2 := proto.RoomURI("a.example", "one"), proto.RoomURI("a.example", "two")
	ex := []proto.URI{proto.ClientURI("b.example", "u", "d")}
	items := []fsm.OutItem{
		{ID: 1, Kind: fsm.OutFanout, Room: r1, Seq: 5, Data: fm},
		{ID: 2, Kind: fsm.OutFanout, Room: r1, Seq: 6, Data: fm},
		{ID: 3, Kind: fsm.OutFanout, Room: r1, Seq: 7, Data: fm, Exclude: ex},
		{ID: 4, Kind: fsm.OutFanout, Room: r2, Seq: 1, Data: fm},
		{ID: 5, Kind: fsm.OutFanout, Room: r2, Seq: 3, Data: fm},
	}
	sender := &fakeSender{}
	if got, want := requestSizes(t, NewDelivery(nil, sender, DeliveryConfig{}), items), []int{2, 1, 1, 1}; !equalInts(got, want) {
		t.Fatalf("requests of %v items, want %v", got, want)
	}
	if c := sender.fanouts[1]; c.firstSeq != 7 || len(c.exclude) != 1 {
		t.Fatalf("second request %+v", c)
	}

	// Batches are cut by bytes too; a message larger than the bound goes
	// alone.
	sized := func(n int) []byte {
		return wire.MustMarshal(&proto.FanoutMessage{Message: &mls.Message{Version: mls.MLS10, WireFormat: mls.WirePrivateMessage,
			Private: &mls.PrivateMessage{GroupID: []byte(r1), Epoch: 1, ContentType: mls.ContentApplication, EncryptedSenderData: []byte("s"),
				Ciphertext: make([]byte, n)}}, Timestamp: 1})
	}
	big := sized(3000)
	items = nil
	for i := range 6 {
		items = append(items, fsm.OutItem{ID: uint64(i + 1), Kind: fsm.OutFanout, Room: r1, Seq: uint64(i + 1), Data: big})
	}
	items[3].Data = sized(13_000) // larger than the bound
	if got, want := requestSizes(t, NewDelivery(nil, &fakeSender{}, DeliveryConfig{BatchBytes: 2 * len(big)}), items), []int{2, 1, 1, 2}; !equalInts(got, want) {
		t.Fatalf("requests of %v items, want %v (at most two messages' bytes each)", got, want)
	}
}

// requestSizes delivers items to b.example (through a *fakeSender) and
// returns how many each request covered.
func requestSizes(t *testing.T, d *Delivery, items []fsm.OutItem) []int {
	t.Helper()
	done, dropped, err := d.deliver(context.Background(), "b.example", items)
	if err != nil || done != len(items) || dropped != 0 {
		t.Fatalf("delivered %d of %d items (%d dropped): %v", done, len(items), dropped, err)
	}
	var got []int
	for _, c := range d.sender.(*fakeSender).fanouts {
		got = append(got, c.n)
	}
	return got
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func mustApply(t *testing.T, s *Store, typ fsm.CommandType, body wire.Encoder) {
	t.Helper()
	res, err := s.Apply(context.Background(), typ, nil, "", body)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatalf("%s: %v", typ, err)
	}
}

// waitStats waits until b.example's stats, with those of forgotten peers
// (b.example is the only peer), satisfy ok.
func waitStats(t *testing.T, ctx context.Context, d *Delivery, ok func(PeerStats) bool) {
	t.Helper()
	for {
		changed := d.statsChanged()
		if ok(peerTotals(d, "b.example")) {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("stats never got there: %+v", peerTotals(d, "b.example"))
		}
	}
}

// peerTotals is peer's counts while its loop runs plus those of the
// forgotten peers: the whole count when peer is the only one.
func peerTotals(d *Delivery, peer string) PeerStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.forgotten
	if s, ok := d.stats[peer]; ok {
		st.Delivered += s.Delivered
		st.Dropped += s.Dropped
		st.Failures += s.Failures
		st.LastError, st.RetryAt = s.LastError, s.RetryAt
	}
	return st
}

// TestDeliveryForgetsDrainedPeers: once a peer's queue is delivered (and,
// numbered state-wide, forgotten by the state), the worker keeps nothing
// for it either (no loop, no stats; its counts join Forgotten), over
// several rounds of many peers, so its memory is bounded by the peers
// something waits for. A peer queued to again gets a loop again.
func TestDeliveryForgetsDrainedPeers(t *testing.T) {
	for _, wide := range []bool{false, true} {
		t.Run(fmt.Sprintf("state-wide=%v", wide), func(t *testing.T) { deliveryForgets(t, wide) })
	}
}

func deliveryForgets(t *testing.T, wide bool) {
	s := startStore(t)
	ctx := ctxTimeout(t, 60*time.Second)
	h := sha256.Sum256([]byte("tok"))
	mustApply(t, s, fsm.CmdRegister, &fsm.RegisterBody{Client: proto.ClientURI("a.example", "alice", "phone"), TokenHash: h[:]})
	if wide {
		mustApply(t, s, fsm.CmdOutboxIDs, nil)
	}
	// One in three first attempts fails, so some peers have failures and
	// back off before their queue empties.
	sender := &fakeSender{fail: []error{errors.New("connection refused"), nil, nil, errors.New("connection refused")}, done: make(chan struct{}, 1)}
	d := NewDelivery(s, sender, DeliveryConfig{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Logger: testLogger(t)})
	go d.Run(ctx)
	var want uint64
	for round, peers := range []int{20, 5, 20} {
		for i := range peers {
			target := proto.UserURI(fmt.Sprintf("p%02d.example", i), fmt.Sprintf("u%d", round))
			mustApply(t, s, fsm.CmdConsent, &fsm.ConsentBody{Entry: proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: proto.UserURI("a.example", "alice"), Target: target}})
		}
		want += uint64(peers)
		for {
			changed := d.statsChanged()
			var queues int
			_ = s.Read(ctx, false, func(st *fsm.State) error { queues = len(st.OutboxDomains()); return nil })
			d.mu.Lock()
			running, stats, gone := len(d.running), len(d.stats), d.forgotten
			d.mu.Unlock()
			if queues == 0 && running == 0 && stats == 0 && gone.Delivered == want {
				break
			}
			select {
			case <-changed:
			case <-time.After(20 * time.Millisecond): // the state's changes do not wake this wait
			case <-ctx.Done():
				t.Fatalf("round %d: %d queues, %d loops, stats for %d peers, forgotten %+v; want none and %d delivered", round, queues, running, stats, gone, want)
			}
		}
	}
	if gone := d.Forgotten(); gone.Failures == 0 || len(d.Stats()) != 0 {
		t.Fatalf("forgotten %+v, stats %v: want failures counted and no stats kept", gone, d.Stats())
	}
	var queues, items int
	_ = s.Read(ctx, false, func(st *fsm.State) error {
		c := st.Counts()
		queues, items = len(st.OutboxDepth()), c.OutboxItems
		return nil
	})
	if want := map[bool]int{false: 20, true: 0}[wide]; queues != want || items != 0 {
		t.Fatalf("the state keeps %d queues (%d items), want %d", queues, items, want)
	}
}
