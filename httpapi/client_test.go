package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

func TestRegistration(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	rec := e.apiDo(http.MethodPost, "/v1/register", "", map[string]any{"user": "alice", "device": "phone",
		"profile": []map[string]string{{"source": "vcard", "name": "FN", "value": "Alice Liddell"}}})
	want(t, rec, http.StatusCreated, "register")
	out := decodeJSON[map[string]string](t, rec)
	if out["client"] != "mimi://a.example/u/alice/d/phone" || out["user"] != "mimi://a.example/u/alice" {
		t.Fatalf("registered %+v", out)
	}
	parts := strings.Split(out["token"], ".")
	if len(parts) != 3 || parts[0] != "mimi1" {
		t.Fatalf("token %q", out["token"])
	}
	if uri, _ := base64.RawURLEncoding.DecodeString(parts[1]); string(uri) != out["client"] {
		t.Fatalf("the token names %q", uri)
	}
	if secret, _ := base64.RawURLEncoding.DecodeString(parts[2]); len(secret) != 32 {
		t.Fatalf("a %d-byte secret", len(secret))
	}
	// Only the hash is stored, and it authenticates.
	e.b.read(func(s *fsm.State) {
		if s.Authenticate(proto.URI(out["client"]), []byte(out["token"])) {
			t.Fatal("the token itself authenticates: it was stored")
		}
	})
	rec = e.apiDo(http.MethodGet, "/v1/whoami", out["token"], nil)
	want(t, rec, http.StatusOK, "whoami")
	if who := decodeJSON[map[string]string](t, rec); who["client"] != out["client"] || who["user"] != out["user"] || who["domain"] != "a.example" {
		t.Fatalf("whoami %+v", who)
	}
	// The profile is searchable.
	rec = e.apiDo(http.MethodPost, "/v1/identifiers", out["token"], map[string]any{"domain": "a.example", "type": "partialName", "value": "liddell"})
	want(t, rec, http.StatusOK, "identifiers")
	if got := decodeJSON[struct {
		Code     string   `json:"code"`
		URIs     []string `json:"uris"`
		Profiles []struct {
			URI    string         `json:"uri"`
			Fields []profileField `json:"fields"`
		} `json:"profiles"`
	}](t, rec); got.Code != "success" || len(got.URIs) != 1 || got.Profiles[0].Fields[0] != (profileField{"vcard", "FN", "Alice Liddell"}) {
		t.Fatalf("identifiers %+v", got)
	}

	for _, c := range []struct {
		name   string
		body   any
		status int
		kind   string
	}{
		{"an existing client", map[string]any{"user": "alice", "device": "phone"}, 409, kindConflict},
		{"a bad user name", map[string]any{"user": "al ice", "device": "phone"}, 400, kindInvalid},
		{"no device", map[string]any{"user": "bob"}, 400, kindInvalid},
		{"an unknown field", map[string]any{"user": "bob", "device": "x", "admin": true}, 400, kindInvalid},
		{"a bad profile source", map[string]any{"user": "bob", "device": "x", "profile": []map[string]string{{"source": "ldap", "name": "x", "value": "y"}}}, 400, kindInvalid},
		{"trailing data", []byte(`{"user":"bob","device":"x"} {}`), 400, kindInvalid},
		{"not JSON", []byte(`user=bob`), 400, kindInvalid},
		{"oversized", append(append([]byte(`{"user":"`), bytes.Repeat([]byte("a"), 2<<20)...), `","device":"x"}`...), 413, kindLimit},
		{"a short token secret", map[string]any{"user": "bob", "device": "x", "token_secret": []byte{1, 2, 3}}, 400, kindInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantJSONError(t, e.apiDo(http.MethodPost, "/v1/register", "", c.body), c.status, c.kind, c.name)
		})
	}

	// A client that picks its token's secret can retry a registration
	// whose answer it lost: the same key and body answer like the first
	// time, with the token the provider stored. Without a secret, a second
	// registration of the same client is a conflict.
	secret := bytes.Repeat([]byte{7}, 32)
	retry := map[string]any{"user": "carol", "device": "x", "token_secret": secret}
	first := e.apiDo(http.MethodPost, "/v1/register", "", retry, "Idempotency-Key", "k1")
	want(t, first, http.StatusCreated, "register with a secret")
	again := e.apiDo(http.MethodPost, "/v1/register", "", retry, "Idempotency-Key", "k1")
	want(t, again, http.StatusCreated, "the retry")
	tok1, tok2 := decodeJSON[map[string]string](t, first)["token"], decodeJSON[map[string]string](t, again)["token"]
	if tok1 != tok2 || !strings.HasSuffix(tok1, base64.RawURLEncoding.EncodeToString(secret)) {
		t.Fatalf("retry answered %q, first %q", tok2, tok1)
	}
	want(t, e.apiDo(http.MethodGet, "/v1/whoami", tok1, nil), http.StatusOK, "whoami with the chosen token")
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/register", "", retry, "Idempotency-Key", "k2"), http.StatusConflict, kindConflict, "another key")

	// With a registration key, only holders register.
	k := newEnv(t, "a.example", func(c *Config) { c.RegistrationKey = "sesame" })
	body := map[string]any{"user": "bob", "device": "x"}
	wantJSONError(t, k.apiDo(http.MethodPost, "/v1/register", "", body), http.StatusForbidden, kindNotAllowed, "no key")
	wantJSONError(t, k.apiDo(http.MethodPost, "/v1/register", "", body, "Mimi-Registration-Key", "open"), http.StatusForbidden, kindNotAllowed, "a wrong key")
	want(t, k.apiDo(http.MethodPost, "/v1/register", "", body, "Mimi-Registration-Key", "sesame"), http.StatusCreated, "the right key")
}

