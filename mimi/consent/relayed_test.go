package consent

import (
	"testing"

	"github.com/mimihub/mimi-hub/mimi/proto"
)

// TestCheckRelayed checks the consent rule for claims a room's hub relays
// for another provider's user: the target's decision for that room counts,
// an any-room grant does not (the hub cannot vouch for the requester), an
// any-room revoke still refuses, and without decisions the default holds.
func TestCheckRelayed(t *testing.T) {
	const (
		ok     = proto.UserSuccess
		no     = proto.UserNoConsent
		noRoom = proto.UserNoConsentForThisRoom
	)
	type decision struct {
		op   proto.ConsentOperation
		room *proto.URI
	}
	tests := []struct {
		name      string
		require   bool
		decisions []decision
		room      *proto.URI
		want      proto.KeyMaterialUserCode
	}{
		{"any-room grant, consent required", true, []decision{{grant, nil}}, in(room1), noRoom},
		{"room grant for this room", true, []decision{{grant, in(room1)}}, in(room1), ok},
		{"room grant for another room", true, []decision{{grant, in(room2)}}, in(room1), noRoom},
		{"any-room grant and a room grant", true, []decision{{grant, nil}, {grant, in(room1)}}, in(room1), ok},
		{"nothing, consent required", true, nil, in(room1), no},
		{"nothing, consent by default", false, nil, in(room1), ok},
		{"any-room grant, consent by default", false, []decision{{grant, nil}}, in(room1), ok},
		{"any-room revoke, consent by default", false, []decision{{revoke, nil}}, in(room1), no},
		{"room revoke", false, []decision{{grant, nil}, {revoke, in(room1)}}, in(room1), noRoom},
		{"no room named: Check's answer", true, []decision{{grant, nil}}, nil, ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBook(t, tt.require)
			for _, d := range tt.decisions {
				local(t, b, entry(d.op, carol, alice, d.room))
			}
			if got := b.CheckRelayed(alice, carol, tt.room); got != tt.want {
				t.Errorf("CheckRelayed = %s, want %s", got, tt.want)
			}
			// Never more than Check allows.
			if b.Check(alice, carol, tt.room) != ok && b.CheckRelayed(alice, carol, tt.room) == ok {
				t.Error("CheckRelayed allows what Check refuses")
			}
		})
	}
	b := testBook(t, true)
	if got := b.CheckRelayed(alice, alice, in(room1)); got != ok {
		t.Errorf("a user claiming itself: %s", got)
	}
}
