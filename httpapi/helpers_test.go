package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// t0 is the test clock's start (ms); every KeyPackage's lifetime contains
// it and the next day.
const t0 = 1_700_000_000_000

// fakeBackend is a Backend over a real FSM: commands are stamped with a
// test clock and applied directly, reads run under the FSM's lock.
type fakeBackend struct {
	domain string
	f      *fsm.FSM

	mu      sync.Mutex
	now     uint64
	err     error             // returned by Apply and Read when set
	applied []fsm.CommandType // every applied command, in order
	index   uint64            // the applied commands' count, as log index
	lastCmd []byte            // the last command applied, as logged
	reads   []bool            // the linearizable flag of every read, in order
	// detached records, per command type, whether the last one was
	// proposed under a context nothing can cancel (context.WithoutCancel).
	detached map[fsm.CommandType]bool
	// changedCalls, when set, receives a value (without blocking) every
	// time Changed is called: a long poll is about to wait.
	changedCalls chan struct{}
}

func newFakeBackend(t *testing.T, domain string) *fakeBackend {
	t.Helper()
	f, err := fsm.New(fsm.Config{Domain: domain})
	if err != nil {
		t.Fatal(err)
	}
	return &fakeBackend{domain: domain, f: f, now: t0}
}

func (b *fakeBackend) Domain() string { return b.domain }

func (b *fakeBackend) setErr(err error) {
	b.mu.Lock()
	b.err = err
	b.mu.Unlock()
}

func (b *fakeBackend) Apply(ctx context.Context, t fsm.CommandType, requestID []byte, peer string, body wire.Encoder) (*fsm.Result, error) {
	return b.Propose(ctx, &fsm.Proposal{Type: t, RequestID: requestID, Peer: peer, Body: body})
}

func (b *fakeBackend) Propose(ctx context.Context, p *fsm.Proposal) (*fsm.Result, error) {
	if len(p.RequestID) > 64 {
		return nil, fmt.Errorf("request id of %d bytes", len(p.RequestID))
	}
	cmd, err := p.Command(nil)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return nil, b.err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.detached == nil {
		b.detached = map[fsm.CommandType]bool{}
	}
	b.detached[p.Type] = ctx.Done() == nil
	b.now += 1000
	if cmd, err = fsm.Stamp(cmd, b.now); err != nil {
		return nil, err
	}
	b.applied = append(b.applied, p.Type)
	b.lastCmd = cmd
	b.index++
	res := b.f.Apply(&raft.Log{Type: raft.LogCommand, Data: cmd, Index: b.index}).(*fsm.Result)
	res.Index = b.index
	return res, nil
}

func (b *fakeBackend) AppliedIndex() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.index
}

func (b *fakeBackend) WaitApplied(_ context.Context, index uint64) error {
	if have := b.AppliedIndex(); index > have {
		return &fsm.Error{Kind: fsm.Invalid, Message: fmt.Sprintf("index %d is ahead of the cluster (%d)", index, have)}
	}
	return nil
}

func (b *fakeBackend) Read(ctx context.Context, linearizable bool, fn func(*fsm.State) error) error {
	b.mu.Lock()
	b.reads = append(b.reads, linearizable)
	err := b.err
	b.mu.Unlock()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.f.Read(fn)
}

func (b *fakeBackend) Changed() <-chan struct{} {
	ch := b.f.Changed()
	b.mu.Lock()
	hook := b.changedCalls
	b.mu.Unlock()
	if hook != nil {
		select {
		case hook <- struct{}{}:
		default:
		}
	}
	return ch
}

func (b *fakeBackend) count(t fsm.CommandType) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, a := range b.applied {
		if a == t {
			n++
		}
	}
	return n
}

// read runs fn on the state.
func (b *fakeBackend) read(fn func(*fsm.State)) {
	_ = b.f.Read(func(s *fsm.State) error { fn(s); return nil })
}

// unavailable is the error of a cluster without leader.
type unavailable struct{}

func (unavailable) Error() string     { return "no leader" }
func (unavailable) Unavailable() bool { return true }

// peerCall is one call of fakePeers.
type peerCall struct {
	method string
	via    string // ClaimKeyMaterial's via, IdentifierQuery's domain
	target string // ClaimKeyMaterial's targetDomain
	room   proto.URI
	body   wire.Encoder
	key    string // the Idempotency-Key the relay would send
}