func TestTokenAuthentication(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	bob := e.register("bob", "phone")
	parts := strings.Split(alice.token, ".")
	forged := strings.Join([]string{parts[0], strings.Split(bob.token, ".")[1], parts[2]}, ".")
	for _, c := range []struct{ name, header string }{
		{"no header", ""},
		{"another scheme", "Basic " + alice.token},
		{"an empty token", "Bearer "},
		{"not a mimi1 token", "Bearer abc.def.ghi"},
		{"a token without secret", "Bearer " + parts[0] + "." + parts[1]},
		{"a token with a fourth part", "Bearer " + alice.token + ".x"},
		{"a token of an unknown client", "Bearer mimi1." + base64.RawURLEncoding.EncodeToString([]byte("mimi://a.example/u/eve/d/x")) + "." + parts[2]},
		{"another client's secret", "Bearer " + forged},
		{"a token naming a room", "Bearer mimi1." + base64.RawURLEncoding.EncodeToString([]byte("mimi://a.example/r/x")) + "." + parts[2]},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/v1/whoami", nil)
			if c.header != "" {
				req.Header.Set("Authorization", c.header)
			}
			rec := httptest.NewRecorder()
			e.apiH.ServeHTTP(rec, req)
			wantJSONError(t, rec, http.StatusUnauthorized, kindNotAllowed, c.name)
			if rec.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("no WWW-Authenticate")
			}
		})
	}
	want(t, e.apiDo(http.MethodGet, "/v1/whoami", "  "+alice.token, nil), http.StatusOK, "a token with spaces around")
}

func TestKeyPackagesAPI(t *testing.T) {
	e := newEnv(t, "a.example", func(c *Config) { c.MaxRoomBody = 32 << 10 })
	alice := e.register("alice", "phone")
	other := newMember(t, "mimi://a.example/u/alice/d/tablet")
	e.upload(alice)
	lastResort, err := mls.NewKeyPackage(suite(t), alice.signer, mls.KeyPackageOptions{Credential: mls.BasicCredential([]byte(alice.uri)), Capabilities: caps, Lifetime: lifetime(), LastResort: true})
	if err != nil {
		t.Fatal(err)
	}
	want(t, e.apiDo(http.MethodPost, "/v1/keypackages", alice.token, map[string]any{"key_packages": [][]byte{wire.MustMarshal(mls.NewKeyPackageMessage(lastResort.KeyPackage))}}), http.StatusNoContent, "last resort")
	rec := e.apiDo(http.MethodGet, "/v1/keypackages", alice.token, nil)
	want(t, rec, http.StatusOK, "count")
	count := decodeJSON[struct {
		KeyPackages int      `json:"key_packages"`
		LastResort  []uint16 `json:"last_resort_suites"`
	}](t, rec)
	if count.KeyPackages != 1 || !slices.Equal(count.LastResort, []uint16{uint16(mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519)}) {
		t.Fatalf("count %+v", count)
	}
	kp := func(m *member) []byte { return wire.MustMarshal(mls.NewKeyPackageMessage(m.keyPackage(t).KeyPackage)) }
	gi, _ := func() (*mls.Message, error) {
		g, err := mls.CreateGroup(suite(t), alice.signer, mls.CreateOptions{GroupOptions: groupOptions(), GroupID: []byte("g"), Credential: mls.BasicCredential([]byte(alice.uri)), Lifetime: lifetime()})
		if err != nil {
			t.Fatal(err)
		}
		return g.GroupInfo(mls.GroupInfoOptions{})
	}()
	for _, c := range []struct {
		name   string
		body   any
		status int
		kind   string
	}{
		{"none", map[string]any{"key_packages": [][]byte{}}, 400, kindInvalid},
		{"bad base64", []byte(`{"key_packages":["!!!"]}`), 400, kindInvalid},
		{"not an MLSMessage", map[string]any{"key_packages": [][]byte{{1, 2, 3}}}, 400, kindInvalid},
		{"a GroupInfo", map[string]any{"key_packages": [][]byte{wire.MustMarshal(gi)}}, 400, kindInvalid},
		{"another client's", map[string]any{"key_packages": [][]byte{kp(other)}}, 400, kindInvalid},
		{"oversized", map[string]any{"key_packages": slices.Repeat([][]byte{kp(alice)}, 600)}, 413, kindLimit},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantJSONError(t, e.apiDo(http.MethodPost, "/v1/keypackages", alice.token, c.body), c.status, c.kind, c.name)
		})
	}
}

func TestCreateRoomAPI(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	eve := e.register("eve", "phone")
	id := e.createRoom(alice, "r")
	gi, _ := alice.group.GroupInfo(mls.GroupInfoOptions{ExternalPub: true})
	tree := wire.MustMarshal(alice.group.Tree())
	for _, c := range []struct {
		name   string
		body   map[string]any
		status int
		kind   string
	}{
		{"an existing room", map[string]any{"room": "r", "group_info": wire.MustMarshal(gi), "ratchet_tree": tree}, 409, kindConflict},
		{"a bad room id", map[string]any{"room": "a/b", "group_info": wire.MustMarshal(gi), "ratchet_tree": tree}, 400, kindInvalid},
		{"no group info", map[string]any{"room": "s", "ratchet_tree": tree}, 400, kindInvalid},
		{"no tree", map[string]any{"room": "s", "group_info": wire.MustMarshal(gi)}, 400, kindInvalid},
		{"a group whose id is another room", map[string]any{"room": "s", "group_info": wire.MustMarshal(gi), "ratchet_tree": tree}, 400, kindInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantJSONError(t, e.apiDo(http.MethodPost, "/v1/rooms", alice.token, c.body), c.status, c.kind, c.name)
		})
	}
	wantJSONError(t, e.apiDo(http.MethodGet, roomPath(id, ""), eve.token, nil), http.StatusForbidden, kindNotAllowed, "a non-participant reads the room")
	wantJSONError(t, e.apiDo(http.MethodGet, roomPath(proto.RoomURI("a.example", "nope"), ""), alice.token, nil), http.StatusNotFound, kindNotFound, "an unknown room")
	wantJSONError(t, e.apiDo(http.MethodGet, roomPath(proto.RoomURI("b.example", "r"), ""), alice.token, nil), http.StatusNotFound, kindNotFound, "a room hosted elsewhere")
	wantJSONError(t, e.apiDo(http.MethodGet, "/v1/rooms/B_example/r", alice.token, nil), http.StatusBadRequest, kindInvalid, "a bad hub")
	// Subscribing to a hosted room needs membership; leaving is free.
	wantJSONError(t, e.apiDo(http.MethodPut, roomPath(id, "subscription"), eve.token, nil), http.StatusForbidden, kindNotAllowed, "a non-member subscribes")
	want(t, e.apiDo(http.MethodDelete, roomPath(id, "subscription"), eve.token, nil), http.StatusNoContent, "unsubscribe")
	want(t, e.apiDo(http.MethodPut, roomPath(id, "subscription"), alice.token, nil), http.StatusNoContent, "subscribe")
}

