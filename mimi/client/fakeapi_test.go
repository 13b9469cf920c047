package client

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// fakeAPI is a small single-provider client API server that follows
// httpapi/openapi.yaml, for testing User and Member. Its provider is
// a.example and hosts every room with the real room engine (mimi/room);
// there is no federation. It is not the real server (httpapi is): it checks
// what the API document says and little else.
type fakeAPI struct {
	t   *testing.T
	srv *httptest.Server

	mu          sync.Mutex
	clients     map[proto.URI]*fakeClient // by client URI
	tokens      map[string]proto.URI
	routes      map[string]proto.URI // KeyPackageRef (hex) -> client it was claimed from
	rooms       map[proto.URI]*room.Room
	subscribers map[proto.URI][]proto.URI // room -> clients receiving it
	consents    []proto.ConsentEntry
	reports     []*room.Report
	idem        map[string]fakeAnswer // client or "register" + key -> first answer
	keys        []string              // Idempotency-Keys received, in order
	faults      []fault
	notify      chan struct{}
	now         time.Time
	hubKeys     *room.HubKeys
	treeFetches int // Welcome trees served
	// refuseCovering lists proposal references a commit may not cover:
	// one that does is refused (invalidProposal) and changes nothing, as
	// a hub with a rule the client cannot foresee would.
	refuseCovering [][]byte
	// refuseNext refuses that many commits whatever they cover.
	refuseNext     int
	refusedCommits int
}

type fakeClient struct {
	uri, user   proto.URI
	keyPackages []*mls.KeyPackage
	lastResort  *mls.KeyPackage
	stream      []streamItemJSON
	next        uint64
}

// streamItemJSON is the StreamItem schema.
type streamItemJSON struct {
	Seq    uint64 `json:"seq"`
	Kind   string `json:"kind"`
	Room   string `json:"room,omitempty"`
	HubSeq uint64 `json:"hub_seq,omitempty"`
	At     uint64 `json:"at,omitempty"`
	Data   []byte `json:"data"`
}

type fakeAnswer struct {
	status int
	body   []byte
}

// fault makes the next request whose path ends with suffix fail.
type fault struct {
	suffix string
	// status is answered; with afterApply the request is applied first
	// (the answer is lost), otherwise it is not applied.
	status     int
	retryAfter string
	afterApply bool
	// drop closes the connection instead of answering (not applied).
	drop bool
}

const fakeDomain = "a.example"

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{
		t: t, clients: map[proto.URI]*fakeClient{}, tokens: map[string]proto.URI{}, routes: map[string]proto.URI{},
		rooms: map[proto.URI]*room.Room{}, subscribers: map[proto.URI][]proto.URI{}, idem: map[string]fakeAnswer{},
		notify: make(chan struct{}), now: time.Now(),
	}
	var err error
	if f.hubKeys, err = room.NewHubKeys(fakeDomain, fakeHubSecret); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/register", f.register)
	mux.HandleFunc("GET /v1/whoami", f.auth(f.whoami))
	mux.HandleFunc("POST /v1/keypackages", f.auth(f.uploadKeyPackages))
	mux.HandleFunc("GET /v1/keypackages", f.auth(f.countKeyPackages))
	mux.HandleFunc("POST /v1/keymaterial", f.auth(f.claim))
	mux.HandleFunc("POST /v1/rooms", f.auth(f.createRoom))
	mux.HandleFunc("GET /v1/hub", f.auth(f.hub))
	mux.HandleFunc("GET /v1/rooms/{hub}/{room}", f.auth(f.roomInfo))
	mux.HandleFunc("POST /v1/rooms/{hub}/{room}/commit", f.auth(f.commit))
	mux.HandleFunc("POST /v1/rooms/{hub}/{room}/proposals", f.auth(f.proposals))
	mux.HandleFunc("POST /v1/rooms/{hub}/{room}/messages", f.auth(f.message))
	mux.HandleFunc("POST /v1/rooms/{hub}/{room}/groupinfo", f.auth(f.groupInfo))
	mux.HandleFunc("GET /v1/rooms/{hub}/{room}/tree", f.auth(f.welcomeTree))
	mux.HandleFunc("PUT /v1/rooms/{hub}/{room}/subscription", f.auth(f.subscribe))
	mux.HandleFunc("DELETE /v1/rooms/{hub}/{room}/subscription", f.auth(f.unsubscribe))
	mux.HandleFunc("POST /v1/rooms/{hub}/{room}/abuse", f.auth(f.abuse))
	mux.HandleFunc("POST /v1/consent", f.auth(f.consent))
	mux.HandleFunc("GET /v1/consent", f.auth(f.consentList))
	mux.HandleFunc("POST /v1/identifiers", f.auth(f.identifiers))
	mux.HandleFunc("GET /v1/stream", f.auth(f.stream))
	mux.HandleFunc("POST /v1/stream/ack", f.auth(f.ack))
	f.srv = httptest.NewUnstartedServer(f.middleware(mux))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