// fakePeers records calls and answers from its fields.
type fakePeers struct {
	mu        sync.Mutex
	calls     []peerCall
	err       error
	claim     func(via, target string, req *proto.KeyMaterialRequest) *proto.KeyMaterialResponse
	update    proto.UpdateRoomResponse
	groupInfo *proto.GroupInfoResponse
	ident     *proto.IdentifierResponse
	// tree answers WelcomeTree; nil answers 404.
	tree func(room proto.URI, req *proto.WelcomeTreeRequest) (io.ReadCloser, int64, error)
}

func (p *fakePeers) record(c peerCall) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	// A relayed body must encode, as the network needs it to.
	if c.body != nil {
		if _, err := wire.Marshal(c.body); err != nil {
			return err
		}
	}
	p.calls = append(p.calls, c)
	return p.err
}

func (p *fakePeers) UpdateRoom(ctx context.Context, room proto.URI, req *proto.UpdateRoomRequest) (*proto.UpdateRoomResponse, error) {
	if err := p.record(peerCall{method: "UpdateRoom", room: room, body: req, key: client.IdempotencyKey(ctx)}); err != nil {
		return nil, err
	}
	r := p.update
	return &r, nil
}

func (p *fakePeers) ProvisionalMessage(ctx context.Context, room proto.URI, msg *mls.Message) (*proto.UpdateRoomResponse, error) {
	if err := p.record(peerCall{method: "ProvisionalMessage", room: room, body: msg, key: client.IdempotencyKey(ctx)}); err != nil {
		return nil, err
	}
	r := p.update
	return &r, nil
}

func (p *fakePeers) ClaimKeyMaterial(_ context.Context, via, target string, req *proto.KeyMaterialRequest) (*proto.KeyMaterialResponse, error) {
	if err := p.record(peerCall{method: "ClaimKeyMaterial", via: via, target: target, room: req.Room, body: req}); err != nil {
		return nil, err
	}
	p.mu.Lock()
	claim := p.claim
	p.mu.Unlock()
	if claim != nil {
		return claim(via, target, req), nil
	}
	resp := &proto.KeyMaterialResponse{Protocol: proto.MLS10}
	for _, u := range req.TargetUsers {
		resp.Users = append(resp.Users, proto.UserKeyMaterial{Status: proto.UserUnknown, User: u})
	}
	return resp, nil
}

func (p *fakePeers) ClaimGroupInfo(_ context.Context, room proto.URI, req *proto.GroupInfoRequest) (*proto.GroupInfoResponse, error) {
	if err := p.record(peerCall{method: "ClaimGroupInfo", room: room, body: req}); err != nil {
		return nil, err
	}
	if p.groupInfo != nil {
		return p.groupInfo, nil
	}
	return &proto.GroupInfoResponse{Status: proto.GroupInfoNotAuthorized}, nil
}

func (p *fakePeers) ReportAbuse(_ context.Context, room proto.URI, report *proto.AbuseReport) error {
	return p.record(peerCall{method: "ReportAbuse", room: room, body: report})
}

func (p *fakePeers) IdentifierQuery(_ context.Context, domain string, req *proto.IdentifierRequest) (*proto.IdentifierResponse, error) {
	if err := p.record(peerCall{method: "IdentifierQuery", via: domain, body: req}); err != nil {
		return nil, err
	}
	if p.ident != nil {
		return p.ident, nil
	}
	return &proto.IdentifierResponse{Code: proto.QueryNotFound}, nil
}

func (p *fakePeers) WelcomeTree(_ context.Context, room proto.URI, req *proto.WelcomeTreeRequest) (io.ReadCloser, int64, error) {
	if err := p.record(peerCall{method: "WelcomeTree", room: room, body: req}); err != nil {
		return nil, 0, err
	}
	if p.tree != nil {
		return p.tree(room, req)
	}
	return nil, 0, &client.StatusError{Status: http.StatusNotFound, Message: "no such Welcome"}
}

func (p *fakePeers) setErr(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

func (p *fakePeers) taken() []peerCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.calls
	p.calls = nil
	return out
}

// testPeerHeader carries the authenticated peer in handler tests.
const testPeerHeader = "X-Test-Peer"