// TestLocalRoomRequests checks the client API's own checks on room
// requests for a room hosted here.
func TestLocalRoomRequests(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	id := e.createRoom(alice, "r")
	other := e.createRoom(e.register("carol", "x"), "other")
	b, err := alice.group.Commit(mls.CommitOptions{GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
	if err != nil {
		t.Fatal(err)
	}
	alice.group.DiscardPendingCommit()
	prop, err := alice.group.Propose(mls.SelfRemoveProposal())
	if err != nil {
		t.Fatal(err)
	}
	hi, _ := alice.group.Encrypt([]byte("hi"), room.SenderHint(alice.uri))
	anon, _ := alice.group.Encrypt([]byte("hi"), room.SenderHint("mimi://a.example/u/carol/d/x"))
	for _, c := range []struct {
		name, path string
		body       any
		status     int
		kind       string
	}{
		{"a commit that is a proposal", roomPath(id, "commit"), map[string]any{"commit": wire.MustMarshal(prop), "group_info": wire.MustMarshal(b.GroupInfo)}, 400, kindInvalid},
		{"a commit for another room", roomPath(other, "commit"), commitJSON(b, nil), 400, kindInvalid},
		{"a commit without GroupInfo", roomPath(id, "commit"), map[string]any{"commit": wire.MustMarshal(b.Commit)}, 400, kindInvalid},
		{"a commit with a GroupInfo as Welcome", roomPath(id, "commit"), map[string]any{"commit": wire.MustMarshal(b.Commit), "group_info": wire.MustMarshal(b.GroupInfo), "welcome": wire.MustMarshal(b.GroupInfo)}, 400, kindInvalid},
		{"a commit with a broken tree", roomPath(id, "commit"), commitJSON(b, []byte{9, 9}), 400, kindInvalid},
		{"a commit for a room not hosted here", roomPath(proto.RoomURI("a.example", "nope"), "commit"), commitJSON(b, nil), 400, kindInvalid}, // the group id names r
		{"no proposals", roomPath(id, "proposals"), map[string]any{"proposals": [][]byte{}}, 400, kindInvalid},
		{"a commit as proposal", roomPath(id, "proposals"), map[string]any{"proposals": [][]byte{wire.MustMarshal(b.Commit)}}, 400, kindInvalid},
		{"a message naming another sender", roomPath(id, "messages"), map[string]any{"message": wire.MustMarshal(anon)}, 403, kindNotAllowed},
		{"a message for another room", roomPath(other, "messages"), map[string]any{"message": wire.MustMarshal(hi)}, 400, kindInvalid},
		{"a commit as message", roomPath(id, "messages"), map[string]any{"message": wire.MustMarshal(b.Commit)}, 400, kindInvalid},
		{"groupinfo without key", roomPath(id, "groupinfo"), map[string]any{}, 400, kindInvalid},
		{"a garbage report", roomPath(id, "abuse"), map[string]any{"report": []byte{1}}, 400, kindInvalid},
		{"no report", roomPath(id, "abuse"), map[string]any{}, 400, kindInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantJSONError(t, e.apiDo(http.MethodPost, c.path, alice.token, c.body), c.status, c.kind, c.name)
		})
	}
	// Proposals reach the room (Alice's SelfRemove as sole member).
	rec := e.apiDo(http.MethodPost, roomPath(id, "proposals"), alice.token, map[string]any{"proposals": [][]byte{wire.MustMarshal(prop)}})
	want(t, rec, http.StatusOK, "proposal")
	if r := decodeJSON[updateResult](t, rec); r.CodeName == "" {
		t.Fatalf("proposal result %+v", r)
	}
	// Unknown rooms at this hub.
	rec = e.apiDo(http.MethodPost, roomPath(proto.RoomURI("a.example", "nope"), "groupinfo"), alice.token, map[string]any{"signature_key": []byte{1}})
	want(t, rec, http.StatusOK, "groupinfo of an unknown room")
	if got := decodeJSON[map[string]any](t, rec)["status"]; got != "noSuchRoom" {
		t.Fatalf("groupinfo of an unknown room: %v", got)
	}
}

// remoteFixture is a local client in a room hosted at h.example.
type remoteFixture struct {
	*env
	alice *member
	room  proto.URI
}

func newRemoteFixture(t *testing.T) *remoteFixture {
	e := newEnv(t, "a.example", nil)
	f := &remoteFixture{env: e, alice: e.register("alice", "phone"), room: proto.RoomURI("h.example", "q")}
	pol := proto.DefaultPolicy()
	g, err := mls.CreateGroup(suite(t), f.alice.signer, mls.CreateOptions{GroupOptions: groupOptions(), GroupID: []byte(f.room),
		Extensions: mls.Extensions{pol.Extension()}, Credential: mls.BasicCredential([]byte(f.alice.uri)), Capabilities: caps, Lifetime: lifetime()})
	if err != nil {
		t.Fatal(err)
	}
	f.alice.group = g
	return f
}

func TestRelayToHub(t *testing.T) {
	f := newRemoteFixture(t)
	alice, id := f.alice, f.room
	f.peers.update = proto.UpdateRoomResponse{Code: proto.UpdateSuccess}
	b, err := alice.group.Commit(mls.CommitOptions{GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
	if err != nil {
		t.Fatal(err)
	}
	alice.group.DiscardPendingCommit()
	prop, _ := alice.group.Propose(mls.SelfRemoveProposal())
	hi, _ := alice.group.Encrypt([]byte("hi"), room.SenderHint(alice.uri))
	report := wire.MustMarshal(&proto.AbuseReport{ReportingUser: alice.user, AllegedAbuser: "mimi://h.example/u/x", GroupID: []byte(id), Reason: proto.AbuseSpam})
	f.peers.groupInfo = &proto.GroupInfoResponse{Status: proto.GroupInfoNotAuthorized}

	type call struct {
		name, path string
		body       any
		method     string
		check      func(t *testing.T, body any)
		status     int
	}
	calls := []call{
		{"commit", roomPath(id, "commit"), commitJSON(b, wire.MustMarshal(alice.group.Tree())), "UpdateRoom", func(t *testing.T, body any) {
			req := body.(*proto.UpdateRoomRequest)
			if !req.IsCommit() || req.RatchetTree.Representation != proto.TreeFull {
				t.Fatalf("relayed %+v", req)
			}
		}, 200},
		{"proposals", roomPath(id, "proposals"), map[string]any{"proposals": [][]byte{wire.MustMarshal(prop), wire.MustMarshal(prop)}}, "UpdateRoom", func(t *testing.T, body any) {
			if req := body.(*proto.UpdateRoomRequest); req.IsCommit() || len(req.MoreProposals) != 1 {
				t.Fatalf("relayed %+v", req)
			}
		}, 200},
		{"message", roomPath(id, "messages"), map[string]any{"message": wire.MustMarshal(hi)}, "ProvisionalMessage", nil, 200},
		{"groupinfo", roomPath(id, "groupinfo"), map[string]any{"signature_key": []byte{1, 2}}, "ClaimGroupInfo", func(t *testing.T, body any) {
			if req := body.(*proto.GroupInfoRequest); string(req.Credential.Identity) != string(alice.uri) || !bytes.Equal(req.SignatureKey, []byte{1, 2}) {
				t.Fatalf("relayed %+v", req)
			}
		}, 200},
		{"abuse", roomPath(id, "abuse"), map[string]any{"report": report}, "ReportAbuse", nil, 202},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			rec := f.apiDo(http.MethodPost, c.path, alice.token, c.body)
			want(t, rec, c.status, c.name)
			got := f.peers.taken()
			if len(got) != 1 || got[0].method != c.method || got[0].room != id {
				t.Fatalf("peer calls %+v", got)
			}
			if c.check != nil {
				c.check(t, got[0].body)
			}
			if c.method == "UpdateRoom" || c.method == "ProvisionalMessage" {
				if r := decodeJSON[updateResult](t, rec); r.Code != 0 {
					t.Fatalf("result %+v", r)
				}
			}
		})
	}
	if n := f.b.count(fsm.CmdUpdateRoom) + f.b.count(fsm.CmdProvisional) + f.b.count(fsm.CmdReportAbuse); n != 0 {
		t.Fatalf("%d room commands applied locally for a remote room", n)
	}

	// The hub does not answer: hubUnresponsive for updates, 502 elsewhere.
	f.peers.setErr(errors.New("connection refused"))
	for _, c := range calls {
		t.Run("unreachable/"+c.name, func(t *testing.T) {
			rec := f.apiDo(http.MethodPost, c.path, alice.token, c.body)
			if c.method == "UpdateRoom" || c.method == "ProvisionalMessage" {
				want(t, rec, http.StatusOK, c.name)
				if r := decodeJSON[updateResult](t, rec); r.Code != uint8(proto.UpdateHubUnresponsive) || r.CodeName != "hubUnresponsive" || !strings.Contains(r.Description, "connection refused") {
					t.Fatalf("result %+v", r)
				}
				return
			}
			wantJSONError(t, rec, http.StatusBadGateway, kindUnavailable, c.name)
		})
	}
	// The hub refuses: its status passes through.
	f.peers.setErr(fmt.Errorf("hub: %w", &client.StatusError{Status: http.StatusForbidden, Message: "no"}))
	for _, c := range calls {
		t.Run("refused/"+c.name, func(t *testing.T) {
			wantJSONError(t, f.apiDo(http.MethodPost, c.path, alice.token, c.body), http.StatusForbidden, kindNotAllowed, c.name)
		})
	}
	f.peers.taken()
}

// TestRelayIdempotency: a write relayed to a room's hub carries an
// Idempotency-Key derived from the client's, the same for every retry of
// one client request and different for other keys, clients and routes;
// and a relay that may have reached the hub (connection lost after it was
// made, the hub's 5xx) answers 504 "retry with the same key" instead of
// the definitive-looking hubUnresponsive, which is kept for relays the hub
// cannot have seen. Before, a relay cut off after the hub applied it
// answered hubUnresponsive: the client discarded a message or commit the
// room had accepted (a system test caught it when a hub node was killed).
func TestRelayIdempotency(t *testing.T) {
	f := newRemoteFixture(t)
	alice, id := f.alice, f.room
	bob := f.register("bob", "phone")
	f.peers.update = proto.UpdateRoomResponse{Code: proto.UpdateSuccess}
	hi, err := alice.group.Encrypt([]byte("hi"), room.SenderHint(alice.uri))
	if err != nil {
		t.Fatal(err)
	}
	msg := map[string]any{"message": wire.MustMarshal(hi)}
	bobHi, err := alice.group.Encrypt([]byte("hi"), room.SenderHint(bob.uri))
	if err != nil {
		t.Fatal(err)
	}
	b, err := alice.group.Commit(mls.CommitOptions{GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
	if err != nil {
		t.Fatal(err)
	}
	alice.group.DiscardPendingCommit()
	commit := commitJSON(b, nil)
	relayedKey := func(m *member, path string, body any, hdr ...string) string {
		t.Helper()
		rec := f.apiDo(http.MethodPost, path, m.token, body, hdr...)
		want(t, rec, http.StatusOK, path)
		calls := f.peers.taken()
		if len(calls) != 1 {
			t.Fatalf("%d relays", len(calls))
		}
		return calls[0].key
	}
	msgPath, commitPath := roomPath(id, "messages"), roomPath(id, "commit")
	k1 := relayedKey(alice, msgPath, msg, "Idempotency-Key", "k1")
	if k1 == "" || k1 == "k1" || len(k1) > 64 {
		t.Fatalf("relay key %q for client key k1", k1)
	}
	if again := relayedKey(alice, msgPath, msg, "Idempotency-Key", "k1"); again != k1 {
		t.Errorf("a retry relays under %q, the first try under %q", again, k1)
	}
	for name, k := range map[string]string{
		"another key":    relayedKey(alice, msgPath, msg, "Idempotency-Key", "k2"),
		"another client": relayedKey(bob, msgPath, map[string]any{"message": wire.MustMarshal(bobHi)}, "Idempotency-Key", "k1"),
		"another route":  relayedKey(alice, commitPath, commit, "Idempotency-Key", "k1"),
	} {
		if k == k1 || k == "" {
			t.Errorf("%s: relay key %q (k1's: %q)", name, k, k1)
		}
	}
	if k := relayedKey(alice, msgPath, msg); k != "" {
		t.Errorf("no client key, yet relay key %q", k)
	}

	for _, c := range []struct {
		name string
		err  error
		// unknown: 504; else hubUnresponsive.
		unknown bool
	}{
		{"connection lost", &client.TransportError{Method: "POST", URL: "/provisionalMessage/q", Err: io.ErrUnexpectedEOF}, true},
		{"hub's 503", &client.StatusError{Status: http.StatusServiceUnavailable, Message: "no leader"}, true},
		{"no connection", &client.TransportError{Method: "POST", URL: "/provisionalMessage/q", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}, false},
		{"not sent", errors.New("no route"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.peers.setErr(fmt.Errorf("relay: %w", c.err))
			defer f.peers.setErr(nil)
			for _, r := range []struct {
				path string
				body any
			}{{msgPath, msg}, {commitPath, commit}} {
				rec := f.apiDo(http.MethodPost, r.path, alice.token, r.body, "Idempotency-Key", "k3")
				if c.unknown {
					wantJSONError(t, rec, http.StatusGatewayTimeout, kindUnavailable, r.path)
					continue
				}
				want(t, rec, http.StatusOK, r.path)
				if res := decodeJSON[updateResult](t, rec); res.Code != uint8(proto.UpdateHubUnresponsive) {
					t.Errorf("%s: result %+v, want hubUnresponsive", r.path, res)
				}
			}
			f.peers.taken()
		})
	}
}

func TestClaimRouting(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	carol := e.register("carol", "x")
	e.upload(carol)
	users := []proto.URI{"mimi://b.example/u/bob", carol.user, "mimi://c.example/u/cy", "mimi://b.example/u/bea"}

	// A room hosted elsewhere: every domain's claim goes through its hub.
	remote := proto.RoomURI("h.example", "q")
	rec := e.apiDo(http.MethodPost, "/v1/keymaterial", alice.token, map[string]any{"users": users, "room": remote, "cipher_suites": []int{1}, "last_resort_allowed": true})
	want(t, rec, http.StatusOK, "claim through a hub")
	out := decodeJSON[claimOut](t, rec)
	var order []string
	for _, u := range out.Users {
		order = append(order, u.User)
	}
	if !slices.Equal(order, []string{"mimi://b.example/u/bob", "mimi://b.example/u/bea", string(carol.user), "mimi://c.example/u/cy"}) {
		t.Fatalf("answer order %v", order)
	}
	calls := e.peers.taken()
	var got []string
	for _, c := range calls {
		req := c.body.(*proto.KeyMaterialRequest)
		if req.Room != remote || req.RequestingUser != alice.user || !req.LastResortAllowed || !slices.Equal(req.AcceptableSuites, []mls.CipherSuite{1}) {
			t.Fatalf("claim %+v", req)
		}
		got = append(got, fmt.Sprintf("%s→%s %v", c.via, c.target, req.TargetUsers))
	}
	if !slices.Equal(got, []string{"h.example→b.example [mimi://b.example/u/bob mimi://b.example/u/bea]", "h.example→a.example [" + string(carol.user) + "]", "h.example→c.example [mimi://c.example/u/cy]"}) {
		t.Fatalf("claims %q", got)
	}
	if n := e.b.count(fsm.CmdClaimKeyMaterial) + e.b.count(fsm.CmdRouteKeyPackages); n != 0 {
		t.Fatalf("%d local claim or route commands for a remote room", n)
	}

	// No room: local users here, others directly.
	rec = e.apiDo(http.MethodPost, "/v1/keymaterial", alice.token, map[string]any{"users": users[:3]})
	want(t, rec, http.StatusOK, "claim without room")
	if out := decodeJSON[claimOut](t, rec); out.Users[1].Status != "success" || len(out.Users[1].Clients) != 1 || out.Users[1].Clients[0].KeyPackage == nil {
		t.Fatalf("local claim %+v", out.Users[1])
	}
	calls = e.peers.taken()
	if len(calls) != 2 || calls[0].via != "b.example" || calls[0].target != "b.example" || calls[1].via != "c.example" || calls[1].target != "c.example" {
		t.Fatalf("direct claims %+v", calls)
	}
	if e.b.count(fsm.CmdClaimKeyMaterial) != 1 {
		t.Fatal("the local user was not claimed here")
	}

	for _, c := range []struct {
		name   string
		body   map[string]any
		err    error
		status int
		kind   string
	}{
		{"no users", map[string]any{"users": []string{}}, nil, 400, kindInvalid},
		{"a room URI that is a user", map[string]any{"users": users[:1], "room": users[0]}, nil, 400, kindInvalid},
		{"a client instead of a user", map[string]any{"users": []string{string(carol.uri)}}, nil, 400, kindInvalid},
		{"a user twice", map[string]any{"users": []proto.URI{users[0], users[0]}}, nil, 400, kindInvalid},
		{"a room of this hub that does not exist", map[string]any{"users": users[:1], "room": "mimi://a.example/r/nope"}, nil, 404, kindNotFound},
		{"an unreachable provider", map[string]any{"users": users[:1]}, errors.New("timeout"), 502, kindUnavailable},
		{"a refusing provider", map[string]any{"users": users[:1]}, &client.StatusError{Status: 429}, 429, kindLimit},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.peers.setErr(c.err)
			defer e.peers.setErr(nil)
			wantJSONError(t, e.apiDo(http.MethodPost, "/v1/keymaterial", alice.token, c.body), c.status, c.kind, c.name)
		})
	}
}

func TestConsentAPI(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	carol := e.register("carol", "x")
	bob := proto.URI("mimi://b.example/u/bob")

	// Alice asks Bob (remote): the request waits in b.example's outbox.
	want(t, e.apiDo(http.MethodPost, "/v1/consent", alice.token, map[string]any{"operation": "request", "requester": alice.user, "target": bob}), http.StatusNoContent, "request")
	e.b.read(func(s *fsm.State) {
		if q := s.Outbox(10); len(q) != 1 || q[0].Domain != "b.example" || q[0].Items[0].Kind != fsm.OutRequestConsent {
			t.Fatalf("outbox %+v", q)
		}
	})
	// Bob's provider answers with a grant over federation.
	grant := wire.MustMarshal(&proto.ConsentEntry{Operation: proto.ConsentGrant, Requester: alice.user, Target: bob})
	want(t, e.fedDo(http.MethodPost, "/updateConsent/a.example", "b.example", grant), http.StatusNoContent, "remote grant")
	if st := e.stream(alice, 0); !slices.Equal(kindsOf(st.Items), []string{"consent"}) {
		t.Fatalf("Alice's stream after Bob's grant %+v", st)
	}
	// Alice asks Carol (local) about a room; Carol sees it and grants.
	rm := "mimi://a.example/r/x"
	want(t, e.apiDo(http.MethodPost, "/v1/consent", alice.token, map[string]any{"operation": "request", "requester": alice.user, "target": carol.user, "room": rm}), http.StatusNoContent, "local request")
	lists := func(m *member) map[string][]consentJSON {
		rec := e.apiDo(http.MethodGet, "/v1/consent", m.token, nil)
		want(t, rec, http.StatusOK, "consent lists")
		return decodeJSON[map[string][]consentJSON](t, rec)
	}
	if l := lists(carol); len(l["pending"]) != 1 || l["pending"][0].Requester != string(alice.user) || l["pending"][0].Room != rm {
		t.Fatalf("Carol's lists %+v", l)
	}
	if st := e.stream(carol, 0); !slices.Equal(kindsOf(st.Items), []string{"consent"}) {
		t.Fatalf("Carol's stream %+v", st)
	}
	kp := wire.MustMarshal(mls.NewKeyPackageMessage(carol.keyPackage(t).KeyPackage))
	want(t, e.apiDo(http.MethodPost, "/v1/consent", carol.token, map[string]any{"operation": "grant", "requester": alice.user, "target": carol.user, "room": rm, "key_packages": [][]byte{kp}}), http.StatusNoContent, "grant")
	if l := lists(alice); len(l["received"]) != 2 || !slices.ContainsFunc(l["received"], func(c consentJSON) bool { return c.Target == string(carol.user) && len(c.KeyPackages) == 1 }) {
		t.Fatalf("Alice's lists %+v", l)
	}
	if l := lists(carol); len(l["given"]) != 1 || l["given"][0].Operation != "grant" {
		t.Fatalf("Carol's lists %+v", l)
	}

	for _, c := range []struct {
		name   string
		body   map[string]any
		status int
		kind   string
	}{
		{"a request for someone else", map[string]any{"operation": "request", "requester": carol.user, "target": bob}, 403, kindNotAllowed},
		{"a grant for someone else", map[string]any{"operation": "grant", "requester": bob, "target": carol.user}, 403, kindNotAllowed},
		{"an unknown operation", map[string]any{"operation": "maybe", "requester": alice.user, "target": bob}, 400, kindInvalid},
		{"a requester that is no user", map[string]any{"operation": "request", "requester": "alice", "target": bob}, 400, kindInvalid},
		{"a room that is no room", map[string]any{"operation": "request", "requester": alice.user, "target": bob, "room": bob}, 400, kindInvalid},
		{"KeyPackages with a request", map[string]any{"operation": "request", "requester": alice.user, "target": bob, "key_packages": [][]byte{kp}}, 400, kindInvalid},
		{"a grant with a broken KeyPackage", map[string]any{"operation": "grant", "requester": bob, "target": alice.user, "key_packages": [][]byte{{0}}}, 400, kindInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantJSONError(t, e.apiDo(http.MethodPost, "/v1/consent", alice.token, c.body), c.status, c.kind, c.name)
		})
	}
}

