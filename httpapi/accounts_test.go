package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// state is the backend's state encoding.
func (b *fakeBackend) state(t *testing.T) []byte {
	t.Helper()
	enc, err := b.f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// apiFrom sends a client API request from source address addr.
func (e *env) apiFrom(addr, method, path, token string, body any) *httptest.ResponseRecorder {
	e.t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		e.t.Fatal(err)
	}
	req := httptest.NewRequest(method, path, bytes.NewReader(data))
	req.RemoteAddr = addr
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	e.apiH.ServeHTTP(rec, req)
	return rec
}

func TestCanonicalName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"alice", "alice"},
		{"Alice", "alice"},
		{"ALICE", "alice"},
		{"\uff21lice", "alice"}, // fullwidth A: width-mapped
		{"john.smith", "john.smith"},
		{"a-b_c9", "a-b_c9"},
		{"\u0430lice", ""},  // Cyrillic a: another script
		{"al ice", ""},      // space
		{"alice\u200d", ""}, // zero-width joiner
		{"", ""},            // empty
		{".alice", ""},      // separator first
		{"al~ice", ""},      // outside the subset
		{"ＡＬＩＣＥ", "alice"},  // all fullwidth
		{"stra\u00dfe", ""}, // ß is not ASCII
		{strings.Repeat("a", fsm.MaxUserName+1), ""},
	} {
		got, err := canonicalName("user", tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("canonicalName(%q) = %q, want a refusal", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("canonicalName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestLimiter checks a Rate's strict table (internal/budget NewStrict):
// whole tokens, the burst, the refill, and a bounded table that forgets
// only refilled keys.
func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(Rate{Every: 10 * time.Second, Burst: 3}, 2, func() time.Time { return now })
	for i := range 3 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("take %d refused within the burst", i)
		}
	}
	ok, retry := l.Allow("a")
	if ok || retry != 10*time.Second {
		t.Fatalf("over the burst: %v, retry %s; want refused, 10s", ok, retry)
	}
	now = now.Add(5 * time.Second)
	if ok, retry := l.Allow("a"); ok || retry != 5*time.Second {
		t.Fatalf("half refilled: %v, retry %s; want refused, 5s", ok, retry)
	}
	now = now.Add(5 * time.Second)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("refilled token refused")
	}
	// Keys are bounded: a full table forgets full buckets first, then
	// refuses new keys.
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("second key refused")
	}
	if ok, _ := l.Allow("c"); ok {
		t.Fatal("a third key was tracked in a table of 2 with no full bucket")
	}
	now = now.Add(time.Minute)
	if ok, _ := l.Allow("c"); !ok {
		t.Fatal("a new key refused after the others refilled")
	}
	if n := l.Len(); n > 2 {
		t.Fatalf("%d buckets, bound 2", n)
	}
	off := newLimiter(Rate{Burst: -1}, 1, time.Now)
	for range 100 {
		if ok, _ := off.Allow("x"); !ok {
			t.Fatal("a disabled limit refused")
		}
	}
}

