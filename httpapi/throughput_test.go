package httpapi

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestWritesAuthenticatedInLog: the routes that only propose commands
// check the token on the node's state and let the state machine confirm
// it in log order (no linearizable read); a token revoked or suspended by
// then is refused with 401 and changes nothing. A write that does more
// than propose (a relay to another hub) confirms the token first. Every
// other route still reads linearizably.
func TestWritesAuthenticatedInLog(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	id := e.createRoom(alice, "r")
	hi, _ := alice.group.Encrypt([]byte("hi"), room.SenderHint(alice.uri))
	reads := func() []bool {
		e.b.mu.Lock()
		defer e.b.mu.Unlock()
		return append([]bool(nil), e.b.reads...)
	}
	before := len(reads())
	rec := e.apiDo(http.MethodPost, roomPath(id, "messages"), alice.token, map[string]any{"message": wire.MustMarshal(hi)})
	want(t, rec, http.StatusOK, "a message")
	for _, lin := range reads()[before:] {
		if lin {
			t.Fatal("a message's token was checked on a linearizable read")
		}
	}
	// The write carried the credential: suspended meanwhile, Apply refuses.
	res, err := e.b.Apply(t.Context(), fsm.CmdSuspendUser, nil, "", &fsm.SuspendUserBody{User: alice.user, Suspend: true})
	if err != nil || res.Err() != nil {
		t.Fatalf("suspend: %v %v", err, res)
	}
	state := mustSnapshot(t, e.b)
	for _, c := range []struct {
		name, method, path string
		body               any
	}{
		{"a message", http.MethodPost, roomPath(id, "messages"), map[string]any{"message": wire.MustMarshal(hi)}},
		{"an acknowledgement", http.MethodPost, "/v1/stream/ack", map[string]any{"seq": 1}},
		{"an unsubscription", http.MethodDelete, roomPath(id, "subscription"), nil},
		{"a read", http.MethodGet, roomPath(id, ""), nil},
		{"a relay to another hub", http.MethodPost, roomPath(proto.RoomURI("b.example", "x"), "messages"), map[string]any{"message": wire.MustMarshal(hi)}},
	} {
		wantJSONError(t, e.apiDo(c.method, c.path, alice.token, c.body), http.StatusUnauthorized, kindNotAllowed, c.name+" of a suspended user")
	}
	if got := mustSnapshot(t, e.b); string(got) != string(state) {
		t.Fatal("a refused write changed the state")
	}
	if calls := e.peers.taken(); len(calls) != 0 {
		t.Fatalf("a suspended user's request was relayed: %+v", calls)
	}
}

func mustSnapshot(t *testing.T, b *fakeBackend) []byte {
	t.Helper()
	enc, err := b.f.EncodeContent()
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// TestReadYourWritesToken: every successful answer carries Mimi-Index, at
// least the index of the request's own write; a read with Mimi-Min-Index
// is served once the node holds it, and refused (400) when the token is
// malformed or ahead of the cluster.
func TestReadYourWritesToken(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	id := e.createRoom(alice, "r")
	hi, _ := alice.group.Encrypt([]byte("hi"), room.SenderHint(alice.uri))
	rec := e.apiDo(http.MethodPost, roomPath(id, "messages"), alice.token, map[string]any{"message": wire.MustMarshal(hi)})
	want(t, rec, http.StatusOK, "message")
	idx, err := strconv.ParseUint(rec.Header().Get(HeaderIndex), 10, 64)
	if err != nil || idx != e.b.AppliedIndex() {
		t.Fatalf("Mimi-Index %q, the write's entry is %d", rec.Header().Get(HeaderIndex), e.b.AppliedIndex())
	}
	rec = e.apiDo(http.MethodGet, roomPath(id, "")+"?consistency=stale", alice.token, nil, HeaderMinIndex, strconv.FormatUint(idx, 10))
	want(t, rec, http.StatusOK, "a read with the token")
	if info := decodeJSON[map[string]any](t, rec); info["sequence"].(float64) != 1 {
		t.Fatalf("the read does not see the message: %+v", info)
	}
	wantJSONError(t, e.apiDo(http.MethodGet, roomPath(id, ""), alice.token, nil, HeaderMinIndex, strconv.FormatUint(idx+100, 10)),
		http.StatusBadRequest, kindInvalid, "a token ahead of the cluster")
	wantJSONError(t, e.apiDo(http.MethodGet, roomPath(id, ""), alice.token, nil, HeaderMinIndex, "soon"), http.StatusBadRequest, kindInvalid, "a malformed token")
	if rec := e.apiDo(http.MethodGet, roomPath(id, ""), "", nil); rec.Header().Get(HeaderIndex) != "" {
		t.Fatal("a refused request carries Mimi-Index")
	}
}

// TestBinaryBodies: a message and a commit sent as
// application/mimi are taken as their JSON forms are, and stored as they
// came; what does not decode is refused as JSON's is.
func TestBinaryBodies(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	id := e.createRoom(alice, "r")
	hi, _ := alice.group.Encrypt([]byte("hi"), room.SenderHint(alice.uri))
	want(t, e.apiDo(http.MethodPost, roomPath(id, "messages"), alice.token, wire.MustMarshal(hi), "Content-Type", mimiContentType), http.StatusOK, "a binary message")
	e.b.read(func(s *fsm.State) {
		if info, _ := s.Room(id); info.Sequence != 1 {
			t.Fatalf("room sequence %d after one message", info.Sequence)
		}
	})
	b, err := alice.group.Commit(mls.CommitOptions{ForcePath: true, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
	if err != nil {
		t.Fatal(err)
	}
	req := &proto.UpdateRoomRequest{Message: b.Commit, GroupInfo: b.GroupInfo, RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeByReference}}
	rec := e.apiDo(http.MethodPost, roomPath(id, "commit"), alice.token, wire.MustMarshal(req), "Content-Type", mimiContentType)
	want(t, rec, http.StatusOK, "a binary commit")
	if r := decodeJSON[updateResult](t, rec); r.Code != uint8(proto.UpdateSuccess) {
		t.Fatalf("a binary commit: %+v", r)
	}
	alice.group.MergePendingCommit()
	prop, err := alice.group.Propose(mls.SelfRemoveProposal())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path, ct string
		body           []byte
	}{
		{"a message that does not decode", roomPath(id, "messages"), mimiContentType, []byte{0, 1, 2}},
		{"a commit as message", roomPath(id, "messages"), mimiContentType, wire.MustMarshal(b.Commit)},
		{"a bundle that does not decode", roomPath(id, "commit"), mimiContentType, []byte{0, 1, 2}},
		{"a bundle of a proposal", roomPath(id, "commit"), mimiContentType, wire.MustMarshal(&proto.UpdateRoomRequest{Message: prop})},
	} {
		wantJSONError(t, e.apiDo(http.MethodPost, c.path, alice.token, c.body, "Content-Type", c.ct), http.StatusBadRequest, kindInvalid, c.name)
	}
}