func TestIdentifiersRelay(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	e.peers.ident = &proto.IdentifierResponse{Code: proto.QuerySuccess, URIs: []proto.URI{"mimi://b.example/u/bob"},
		Profiles: []proto.UserProfile{{URI: "mimi://b.example/u/bob", Fields: []proto.ProfileField{{Source: proto.FieldOIDCStdClaim, Name: "email", Value: []byte("bob@b.example")}}}}}
	rec := e.apiDo(http.MethodPost, "/v1/identifiers", alice.token, map[string]any{"domain": "b.example", "type": "oidcStdClaim", "field": "email", "value": "bob@b.example"})
	want(t, rec, http.StatusOK, "relayed query")
	if !strings.Contains(rec.Body.String(), `"source":"oidc"`) || !strings.Contains(rec.Body.String(), `"uris":["mimi://b.example/u/bob"]`) {
		t.Fatalf("relayed query answer %s", rec.Body.String())
	}
	calls := e.peers.taken()
	if len(calls) != 1 || calls[0].via != "b.example" || calls[0].body.(*proto.IdentifierRequest).Field != "email" {
		t.Fatalf("calls %+v", calls)
	}
	rec = e.apiDo(http.MethodPost, "/v1/identifiers", alice.token, map[string]any{"domain": "a.example", "type": "handle", "value": "nobody"})
	want(t, rec, http.StatusOK, "local query")
	if got := decodeJSON[map[string]any](t, rec)["code"]; got != "notFound" {
		t.Fatalf("local query code %v", got)
	}
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/identifiers", alice.token, map[string]any{"domain": "a.example", "type": "shoe", "value": "x"}), 400, kindInvalid, "bad type")
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/identifiers", alice.token, map[string]any{"domain": "", "type": "handle", "value": "x"}), 400, kindInvalid, "no domain")
	e.peers.setErr(errors.New("down"))
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/identifiers", alice.token, map[string]any{"domain": "b.example", "type": "handle", "value": "x"}), 502, kindUnavailable, "unreachable")
	// Without an outbound client, relays fail the same way.
	rec = httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/identifiers", strings.NewReader(`{"domain":"b.example","type":"handle","value":"x"}`))
	req.Header.Set("Authorization", "Bearer "+alice.token)
	NewClientAPI(e.cfg, e.b, nil).ServeHTTP(rec, req)
	wantJSONError(t, rec, 502, kindUnavailable, "no outbound client")
}

