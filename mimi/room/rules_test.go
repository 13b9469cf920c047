package room

import (
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestRules plays one refused request per rule, each on a fresh seed world
// (Alice owner; Bob and Cathy admins; Doug a regular user), and checks the
// response code and that the room did not change.
func TestRules(t *testing.T) {
	cases := []struct {
		name string
		want proto.UpdateResponseCode
		// play sets the scene and returns the refused outcome and the room
		// state just before the refused request.
		play func(w *seedWorld) ([]byte, Outcome)
	}{
		{"wrong epoch: a commit for an epoch already taken (7.4)", proto.UpdateWrongEpoch, func(w *seedWorld) ([]byte, Outcome) {
			stale, err := w.bob1.group.Commit(mls.CommitOptions{ForcePath: true, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
			if err != nil {
				w.t.Fatal(err)
			}
			w.bob1.group.DiscardPendingCommit()
			w.must(w.commit(w.alice1, mls.CommitOptions{ForcePath: true}), "Alice commits first")
			before := w.state()
			return before, w.apply(&UpdateRoom{From: "b.example", Body: w.bundle(w.bob1, stale)})
		}},
		{"a regular user may not add users (6.2)", proto.UpdateNotAllowed, func(w *seedWorld) ([]byte, Outcome) {
			erin := w.newClient("d.example", "erin", "phone")
			before := w.state()
			return before, w.commit(w.doug1, mls.CommitOptions{Proposals: append([]*mls.Proposal{plp([]proto.UserRoles{{User: erin.user, Roles: roles(proto.RoleRegularUser)}}, nil)}, adds(erin)...)})
		}},
		{"an Add needs its user in the participant list (7.4)", proto.UpdateNotAllowed, func(w *seedWorld) ([]byte, Outcome) {
			erin := w.newClient("d.example", "erin", "phone")
			before := w.state()
			return before, w.commit(w.alice1, mls.CommitOptions{Proposals: adds(erin)})
		}},
		{"a banned user's new client may not be added (7.4)", proto.UpdateNotAllowed, func(w *seedWorld) ([]byte, Outcome) {
			ban := plp(nil, []proto.UserRoles{{User: w.doug1.user, Roles: roles(proto.RoleBanned)}})
			w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{ban, mls.RemoveProposal(w.leafOf(w.doug1))}}), "Alice bans Doug")
			doug2 := w.newClient("d.example", "doug", "laptop")
			before := w.state()
			return before, w.commit(w.alice1, mls.CommitOptions{Proposals: adds(doug2)})
		}},
		{"a removed user's lingering client may not send (7.4)", proto.UpdateNotAllowed, func(w *seedWorld) ([]byte, Outcome) {
			w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{plp(nil, nil, w.doug1.user)}}), "Alice removes Doug from the list only")
			if e := w.say(w.alice1, "Doug must not read this"); e.Effects[0].To[len(e.Effects[0].To)-1].Exclude[0] != w.doug1.uri {
				w.t.Fatalf("fanout does not exclude Doug's lingering client: %+v", e.Effects[0].To)
			}
			before := w.state()
			return before, w.say(w.doug1, "still here")
		}},
		{"a lingering client may propose only removals (7.4)", proto.UpdateNotAllowed, func(w *seedWorld) ([]byte, Outcome) {
			w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{plp(nil, nil, w.doug1.user)}}), "Alice removes Doug from the list only")
			before := w.state()
			return before, w.propose(w.doug1, plp([]proto.UserRoles{{User: w.doug1.user, Roles: roles(proto.RoleRegularUser)}}, nil))
		}},
		{"a lingering client may not commit (7.4)", proto.UpdateNotAllowed, func(w *seedWorld) ([]byte, Outcome) {
			w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{plp(nil, nil, w.doug1.user)}}), "Alice removes Doug from the list only")
			before := w.state()
			return before, w.commit(w.doug1, mls.CommitOptions{ForcePath: true})
		}},
		{"a KeyPackage already used in the room is refused", proto.UpdateInvalidProposal, func(w *seedWorld) ([]byte, Outcome) {
			w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{plp(nil, nil, w.doug1.user), mls.RemoveProposal(w.leafOf(w.doug1))}}), "Alice removes Doug")
			relist := plp([]proto.UserRoles{{User: w.doug1.user, Roles: roles(proto.RoleRegularUser)}}, nil)
			before := w.state()
			return before, w.commit(w.alice1, mls.CommitOptions{Proposals: append([]*mls.Proposal{relist}, adds(w.doug1)...)})
		}},
		{"an expired KeyPackage is refused", proto.UpdateInvalidProposal, func(w *seedWorld) ([]byte, Outcome) {
			erin := w.newClient("b.example", "erin", "phone")
			list := plp([]proto.UserRoles{{User: erin.user, Roles: roles(proto.RoleRegularUser)}}, nil)
			b, err := w.alice1.group.Commit(mls.CommitOptions{Proposals: append([]*mls.Proposal{list}, adds(erin)...), GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
			if err != nil {
				w.t.Fatal(err)
			}
			w.now += 31 * 86400 * 1000 // the hub sees it after the KeyPackage's not_after
			before := w.state()
			return before, w.apply(&UpdateRoom{From: "a.example", Body: w.bundle(w.alice1, b)})
		}},
		{"a stale GroupInfo is refused", proto.UpdateInvalidProposal, func(w *seedWorld) ([]byte, Outcome) {
			b, err := w.alice1.group.Commit(mls.CommitOptions{ForcePath: true, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
			if err != nil {
				w.t.Fatal(err)
			}
			body := w.bundle(w.alice1, b)
			var cur mls.GroupInfo
			if err := wire.Unmarshal(w.room.Group().GroupInfo(), &cur); err != nil {
				w.t.Fatal(err)
			}
			body.GroupInfo = mls.NewGroupInfoMessage(&cur) // the current epoch's, not the new one's
			before := w.state()
			return before, w.apply(&UpdateRoom{From: "a.example", Body: body})
		}},
		{"a commit sent by another provider than its committer's is refused", proto.UpdateNotAllowed, func(w *seedWorld) ([]byte, Outcome) {
			before := w.state()
			return before, w.commitFrom("b.example", w.alice1, mls.CommitOptions{ForcePath: true})
		}},
		{"an admin may not make someone owner (role ranks)", proto.UpdateNotAllowed, func(w *seedWorld) ([]byte, Outcome) {
			before := w.state()
			return before, w.commit(w.cathy1, mls.CommitOptions{Proposals: []*mls.Proposal{plp(nil, []proto.UserRoles{{User: w.doug1.user, Roles: roles(proto.RoleOwner)}})}})
		}},
		{"an admin may not remove the owner (role ranks)", proto.UpdateNotAllowed, func(w *seedWorld) ([]byte, Outcome) {
			before := w.state()
			return before, w.commit(w.cathy1, mls.CommitOptions{Proposals: []*mls.Proposal{plp(nil, nil, w.alice1.user), mls.RemoveProposal(w.leafOf(w.alice1))}})
		}},
		{"a regular user may not remove another user's client", proto.UpdateNotAllowed, func(w *seedWorld) ([]byte, Outcome) {
			before := w.state()
			return before, w.commit(w.doug1, mls.CommitOptions{Proposals: []*mls.Proposal{mls.RemoveProposal(w.leafOf(w.cathy2))}})
		}},
		{"an admin may not change the base policy", proto.UpdateNotAllowed, func(w *seedWorld) ([]byte, Outcome) {
			open := proto.DefaultPolicy()
			open.JoinRule = proto.Open
			before := w.state()
			return before, w.commit(w.bob1, mls.CommitOptions{Proposals: []*mls.Proposal{mls.GroupContextExtensionsProposal(mls.Extensions{open.Extension()})}})
		}},
		{"the base policy cannot be dropped", proto.UpdateInvalidProposal, func(w *seedWorld) ([]byte, Outcome) {
			before := w.state()
			return before, w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{mls.GroupContextExtensionsProposal(mls.Extensions{})}})
		}},
		{"a visitor may not send", proto.UpdateNotAllowed, func(w *seedWorld) ([]byte, Outcome) {
			w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{plp(nil, []proto.UserRoles{{User: w.doug1.user, Roles: roles(proto.RoleVisitor)}})}}), "Alice makes Doug a visitor")
			before := w.state()
			return before, w.say(w.doug1, "may I?")
		}},
		{"a message for an old epoch is refused", proto.UpdateWrongEpoch, func(w *seedWorld) ([]byte, Outcome) {
			m, err := w.doug1.group.Encrypt([]byte("late"), SenderHint(w.doug1.uri))
			if err != nil {
				w.t.Fatal(err)
			}
			w.must(w.commit(w.alice1, mls.CommitOptions{ForcePath: true}), "Alice commits")
			before := w.state()
			return before, w.apply(&ProvisionalMessage{From: "d.example", Message: transmit(w.t, m)})
		}},
		{"a message naming another provider's client is refused", proto.UpdateNotAllowed, func(w *seedWorld) ([]byte, Outcome) {
			m, err := w.doug1.group.Encrypt([]byte("spoof"), SenderHint(w.cathy1.uri))
			if err != nil {
				w.t.Fatal(err)
			}
			before := w.state()
			return before, w.apply(&ProvisionalMessage{From: "d.example", Message: transmit(w.t, m)})
		}},
		{"adds need a Welcome", proto.UpdateInvalidProposal, func(w *seedWorld) ([]byte, Outcome) {
			bob3 := w.newClient("b.example", "bob", "tablet")
			b, err := w.alice1.group.Commit(mls.CommitOptions{Proposals: adds(bob3), GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
			if err != nil {
				w.t.Fatal(err)
			}
			body := w.bundle(w.alice1, b)
			body.Welcome = nil
			before := w.state()
			return before, w.apply(&UpdateRoom{From: "a.example", Body: body})
		}},
		{"a ratchet tree that is not the commit's is refused", proto.UpdateInvalidProposal, func(w *seedWorld) ([]byte, Outcome) {
			b, err := w.alice1.group.Commit(mls.CommitOptions{ForcePath: true, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
			if err != nil {
				w.t.Fatal(err)
			}
			body := w.bundle(w.alice1, b)
			body.RatchetTree.Tree = wire.MustMarshal(w.room.Group().Tree()) // the old tree
			before := w.state()
			return before, w.apply(&UpdateRoom{From: "a.example", Body: body})
		}},
		{"a GroupInfo without external_pub is refused", proto.UpdateInvalidProposal, func(w *seedWorld) ([]byte, Outcome) {
			b, err := w.alice1.group.Commit(mls.CommitOptions{ForcePath: true})
			if err != nil {
				w.t.Fatal(err)
			}
			before := w.state()
			return before, w.apply(&UpdateRoom{From: "a.example", Body: w.bundle(w.alice1, b)})
		}},
		{"a non-participant may not join a members-only room (6.8)", proto.UpdateNotAllowed, func(w *seedWorld) ([]byte, Outcome) {
			eve := w.newClient("d.example", "eve", "phone")
			var gi mls.GroupInfo
			if err := wire.Unmarshal(w.room.Group().GroupInfo(), &gi); err != nil {
				w.t.Fatal(err)
			}
			g, b, err := mls.JoinExternal(&gi, wire.MustMarshal(w.room.Group().Tree()), eve.signer, mls.ExternalJoinOptions{
				GroupOptions: w.groupOptions(), Credential: mls.BasicCredential([]byte(eve.uri)), Capabilities: roomCaps,
				Commit: mls.CommitOptions{GroupInfo: mls.GroupInfoOptions{ExternalPub: true}},
			})
			if err != nil {
				w.t.Fatal(err)
			}
			eve.group = g
			before := w.state()
			return before, w.apply(&UpdateRoom{From: "d.example", Body: w.bundle(eve, b)})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newSeedWorld(t)
			before, out := c.play(w)
			w.refused(before, out, c.want, c.name)
			for _, cl := range w.clients {
				if cl.group != nil {
					cl.group.DiscardPendingCommit()
				}
			}
			// The room still works.
			w.must(w.say(w.alice1, "still fine"), "a message after the refusal")
		})
	}
}

func TestOneClientPerUser(t *testing.T) {
	w := newWorld(t)
	alice, bob1, bob2 := w.newClient("a.example", "alice", "phone"), w.newClient("b.example", "bob", "laptop"), w.newClient("b.example", "bob", "phone")
	policy := proto.DefaultPolicy()
	policy.MultipleClients = false
	w.create(alice, policy)
	listBob := plp([]proto.UserRoles{{User: bob1.user, Roles: roles(proto.RoleRegularUser)}}, nil)
	before := w.state()
	w.refused(before, w.commit(alice, mls.CommitOptions{Proposals: append([]*mls.Proposal{listBob}, adds(bob1, bob2)...)}), proto.UpdateNotAllowed, "two clients of Bob")
	w.must(w.commit(alice, mls.CommitOptions{Proposals: append([]*mls.Proposal{listBob}, adds(bob1)...)}, bob1), "one client of Bob")
}

func TestOpenRoomAndBans(t *testing.T) {
	w := newWorld(t)
	alice := w.newClient("a.example", "alice", "phone")
	policy := proto.DefaultPolicy()
	policy.JoinRule = proto.Open
	w.create(alice, policy)

	// Anyone may join an open room; the joiner becomes a regular user.
	newcomer := w.newClient("c.example", "carl", "phone")
	w.externalJoin(newcomer)
	if got := w.participant(newcomer.user); got != "[regular_user]" {
		t.Fatalf("the newcomer's roles: %s", got)
	}
	w.must(w.say(newcomer, "hello open room"), "the newcomer speaks")

	// Removing a user does not ban them; banning does.
	w.must(w.commit(alice, mls.CommitOptions{Proposals: []*mls.Proposal{plp(nil, nil, newcomer.user), mls.RemoveProposal(w.leafOf(newcomer))}}), "Alice removes Carl")
	again := w.newClient("c.example", "carl", "laptop")
	w.externalJoin(again)
	w.must(w.commit(alice, mls.CommitOptions{Proposals: []*mls.Proposal{
		plp(nil, []proto.UserRoles{{User: again.user, Roles: roles(proto.RoleBanned)}}), mls.RemoveProposal(w.leafOf(again))}}), "Alice bans Carl")
	out := w.apply(&ClaimGroupInfo{From: "c.example", Body: &proto.GroupInfoRequest{Credential: mls.BasicCredential([]byte(proto.ClientURI("c.example", "carl", "tablet")))}})
	if out.GroupInfo.Status != proto.GroupInfoNotAuthorized {
		t.Fatalf("a banned user gets the GroupInfo: %s", out.GroupInfo.Status)
	}
	// Claims from a provider for another provider's client are refused too.
	out = w.apply(&ClaimGroupInfo{From: "d.example", Body: &proto.GroupInfoRequest{Credential: mls.BasicCredential([]byte(proto.ClientURI("a.example", "alice", "tablet")))}})
	if out.GroupInfo.Status != proto.GroupInfoNotAuthorized {
		t.Fatalf("a provider claims for another's client: %s", out.GroupInfo.Status)
	}
}

func TestPolicyChangeByOwner(t *testing.T) {
	w := newSeedWorld(t)
	open := proto.DefaultPolicy()
	open.JoinRule = proto.Open
	open.Send = []proto.Role{proto.RoleOwner}
	w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{mls.GroupContextExtensionsProposal(w.roomExtensions(open))}}), "Alice changes the policy")
	if p := w.room.Policy(); p.JoinRule != proto.Open || !slices.Equal(p.Send, []proto.Role{proto.RoleOwner}) {
		t.Fatalf("policy %+v", p)
	}
	before := w.state()
	w.refused(before, w.say(w.bob1, "can I still talk?"), proto.UpdateNotAllowed, "a non-owner sends after the change")
}

