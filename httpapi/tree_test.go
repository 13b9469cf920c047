package httpapi

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// addBinary has m add the clients of kps (with their users as regular
// users) in one commit sent as an application/mimi UpdateRoomRequest
// without the tree (byReference), and merges it.
func (e *env) addBinary(m *member, id proto.URI, kps ...*mls.KeyPackageBundle) *mls.CommitBundle {
	e.t.Helper()
	patch := &proto.ParticipantListPatch{}
	props := []*mls.Proposal{nil}
	for _, kp := range kps {
		user, _ := proto.URI(kp.KeyPackage.LeafNode.Credential.Identity).UserOf()
		patch.AddUsers = append(patch.AddUsers, proto.UserRoles{User: user, Roles: []proto.Role{proto.RoleRegularUser}})
		props = append(props, mls.AddProposal(kp.KeyPackage))
	}
	props[0] = patch.Proposal()
	b, err := m.group.Commit(mls.CommitOptions{Proposals: props, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
	if err != nil {
		e.t.Fatal(err)
	}
	body := wire.MustMarshal(&proto.UpdateRoomRequest{Message: b.Commit, Welcome: b.Welcome, GroupInfo: b.GroupInfo,
		RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeByReference}})
	rec := e.apiDo(http.MethodPost, roomPath(id, "commit"), m.token, body, "Content-Type", "application/mimi")
	want(e.t, rec, http.StatusOK, "binary commit")
	if res := decodeJSON[updateResult](e.t, rec); res.Code != 0 {
		e.t.Fatalf("binary commit: %+v", res)
	}
	m.group.MergePendingCommit()
	return b
}

func refOf(t *testing.T, kp *mls.KeyPackageBundle) []byte {
	t.Helper()
	ref, err := kp.KeyPackage.Ref()
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestWelcomeTreeByReference: Alice adds Bob (local) and Carol
// (b.example) with a binary commit whose Welcome has no tree; after two
// more commits Bob fetches his tree from the client API and joins, and
// b.example fetches Carol's over federation. Nobody else gets them.
func TestWelcomeTreeByReference(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	bob := e.register("bob", "laptop")
	bobKP := bob.keyPackage(t)
	carol := newMember(t, proto.ClientURI("b.example", "carol", "tablet"))
	carolKP := carol.keyPackage(t)
	id := e.createRoom(alice, "big")
	b := e.addBinary(alice, id, bobKP, carolKP)
	treeThen := wire.MustMarshal(alice.group.Tree())
	for range 2 {
		if _, res := e.commit(alice, id, mls.CommitOptions{ForcePath: true}); res.Code != 0 {
			t.Fatalf("path commit: %+v", res)
		}
	}

	treePath := func(kp *mls.KeyPackageBundle) string {
		return roomPath(id, "tree") + "?keypackage=" + base64.RawURLEncoding.EncodeToString(refOf(t, kp))
	}
	rec := e.apiDo(http.MethodGet, treePath(bobKP), bob.token, nil)
	want(t, rec, http.StatusOK, "Bob's tree")
	if ct := rec.Header().Get("Content-Type"); ct != "application/mimi" || rec.Header().Get("Content-Length") != "" && rec.Body.Len() != len(treeThen) {
		t.Fatalf("Content-Type %q, %d bytes", ct, rec.Body.Len())
	}
	if !bytes.Equal(rec.Body.Bytes(), treeThen) {
		t.Fatal("Bob got another tree than his Welcome's epoch's")
	}
	g, err := mls.JoinFromWelcome(b.Welcome.Welcome, bobKP, rec.Body.Bytes(), groupOptions())
	if err != nil {
		t.Fatalf("Bob joins with the fetched tree: %v", err)
	}
	if g.Epoch() != alice.group.Epoch()-2 {
		t.Fatalf("Bob joined epoch %d", g.Epoch())
	}

	wantJSONError(t, e.apiDo(http.MethodGet, treePath(bobKP), alice.token, nil), http.StatusForbidden, "not_allowed", "Alice asking for Bob's tree")
	wantJSONError(t, e.apiDo(http.MethodGet, roomPath(id, "tree")+"?keypackage=AAAA", bob.token, nil), http.StatusNotFound, "not_found", "unknown ref")
	wantJSONError(t, e.apiDo(http.MethodGet, roomPath(id, "tree")+"?keypackage=%%%", bob.token, nil), http.StatusBadRequest, "invalid", "bad ref")
	wantJSONError(t, e.apiDo(http.MethodGet, roomPath(id, "tree"), bob.token, nil), http.StatusBadRequest, "invalid", "no ref")

	// Federation: b.example for Carol, and nobody else.
	fedBody := func(c proto.URI, kp *mls.KeyPackageBundle) []byte {
		return wire.MustMarshal(&proto.WelcomeTreeRequest{Client: c, KeyPackageRef: refOf(t, kp)})
	}
	path := "/welcomeTree/big"
	rec = e.fedDo(http.MethodPost, path, "b.example", fedBody(carol.uri, carolKP))
	want(t, rec, http.StatusOK, "b.example fetching Carol's tree")
	if !bytes.Equal(rec.Body.Bytes(), treeThen) {
		t.Fatal("b.example got another tree")
	}
	wantTextError(t, e.fedDo(http.MethodPost, path, "c.example", fedBody(carol.uri, carolKP)), http.StatusForbidden, "own clients", "c.example for Carol")
	wantTextError(t, e.fedDo(http.MethodPost, path, "b.example", fedBody(proto.ClientURI("b.example", "carol", "phone"), carolKP)), http.StatusForbidden, "not for", "another client of b.example")
	wantTextError(t, e.fedDo(http.MethodPost, path, "b.example", fedBody(carol.uri, bobKP)), http.StatusForbidden, "not for", "b.example for Bob's ref")
	wantTextError(t, e.fedDo(http.MethodPost, "/welcomeTree/nosuch", "b.example", fedBody(carol.uri, carolKP)), http.StatusNotFound, "not hosted", "unknown room")
	wantTextError(t, e.fedDo(http.MethodPost, path, "", fedBody(carol.uri, carolKP)), http.StatusUnauthorized, "", "no peer")
}

// TestWelcomeTreeRelayed: for a room hosted elsewhere, the client API
// relays the hub's answer as it comes, and passes the hub's refusals on.
func TestWelcomeTreeRelayed(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	bob := e.register("bob", "laptop")
	id := proto.RoomURI("h.example", "far")
	tree := bytes.Repeat([]byte{7}, 100_000)
	e.peers.tree = func(room proto.URI, req *proto.WelcomeTreeRequest) (io.ReadCloser, int64, error) {
		if room != id || req.Client != bob.uri || string(req.KeyPackageRef) != "ref" {
			t.Errorf("relayed %s %+v", room, req)
		}
		return io.NopCloser(bytes.NewReader(tree)), int64(len(tree)), nil
	}
	path := roomPath(id, "tree") + "?keypackage=" + base64.RawURLEncoding.EncodeToString([]byte("ref"))
	rec := e.apiDo(http.MethodGet, path, bob.token, nil)
	want(t, rec, http.StatusOK, "relayed tree")
	if !bytes.Equal(rec.Body.Bytes(), tree) || rec.Header().Get("Content-Length") != "100000" {
		t.Fatalf("relayed %d bytes, Content-Length %q", rec.Body.Len(), rec.Header().Get("Content-Length"))
	}
	e.peers.tree = func(proto.URI, *proto.WelcomeTreeRequest) (io.ReadCloser, int64, error) {
		return nil, 0, &client.StatusError{Status: http.StatusGone, Message: "gone"}
	}
	want(t, e.apiDo(http.MethodGet, path, bob.token, nil), http.StatusGone, "the hub's 410")
}

// TestFullTreeCheckedAtTheEdge: a commit's full tree is checked against
// the GroupInfo's tree hash before the log and travels as byReference; a
// tree that is not the new epoch's is refused and nothing is applied.
func TestFullTreeCheckedAtTheEdge(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	id := e.createRoom(alice, "r")
	oldTree := wire.MustMarshal(alice.group.Tree())

	b, err := alice.group.Commit(mls.CommitOptions{ForcePath: true, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
	if err != nil {
		t.Fatal(err)
	}
	before := e.b.count(fsm.CmdUpdateRoom)
	rec := e.apiDo(http.MethodPost, roomPath(id, "commit"), alice.token, commitJSON(b, oldTree))
	want(t, rec, http.StatusOK, "commit with a stale tree")
	if res := decodeJSON[updateResult](t, rec); res.CodeName != "invalidProposal" || !strings.Contains(res.Description, "tree") {
		t.Fatalf("stale tree: %+v", res)
	}
	// The same over federation, as an UpdateRoomRequest.
	fed := wire.MustMarshal(&proto.UpdateRoomRequest{Message: b.Commit, GroupInfo: b.GroupInfo, RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeFull, Tree: oldTree}})
	rec = e.fedDo(http.MethodPost, "/updateRoom/r", "b.example", fed)
	want(t, rec, http.StatusOK, "federation commit with a stale tree")
	var resp proto.UpdateRoomResponse
	decodeMIMI(t, rec, &resp)
	if resp.Code != proto.UpdateInvalidProposal {
		t.Fatalf("federation stale tree: %+v", resp)
	}
	if n := e.b.count(fsm.CmdUpdateRoom); n != before {
		t.Fatalf("%d updateRoom commands applied for refused trees", n-before)
	}

	// The refused commit is still Alice's pending one: send it again,
	// with its own tree.
	alice.group.MergePendingCommit()
	newTree := wire.MustMarshal(alice.group.Tree())
	rec = e.apiDo(http.MethodPost, roomPath(id, "commit"), alice.token, commitJSON(b, newTree))
	want(t, rec, http.StatusOK, "commit with its tree")
	if res := decodeJSON[updateResult](t, rec); res.Code != 0 {
		t.Fatalf("commit with its tree: %+v", res)
	}
	var c fsm.Command
	var rb fsm.RoomBody
	var logged proto.UpdateRoomRequest
	if err := wire.Unmarshal(e.b.lastCmd, &c); err != nil {
		t.Fatal(err)
	}
	if err := wire.Unmarshal(c.Body, &rb); err != nil {
		t.Fatal(err)
	}
	if err := wire.Unmarshal(rb.Request, &logged); err != nil {
		t.Fatal(err)
	}
	if logged.RatchetTree.Representation != proto.TreeByReference || bytes.Contains(e.b.lastCmd, newTree) {
		t.Fatalf("the log entry carries the tree (representation %d)", logged.RatchetTree.Representation)
	}
}

// TestGroupInfoBinary: claimGroupInfo answers as application/mimi when
// asked, the tree streamed, equal to the JSON answer.
func TestGroupInfoBinary(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	id := e.createRoom(alice, "r")
	body := map[string]any{"signature_key": alice.signer.PublicKey()}
	rec := e.apiDo(http.MethodPost, roomPath(id, "groupinfo"), alice.token, body, "Accept", "application/mimi")
	want(t, rec, http.StatusOK, "binary GroupInfo")
	var resp proto.GroupInfoResponse
	decodeMIMI(t, rec, &resp)
	if resp.Status != proto.GroupInfoSuccess || !bytes.Equal(resp.RatchetTree.Tree, wire.MustMarshal(alice.group.Tree())) {
		t.Fatalf("binary GroupInfo: %v", resp.Status)
	}
	rec = e.apiDo(http.MethodPost, roomPath(id, "groupinfo"), alice.token, body)
	want(t, rec, http.StatusOK, "JSON GroupInfo")
	out := decodeJSON[struct {
		RatchetTree []byte `json:"ratchet_tree"`
	}](t, rec)
	if !bytes.Equal(out.RatchetTree, resp.RatchetTree.Tree) {
		t.Fatal("JSON and binary trees differ")
	}
	rec = e.fedDo(http.MethodPost, "/claimGroupInfo/r", "b.example", wire.MustMarshal(&proto.GroupInfoRequest{SignatureKey: []byte{1}, Credential: mls.BasicCredential([]byte(alice.uri))}))
	want(t, rec, http.StatusOK, "federation GroupInfo")
}

// TestRoomBodyLimitScales: a hosted room's commit body may grow with its
// members, and no further than MaxLargeRoomBody.
func TestRoomBodyLimitScales(t *testing.T) {
	e := newEnv(t, "a.example", func(c *Config) {
		c.MaxRoomBody, c.RoomBodyPerMember, c.MaxLargeRoomBody = 64<<10, 1<<10, 80<<10
	})
	alice := e.register("alice", "phone")
	id := e.createRoom(alice, "r")
	junk := make([]byte, 70<<10)
	mimi := []string{"Content-Type", "application/mimi"}
	wantJSONError(t, e.apiDo(http.MethodPost, roomPath(id, "commit"), alice.token, junk, mimi...), http.StatusRequestEntityTooLarge, "limit", "70 KiB to a 1-member room")
	var kps []*mls.KeyPackageBundle
	for i := range 10 {
		m := newMember(t, proto.ClientURI("b.example", "user"+string(rune('a'+i)), "d"))
		kps = append(kps, m.keyPackage(t))
	}
	e.addBinary(alice, id, kps...)
	// 64 KiB + 11 members: 75 KiB, so the junk now reaches the decoder.
	wantJSONError(t, e.apiDo(http.MethodPost, roomPath(id, "commit"), alice.token, junk, mimi...), http.StatusBadRequest, "invalid", "70 KiB to an 11-member room")
	wantJSONError(t, e.apiDo(http.MethodPost, roomPath(id, "commit"), alice.token, make([]byte, 81<<10), mimi...), http.StatusRequestEntityTooLarge, "limit", "over MaxLargeRoomBody")
	if got := wantFed(e, "/updateRoom/r", junk); got != http.StatusBadRequest {
		t.Fatalf("federation updateRoom of 70 KiB to an 11-member room: %d", got)
	}
}

func wantFed(e *env, path string, body []byte) int {
	return e.fedDo(http.MethodPost, path, "b.example", body).Code
}

// TestTreeFetchesCostBudget: every tree a client or a peer fetches is
// charged to its byte budget, so fetching a room's tree again and again
// runs into 429 with Retry-After like sending those bytes would (the
// request budget alone would allow thousands).
func TestTreeFetchesCostBudget(t *testing.T) {
	// Bursts of 8 KiB of bytes (8 s at 1 KiB/s); 2,000 requests.
	e := newEnv(t, "a.example", func(c *Config) {
		c.ClientBudget = Budget{Requests: 1000, Bytes: 1024}
		c.PeerBudget = Budget{Requests: 1000, Bytes: 1024}
	})
	alice := e.register("alice", "phone")
	bob := e.register("bob", "laptop")
	bobKP := bob.keyPackage(t)
	carol := newMember(t, proto.ClientURI("b.example", "carol", "tablet"))
	carolKP := carol.keyPackage(t)
	id := e.createRoom(alice, "big")
	e.addBinary(alice, id, bobKP, carolKP)
	fetches := func(what string, fetch func() *httptest.ResponseRecorder) {
		t.Helper()
		for i := range 100 {
			rec := fetch()
			switch {
			case rec.Code == http.StatusOK:
				continue
			case i > 0 && rec.Code == http.StatusTooManyRequests && rec.Header().Get("Retry-After") != "":
				return
			}
			t.Fatalf("%s: fetch %d: HTTP %d %q", what, i, rec.Code, rec.Body)
		}
		t.Fatalf("%s: 100 fetches of the tree, none refused", what)
	}
	path := roomPath(id, "tree") + "?keypackage=" + base64.RawURLEncoding.EncodeToString(refOf(t, bobKP))
	fetches("Bob", func() *httptest.ResponseRecorder { return e.apiDo(http.MethodGet, path, bob.token, nil) })
	fed := wire.MustMarshal(&proto.WelcomeTreeRequest{Client: carol.uri, KeyPackageRef: refOf(t, carolKP)})
	fetches("b.example", func() *httptest.ResponseRecorder {
		return e.fedDo(http.MethodPost, "/welcomeTree/big", "b.example", fed)
	})
}