// fakeTimer replaces the stream's timer: it records the wait and fires
// when the test says.
type fakeTimer struct {
	waits chan time.Duration
	fire  chan time.Time
}

func installFakeTimer(e *env) *fakeTimer {
	ft := &fakeTimer{waits: make(chan time.Duration, 4), fire: make(chan time.Time)}
	e.api.timer = func(d time.Duration) (<-chan time.Time, func() bool) {
		ft.waits <- d
		return ft.fire, func() bool { return true }
	}
	return ft
}

// streamAsync runs a stream request in the background.
func streamAsync(e *env, ctx context.Context, m *member, query string) <-chan *httptest.ResponseRecorder {
	done := make(chan *httptest.ResponseRecorder, 1)
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v1/stream?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+m.token)
	go func() {
		rec := httptest.NewRecorder()
		e.apiH.ServeHTTP(rec, req)
		done <- rec
	}()
	return done
}

func TestStreamLongPoll(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	ft := installFakeTimer(e)
	e.b.changedCalls = make(chan struct{}, 1)
	consent := wire.MustMarshal(&proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: "mimi://b.example/u/bob", Target: alice.user})

	// A waiting reader wakes on a new item.
	done := streamAsync(e, context.Background(), alice, "wait=30")
	waitFor(t, e.b.changedCalls, "the stream to wait")
	if d := waitFor(t, ft.waits, "the timer to start"); d != 30*time.Second {
		t.Fatalf("waits %s, want 30s", d)
	}
	want(t, e.fedDo(http.MethodPost, "/requestConsent/a.example", "b.example", consent), http.StatusNoContent, "consent request")
	rec := waitFor(t, done, "the stream to answer")
	want(t, rec, http.StatusOK, "woken stream")
	st := decodeJSON[streamOut](t, rec)
	if len(st.Items) != 1 || st.Items[0].Kind != "consent" || st.Items[0].Seq != 1 || st.Last != 1 || st.Gap {
		t.Fatalf("woken stream %+v", st)
	}
	var entry proto.ConsentEntry
	if err := wire.Unmarshal(st.Items[0].Data, &entry); err != nil || entry.Requester != "mimi://b.example/u/bob" {
		t.Fatalf("item data: %+v %v", entry, err)
	}

	// Changes that are not for this reader do not answer it; the timeout
	// answers it empty. The wait is capped at 60 seconds.
	done = streamAsync(e, context.Background(), alice, "after=1&wait=600&limit=5")
	waitFor(t, e.b.changedCalls, "the stream to wait")
	if d := waitFor(t, ft.waits, "the timer to start"); d != 60*time.Second {
		t.Fatalf("waits %s, want the 60s cap", d)
	}
	e.register("bob", "x") // a change elsewhere
	waitFor(t, e.b.changedCalls, "the stream to wait again")
	select {
	case rec := <-done:
		t.Fatalf("answered before the timeout: %d %s", rec.Code, rec.Body.String())
	default:
	}
	ft.fire <- time.Time{}
	rec = waitFor(t, done, "the stream to time out")
	want(t, rec, http.StatusOK, "timed-out stream")
	if st := decodeJSON[streamOut](t, rec); len(st.Items) != 0 || st.Last != 1 || !strings.Contains(rec.Body.String(), `"items":[]`) {
		t.Fatalf("timed-out stream %s", rec.Body.String())
	}

	// A reader that goes away stops waiting.
	ctx, cancel := context.WithCancel(context.Background())
	done = streamAsync(e, ctx, alice, "after=1&wait=10")
	waitFor(t, e.b.changedCalls, "the stream to wait")
	waitFor(t, ft.waits, "the timer to start")
	cancel()
	waitFor(t, done, "the canceled stream to return")

	// Without wait, the answer is immediate; bad parameters are refused.
	if st := e.stream(alice, 1); len(st.Items) != 0 {
		t.Fatalf("stream %+v", st)
	}
	for _, q := range []string{"after=x", "wait=-1", "limit=0", "limit=1001"} {
		wantJSONError(t, e.apiDo(http.MethodGet, "/v1/stream?"+q, alice.token, nil), http.StatusBadRequest, kindInvalid, q)
	}
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/stream/ack", alice.token, map[string]any{}), http.StatusBadRequest, kindInvalid, "ack without seq")
}