// user returns a User client of the fake.
func (f *fakeAPI) user(t *testing.T, mod func(*UserConfig)) *User {
	t.Helper()
	cfg := UserConfig{BaseURL: f.srv.URL, HTTPClient: f.srv.Client(), RetryBackoff: time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	u, err := NewUser(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (f *fakeAPI) addFault(ft fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, ft)
}

// recorder captures an answer so it can be kept for idempotent replay.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(s int)           { r.status = s }

// middleware injects faults and replays answers to repeated
// Idempotency-Keys.
func (f *fakeAPI) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(HeaderIdempotencyKey)
		if r.Method == http.MethodGet && key != "" {
			f.t.Errorf("GET %s carries an Idempotency-Key", r.URL.Path)
		}
		if len(key) > 64 {
			writeErr(w, http.StatusBadRequest, "invalid", "Idempotency-Key longer than 64 bytes")
			return
		}
		f.mu.Lock()
		if key != "" {
			f.keys = append(f.keys, key)
		}
		var ft *fault
		for i := range f.faults {
			if strings.HasSuffix(r.URL.Path, f.faults[i].suffix) {
				c := f.faults[i]
				ft = &c
				f.faults = slices.Delete(f.faults, i, i+1)
				break
			}
		}
		scope := "register"
		if a := r.Header.Get("Authorization"); a != "" {
			scope = a
		}
		idemKey := scope + " " + r.Method + " " + r.URL.Path + " " + key
		prev, replay := f.idem[idemKey]
		f.mu.Unlock()
		if ft != nil && !ft.afterApply {
			if ft.drop {
				if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
					conn.Close()
				}
				return
			}
			if ft.retryAfter != "" {
				w.Header().Set("Retry-After", ft.retryAfter)
			}
			writeErr(w, ft.status, "unavailable", "injected fault")
			return
		}
		if key != "" && replay {
			writeRaw(w, prev.status, prev.body)
			return
		}
		rec := &recorder{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		if key != "" && r.Method != http.MethodGet && rec.status < 500 {
			f.mu.Lock()
			f.idem[idemKey] = fakeAnswer{status: rec.status, body: bytes.Clone(rec.body.Bytes())}
			f.mu.Unlock()
		}
		if ft != nil {
			writeErr(w, ft.status, "unavailable", "injected fault after applying")
			return
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		writeRaw(w, rec.status, rec.body.Bytes())
	})
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	if len(body) > 0 {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func writeErr(w http.ResponseWriter, status int, kind, msg string) {
	writeJSON(w, status, map[string]string{"error": msg, "kind": kind})
}

// decodeJSON reads a request body strictly (unknown fields are refused:
// the client must send exactly the schema's fields).
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		writeErr(w, http.StatusBadRequest, "invalid", "Content-Type must be application/json, not "+ct)
		return false
	}
	d := json.NewDecoder(r.Body)
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", err.Error())
		return false
	}
	return true
}

type authedHandler func(w http.ResponseWriter, r *http.Request, c *fakeClient)

func (f *fakeAPI) auth(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		f.mu.Lock()
		uri, known := f.tokens[tok]
		c := f.clients[uri]
		f.mu.Unlock()
		if !ok || !known {
			writeErr(w, http.StatusUnauthorized, "not_allowed", "bad token")
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		h(w, r, c)
	}
}

