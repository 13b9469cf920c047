package room

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// The test world: providers a, b, c, d .example; the hub is a.example. Time
// starts inside every KeyPackage's lifetime and moves a second per request.
const (
	hub       = "a.example"
	startTime = 1_700_000_000_000 // ms
)

var roomURI = proto.RoomURI(hub, "clubhouse")

// client is a MIMI user's device with a real MLS client.
type client struct {
	name   string
	uri    proto.URI
	user   proto.URI
	domain string
	signer *mls.SigningKey
	kp     *mls.KeyPackageBundle
	group  *mls.Group
}

func (c *client) String() string { return c.name }

// loggedRequest is a request as the FSM would log it, for replay.
type loggedRequest struct {
	create *CreateRequest
	req    Request
	at     uint64
}

type world struct {
	t       testing.TB
	suite   *mls.Suite
	keys    *HubKeys // nil: a hub without external-sender keys (rooms from before them)
	plant   plant    // a rule switched off (mimi_plant builds only)
	room    *Room
	now     uint64
	clients []*client
	log     []loggedRequest
}

// testHubSecret is the hub's external-sender secret in tests.
var testHubSecret = make([]byte, HubSecretSize)

func newWorld(t testing.TB) *world {
	t.Helper()
	s, err := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := NewHubKeys(hub, testHubSecret)
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, suite: s, keys: keys, now: startTime}
}

// cfg is the hub's room configuration.
func (w *world) cfg() Config { return Config{Hub: hub, Keys: w.keys, plant: w.plant} }

// hubExtensions are the GroupContext extensions a new room needs besides
// its policy: the hub as external sender (none without keys).
func (w *world) hubExtensions() mls.Extensions {
	if w.keys == nil {
		return nil
	}
	es, _ := w.keys.Sender(w.suite.ID())
	return mls.Extensions{mls.ExternalSendersExtension(mls.ExternalSenders{es})}
}

var roomCaps = mls.Capabilities{
	Proposals:  []mls.ProposalType{proto.ProposalParticipantListPatch, mls.ProposalSelfRemove},
	Extensions: []mls.ExtensionType{proto.ExtBasePolicy},
}

func (w *world) lifetime() mls.Lifetime {
	s := w.now / 1000
	return mls.Lifetime{NotBefore: s - 60, NotAfter: s + 30*86400}
}

func (w *world) groupOptions() mls.GroupOptions {
	return mls.GroupOptions{Config: MLSConfig(0), Now: func() uint64 { return w.now / 1000 }}
}

// newClient makes device of user at domain, with a fresh KeyPackage.
func (w *world) newClient(domain, user, device string) *client {
	w.t.Helper()
	signer, err := w.suite.GenerateSigningKey()
	if err != nil {
		w.t.Fatal(err)
	}
	c := &client{name: user + "/" + device, uri: proto.ClientURI(domain, user, device), user: proto.UserURI(domain, user), domain: domain, signer: signer}
	c.kp = w.keyPackage(c)
	w.clients = append(w.clients, c)
	return c
}

