package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
)

// TestDeviceInvitationFlow checks the invitation flow end to end: an
// anonymous flood of link requests for alice (her link slots full, her
// link budget spent) does not stop her phone from inviting a device and
// the device from redeeming it; every redemption that matches nothing is
// one 404 and changes no state; invitations are single use and bounded
// per user; redemptions are limited per source address only.
func TestDeviceInvitationFlow(t *testing.T) {
	e := newEnv(t, "a.example", func(c *Config) {
		c.RateLimits = RateLimits{Registration: Rate{Burst: -1}, Link: DefaultLinkRate, Password: Rate{Burst: -1},
			Approve: Rate{Burst: -1}, Redeem: Rate{Every: time.Hour, Burst: 8}}
	})
	alice := e.register("alice", "phone")
	bob := e.register("bob", "phone")
	// The flood: each request from its own address, until alice's link
	// budget is spent.
	flooded := false
	for i := range 20 {
		rec := e.apiFrom("198.51.100."+strconv.Itoa(i+1)+":1", http.MethodPost, "/v1/devices/link", "", map[string]any{"user": "alice", "device": "flood" + strconv.Itoa(i)})
		if rec.Code == http.StatusTooManyRequests {
			flooded = true
			break
		}
		want(t, rec, http.StatusAccepted, "flood")
	}
	if !flooded {
		t.Fatal("the link flood never hit alice's budget")
	}
	wantJSONError(t, e.apiFrom("198.51.100.99:1", http.MethodPost, "/v1/devices/link", "", map[string]any{"user": "alice", "device": "honest"}), http.StatusTooManyRequests, kindLimit, "alice's own link request during the flood")

	// An invitation needs a device of the user.
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/devices/invite", "", nil), http.StatusUnauthorized, kindNotAllowed, "an anonymous invitation")
	rec := e.apiDo(http.MethodPost, "/v1/devices/invite", alice.token, nil)
	want(t, rec, http.StatusCreated, "alice invites")
	inv := decodeJSON[map[string]any](t, rec)
	code, _ := inv["code"].(string)
	if len(normalizeCode(code)) != deviceInviteLen || inv["user"] != "mimi://a.example/u/alice" || inv["expires_in"] != float64(fsm.LinkTTL/1000) {
		t.Fatalf("invitation %v", inv)
	}

	// Redemptions that match nothing: one answer, nothing changes.
	before := e.b.state(t)
	guesser := "203.0.113.9:1"
	wrong := "AAAA-AAAA-AAAA"
	if wrong == code {
		wrong = "BBBB-BBBB-BBBB"
	}
	var msg string
	for _, tc := range []struct{ what, user, code string }{
		{"a wrong code", "alice", wrong},
		{"an unknown user", "nobody", code},
		{"alice's code for bob", "bob", code},
	} {
		rec := e.apiFrom(guesser, http.MethodPost, "/v1/devices/redeem", "", map[string]any{"user": tc.user, "device": "tablet", "code": tc.code})
		wantJSONError(t, rec, http.StatusNotFound, kindNotFound, tc.what)
		got := decodeJSON[map[string]string](t, rec)["error"]
		if msg == "" {
			msg = got
		}
		if got != msg || got != fsm.NoInvitation {
			t.Fatalf("%s: %q, want the one answer %q", tc.what, got, fsm.NoInvitation)
		}
	}
	wantJSONError(t, e.apiFrom(guesser, http.MethodPost, "/v1/devices/redeem", "", map[string]any{"user": "alice", "device": "tablet", "code": "ABCD-EFGH"}), http.StatusBadRequest, kindInvalid, "a link-sized code")
	wantJSONError(t, e.apiFrom(guesser, http.MethodPost, "/v1/devices/redeem", "", map[string]any{"user": "alice", "device": "Ta b", "code": code}), http.StatusBadRequest, kindInvalid, "a device name that is none")
	if !bytes.Equal(before, e.b.state(t)) {
		t.Fatal("refused redemptions changed the state")
	}

	// The right code, typed in lower case, from another address: the
	// device is added at once and its token works.
	rec = e.apiFrom("203.0.113.10:1", http.MethodPost, "/v1/devices/redeem", "", map[string]any{"user": "Alice", "device": "tablet", "code": strings.ToLower(code)})
	want(t, rec, http.StatusCreated, "redeem")
	added := decodeJSON[map[string]string](t, rec)
	if added["client"] != "mimi://a.example/u/alice/d/tablet" || added["user"] != "mimi://a.example/u/alice" || added["how"] != "invited" {
		t.Fatalf("redeemed %v", added)
	}
	want(t, e.apiDo(http.MethodGet, "/v1/whoami", added["token"], nil), http.StatusOK, "the invited device's token")
	devs := decodeJSON[struct {
		Devices []deviceJSON `json:"devices"`
	}](t, e.apiDo(http.MethodGet, "/v1/devices", added["token"], nil))
	if len(devs.Devices) != 2 || devs.Devices[1].How != "invited" || !devs.Devices[1].Current {
		t.Fatalf("devices %+v", devs.Devices)
	}
	wantJSONError(t, e.apiFrom("203.0.113.10:1", http.MethodPost, "/v1/devices/redeem", "", map[string]any{"user": "alice", "device": "tv", "code": code}), http.StatusNotFound, kindNotFound, "an invitation used twice")

	// At most MaxDeviceInvitesPerUser open: the next is 429, and bob's
	// are his own.
	for i := range fsm.MaxDeviceInvitesPerUser {
		want(t, e.apiDo(http.MethodPost, "/v1/devices/invite", alice.token, nil), http.StatusCreated, "invite "+strconv.Itoa(i))
	}
	rec = e.apiDo(http.MethodPost, "/v1/devices/invite", added["token"], nil)
	wantJSONError(t, rec, http.StatusTooManyRequests, kindLimit, "a sixth open invitation")
	if got := decodeJSON[map[string]string](t, rec)["error"]; !strings.Contains(got, "5 device invitations open") {
		t.Fatalf("the sixth invitation's answer: %q", got)
	}
	want(t, e.apiDo(http.MethodPost, "/v1/devices/invite", bob.token, nil), http.StatusCreated, "bob invites")

	// Guessing is bounded per source address (8 here, 5 of which were
	// spent above), and only there: another address still redeems.
	for range 3 {
		wantJSONError(t, e.apiFrom(guesser, http.MethodPost, "/v1/devices/redeem", "", map[string]any{"user": "alice", "device": "x", "code": wrong}), http.StatusNotFound, kindNotFound, "a guess within the budget")
	}
	before = e.b.state(t)
	rec = e.apiFrom(guesser, http.MethodPost, "/v1/devices/redeem", "", map[string]any{"user": "alice", "device": "x", "code": wrong})
	wantJSONError(t, rec, http.StatusTooManyRequests, kindLimit, "a guess over the address's budget")
	if rec.Header().Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	if !bytes.Equal(before, e.b.state(t)) {
		t.Fatal("a refused guess changed the state")
	}
	rec = e.apiDo(http.MethodPost, "/v1/devices/invite", bob.token, nil)
	want(t, rec, http.StatusCreated, "bob invites again")
	bcode := decodeJSON[map[string]any](t, rec)["code"]
	want(t, e.apiFrom("203.0.113.11:1", http.MethodPost, "/v1/devices/redeem", "", map[string]any{"user": "bob", "device": "laptop", "code": bcode}), http.StatusCreated, "bob's device from another address")
}

