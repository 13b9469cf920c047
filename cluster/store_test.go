package cluster

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestStoreAnswersWithoutLogging: writes the state decides without
// applying them (an unknown room, fanout nobody here follows, a client
// that does not exist, a repeated request) are answered through any node
// and leave the Raft log as it was; a command over the entry limit is
// refused before Raft, on the forwarding node and on the leader.
func TestStoreAnswersWithoutLogging(t *testing.T) {
	c := newTestCluster(t)
	c.startN(3)
	l := c.leader()
	alice := register(t, l.store, "alice")
	f := c.follower()
	msg := &mls.Message{Version: mls.MLS10, WireFormat: mls.WirePrivateMessage, Private: &mls.PrivateMessage{GroupID: []byte("g"), Epoch: 1,
		ContentType: mls.ContentApplication, EncryptedSenderData: []byte("s"), Ciphertext: bytes.Repeat([]byte("x"), 1<<20)}}
	unfollowed := proto.RoomURI("b.example", "nobody-follows")
	h := [32]byte{1}
	cases := []struct {
		name string
		t    fsm.CommandType
		id   []byte
		peer string
		body wire.Encoder
		want fsm.ErrorKind
	}{
		{"a 1 MiB message to a room that does not exist", fsm.CmdProvisional, nil, "b.example", &fsm.RoomBody{Room: proto.RoomURI("a.example", "nope"), Request: wire.MustMarshal(msg)}, fsm.NotFound},
		{"a commit to a room that does not exist", fsm.CmdUpdateRoom, nil, "", &fsm.RoomBody{Room: proto.RoomURI("a.example", "nope"), Request: []byte{0}}, fsm.NotFound},
		{"fanout for a room nobody here follows", fsm.CmdFanout, nil, "b.example", &fsm.FanoutBody{Room: unfollowed, FirstSeq: 1, Batch: proto.FanoutBatch{{Message: msg, Timestamp: 1}}}, fsm.OK},
		{"fanout from a peer that is not the hub", fsm.CmdFanout, nil, "c.example", &fsm.FanoutBody{Room: unfollowed, FirstSeq: 1, Batch: proto.FanoutBatch{{Message: msg, Timestamp: 1}}}, fsm.NotAllowed},
		{"an acknowledgement of a client that does not exist", fsm.CmdAck, nil, "", &fsm.AckBody{Client: proto.ClientURI("a.example", "eve", "x"), UpTo: 5}, fsm.NotFound},
		{"an acknowledgement that moves nothing", fsm.CmdAck, nil, "", &fsm.AckBody{Client: alice, UpTo: 0}, fsm.OK},
		{"a registration of a known client", fsm.CmdRegister, nil, "", &fsm.RegisterBody{Client: alice, TokenHash: h[:]}, fsm.Conflict},
		{"a local command from a peer", fsm.CmdSubscribe, nil, "b.example", &fsm.SubscribeBody{Client: alice, Room: unfollowed, Subscribe: true}, fsm.NotAllowed},
	}
	before := l.node.Stats().LastLogIndex
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range []*clusterNode{f, l} {
				res, err := n.store.Apply(ctxTimeout(t, testWait), tc.t, tc.id, tc.peer, tc.body)
				if err != nil {
					t.Fatalf("via %s: %v", n.id, err)
				}
				if res.Kind != tc.want {
					t.Fatalf("via %s: %s (%s), want %s", n.id, res.Kind, res.Message, tc.want)
				}
			}
		})
	}
	if cmds := commandsSince(t, l.node, before); len(cmds) > 0 {
		t.Fatalf("answered writes were logged: %v", cmds)
	}

	// A retried request id answers its first result from the state.
	body := &fsm.SubscribeBody{Client: alice, Room: unfollowed, Subscribe: true}
	first, err := f.store.Apply(ctxTimeout(t, testWait), fsm.CmdSubscribe, []byte("sub-1"), "", body)
	if err != nil || first.Err() != nil {
		t.Fatalf("subscribe: %v %v", err, first)
	}
	// The follower answered as soon as the leader applied it; once it has
	// the entry too (the first answer's index), its own state answers.
	if err := f.store.WaitApplied(ctxTimeout(t, testWait), first.Index); err != nil || first.Index == 0 {
		t.Fatalf("waiting for index %d: %v", first.Index, err)
	}
	logged := l.node.Stats().LastLogIndex
	if again, err := f.store.Apply(ctxTimeout(t, testWait), fsm.CmdSubscribe, []byte("sub-1"), "", body); err != nil || again.Kind != first.Kind {
		t.Fatalf("retry: %v %+v", err, again)
	}
	if cmds := commandsSince(t, l.node, logged); len(cmds) > 0 {
		t.Fatalf("a retried request was logged again: %v", cmds)
	}

	// Over the entry limit: refused before Raft, locally and by the
	// leader when a node forwards it.
	big := &fsm.RouteBody{Room: proto.RoomURI("a.example", "x"), Routes: []room.Route{{Ref: make([]byte, l.node.cfg.MaxEntrySize), Domain: "b.example"}}}
	if _, err := f.store.Apply(ctxTimeout(t, testWait), fsm.CmdRouteKeyPackages, nil, "", big); !errors.Is(err, ErrEntryTooLarge) {
		t.Fatalf("an oversized command: %v, want ErrEntryTooLarge", err)
	}
	cmd, err := fsm.NewCommand(fsm.CmdRouteKeyPackages, []byte("big"), "", big)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	if err := f.node.rpc.call(ctxTimeout(t, testWait), l.node.Addr(), rpcApply, cmd, &out); !errors.Is(err, ErrEntryTooLarge) {
		t.Fatalf("an oversized forwarded command: %v, want ErrEntryTooLarge", err)
	}
	if cmds := commandsSince(t, l.node, logged); len(cmds) > 0 {
		t.Fatalf("an oversized command was logged: %v", cmds)
	}
}

// commandsSince lists the FSM commands in n's log after index (a new
// leader's noop and configuration changes are not commands).
func commandsSince(t *testing.T, n *Node, index uint64) []fsm.CommandType {
	t.Helper()
	var out []fsm.CommandType
	for i := index + 1; i <= n.raft.LastIndex(); i++ {
		var l raft.Log
		if err := n.st.logs.GetLog(i, &l); err != nil {
			t.Fatalf("log entry %d: %v", i, err)
		}
		if l.Type != raft.LogCommand || bytes.Equal(l.Extensions, noopExtension) {
			continue
		}
		var c fsm.Command
		if err := wire.Unmarshal(l.Data, &c); err != nil {
			t.Fatalf("log entry %d: %v", i, err)
		}
		out = append(out, c.Type)
	}
	return out
}
