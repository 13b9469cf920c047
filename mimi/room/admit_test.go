package room

import (
	"bytes"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// TestAdmitAnswersAsApply: for requests the room refuses at once, Admit
// gives Apply's answer without changing the room; requests it cannot
// decide (valid ones, and those refused only after MLS validation) it
// leaves to Apply.
func TestAdmitAnswersAsApply(t *testing.T) {
	w := newSeedWorld(t)
	msg := func(c *client, ad proto.URI) *mls.Message {
		m, err := c.group.Encrypt([]byte("hi"), SenderHint(ad))
		if err != nil {
			t.Fatal(err)
		}
		return transmit(t, m)
	}
	stale, err := w.bob1.group.Commit(mls.CommitOptions{ForcePath: true, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
	if err != nil {
		t.Fatal(err)
	}
	w.bob1.group.DiscardPendingCommit()
	oldMsg := msg(w.cathy1, w.cathy1.uri)
	w.must(w.commit(w.alice1, mls.CommitOptions{ForcePath: true}), "Alice moves the room to a new epoch")
	otherGroup := msg(w.cathy1, w.cathy1.uri)
	otherGroup.Private.GroupID = []byte("mimi://a.example/r/other")
	cases := []struct {
		name  string
		req   Request
		admit bool // Admit decides it
		code  proto.UpdateResponseCode
		any   bool // Apply may answer anything
	}{
		{"a message of a member", &ProvisionalMessage{From: "c.example", Message: msg(w.cathy1, w.cathy1.uri)}, false, proto.UpdateSuccess, false},
		{"a message for a past epoch", &ProvisionalMessage{From: "c.example", Message: oldMsg}, true, proto.UpdateWrongEpoch, false},
		{"a message for another group", &ProvisionalMessage{From: "c.example", Message: otherGroup}, true, proto.UpdateInvalidProposal, false},
		{"a message naming a non-member", &ProvisionalMessage{From: "c.example", Message: msg(w.cathy1, proto.ClientURI("c.example", "eve", "x"))}, true, proto.UpdateNotAllowed, false},
		{"a message relayed by another provider", &ProvisionalMessage{From: "d.example", Message: msg(w.cathy1, w.cathy1.uri)}, true, proto.UpdateNotAllowed, false},
		{"a commit for a past epoch", &UpdateRoom{From: "b.example", Body: w.bundle(w.bob1, stale)}, true, proto.UpdateWrongEpoch, false},
		{"a message naming another member (decided by MLS, not here)", &ProvisionalMessage{From: "b.example", Message: msg(w.cathy1, w.bob1.uri)}, false, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := w.state()
			out, decided := w.room.Admit(c.req)
			if decided != c.admit {
				t.Fatalf("Admit decided %v (%s), want %v", decided, out.Response.Code, c.admit)
			}
			if !bytes.Equal(before, w.state()) {
				t.Fatal("Admit changed the room")
			}
			applied := w.apply(c.req)
			if decided {
				if out.Response.Code != c.code || applied.Response.Code != c.code || len(applied.Effects) != 0 {
					t.Fatalf("Admit says %s, Apply %s, want %s", out.Response.Code, applied.Response.Code, c.code)
				}
				if !bytes.Equal(before, w.state()) {
					t.Fatal("the refused request changed the room")
				}
			} else if !c.any && applied.Response.Code != c.code {
				t.Fatalf("Apply: %s (%s), want %s", applied.Response.Code, applied.Response.Description, c.code)
			}
		})
	}
}
