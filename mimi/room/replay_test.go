package room

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestReplayedMessage: an application message sent again byte for byte
// (a retry, or a member or peer replaying someone's message) is answered
// as accepted, by Admit and by Apply alike, and changes nothing: no
// second fanout, no new hub sequence number. The room remembers the last
// RecentMessageLimit messages of its epoch (a bounded ring that survives
// a snapshot), and a commit starts a new epoch, in which the old message
// is refused as of the wrong epoch.
func TestReplayedMessage(t *testing.T) {
	w := newSeedWorld(t)
	m, err := w.bob1.group.Encrypt([]byte("once"), SenderHint(w.bob1.uri))
	if err != nil {
		t.Fatal(err)
	}
	raw := wire.MustMarshal(m)
	send := func(from string) *ProvisionalMessage {
		msg, err := mls.DecodeMessage(raw)
		if err != nil {
			t.Fatal(err)
		}
		return &ProvisionalMessage{From: from, Message: msg, Raw: raw}
	}
	first := w.must(w.apply(send("b.example")), "the message")
	if len(first.Effects) != 1 || first.Repeat {
		t.Fatalf("the message: %d effects, repeat %v", len(first.Effects), first.Repeat)
	}
	before := w.state()
	if out, decided := w.room.Admit(send("b.example")); !decided || !out.Repeat || out.Response.Code != proto.UpdateSuccess {
		t.Fatalf("Admit of a replay: decided %v, %+v", decided, out)
	}
	out := w.apply(send("b.example"))
	if out.Response.Code != proto.UpdateSuccess || !out.Repeat || len(out.Effects) != 0 {
		t.Fatalf("a replay: %s, repeat %v, %d effects; want success, a repeat, nothing fanned out", out.Response.Code, out.Repeat, len(out.Effects))
	}
	if !bytes.Equal(before, w.state()) {
		t.Fatal("a replay changed the room")
	}
	// Another provider replaying it is refused before the memory counts:
	// the message names a client of b.example.
	if out := w.apply(send("c.example")); out.Err == nil && out.Response.Code == proto.UpdateSuccess {
		t.Fatalf("c.example replaying b.example's message: %+v", out.Response)
	}
	// The memory survives a snapshot.
	restored, err := Restore(w.room.cfg, w.state())
	if err != nil {
		t.Fatal(err)
	}
	if out := restored.Apply(send("b.example"), w.now+1); !out.Repeat {
		t.Fatalf("a replay to the restored room: %+v, want a repeat", out.Response)
	}
	// The ring is bounded: past the limit the oldest is forgotten.
	for i := range RecentMessageLimit {
		w.must(w.say(w.bob1, fmt.Sprint("more ", i)), "another message")
	}
	if n := len(w.room.recent.sums); n != RecentMessageLimit {
		t.Fatalf("the room remembers %d messages, want %d", n, RecentMessageLimit)
	}
	if out := w.room.Apply(send("b.example"), w.now+1); out.Repeat || len(out.Effects) != 1 {
		t.Fatalf("a message older than the last %d: repeat %v, %d effects; want it accepted again", RecentMessageLimit, out.Repeat, len(out.Effects))
	}
	// A new epoch forgets them all; the old message is of the wrong epoch.
	w.must(w.commit(w.bob1, mls.CommitOptions{ForcePath: true, References: w.honestRefs(w.bob1)}), "Bob1 commits")
	before = w.state()
	w.refused(before, w.apply(send("b.example")), proto.UpdateWrongEpoch, "the message after a commit")
	if len(w.room.recent.sums) != 0 && w.room.recent.epoch == w.room.Epoch() {
		t.Fatalf("the new epoch remembers %d messages", len(w.room.recent.sums))
	}
}