// TestRedeemRetry checks a redemption whose answer was lost can be retried
// with the same Idempotency-Key and token_secret (201, the same token), a
// retry with another key cannot reuse the spent invitation, and a retried
// invitation request makes a new invitation rather than repeat the first
// code.
func TestRedeemRetry(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	first := decodeJSON[map[string]any](t, e.apiDo(http.MethodPost, "/v1/devices/invite", alice.token, nil, "Idempotency-Key", "i1"))
	again := decodeJSON[map[string]any](t, e.apiDo(http.MethodPost, "/v1/devices/invite", alice.token, nil, "Idempotency-Key", "i1"))
	if first["code"] == again["code"] {
		t.Fatalf("a retried invitation repeated its code %v", first["code"])
	}
	body := map[string]any{"user": "alice", "device": "tablet", "code": first["code"], "token_secret": bytes.Repeat([]byte{7}, 32)}
	rec := e.apiDo(http.MethodPost, "/v1/devices/redeem", "", body, "Idempotency-Key", "r1")
	want(t, rec, http.StatusCreated, "redeem")
	token := decodeJSON[map[string]string](t, rec)["token"]
	rec = e.apiDo(http.MethodPost, "/v1/devices/redeem", "", body, "Idempotency-Key", "r1")
	want(t, rec, http.StatusCreated, "the retried redemption")
	if got := decodeJSON[map[string]string](t, rec)["token"]; got != token {
		t.Fatalf("the retry's token %q, want the first %q", got, token)
	}
	wantJSONError(t, e.apiDo(http.MethodPost, "/v1/devices/redeem", "", body, "Idempotency-Key", "r2"), http.StatusNotFound, kindNotFound, "another key")
	want(t, e.apiDo(http.MethodGet, "/v1/whoami", token, nil), http.StatusOK, "the token")
	// The second invitation still adds a device.
	want(t, e.apiDo(http.MethodPost, "/v1/devices/redeem", "", map[string]any{"user": "alice", "device": "tv", "code": again["code"]}), http.StatusCreated, "the retry's invitation")
}

