package fsm

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
)

// TestLogLevel: a state applies the rules of no level until CmdLogLevel
// raises it, once; a level above this release's is refused before the log
// and in Apply, a repeat is answered unchanged before the log, and a
// snapshot carries the level (a record only once raised) and refuses a
// level this release does not know.
func TestLogLevel(t *testing.T) {
	if room.RulesLevel > LogLevel {
		t.Fatalf("the room engine's newest rules (%d) are above the log level (%d)", room.RulesLevel, LogLevel)
	}
	cfg := Config{Domain: "a.example"}
	s, err := newState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.RulesLevel() != 0 || s.rulesAt(rulesHostileInputs) {
		t.Fatalf("a new state applies the rules of level %d", s.RulesLevel())
	}
	fresh := mustEncode(t, s)
	admit := func(l uint8) *Result {
		return s.AdmitProposal(&Proposal{Type: CmdLogLevel, Body: &LogLevelBody{Level: l}})
	}
	if r := admit(LogLevel + 1); r == nil || r.Kind != Invalid {
		t.Fatalf("a level above this release's, before the log: %v", r)
	}
	if r := s.raiseLevel(&LogLevelBody{Level: LogLevel + 1}); r.Kind != Invalid || s.RulesLevel() != 0 {
		t.Fatalf("a level above this release's, in Apply: %v, level %d", r, s.RulesLevel())
	}
	if r := admit(LogLevel); r != nil {
		t.Fatalf("raising to this release's level is answered before the log: %v", r)
	}
	if r := s.AdmitProposal(&Proposal{Type: CmdLogLevel, Peer: "b.example", Body: &LogLevelBody{Level: LogLevel}}); r == nil || r.Kind != NotAllowed {
		t.Fatalf("a peer raising the level: %v", r)
	}
	if r := s.raiseLevel(&LogLevelBody{Level: LogLevel}); r.Kind != OK || !s.rulesAt(rulesHostileInputs) {
		t.Fatalf("raise: %v, level %d", r, s.RulesLevel())
	}
	for _, l := range []uint8{1, LogLevel} {
		if r := admit(l); r == nil || r.Kind != OK || !r.unchanged {
			t.Fatalf("raising to %d at level %d, before the log: %v", l, LogLevel, r)
		}
	}

	raised := mustEncode(t, s)
	if bytes.Equal(fresh, raised) {
		t.Fatal("the snapshot does not carry the level")
	}
	r, err := decodeState(cfg, bytes.NewReader(raised))
	if err != nil || r.RulesLevel() != LogLevel || !bytes.Equal(mustEncode(t, r), raised) {
		t.Fatalf("restored: level %d, %v", r.RulesLevel(), err)
	}
	if r, err := decodeState(cfg, bytes.NewReader(fresh)); err != nil || r.RulesLevel() != 0 {
		t.Fatalf("restored before the first raise: %v", err)
	}
	// The record (tag, 4-byte length, level) is the last before the end
	// record (tag 0, length 0): a level this release does not know cannot
	// be restored.
	i := len(raised) - 6
	if raised[i-5] != recLevel || raised[i] != LogLevel {
		t.Fatalf("the level record does not end the snapshot: % x", raised[len(raised)-8:])
	}
	for _, l := range []byte{0, LogLevel + 1} {
		bad := bytes.Clone(raised)
		bad[i] = l
		if _, err := decodeState(cfg, bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "log level") {
			t.Fatalf("a snapshot at level %d: %v", l, err)
		}
	}
}