func (w *world) keyPackage(c *client) *mls.KeyPackageBundle {
	w.t.Helper()
	kp, err := mls.NewKeyPackage(w.suite, c.signer, mls.KeyPackageOptions{
		Credential: mls.BasicCredential([]byte(c.uri)), Capabilities: roomCaps, Lifetime: w.lifetime(),
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return kp
}

// transmit passes a value through its encoding, as the network would.
func transmit[T any, P interface {
	*T
	wire.Encoder
	wire.Decoder
}](t testing.TB, v P) P {
	t.Helper()
	out := P(new(T))
	if err := wire.Unmarshal(wire.MustMarshal(v), out); err != nil {
		t.Fatalf("re-decode %T: %v", v, err)
	}
	return out
}

// create has c create the room with policy.
func (w *world) create(c *client, policy proto.BasePolicy) {
	w.t.Helper()
	g, err := mls.CreateGroup(w.suite, c.signer, mls.CreateOptions{
		GroupOptions: w.groupOptions(), GroupID: []byte(roomURI), Extensions: append(mls.Extensions{policy.Extension()}, w.hubExtensions()...),
		Credential: mls.BasicCredential([]byte(c.uri)), Capabilities: roomCaps, Lifetime: w.lifetime(),
	})
	if err != nil {
		w.t.Fatal(err)
	}
	c.group = g
	gi, err := g.GroupInfo(mls.GroupInfoOptions{ExternalPub: true})
	if err != nil {
		w.t.Fatal(err)
	}
	req := CreateRequest{Room: roomURI, Creator: c.user, GroupInfo: transmit(w.t, gi).GroupInfo, Tree: wire.MustMarshal(g.Tree())}
	r, err := Create(w.cfg(), req, w.now)
	if err != nil {
		w.t.Fatalf("create: %v", err)
	}
	w.room = r
	w.log = append(w.log, loggedRequest{create: &req, at: w.now})
}

// apply runs a request at the next millisecond tick and logs it.
func (w *world) apply(req Request) Outcome {
	w.now += 1000
	w.log = append(w.log, loggedRequest{req: req, at: w.now})
	return w.room.Apply(req, w.now)
}

// bundle turns a commit into an updateRoom body with the full tree.
func (w *world) bundle(c *client, b *mls.CommitBundle) *proto.UpdateRoomRequest {
	body := &proto.UpdateRoomRequest{Message: b.Commit, Welcome: b.Welcome, GroupInfo: b.GroupInfo,
		RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeFull, Tree: wire.MustMarshal(c.group.Tree())}}
	return transmit(w.t, body)
}

// commit has c commit opts, sends the bundle as from (c's provider unless
// overridden), and returns the outcome. On success the commit is delivered
// to every member and the joiners join.
func (w *world) commit(c *client, opts mls.CommitOptions, joiners ...*client) Outcome {
	w.t.Helper()
	return w.commitFrom(c.domain, c, opts, joiners...)
}

func (w *world) commitFrom(from string, c *client, opts mls.CommitOptions, joiners ...*client) Outcome {
	w.t.Helper()
	opts.GroupInfo.ExternalPub = true
	b, err := c.group.Commit(opts)
	if err != nil {
		w.t.Fatalf("%s commit: %v", c, err)
	}
	body := w.bundle(c, b)
	out := w.apply(&UpdateRoom{From: from, Body: body})
	if out.Response.Code != proto.UpdateSuccess {
		c.group.DiscardPendingCommit()
		return out
	}
	c.group.MergePendingCommit()
	w.deliver(out, c, func() {
		for _, j := range joiners {
			// The joiner fetches the tree by reference, as itself.
			view, err := w.room.WelcomeTree(j.domain, j.uri, ref(w.t, j))
			if err != nil {
				w.t.Fatalf("%s fetching its tree: %v", j, err)
			}
			g, err := mls.JoinFromWelcome(body.Welcome.Welcome, j.kp, view.Bytes(), w.groupOptions())
			if err != nil {
				w.t.Fatalf("%s joining: %v", j, err)
			}
			j.group = g
		}
	})
	return out
}

// honestRefs are the pending proposals an honest member c covers in a
// commit.
func (w *world) honestRefs(c *client) [][]byte { return CommitReferences(c.group, 0) }

// members returns the clients in the group, by the hub's index.
func (w *world) members() []*client {
	var out []*client
	for _, c := range w.clients {
		if _, ok := w.room.members.byClient[c.uri]; ok && c.group != nil {
			out = append(out, c)
		}
	}
	return out
}

// deliver hands the fanout of a successful request to every member client
// other than the sender, checking the hub addressed each one's provider;
// welcome, if not nil, runs at the Welcome (the new members join there, so
// they get what follows it).
func (w *world) deliver(out Outcome, sender *client, welcome ...func()) {
	w.t.Helper()
	for _, e := range out.Effects {
		if e.Fanout.Message.WireFormat == mls.WireWelcome {
			for _, f := range welcome {
				f()
			}
			continue
		}
		for _, c := range w.clients {
			if c.group == nil || c.group.Removed() || !addressed(e, c) {
				continue
			}
			m := transmit(w.t, e.Fanout.Message)
			if _, err := c.group.Process(m); err != nil {
				w.t.Fatalf("%s processing fanout %d: %v", c, e.Seq, err)
			}
		}
	}
}

// addressed reports whether an effect reaches client c.
func addressed(e Effect, c *client) bool {
	for _, rc := range e.To {
		if rc.Domain == c.domain {
			for _, x := range rc.Exclude {
				if x == c.uri {
					return false
				}
			}
			return true
		}
	}
	return false
}

// propose sends c's proposals in one updateRoom request.
func (w *world) propose(c *client, ps ...*mls.Proposal) Outcome {
	w.t.Helper()
	return w.proposeFrom(c, c.group, ps...)
}

// groupCopy copies c's group as it is now, so a test can later play c from
// this state (a lagging or hostile client that ignores what came since).
func (w *world) groupCopy(c *client) *mls.Group {
	w.t.Helper()
	g, err := mls.RestoreGroup(wire.MustMarshal(c.group), w.groupOptions())
	if err != nil {
		w.t.Fatal(err)
	}
	return g
}

// proposeFrom sends proposals c makes with group g in one updateRoom
// request; on success the others receive them.
func (w *world) proposeFrom(c *client, g *mls.Group, ps ...*mls.Proposal) Outcome {
	w.t.Helper()
	var msgs []*mls.Message
	for _, p := range ps {
		m, err := g.Propose(p)
		if err != nil {
			w.t.Fatalf("%s propose %s: %v", c, p.Type, err)
		}
		msgs = append(msgs, m)
	}
	body := transmit(w.t, &proto.UpdateRoomRequest{Message: msgs[0], MoreProposals: msgs[1:]})
	out := w.apply(&UpdateRoom{From: c.domain, Body: body})
	if out.Response.Code == proto.UpdateSuccess {
		if g != c.group {
			// c proposed from an old copy of its state: its own state
			// takes the proposals now, as its copy did.
			for _, m := range msgs {
				if _, err := c.group.Process(transmit(w.t, m)); err != nil {
					w.t.Fatalf("%s adopting its own proposal: %v", c, err)
				}
			}
		}
		w.deliver(out, c)
	}
	return out
}

// say sends an application message from c.
func (w *world) say(c *client, text string) Outcome {
	w.t.Helper()
	m, err := c.group.Encrypt([]byte(text), SenderHint(c.uri))
	if err != nil {
		w.t.Fatal(err)
	}
	out := w.apply(&ProvisionalMessage{From: c.domain, Message: transmit(w.t, m)})
	if out.Response.Code == proto.UpdateSuccess {
		for _, e := range out.Effects {
			for _, r := range w.members() {
				if r == c || !addressed(e, r) {
					continue
				}
				got, err := r.group.Process(transmit(w.t, e.Fanout.Message))
				if err != nil || string(got.ApplicationData) != text {
					w.t.Fatalf("%s reading %s: %q, %v", r, c, got.ApplicationData, err)
				}
				if string(got.AuthenticatedData) != string(c.uri) {
					w.t.Fatalf("%s: sender hint %q does not name the sender %s", r, got.AuthenticatedData, c)
				}
			}
		}
	}
	return out
}

// must fails the test unless out succeeded.
func (w *world) must(out Outcome, what string) Outcome {
	w.t.Helper()
	if out.Response.Code != proto.UpdateSuccess || out.Err != nil {
		w.t.Fatalf("%s: %s %q %v", what, out.Response.Code, out.Response.Description, out.Err)
	}
	return out
}

// refused checks out was refused with code, and that the room is as it was.
func (w *world) refused(before []byte, out Outcome, code proto.UpdateResponseCode, what string) {
	w.t.Helper()
	if out.Response.Code != code {
		w.t.Fatalf("%s: got %s (%q), want %s", what, out.Response.Code, out.Response.Description, code)
	}
	if len(out.Effects) != 0 {
		w.t.Fatalf("%s: a refused request has effects", what)
	}
	if !bytes.Equal(before, wire.MustMarshal(w.room)) {
		w.t.Fatalf("%s: a refused request changed the room", what)
	}
}

func (w *world) state() []byte { return wire.MustMarshal(w.room) }

// plp builds a participant list patch proposal.
func plp(add []proto.UserRoles, update []proto.UserRoles, remove ...proto.URI) *mls.Proposal {
	return (&proto.ParticipantListPatch{AddUsers: add, UpdateUsers: update, RemoveUsers: remove}).Proposal()
}

func roles(rs ...proto.Role) []proto.Role { return rs }

func adds(cs ...*client) []*mls.Proposal {
	var out []*mls.Proposal
	for _, c := range cs {
		out = append(out, mls.AddProposal(c.kp.KeyPackage))
	}
	return out
}

func (w *world) leafOf(c *client) mls.LeafIndex {
	l, ok := w.room.members.byClient[c.uri]
	if !ok {
		w.t.Fatalf("%s is not a member", c)
	}
	return l
}

func (w *world) participant(u proto.URI) string {
	if p := w.room.participants.get(u); p != nil {
		return fmt.Sprint(p.Roles)
	}
	return "absent"
}