// TestListAndCancelInvitations: the invitation's answer names its id; any
// device of the user lists the open invitations (without their codes) and
// cancels one (204), whose code then adds nothing. Another user, a bad id
// and an anonymous client are refused, and another user's invitation is
// not told apart from none.
func TestListAndCancelInvitations(t *testing.T) {
	e := newEnv(t, "a.example", func(c *Config) {
		c.RateLimits = RateLimits{Registration: Rate{Burst: -1}, Link: DefaultLinkRate, Password: Rate{Burst: -1}, Approve: Rate{Burst: -1}, Redeem: Rate{Burst: -1}}
	})
	alice := e.register("alice", "phone")
	bob := e.register("bob", "phone")
	invite := func() (id, code string) {
		t.Helper()
		rec := e.apiDo(http.MethodPost, "/v1/devices/invite", alice.token, nil)
		want(t, rec, http.StatusCreated, "alice invites")
		inv := decodeJSON[map[string]any](t, rec)
		id, _ = inv["id"].(string)
		code, _ = inv["code"].(string)
		if len(id) != 32 {
			t.Fatalf("invitation %v: want a 32-digit id", inv)
		}
		return id, code
	}
	first, firstCode := invite()
	second, _ := invite()
	list := func(token string) []string {
		t.Helper()
		rec := e.apiDo(http.MethodGet, "/v1/devices/invitations", token, nil)
		want(t, rec, http.StatusOK, "list")
		var out struct {
			Invitations []map[string]any `json:"invitations"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, inv := range out.Invitations {
			if _, leaked := inv["code"]; leaked || inv["inviter"] != "mimi://a.example/u/alice/d/phone" {
				t.Fatalf("listed invitation %v", inv)
			}
			ids = append(ids, inv["id"].(string))
		}
		return ids
	}
	if got := list(alice.token); !slices.Equal(got, []string{first, second}) {
		t.Fatalf("alice's invitations %v, want %v", got, []string{first, second})
	}
	if got := list(bob.token); len(got) != 0 {
		t.Fatalf("bob sees %v", got)
	}
	before := e.b.state(t)
	wantJSONError(t, e.apiDo(http.MethodDelete, "/v1/devices/invitations/"+first, bob.token, nil), http.StatusNotFound, kindNotFound, "bob cancels alice's invitation")
	wantJSONError(t, e.apiDo(http.MethodDelete, "/v1/devices/invitations/"+strings.Repeat("ab", 16), alice.token, nil), http.StatusNotFound, kindNotFound, "an unknown id")
	wantJSONError(t, e.apiDo(http.MethodDelete, "/v1/devices/invitations/xyz", alice.token, nil), http.StatusBadRequest, kindInvalid, "an id that is not hex")
	wantJSONError(t, e.apiDo(http.MethodDelete, "/v1/devices/invitations/"+first, "", nil), http.StatusUnauthorized, kindNotAllowed, "an anonymous client")
	if !bytes.Equal(before, e.b.state(t)) {
		t.Fatal("refused cancellations changed the state")
	}
	want(t, e.apiDo(http.MethodDelete, "/v1/devices/invitations/"+first, alice.token, nil), http.StatusNoContent, "alice cancels her first invitation")
	if got := list(alice.token); !slices.Equal(got, []string{second}) {
		t.Fatalf("after the cancellation: %v, want %v", got, []string{second})
	}
	wantJSONError(t, e.apiFrom("203.0.113.7:1", http.MethodPost, "/v1/devices/redeem", "", map[string]any{"user": "alice", "device": "tablet", "code": firstCode}), http.StatusNotFound, kindNotFound, "the cancelled invitation's code")
}