func TestPasswordHash(t *testing.T) {
	h := newPasswordHasher(PasswordParams{Time: 1, MemoryKiB: 64, Threads: 1}, 1)
	ctx := t.Context()
	stored, err := h.hash(ctx, "correct horse")
	if err != nil || !bytes.HasPrefix(stored, []byte("$argon2id$v=19$m=64,t=1,p=1$")) {
		t.Fatalf("hash %q, %v", stored, err)
	}
	if again, _ := h.hash(ctx, "correct horse"); bytes.Equal(again, stored) {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	for _, tc := range []struct {
		stored   []byte
		password string
		ok       bool
		bad      bool
	}{
		{stored, "correct horse", true, false},
		{stored, "correct horsE", false, false},
		{stored, "", false, false},
		{[]byte("$argon2i$v=19$m=64,t=1,p=1$c2FsdA$a2V5"), "x", false, true},
		{[]byte("$argon2id$v=19$m=9999999,t=1,p=1$c2FsdA$a2V5"), "x", false, true}, // over the memory bound
		{[]byte("$argon2id$v=19$m=64,t=99,p=1$c2FsdA$a2V5"), "x", false, true},     // over the time bound
		{[]byte("garbage"), "x", false, true},
	} {
		ok, err := h.verify(ctx, tc.stored, tc.password)
		if ok != tc.ok || (err != nil) != tc.bad {
			t.Errorf("verify(%q, %q) = %v, %v; want %v, error %v", tc.stored, tc.password, ok, err, tc.ok, tc.bad)
		}
	}
	// A hash waits for a free slot, bounded by its context.
	h.slots <- struct{}{}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := h.hash(cctx, "correct horse"); err == nil {
		t.Fatal("a hash ran with every slot taken")
	}
	<-h.slots
}

func TestRegistrationPolicies(t *testing.T) {
	t.Run("key", func(t *testing.T) {
		e := newEnv(t, "a.example", func(c *Config) { c.RegistrationKey = "sesame" })
		wantJSONError(t, e.apiDo(http.MethodPost, "/v1/register", "", map[string]any{"user": "alice", "device": "x"}), http.StatusForbidden, kindNotAllowed, "without the key")
		want(t, e.apiDo(http.MethodPost, "/v1/register", "", map[string]any{"user": "alice", "device": "x"}, "Mimi-Registration-Key", "sesame"), http.StatusCreated, "with the key")
	})
	t.Run("closed", func(t *testing.T) {
		e := newEnv(t, "a.example", func(c *Config) { c.Registration = RegistrationClosed })
		wantJSONError(t, e.apiDo(http.MethodPost, "/v1/register", "", map[string]any{"user": "alice", "device": "x"}), http.StatusForbidden, kindNotAllowed, "closed")
	})
	t.Run("invite", func(t *testing.T) {
		e := newEnv(t, "a.example", func(c *Config) { c.Registration = RegistrationInvite })
		code, hash := NewInviteCode()
		res, err := e.b.Apply(t.Context(), fsm.CmdMintInvite, nil, "", &fsm.MintInviteBody{CodeHash: hash, ExpiresAt: t0 + 3_600_000})
		if err != nil || res.Err() != nil {
			t.Fatalf("mint: %v %v", err, res)
		}
		wantJSONError(t, e.apiDo(http.MethodPost, "/v1/register", "", map[string]any{"user": "alice", "device": "x"}), http.StatusForbidden, kindNotAllowed, "without an invite")
		wantJSONError(t, e.apiDo(http.MethodPost, "/v1/register", "", map[string]any{"user": "alice", "device": "x", "invite": "WRONG-CODE"}), http.StatusForbidden, kindNotAllowed, "a wrong invite")
		// Typed in lower case with spaces: the code is normalised.
		typed := strings.ToLower(strings.ReplaceAll(code, "-", " "))
		want(t, e.apiDo(http.MethodPost, "/v1/register", "", map[string]any{"user": "alice", "device": "x", "invite": typed}), http.StatusCreated, "with the invite")
		wantJSONError(t, e.apiDo(http.MethodPost, "/v1/register", "", map[string]any{"user": "bob", "device": "x", "invite": code}), http.StatusForbidden, kindNotAllowed, "the invite again")
	})
}

// TestSecondDeviceNeedsProof is the account takeover of issue 12: a
// second device of an existing user is refused without the user's
// approval or password, whatever the name's case or width, and nothing
// changes; approval by another user's device is refused too.
func TestSecondDeviceNeedsProof(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	bob := e.register("bob", "phone")
	before := e.b.state(t)
	for _, name := range []string{"alice", "Alice", "ALICE", "\uff41lice", "al1ce"} {
		wantJSONError(t, e.apiDo(http.MethodPost, "/v1/register", "", map[string]any{"user": name, "device": "evil"}), http.StatusConflict, kindConflict, "register "+name+"/evil")
	}
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/register", "", map[string]any{"user": "\u0430lice", "device": "evil"}), http.StatusBadRequest, kindInvalid, "a Cyrillic look-alike")
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/devices", "", map[string]any{"user": "alice", "device": "evil", "password": "whatever1"}), http.StatusForbidden, kindNotAllowed, "password device without a password")
	if !bytes.Equal(before, e.b.state(t)) {
		t.Fatal("a refused device changed the state")
	}

	// The link flow: the new device gets a code; bob cannot approve it;
	// the token works only after alice's phone approves.
	rec := e.apiDo(http.MethodPost, "/v1/devices/link", "", map[string]any{"user": "Alice", "device": "laptop"})
	want(t, rec, http.StatusAccepted, "link request")
	out := decodeJSON[map[string]any](t, rec)
	code, token := out["code"].(string), out["token"].(string)
	if out["client"] != "mimi://a.example/u/alice/d/laptop" || len(normalizeCode(code)) != linkCodeLen {
		t.Fatalf("link answer %v", out)
	}
	wantJSONError(t, e.apiDo(http.MethodGet, "/v1/whoami", token, nil), http.StatusUnauthorized, kindNotAllowed, "an unapproved token")
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/devices/approve", bob.token, map[string]any{"code": code}), http.StatusNotFound, kindNotFound, "bob approves alice's device")
	devs := decodeJSON[struct {
		Pending []struct{ Client string } `json:"pending"`
	}](t, e.apiDo(http.MethodGet, "/v1/devices", alice.token, nil))
	if len(devs.Pending) != 1 || devs.Pending[0].Client != "mimi://a.example/u/alice/d/laptop" {
		t.Fatalf("pending %+v", devs.Pending)
	}
	rec = e.apiDo(http.MethodPost, "/v1/devices/approve", alice.token, map[string]any{"code": strings.ToLower(code)})
	want(t, rec, http.StatusOK, "alice approves")
	want(t, e.apiDo(http.MethodGet, "/v1/whoami", token, nil), http.StatusOK, "the approved token")
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/devices/approve", alice.token, map[string]any{"code": code}), http.StatusNotFound, kindNotFound, "a code approved twice")
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/devices/approve", alice.token, map[string]any{"code": "12"}), http.StatusBadRequest, kindInvalid, "a short code")

	// The password: set (a change needs the current one), then a device
	// with it; a wrong password is refused.
	want(t, e.apiDo(http.MethodPut, "/v1/account/password", alice.token, map[string]any{"password": "correct horse"}), http.StatusNoContent, "set password")
	wantJSONError(t, e.apiDo(http.MethodPut, "/v1/account/password", token, map[string]any{"password": "stolen device"}), http.StatusForbidden, kindNotAllowed, "change without the current password")
	wantJSONError(t, e.apiDo(http.MethodPut, "/v1/account/password", alice.token, map[string]any{"password": "short"}), http.StatusBadRequest, kindInvalid, "a short password")
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/devices", "", map[string]any{"user": "alice", "device": "tablet", "password": "wrong horse"}), http.StatusForbidden, kindNotAllowed, "a wrong password")
	rec = e.apiDo(http.MethodPost, "/v1/devices", "", map[string]any{"user": "alice", "device": "tablet", "password": "correct horse"})
	want(t, rec, http.StatusCreated, "a device with the password")
	tablet := decodeJSON[map[string]string](t, rec)["token"]

	// Revocation cuts the token at the next request; the revoked device
	// cannot revoke back, nor can bob revoke alice's.
	// A path names a device of the caller's own user: bob has no tablet,
	// and his only device cannot go while he has no password.
	wantJSONError(t, e.apiDo(http.MethodDelete, "/v1/devices/tablet", bob.token, nil), http.StatusNotFound, kindNotFound, "bob revokes 'tablet'")
	wantJSONError(t, e.apiDo(http.MethodDelete, "/v1/devices/phone", bob.token, nil), http.StatusConflict, kindConflict, "bob revokes his last device")
	want(t, e.apiDo(http.MethodDelete, "/v1/devices/tablet", alice.token, nil), http.StatusNoContent, "revoke the tablet")
	wantJSONError(t, e.apiDo(http.MethodGet, "/v1/whoami", tablet, nil), http.StatusUnauthorized, kindNotAllowed, "the revoked token")
	wantJSONError(t, e.apiDo(http.MethodDelete, "/v1/devices/phone", tablet, nil), http.StatusUnauthorized, kindNotAllowed, "the revoked device revokes")
	// Authentication reads linearizably (a revocation through another
	// node counts at once).
	e.b.mu.Lock()
	reads := slices.Clone(e.b.reads)
	e.b.mu.Unlock()
	if len(reads) == 0 || !reads[len(reads)-1] {
		t.Fatal("authentication did not read linearizably")
	}
	// A suspended user authenticates nowhere.
	res, err := e.b.Apply(t.Context(), fsm.CmdSuspendUser, nil, "", &fsm.SuspendUserBody{User: alice.user, Suspend: true})
	if err != nil || res.Err() != nil {
		t.Fatalf("suspend: %v %v", err, res)
	}
	wantJSONError(t, e.apiDo(http.MethodGet, "/v1/whoami", alice.token, nil), http.StatusUnauthorized, kindNotAllowed, "a suspended user")
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/devices/link", "", map[string]any{"user": "alice", "device": "tv"}), http.StatusForbidden, kindNotAllowed, "linking to a suspended user")
}

// TestAccountRateLimits checks registration, linking and password
// attempts answer 429 with Retry-After once a source address or an
// account spent its budget, and that the refused requests change nothing.
func TestAccountRateLimits(t *testing.T) {
	e := newEnv(t, "a.example", func(c *Config) {
		c.RateLimits = RateLimits{Registration: Rate{Every: time.Hour, Burst: 3}, Link: Rate{Every: time.Hour, Burst: 2},
			Password: Rate{Every: time.Hour, Burst: 2}, Approve: Rate{Every: time.Hour, Burst: 2}}
	})
	for i := range 3 {
		want(t, e.apiFrom("198.51.100.7:1000", http.MethodPost, "/v1/register", "", map[string]any{"user": "u" + strconv.Itoa(i), "device": "x"}), http.StatusCreated, "within the budget")
	}
	before := e.b.state(t)
	rec := e.apiFrom("198.51.100.7:1001", http.MethodPost, "/v1/register", "", map[string]any{"user": "u9", "device": "x"})
	wantJSONError(t, rec, http.StatusTooManyRequests, kindLimit, "a registration over the budget")
	if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 || ra > 3600 {
		t.Fatalf("Retry-After %q", rec.Header().Get("Retry-After"))
	}
	// Another address has its own budget; an IPv6 host counts by /64.
	want(t, e.apiFrom("198.51.100.8:1000", http.MethodPost, "/v1/register", "", map[string]any{"user": "v1", "device": "x"}), http.StatusCreated, "another address")
	before = e.b.state(t)
	for i := range 3 {
		e.apiFrom("[2001:db8::"+strconv.Itoa(i+1)+"]:1", http.MethodPost, "/v1/register", "", map[string]any{"user": "w" + strconv.Itoa(i), "device": "x"})
	}
	wantJSONError(t, e.apiFrom("[2001:db8::ff]:1", http.MethodPost, "/v1/register", "", map[string]any{"user": "w9", "device": "x"}), http.StatusTooManyRequests, kindLimit, "the same /64")

	// Password attempts are limited per account, whatever the address.
	alice := e.register("alice", "phone")
	want(t, e.apiDo(http.MethodPut, "/v1/account/password", alice.token, map[string]any{"password": "correct horse"}), http.StatusNoContent, "set password")
	wantJSONError(t, e.apiFrom("203.0.113.1:1", http.MethodPost, "/v1/devices", "", map[string]any{"user": "alice", "device": "t", "password": "guess one"}), http.StatusForbidden, kindNotAllowed, "guess 1")
	before = e.b.state(t) // the wrong password is logged (the password guard)
	wantJSONError(t, e.apiFrom("203.0.113.2:1", http.MethodPost, "/v1/devices", "", map[string]any{"user": "alice", "device": "t", "password": "correct horse"}), http.StatusTooManyRequests, kindLimit, "the account's budget is spent (the set password took one)")
	if !bytes.Equal(before, e.b.state(t)) {
		t.Fatal("refused password attempts changed the state")
	}
	// Link requests: per account.
	want(t, e.apiFrom("203.0.113.3:1", http.MethodPost, "/v1/devices/link", "", map[string]any{"user": "alice", "device": "l1"}), http.StatusAccepted, "link 1")
	want(t, e.apiFrom("203.0.113.4:1", http.MethodPost, "/v1/devices/link", "", map[string]any{"user": "alice", "device": "l2"}), http.StatusAccepted, "link 2")
	wantJSONError(t, e.apiFrom("203.0.113.5:1", http.MethodPost, "/v1/devices/link", "", map[string]any{"user": "alice", "device": "l3"}), http.StatusTooManyRequests, kindLimit, "link 3 for the same account")
}

// TestPasswordGuard: with the per-node limits off, wrong passwords (adding
// a device, or the current one when changing it) are logged, and once the
// user's replicated schedule is spent every attempt is refused with 429
// and a Retry-After of about one interval, the right password too, before
// it is checked, changing nothing; another user is not affected. A wrong
// password is logged whether or not the client waits for the answer.
func TestPasswordGuard(t *testing.T) {
	var clock *fakeBackend
	e := newEnv(t, "a.example", func(c *Config) {
		c.RateLimits = NoRateLimits
		c.Now = func() time.Time { return time.UnixMilli(int64(clock.now)) }
	})
	clock = e.b
	alice := e.register("alice", "phone")
	bob := e.register("bob", "phone")
	for _, u := range []*member{alice, bob} {
		want(t, e.apiDo(http.MethodPut, "/v1/account/password", u.token, map[string]any{"password": "correct horse"}), http.StatusNoContent, "set password")
	}
	logged := func() int {
		var k int
		e.b.read(func(s *fsm.State) {
			cred, _ := s.UserCredential(alice.user)
			if cred.PasswordRetryAt > 0 {
				k++
			}
		})
		return k
	}
	for i := range fsm.PasswordFailureBurst {
		if i%2 == 0 {
			wantJSONError(t, e.apiDo(http.MethodPost, "/v1/devices", "", map[string]any{"user": "alice", "device": "t", "password": fmt.Sprintf("guess %d", i)}), http.StatusForbidden, kindNotAllowed, "a wrong password")
		} else {
			wantJSONError(t, e.apiDo(http.MethodPut, "/v1/account/password", alice.token, map[string]any{"password": "new password", "current_password": fmt.Sprintf("guess %d", i)}), http.StatusForbidden, kindNotAllowed, "a wrong current_password")
		}
	}
	if logged() != 1 {
		t.Fatal("the wrong passwords were not logged")
	}
	e.b.mu.Lock()
	detached := e.b.detached[fsm.CmdPasswordFailure]
	e.b.mu.Unlock()
	if !detached {
		t.Fatal("a wrong password is logged under the request's context: a guesser that hangs up once the hash is checked keeps it off the schedule")
	}
	before := e.b.state(t)
	for _, c := range []struct {
		name, method, path, token string
		body                      map[string]any
	}{
		{"the right password", http.MethodPost, "/v1/devices", "", map[string]any{"user": "alice", "device": "t", "password": "correct horse"}},
		{"another guess", http.MethodPost, "/v1/devices", "", map[string]any{"user": "alice", "device": "t", "password": "guess x"}},
		{"the right current_password", http.MethodPut, "/v1/account/password", alice.token, map[string]any{"password": "new password", "current_password": "correct horse"}},
	} {
		rec := e.apiDo(c.method, c.path, c.token, c.body)
		wantJSONError(t, rec, http.StatusTooManyRequests, kindLimit, c.name+" past the schedule")
		interval := int(fsm.PasswordFailureInterval / 1000)
		if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < interval-60 || ra > interval {
			t.Fatalf("%s: Retry-After %q, want about %d s", c.name, rec.Header().Get("Retry-After"), interval)
		}
	}
	if !bytes.Equal(before, e.b.state(t)) {
		t.Fatal("attempts refused by the schedule changed the state")
	}
	want(t, e.apiDo(http.MethodPost, "/v1/devices", "", map[string]any{"user": "bob", "device": "t", "password": "correct horse"}), http.StatusCreated, "another user's password")
}

// TestSubscribeRemoteRoom checks a client follows a room hosted elsewhere
// only when the hub shows it in the room's tree.
func TestSubscribeRemoteRoom(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	remote := proto.RoomURI("b.example", "x")
	path := roomPath(remote, "subscription")
	following := func() bool {
		var ok bool
		e.b.read(func(s *fsm.State) { ok = slices.Contains(s.Subscribers(remote), alice.uri) })
		return ok
	}
	// The hub refuses to show the room to a non-participant.
	e.peers.groupInfo = &proto.GroupInfoResponse{Status: proto.GroupInfoNotAuthorized}
	wantJSONError(t, e.apiDo(http.MethodPut, path, alice.token, nil), http.StatusForbidden, kindNotAllowed, "not a participant")
	// The hub shows a tree without her.
	bobM := newMember(t, "mimi://b.example/u/bob/d/x")
	g, err := mls.CreateGroup(suite(t), bobM.signer, mls.CreateOptions{GroupOptions: groupOptions(), GroupID: []byte(remote),
		Credential: mls.BasicCredential([]byte(bobM.uri)), Capabilities: caps, Lifetime: lifetime()})
	if err != nil {
		t.Fatal(err)
	}
	answer := func(g *mls.Group) *proto.GroupInfoResponse {
		gi, err := g.GroupInfo(mls.GroupInfoOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return &proto.GroupInfoResponse{Status: proto.GroupInfoSuccess, GroupInfo: gi,
			RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeFull, Tree: wire.MustMarshal(g.Tree())}}
	}
	e.peers.groupInfo = answer(g)
	wantJSONError(t, e.apiDo(http.MethodPut, path, alice.token, nil), http.StatusForbidden, kindNotAllowed, "not in the tree")
	// The hub is unreachable.
	e.peers.groupInfo = nil
	e.peers.setErr(&client.TransportError{Method: "POST", URL: "https://b.example/claimGroupInfo/x", Err: context.DeadlineExceeded})
	wantJSONError(t, e.apiDo(http.MethodPut, path, alice.token, nil), http.StatusBadGateway, kindUnavailable, "hub unreachable")
	e.peers.setErr(nil)
	if following() {
		t.Fatal("a refused subscription subscribed")
	}
	// Bob adds Alice: now the hub shows her leaf.
	kp := alice.keyPackage(t)
	if _, err := g.Commit(mls.CommitOptions{Proposals: []*mls.Proposal{mls.AddProposal(kp.KeyPackage)}}); err != nil {
		t.Fatal(err)
	}
	g.MergePendingCommit()
	e.peers.groupInfo = answer(g)
	want(t, e.apiDo(http.MethodPut, path, alice.token, nil), http.StatusNoContent, "a member subscribes")
	if !following() {
		t.Fatal("a confirmed member does not follow the room")
	}
	if reqs := e.peers.taken(); len(reqs) == 0 || reqs[len(reqs)-1].method != "ClaimGroupInfo" {
		t.Fatalf("the hub was not asked: %+v", reqs)
	}
}
