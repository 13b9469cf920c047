package consent

import (
	"bytes"
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

func TestNewBook(t *testing.T) {
	for _, d := range []string{"", "A.example", "a..example", "a.example/u"} {
		if _, err := NewBook(d, true); err == nil {
			t.Errorf("NewBook(%q) accepted", d)
		}
	}
	b := testBook(t, false)
	if b.Domain() != dom || b.RequireConsent() || b.Limits() != DefaultLimits() {
		t.Fatalf("book %q %t %+v", b.Domain(), b.RequireConsent(), b.Limits())
	}
}

func TestSetLimits(t *testing.T) {
	b := testBook(t, true)
	bad := DefaultLimits()
	bad.MaxScopesPerPair = 0
	if err := b.SetLimits(bad); err == nil {
		t.Fatal("zero limit accepted")
	}
	bad.MaxScopesPerPair = maxLimit + 1
	if err := b.SetLimits(bad); err == nil {
		t.Fatal("huge limit accepted")
	}
	if b.Limits() != DefaultLimits() {
		t.Fatal("refused limits changed the book")
	}
}

func TestApplyLocalOutgoing(t *testing.T) {
	kp := kpMessage(t, proto.ClientURI(dom, "alice", "phone"))
	tests := []struct {
		name  string
		entry proto.ConsentEntry
		want  []Outgoing // Entry compared by encoding
	}{
		{"request to remote target", entry(request, alice, carol, nil),
			[]Outgoing{{proto.RequestConsent, domB, entry(request, alice, carol, nil)}}},
		{"request for a room", entry(request, alice, carol, in(room1)),
			[]Outgoing{{proto.RequestConsent, domB, entry(request, alice, carol, in(room1))}}},
		{"cancel to remote target", entry(cancel, alice, carol, in(room1)),
			[]Outgoing{{proto.RequestConsent, domB, entry(cancel, alice, carol, in(room1))}}},
		{"grant to remote requester", entry(grant, carol, alice, nil, kp),
			[]Outgoing{{proto.UpdateConsent, domB, entry(grant, carol, alice, nil, kp)}}},
		{"grant without KeyPackages", entry(grant, carol, alice, in(room2)),
			[]Outgoing{{proto.UpdateConsent, domB, entry(grant, carol, alice, in(room2))}}},
		{"revoke is never sent", entry(revoke, carol, alice, nil), nil},
		{"room revoke is never sent", entry(revoke, carol, alice, in(room1)), nil},
		{"request between local users", entry(request, alice, bob, nil), nil},
		{"cancel between local users", entry(cancel, alice, bob, nil), nil},
		{"grant between local users", entry(grant, bob, alice, nil, kp), nil},
		{"revoke between local users", entry(revoke, bob, alice, nil), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBook(t, true)
			out := local(t, b, tt.entry)
			if len(out) != len(tt.want) {
				t.Fatalf("outgoing %+v, want %+v", out, tt.want)
			}
			for i := range out {
				if out[i].Primitive != tt.want[i].Primitive || out[i].Domain != tt.want[i].Domain ||
					!bytes.Equal(wire.MustMarshal(&out[i].Entry), wire.MustMarshal(&tt.want[i].Entry)) {
					t.Fatalf("outgoing %+v, want %+v", out[i], tt.want[i])
				}
			}
		})
	}
}

func TestApplyLocalEffects(t *testing.T) {
	kp := kpMessage(t, proto.ClientURI(dom, "bob", "phone"))
	b := testBook(t, true)
	local(t, b, entry(request, alice, bob, nil))
	local(t, b, entry(request, alice, bob, in(room1)))
	pending, err := b.Pending(bob)
	must(t, err)
	if got, want := keys(pending), []string{key(request, alice, bob, nil), key(request, alice, bob, in(room1))}; !slices.Equal(got, want) {
		t.Fatalf("pending %v, want %v", got, want)
	}
	local(t, b, entry(cancel, alice, bob, in(room1)))
	local(t, b, entry(cancel, alice, bob, in(room2))) // nothing to cancel
	pending, _ = b.Pending(bob)
	if len(pending) != 1 {
		t.Fatalf("pending after cancel: %v", keys(pending))
	}
	local(t, b, entry(grant, alice, bob, nil, kp))
	pending, _ = b.Pending(bob)
	given, _ := b.Given(bob)
	received, _ := b.Received(alice)
	if len(pending) != 0 || !slices.Equal(keys(given), []string{key(grant, alice, bob, nil)}) ||
		!slices.Equal(keys(received), []string{key(grant, alice, bob, nil)}) || len(received[0].KeyPackages) != 1 {
		t.Fatalf("pending %v, given %v, received %v", keys(pending), keys(given), keys(received))
	}
	if got := b.Check(bob, alice, in(room1)); got != proto.UserSuccess {
		t.Fatalf("check %s", got)
	}
}

