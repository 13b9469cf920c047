package room

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// The adversarial test plays seeded random sequences of actions by honest
// and hostile members of several providers against one room, and checks
// after every step, against a model of its own, that the room's rules hold:
// DESIGN.md lists the invariants. A failing sequence is shrunk to a minimal
// one and printed with the flags that replay it.

var (
	advSequences = flag.Int("adversarial.sequences", 60, "random sequences TestAdversarialRoom plays")
	advSteps     = flag.Int("adversarial.steps", 30, "actions per sequence")
	advDuration  = flag.Duration("adversarial.duration", 0, "play sequences until this much time has passed (instead of -adversarial.sequences)")
	advSeed      = flag.Uint64("adversarial.seed", 0, "play only this seed")
	advReplay    = flag.String("adversarial.replay", "", "with -adversarial.seed: play this action list, as a failure prints it")
	advVerbose   = flag.Bool("adversarial.v", false, "log every action")
	advPlant     = flag.String("adversarial.plant", "", "switch off this rule of the room (builds with -tags mimi_plant only): "+strings.Join(plantNames[1:], ", "))
)

// plantNames names the plants for -adversarial.plant, by value.
var plantNames = []string{"", "lingeringRemoves", "addUnchecked", "queueConflicts", "bannedSends"}

func TestAdversarialRoom(t *testing.T) {
	stats := &advStats{}
	start := time.Now()
	p := plant(slices.Index(plantNames, *advPlant))
	if p < 0 || p != plantNone && !plantsCompiled {
		t.Fatalf("-adversarial.plant %q: want one of %v, in a build with -tags mimi_plant", *advPlant, plantNames[1:])
	}
	run := func(seed uint64, plan []action) {
		if f := playSequence(t, seed, plan, *advSteps, p, stats); f != nil {
			t.Fatal(reproduce(t, seed, f, p))
		}
	}
	switch {
	case *advSeed != 0:
		plan, err := parseActions(*advReplay)
		if err != nil {
			t.Fatal(err)
		}
		run(*advSeed, plan)
	case *advDuration > 0:
		for seed := uint64(1); time.Since(start) < *advDuration; seed++ {
			run(seed, nil)
		}
	default:
		for seed := uint64(1); seed <= uint64(*advSequences); seed++ {
			run(seed, nil)
		}
	}
	t.Logf("adversarial: %d sequences, %d steps (%d accepted, %d refused, %d not applicable), %d no-wedge and %d join checks, in %s",
		stats.sequences, stats.steps, stats.accepted, stats.refused, stats.skipped, stats.commitChecks, stats.joinChecks, time.Since(start).Round(time.Millisecond))
}

// advStats counts what the sequences did.
type advStats struct {
	sequences, steps, accepted, refused, skipped, commitChecks, joinChecks int
}

// violation is a failed check.
type violation struct {
	check string // which invariant
	msg   string
	step  int
	trace []string // what happened, step by step
	plan  []action // the actions played
}

func (v *violation) Error() string { return v.check + ": " + v.msg }

// playSequence plays one sequence: the actions of plan, or steps random
// ones when plan is nil. It returns the first violation.
func playSequence(t testing.TB, seed uint64, plan []action, steps int, p plant, stats *advStats) (v *violation) {
	a := newAdv(t, seed, p)
	defer func() {
		if v != nil {
			v.trace, v.plan = a.trace, a.played
		}
	}()
	if plan == nil {
		for range steps {
			plan = append(plan, a.randomAction())
		}
	}
	stats.sequences++
	for i, act := range plan {
		a.step = i
		res := a.run(act)
		a.played = append(a.played, act)
		a.trace = append(a.trace, fmt.Sprintf("%3d %-28s %s", i, act, res.desc))
		if *advVerbose {
			t.Logf("seed %d: %s", seed, a.trace[len(a.trace)-1])
		}
		stats.steps++
		switch {
		case res.v != nil:
			res.v.step = i
			return res.v
		case res.skipped:
			stats.skipped++
		case res.accepted:
			stats.accepted++
		default:
			stats.refused++
		}
		if v := a.checkState(stats); v != nil {
			v.step = i
			return v
		}
	}
	return a.checkDeterminism()
}

