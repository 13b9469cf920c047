package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// heldWorld is a room of Alice (who commits) and Bob (who sends) at the
// fake, Bob following Alice's commits. Unless hostedHere, the members
// take the room for another hub's (otherHub): their own stream's end then
// says nothing of that hub's order, and only a later message releases a
// held epoch.
type heldWorld struct {
	f          *fakeAPI
	room       proto.URI
	alice, bob *Member
}

// otherHub makes m take every room for one another provider hosts.
func otherHub(m *Member) *Member {
	m.hostsHere = func(proto.URI) bool { return false }
	return m
}

func newHeldWorld(t *testing.T) *heldWorld { return newHeldWorldAt(t, false) }

func newHeldWorldAt(t *testing.T, hostedHere bool) *heldWorld {
	t.Helper()
	f := newFakeAPI(t)
	w := &heldWorld{f: f, alice: newTestMember(t, f, "alice", "phone"), bob: newTestMember(t, f, "bob", "laptop")}
	if !hostedHere {
		otherHub(w.alice)
		otherHub(w.bob)
	}
	var err error
	w.room, err = w.alice.CreateRoom(context.Background(), "held", proto.DefaultPolicy())
	must(t, err, "create")
	must(t, w.alice.AddUsers(context.Background(), w.room, []proto.UserRoles{{User: w.bob.User(), Roles: []proto.Role{proto.RoleRegularUser}}}), "add bob")
	syncOK(t, w.bob)
	return w
}

// withhold has m encrypt a message of its current epoch that the hub
// never sees: what the receiver's group can still decrypt later shows
// which epochs it keeps.
func withhold(t *testing.T, m *Member, r proto.URI) *mls.Message {
	t.Helper()
	msg, err := m.rooms[r].group.Encrypt([]byte("withheld"), room.SenderHint(m.client))
	must(t, err, "encrypt a withheld message")
	return msg
}

// reload saves m and loads it again, as a restarting client does (with
// m's view of which rooms its provider hosts).
func reload(t *testing.T, f *fakeAPI, m *Member) *Member {
	t.Helper()
	state, err := m.Save()
	must(t, err, "save")
	out, err := LoadMember(f.user(t, func(c *UserConfig) { c.Tries = 1 }), state, MemberConfig{})
	must(t, err, "load")
	out.hostsHere = m.hostsHere
	return out
}

// commitTimes has m commit n times in r without reading its stream.
func commitTimes(t *testing.T, m *Member, r proto.URI, n int) {
	t.Helper()
	for i := range n {
		must(t, m.CommitPending(context.Background(), r), fmt.Sprintf("%s's commit %d", m.User(), i))
	}
}

// held returns the epochs m's group of r holds.
func held(m *Member, r proto.URI) []uint64 { return m.rooms[r].group.HeldEpochs() }