func TestApplyLocalRejects(t *testing.T) {
	welcome := &mls.Message{Version: mls.MLS10, WireFormat: mls.WireWelcome, Welcome: &mls.Welcome{}}
	x509 := kpMessage(t, proto.ClientURI(dom, "alice", "phone"))
	x509.KeyPackage.LeafNode.Credential = mls.Credential{Type: mls.CredentialX509, Certificates: [][]byte{{1}}}
	own := kpMessage(t, proto.ClientURI(dom, "alice", "phone"))
	tests := []struct {
		name  string
		entry proto.ConsentEntry
		want  error
	}{
		{"request by remote requester", entry(request, carol, alice, nil), ErrNotLocal},
		{"cancel by remote requester", entry(cancel, carol, alice, nil), ErrNotLocal},
		{"grant by remote target", entry(grant, alice, carol, nil), ErrNotLocal},
		{"revoke by remote target", entry(revoke, alice, carol, nil), ErrNotLocal},
		{"requester is target", entry(request, alice, alice, nil), ErrInvalidEntry},
		{"requester is a client", entry(request, proto.ClientURI(dom, "alice", "phone"), carol, nil), ErrInvalidEntry},
		{"target is a room", entry(request, alice, room1, nil), ErrInvalidEntry},
		{"malformed requester", entry(request, "alice", carol, nil), ErrInvalidEntry},
		{"malformed target", entry(grant, carol, "mimi://a.example/u/al ice", nil), ErrInvalidEntry},
		{"room is a user", entry(request, alice, carol, in(bob)), ErrInvalidEntry},
		{"malformed room", entry(request, alice, carol, in("mimi://hub.example/r/")), ErrInvalidEntry},
		{"unknown operation", entry(4, alice, carol, nil), ErrInvalidEntry},
		{"KeyPackages on a request", entry(request, alice, carol, nil, own), ErrInvalidEntry},
		{"KeyPackages on a revoke", entry(revoke, carol, alice, nil, own), ErrInvalidEntry},
		{"KeyPackage of another user", entry(grant, carol, alice, nil, kpMessage(t, proto.ClientURI(dom, "bob", "phone"))), ErrInvalidEntry},
		{"KeyPackage of the user, not a client", entry(grant, carol, alice, nil, kpMessage(t, alice)), ErrInvalidEntry},
		{"KeyPackage of a remote namesake", entry(grant, carol, alice, nil, kpMessage(t, proto.ClientURI(domB, "alice", "phone"))), ErrInvalidEntry},
		{"nil KeyPackage", entry(grant, carol, alice, nil, nil), ErrInvalidEntry},
		{"not a KeyPackage", entry(grant, carol, alice, nil, welcome), ErrInvalidEntry},
		{"x509 credential", entry(grant, carol, alice, nil, x509), ErrInvalidEntry},
		{"too many KeyPackages", entry(grant, carol, alice, nil, own, kpMessage(t, proto.ClientURI(dom, "alice", "laptop"))), ErrLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBook(t, true)
			l := DefaultLimits()
			l.MaxKeyPackagesPerGrant = 1
			must(t, b.SetLimits(l))
			local(t, b, entry(request, bob, alice, nil))
			before := snapshot(t, b)
			out, err := b.ApplyLocal(tt.entry)
			wantErr(t, err, tt.want)
			if out != nil {
				t.Errorf("refused operation sends %+v", out)
			}
			if !bytes.Equal(snapshot(t, b), before) {
				t.Errorf("refused operation changed the book")
			}
		})
	}
}