func (f *fakeAPI) register(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		f.t.Error("register carries an Authorization header")
	}
	var in struct {
		User        string             `json:"user"`
		Device      string             `json:"device"`
		Profile     []jsonProfileField `json:"profile"`
		TokenSecret []byte             `json:"token_secret"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	uri := proto.ClientURI(fakeDomain, in.User, in.Device)
	if _, err := uri.Parse(); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	if _, ok := f.clients[uri]; ok {
		writeErr(w, http.StatusConflict, "conflict", "the client is registered")
		return
	}
	secret := in.TokenSecret
	if len(secret) != 32 {
		writeErr(w, http.StatusBadRequest, "invalid", "token_secret must be 32 bytes")
		return
	}
	tok := "mimi1." + base64.RawURLEncoding.EncodeToString([]byte(uri)) + "." + base64.RawURLEncoding.EncodeToString(secret)
	f.clients[uri] = &fakeClient{uri: uri, user: proto.UserURI(fakeDomain, in.User), next: 1}
	f.tokens[tok] = uri
	writeJSON(w, http.StatusCreated, map[string]string{"client": string(uri), "user": string(proto.UserURI(fakeDomain, in.User)), "token": tok})
}

func (f *fakeAPI) whoami(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	writeJSON(w, http.StatusOK, map[string]string{"client": string(c.uri), "user": string(c.user), "domain": fakeDomain})
}

func decodeMsg(b []byte, want mls.WireFormat) (*mls.Message, error) {
	m, err := mls.DecodeMessage(b)
	if err != nil {
		return nil, err
	}
	if m.WireFormat != want {
		return nil, fmt.Errorf("a %s, want %s", m.WireFormat, want)
	}
	return m, nil
}

func (f *fakeAPI) uploadKeyPackages(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	var in struct {
		KeyPackages [][]byte `json:"key_packages"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	var kps []*mls.KeyPackage
	for _, b := range in.KeyPackages {
		m, err := decodeMsg(b, mls.WireKeyPackage)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "invalid", err.Error())
			return
		}
		kp := m.KeyPackage
		if err := kp.Validate(uint64(f.now.Unix())); err != nil || string(kp.LeafNode.Credential.Identity) != string(c.uri) {
			writeErr(w, http.StatusBadRequest, "invalid", fmt.Sprintf("KeyPackage: %v", err))
			return
		}
		kps = append(kps, kp)
	}
	for _, kp := range kps {
		if kp.IsLastResort() {
			c.lastResort = kp
		} else {
			c.keyPackages = append(c.keyPackages, kp)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeAPI) countKeyPackages(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	out := map[string]any{"key_packages": len(c.keyPackages), "last_resort_suites": []int{}}
	if c.lastResort != nil {
		out["key_packages"] = len(c.keyPackages) + 1
		out["last_resort_suites"] = []int{int(c.lastResort.CipherSuite)}
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *fakeAPI) claim(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	var in struct {
		Users             []string `json:"users"`
		Room              string   `json:"room"`
		CipherSuites      []uint16 `json:"cipher_suites"`
		LastResortAllowed bool     `json:"last_resort_allowed"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	type clientOut struct {
		Client     string `json:"client"`
		Status     string `json:"status"`
		KeyPackage []byte `json:"key_package,omitempty"`
	}
	type userOut struct {
		User    string      `json:"user"`
		Status  string      `json:"status"`
		Clients []clientOut `json:"clients"`
	}
	var out []userOut
	var routes []room.Route
	for _, u := range in.Users {
		uo := userOut{User: u, Clients: []clientOut{}}
		var targets []*fakeClient
		for _, uri := range slices.Sorted(maps.Keys(f.clients)) {
			if f.clients[uri].user == proto.URI(u) {
				targets = append(targets, f.clients[uri])
			}
		}
		if len(targets) == 0 {
			uo.Status = proto.UserUnknown.String()
			out = append(out, uo)
			continue
		}
		ok := 0
		for _, t := range targets {
			co := clientOut{Client: string(t.uri)}
			var kp *mls.KeyPackage
			if len(t.keyPackages) > 0 {
				kp, t.keyPackages = t.keyPackages[0], t.keyPackages[1:]
			} else if t.lastResort != nil && in.LastResortAllowed {
				kp = t.lastResort
			}
			if kp == nil {
				co.Status = proto.ClientKeyMaterialExhausted.String()
			} else {
				co.Status = proto.ClientSuccess.String()
				co.KeyPackage = wire.MustMarshal(mls.NewKeyPackageMessage(kp))
				ref, _ := kp.Ref()
				f.routes[hex.EncodeToString(ref)] = t.uri
				routes = append(routes, room.Route{Ref: ref, Domain: fakeDomain})
				ok++
			}
			uo.Clients = append(uo.Clients, co)
		}
		switch ok {
		case len(targets):
			uo.Status = proto.UserSuccess.String()
		case 0:
			uo.Status = proto.UserNoCompatibleMaterial.String()
		default:
			uo.Status = proto.UserPartialSuccess.String()
		}
		out = append(out, uo)
	}
	if rm, ok := f.rooms[proto.URI(in.Room)]; ok && len(routes) > 0 {
		rm.Apply(&room.RouteKeyPackages{Routes: routes}, f.tick())
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

// tick advances the hub's clock by a millisecond and returns it.
func (f *fakeAPI) tick() uint64 {
	f.now = f.now.Add(time.Millisecond)
	return uint64(f.now.UnixMilli())
}

func (f *fakeAPI) createRoom(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	var in struct {
		Room        string `json:"room"`
		GroupInfo   []byte `json:"group_info"`
		RatchetTree []byte `json:"ratchet_tree"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	gi, err := decodeMsg(in.GroupInfo, mls.WireGroupInfo)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	uri := proto.RoomURI(fakeDomain, in.Room)
	if _, ok := f.rooms[uri]; ok {
		writeErr(w, http.StatusConflict, "conflict", "the room exists")
		return
	}
	rm, err := room.Create(room.Config{Hub: fakeDomain, Keys: f.hubKeys}, room.CreateRequest{Room: uri, Creator: c.user, GroupInfo: gi.GroupInfo, Tree: in.RatchetTree}, f.tick())
	if err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	f.rooms[uri] = rm
	f.subscribers[uri] = []proto.URI{c.uri}
	writeJSON(w, http.StatusCreated, map[string]string{"room": string(uri)})
}

// fakeHubSecret derives the fake hub's external-sender keys.
var fakeHubSecret = make([]byte, room.HubSecretSize)

// fakeHubSenders is the external_senders extension of the fake hub's rooms
// (suite 1).
func fakeHubSenders(t testing.TB) mls.Extension {
	k, err := room.NewHubKeys(fakeDomain, fakeHubSecret)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := k.Sender(mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519)
	return mls.ExternalSendersExtension(mls.ExternalSenders{s})
}

func (f *fakeAPI) hub(w http.ResponseWriter, _ *http.Request, _ *fakeClient) {
	type suite struct {
		CipherSuite     uint16 `json:"cipher_suite"`
		ExternalSenders []byte `json:"external_senders"`
	}
	var suites []suite
	for _, s := range f.hubKeys.Senders() {
		suites = append(suites, suite{uint16(s.Suite), wire.MustMarshal(mls.ExternalSenders{s.Sender})})
	}
	writeJSON(w, http.StatusOK, map[string]any{"domain": fakeDomain, "suites": suites})
}

// hosted returns the room the path names.
func (f *fakeAPI) hosted(w http.ResponseWriter, r *http.Request) (*room.Room, bool) {
	uri := proto.RoomURI(r.PathValue("hub"), r.PathValue("room"))
	rm, ok := f.rooms[uri]
	if !ok {
		writeErr(w, http.StatusNotFound, "not_found", "no room "+string(uri))
	}
	return rm, ok
}

func (f *fakeAPI) roomInfo(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	rm, ok := f.hosted(w, r)
	if !ok {
		return
	}
	type part struct {
		User  string   `json:"user"`
		Roles []string `json:"roles"`
	}
	var parts []part
	for _, p := range rm.Participants() {
		pt := part{User: string(p.User)}
		for _, role := range p.Roles {
			pt.Roles = append(pt.Roles, role.String())
		}
		parts = append(parts, pt)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"room": string(rm.ID()), "epoch": rm.Epoch(), "sequence": rm.Sequence(), "members": rm.Group().Tree().NumMembers(),
		"providers": rm.Providers(), "participants": parts,
	})
}

// push appends an item to a client's stream.
func (f *fakeAPI) push(c *fakeClient, it streamItemJSON) {
	it.Seq = c.next
	c.next++
	c.stream = append(c.stream, it)
	close(f.notify)
	f.notify = make(chan struct{})
}

// dispatch delivers a room's accepted messages to local clients.
func (f *fakeAPI) dispatch(rm *room.Room, effects []room.Effect) {
	for _, e := range effects {
		data := wire.MustMarshal(e.Fanout.Message)
		for _, rc := range e.To {
			if rc.Domain != fakeDomain {
				continue
			}
			if e.Fanout.Message.WireFormat == mls.WireWelcome {
				for _, ref := range rc.WelcomeRefs {
					uri, ok := f.routes[hex.EncodeToString(ref)]
					if !ok {
						continue
					}
					delete(f.routes, hex.EncodeToString(ref))
					if !slices.Contains(f.subscribers[rm.ID()], uri) {
						f.subscribers[rm.ID()] = append(f.subscribers[rm.ID()], uri)
					}
					f.push(f.clients[uri], streamItemJSON{Kind: "welcome", Room: string(rm.ID()), HubSeq: e.Seq, At: e.Fanout.Timestamp, Data: data})
				}
				continue
			}
			for _, uri := range f.subscribers[rm.ID()] {
				if !slices.Contains(rc.Exclude, uri) {
					f.push(f.clients[uri], streamItemJSON{Kind: "message", Room: string(rm.ID()), HubSeq: e.Seq, At: e.Fanout.Timestamp, Data: data})
				}
			}
		}
	}
}

// update applies an updateRoom-like request and answers its UpdateResult.
func (f *fakeAPI) update(w http.ResponseWriter, rm *room.Room, req room.Request) {
	out := rm.Apply(req, f.tick())
	if out.Err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", out.Err.Error())
		return
	}
	f.dispatch(rm, out.Effects)
	writeJSON(w, http.StatusOK, map[string]any{"code": int(out.Response.Code), "code_name": out.Response.Code.String(), "description": out.Response.Description})
}

func (f *fakeAPI) commit(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	rm, ok := f.hosted(w, r)
	if !ok {
		return
	}
	if r.Header.Get("Content-Type") == "application/mimi" {
		data, err := io.ReadAll(r.Body)
		body := new(proto.UpdateRoomRequest)
		if err == nil {
			err = wire.Unmarshal(data, body)
		}
		if err == nil && !body.IsCommit() {
			err = errors.New("not a commit")
		}
		if err != nil {
			writeErr(w, http.StatusBadRequest, "invalid", err.Error())
			return
		}
		f.commitUpdate(w, rm, body)
		return
	}
	var in struct {
		Commit      []byte `json:"commit"`
		Welcome     []byte `json:"welcome"`
		GroupInfo   []byte `json:"group_info"`
		RatchetTree []byte `json:"ratchet_tree"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	body := &proto.UpdateRoomRequest{RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeByReference}}
	var err error
	if body.Message, err = decodeMsg(in.Commit, mls.WirePublicMessage); err == nil {
		body.GroupInfo, err = decodeMsg(in.GroupInfo, mls.WireGroupInfo)
	}
	if err == nil && in.Welcome != nil {
		body.Welcome, err = decodeMsg(in.Welcome, mls.WireWelcome)
	}
	if err == nil && !body.IsCommit() {
		err = errors.New("not a commit")
	}
	if err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	if in.RatchetTree != nil {
		body.RatchetTree = proto.RatchetTreeOption{Representation: proto.TreeFull, Tree: in.RatchetTree}
	}
	f.commitUpdate(w, rm, body)
}

// commitUpdate applies a commit, unless it covers a proposal in
// refuseCovering.
func (f *fakeAPI) commitUpdate(w http.ResponseWriter, rm *room.Room, body *proto.UpdateRoomRequest) {
	refuse := f.refuseNext > 0
	for _, p := range body.Message.Public.Content.Commit.Proposals {
		refuse = refuse || p.Reference != nil && slices.ContainsFunc(f.refuseCovering, func(ref []byte) bool { return bytes.Equal(ref, p.Reference) })
	}
	if !refuse {
		f.update(w, rm, &room.UpdateRoom{From: fakeDomain, Body: body})
		return
	}
	f.refuseNext = max(f.refuseNext-1, 0)
	f.refusedCommits++
	writeJSON(w, http.StatusOK, map[string]any{"code": int(proto.UpdateInvalidProposal), "code_name": proto.UpdateInvalidProposal.String(), "description": "this hub refuses the commit"})
}

func (f *fakeAPI) proposals(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	rm, ok := f.hosted(w, r)
	if !ok {
		return
	}
	var in struct {
		Proposals [][]byte `json:"proposals"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	var msgs []*mls.Message
	for _, b := range in.Proposals {
		m, err := decodeMsg(b, mls.WirePublicMessage)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "invalid", err.Error())
			return
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		writeErr(w, http.StatusBadRequest, "invalid", "no proposals")
		return
	}
	f.update(w, rm, &room.UpdateRoom{From: fakeDomain, Body: &proto.UpdateRoomRequest{Message: msgs[0], MoreProposals: msgs[1:]}})
}

func (f *fakeAPI) message(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	rm, ok := f.hosted(w, r)
	if !ok {
		return
	}
	var in struct {
		Message []byte `json:"message"`
	}
	if r.Header.Get("Content-Type") == ContentTypeMIMI {
		in.Message, _ = io.ReadAll(r.Body)
	} else if !decodeJSON(w, r, &in) {
		return
	}
	m, err := decodeMsg(in.Message, mls.WirePrivateMessage)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	f.update(w, rm, &room.ProvisionalMessage{From: fakeDomain, Message: m})
}

func (f *fakeAPI) groupInfo(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	var in struct {
		SignatureKey []byte `json:"signature_key"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	uri := proto.RoomURI(r.PathValue("hub"), r.PathValue("room"))
	rm, ok := f.rooms[uri]
	if !ok {
		writeJSON(w, http.StatusOK, map[string]string{"status": "noSuchRoom"})
		return
	}
	out := rm.Apply(&room.ClaimGroupInfo{From: fakeDomain, Body: &proto.GroupInfoRequest{SignatureKey: in.SignatureKey, Credential: mls.BasicCredential([]byte(c.uri))}}, f.tick())
	gi := out.GroupInfo
	if gi.Status != proto.GroupInfoSuccess {
		writeJSON(w, http.StatusOK, map[string]string{"status": gi.Status.String()})
		return
	}
	pending := [][]byte{}
	for _, p := range gi.PendingProposals {
		pending = append(pending, wire.MustMarshal(p))
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "group_info": wire.MustMarshal(gi.GroupInfo), "ratchet_tree": gi.RatchetTree.Bytes(), "pending_proposals": pending})
}

func (f *fakeAPI) fetchedTrees() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.treeFetches
}

func (f *fakeAPI) welcomeTree(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	rm, ok := f.hosted(w, r)
	if !ok {
		return
	}
	ref, err := base64.RawURLEncoding.DecodeString(r.URL.Query().Get("keypackage"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	view, err := rm.WelcomeTree(fakeDomain, c.uri, ref)
	if err != nil {
		writeErr(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	f.treeFetches++
	w.Header().Set("Content-Type", "application/mimi")
	_, _ = view.WriteTo(w)
}

func (f *fakeAPI) subscribe(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	rm, ok := f.hosted(w, r)
	if !ok {
		return
	}
	if !slices.Contains(rm.Clients(c.user), c.uri) {
		writeErr(w, http.StatusForbidden, "not_allowed", "not a member")
		return
	}
	if !slices.Contains(f.subscribers[rm.ID()], c.uri) {
		f.subscribers[rm.ID()] = append(f.subscribers[rm.ID()], c.uri)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeAPI) unsubscribe(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	uri := proto.RoomURI(r.PathValue("hub"), r.PathValue("room"))
	f.subscribers[uri] = slices.DeleteFunc(f.subscribers[uri], func(u proto.URI) bool { return u == c.uri })
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeAPI) abuse(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	rm, ok := f.hosted(w, r)
	if !ok {
		return
	}
	var in struct {
		Report []byte `json:"report"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	rep := new(proto.AbuseReport)
	if err := wire.Unmarshal(in.Report, rep); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	out := rm.Apply(&room.ReportAbuse{From: fakeDomain, Body: rep}, f.tick())
	if out.Err != nil {
		writeErr(w, http.StatusForbidden, "not_allowed", out.Err.Error())
		return
	}
	f.reports = append(f.reports, out.Report)
	w.WriteHeader(http.StatusAccepted)
}

func (f *fakeAPI) consent(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	var in jsonConsent
	if !decodeJSON(w, r, &in) {
		return
	}
	e, err := (&User{cfg: UserConfig{MaxVector: DefaultMaxVector}}).consentFromJSON(&in)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	mine := e.Requester
	if e.Operation == proto.ConsentGrant || e.Operation == proto.ConsentRevoke {
		mine = e.Target
	}
	if mine != c.user {
		writeErr(w, http.StatusForbidden, "not_allowed", "not this client's user")
		return
	}
	f.consents = append(f.consents, *e)
	other := e.Target
	if mine == e.Target {
		other = e.Requester
	}
	var roomURI string
	if e.Room != nil {
		roomURI = string(*e.Room)
	}
	for _, uri := range slices.Sorted(maps.Keys(f.clients)) {
		if f.clients[uri].user == other {
			f.push(f.clients[uri], streamItemJSON{Kind: "consent", Room: roomURI, At: uint64(f.now.UnixMilli()), Data: wire.MustMarshal(e)})
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeAPI) consentList(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	out := map[string][]*jsonConsent{"pending": {}, "received": {}, "given": {}}
	for i := range f.consents {
		e := &f.consents[i]
		j, err := consentToJSON(e)
		if err != nil {
			panic(err)
		}
		switch {
		case e.Operation == proto.ConsentRequest && e.Target == c.user:
			out["pending"] = append(out["pending"], j)
		case e.Operation == proto.ConsentGrant && e.Requester == c.user:
			out["received"] = append(out["received"], j)
		case (e.Operation == proto.ConsentGrant || e.Operation == proto.ConsentRevoke) && e.Target == c.user:
			out["given"] = append(out["given"], j)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *fakeAPI) identifiers(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	var in struct {
		Domain string `json:"domain"`
		Type   string `json:"type"`
		Value  string `json:"value"`
		Field  string `json:"field"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	if in.Type != "handle" {
		writeJSON(w, http.StatusOK, map[string]any{"code": "unsupportedField"})
		return
	}
	u := proto.UserURI(in.Domain, strings.TrimPrefix(in.Value, "@"))
	for _, fc := range f.clients {
		if fc.user == u {
			writeJSON(w, http.StatusOK, map[string]any{"code": "success", "uris": []string{string(u)},
				"profiles": []any{map[string]any{"uri": string(u), "fields": []jsonProfileField{{Source: "vcard", Name: "FN", Value: "Alice Liddell"}}}}})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"code": "notFound", "uris": []string{}})
}

func (f *fakeAPI) stream(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	q := r.URL.Query()
	after, err1 := strconv.ParseUint(q.Get("after"), 10, 64)
	wait, err2 := strconv.Atoi(cmpOr(q.Get("wait"), "0"))
	limit, err3 := strconv.Atoi(cmpOr(q.Get("limit"), "100"))
	if err1 != nil || err2 != nil || err3 != nil || wait < 0 || wait > 60 || limit < 1 || limit > 1000 {
		writeErr(w, http.StatusBadRequest, "invalid", "bad query "+r.URL.RawQuery)
		return
	}
	deadline := time.Now().Add(time.Duration(wait) * time.Second)
	for {
		var items []streamItemJSON
		for _, it := range c.stream {
			if it.Seq > after && len(items) < limit {
				items = append(items, it)
			}
		}
		if len(items) > 0 || time.Now().After(deadline) {
			gap := len(c.stream) > 0 && c.stream[0].Seq > after+1
			writeJSON(w, http.StatusOK, map[string]any{"items": items, "gap": gap, "last": c.next - 1})
			return
		}
		ch := f.notify
		f.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(time.Until(deadline)):
		case <-r.Context().Done():
		}
		f.mu.Lock()
	}
}

func cmpOr(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func (f *fakeAPI) ack(w http.ResponseWriter, r *http.Request, c *fakeClient) {
	var in struct {
		Seq *uint64 `json:"seq"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	if in.Seq == nil {
		writeErr(w, http.StatusBadRequest, "invalid", "seq is required")
		return
	}
	c.stream = slices.DeleteFunc(c.stream, func(it streamItemJSON) bool { return it.Seq <= *in.Seq })
	w.WriteHeader(http.StatusNoContent)
}

// mlsCommitOptions commits a patch with the Adds of a claim's KeyPackages,
// without the ratchet tree in the Welcome.
func mlsCommitOptions(patch *proto.ParticipantListPatch, claim *proto.KeyMaterialResponse) mls.CommitOptions {
	ps := []*mls.Proposal{patch.Proposal()}
	for _, u := range claim.Users {
		for _, c := range u.Clients {
			if c.KeyPackage != nil {
				ps = append(ps, mls.AddProposal(c.KeyPackage.KeyPackage))
			}
		}
	}
	return mls.CommitOptions{Proposals: ps, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}}
}