// TestMemberHoldsOwnEpochs has Alice commit k times without reading her
// stream while Bob, who follows, sends one message before each of her
// commits; Alice then syncs. Every message of an epoch at most
// mls.MaxPastEpochs before hers is an EventMessage of its own epoch; older
// ones are error events wrapping mls.ErrEpochNotRetained. She still holds
// the epoch her last commit ended until a message sent after it reaches
// her; then only the default past epochs remain. Alice saves and restores
// halfway through her commits.
func TestMemberHoldsOwnEpochs(t *testing.T) {
	ctx := context.Background()
	for _, k := range []int{0, 1, 2, 3, 7, mls.MaxPastEpochs, mls.MaxPastEpochs + 3} {
		t.Run(fmt.Sprintf("%d commits", k), func(t *testing.T) {
			w := newHeldWorld(t)
			first, _ := w.alice.Epoch(w.room)
			withheld := map[uint64]*mls.Message{}
			for i := range k {
				syncOK(t, w.bob)
				e, _ := w.bob.Epoch(w.room)
				must(t, w.bob.Send(ctx, w.room, fmt.Appendf(nil, "epoch %d", e)), "bob sends")
				withheld[e] = withhold(t, w.bob, w.room)
				must(t, w.alice.CommitPending(ctx, w.room), fmt.Sprintf("alice's commit %d", i))
				if i == k/2 {
					w.alice = reload(t, w.f, w.alice)
				}
			}
			cur, _ := w.alice.Epoch(w.room)
			if cur != first+uint64(k) {
				t.Fatalf("alice is at epoch %d, want %d", cur, first+uint64(k))
			}

			events, err := w.alice.Sync(ctx)
			must(t, err, "alice syncs")
			if len(events) != k {
				t.Fatalf("alice: [%s], want %d events", kinds(events), k)
			}
			for i, ev := range events {
				e := first + uint64(i)
				if cur-e > mls.MaxPastEpochs {
					if ev.Kind != EventError || !errors.Is(ev.Err, mls.ErrEpochNotRetained) {
						t.Fatalf("a message of epoch %d at epoch %d, beyond the cap: %s %v, want an error wrapping ErrEpochNotRetained", e, cur, ev.Kind, ev.Err)
					}
					continue
				}
				if ev.Kind != EventMessage || ev.Epoch != e || ev.Sender != w.bob.Client() || string(ev.Text) != fmt.Sprintf("epoch %d", e) {
					t.Fatalf("event %d: %s of epoch %d %q (%v), want bob's message of epoch %d", i, ev.Kind, ev.Epoch, ev.Text, ev.Err, e)
				}
			}
			// Bob's last message came before her last commit, not after.
			if want := []uint64{cur - 1}; k > 0 && !slices.Equal(held(w.alice, w.room), want) {
				t.Fatalf("alice holds %v, want %v", held(w.alice, w.room), want)
			}

			// A message Bob sends after all her commits: her stream passed them.
			syncOK(t, w.bob)
			must(t, w.bob.Send(ctx, w.room, []byte("after")), "bob sends after")
			if ev := expectMessage(t, syncOK(t, w.alice), w.bob, "after"); ev.Epoch != cur {
				t.Fatalf("bob's last message has epoch %d, want %d", ev.Epoch, cur)
			}
			if h := held(w.alice, w.room); len(h) != 0 {
				t.Fatalf("alice still holds %v", h)
			}
			g := w.alice.rooms[w.room].group
			for e := first; e < cur; e++ {
				_, err := g.Process(withheld[e])
				if kept := cur-e <= mls.DefaultPastEpochs; kept != (err == nil) || !kept && !errors.Is(err, mls.ErrEpochNotRetained) {
					t.Fatalf("after the release, a withheld message of epoch %d at epoch %d: %v (kept: %v)", e, cur, err, kept)
				}
			}
		})
	}
}

// TestMemberHeldEpochsHostile checks what others can do about held epochs:
// another member's commits make the member hold nothing, and an item that
// only claims a later epoch (forged by a provider or a peer) releases
// nothing.
func TestMemberHeldEpochsHostile(t *testing.T) {
	ctx := context.Background()
	t.Run("others' commits hold nothing", func(t *testing.T) {
		w := newHeldWorld(t)
		e, _ := w.alice.Epoch(w.room)
		late := withhold(t, w.bob, w.room)
		commitTimes(t, w.bob, w.room, 4)
		if got := kinds(syncOK(t, w.alice)); got != "commit,commit,commit,commit" {
			t.Fatalf("alice: [%s], want bob's four commits", got)
		}
		if h := held(w.alice, w.room); len(h) != 0 {
			t.Fatalf("bob's commits made alice hold %v", h)
		}
		if _, err := w.alice.rooms[w.room].group.Process(late); !errors.Is(err, mls.ErrEpochNotRetained) {
			t.Fatalf("a message of epoch %d after four of bob's commits: %v, want ErrEpochNotRetained", e, err)
		}
	})
	t.Run("a forged later item releases nothing", func(t *testing.T) {
		w := newHeldWorld(t)
		e, _ := w.alice.Epoch(w.room)
		late := withhold(t, w.bob, w.room)
		commitTimes(t, w.alice, w.room, 3)
		cur, _ := w.alice.Epoch(w.room)
		// A copy of Bob's message claiming Alice's current epoch, then
		// the message itself, late: the provider delivers both.
		forged, err := mls.DecodeMessage(wire.MustMarshal(late))
		must(t, err, "decode")
		forged.Private.Epoch = cur
		w.f.mu.Lock()
		alice := w.f.clients[w.alice.Client()]
		w.f.push(alice, streamItemJSON{Kind: "message", Room: string(w.room), Data: wire.MustMarshal(forged)})
		w.f.push(alice, streamItemJSON{Kind: "message", Room: string(w.room), Data: wire.MustMarshal(late)})
		w.f.mu.Unlock()
		events, err := w.alice.Sync(ctx)
		must(t, err, "alice syncs")
		if len(events) != 2 || events[0].Kind != EventError || events[1].Kind != EventMessage || events[1].Epoch != e {
			t.Fatalf("alice: [%s] %+v, want an error for the forgery and bob's message of epoch %d", kinds(events), events, e)
		}
		if h, want := held(w.alice, w.room), []uint64{e, e + 1, e + 2}; !slices.Equal(h, want) {
			t.Fatalf("alice holds %v, want %v", h, want)
		}
	})
}