func TestApplyRemote(t *testing.T) {
	carolKP := kpMessage(t, proto.ClientURI(domB, "carol", "phone"))
	cindyKP := kpMessage(t, proto.ClientURI(domB, "cindy", "phone"))
	tests := []struct {
		name     string
		from     string
		entry    proto.ConsentEntry
		want     error
		pending  []string // Pending(alice) after
		received []string // Received(alice) after
	}{
		{name: "request", from: domB, entry: entry(request, carol, alice, in(room1)),
			pending: []string{key(request, carol, alice, in(room1))}},
		{name: "cancel", from: domB, entry: entry(cancel, carol, alice, nil)},
		{name: "grant", from: domB, entry: entry(grant, alice, carol, nil, carolKP),
			received: []string{key(grant, alice, carol, nil)}},
		{name: "room grant", from: domB, entry: entry(grant, alice, carol, in(room2)),
			received: []string{key(grant, alice, carol, in(room2))}},
		{name: "revoke of nothing", from: domB, entry: entry(revoke, alice, carol, nil)},
		{name: "request from another domain", from: domC, entry: entry(request, carol, alice, nil), want: ErrWrongPeer},
		{name: "cancel from another domain", from: domC, entry: entry(cancel, carol, alice, nil), want: ErrWrongPeer},
		{name: "request from own domain", from: dom, entry: entry(request, bob, alice, nil), want: ErrWrongPeer},
		{name: "grant from own domain", from: dom, entry: entry(grant, alice, bob, nil), want: ErrWrongPeer},
		{name: "request for a remote target", from: domB, entry: entry(request, carol, dave, nil), want: ErrNotLocal},
		{name: "request by the target's domain", from: domB, entry: entry(request, alice, carol, nil), want: ErrWrongPeer},
		{name: "grant from the requester's domain", from: domB, entry: entry(grant, carol, alice, nil), want: ErrWrongPeer},
		{name: "grant from another domain", from: domC, entry: entry(grant, alice, carol, nil), want: ErrWrongPeer},
		{name: "revoke from another domain", from: domC, entry: entry(revoke, alice, carol, nil), want: ErrWrongPeer},
		{name: "grant for a remote requester", from: domB, entry: entry(grant, dave, carol, nil), want: ErrNotLocal},
		{name: "grant with another user's KeyPackage", from: domB, entry: entry(grant, alice, carol, nil, cindyKP), want: ErrInvalidEntry},
		{name: "malformed", from: domB, entry: entry(request, carol, "mimi://a.example/u/", nil), want: ErrInvalidEntry},
		{name: "self", from: domB, entry: entry(grant, carol, carol, nil), want: ErrInvalidEntry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBook(t, true)
			before := snapshot(t, b)
			err := b.ApplyRemote(tt.from, tt.entry)
			if tt.want != nil {
				wantErr(t, err, tt.want)
				if !bytes.Equal(snapshot(t, b), before) {
					t.Errorf("refused operation changed the book")
				}
				return
			}
			must(t, err)
			pending, err := b.Pending(alice)
			must(t, err)
			received, err := b.Received(alice)
			must(t, err)
			if !slices.Equal(keys(pending), tt.pending) || !slices.Equal(keys(received), tt.received) {
				t.Fatalf("pending %v received %v, want %v %v", keys(pending), keys(received), tt.pending, tt.received)
			}
		})
	}
}

func TestRemoteRequestCancel(t *testing.T) {
	b := testBook(t, true)
	must(t, b.ApplyRemote(domB, entry(request, carol, alice, nil)))
	must(t, b.ApplyRemote(domB, entry(request, carol, alice, in(room1))))
	must(t, b.ApplyRemote(domB, entry(request, carol, alice, in(room1)))) // again: acknowledged, one record
	must(t, b.ApplyRemote(domB, entry(cancel, carol, alice, nil)))        // cancels the any-room request only
	pending, _ := b.Pending(alice)
	if !slices.Equal(keys(pending), []string{key(request, carol, alice, in(room1))}) {
		t.Fatalf("pending %v", keys(pending))
	}
}