// env is one provider under test: its backend, fake peers and both
// routers.
type env struct {
	t       *testing.T
	domain  string
	b       *fakeBackend
	peers   *fakePeers
	fed     http.Handler
	api     *clientAPI
	apiH    http.Handler
	cfg     Config
	members map[proto.URI]*member
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newEnv(t *testing.T, domain string, mod func(*Config)) *env {
	t.Helper()
	cfg := Config{
		PeerIdentity: func(r *http.Request) (string, error) {
			if p := r.Header.Get(testPeerHeader); p != "" {
				return p, nil
			}
			return "", errors.New("no test peer")
		},
		Logger: testLogger(),
		// Tests make many accounts from one address; the rate limit tests
		// set their own. Cheap argon2id keeps password tests fast.
		RateLimits:     NoRateLimits,
		PasswordParams: PasswordParams{Time: 1, MemoryKiB: 64, Threads: 1},
	}
	if mod != nil {
		mod(&cfg)
	}
	e := &env{t: t, domain: domain, b: newFakeBackend(t, domain), peers: &fakePeers{}, cfg: cfg, members: map[proto.URI]*member{}}
	e.fed = NewFederation(cfg, e.b, e.peers)
	e.api = newClientAPI(cfg, e.b, e.peers)
	e.apiH = e.api.router()
	return e
}

// fedDo sends a federation request from peer ("" for none).
func (e *env) fedDo(method, path, peer string, body []byte, hdr ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if peer != "" {
		req.Header.Set(testPeerHeader, peer)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	e.fed.ServeHTTP(rec, req)
	return rec
}

// apiDo sends a client API request; body is JSON-encoded unless it is
// []byte or nil.
func (e *env) apiDo(method, path, token string, body any, hdr ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	var data []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		data = b
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			e.t.Fatal(err)
		}
	}
	req := httptest.NewRequest(method, path, bytes.NewReader(data))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	e.apiH.ServeHTTP(rec, req)
	return rec
}

// want checks a response's status, showing its body otherwise.
func want(t *testing.T, rec *httptest.ResponseRecorder, status int, what string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("%s: status %d, want %d; body %q", what, rec.Code, status, rec.Body.String())
	}
}

// wantJSONError checks a client API error.
func wantJSONError(t *testing.T, rec *httptest.ResponseRecorder, status int, kind, what string) {
	t.Helper()
	want(t, rec, status, what)
	var body errorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Kind != kind || body.Error == "" {
		t.Fatalf("%s: error body %q (%v), want kind %q", what, rec.Body.String(), err, kind)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: Content-Type %q", what, ct)
	}
}

// wantTextError checks a federation error.
func wantTextError(t *testing.T, rec *httptest.ResponseRecorder, status int, contains, what string) {
	t.Helper()
	want(t, rec, status, what)
	if !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") || !strings.Contains(rec.Body.String(), contains) {
		t.Fatalf("%s: body %q (%s), want text containing %q", what, rec.Body.String(), rec.Header().Get("Content-Type"), contains)
	}
}

// decodeJSON decodes a JSON response.
func decodeJSON[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("response %q: %v", rec.Body.String(), err)
	}
	return v
}

// decodeMIMI decodes an application/mimi response into v.
func decodeMIMI(t *testing.T, rec *httptest.ResponseRecorder, v wire.Decoder) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != mimiContentType {
		t.Fatalf("Content-Type %q, want %s", ct, mimiContentType)
	}
	if err := wire.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
}

var caps = mls.Capabilities{
	Proposals:  []mls.ProposalType{proto.ProposalParticipantListPatch, mls.ProposalSelfRemove},
	Extensions: []mls.ExtensionType{proto.ExtBasePolicy},
}