// TestMemberEchoReleases has a hub echo Alice's own commit to her (a hub
// that implements only the seed may): she recognizes it as hers, and it
// shows her stream passed that commit and everything before it, so she
// releases exactly the epochs up to the one it ended.
func TestMemberEchoReleases(t *testing.T) {
	w := newHeldWorld(t)
	e, _ := w.alice.Epoch(w.room)
	commitTimes(t, w.alice, w.room, 3)
	w.f.mu.Lock()
	var commits [][]byte // Alice's commits, as Bob's stream has them
	for _, it := range w.f.clients[w.bob.Client()].stream {
		if it.Kind == "message" {
			commits = append(commits, it.Data)
		}
	}
	if len(commits) != 3 {
		w.f.mu.Unlock()
		t.Fatalf("bob's stream has %d of alice's commits, want 3", len(commits))
	}
	w.f.push(w.f.clients[w.alice.Client()], streamItemJSON{Kind: "message", Room: string(w.room), Data: commits[1]})
	w.f.mu.Unlock()
	if events := syncOK(t, w.alice); len(events) != 0 {
		t.Fatalf("alice: [%s] for the echo of her own commit", kinds(events))
	}
	if h, want := held(w.alice, w.room), []uint64{e + 2}; !slices.Equal(h, want) {
		t.Fatalf("after the echo of the commit ending epoch %d, alice holds %v, want %v", e+1, h, want)
	}
}

// TestMemberDrainReleasesLocalEpochs: in a room its own provider hosts, a
// member that read its stream to the end releases the epochs its commits
// ended, even where nobody else speaks, and not before it has read the
// messages sent in them. Bob sends one message before each of Alice's k
// commits (Alice not reading); her next sync decrypts all of them with the
// held epochs and then holds nothing. With nobody else speaking, a sync
// after more commits releases them too. A reload halfway changes nothing.
func TestMemberDrainReleasesLocalEpochs(t *testing.T) {
	ctx := context.Background()
	for _, k := range []int{1, 3, mls.MaxPastEpochs} {
		t.Run(fmt.Sprintf("%d commits", k), func(t *testing.T) {
			w := newHeldWorldAt(t, true)
			first, _ := w.alice.Epoch(w.room)
			for i := range k {
				syncOK(t, w.bob)
				e, _ := w.bob.Epoch(w.room)
				must(t, w.bob.Send(ctx, w.room, fmt.Appendf(nil, "epoch %d", e)), "bob sends")
				must(t, w.alice.CommitPending(ctx, w.room), fmt.Sprintf("alice's commit %d", i))
				if i == k/2 {
					w.alice = reload(t, w.f, w.alice)
				}
			}
			// Her epochs, and the one adding Bob ended (she has not read
			// since), as far back as the cap allows.
			if h := held(w.alice, w.room); len(h) < min(k, mls.MaxPastEpochs) || h[len(h)-1] != first+uint64(k)-1 {
				t.Fatalf("before reading, alice holds %v, want her %d epochs up to %d", h, k, first+uint64(k)-1)
			}
			events := syncOK(t, w.alice)
			if len(events) != k {
				t.Fatalf("alice: [%s], want %d messages", kinds(events), k)
			}
			for i, ev := range events {
				if e := first + uint64(i); ev.Kind != EventMessage || ev.Epoch != e || string(ev.Text) != fmt.Sprintf("epoch %d", e) {
					t.Fatalf("event %d: %s of epoch %d %q (%v), want bob's message of epoch %d", i, ev.Kind, ev.Epoch, ev.Text, ev.Err, e)
				}
			}
			if h := held(w.alice, w.room); len(h) != 0 {
				t.Fatalf("after reading her stream to its end, alice still holds %v", h)
			}
			// Nobody else speaks: her own commits alone.
			commitTimes(t, w.alice, w.room, 2)
			if events := syncOK(t, w.alice); len(events) != 0 {
				t.Fatalf("alice: [%s] with nobody speaking", kinds(events))
			}
			if h := held(w.alice, w.room); len(h) != 0 {
				t.Fatalf("in a quiet room, alice still holds %v after a sync", h)
			}
		})
	}
}

// TestMemberDrainKeepsOtherHubsEpochs: in another hub's room, reading the
// stream to its end releases nothing (that hub's fanout may still bring
// messages of the held epochs), so only a later message does.
func TestMemberDrainKeepsOtherHubsEpochs(t *testing.T) {
	w := newHeldWorld(t)
	e, _ := w.alice.Epoch(w.room)
	commitTimes(t, w.alice, w.room, 2)
	syncOK(t, w.alice)
	// And the epoch her commit adding Bob ended, before e.
	if h, want := held(w.alice, w.room), []uint64{e - 1, e, e + 1}; !slices.Equal(h, want) {
		t.Fatalf("alice holds %v, want %v", h, want)
	}
}
