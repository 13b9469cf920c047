package hub_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// step runs one step of a scenario as a subtest and stops the scenario at
// the first failed step: later steps build on its state.
func step(t *testing.T, name string, fn func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, fn) {
		t.FailNow()
	}
}

// opCtx bounds one client operation.
func opCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testutil.Wait)
	t.Cleanup(cancel)
	return ctx
}

func must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// party is one MLS client of the scenario: a client.Member on its
// provider, and the transcript of everything its stream showed it, one
// line per event (see line).
type party struct {
	name     string
	provider *testutil.Provider
	m        *client.Member

	mu     sync.Mutex
	log    []string
	events []client.Event
	read   int // lines already matched by see
}

// newParty registers user/device at p (with profile) and uploads two
// KeyPackages and a last-resort one.
func newParty(t *testing.T, p *testutil.Provider, user, device string, profile []proto.ProfileField) *party {
	t.Helper()
	ctx := opCtx(t)
	api := p.NewUser(t)
	if _, err := api.Register(ctx, user, device, profile); err != nil {
		t.Fatalf("register %s/%s at %s: %v", user, device, p.Domain, err)
	}
	m, err := client.NewMember(api, client.MemberConfig{})
	must(t, err, "new member")
	must(t, m.UploadKeyPackages(ctx, 2, true), "upload KeyPackages of "+user)
	return &party{name: user + "/" + device, provider: p, m: m}
}

// linkParty adds device to by's user the way people do: the new device
// asks to be linked and shows a code, by approves it; then it uploads
// KeyPackages like newParty.
func linkParty(t *testing.T, by *party, device string) *party {
	t.Helper()
	ctx := opCtx(t)
	api := by.provider.NewUser(t)
	id, _ := by.m.User().Parse()
	req, err := api.RequestLink(ctx, id.User, device)
	must(t, err, "link request of "+id.User+"/"+device)
	added, err := by.m.API().ApproveLink(ctx, req.Code)
	must(t, err, "approve "+device)
	if added != req.Client {
		t.Fatalf("approved %s, want %s", added, req.Client)
	}
	_, err = api.WaitLinked(ctx, req, 10*time.Millisecond)
	must(t, err, "wait linked")
	m, err := client.NewMember(api, client.MemberConfig{})
	must(t, err, "new member")
	must(t, m.UploadKeyPackages(ctx, 2, true), "upload KeyPackages of "+device)
	return &party{name: id.User + "/" + device, provider: by.provider, m: m}
}

func (p *party) String() string { return p.name }

// short names a user ("bob") or client ("bob/laptop") without its domain.
func short(u proto.URI) string {
	id, err := u.Parse()
	if err != nil {
		return string(u)
	}
	if id.Kind == proto.KindClient {
		return id.User + "/" + id.Device
	}
	if id.Kind == proto.KindRoom {
		return id.Room
	}
	return id.User
}

// roles names roles as "regular_user,admin".
func roles(rs []proto.Role) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.String())
	}
	return strings.Join(s, ",")
}

// line is an event in a transcript:
//
//	msg alice/phone hello
//	commit bob/laptop e3 +@cathy[regular_user,admin] +cathy/laptop
//	commit cathy/laptop e7 -@bob -bob/laptop -bob/phone
//	commit cathy/tablet e9 external
//	proposal bob/phone self_remove
//	joined e1 / removed
//	consent grant bob doug room1 (requester, target, room or "any")
//
// Participant list changes come first (+@user[roles] added, -@user
// removed, ~@user[roles] changed), then the clients added and removed,
// each group sorted.
func line(e client.Event) string {
	switch e.Kind {
	case client.EventMessage:
		return fmt.Sprintf("msg %s %s", short(e.Sender), e.Text)
	case client.EventCommit:
		s := fmt.Sprintf("commit %s e%d", short(e.Sender), e.Epoch)
		var plp, added, removed []string
		for _, p := range e.Patches {
			for _, u := range p.AddUsers {
				plp = append(plp, fmt.Sprintf("+@%s[%s]", short(u.User), roles(u.Roles)))
			}
			for _, u := range p.RemoveUsers {
				plp = append(plp, "-@"+short(u))
			}
			for _, u := range p.UpdateUsers {
				plp = append(plp, fmt.Sprintf("~@%s[%s]", short(u.User), roles(u.Roles)))
			}
		}
		for _, c := range e.Added {
			added = append(added, "+"+short(c))
		}
		for _, c := range e.Removed {
			removed = append(removed, "-"+short(c))
		}
		slices.Sort(plp)
		slices.Sort(added)
		slices.Sort(removed)
		for _, part := range [][]string{plp, added, removed} {
			if len(part) > 0 {
				s += " " + strings.Join(part, " ")
			}
		}
		if e.Commit != nil && e.Commit.External {
			s += " external"
		}
		return s
	case client.EventProposal:
		what := "?"
		if e.Proposal != nil && e.Proposal.Proposal != nil {
			what = e.Proposal.Proposal.Type.String()
			if e.Proposal.Proposal.Type == proto.ProposalParticipantListPatch {
				what = "plp"
			}
		}
		return fmt.Sprintf("proposal %s %s", short(e.Sender), what)
	case client.EventJoined:
		return fmt.Sprintf("joined e%d", e.Epoch)
	case client.EventRemoved:
		return "removed"
	case client.EventConsent:
		return consentLine(e.Consent)
	}
	return fmt.Sprintf("%s seq %d: %v", e.Kind, e.Seq, e.Err)
}