// reproduce shrinks a failing sequence to a minimal one that fails the
// same check, and describes it.
func reproduce(t testing.TB, seed uint64, f *violation, p plant) string {
	plan := f.plan
	fails := func(plan []action) *violation {
		v := playSequence(t, seed, plan, 0, p, &advStats{})
		if v != nil && v.check == f.check {
			return v
		}
		return nil
	}
	best := f
	deadline := time.Now().Add(2 * time.Minute)
	for chunk := len(plan) / 2; chunk >= 1 && time.Now().Before(deadline); {
		shrunk := false
		for i := 0; i+chunk <= len(plan) && time.Now().Before(deadline); {
			try := slices.Concat(plan[:i], plan[i+chunk:])
			if v := fails(try); v != nil {
				plan, best, shrunk = try, v, true
				continue
			}
			i += chunk
		}
		if !shrunk {
			chunk /= 2
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "adversarial seed %d: %s\n", seed, best)
	fmt.Fprintf(&b, "minimal sequence (%d of %d actions):\n", len(plan), len(f.plan))
	for _, line := range best.trace {
		fmt.Fprintf(&b, "  %s\n", line)
	}
	tags, planted := "", ""
	if p != plantNone {
		tags, planted = "-tags mimi_plant ", " -adversarial.plant "+plantNames[p]
	}
	fmt.Fprintf(&b, "replay: go test %s./mimi/room -run 'TestAdversarialRoom$'%s -adversarial.seed %d -adversarial.replay '%s' -adversarial.v", tags, planted, seed, formatActions(plan))
	return b.String()
}

// actKind is what an action does.
type actKind int

const (
	actSay actKind = iota
	actLeave
	actSelfRemove
	actRemove
	actUpdate
	actAddRef
	actPatch
	actPolicy
	actCommitHonest
	actCommitSubset
	actCommitByValue
	actJoin
	actJoinHostile
	actReplay
	actStale
	actWrongProvider
	actRevoke
	actRace
	actClaim
	numActs
)

var actNames = [...]string{"say", "leave", "selfRemove", "remove", "update", "addRef", "patch", "policy", "commit", "commitSubset",
	"commitByValue", "join", "joinHostile", "replay", "stale", "wrongProvider", "revoke", "race", "claim"}

// actWeights bias the draw towards commits, so that queues move.
var actWeights = [numActs]int{3, 2, 2, 3, 1, 2, 4, 1, 6, 2, 3, 2, 2, 1, 1, 1, 2, 1, 1}

// action is one step: a kind and three choices, each taken modulo what
// exists when the action runs (so an action stays meaningful when a
// shrunk sequence drops the steps before it).
type action struct {
	kind    actKind
	a, b, c int
}

func (x action) String() string {
	return fmt.Sprintf("%s/%d/%d/%d", actNames[x.kind], x.a, x.b, x.c)
}

func formatActions(plan []action) string {
	parts := make([]string, len(plan))
	for i, x := range plan {
		parts[i] = x.String()
	}
	return strings.Join(parts, ",")
}

func parseActions(s string) ([]action, error) {
	if s == "" {
		return nil, nil
	}
	var out []action
	for _, part := range strings.Split(s, ",") {
		f := strings.Split(part, "/")
		k := slices.Index(actNames[:], f[0])
		if len(f) != 4 || k < 0 {
			return nil, fmt.Errorf("action %q: want kind/a/b/c", part)
		}
		x := action{kind: actKind(k)}
		for i, p := range []*int{&x.a, &x.b, &x.c} {
			n, err := strconv.Atoi(f[i+1])
			if err != nil {
				return nil, fmt.Errorf("action %q: %v", part, err)
			}
			*p = n
		}
		out = append(out, x)
	}
	return out, nil
}

// adv is one sequence's world: the room, real MLS clients, a shadow
// follower that processes every accepted message independently of the
// room, and the model of who may do what.
type adv struct {
	*world
	rng     *rand.Rand
	step    int
	played  []action
	trace   []string
	shadow  *mls.Follower
	model   model
	behind  map[*client]bool // missed a message (excluded from fanout): acts on a stale state
	stale   *client          // a client and its group of the epoch before the last commit
	staleG  *mls.Group
	handled []handled // accepted handshake requests, for replays
	users   []proto.URI
	fresh   int
	// leavesBefore maps the group's leaves to clients as they were before
	// the last request: who sent what, and who a commit must reach.
	leavesBefore map[mls.LeafIndex]proto.URI
}

// apply runs a request, remembering the members before it.
func (a *adv) apply(req Request) Outcome {
	a.leavesBefore = a.identities()
	return a.world.apply(req)
}

// own reports whether fanout message m is sender's own.
func (a *adv) own(m *mls.Message, sender *client) bool {
	switch {
	case sender == nil:
		return false
	case m.Private != nil:
		return string(m.Private.AuthenticatedData) == string(sender.uri)
	case m.Public != nil:
		s := m.Public.Content.Sender
		return s.Type == mls.SenderMember && a.leavesBefore[mls.LeafIndex(s.Index)] == sender.uri || s.Type == mls.SenderNewMemberCommit
	}
	return false
}

// handled is an accepted updateRoom request.
type handled struct {
	from string
	body []byte
}

// model is the test's own account of the room: the participant list and
// policy as the accepted commits made them, and what the hub was asked to
// take out.
type model struct {
	policy       proto.BasePolicy
	participants map[proto.URI][]proto.Role
	departing    map[proto.URI]bool // clients whose removal a member proposed
	leaving      map[proto.URI]bool // users who proposed to leave the list
	revoked      map[proto.URI]bool // clients their provider revoked
}

func (m *model) active(u proto.URI) bool {
	r, ok := m.participants[u]
	return ok && !slices.Contains(r, proto.RoleBanned)
}

func (m *model) roles(u proto.URI) []proto.Role { return m.participants[u] }

func newAdv(t testing.TB, seed uint64, p plant) *adv {
	w := newWorld(t)
	w.plant = p
	a := &adv{world: w, rng: rand.New(rand.NewPCG(seed, 0x5eed)), behind: map[*client]bool{}}
	policy := proto.DefaultPolicy()
	if a.rng.IntN(3) == 0 {
		policy.JoinRule = proto.Open
	}
	if a.rng.IntN(2) == 0 {
		policy.Ban = []proto.Role{proto.RoleOwner}
	}
	if a.rng.IntN(6) == 0 {
		policy.MultipleClients = false
	}
	alice := w.newClient("a.example", "alice", "phone")
	w.create(alice, policy)
	bob1, cathy, dave1, fred := w.newClient("b.example", "bob", "laptop"), w.newClient("c.example", "cathy", "laptop"), w.newClient("d.example", "dave", "phone"), w.newClient("b.example", "fred", "desk")
	joiners := []*client{bob1, cathy, dave1, fred}
	if policy.MultipleClients {
		joiners = append(joiners, w.newClient("b.example", "bob", "phone"), w.newClient("d.example", "dave", "tablet"))
	}
	patch := plp([]proto.UserRoles{
		{User: bob1.user, Roles: roles(proto.RoleRegularUser)},
		{User: cathy.user, Roles: roles(proto.RoleRegularUser, proto.RoleAdmin)},
		{User: dave1.user, Roles: roles(proto.RoleRegularUser)},
		{User: fred.user, Roles: roles(proto.RoleRegularUser)},
	}, nil)
	w.must(w.commit(alice, mls.CommitOptions{Proposals: append([]*mls.Proposal{patch}, adds(joiners...)...)}, joiners...), "setup")
	a.users = []proto.URI{alice.user, bob1.user, cathy.user, dave1.user, fred.user, proto.UserURI("e.example", "eve"), proto.UserURI("c.example", "gina")}

	var gi mls.GroupInfo
	if err := wire.Unmarshal(w.room.Group().GroupInfo(), &gi); err != nil {
		t.Fatal(err)
	}
	shadow, err := mls.NewFollower(&gi, wire.MustMarshal(w.room.Group().Tree()), MLSConfig(0))
	if err != nil {
		t.Fatal(err)
	}
	a.shadow = shadow
	a.model = model{policy: policy, participants: map[proto.URI][]proto.Role{}, departing: map[proto.URI]bool{}, leaving: map[proto.URI]bool{}, revoked: map[proto.URI]bool{}}
	for _, p := range w.room.Participants() {
		a.model.participants[p.User] = slices.Clone(p.Roles)
	}
	return a
}

func (a *adv) randomAction() action {
	total := 0
	for _, w := range actWeights {
		total += w
	}
	n := a.rng.IntN(total)
	k := actKind(0)
	for ; n >= actWeights[k]; k++ {
		n -= actWeights[k]
	}
	return action{kind: k, a: a.rng.IntN(1 << 16), b: a.rng.IntN(1 << 16), c: a.rng.IntN(1 << 16)}
}

// result is how an action went.
type result struct {
	desc     string
	accepted bool
	skipped  bool
	v        *violation
}

func skip(why string) result { return result{desc: "n/a: " + why, skipped: true} }

func (a *adv) fail(check, format string, args ...any) result {
	v := &violation{check: check, msg: fmt.Sprintf(format, args...)}
	return result{desc: "VIOLATION " + v.Error(), v: v}
}

// pick returns the n-th of list, modulo its length.
func pick[T any](list []T, n int) (T, bool) {
	var zero T
	if len(list) == 0 {
		return zero, false
	}
	return list[n%len(list)], true
}

// actors are the clients with a group that can still act (removed ones
// cannot build messages any more).
func (a *adv) actors() []*client {
	var out []*client
	for _, c := range a.clients {
		if c.group != nil && !c.group.Removed() {
			out = append(out, c)
		}
	}
	return out
}

// memberClients are the clients in the hub's group, sorted.
func (a *adv) memberClients() []*client {
	var out []*client
	for _, c := range a.clients {
		if _, ok := a.room.members.byClient[c.uri]; ok {
			out = append(out, c)
		}
	}
	return out
}

func (a *adv) freshClient(user proto.URI) *client {
	id, _ := user.Parse()
	a.fresh++
	return a.newClient(id.Domain, id.User, fmt.Sprintf("d%d", a.fresh))
}

func (a *adv) run(x action) result {
	switch x.kind {
	case actSay:
		c, ok := pick(a.actors(), x.a)
		if !ok {
			return skip("nobody")
		}
		return a.say(c)
	case actLeave, actSelfRemove, actRemove, actUpdate, actAddRef, actPatch, actPolicy:
		c, ok := pick(a.actors(), x.a)
		if !ok {
			return skip("nobody")
		}
		return a.propose(c, c.domain, x)
	case actCommitHonest, actCommitSubset, actCommitByValue:
		c, ok := pick(a.actors(), x.a)
		if !ok {
			return skip("nobody")
		}
		return a.commit(c, x)
	case actJoin, actJoinHostile:
		u, _ := pick(a.users, x.a)
		return a.join(a.freshClient(u), x)
	case actReplay:
		h, ok := pick(a.handled, x.a)
		if !ok {
			return skip("nothing to replay")
		}
		var req proto.UpdateRoomRequest
		if err := wire.Unmarshal(h.body, &req); err != nil {
			return a.fail("test", "%v", err)
		}
		return a.expectRefusal(&UpdateRoom{From: h.from, Body: &req}, "a replayed handshake message")
	case actStale:
		if a.staleG == nil || a.staleG.Removed() {
			return skip("no stale state")
		}
		b, err := a.staleG.Commit(mls.CommitOptions{ForcePath: true, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
		if err != nil {
			return skip(err.Error())
		}
		a.staleG.DiscardPendingCommit()
		return a.expectRefusal(&UpdateRoom{From: a.stale.domain, Body: a.bundleOf(a.staleG, b)}, "a commit for a past epoch")
	case actWrongProvider:
		c, ok := pick(a.actors(), x.a)
		if !ok {
			return skip("nobody")
		}
		other, _ := pick([]string{"a.example", "b.example", "c.example", "d.example", "e.example"}, x.b)
		if other == c.domain {
			return skip("same provider")
		}
		return a.propose(c, other, action{kind: actUpdate})
	case actRevoke:
		c, ok := pick(a.memberClients(), x.a)
		if !ok {
			return skip("nobody")
		}
		from := c.domain
		if x.b%3 == 0 {
			from, _ = pick([]string{"a.example", "b.example", "c.example", "d.example"}, x.c)
		}
		return a.revoke(c, from)
	case actRace:
		return a.race(x)
	case actClaim:
		u, _ := pick(a.users, x.a)
		return a.claim(u)
	}
	return skip("unknown action")
}

// remember keeps an accepted request for replays (the last 32).
func (a *adv) remember(from string, body *proto.UpdateRoomRequest) {
	a.handled = append(a.handled, handled{from: from, body: wire.MustMarshal(body)})
	if len(a.handled) > 32 {
		a.handled = a.handled[1:]
	}
}

// expectRefusal applies a request that must be refused without a trace.
func (a *adv) expectRefusal(req Request, what string) result {
	before := a.state()
	out := a.apply(req)
	if out.Err == nil && out.Response.Code == proto.UpdateSuccess {
		return a.fail("refusal", "%s was accepted", what)
	}
	if len(out.Effects) != 0 || !bytes.Equal(before, a.state()) {
		return a.fail("refusal", "refusing %s changed the room", what)
	}
	return result{desc: fmt.Sprintf("refused %s (%s)", what, out.Response.Code)}
}

// refused checks a refusal left no trace.
func (a *adv) refusedCleanly(before []byte, out Outcome, what string) result {
	if len(out.Effects) != 0 || !bytes.Equal(before, a.state()) {
		return a.fail("refusal", "refusing %s changed the room", what)
	}
	desc := out.Response.Description
	if out.Err != nil {
		desc = out.Err.Error()
	}
	if len(desc) > 90 {
		desc = desc[:90] + "..."
	}
	return result{desc: fmt.Sprintf("refused %s: %s %s", what, out.Response.Code, desc)}
}

func (a *adv) say(c *client) result {
	m, err := c.group.Encrypt([]byte(fmt.Sprintf("step %d", a.step)), SenderHint(c.uri))
	if err != nil {
		return skip(err.Error())
	}
	before := a.state()
	out := a.apply(&ProvisionalMessage{From: c.domain, Message: transmit(a.t, m)})
	if out.Response.Code != proto.UpdateSuccess {
		return a.refusedCleanly(before, out, c.name+"'s message")
	}
	if !a.model.active(c.user) || !proto.Allows(a.model.policy.Send, a.model.roles(c.user)) {
		return a.fail("send", "%s's message was accepted, but %s may not send (roles %v)", c, c.user, a.model.roles(c.user))
	}
	if r := a.deliver(out, c); r.v != nil {
		return r
	}
	return result{desc: c.name + " says something", accepted: true}
}

// proposals builds what an action proposes, with c's group g.
func (a *adv) proposals(c *client, g *mls.Group, x action) ([]*mls.Proposal, string) {
	switch x.kind {
	case actLeave:
		ps := []*mls.Proposal{plp(nil, nil, c.user), mls.SelfRemoveProposal()}
		for l, leaf := range g.Tree().Members() {
			if u, _ := proto.URI(leaf.Credential.Identity).UserOf(); u == c.user && l != g.MyLeaf() {
				ps = append(ps, mls.RemoveProposal(l))
			}
		}
		return ps, "leaves"
	case actSelfRemove:
		return []*mls.Proposal{mls.SelfRemoveProposal()}, "removes itself"
	case actRemove:
		t, ok := pick(a.memberClients(), x.b)
		if !ok {
			return nil, ""
		}
		return []*mls.Proposal{mls.RemoveProposal(a.room.members.byClient[t.uri])}, "proposes removing " + t.name
	case actUpdate:
		return []*mls.Proposal{nil}, "updates its leaf" // nil: send uses ProposeUpdate, which keeps the new private key
	case actAddRef:
		u, _ := pick(a.users, x.b)
		n := a.freshClient(u)
		return []*mls.Proposal{mls.AddProposal(n.kp.KeyPackage)}, "proposes adding " + n.name
	case actPatch:
		p, desc := a.randomPatch(x)
		return []*mls.Proposal{p}, "proposes " + desc
	case actPolicy:
		ext, desc := a.randomExtensions(x)
		return []*mls.Proposal{mls.GroupContextExtensionsProposal(ext)}, "proposes a policy " + desc
	}
	return nil, ""
}

func (a *adv) randomPatch(x action) (*mls.Proposal, string) {
	u, _ := pick(a.users, x.b)
	rs := [][]proto.Role{
		roles(proto.RoleRegularUser), roles(proto.RoleBanned), roles(proto.RoleRegularUser, proto.RoleAdmin),
		roles(proto.RoleOwner), roles(proto.RoleVisitor), roles(proto.RoleAdmin),
	}
	r, _ := pick(rs, x.c)
	switch (x.c / 7) % 3 {
	case 0:
		return plp([]proto.UserRoles{{User: u, Roles: r}}, nil), fmt.Sprintf("adding %s as %v", u, r)
	case 1:
		return plp(nil, []proto.UserRoles{{User: u, Roles: r}}), fmt.Sprintf("making %s %v", u, r)
	}
	return plp(nil, nil, u), fmt.Sprintf("removing %s", u)
}

func (a *adv) randomExtensions(x action) (mls.Extensions, string) {
	p := a.model.policy
	desc := "change"
	switch x.b % 4 {
	case 0:
		p.JoinRule = 1 + (p.JoinRule % 2)
		desc = "join rule change"
	case 1:
		p.Ban = []proto.Role{proto.RoleOwner, proto.RoleAdmin}
		desc = "that lets admins ban"
	case 2:
		p.Send = []proto.Role{proto.RoleOwner, proto.RoleAdmin}
		desc = "that lets only owners and admins send"
	case 3:
		desc = "dropping the hub"
		return mls.Extensions{p.Extension()}, desc
	}
	return a.roomExtensions(p), desc
}

// propose sends what x proposes for c, from provider from (c's own, or
// another one playing a lying provider).
func (a *adv) propose(c *client, from string, x action) result {
	ps, desc := a.proposals(c, c.group, x)
	if ps == nil {
		return skip("nothing to propose")
	}
	return a.send(c, c.group, from, ps, desc)
}

// send has c propose ps with group g (its own, or an old copy of it: a
// client racing what it has not read yet) through provider from. A
// refusal leaves c's group as it was; an acceptance puts the proposals
// into c's own group.
func (a *adv) send(c *client, g *mls.Group, from string, ps []*mls.Proposal, desc string) result {
	saved := a.groupCopy(c)
	var msgs []*mls.Message
	for _, p := range ps {
		var m *mls.Message
		var err error
		if p == nil {
			m, err = g.ProposeUpdate()
		} else {
			m, err = g.Propose(p)
		}
		if err != nil {
			c.group = saved
			return skip(fmt.Sprintf("%s's library refuses: %v", c.name, err))
		}
		msgs = append(msgs, m)
	}
	body := transmit(a.t, &proto.UpdateRoomRequest{Message: msgs[0], MoreProposals: msgs[1:]})
	before := a.state()
	out := a.apply(&UpdateRoom{From: from, Body: body})
	what := fmt.Sprintf("%s (via %s) %s", c.name, from, desc)
	if out.Response.Code != proto.UpdateSuccess {
		c.group = saved
		return a.refusedCleanly(before, out, what)
	}
	if from != c.domain {
		return a.fail("provider", "%s sent a message of %s and was accepted", from, c)
	}
	if g != c.group {
		for _, m := range msgs {
			if _, err := c.group.Process(transmit(a.t, m)); err != nil {
				a.behind[c] = true // its own state refuses what its copy sent
			}
		}
	}
	a.remember(from, body)
	if r := a.deliver(out, c); r.v != nil {
		return r
	}
	return result{desc: "accepted: " + what, accepted: true}
}

// checkProposal checks an accepted member proposal against the model.
func (a *adv) checkProposal(res *mls.ProposalResult, sender proto.URI) *violation {
	user, _ := sender.UserOf()
	target := func(l mls.LeafIndex) proto.URI { return a.room.members.at(l).client }
	p := res.Proposal
	if !a.model.active(user) {
		ok := p.Type == mls.ProposalSelfRemove
		if p.Type == mls.ProposalRemove {
			tu, _ := target(p.Removed).UserOf()
			ok = tu == user
		}
		if !ok {
			return &violation{check: "lingering", msg: fmt.Sprintf("%s, not an active participant, got a %s accepted", sender, p.Type)}
		}
	}
	switch p.Type {
	case mls.ProposalRemove:
		t := target(p.Removed)
		if err := a.model.mayRemove(user, t, a.model.participants); err != nil {
			return &violation{check: "remove", msg: fmt.Sprintf("%s's Remove of %s was accepted: %v", sender, t, err)}
		}
		a.model.departing[t] = true
	case mls.ProposalSelfRemove:
		a.model.departing[sender] = true
	case proto.ProposalParticipantListPatch:
		patch, _, _ := proto.PatchOf(p, Config{}.maxVector())
		if isSelfRemoval(patch, user) {
			a.model.leaving[user] = true
		}
	}
	return nil
}

// checkHubProposal checks a proposal the hub made itself: it may only take
// out what the model says it was asked to.
func (a *adv) checkHubProposal(p *mls.Proposal) *violation {
	switch p.Type {
	case mls.ProposalRemove:
		t := a.room.members.at(p.Removed).client
		u, _ := t.UserOf()
		if a.model.revoked[t] || a.model.departing[t] || !a.model.active(u) {
			return nil
		}
		return &violation{check: "hub", msg: fmt.Sprintf("the hub proposed removing %s, which nobody asked for", t)}
	case proto.ProposalParticipantListPatch:
		patch, _, _ := proto.PatchOf(p, Config{}.maxVector())
		if len(patch.AddUsers)+len(patch.UpdateUsers) == 0 && len(patch.RemoveUsers) == 1 && a.model.leaving[patch.RemoveUsers[0]] {
			return nil
		}
		return &violation{check: "hub", msg: fmt.Sprintf("the hub proposed a patch nobody asked for: %+v", patch)}
	}
	return &violation{check: "hub", msg: "the hub proposed a " + p.Type.String()}
}

// mayRemove is the model's rule for removing client t by a client of user
// p, given the list after the commit's patches.
func (m *model) mayRemove(p proto.URI, t proto.URI, after map[proto.URI][]proto.Role) error {
	tu, _ := t.UserOf()
	switch {
	case tu == p:
		return nil
	case !m.active(p):
		return fmt.Errorf("%s is not active", p)
	}
	if r, ok := after[tu]; !ok || slices.Contains(r, proto.RoleBanned) {
		return nil
	}
	if !proto.Allows(m.policy.RemoveUsers, m.roles(p)) {
		return fmt.Errorf("%s may not remove users", p)
	}
	if rank(after[tu]) < rank(m.roles(p)) {
		return fmt.Errorf("%s outranks %s", tu, p)
	}
	return nil
}

// deliver hands out an accepted request's fanout: every addressed client
// that is up to date processes it (and must be able to), the shadow
// follower takes it, and the model checks each proposal.
func (a *adv) deliver(out Outcome, sender *client, welcome ...func()) result {
	for _, e := range out.Effects {
		m := e.Fanout.Message
		if m.WireFormat == mls.WireWelcome {
			for _, f := range welcome {
				f()
			}
			continue
		}
		if m.Public != nil && m.Public.Content.ContentType == mls.ContentProposal {
			res, err := a.shadow.ProcessProposal(transmit(a.t, m), a.now/1000, nil)
			if err != nil {
				return a.fail("shadow", "the shadow follower refuses a proposal the hub accepted: %v", err)
			}
			var v *violation
			if res.Sender.Type == mls.SenderExternal {
				v = a.checkHubProposal(res.Proposal)
			} else {
				v = a.checkProposal(res, a.room.members.at(mls.LeafIndex(res.Sender.Index)).client)
			}
			if v != nil {
				return result{v: v, desc: "VIOLATION " + v.Error()}
			}
		}
		commit := m.Public != nil && m.Public.Content.ContentType == mls.ContentCommit
		own := a.own(m, sender)
		for _, c := range a.clients {
			if c.group == nil || c.group.Removed() || a.behind[c] || own && c == sender {
				continue
			}
			_, member := a.room.members.byClient[c.uri]
			if commit && !member { // a commit also reaches the clients it removed
				member = slices.Contains(slices.Collect(maps.Values(a.leavesBefore)), c.uri)
			}
			if !member {
				continue
			}
			if !addressed(e, c) {
				a.behind[c] = true
				continue
			}
			if m.WireFormat == mls.WirePrivateMessage && !a.model.active(c.user) {
				return a.fail("receive", "%s, a client of a user who is not an active participant, receives an application message", c)
			}
			if _, err := c.group.Process(transmit(a.t, m)); err != nil {
				return a.fail("process", "%s cannot process message %d the hub fanned out: %v", c, e.Seq, err)
			}
		}
	}
	return result{}
}

func (a *adv) bundleOf(g *mls.Group, b *mls.CommitBundle) *proto.UpdateRoomRequest {
	body := &proto.UpdateRoomRequest{Message: b.Commit, Welcome: b.Welcome, GroupInfo: b.GroupInfo,
		RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeFull, Tree: wire.MustMarshal(g.Tree())}}
	return transmit(a.t, body)
}

// commit has c commit: what an honest member covers, a random subset of
// what is pending, or honest references plus a proposal by value.
func (a *adv) commit(c *client, x action) result {
	opts := mls.CommitOptions{ForcePath: x.b%2 == 0, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}}
	desc := "commits"
	var joiners []*client
	switch x.kind {
	case actCommitHonest:
		opts.References = CommitReferences(c.group, 0)
	case actCommitSubset:
		for i, pp := range c.group.PendingProposals() {
			if (x.c>>(i%16))&1 == 1 {
				opts.References = append(opts.References, pp.Ref)
			}
		}
		desc = fmt.Sprintf("commits %d pending proposals", len(opts.References))
	case actCommitByValue:
		opts.References = CommitReferences(c.group, 0)
		switch x.c % 6 {
		case 0, 1:
			u, _ := pick(a.users, x.b)
			n := a.freshClient(u)
			opts.Proposals = []*mls.Proposal{mls.AddProposal(n.kp.KeyPackage)}
			if x.c%6 == 1 {
				opts.Proposals = append(opts.Proposals, plp([]proto.UserRoles{{User: u, Roles: roles(proto.RoleRegularUser)}}, nil))
			}
			joiners = append(joiners, n)
			desc = "commits adding " + n.name
		case 2:
			t, ok := pick(a.memberClients(), x.b)
			if !ok {
				return skip("nobody")
			}
			opts.Proposals = []*mls.Proposal{mls.RemoveProposal(a.room.members.byClient[t.uri])}
			desc = "commits removing " + t.name
		case 3:
			p, d := a.randomPatch(x)
			opts.Proposals, desc = []*mls.Proposal{p}, "commits "+d
		case 4:
			ext, d := a.randomExtensions(x)
			opts.Proposals, desc = []*mls.Proposal{mls.GroupContextExtensionsProposal(ext)}, "commits a policy "+d
		case 5:
			opts.Proposals, opts.SkipListChecks = []*mls.Proposal{mls.SelfRemoveProposal()}, true
			desc = "commits its own SelfRemove by value"
		}
	}
	idBefore := a.identities()
	stale, staleG := c, a.groupCopy(c)
	b, err := c.group.Commit(opts)
	if err != nil {
		return skip(fmt.Sprintf("%s's library refuses: %v", c.name, err))
	}
	body := a.bundleOf(c.group, b)
	before := a.state()
	out := a.apply(&UpdateRoom{From: c.domain, Body: body})
	what := c.name + " " + desc
	if out.Response.Code != proto.UpdateSuccess {
		c.group.DiscardPendingCommit()
		return a.refusedCleanly(before, out, what)
	}
	c.group.MergePendingCommit()
	a.remember(c.domain, body)
	a.stale, a.staleG = stale, staleG
	if v := a.followCommit(body, idBefore, nil); v != nil {
		return result{v: v, desc: "VIOLATION " + v.Error()}
	}
	r := a.deliver(out, c, func() {
		for _, j := range joiners {
			if _, in := a.room.members.byClient[j.uri]; !in {
				continue
			}
			g, err := mls.JoinFromWelcome(body.Welcome.Welcome, j.kp, body.RatchetTree.Tree, a.groupOptions())
			if err != nil {
				a.t.Fatalf("%s joining: %v", j, err)
			}
			j.group = g
		}
	})
	if r.v != nil {
		return r
	}
	return result{desc: "accepted: " + what, accepted: true}
}

// identities maps the hub's leaves to clients.
func (a *adv) identities() map[mls.LeafIndex]proto.URI {
	out := map[mls.LeafIndex]proto.URI{}
	for l, m := range a.room.members.all() {
		out[l] = m.client
	}
	return out
}

// followCommit has the shadow follower process an accepted commit and
// checks every change it makes against the model, then advances the model.
func (a *adv) followCommit(body *proto.UpdateRoomRequest, ids map[mls.LeafIndex]proto.URI, joiner *client) *violation {
	res, err := a.shadow.ProcessCommit(transmit(a.t, body.Message), body.GroupInfo.GroupInfo, a.now/1000, nil)
	if err != nil {
		return &violation{check: "shadow", msg: fmt.Sprintf("the shadow follower refuses a commit the hub accepted: %v", err)}
	}
	m := &a.model
	userOf := func(s mls.Sender) (proto.URI, bool) { // the proposer's user; false for the hub
		switch s.Type {
		case mls.SenderMember:
			u, _ := ids[mls.LeafIndex(s.Index)].UserOf()
			return u, true
		case mls.SenderNewMemberCommit:
			return joiner.user, true
		}
		return "", false
	}
	committer, _ := userOf(mls.MemberSender(res.Committer))
	if res.External {
		committer = joiner.user
		r, listed := m.participants[joiner.user]
		switch {
		case listed && slices.Contains(r, proto.RoleBanned):
			return &violation{check: "join", msg: fmt.Sprintf("banned %s joined", joiner.user)}
		case !listed && m.policy.JoinRule != proto.Open:
			return &violation{check: "join", msg: fmt.Sprintf("%s, not a participant, joined a members-only room", joiner.user)}
		}
	} else if !m.active(committer) {
		return &violation{check: "commit", msg: fmt.Sprintf("%s, not an active participant, committed", committer)}
	}
	after := maps.Clone(m.participants)
	policy := m.policy
	for _, cp := range res.Proposals {
		proposer, member := userOf(cp.Sender)
		if cp.Ref == nil {
			proposer, member = committer, true
		}
		switch cp.Proposal.Type {
		case proto.ProposalParticipantListPatch:
			patch, _, err := proto.PatchOf(cp.Proposal, Config{}.maxVector())
			if err != nil {
				return &violation{check: "patch", msg: err.Error()}
			}
			if err := modelPatch(after, m.participants, &m.policy, proposer, !member, patch); err != nil {
				return &violation{check: "patch", msg: fmt.Sprintf("a patch by %s was accepted: %v", proposer, err)}
			}
		case mls.ProposalGroupContextExtensions:
			if member && !proto.Allows(m.policy.ChangePolicy, m.roles(proposer)) {
				return &violation{check: "policy", msg: fmt.Sprintf("%s changed the policy", proposer)}
			}
			if es, _ := mls.ExternalSendersOf(cp.Proposal.Extensions); len(es) != 1 {
				return &violation{check: "policy", msg: "a policy change dropped the hub's external sender"}
			}
			p, err := proto.PolicyOf(cp.Proposal.Extensions)
			if err != nil {
				return &violation{check: "policy", msg: err.Error()}
			}
			policy = *p
		case mls.ProposalAdd:
			u, _ := proto.URI(cp.Proposal.KeyPackage.LeafNode.Credential.Identity).UserOf()
			if member && u != proposer && !proto.Allows(m.policy.AddUsers, m.roles(proposer)) {
				return &violation{check: "add", msg: fmt.Sprintf("%s added a client of %s", proposer, u)}
			}
		}
	}
	if res.External {
		if _, listed := after[joiner.user]; !listed {
			after[joiner.user] = roles(proto.RoleRegularUser)
		}
	}
	for _, rm := range res.Removed {
		t := proto.URI(rm.Node.Credential.Identity)
		p, member := userOf(rm.Proposer)
		switch {
		case rm.SelfRemove || !member:
		case res.External && rm.Proposer.Type == mls.SenderNewMemberCommit:
			if tu, _ := t.UserOf(); tu != joiner.user {
				return &violation{check: "remove", msg: fmt.Sprintf("joiner %s removed %s", joiner.user, t)}
			}
		default:
			if err := m.mayRemove(p, t, after); err != nil {
				return &violation{check: "remove", msg: fmt.Sprintf("%s's removal of %s was committed: %v", p, t, err)}
			}
		}
		delete(m.revoked, t)
	}
	for _, ad := range res.Added {
		u, _ := proto.URI(ad.Node.Credential.Identity).UserOf()
		if r, ok := after[u]; !ok || slices.Contains(r, proto.RoleBanned) {
			return &violation{check: "add", msg: fmt.Sprintf("%s was added, but %s is not an active participant", ad.Node.Credential.Identity, u)}
		}
	}
	m.participants, m.policy = after, policy
	if !res.External {
		clear(m.departing)
		clear(m.leaving)
	}
	return nil
}

// modelPatch is the model's rule for a ParticipantListPatch by proposer
// (roles as of the start of the commit), written apart from the room's.
func modelPatch(after, before map[proto.URI][]proto.Role, policy *proto.BasePolicy, proposer proto.URI, hub bool, patch *proto.ParticipantListPatch) error {
	mine := before[proposer]
	may := func(allowed []proto.Role) bool { return hub || proto.Allows(allowed, mine) }
	grants := func(rs []proto.Role) error {
		for _, r := range rs {
			if !hub && r < rank(mine) {
				return fmt.Errorf("grants %s above %v", r, mine)
			}
		}
		return nil
	}
	for _, ad := range patch.AddUsers {
		if _, ok := after[ad.User]; ok || !may(policy.AddUsers) {
			return fmt.Errorf("may not add %s", ad.User)
		}
		if err := grants(ad.Roles); err != nil {
			return err
		}
		if slices.Contains(ad.Roles, proto.RoleBanned) && !may(policy.Ban) {
			return fmt.Errorf("may not ban %s", ad.User)
		}
		after[ad.User] = ad.Roles
	}
	for _, up := range patch.UpdateUsers {
		cur, ok := after[up.User]
		if !ok || !may(policy.ChangeRoles) || !hub && rank(cur) < rank(mine) {
			return fmt.Errorf("may not change %s", up.User)
		}
		if err := grants(up.Roles); err != nil {
			return err
		}
		if slices.Contains(cur, proto.RoleBanned) != slices.Contains(up.Roles, proto.RoleBanned) && !may(policy.Ban) {
			return fmt.Errorf("may not ban or unban %s", up.User)
		}
		after[up.User] = up.Roles
	}
	for _, u := range patch.RemoveUsers {
		cur, ok := after[u]
		if !ok {
			return fmt.Errorf("%s is not listed", u)
		}
		if slices.Contains(cur, proto.RoleBanned) && !may(policy.Ban) {
			return fmt.Errorf("removing banned %s lifts the ban", u)
		}
		if u != proposer && (!may(policy.RemoveUsers) || !hub && rank(cur) < rank(mine)) {
			return fmt.Errorf("may not remove %s", u)
		}
		delete(after, u)
	}
	return nil
}

// join has c join by external commit: honestly, or as a hostile joiner.
func (a *adv) join(c *client, x action) result {
	out := a.apply(&ClaimGroupInfo{From: c.domain, Body: &proto.GroupInfoRequest{SignatureKey: c.signer.PublicKey(), Credential: mls.BasicCredential([]byte(c.uri))}})
	if out.GroupInfo.Status != proto.GroupInfoSuccess {
		return result{desc: fmt.Sprintf("%s may not claim the GroupInfo", c.name)}
	}
	if r, ok := a.model.participants[c.user]; ok && slices.Contains(r, proto.RoleBanned) {
		return a.fail("claim", "banned %s got the GroupInfo", c.user)
	}
	resp := transmit(a.t, out.GroupInfo)
	opts := mls.ExternalJoinOptions{GroupOptions: a.groupOptions(), Credential: mls.BasicCredential([]byte(c.uri)), Capabilities: roomCaps,
		PendingSelfRemoves: resp.PendingProposals, Commit: mls.CommitOptions{GroupInfo: mls.GroupInfoOptions{ExternalPub: true}}}
	from, desc := c.domain, "joins"
	if x.kind == actJoinHostile {
		switch x.b % 4 {
		case 0:
			opts.ByValue, opts.Commit.SkipListChecks = []*mls.Proposal{mls.SelfRemoveProposal()}, true
			desc = "joins with a SelfRemove by value"
		case 1:
			opts.PendingSelfRemoves = nil
			desc = fmt.Sprintf("joins leaving out %d pending SelfRemoves", len(resp.PendingProposals))
		case 2:
			t, ok := pick(a.memberClients(), x.c)
			if !ok {
				return skip("nobody")
			}
			l := a.room.members.byClient[t.uri]
			opts.Resync = &l
			desc = "joins removing " + t.name
		case 3:
			from, _ = pick([]string{"a.example", "b.example", "c.example", "d.example", "e.example"}, x.c)
			desc = "joins through " + from
		}
	}
	g, b, err := mls.JoinExternal(resp.GroupInfo.GroupInfo, resp.RatchetTree.Bytes(), c.signer, opts)
	if err != nil {
		return skip(fmt.Sprintf("%s's library refuses: %v", c.name, err))
	}
	body := a.bundleOf(g, b)
	idBefore := a.identities()
	before := a.state()
	res := a.apply(&UpdateRoom{From: from, Body: body})
	what := c.name + " " + desc
	if res.Response.Code != proto.UpdateSuccess {
		return a.refusedCleanly(before, res, what)
	}
	g.MergePendingCommit()
	c.group = g
	if v := a.followCommit(body, idBefore, c); v != nil {
		return result{v: v, desc: "VIOLATION " + v.Error()}
	}
	if r := a.deliver(res, c); r.v != nil {
		return r
	}
	return result{desc: "accepted: " + what, accepted: true}
}

func (a *adv) revoke(c *client, from string) result {
	before := a.state()
	out := a.apply(&RemoveClients{From: from, Clients: []proto.URI{c.uri}})
	what := fmt.Sprintf("%s revokes %s", from, c.name)
	if out.Err != nil {
		return a.refusedCleanly(before, out, what)
	}
	if from != c.domain {
		return a.fail("revoke", "%s removed %s, a client of another provider", from, c)
	}
	a.model.revoked[c.uri] = true
	if r := a.deliver(out, nil); r.v != nil {
		return r
	}
	return result{desc: "accepted: " + what, accepted: true}
}

// race has two clients of one user leave at once, each from its state
// before the other's proposals (seed 6.5 run on two devices).
func (a *adv) race(x action) result {
	byUser := map[proto.URI][]*client{}
	for _, c := range a.actors() {
		if !a.behind[c] {
			byUser[c.user] = append(byUser[c.user], c)
		}
	}
	var pairs [][]*client
	for _, u := range slices.Sorted(maps.Keys(byUser)) {
		if cs := byUser[u]; len(cs) >= 2 {
			pairs = append(pairs, cs[:2])
		}
	}
	p, ok := pick(pairs, x.a)
	if !ok {
		return skip("no user with two clients")
	}
	copies := []*mls.Group{a.groupCopy(p[0]), a.groupCopy(p[1])}
	var descs []string
	accepted := false
	for i, c := range p {
		ps, desc := a.proposals(c, copies[i], action{kind: actLeave})
		r := a.send(c, copies[i], c.domain, ps, desc)
		if r.v != nil {
			return r
		}
		accepted = accepted || r.accepted
		descs = append(descs, r.desc)
	}
	return result{desc: "race: " + strings.Join(descs, " / "), accepted: accepted}
}

func (a *adv) claim(u proto.URI) result {
	c := a.freshClient(u)
	out := a.apply(&ClaimGroupInfo{From: c.domain, Body: &proto.GroupInfoRequest{SignatureKey: c.signer.PublicKey(), Credential: mls.BasicCredential([]byte(c.uri))}})
	r, listed := a.model.participants[u]
	allowed := listed && !slices.Contains(r, proto.RoleBanned) || !listed && a.model.policy.JoinRule == proto.Open
	if got := out.GroupInfo.Status == proto.GroupInfoSuccess; got != allowed {
		return a.fail("claim", "%s's claim for a new client: success %v, the model says %v", u, got, allowed)
	}
	return result{desc: fmt.Sprintf("%s claims the GroupInfo: %s", c.name, out.GroupInfo.Status)}
}

// checkState checks the invariants that hold after every step.
func (a *adv) checkState(stats *advStats) *violation {
	fail := func(check, format string, args ...any) *violation {
		return &violation{check: check, msg: fmt.Sprintf(format, args...)}
	}
	// The participant list is the model's.
	if got := a.room.Participants(); len(got) != len(a.model.participants) {
		return fail("participants", "the hub lists %d participants, the model %d", len(got), len(a.model.participants))
	} else {
		for _, p := range got {
			if !slices.Equal(p.Roles, a.model.participants[p.User]) {
				return fail("participants", "%s: hub %v, model %v", p.User, p.Roles, a.model.participants[p.User])
			}
		}
	}
	// The hub's members are the shadow follower's, and every up-to-date
	// member is in the hub's epoch with the hub's tree.
	if a.shadow.Epoch() != a.room.Epoch() || !bytes.Equal(wire.MustMarshal(a.shadow.Tree()), wire.MustMarshal(a.room.Group().Tree())) {
		return fail("membership", "the shadow follower and the hub disagree on the group")
	}
	n := 0
	for l, leaf := range a.room.Group().Tree().Members() {
		n++
		if m, ok := a.room.members.get(l); !ok || string(m.client) != string(leaf.Credential.Identity) {
			return fail("membership", "the hub's index has %q at leaf %d, its tree %q", m.client, l, leaf.Credential.Identity)
		}
	}
	if n != a.room.members.count {
		return fail("membership", "the hub indexes %d members, its tree has %d", a.room.members.count, n)
	}
	hubCtx := a.room.Group().GroupContext()
	for _, c := range a.clients {
		_, member := a.room.members.byClient[c.uri]
		switch {
		case c.group == nil || a.behind[c]:
		case c.group.Removed():
			if member {
				return fail("membership", "%s learned it was removed but is still in the hub's group", c)
			}
		case member:
			ctx := c.group.GroupContext()
			if !ctx.Equal(&hubCtx) {
				return fail("membership", "%s is at epoch %d, the hub at %d, or their contexts differ", c, ctx.Epoch, hubCtx.Epoch)
			}
		}
	}
	// The derived queue index is the queue's.
	live := a.room.qindex
	a.room.reindexQueue()
	if !maps.EqualFunc(live.leaves, a.room.qindex.leaves, bytes.Equal) || !maps.EqualFunc(live.users, a.room.qindex.users, bytes.Equal) {
		return fail("queue", "the queue's index drifted from the queue")
	}
	// Every client of a user who is not an active participant is queued
	// for removal by the hub.
	queued := a.room.queuedRemovals()
	for l, m := range a.room.members.all() {
		if !a.model.active(m.user) && !queued[l] {
			return fail("lingering", "%s's user is not an active participant, and nothing removes it", m.client)
		}
	}
	if v := a.checkCommittable(stats); v != nil {
		return v
	}
	return a.checkJoinable(stats)
}

// checkCommittable is the no-wedge invariant: some active member, not on
// its way out, can make a commit the hub accepts. It tries on a copy of the
// room.
func (a *adv) checkCommittable(stats *advStats) *violation {
	queued := a.room.queuedRemovals()
	state := a.state()
	for _, c := range a.memberClients() {
		if !a.model.active(c.user) || c.group == nil || c.group.Removed() || a.behind[c] || queued[a.room.members.byClient[c.uri]] {
			continue
		}
		stats.commitChecks++
		b, err := c.group.Commit(mls.CommitOptions{References: QueuedReferences(c.group, 0), ForcePath: true, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
		if err != nil {
			return &violation{check: "wedge", msg: fmt.Sprintf("%s cannot build a commit of the queued proposals: %v", c, err)}
		}
		body := a.bundleOf(c.group, b)
		c.group.DiscardPendingCommit()
		copy, err := Restore(a.cfg(), state)
		if err != nil {
			return &violation{check: "determinism", msg: fmt.Sprintf("the room does not restore: %v", err)}
		}
		out := copy.Apply(&UpdateRoom{From: c.domain, Body: body}, a.now+500)
		if out.Response.Code != proto.UpdateSuccess {
			return &violation{check: "wedge", msg: fmt.Sprintf("the room is wedged: %s's commit of what is queued is refused: %s %s", c, out.Response.Code, out.Response.Description)}
		}
		return nil
	}
	return nil
}

// checkJoinable: a joiner the policy admits can join by external commit
// (a new client of an active participant, or anyone in an open room).
func (a *adv) checkJoinable(stats *advStats) *violation {
	var user proto.URI
	if a.model.policy.JoinRule == proto.Open {
		user = proto.UserURI("e.example", "newcomer")
	} else {
		for _, u := range slices.Sorted(maps.Keys(a.model.participants)) {
			if a.model.active(u) && (a.model.policy.MultipleClients || len(a.room.members.clientsOf(u)) == 0) {
				user = u
				break
			}
		}
	}
	if user == "" || !a.model.policy.MultipleClients && len(a.room.members.clientsOf(user)) > 0 {
		return nil
	}
	stats.joinChecks++
	state := a.state()
	copy, err := Restore(a.cfg(), state)
	if err != nil {
		return &violation{check: "determinism", msg: err.Error()}
	}
	id, _ := user.Parse()
	signer, _ := a.suite.GenerateSigningKey()
	c := &client{name: "joiner", uri: proto.ClientURI(id.Domain, id.User, "joincheck"), user: user, domain: id.Domain, signer: signer}
	out := copy.Apply(&ClaimGroupInfo{From: c.domain, Body: &proto.GroupInfoRequest{SignatureKey: signer.PublicKey(), Credential: mls.BasicCredential([]byte(c.uri))}}, a.now+500)
	if out.GroupInfo.Status != proto.GroupInfoSuccess {
		return &violation{check: "join", msg: fmt.Sprintf("%s may join but gets no GroupInfo: %s", user, out.GroupInfo.Status)}
	}
	resp := transmit(a.t, out.GroupInfo)
	g, b, err := mls.JoinExternal(resp.GroupInfo.GroupInfo, resp.RatchetTree.Bytes(), signer, mls.ExternalJoinOptions{GroupOptions: a.groupOptions(),
		Credential: mls.BasicCredential([]byte(c.uri)), Capabilities: roomCaps, PendingSelfRemoves: resp.PendingProposals,
		Commit: mls.CommitOptions{GroupInfo: mls.GroupInfoOptions{ExternalPub: true}}})
	if err != nil {
		return &violation{check: "join", msg: fmt.Sprintf("%s cannot build an external commit: %v", user, err)}
	}
	res := copy.Apply(&UpdateRoom{From: c.domain, Body: a.bundleOf(g, b)}, a.now+600)
	if res.Response.Code != proto.UpdateSuccess {
		return &violation{check: "join", msg: fmt.Sprintf("%s may join, but its external commit is refused: %s %s", user, res.Response.Code, res.Response.Description)}
	}
	return nil
}

// checkDeterminism replays the sequence's log into two fresh rooms: both
// must reach the live room's state byte for byte with the same answers,
// and the state must restore to itself.
func (a *adv) checkDeterminism() *violation {
	final := a.state()
	for run := range 2 {
		var r *Room
		for i, e := range a.log {
			if e.create != nil {
				var err error
				if r, err = Create(a.cfg(), *e.create, e.at); err != nil {
					return &violation{check: "determinism", msg: err.Error()}
				}
				continue
			}
			r.Apply(e.req, e.at)
			_ = i
		}
		if !bytes.Equal(wire.MustMarshal(r), final) {
			return &violation{check: "determinism", msg: fmt.Sprintf("replay %d of the log differs from the live room", run)}
		}
	}
	restored, err := Restore(a.cfg(), final)
	if err != nil || !bytes.Equal(wire.MustMarshal(restored), final) {
		return &violation{check: "determinism", msg: fmt.Sprintf("the state does not restore to itself: %v", err)}
	}
	return nil
}