func TestAbuseReport(t *testing.T) {
	w := newSeedWorld(t)
	m, err := w.doug1.group.Encrypt([]byte("buy cheap watches"), SenderHint(w.doug1.uri))
	if err != nil {
		t.Fatal(err)
	}
	w.must(w.apply(&ProvisionalMessage{From: "d.example", Message: transmit(t, m)}), "Doug spams")
	got, err := w.cathy1.group.Process(transmit(t, m))
	if err != nil {
		t.Fatal(err)
	}
	report := &proto.AbuseReport{ReportingUser: w.cathy1.user, AllegedAbuser: w.doug1.user, GroupID: []byte(roomURI), Epoch: w.room.Epoch(),
		AllegedAbuserAt: uint32(w.leafOf(w.doug1)), Reason: proto.AbuseSpam, Note: "watches",
		Messages: []proto.AbusiveMessage{{Message: m, Key: got.ContentKey, Nonce: got.ContentNonce}}}
	out := w.apply(&ReportAbuse{From: "c.example", Body: transmit(t, report)})
	if out.Err != nil || out.Report == nil || out.Report.Verified != 1 {
		t.Fatalf("report: %+v, %v", out.Report, out.Err)
	}
	// A report blaming someone else for the message does not verify.
	report.AllegedAbuserAt = uint32(w.leafOf(w.alice1))
	report.AllegedAbuser = w.alice1.user
	if out := w.apply(&ReportAbuse{From: "c.example", Body: transmit(t, report)}); out.Report == nil || out.Report.Verified != 0 {
		t.Fatalf("a misattributed report verifies: %+v", out.Report)
	}
	// Providers report only for their own users, who must be participants.
	if out := w.apply(&ReportAbuse{From: "d.example", Body: transmit(t, report)}); out.Err == nil {
		t.Fatal("d.example reported on behalf of c.example's user")
	}
}

