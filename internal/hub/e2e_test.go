package hub_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

const (
	domainA = "a.example"
	domainB = "b.example"
	domainC = "c.example"
	domainD = "d.example"
)

// TestSeedScenarios plays every scenario of the seed's section 6
// (draft-barnes-mimi-protocol, "ABCs of the Protocol"; step names carry the
// section numbers of its text rendering) across four real
// providers on loopback, each with its own Raft node and data directory,
// mutual TLS between them and real MLS clients on their own provider's
// client API. a.example hosts the room; d.example requires consent for
// claims. Between the seed's steps, a follower provider (c.example) and
// then the hub itself restart while the room goes on.
//
// Every step checks the transcript of every client (each message, commit,
// proposal, join, removal and consent notice, in the order its stream
// delivered them), the hub's description of the room (epoch, members,
// providers, participants and roles) and the MLS view of every member.
func TestSeedScenarios(t *testing.T) {
	net := testutil.StartNetwork(t, testutil.Options{Configure: func(cfg *hub.Config) {
		cfg.RequireConsent = cfg.Domain == domainD
	}}, domainA, domainB, domainC, domainD)
	a, b, c, d := net.Provider(domainA), net.Provider(domainB), net.Provider(domainC), net.Provider(domainD)

	// 6.1 Dramatis personae: Bob has two clients (Bob1, Bob2), Cathy gets
	// a second one in 6.7. Cathy publishes a profile for identifier queries.
	alice := newParty(t, a, "alice", "phone", nil)
	bob1 := newParty(t, b, "bob", "laptop", nil)
	bob2 := linkParty(t, bob1, "phone")
	cathy1 := newParty(t, c, "cathy", "laptop", []proto.ProfileField{
		{Source: proto.FieldVCardField, Name: "FN", Value: []byte("Cathy Carter")},
		{Source: proto.FieldVCardField, Name: "EMAIL", Value: []byte("cathy@c.example")},
	})
	doug := newParty(t, d, "doug", "phone", nil)
	var cathy2 *party
	w := newWorld(alice, bob1, bob2, cathy1, doug)
	owner := roles([]proto.Role{proto.RoleOwner, proto.RoleAdmin, proto.RoleRegularUser})
	regular := roles([]proto.Role{proto.RoleRegularUser})
	admin := roles([]proto.Role{proto.RoleRegularUser, proto.RoleAdmin})

	step(t, "6.2 Alice creates a room", func(t *testing.T) {
		var err error
		w.room, err = alice.m.CreateRoom(opCtx(t), "room1", proto.DefaultPolicy())
		must(t, err, "create room")
		if w.room != proto.RoomURI(domainA, "room1") {
			t.Fatalf("room %s", w.room)
		}
		w.join(alice)
		checkRoom(t, alice, w.room, roomWant{epoch: 0, members: 1, providers: []string{domainA}, participants: map[string]string{"alice": owner}})
	})

	step(t, "6.3.1-2 Alice adds Bob", func(t *testing.T) {
		// Alice's client claims Bob's KeyPackages through a.example, which
		// asks b.example; the Welcome reaches Bob's clients through the
		// fanout to b.example.
		must(t, alice.m.AddUsers(opCtx(t), w.room, []proto.UserRoles{userRoles(bob1, proto.RoleRegularUser)}), "add Bob")
		w.expectOnly([]*party{bob1, bob2}, "joined e1")
		w.join(bob1, bob2)
		w.check(t)
		checkRoom(t, alice, w.room, roomWant{epoch: 1, members: 3, providers: []string{domainA, domainB},
			participants: map[string]string{"alice": owner, "bob": regular}})
		if got := w.sameMembers(t); len(got) != 3 {
			t.Fatalf("members %v", got)
		}
		w.sameEpoch(t, 1)
	})

	step(t, "6.3.3 Alice and Bob exchange messages", func(t *testing.T) {
		w.say(t, alice, "hi Bob")
		w.say(t, bob1, "hi Alice")
		w.say(t, bob2, "and hello from my phone")
		w.check(t)
	})

	step(t, "6.4 Alice makes Bob a room administrator", func(t *testing.T) {
		must(t, alice.m.SetRoles(opCtx(t), w.room, bob1.m.User(), []proto.Role{proto.RoleRegularUser, proto.RoleAdmin}), "promote Bob")
		w.expect("commit alice/phone e2 ~@bob["+admin+"]", alice)
		w.check(t)
		checkRoom(t, alice, w.room, roomWant{epoch: 2, members: 3, providers: []string{domainA, domainB},
			participants: map[string]string{"alice": owner, "bob": admin}})
	})

	step(t, "6.8 consent for one room (d.example requires consent)", func(t *testing.T) {
		// Before Doug consents, d.example refuses Bob's claim (relayed by
		// the hub), so Bob cannot add him; nothing changes in the room.
		err := bob1.m.AddUsers(opCtx(t), w.room, []proto.UserRoles{userRoles(doug, proto.RoleRegularUser)})
		var kme *client.KeyMaterialError
		if !errors.As(err, &kme) || len(kme.Users) != 1 || kme.Users[0].Status != proto.UserNoConsent {
			t.Fatalf("adding Doug without consent: %v", err)
		}
		checkRoom(t, alice, w.room, roomWant{epoch: 2, members: 3, providers: []string{domainA, domainB},
			participants: map[string]string{"alice": owner, "bob": admin}})

		// Bob asks Doug for consent to add him to room1: b.example sends
		// requestConsent to d.example, which tells Doug.
		room := w.room
		must(t, bob1.m.API().Consent(opCtx(t), &proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: bob1.m.User(), Target: doug.m.User(), Room: &room}), "Bob requests consent")
		request := "consent request bob doug room1"
		doug.see(t, request)
		if l := consentLists(t, doug); !containsConsent(l.Pending, request) {
			t.Fatalf("Doug's pending requests %+v", l.Pending)
		}
		// A request can be cancelled: Bob asks for room2 and withdraws.
		// The cancel is not announced to Doug, but his provider forgets
		// the request.
		room2 := proto.RoomURI(domainA, "room2")
		must(t, bob1.m.API().Consent(opCtx(t), &proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: bob1.m.User(), Target: doug.m.User(), Room: &room2}), "Bob requests consent for room2")
		doug.see(t, "consent request bob doug room2")
		must(t, bob1.m.API().Consent(opCtx(t), &proto.ConsentEntry{Operation: proto.ConsentCancel, Requester: bob1.m.User(), Target: doug.m.User(), Room: &room2}), "Bob cancels")
		d.WaitState(t.Context(), t, "the request for room2 cancelled", func(s *fsm.State) bool {
			pending, err := s.ConsentPending(doug.m.User())
			return err == nil && !containsConsent(pending, "consent request bob doug room2") && containsConsent(pending, request)
		})

		// Doug grants it for room1 only: d.example sends updateConsent to
		// b.example, which tells both of Bob's clients.
		must(t, doug.m.API().Consent(opCtx(t), &proto.ConsentEntry{Operation: proto.ConsentGrant, Requester: bob1.m.User(), Target: doug.m.User(), Room: &room}), "Doug grants consent")
		grant := "consent grant bob doug room1"
		bob1.see(t, grant)
		bob2.see(t, grant)
		if l := consentLists(t, bob1); !containsConsent(l.Received, grant) {
			t.Fatalf("Bob's received grants %+v", l.Received)
		}
		if l := consentLists(t, doug); !containsConsent(l.Given, grant) || containsConsent(l.Pending, request) {
			t.Fatalf("Doug's consent lists after granting: %+v", l)
		}
		// The grant is for room1: a claim naming no room is refused as
		// noConsentForThisRoom (and spends nothing).
		resp, err := bob1.m.API().ClaimKeyMaterial(opCtx(t), client.ClaimRequest{Users: []proto.URI{doug.m.User()}})
		must(t, err, "claim without a room")
		if len(resp.Users) != 1 || resp.Users[0].Status != proto.UserNoConsentForThisRoom || len(resp.Users[0].Clients) != 0 {
			t.Fatalf("a claim naming no room: %+v", resp.Users)
		}
		w.check(t)
	})

	step(t, "6.4 Bob adds Cathy and Doug", func(t *testing.T) {
		// Bob's provider claims through the hub, which relays to c.example
		// and d.example and routes the Welcome to them; Bob's commit goes
		// b.example -> a.example (updateRoom).
		must(t, bob1.m.AddUsers(opCtx(t), w.room, []proto.UserRoles{
			userRoles(cathy1, proto.RoleRegularUser, proto.RoleAdmin),
			userRoles(doug, proto.RoleRegularUser),
		}), "Bob adds Cathy and Doug")
		w.expect("commit bob/laptop e3 +@cathy["+admin+"] +@doug["+regular+"] +cathy/laptop +doug/phone", bob1)
		w.expectOnly([]*party{cathy1, doug}, "joined e3")
		w.join(cathy1, doug)
		w.check(t)
		checkRoom(t, alice, w.room, roomWant{epoch: 3, members: 5, providers: []string{domainA, domainB, domainC, domainD},
			participants: map[string]string{"alice": owner, "bob": admin, "cathy": admin, "doug": regular}})
		if got := w.sameMembers(t); len(got) != 5 {
			t.Fatalf("members %v", got)
		}
		w.sameEpoch(t, 3)
	})

	step(t, "everyone talks, seen by all in hub order", func(t *testing.T) {
		for _, p := range w.in {
			w.say(t, p, "hello from "+p.name)
		}
		w.check(t)

		// A burst: everyone sends at once. Whatever order the hub picks,
		// every client must receive every other client's messages, each
		// sender's in its order, and any two clients the messages they
		// both receive in the same order.
		const perParty = 3
		var wg sync.WaitGroup
		ctx := opCtx(t)
		errs := make(chan error, len(w.in)*perParty)
		for _, p := range w.in {
			wg.Go(func() {
				for i := range perParty {
					if err := p.m.Send(ctx, w.room, []byte(burstText(p, i))); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("burst: %v", err)
		}
		got := map[*party][]string{}
		for _, p := range w.in {
			got[p], _ = p.await(t, perParty*(len(w.in)-1))
			var want []string
			for _, q := range w.in {
				for i := range perParty {
					if q != p {
						want = append(want, msg(q, burstText(q, i)))
					}
				}
			}
			if !slices.Equal(slices.Sorted(slices.Values(got[p])), slices.Sorted(slices.Values(want))) {
				t.Fatalf("%s received %q, want (in some order) %q", p, got[p], want)
			}
			for _, q := range w.in {
				if q == p {
					continue
				}
				// Burst texts sort in their sending order.
				if from := filter(got[p], func(l string) bool { return isFrom(l, q) }); !slices.IsSorted(from) {
					t.Fatalf("%s received %s's messages out of order: %q", p, q, from)
				}
			}
		}
		for _, p := range w.in {
			for _, q := range w.in {
				inP := filter(got[p], func(l string) bool { return slices.Contains(got[q], l) })
				inQ := filter(got[q], func(l string) bool { return slices.Contains(got[p], l) })
				if !slices.Equal(inP, inQ) {
					t.Fatalf("%s and %s received messages in different orders:\n%q\n%q", p, q, inP, inQ)
				}
			}
		}
		w.check(t)
	})

	step(t, "6.10 an abuse report reaches the hub", func(t *testing.T) {
		w.say(t, doug, "buy cheap watches")
		// Cathy reports Doug's message from her stream: c.example relays
		// reportAbuse to the hub, which verifies the disclosed message.
		ev := cathy1.see(t, w.want[cathy1]...)
		delete(w.want, cathy1)
		var before int
		a.Read(t, func(s *fsm.State) { before = len(s.Reports()) })
		must(t, cathy1.m.ReportAbuse(opCtx(t), &ev[0], proto.AbuseSpam, "unsolicited ads"), "report abuse")
		a.Read(t, func(s *fsm.State) {
			reports := s.Reports()
			if len(reports) != before+1 {
				t.Fatalf("%d reports at the hub, want %d", len(reports), before+1)
			}
			r := reports[len(reports)-1]
			if r.Room != w.room || r.Body.ReportingUser != cathy1.m.User() || r.Body.AllegedAbuser != doug.m.User() ||
				r.Body.Reason != proto.AbuseSpam || r.Body.Note != "unsolicited ads" || r.Verified != 1 {
				t.Fatalf("report %+v (body %+v)", r, r.Body)
			}
		})
		// Cathy cannot report in another user's name.
		report := &proto.AbuseReport{ReportingUser: alice.m.User(), AllegedAbuser: doug.m.User(), GroupID: []byte(w.room), Reason: proto.AbuseSpam}
		if err := cathy1.m.API().ReportAbuse(opCtx(t), w.room, report); !isStatus(err, 403) {
			t.Fatalf("reporting as Alice: %v", err)
		}
		w.check(t)
	})

	step(t, "6.12 identifier queries across providers", func(t *testing.T) {
		for _, q := range []struct {
			name   string
			from   *party
			domain string
			req    proto.IdentifierRequest
			code   proto.IdentifierQueryCode
			uris   []proto.URI
		}{
			{"email at c.example", alice, domainC, proto.IdentifierRequest{Type: proto.SearchEmail, Value: "CATHY@c.example"}, proto.QuerySuccess, []proto.URI{cathy1.m.User()}},
			{"partial name at c.example", bob1, domainC, proto.IdentifierRequest{Type: proto.SearchPartialName, Value: "carter"}, proto.QuerySuccess, []proto.URI{cathy1.m.User()}},
			{"handle at d.example", bob2, domainD, proto.IdentifierRequest{Type: proto.SearchHandle, Value: "doug"}, proto.QuerySuccess, []proto.URI{doug.m.User()}},
			{"handle at the hub", doug, domainA, proto.IdentifierRequest{Type: proto.SearchHandle, Value: "alice"}, proto.QuerySuccess, []proto.URI{alice.m.User()}},
			{"local query", cathy1, domainC, proto.IdentifierRequest{Type: proto.SearchHandle, Value: "cathy"}, proto.QuerySuccess, []proto.URI{cathy1.m.User()}},
			{"unknown user", alice, domainB, proto.IdentifierRequest{Type: proto.SearchHandle, Value: "nobody"}, proto.QueryNotFound, nil},
			{"vCard field without a field name", alice, domainC, proto.IdentifierRequest{Type: proto.SearchVCardField, Value: "x"}, proto.QueryUnsupportedField, nil},
		} {
			t.Run(q.name, func(t *testing.T) {
				resp, err := q.from.m.API().Identifiers(opCtx(t), q.domain, &q.req)
				must(t, err, "identifier query")
				if resp.Code != q.code || !slices.Equal(resp.URIs, q.uris) {
					t.Fatalf("%s asks %s: %s %v, want %s %v", q.from, q.domain, resp.Code, resp.URIs, q.code, q.uris)
				}
				if q.code == proto.QuerySuccess && (len(resp.Profiles) != 1 || resp.Profiles[0].URI != q.uris[0]) {
					t.Fatalf("profiles %+v", resp.Profiles)
				}
			})
		}
	})

	step(t, "a follower provider restarts while the room goes on", func(t *testing.T) {
		c.Stop(t)
		// Messages and a commit while c.example is down: the hub queues
		// c.example's fanout.
		w.say(t, alice, "c is down")
		w.say(t, bob1, "still talking")
		// A committer reads its stream first: its client keeps no secrets
		// of past epochs, so messages it has not read when its commit is
		// accepted are lost to it.
		w.check(t, cathy1)
		must(t, alice.m.CommitPending(opCtx(t), w.room), "Alice commits")
		w.expect("commit alice/phone e4", alice)
		w.check(t, cathy1) // the others process the commit before sending
		w.say(t, doug, "after the commit")
		a.WaitState(t.Context(), t, "four items queued for c.example", func(s *fsm.State) bool { return s.OutboxDepth()[domainC].Items == 4 })
		w.check(t, cathy1)

		c.Start(t)
		// Cathy gets every queued message and the commit, in order.
		cathy1.see(t, w.want[cathy1]...)
		delete(w.want, cathy1)
		a.WaitState(t.Context(), t, "c.example's queue drained", func(s *fsm.State) bool { return s.OutboxDepth()[domainC].Items == 0 })
		w.say(t, cathy1, "back after the restart")
		w.check(t)
		w.sameEpoch(t, 4)
	})

	step(t, "the hub restarts while b.example is down", func(t *testing.T) {
		b.Stop(t)
		w.say(t, alice, "b is down")
		w.say(t, cathy1, "so we wait")
		w.check(t, bob1, bob2)
		must(t, alice.m.CommitPending(opCtx(t), w.room), "Alice commits")
		w.expect("commit alice/phone e5", alice)
		w.check(t, bob1, bob2)
		w.say(t, doug, "queued for Bob")
		a.WaitState(t.Context(), t, "four items queued for b.example", func(s *fsm.State) bool { return s.OutboxDepth()[domainB].Items == 4 })
		w.check(t, bob1, bob2)
		var before fsm.RoomInfo
		a.Read(t, func(s *fsm.State) { before, _ = s.Room(w.room) })

		a.Stop(t)
		a.Start(t)
		// Accepted commits and messages survived, and so did the outbox.
		a.Read(t, func(s *fsm.State) {
			after, ok := s.Room(w.room)
			if !ok || after.Epoch != 5 || after.Epoch != before.Epoch || after.Sequence != before.Sequence || after.Members != before.Members {
				t.Fatalf("after the restart the room is %+v, before it was %+v", after, before)
			}
			if n := s.OutboxDepth()[domainB].Items; n != 4 {
				t.Fatalf("%d items queued for b.example after the restart, want 4", n)
			}
		})
		b.Start(t)
		bob1.see(t, w.want[bob1]...)
		bob2.see(t, w.want[bob2]...)
		delete(w.want, bob1)
		delete(w.want, bob2)
		a.WaitState(t.Context(), t, "b.example's queue drained", func(s *fsm.State) bool { return s.OutboxDepth()[domainB].Items == 0 })

		// The room goes on from epoch 5.
		must(t, bob1.m.CommitPending(opCtx(t), w.room), "Bob commits after the restart")
		w.expect("commit bob/laptop e6", bob1)
		w.check(t)
		w.say(t, alice, "the hub is back")
		w.check(t)
		w.sameEpoch(t, 6)
		checkRoom(t, alice, w.room, roomWant{epoch: 6, members: 5, providers: []string{domainA, domainB, domainC, domainD},
			participants: map[string]string{"alice": owner, "bob": admin, "cathy": admin, "doug": regular}})
	})

	step(t, "a regular user may not remove or promote", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			act  func() error
		}{
			{"remove Cathy", func() error { return doug.m.RemoveUser(opCtx(t), w.room, cathy1.m.User()) }},
			{"promote himself", func() error {
				return doug.m.SetRoles(opCtx(t), w.room, doug.m.User(), []proto.Role{proto.RoleRegularUser, proto.RoleAdmin})
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var re *client.RefusedError
				if err := tc.act(); !errors.As(err, &re) || re.Code != proto.UpdateNotAllowed {
					t.Fatalf("Doug may %s: %v", tc.name, err)
				}
				checkRoom(t, alice, w.room, roomWant{epoch: 6, members: 5, providers: []string{domainA, domainB, domainC, domainD},
					participants: map[string]string{"alice": owner, "bob": admin, "cathy": admin, "doug": regular}})
				w.sameEpoch(t, 6)
			})
		}
		// Doug's refused commits are discarded; he goes on at epoch 6.
		w.say(t, doug, "sorry")
		w.check(t)
	})

	step(t, "6.5 Bob leaves the room", func(t *testing.T) {
		// Bob2 proposes his user's removal, a SelfRemove and the Remove of
		// Bob1; the hub queues them and the next commit must cover them.
		must(t, bob2.m.Leave(opCtx(t), w.room), "Bob leaves")
		for _, p := range []string{"plp", "self_remove", "remove"} {
			w.expect("proposal bob/phone "+p, bob2)
		}
		w.check(t)
		must(t, cathy1.m.CommitPending(opCtx(t), w.room), "Cathy commits Bob's departure")
		commit := "commit cathy/laptop e7 -@bob -bob/laptop -bob/phone"
		w.expect(commit, cathy1)
		w.expectOnly([]*party{bob1, bob2}, "removed")
		w.leave(bob1, bob2)
		w.check(t)
		checkRoom(t, alice, w.room, roomWant{epoch: 7, members: 3, providers: []string{domainA, domainC, domainD},
			participants: map[string]string{"alice": owner, "cathy": admin, "doug": regular}})
		for _, p := range []*party{bob1, bob2} {
			if rooms := p.m.Rooms(); len(rooms) != 0 {
				t.Fatalf("%s still has rooms %v", p, rooms)
			}
		}
		w.sameMembers(t)
		w.say(t, alice, "bye Bob")
		w.check(t)
	})

	step(t, "6.6 Cathy removes Doug", func(t *testing.T) {
		must(t, cathy1.m.RemoveUser(opCtx(t), w.room, doug.m.User()), "Cathy removes Doug")
		w.expect("commit cathy/laptop e8 -@doug -doug/phone", cathy1)
		w.expectOnly([]*party{doug}, "removed")
		w.leave(doug)
		w.check(t)
		checkRoom(t, alice, w.room, roomWant{epoch: 8, members: 2, providers: []string{domainA, domainC},
			participants: map[string]string{"alice": owner, "cathy": admin}})
	})

	step(t, "6.7 Cathy gets a new client", func(t *testing.T) {
		cathy2 = linkParty(t, cathy1, "tablet")
		w.all = append(w.all, cathy2)
		// Bob is no longer a participant: the hub refuses him the
		// GroupInfo.
		var gie *client.GroupInfoError
		if err := bob1.m.JoinExternal(opCtx(t), w.room); !errors.As(err, &gie) || gie.Status != proto.GroupInfoNotAuthorized {
			t.Fatalf("Bob joins by external commit: %v", err)
		}
		// Cathy's tablet claims the GroupInfo through c.example and joins
		// by external commit.
		must(t, cathy2.m.JoinExternal(opCtx(t), w.room), "Cathy's tablet joins")
		w.expect("commit cathy/tablet e9 external")
		w.join(cathy2)
		w.check(t)
		w.say(t, cathy2, "my tablet is in")
		w.say(t, alice, "welcome, tablet")
		w.check(t)
		if got := w.sameMembers(t); len(got) != 3 {
			t.Fatalf("members %v", got)
		}
		checkRoom(t, alice, w.room, roomWant{epoch: 9, members: 3, providers: []string{domainA, domainC},
			participants: map[string]string{"alice": owner, "cathy": admin}})
	})

	step(t, "c.example restarts again: the new client's subscription survives", func(t *testing.T) {
		// Cathy's tablet follows the room at c.example since its external
		// join (no Welcome subscribed it); that must survive c.example's
		// shutdown snapshot and restore.
		c.Stop(t)
		w.say(t, alice, "are you both there?")
		a.WaitState(t.Context(), t, "one item queued for c.example", func(s *fsm.State) bool { return s.OutboxDepth()[domainC].Items == 1 })
		c.Start(t)
		w.check(t)
		w.say(t, cathy2, "yes")
		w.check(t)
	})

	step(t, "6.8 consent as a connection (any room); Alice adds and removes Doug", func(t *testing.T) {
		// Without a decision from Doug, d.example refuses Alice's claim.
		err := alice.m.AddUsers(opCtx(t), w.room, []proto.UserRoles{userRoles(doug, proto.RoleRegularUser)})
		var kme *client.KeyMaterialError
		if !errors.As(err, &kme) || kme.Users[0].Status != proto.UserNoConsent {
			t.Fatalf("adding Doug without consent: %v", err)
		}
		// Alice asks Doug for consent for any room and, at the same time,
		// grants Doug consent to add her anywhere. Doug grants it back.
		must(t, alice.m.API().Consent(opCtx(t), &proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: alice.m.User(), Target: doug.m.User()}), "Alice requests consent")
		must(t, alice.m.API().Consent(opCtx(t), &proto.ConsentEntry{Operation: proto.ConsentGrant, Requester: doug.m.User(), Target: alice.m.User()}), "Alice grants consent")
		doug.see(t, "consent request alice doug any", "consent grant doug alice any")
		must(t, doug.m.API().Consent(opCtx(t), &proto.ConsentEntry{Operation: proto.ConsentGrant, Requester: alice.m.User(), Target: doug.m.User()}), "Doug grants consent")
		alice.see(t, "consent grant alice doug any")
		if l := consentLists(t, alice); !containsConsent(l.Received, "consent grant alice doug any") || !containsConsent(l.Given, "consent grant doug alice any") {
			t.Fatalf("Alice's consent lists %+v", l)
		}
		if l := consentLists(t, doug); !containsConsent(l.Received, "consent grant doug alice any") || !containsConsent(l.Given, "consent grant alice doug any") {
			t.Fatalf("Doug's consent lists %+v", l)
		}

		// The connection admits Doug to any room: Alice adds him back...
		must(t, alice.m.AddUsers(opCtx(t), w.room, []proto.UserRoles{userRoles(doug, proto.RoleRegularUser)}), "Alice adds Doug")
		w.expect("commit alice/phone e10 +@doug["+regular+"] +doug/phone", alice)
		w.expectOnly([]*party{doug}, "joined e10")
		w.join(doug)
		w.check(t)
		w.say(t, doug, "thanks for having me back")
		w.check(t)
		// ... and, as an owner, removes him again.
		must(t, alice.m.RemoveUser(opCtx(t), w.room, doug.m.User()), "Alice removes Doug")
		w.expect("commit alice/phone e11 -@doug -doug/phone", alice)
		w.expectOnly([]*party{doug}, "removed")
		w.leave(doug)
		w.check(t)

		// Doug revokes the connection (d.example keeps the revoke to
		// itself): Alice's claims are refused again.
		must(t, doug.m.API().Consent(opCtx(t), &proto.ConsentEntry{Operation: proto.ConsentRevoke, Requester: alice.m.User(), Target: doug.m.User()}), "Doug revokes")
		resp, err := alice.m.API().ClaimKeyMaterial(opCtx(t), client.ClaimRequest{Users: []proto.URI{doug.m.User()}, Room: w.room})
		must(t, err, "claim after the revoke")
		if len(resp.Users) != 1 || resp.Users[0].Status != proto.UserNoConsent {
			t.Fatalf("a claim after the revoke: %+v", resp.Users)
		}
		checkRoom(t, alice, w.room, roomWant{epoch: 11, members: 3, providers: []string{domainA, domainC},
			participants: map[string]string{"alice": owner, "cathy": admin}})
	})

	step(t, "nothing is left over", func(t *testing.T) {
		w.check(t)
		for _, p := range []*testutil.Provider{a, b, c, d} {
			p.WaitState(t.Context(), t, "an empty outbox", func(s *fsm.State) bool { return s.Counts().OutboxItems == 0 })
		}
	})
}

// burstText is the i-th message of p's burst.
func burstText(p *party, i int) string { return "burst " + string(rune('a'+i)) + " from " + p.name }

// isFrom reports whether a transcript line is a message from p.
func isFrom(l string, p *party) bool {
	return strings.HasPrefix(l, "msg "+p.name+" ")
}

// filter returns the elements of s that keep accepts, in order.
func filter(s []string, keep func(string) bool) []string {
	var out []string
	for _, x := range s {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}

// isStatus reports whether err is a client API or federation answer with
// that HTTP status.
func isStatus(err error, status int) bool {
	var se *client.StatusError
	return errors.As(err, &se) && se.Status == status
}