// consentLine names a consent entry as line does.
func consentLine(c *proto.ConsentEntry) string {
	room := "any"
	if c.Room != nil {
		room = short(*c.Room)
	}
	return fmt.Sprintf("consent %s %s %s %s", c.Operation, short(c.Requester), short(c.Target), room)
}

// msg is the line of an application message from p.
func msg(from *party, text string) string { return fmt.Sprintf("msg %s %s", from.name, text) }

// syncOnce reads the party's stream once, waiting up to wait for an item,
// and appends what it found to the transcript. Error events fail the test.
func (p *party) syncOnce(t testing.TB, ctx context.Context, wait time.Duration) {
	t.Helper()
	events, err := p.m.SyncWait(ctx, wait)
	if err != nil {
		t.Fatalf("%s: sync: %v", p, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range events {
		if e.Kind == client.EventError || e.Kind == client.EventGap {
			t.Fatalf("%s: stream item %d: %s: %v", p, e.Seq, e.Kind, e.Err)
		}
		p.log = append(p.log, line(e))
		p.events = append(p.events, e)
	}
}

// await reads the stream until the transcript holds n lines not yet
// matched, and returns those lines and their events.
func (p *party) await(t testing.TB, n int) ([]string, []client.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testutil.Wait)
	defer cancel()
	for {
		p.mu.Lock()
		have := len(p.log) - p.read
		p.mu.Unlock()
		if have >= n {
			break
		}
		if ctx.Err() != nil {
			p.mu.Lock()
			defer p.mu.Unlock()
			t.Fatalf("%s: waiting for %d lines, got %d: %q", p, n, have, p.log[p.read:])
		}
		p.syncOnce(t, ctx, time.Second)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	lines := slices.Clone(p.log[p.read : p.read+n])
	events := slices.Clone(p.events[p.read : p.read+n])
	p.read += n
	return lines, events
}

// see waits until the party's stream showed exactly want next, in order.
func (p *party) see(t testing.TB, want ...string) []client.Event {
	t.Helper()
	got, events := p.await(t, len(want))
	if !slices.Equal(got, want) {
		t.Fatalf("%s saw\n\t%s\nwant\n\t%s", p, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
	return events
}

// quiet checks the party's stream holds nothing unread now.
func (p *party) quiet(t testing.TB) {
	t.Helper()
	p.syncOnce(t, opCtx(t), 0)
	p.mu.Lock()
	defer p.mu.Unlock()
	if extra := p.log[p.read:]; len(extra) > 0 {
		t.Fatalf("%s saw unexpected events: %q", p, extra)
	}
}

// world tracks who is in the room and what each party must see next.
type world struct {
	room proto.URI
	// in lists the parties whose clients are in the room's MLS group.
	in []*party
	// want holds the lines each party must see at the next check.
	want map[*party][]string
	// all lists every party, for the final quiet check.
	all []*party
}

func newWorld(parties ...*party) *world {
	return &world{want: map[*party][]string{}, all: parties}
}

// join adds parties to the room's member set.
func (w *world) join(ps ...*party) { w.in = append(w.in, ps...) }

// leave removes parties from the room's member set.
func (w *world) leave(ps ...*party) {
	w.in = slices.DeleteFunc(w.in, func(p *party) bool { return slices.Contains(ps, p) })
}

// expect adds a line every member of the room but the listed ones must
// see.
func (w *world) expect(l string, except ...*party) {
	for _, p := range w.in {
		if !slices.Contains(except, p) {
			w.want[p] = append(w.want[p], l)
		}
	}
}

// expectOnly adds lines some parties must see.
func (w *world) expectOnly(ps []*party, lines ...string) {
	for _, p := range ps {
		w.want[p] = append(w.want[p], lines...)
	}
}

// say sends an application message from p and expects every other member
// to receive it.
func (w *world) say(t testing.TB, p *party, text string) {
	t.Helper()
	must(t, p.m.Send(opCtx(t), w.room, []byte(text)), p.name+" sends")
	w.expect(msg(p, text), p)
}

// check makes every party see what it must (skipping the listed ones,
// whose expectations stay for later), then checks nobody checked saw more.
func (w *world) check(t testing.TB, skip ...*party) {
	t.Helper()
	for _, p := range w.all {
		if slices.Contains(skip, p) {
			continue
		}
		if lines := w.want[p]; len(lines) > 0 {
			p.see(t, lines...)
		}
		delete(w.want, p)
		p.quiet(t)
	}
}

// sameMembers checks every member's view of the group lists the same
// clients in the same leaf order, and returns it.
func (w *world) sameMembers(t testing.TB) []proto.URI {
	t.Helper()
	var first []proto.URI
	for i, p := range w.in {
		got, err := p.m.Members(w.room)
		must(t, err, p.name+" members")
		if i == 0 {
			first = got
			continue
		}
		if !slices.Equal(got, first) {
			t.Fatalf("%s sees members %v, %s sees %v", p, got, w.in[0], first)
		}
	}
	return first
}

// sameEpoch checks every member is at epoch.
func (w *world) sameEpoch(t testing.TB, epoch uint64) {
	t.Helper()
	for _, p := range w.in {
		if got, ok := p.m.Epoch(w.room); !ok || got != epoch {
			t.Fatalf("%s is at epoch %d (in room: %v), want %d", p, got, ok, epoch)
		}
	}
}

// roomWant is what the hub's description of a room must say.
type roomWant struct {
	epoch        uint64
	members      int
	providers    []string
	participants map[string]string // short user -> roles
}

// checkRoom reads the room through a participant's client API (relayed
// nowhere: only the hub describes a room, so p must be the hub's client).
func checkRoom(t testing.TB, p *party, room proto.URI, want roomWant) *client.RoomInfo {
	t.Helper()
	info, err := p.m.API().Room(opCtx(t), room)
	must(t, err, "room info")
	got := map[string]string{}
	for _, pt := range info.Participants {
		got[short(pt.User)] = roles(pt.Roles)
	}
	if info.Epoch != want.epoch || info.Members != want.members || !slices.Equal(info.Providers, want.providers) || !mapsEqual(got, want.participants) {
		t.Fatalf("room %s: epoch %d, %d members, providers %v, participants %v; want epoch %d, %d members, providers %v, participants %v",
			room, info.Epoch, info.Members, info.Providers, got, want.epoch, want.members, want.providers, want.participants)
	}
	return info
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// userRoles is a ParticipantListPatch entry.
func userRoles(p *party, rs ...proto.Role) proto.UserRoles {
	return proto.UserRoles{User: p.m.User(), Roles: rs}
}

// containsConsent reports whether list holds an entry as consentLine
// names it.
func containsConsent(list []proto.ConsentEntry, want string) bool {
	return slices.ContainsFunc(list, func(e proto.ConsentEntry) bool { return consentLine(&e) == want })
}

// consentLists returns a party's consent lists as lines.
func consentLists(t testing.TB, p *party) *client.ConsentLists {
	t.Helper()
	l, err := p.m.API().ConsentList(opCtx(t))
	must(t, err, p.name+" consent list")
	return l
}

// mlsMessage decodes an MLSMessage or fails.
func mlsMessage(t testing.TB, b []byte) *mls.Message {
	t.Helper()
	m, err := mls.DecodeMessage(b)
	must(t, err, "decode MLSMessage")
	return m
}