// TestProposalRules checks the rules applied to proposals sent by reference:
// each refused batch leaves no proposal behind.
func TestProposalRules(t *testing.T) {
	cases := []struct {
		name string
		want proto.UpdateResponseCode
		by   func(w *seedWorld) *client
		ps   func(w *seedWorld) []*mls.Proposal
	}{
		{"a regular user may not propose adding users", proto.UpdateNotAllowed,
			func(w *seedWorld) *client { return w.doug1 },
			func(w *seedWorld) []*mls.Proposal {
				return []*mls.Proposal{plp([]proto.UserRoles{{User: proto.UserURI("d.example", "erin"), Roles: roles(proto.RoleRegularUser)}}, nil)}
			}},
		{"a patch naming a user twice is malformed", proto.UpdateInvalidProposal,
			func(w *seedWorld) *client { return w.alice1 },
			func(w *seedWorld) []*mls.Proposal {
				return []*mls.Proposal{plp(nil, []proto.UserRoles{{User: w.doug1.user, Roles: roles(proto.RoleAdmin)}}, w.doug1.user)}
			}},
		{"a patch giving no roles is malformed", proto.UpdateInvalidProposal,
			func(w *seedWorld) *client { return w.alice1 },
			func(w *seedWorld) []*mls.Proposal {
				return []*mls.Proposal{plp(nil, []proto.UserRoles{{User: w.doug1.user}})}
			}},
		{"an admin may not propose a policy change", proto.UpdateNotAllowed,
			func(w *seedWorld) *client { return w.cathy1 },
			func(w *seedWorld) []*mls.Proposal {
				p := proto.DefaultPolicy()
				return []*mls.Proposal{mls.GroupContextExtensionsProposal(mls.Extensions{p.Extension()})}
			}},
		{"a regular user may not propose removing another user's client", proto.UpdateNotAllowed,
			func(w *seedWorld) *client { return w.doug1 },
			func(w *seedWorld) []*mls.Proposal { return []*mls.Proposal{mls.RemoveProposal(w.leafOf(w.cathy1))} }},
		{"a later refused proposal undoes the earlier ones of its batch", proto.UpdateNotAllowed,
			func(w *seedWorld) *client { return w.doug1 },
			func(w *seedWorld) []*mls.Proposal {
				return []*mls.Proposal{mls.SelfRemoveProposal(), mls.RemoveProposal(w.leafOf(w.alice1))}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newSeedWorld(t)
			before := w.state()
			w.refused(before, w.propose(c.by(w), c.ps(w)...), c.want, c.name)
			if w.room.Group().PendingCount() != 0 || len(w.room.queued) != 0 {
				t.Fatal("a refused batch left proposals behind")
			}
		})
	}

	// Proposals that pass are stored, and an admin commits them.
	w := newSeedWorld(t)
	erin := w.newClient("d.example", "erin", "phone")
	w.must(w.propose(w.cathy1, plp([]proto.UserRoles{{User: erin.user, Roles: roles(proto.RoleRegularUser)}}, nil), mls.AddProposal(erin.kp.KeyPackage)), "Cathy proposes Erin")
	if len(w.room.queued) != 0 {
		t.Fatal("an ordinary proposal was queued")
	}
	w.must(w.commit(w.bob1, mls.CommitOptions{IncludePending: true}, erin), "Bob commits Cathy's proposals")
	w.must(w.say(erin, "thanks"), "Erin speaks")
}