// TestStreamDraining: a server that shuts down ends its long polls at
// once; they answer what they have.
func TestStreamDraining(t *testing.T) {
	draining := make(chan struct{})
	e := newEnv(t, "a.example", func(c *Config) { c.Draining = draining })
	alice := e.register("alice", "phone")
	e.b.changedCalls = make(chan struct{}, 1)
	done := streamAsync(e, context.Background(), alice, "wait=60")
	waitFor(t, e.b.changedCalls, "the stream to wait")
	close(draining)
	rec := waitFor(t, done, "the drained stream to answer")
	want(t, rec, http.StatusOK, "drained stream")
	if st := decodeJSON[streamOut](t, rec); len(st.Items) != 0 {
		t.Fatalf("drained stream %+v", st)
	}
}

func TestStreamRealTimeout(t *testing.T) {
	// The real timer: a one-second wait answers empty.
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	rec := e.apiDo(http.MethodGet, "/v1/stream?wait=1", alice.token, nil)
	want(t, rec, http.StatusOK, "stream")
	if st := decodeJSON[streamOut](t, rec); len(st.Items) != 0 {
		t.Fatalf("stream %+v", st)
	}
}

func TestClientAPIBackendFailures(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	for _, c := range []struct {
		name   string
		err    error
		status int
		kind   string
	}{
		{"unavailable", unavailable{}, http.StatusServiceUnavailable, kindUnavailable},
		{"deadline", context.DeadlineExceeded, http.StatusGatewayTimeout, kindUnavailable},
		{"internal", errors.New("boom"), http.StatusInternalServerError, kindInternal},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.b.setErr(c.err)
			defer e.b.setErr(nil)
			for _, rec := range []*httptest.ResponseRecorder{
				e.apiDo(http.MethodPost, "/v1/register", "", map[string]any{"user": "bob", "device": "x"}),
				e.apiDo(http.MethodGet, "/v1/whoami", alice.token, nil),
			} {
				wantJSONError(t, rec, c.status, c.kind, c.name)
				if got := rec.Header().Get("Retry-After"); (c.status == http.StatusServiceUnavailable) != (got == "1") {
					t.Fatalf("Retry-After %q with %d", got, c.status)
				}
			}
		})
	}
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/stream/ack", alice.token, map[string]any{"seq": 1}, "Idempotency-Key", strings.Repeat("k", 65)), http.StatusBadRequest, kindInvalid, "a long Idempotency-Key")
}