// TestRulesSwitchAgrees: replicas that restore a snapshot taken at any
// index, before or after the entry that raises the rules level, and
// replay the log after it end byte for byte alike; and before the switch
// the rules of then apply (a repeated consent request notifies again, a
// fanout keeps a Mimi-Exclude of other providers' clients), after it the
// new ones.
func TestRulesSwitchAgrees(t *testing.T) {
	for seed := range uint64(6) {
		rng := rand.New(rand.NewPCG(seed, 7))
		cfg := Config{Domain: "a.example", Bounds: Bounds{InboxLimit: 40}}
		f, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		n := &node{t: t, cfg: cfg, f: f, now: t0} // at level 0, as a log of the previous release
		alice := proto.ClientURI("a.example", "alice", "phone")
		n.register(alice, "t")
		remote := proto.RoomURI("b.example", "x")
		n.ok(n.apply(CmdSubscribe, nil, "", &SubscribeBody{Client: alice, Room: remote, Subscribe: true}), "subscribe")
		// A group to encrypt the fanout's messages with: a room carol
		// hosts here (the fanout claims another room; only the framing is
		// looked at).
		sender := newMember(t, proto.ClientURI("a.example", "carol", "d"))
		n.register(sender.uri, "c")
		n.createRoom(sender, proto.RoomURI("a.example", "r1"))
		const steps = 60
		switchAt := 5 + rng.IntN(steps-10)
		var notices [2]int // consent notices in alice's stream: before the switch, after
		var keptForeign [2]bool
		hubSeq := uint64(0)
		for i := range steps {
			phase := 0
			if i > switchAt {
				phase = 1
			}
			switch {
			case i == switchAt:
				n.ok(n.apply(CmdLogLevel, nil, "", &LogLevelBody{Level: LogLevel}), "raise")
			case rng.IntN(2) == 0:
				// The same request again and again, from a peer's user.
				before := len(n.stream(alice, 0))
				n.apply(CmdConsent, nil, "b.example", &ConsentBody{Entry: proto.ConsentEntry{Operation: proto.ConsentRequest,
					Requester: proto.UserURI("b.example", "mallory"), Target: proto.UserURI("a.example", "alice")}})
				notices[phase] += len(n.stream(alice, 0)) - before
			default:
				hubSeq++
				exclude := []proto.URI{proto.ClientURI("c.example", "eve", fmt.Sprint(i)), proto.ClientURI("b.example", "x", "y")}
				app, err := sender.group.Encrypt([]byte("x"), nil)
				if err != nil {
					t.Fatal(err)
				}
				n.ok(n.apply(CmdFanout, nil, "b.example", &FanoutBody{Room: remote, FirstSeq: hubSeq, Exclude: exclude,
					Batch: proto.FanoutBatch{{Message: app, Timestamp: n.now}}}), "fanout")
				_ = n.f.Read(func(s *State) error {
					if st := s.streams[remote]; st != nil && len(st.log.q.items) > 0 {
						keptForeign[phase] = keptForeign[phase] || len(st.log.q.items[len(st.log.q.items)-1].exclude) > 0
					}
					return nil
				})
			}
		}
		if notices[0] < 2 || notices[1] != 0 {
			t.Fatalf("seed %d: repeated consent requests notified %d times before the switch, %d after; want several, then none", seed, notices[0], notices[1])
		}
		if !keptForeign[0] || keptForeign[1] {
			t.Fatalf("seed %d: other providers' clients kept in Mimi-Exclude before the switch %v, after %v; want kept, then not", seed, keptForeign[0], keptForeign[1])
		}
		// Every snapshot a replica might have taken, restored and replayed.
		want := n.state()
		replica, _ := New(cfg)
		for k, e := range n.log {
			replica.Apply(&raft.Log{Type: raft.LogCommand, Data: e})
			snap, err := replica.Encode()
			if err != nil {
				t.Fatal(err)
			}
			r, _ := New(cfg)
			if err := r.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
				t.Fatalf("seed %d: restore at %d: %v", seed, k, err)
			}
			for _, e := range n.log[k+1:] {
				r.Apply(&raft.Log{Type: raft.LogCommand, Data: e})
			}
			if got, _ := r.Encode(); !bytes.Equal(got, want) {
				t.Fatalf("seed %d: a replica restored at entry %d (switch at step %d) ends in another state", seed, k, switchAt)
			}
		}
	}
}