// TestCommitReferencesLeaveOutOwnTouches: admin Cathy's pending proposal
// adds Erin; Alice then adds Erin herself. Covering Cathy's proposal as
// well would name Erin twice, and the hub refuses the commit (Alice could
// not add Erin until someone else committed); CommitReferencesWith leaves
// the patch out, and Alice's commit goes through. The hub's own queued proposals
// are covered whatever Alice's touch.
func TestCommitReferencesLeaveOutOwnTouches(t *testing.T) {
	w := newSeedWorld(t)
	erin := w.newClient("d.example", "erin", "phone")
	erin2 := w.newClient("d.example", "erin", "laptop")
	w.must(w.propose(w.cathy1, plp([]proto.UserRoles{{User: erin.user, Roles: roles(proto.RoleRegularUser)}}, nil), mls.AddProposal(erin.kp.KeyPackage)), "Cathy proposes Erin")
	own := append([]*mls.Proposal{plp([]proto.UserRoles{{User: erin2.user, Roles: roles(proto.RoleRegularUser)}}, nil)}, adds(erin2)...)
	// Cathy's patch names Erin and is left out; her Add of Erin's phone
	// names no user and stays (Erin joins with both clients).
	if got, with := len(CommitReferences(w.alice1.group, 0)), len(CommitReferencesWith(w.alice1.group, own, 0)); got != 2 || with != 1 {
		t.Fatalf("references: %d without Alice's own proposals, %d with them; want 2 and 1", got, with)
	}
	before := w.state()
	w.refused(before, w.commit(w.alice1, mls.CommitOptions{Proposals: own, References: CommitReferences(w.alice1.group, 0)}), proto.UpdateInvalidProposal, "Alice adds Erin covering Cathy's Add of Erin too")
	w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: own, References: CommitReferencesWith(w.alice1.group, own, 0)}, erin, erin2), "Alice adds Erin, leaving Cathy's patch out")
	w.must(w.say(erin2, "hello"), "Erin speaks")

	// What the hub queued is covered even when it touches the same user.
	w = newSeedWorld(t)
	w.must(w.propose(w.doug1, mls.SelfRemoveProposal()), "Doug leaves")
	own = []*mls.Proposal{plp(nil, []proto.UserRoles{{User: w.doug1.user, Roles: roles(proto.RoleAdmin)}})}
	if queued, with := QueuedReferences(w.alice1.group, 0), CommitReferencesWith(w.alice1.group, own, 0); len(queued) == 0 || len(with) < len(queued) {
		t.Fatalf("the queue holds %d references and the commit covers %d: it must cover them all", len(queued), len(with))
	}
}