func suite(t *testing.T) *mls.Suite {
	t.Helper()
	s, err := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// member is a client with a real MLS client and, when registered here,
// its token.
type member struct {
	uri    proto.URI
	user   proto.URI
	token  string
	signer *mls.SigningKey
	group  *mls.Group
}

func newMember(t *testing.T, uri proto.URI) *member {
	t.Helper()
	signer, err := suite(t).GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	user, _ := uri.UserOf()
	return &member{uri: uri, user: user, signer: signer}
}

func lifetime() mls.Lifetime { return mls.Lifetime{NotBefore: t0/1000 - 60, NotAfter: t0/1000 + 86400} }

func groupOptions() mls.GroupOptions {
	return mls.GroupOptions{Config: room.MLSConfig(0), Now: func() uint64 { return t0/1000 + 1 }}
}

func (m *member) keyPackage(t *testing.T) *mls.KeyPackageBundle {
	t.Helper()
	kp, err := mls.NewKeyPackage(suite(t), m.signer, mls.KeyPackageOptions{Credential: mls.BasicCredential([]byte(m.uri)), Capabilities: caps, Lifetime: lifetime()})
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// register registers a local client through the API.
func (e *env) register(user, device string) *member {
	e.t.Helper()
	rec := e.apiDo(http.MethodPost, "/v1/register", "", map[string]any{"user": user, "device": device})
	want(e.t, rec, http.StatusCreated, "register "+user)
	out := decodeJSON[map[string]string](e.t, rec)
	m := newMember(e.t, proto.URI(out["client"]))
	m.token = out["token"]
	e.members[m.uri] = m
	return m
}

// link adds device to by's user: the new device asks, by approves its
// code.
func (e *env) link(by *member, device string) *member {
	e.t.Helper()
	id, _ := by.user.Parse()
	rec := e.apiDo(http.MethodPost, "/v1/devices/link", "", map[string]any{"user": id.User, "device": device})
	want(e.t, rec, http.StatusAccepted, "link "+device)
	out := decodeJSON[map[string]any](e.t, rec)
	want(e.t, e.apiDo(http.MethodPost, "/v1/devices/approve", by.token, map[string]any{"code": out["code"]}), http.StatusOK, "approve "+device)
	m := newMember(e.t, proto.URI(out["client"].(string)))
	m.token = out["token"].(string)
	e.members[m.uri] = m
	return m
}

// upload uploads a fresh KeyPackage of m and returns its bundle.
func (e *env) upload(m *member) *mls.KeyPackageBundle {
	e.t.Helper()
	kp := m.keyPackage(e.t)
	rec := e.apiDo(http.MethodPost, "/v1/keypackages", m.token, map[string]any{"key_packages": [][]byte{wire.MustMarshal(mls.NewKeyPackageMessage(kp.KeyPackage))}})
	want(e.t, rec, http.StatusNoContent, "upload")
	return kp
}

// hubExtension is the external_senders extension a room created here
// needs, from GET /v1/hub.
func (e *env) hubExtension(m *member) mls.Extension {
	e.t.Helper()
	rec := e.apiDo(http.MethodGet, "/v1/hub", m.token, nil)
	want(e.t, rec, http.StatusOK, "hub")
	out := decodeJSON[struct {
		Domain string `json:"domain"`
		Suites []struct {
			CipherSuite     uint16 `json:"cipher_suite"`
			ExternalSenders []byte `json:"external_senders"`
		} `json:"suites"`
	}](e.t, rec)
	for _, s := range out.Suites {
		if mls.CipherSuite(s.CipherSuite) == suite(e.t).ID() {
			return mls.Extension{Type: mls.ExtExternalSenders, Data: s.ExternalSenders}
		}
	}
	e.t.Fatalf("GET /v1/hub lists no external sender for %s: %+v", suite(e.t).ID(), out)
	return mls.Extension{}
}

// createRoom has m create room name here through the API.
func (e *env) createRoom(m *member, name string) proto.URI {
	e.t.Helper()
	id := proto.RoomURI(e.domain, name)
	pol := proto.DefaultPolicy()
	g, err := mls.CreateGroup(suite(e.t), m.signer, mls.CreateOptions{GroupOptions: groupOptions(), GroupID: []byte(id), Extensions: mls.Extensions{pol.Extension(), e.hubExtension(m)},
		Credential: mls.BasicCredential([]byte(m.uri)), Capabilities: caps, Lifetime: lifetime()})
	if err != nil {
		e.t.Fatal(err)
	}
	m.group = g
	gi, err := g.GroupInfo(mls.GroupInfoOptions{ExternalPub: true})
	if err != nil {
		e.t.Fatal(err)
	}
	rec := e.apiDo(http.MethodPost, "/v1/rooms", m.token, map[string]any{"room": name, "group_info": wire.MustMarshal(gi), "ratchet_tree": wire.MustMarshal(g.Tree())})
	want(e.t, rec, http.StatusCreated, "create room")
	if got := decodeJSON[map[string]string](e.t, rec)["room"]; got != string(id) {
		e.t.Fatalf("created %s, want %s", got, id)
	}
	return id
}

// roomPath is the client API path of a room.
func roomPath(id proto.URI, suffix string) string {
	rid, _ := id.Parse()
	p := "/v1/rooms/" + rid.Domain + "/" + rid.Room
	if suffix != "" {
		p += "/" + suffix
	}
	return p
}

// commitJSON is the client API body of a commit bundle.
func commitJSON(b *mls.CommitBundle, tree []byte) map[string]any {
	body := map[string]any{"commit": wire.MustMarshal(b.Commit), "group_info": wire.MustMarshal(b.GroupInfo)}
	if b.Welcome != nil {
		body["welcome"] = wire.MustMarshal(b.Welcome)
	}
	if tree != nil {
		body["ratchet_tree"] = tree
	}
	return body
}

// commit has m commit opts to a room through the client API and merges or
// discards it by the answer.
func (e *env) commit(m *member, id proto.URI, opts mls.CommitOptions, hdr ...string) (*mls.CommitBundle, updateResult) {
	e.t.Helper()
	opts.GroupInfo.ExternalPub = true
	b, err := m.group.Commit(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	rec := e.apiDo(http.MethodPost, roomPath(id, "commit"), m.token, commitJSON(b, nil), hdr...)
	want(e.t, rec, http.StatusOK, "commit")
	res := decodeJSON[updateResult](e.t, rec)
	if res.Code == 0 {
		m.group.MergePendingCommit()
	} else {
		m.group.DiscardPendingCommit()
	}
	return b, res
}

// say has m send text to a room through the client API.
func (e *env) say(m *member, id proto.URI, text string, hdr ...string) updateResult {
	e.t.Helper()
	msg, err := m.group.Encrypt([]byte(text), room.SenderHint(m.uri))
	if err != nil {
		e.t.Fatal(err)
	}
	rec := e.apiDo(http.MethodPost, roomPath(id, "messages"), m.token, map[string]any{"message": wire.MustMarshal(msg)}, hdr...)
	want(e.t, rec, http.StatusOK, "message")
	return decodeJSON[updateResult](e.t, rec)
}

// streamOut is the JSON of /v1/stream.
type streamOut struct {
	Items []streamItem `json:"items"`
	Gap   bool         `json:"gap"`
	Last  uint64       `json:"last"`
}

// stream reads m's stream without waiting.
func (e *env) stream(m *member, after uint64) streamOut {
	e.t.Helper()
	rec := e.apiDo(http.MethodGet, fmt.Sprintf("/v1/stream?after=%d", after), m.token, nil)
	want(e.t, rec, http.StatusOK, "stream")
	return decodeJSON[streamOut](e.t, rec)
}

// kindsOf lists the kinds of stream items.
func kindsOf(items []streamItem) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Kind)
	}
	return out
}