func TestReceivedGrants(t *testing.T) {
	kp1 := kpMessage(t, proto.ClientURI(domB, "carol", "phone"))
	kp2 := kpMessage(t, proto.ClientURI(domB, "carol", "laptop"))
	b := testBook(t, true)
	steps := []struct {
		from  string
		entry proto.ConsentEntry
		want  []string
	}{
		{domB, entry(grant, alice, carol, in(room1), kp1), []string{key(grant, alice, carol, in(room1))}},
		{domB, entry(grant, alice, carol, in(room2)), []string{key(grant, alice, carol, in(room1)), key(grant, alice, carol, in(room2))}},
		// A grant for any room replaces the target's room grants.
		{domB, entry(grant, alice, carol, nil, kp2), []string{key(grant, alice, carol, nil)}},
		{domB, entry(grant, alice, carol, in(room1)), []string{key(grant, alice, carol, nil), key(grant, alice, carol, in(room1))}},
		{domC, entry(grant, alice, dave, nil), []string{key(grant, alice, carol, nil), key(grant, alice, carol, in(room1)), key(grant, alice, dave, nil)}},
		// A revoke that arrives anyway drops what it covers.
		{domB, entry(revoke, alice, carol, in(room1)), []string{key(grant, alice, carol, nil), key(grant, alice, dave, nil)}},
		{domB, entry(revoke, alice, carol, nil), []string{key(grant, alice, dave, nil)}},
	}
	for i, s := range steps {
		must(t, b.ApplyRemote(s.from, s.entry))
		got, err := b.Received(alice)
		must(t, err)
		if !slices.Equal(keys(got), s.want) {
			t.Fatalf("step %d: received %v, want %v", i, keys(got), s.want)
		}
		if i == 2 && (len(got[0].KeyPackages) != 1 || !bytes.Equal(wire.MustMarshal(got[0].KeyPackages[0]), wire.MustMarshal(kp2))) {
			t.Fatalf("grant's KeyPackages not kept")
		}
	}
}

// TestCheck covers the precedence rules, for both defaults.
func TestCheck(t *testing.T) {
	type decision struct {
		op   proto.ConsentOperation
		room *proto.URI
	}
	type check struct {
		room *proto.URI
		want proto.KeyMaterialUserCode
	}
	const (
		ok     = proto.UserSuccess
		no     = proto.UserNoConsent
		noRoom = proto.UserNoConsentForThisRoom
	)
	tests := []struct {
		name      string
		require   bool
		decisions []decision
		checks    []check
	}{
		{"nothing, consent required", true, nil, []check{{nil, no}, {in(room1), no}}},
		{"nothing, consent by default", false, nil, []check{{nil, ok}, {in(room1), ok}}},
		{"any-room grant", true, []decision{{grant, nil}}, []check{{nil, ok}, {in(room1), ok}}},
		{"room grant", true, []decision{{grant, in(room1)}}, []check{{in(room1), ok}, {in(room2), noRoom}, {nil, noRoom}}},
		{"two room grants", true, []decision{{grant, in(room1)}, {grant, in(room3)}}, []check{{in(room3), ok}, {in(room2), noRoom}}},
		{"later revoke, same room", true, []decision{{grant, in(room1)}, {revoke, in(room1)}}, []check{{in(room1), no}, {nil, no}}},
		{"later grant, same room", true, []decision{{revoke, in(room1)}, {grant, in(room1)}}, []check{{in(room1), ok}}},
		{"later revoke, any room", true, []decision{{grant, nil}, {revoke, nil}}, []check{{nil, no}, {in(room1), no}}},
		{"any-room revoke overrides room grants", true, []decision{{grant, in(room1)}, {grant, in(room2)}, {revoke, nil}},
			[]check{{in(room1), no}, {in(room2), no}, {nil, no}}},
		{"room revoke only that room", true, []decision{{grant, nil}, {revoke, in(room1)}},
			[]check{{in(room1), noRoom}, {in(room2), ok}, {nil, ok}}},
		{"room revoke beside another room grant", true, []decision{{grant, in(room2)}, {revoke, in(room1)}},
			[]check{{in(room1), noRoom}, {in(room2), ok}}},
		{"room grant after any-room revoke", true, []decision{{revoke, nil}, {grant, in(room1)}},
			[]check{{in(room1), ok}, {in(room2), noRoom}, {nil, noRoom}}},
		{"any-room grant overrides room revokes", true, []decision{{revoke, in(room1)}, {grant, nil}}, []check{{in(room1), ok}}},
		{"default consent, any-room revoke", false, []decision{{revoke, nil}}, []check{{nil, no}, {in(room1), no}}},
		{"default consent, room revoke", false, []decision{{revoke, in(room1)}}, []check{{in(room1), noRoom}, {in(room2), ok}, {nil, ok}}},
		{"default consent, revoke then room grant", false, []decision{{revoke, nil}, {grant, in(room1)}}, []check{{in(room1), ok}, {in(room2), noRoom}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBook(t, tt.require)
			for _, d := range tt.decisions {
				local(t, b, entry(d.op, carol, alice, d.room))
			}
			for _, c := range tt.checks {
				if got := b.Check(alice, carol, c.room); got != c.want {
					t.Errorf("Check(room %v) = %s, want %s", c.room, got, c.want)
				}
				// Decisions about carol say nothing about cindy.
				if got, want := b.Check(alice, cindy, c.room), map[bool]proto.KeyMaterialUserCode{true: no, false: ok}[tt.require]; got != want {
					t.Errorf("Check(cindy, room %v) = %s, want %s", c.room, got, want)
				}
			}
		})
	}
}