// TestIdempotencyKeys checks a key is scoped to its client: the same key
// from two clients applies twice, a retry by one client once.
func TestIdempotencyKeys(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice, carol := e.register("alice", "phone"), e.register("carol", "x")
	e.upload(alice)
	e.upload(carol)
	e.upload(carol)
	claim := func(m *member, target proto.URI) claimOut {
		rec := e.apiDo(http.MethodPost, "/v1/keymaterial", m.token, map[string]any{"users": []proto.URI{target}}, "Idempotency-Key", "same")
		want(t, rec, http.StatusOK, "claim")
		return decodeJSON[claimOut](t, rec)
	}
	first := claim(alice, carol.user)
	if again := claim(alice, carol.user); !bytes.Equal(first.Users[0].Clients[0].KeyPackage, again.Users[0].Clients[0].KeyPackage) {
		t.Fatal("a retried claim returned another KeyPackage")
	}
	if other := claim(carol, alice.user); other.Users[0].Status != "success" || other.Users[0].User != string(alice.user) {
		t.Fatalf("another client's claim with the same key: %+v", other)
	}
	rec := e.apiDo(http.MethodGet, "/v1/keypackages", carol.token, nil)
	if n := decodeJSON[map[string]any](t, rec)["key_packages"]; n != float64(1) {
		t.Fatalf("Carol has %v KeyPackages after one claim retried, want 1", n)
	}
}

// TestReadConsistency: reads are linearizable unless ?consistency=stale
// asks otherwise; other values are refused.
func TestReadConsistency(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	for _, c := range []struct {
		query string
		want  bool
		code  int
	}{
		{"", true, http.StatusOK},
		{"?consistency=linearizable", true, http.StatusOK},
		{"?consistency=stale", false, http.StatusOK},
		{"?consistency=eventual", false, http.StatusBadRequest},
	} {
		rec := e.apiDo(http.MethodGet, "/v1/keypackages"+c.query, alice.token, nil)
		want(t, rec, c.code, "keypackages"+c.query)
		if c.code == http.StatusOK && e.b.lastRead() != c.want {
			t.Fatalf("%q: read linearizable=%v, want %v", c.query, e.b.lastRead(), c.want)
		}
	}
}