// roomSequence returns a hosted room's sequence.
func (e *env) roomSequence(id proto.URI) uint64 {
	var seq uint64
	e.b.read(func(s *fsm.State) {
		info, _ := s.Room(id)
		seq = info.Sequence
	})
	return seq
}

// successClaim answers a claim with one KeyPackage per target, from kps.
func successClaim(kps map[proto.URI]*member, bundles map[proto.URI]*mls.KeyPackageBundle) func(string, string, *proto.KeyMaterialRequest) *proto.KeyMaterialResponse {
	return func(_, _ string, req *proto.KeyMaterialRequest) *proto.KeyMaterialResponse {
		resp := &proto.KeyMaterialResponse{Protocol: proto.MLS10}
		for _, u := range req.TargetUsers {
			m, ok := kps[u]
			if !ok {
				resp.Users = append(resp.Users, proto.UserKeyMaterial{Status: proto.UserUnknown, User: u})
				continue
			}
			resp.Users = append(resp.Users, proto.UserKeyMaterial{Status: proto.UserSuccess, User: u, Clients: []proto.ClientKeyMaterial{
				{Status: proto.ClientSuccess, Client: m.uri, KeyPackage: mls.NewKeyPackageMessage(bundles[m.uri].KeyPackage)}}})
		}
		return resp
	}
}

// eventually waits (bounded) for ch.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	panic("unreachable")
}

// contains reports whether calls has one matching pred.
func hasCall(calls []peerCall, pred func(peerCall) bool) bool {
	return slices.ContainsFunc(calls, pred)
}

// lastRead returns the linearizable flag of the latest read.
func (b *fakeBackend) lastRead() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reads[len(b.reads)-1]
}

// untilOverBudget sends fetch until it is refused for the sender's budget
// (429 with Retry-After), every earlier answer having status; it fails if
// 200 are not refused.
func untilOverBudget(t *testing.T, what string, status int, fetch func() *httptest.ResponseRecorder) {
	t.Helper()
	for i := range 200 {
		rec := fetch()
		if i > 0 && rec.Code == http.StatusTooManyRequests && rec.Header().Get("Retry-After") != "" {
			return
		}
		if rec.Code != status {
			t.Fatalf("%s %d: HTTP %d %q, want %d", what, i, rec.Code, rec.Body, status)
		}
	}
	t.Fatalf("%s: 200 answers, none refused for the budget", what)
}