func TestCheckEdges(t *testing.T) {
	b := testBook(t, false)
	tests := []struct {
		name              string
		target, requester proto.URI
		room              *proto.URI
		want              proto.KeyMaterialUserCode
	}{
		{"self, consent by default", alice, alice, in(room1), proto.UserSuccess},
		{"remote target", carol, alice, nil, proto.UserNoConsent},
		{"target is a client", proto.ClientURI(dom, "alice", "phone"), carol, nil, proto.UserNoConsent},
		{"malformed requester", alice, "carol", nil, proto.UserNoConsent},
		{"requester is a client", alice, proto.ClientURI(domB, "carol", "x"), nil, proto.UserNoConsent},
		{"room is a user", alice, carol, in(bob), proto.UserNoConsent},
	}
	for _, tt := range tests {
		if got := b.Check(tt.target, tt.requester, tt.room); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
	strict := testBook(t, true)
	local(t, strict, entry(revoke, bob, alice, nil))
	if got := strict.Check(alice, alice, nil); got != proto.UserSuccess {
		t.Errorf("self, consent required: %s", got)
	}
}

func TestRevokeIsPrivate(t *testing.T) {
	b := testBook(t, true)
	if out := local(t, b, entry(grant, carol, alice, nil)); len(out) != 1 {
		t.Fatalf("grant sends %d messages", len(out))
	}
	if out := local(t, b, entry(revoke, carol, alice, nil)); out != nil {
		t.Fatalf("revoke sends %+v", out)
	}
	// Between local users, the requester's view keeps the grant too.
	local(t, b, entry(grant, alice, bob, in(room1)))
	local(t, b, entry(revoke, alice, bob, nil))
	received, _ := b.Received(alice)
	if !slices.Equal(keys(received), []string{key(grant, alice, bob, in(room1))}) {
		t.Fatalf("received %v", keys(received))
	}
	if got := b.Check(bob, alice, in(room1)); got != proto.UserNoConsent {
		t.Fatalf("check after revoke: %s", got)
	}
}

func TestRefusedRequestsDropped(t *testing.T) {
	b := testBook(t, true)
	local(t, b, entry(revoke, carol, alice, nil))
	local(t, b, entry(revoke, cindy, alice, in(room1)))
	for _, e := range []proto.ConsentEntry{
		entry(request, carol, alice, nil),
		entry(request, carol, alice, in(room2)),
		entry(request, cindy, alice, in(room1)),
		entry(request, cindy, alice, in(room2)),
		entry(request, cindy, alice, nil),
	} {
		must(t, b.ApplyRemote(domB, e)) // acknowledged either way
	}
	local(t, b, entry(revoke, bob, alice, nil))
	local(t, b, entry(request, bob, alice, nil))
	pending, _ := b.Pending(alice)
	want := []string{key(request, cindy, alice, nil), key(request, cindy, alice, in(room2))}
	if !slices.Equal(keys(pending), want) {
		t.Fatalf("pending %v, want %v", keys(pending), want)
	}
}

func TestDecisionsAnswerRequests(t *testing.T) {
	b := testBook(t, true)
	for _, e := range []proto.ConsentEntry{
		entry(request, carol, alice, nil),
		entry(request, carol, alice, in(room1)),
		entry(request, carol, alice, in(room2)),
		entry(request, cindy, alice, nil),
	} {
		must(t, b.ApplyRemote(domB, e))
	}
	local(t, b, entry(grant, carol, alice, in(room1)))
	pending, _ := b.Pending(alice)
	want := []string{key(request, carol, alice, nil), key(request, carol, alice, in(room2)), key(request, cindy, alice, nil)}
	if !slices.Equal(keys(pending), want) {
		t.Fatalf("after room grant: %v, want %v", keys(pending), want)
	}
	local(t, b, entry(revoke, carol, alice, nil))
	pending, _ = b.Pending(alice)
	if want := []string{key(request, cindy, alice, nil)}; !slices.Equal(keys(pending), want) {
		t.Fatalf("after any-room revoke: %v, want %v", keys(pending), want)
	}
	given, _ := b.Given(alice)
	if want := []string{key(revoke, carol, alice, nil)}; !slices.Equal(keys(given), want) {
		t.Fatalf("given %v, want %v", keys(given), want)
	}
}

func TestQueries(t *testing.T) {
	b := testBook(t, true)
	must(t, b.ApplyRemote(domC, entry(request, dave, alice, in(room1))))
	must(t, b.ApplyRemote(domB, entry(request, carol, alice, in(room2))))
	must(t, b.ApplyRemote(domB, entry(request, carol, alice, nil)))
	pending, err := b.Pending(alice)
	must(t, err)
	want := []string{key(request, carol, alice, nil), key(request, carol, alice, in(room2)), key(request, dave, alice, in(room1))}
	if !slices.Equal(keys(pending), want) {
		t.Fatalf("pending %v, want %v", keys(pending), want)
	}
	local(t, b, entry(grant, dave, alice, in(room3)))
	local(t, b, entry(revoke, carol, alice, in(room1)))
	given, _ := b.Given(alice)
	if want := []string{key(revoke, carol, alice, in(room1)), key(grant, dave, alice, in(room3))}; !slices.Equal(keys(given), want) {
		t.Fatalf("given %v, want %v", keys(given), want)
	}
	for _, q := range []func(proto.URI) ([]proto.ConsentEntry, error){b.Pending, b.Given, b.Received} {
		_, err := q(carol)
		wantErr(t, err, ErrNotLocal)
		_, err = q(room1)
		wantErr(t, err, ErrInvalidEntry)
	}
	// Received returns copies.
	must(t, b.ApplyRemote(domB, entry(grant, alice, carol, nil, kpMessage(t, proto.ClientURI(domB, "carol", "x")))))
	got, _ := b.Received(alice)
	got[0].KeyPackages[0].KeyPackage.InitKey[0] ^= 1
	*got[0].KeyPackages[0] = mls.Message{}
	again, _ := b.Received(alice)
	if again[0].KeyPackages[0].KeyPackage == nil || again[0].KeyPackages[0].KeyPackage.Validate(1_700_000_000) != nil {
		t.Fatalf("changing a returned grant changed the book")
	}
}

func TestRemoveUser(t *testing.T) {
	b := testBook(t, true)
	must(t, b.ApplyRemote(domB, entry(request, carol, alice, nil)))
	must(t, b.ApplyRemote(domB, entry(grant, alice, carol, nil)))
	local(t, b, entry(grant, carol, alice, nil))
	local(t, b, entry(grant, alice, bob, nil)) // bob's decision about alice, alice's received grant
	local(t, b, entry(request, alice, bob, in(room1)))
	local(t, b, entry(grant, bob, alice, nil)) // alice's decision about bob, bob's received grant
	must(t, b.ApplyRemote(domB, entry(request, carol, bob, nil)))

	must(t, b.RemoveUser(alice))
	for _, q := range []func(proto.URI) ([]proto.ConsentEntry, error){b.Pending, b.Given, b.Received} {
		if got, _ := q(alice); len(got) != 0 {
			t.Errorf("alice still has %v", keys(got))
		}
	}
	pending, _ := b.Pending(bob)
	given, _ := b.Given(bob)
	received, _ := b.Received(bob)
	if !slices.Equal(keys(pending), []string{key(request, carol, bob, nil)}) || len(given) != 0 || len(received) != 0 {
		t.Fatalf("bob: pending %v given %v received %v", keys(pending), keys(given), keys(received))
	}
	if b.pending.peers[domB] != 1 || b.received.peers[domB] != 0 {
		t.Fatalf("peer counts %v %v", b.pending.peers, b.received.peers)
	}
	wantErr(t, b.RemoveUser(carol), ErrNotLocal)
	wantErr(t, b.RemoveUser("x"), ErrInvalidEntry)
}

func TestLimits(t *testing.T) {
	small := Limits{MaxPendingPerTarget: 2, MaxScopesPerPair: 2, MaxDecisionsPerTarget: 2,
		MaxGrantsPerRequester: 2, MaxRecordsPerPeer: 3, MaxKeyPackagesPerGrant: 1}
	type op struct {
		from  string // "" for ApplyLocal
		entry proto.ConsentEntry
	}
	tests := []struct {
		name   string
		setup  []op
		ok     []op // still accepted when full: they add nothing
		refuse op
	}{
		{"pending per target",
			[]op{{domB, entry(request, carol, alice, nil)}, {domB, entry(request, cindy, alice, nil)}},
			[]op{{domB, entry(request, carol, alice, nil)}, {"", entry(request, alice, carol, nil)}},
			// A full table takes a request only from one holding fewer
			// than the requester holding the most (TestPendingFloodKeepsOthers).
			op{domB, entry(request, carol, alice, in(room1))}},
		{"pending scopes per pair",
			[]op{{domB, entry(request, carol, alice, nil)}, {domB, entry(request, carol, alice, in(room1))}},
			[]op{{domB, entry(request, carol, bob, in(room2))}},
			op{domB, entry(request, carol, alice, in(room2))}},
		{"decision scopes per pair",
			[]op{{"", entry(grant, carol, alice, in(room1))}, {"", entry(revoke, carol, alice, in(room2))}},
			[]op{{"", entry(grant, carol, alice, in(room2))}},
			op{"", entry(grant, carol, alice, in(room3))}},
		{"decisions per target",
			[]op{{"", entry(grant, carol, alice, nil)}, {"", entry(grant, cindy, alice, nil)}},
			[]op{{"", entry(revoke, carol, alice, nil)}, {"", entry(grant, dave, bob, nil)}},
			op{"", entry(grant, dave, alice, nil)}},
		{"received scopes per pair",
			[]op{{domB, entry(grant, alice, carol, in(room1))}, {domB, entry(grant, alice, carol, in(room2))}},
			[]op{{domB, entry(grant, alice, carol, in(room1))}},
			op{domB, entry(grant, alice, carol, in(room3))}},
		{"grants per requester",
			[]op{{domB, entry(grant, alice, carol, nil)}, {domC, entry(grant, alice, dave, nil)}},
			[]op{{domB, entry(grant, alice, carol, nil)}, {domB, entry(grant, bob, cindy, nil)}},
			op{domB, entry(grant, alice, carol, in(room1))}},
		{"grants per requester, local grant",
			[]op{{domB, entry(grant, alice, carol, nil)}, {"", entry(grant, alice, bob, nil)}},
			nil,
			// A full table takes a grant only from a target holding fewer
			// than the one holding the most (TestReceivedFloodKeepsOthers).
			op{"", entry(grant, alice, bob, in(room1))}},
		{"records per peer",
			[]op{{domB, entry(request, carol, alice, nil)}, {domB, entry(request, cindy, bob, nil)}, {domB, entry(grant, alice, carol, nil)}},
			[]op{{domC, entry(request, dave, alice, nil)}, {domB, entry(grant, alice, carol, nil)}},
			op{domB, entry(grant, bob, cindy, nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBook(t, true)
			must(t, b.SetLimits(small))
			apply := func(o op) error {
				if o.from == "" {
					_, err := b.ApplyLocal(o.entry)
					return err
				}
				return b.ApplyRemote(o.from, o.entry)
			}
			for _, o := range tt.setup {
				must(t, apply(o))
			}
			for _, o := range tt.ok {
				must(t, apply(o))
			}
			before := snapshot(t, b)
			wantErr(t, apply(tt.refuse), ErrLimit)
			if !bytes.Equal(snapshot(t, b), before) {
				t.Fatalf("refused operation changed the book")
			}
		})
	}
}
