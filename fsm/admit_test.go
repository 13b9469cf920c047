package fsm

import (
	"bytes"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestAdmitAgreesWithApply: whatever Admit decides, Apply answers the
// same, and then it changed nothing; commands Admit leaves to the log are
// the ones that change the state.
func TestAdmitAgreesWithApply(t *testing.T) {
	n := newNode(t, "a.example")
	alice := newMember(t, proto.ClientURI("a.example", "alice", "phone"))
	n.register(alice.uri, "t")
	hosted := proto.RoomURI("a.example", "r1")
	n.createRoom(alice, hosted)
	remote := proto.RoomURI("b.example", "far")
	n.ok(n.apply(CmdSubscribe, nil, "", &SubscribeBody{Client: alice.uri, Room: remote, Subscribe: true}), "follow a remote room")
	hello := must(alice.group.Encrypt([]byte("hi"), room0(alice.uri)))
	stale := must(alice.group.Encrypt([]byte("old"), room0(alice.uri)))
	stale.Private.Epoch = 7
	stranger := must(alice.group.Encrypt([]byte("x"), room0(proto.ClientURI("a.example", "eve", "x"))))
	batch := func(first uint64) *FanoutBody {
		return &FanoutBody{Room: remote, FirstSeq: first, Batch: proto.FanoutBatch{{Message: appMessage(remote, []byte("m")), Timestamp: 1}}}
	}
	type cmd struct {
		name   string
		typ    CommandType
		id     []byte
		peer   string
		body   wire.Encoder
		admits bool // Admit decides it
	}
	cmds := []cmd{
		{"a message to a room not hosted here", CmdProvisional, nil, "", &RoomBody{Room: proto.RoomURI("a.example", "nope"), Request: wire.MustMarshal(hello)}, true},
		{"a message at the wrong epoch", CmdProvisional, nil, "", &RoomBody{Room: hosted, Request: wire.MustMarshal(stale)}, true},
		{"a message naming a non-member", CmdProvisional, nil, "", &RoomBody{Room: hosted, Request: wire.MustMarshal(stranger)}, true},
		{"a message of a peer for a local client", CmdProvisional, nil, "b.example", &RoomBody{Room: hosted, Request: wire.MustMarshal(hello)}, true},
		{"a garbage message", CmdProvisional, nil, "", &RoomBody{Room: hosted, Request: []byte{1, 2}}, true},
		{"a valid message", CmdProvisional, []byte("msg-1"), "", &RoomBody{Room: hosted, Request: wire.MustMarshal(hello)}, false},
		{"the same message again (same request id)", CmdProvisional, []byte("msg-1"), "", &RoomBody{Room: hosted, Request: wire.MustMarshal(hello)}, true},
		{"fanout from a peer that is not the hub", CmdFanout, nil, "c.example", batch(1), true},
		{"fanout for a room nobody follows", CmdFanout, nil, "b.example", &FanoutBody{Room: proto.RoomURI("b.example", "other"), FirstSeq: 1, Batch: batch(1).Batch}, true},
		{"fanout for a followed room", CmdFanout, nil, "b.example", batch(1), false},
		{"the same fanout again", CmdFanout, nil, "b.example", batch(1), true},
		{"an ack of nothing new", CmdAck, nil, "", &AckBody{Client: alice.uri, UpTo: 0}, true},
		{"an ack", CmdAck, nil, "", &AckBody{Client: alice.uri, UpTo: 1}, false},
		{"an ack from a peer", CmdAck, nil, "b.example", &AckBody{Client: alice.uri, UpTo: 9}, true},
		{"an ack of an unknown client", CmdAck, nil, "", &AckBody{Client: proto.ClientURI("a.example", "eve", "x"), UpTo: 9}, true},
		{"a subscription that exists", CmdSubscribe, nil, "", &SubscribeBody{Client: alice.uri, Room: remote, Subscribe: true}, true},
		{"an unsubscription", CmdSubscribe, nil, "", &SubscribeBody{Client: alice.uri, Room: remote, Subscribe: false}, false},
		{"the unsubscription again", CmdSubscribe, nil, "", &SubscribeBody{Client: alice.uri, Room: remote, Subscribe: false}, true},
		{"a registration of a known client", CmdRegister, nil, "", &RegisterBody{Client: alice.uri, TokenHash: tokenHash("x")}, true},
		{"an upload of an unknown client", CmdUploadKeyPackages, nil, "", &UploadBody{Client: proto.ClientURI("a.example", "eve", "x")}, true},
	}
	for _, c := range cmds {
		t.Run(c.name, func(t *testing.T) {
			before := n.state()
			var admitted *Result
			_ = n.f.Read(func(s *State) error { admitted = s.Admit(c.typ, c.id, c.peer, c.body); return nil })
			if (admitted != nil) != c.admits {
				t.Fatalf("Admit decided %v (%+v), want %v", admitted != nil, admitted, c.admits)
			}
			applied := n.apply(c.typ, c.id, c.peer, c.body)
			if admitted == nil {
				return
			}
			if applied.Kind != admitted.Kind || applied.Message != admitted.Message || !bytes.Equal(applied.Body, admitted.Body) {
				t.Fatalf("Admit answered %+v, Apply %+v", admitted, applied)
			}
			if !bytes.Equal(before, n.state()) {
				t.Fatal("a command Admit decides changed the state")
			}
		})
	}
}

func room0(c proto.URI) []byte { return []byte(c) }