func TestCreateRefusals(t *testing.T) {
	w := newWorld(t)
	alice, bob := w.newClient("a.example", "alice", "phone"), w.newClient("b.example", "bob", "phone")
	policy := proto.DefaultPolicy()
	mk := func(groupID []byte, ext mls.Extensions, members ...*client) (*mls.GroupInfo, []byte, *mls.Group) {
		g, err := mls.CreateGroup(w.suite, alice.signer, mls.CreateOptions{GroupOptions: w.groupOptions(), GroupID: groupID, Extensions: ext,
			Credential: mls.BasicCredential([]byte(alice.uri)), Capabilities: roomCaps, Lifetime: w.lifetime()})
		if err != nil {
			t.Fatal(err)
		}
		if len(members) > 0 {
			if _, err := g.Commit(mls.CommitOptions{Proposals: adds(members...)}); err != nil {
				t.Fatal(err)
			}
			g.MergePendingCommit()
		}
		gi, err := g.GroupInfo(mls.GroupInfoOptions{ExternalPub: true})
		if err != nil {
			t.Fatal(err)
		}
		return gi.GroupInfo, wire.MustMarshal(g.Tree()), g
	}
	good := mls.Extensions{policy.Extension()}
	cases := []struct {
		name string
		req  func() CreateRequest
	}{
		{"a room of another hub", func() CreateRequest {
			gi, tree, _ := mk([]byte(proto.RoomURI("b.example", "x")), good)
			return CreateRequest{Room: proto.RoomURI("b.example", "x"), Creator: alice.user, GroupInfo: gi, Tree: tree}
		}},
		{"a group id that is not the room", func() CreateRequest {
			gi, tree, _ := mk([]byte("other"), good)
			return CreateRequest{Room: roomURI, Creator: alice.user, GroupInfo: gi, Tree: tree}
		}},
		{"no base policy", func() CreateRequest {
			gi, tree, _ := mk([]byte(roomURI), nil)
			return CreateRequest{Room: roomURI, Creator: alice.user, GroupInfo: gi, Tree: tree}
		}},
		{"someone else's client in the group", func() CreateRequest {
			gi, tree, _ := mk([]byte(roomURI), good, bob)
			return CreateRequest{Room: roomURI, Creator: alice.user, GroupInfo: gi, Tree: tree}
		}},
		{"a creator that is not a user", func() CreateRequest {
			gi, tree, _ := mk([]byte(roomURI), good)
			return CreateRequest{Room: roomURI, Creator: alice.uri, GroupInfo: gi, Tree: tree}
		}},
		{"a GroupInfo without external_pub", func() CreateRequest {
			_, tree, g := mk([]byte(roomURI), good)
			gi, err := g.GroupInfo(mls.GroupInfoOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return CreateRequest{Room: roomURI, Creator: alice.user, GroupInfo: gi.GroupInfo, Tree: tree}
		}},
	}
	for _, c := range cases {
		if _, err := Create(Config{Hub: hub}, c.req(), w.now); err == nil {
			t.Errorf("%s: created", c.name)
		}
	}
}
