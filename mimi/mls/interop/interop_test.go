package interop_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

var update = flag.Bool("interop.update", false, "rewrite testdata from a live run")

// customProposal is the private-use proposal type both scenarios commit.
const customProposal mls.ProposalType = 0xF001

// config describes the custom proposal as ts-mls treats it: no path.
var config = mls.Config{CustomProposals: map[mls.ProposalType]mls.ProposalTypeInfo{customProposal: {}}}

func fixedClock(at uint64) func() uint64 { return func() uint64 { return at } }

// follow has a hub follow every handshake message of tr, each commit with the
// GroupInfo its committer made, checking its tree against the transcript's.
// The hub starts at the "create" step; a room it adopts from a GroupInfo
// may have commits before it.
func follow(t *testing.T, tr *transcript, now uint64) *mls.Follower {
	t.Helper()
	var hub *mls.Follower
	for i, st := range tr.Steps {
		if hub == nil && st.Op != "create" {
			continue
		}
		var err error
		switch st.Op {
		case "create":
			gi := decode(t, st.GroupInfo, "create group_info")
			hub, err = mls.NewFollower(gi.GroupInfo, st.RatchetTree, config)
		case "proposal":
			_, err = hub.ProcessProposal(decode(t, st.Proposal, "proposal"), now, nil)
		case "commit":
			var gi *mls.GroupInfo
			if st.GroupInfo != nil {
				gi = decode(t, st.GroupInfo, "commit group_info").GroupInfo
			}
			_, err = hub.ProcessCommit(decode(t, st.Commit, "commit"), gi, now, nil)
		default:
			continue
		}
		if err != nil {
			t.Fatalf("hub, step %d (%s): %v", i, &st, err)
		}
		if st.RatchetTree != nil && !bytes.Equal(wire.MustMarshal(hub.Tree()), st.RatchetTree) {
			t.Fatalf("hub, step %d (%s): tree differs from the transcript's", i, &st)
		}
		if hub.Epoch() != st.Epoch {
			t.Fatalf("hub, step %d (%s): at epoch %d", i, &st, hub.Epoch())
		}
	}
	return hub
}

// replay joins tr as member me and processes every later step, checking
// epochs, epoch authenticators, trees and plaintexts. It calls onEpoch, if
// not nil, with me's group after joining and after each commit, and returns
// how many application messages me decrypted.
func replay(t *testing.T, tr *transcript, me *goMember, onEpoch func(*mls.Group)) int {
	t.Helper()
	bundle := me.bundle(t)
	ref, err := bundle.KeyPackage.Ref()
	if err != nil {
		t.Fatal(err)
	}
	opts := mls.GroupOptions{Config: config, Now: fixedClock(me.GeneratedAt)}
	var g *mls.Group
	decrypted := 0
	for i, st := range tr.Steps {
		if g == nil {
			if st.Op == "commit" && st.Welcome != nil {
				w := decode(t, st.Welcome, "welcome").Welcome
				if _, ok := w.FindSecrets(ref); ok {
					if g, err = mls.JoinFromWelcome(w, bundle, st.RatchetTree, opts); err != nil {
						t.Fatalf("%s joining at step %d: %v", me.Name, i, err)
					}
					checkEpoch(t, g, &st, i)
					if onEpoch != nil {
						onEpoch(g)
					}
				}
			}
			continue
		}
		if st.By == me.Name {
			continue
		}
		var m *mls.Message
		switch st.Op {
		case "proposal":
			m = decode(t, st.Proposal, "proposal")
		case "commit":
			m = decode(t, st.Commit, "commit")
		case "application":
			m = decode(t, st.Message, "application")
		default:
			continue
		}
		got, err := g.Process(m)
		if err != nil {
			t.Fatalf("%s at step %d (%s): %v", me.Name, i, &st, err)
		}
		if g.Removed() {
			return decrypted
		}
		switch st.Op {
		case "commit":
			checkEpoch(t, g, &st, i)
			if onEpoch != nil {
				onEpoch(g)
			}
		case "application":
			if !bytes.Equal(got.ApplicationData, st.Plaintext) {
				t.Fatalf("%s at step %d: plaintext %q, want %q", me.Name, i, got.ApplicationData, st.Plaintext)
			}
			decrypted++
		}
	}
	if g == nil {
		t.Fatalf("%s never joined", me.Name)
	}
	return decrypted
}

func checkEpoch(t *testing.T, g *mls.Group, st *step, i int) {
	t.Helper()
	if g.Epoch() != st.Epoch {
		t.Fatalf("step %d (%s): member at epoch %d", i, st, g.Epoch())
	}
	if !bytes.Equal(g.EpochAuthenticator(), st.EpochAuthenticator) {
		t.Fatalf("step %d (%s): epoch authenticator %x, want %x", i, st, g.EpochAuthenticator(), []byte(st.EpochAuthenticator))
	}
	if st.RatchetTree != nil && !bytes.Equal(wire.MustMarshal(g.Tree()), st.RatchetTree) {
		t.Fatalf("step %d (%s): tree differs from the transcript's", i, st)
	}
}

// goSide plays the go-to-ts scenario: Go members alice and bob run a group
// that adds the ts-mls members, and record it.
type goSide struct {
	t      *testing.T
	suite  *mls.Suite
	now    uint64
	tr     *transcript
	groups map[string]*mls.Group
	hub    *mls.Follower
}

func (p *goSide) record(st step) {
	st.Epoch = p.groups[st.By].Epoch()
	p.tr.Steps = append(p.tr.Steps, st)
}

func (p *goSide) say(by, text string) {
	p.t.Helper()
	m, err := p.groups[by].Encrypt([]byte(text), nil)
	if err != nil {
		p.t.Fatal(err)
	}
	for name, g := range p.groups {
		if name != by {
			if got, err := g.Process(decodeAgain(p.t, m)); err != nil || string(got.ApplicationData) != text {
				p.t.Fatalf("%s reading %s: %q, %v", name, by, got.ApplicationData, err)
			}
		}
	}
	p.record(step{Op: "application", By: by, Message: wire.MustMarshal(m), Plaintext: []byte(text)})
}

func (p *goSide) propose(by string, m *mls.Message, note string) {
	p.t.Helper()
	if _, err := p.hub.ProcessProposal(decodeAgain(p.t, m), p.now, nil); err != nil {
		p.t.Fatalf("hub: %v", err)
	}
	for name, g := range p.groups {
		if name != by {
			if _, err := g.Process(decodeAgain(p.t, m)); err != nil {
				p.t.Fatalf("%s: %v", name, err)
			}
		}
	}
	p.record(step{Op: "proposal", By: by, SenderType: "member", Proposal: wire.MustMarshal(m), Note: note})
}

func (p *goSide) commit(by string, opts mls.CommitOptions, note string, joiners ...*goMember) {
	p.t.Helper()
	opts.GroupInfo = mls.GroupInfoOptions{ExternalPub: true, RatchetTree: true}
	// The Welcome carries no tree (byReference): joiners take the tree of
	// the Welcome's epoch from the hub, as mimi-hub's clients do; ts-mls
	// gets it beside the Welcome in the transcript (ratchet_tree).
	opts.WelcomeRatchetTree = false
	g := p.groups[by]
	b, err := g.Commit(opts)
	if err != nil {
		p.t.Fatalf("%s commit: %v", by, err)
	}
	if _, err := p.hub.ProcessCommit(decodeAgain(p.t, b.Commit), decodeAgain(p.t, b.GroupInfo).GroupInfo, p.now, nil); err != nil {
		p.t.Fatalf("hub rejects %s's commit: %v", by, err)
	}
	g.MergePendingCommit()
	for name, other := range p.groups {
		if name != by {
			if _, err := other.Process(decodeAgain(p.t, b.Commit)); err != nil {
				p.t.Fatalf("%s: %v", name, err)
			}
		}
	}
	for _, j := range joiners {
		view, err := p.hub.TreeAt(p.hub.Epoch())
		if err != nil {
			p.t.Fatalf("the hub's tree for %s: %v", j.Name, err)
		}
		jg, err := mls.JoinFromWelcome(decodeAgain(p.t, b.Welcome).Welcome, j.bundle(p.t), view.Bytes(), mls.GroupOptions{Config: config, Now: fixedClock(p.now)})
		if err != nil {
			p.t.Fatalf("%s joining: %v", j.Name, err)
		}
		p.groups[j.Name] = jg
	}
	st := step{Op: "commit", By: by, SenderType: "member", Commit: wire.MustMarshal(b.Commit), GroupInfo: wire.MustMarshal(b.GroupInfo),
		RatchetTree: wire.MustMarshal(g.Tree()), EpochAuthenticator: g.EpochAuthenticator(), Note: note}
	if b.Welcome != nil {
		st.Welcome = wire.MustMarshal(b.Welcome)
	}
	p.record(st)
}

func decodeAgain(t *testing.T, m *mls.Message) *mls.Message {
	return decode(t, wire.MustMarshal(m), "message")
}

// playGoToTs runs the Go side of go-to-ts with the ts-mls members ts and
// returns the transcript and carl, a Go member who only listens, whose
// private keys let the fixture test replay the transcript without Node.
func playGoToTs(t *testing.T, ts *tsMembers, now uint64) (*transcript, *goMember) {
	s, err := mls.CipherSuite(ts.CipherSuite).Suite()
	if err != nil {
		t.Fatal(err)
	}
	kp := func(name string) *mls.KeyPackage {
		for _, m := range ts.Members {
			if m.Name == name {
				return decode(t, m.KeyPackage, name+" key package").KeyPackage
			}
		}
		t.Fatalf("no ts-mls member %s", name)
		return nil
	}
	aliceKey, err := s.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	alice, err := mls.CreateGroup(s, aliceKey, mls.CreateOptions{
		GroupOptions: mls.GroupOptions{Config: config, Now: fixedClock(now)},
		Credential:   mls.BasicCredential([]byte("mimi://a.example/u/alice")),
		Capabilities: mls.Capabilities{Proposals: []mls.ProposalType{customProposal}},
		Lifetime:     mls.Lifetime{NotBefore: now - 3600, NotAfter: now + 30*86400},
	})
	if err != nil {
		t.Fatal(err)
	}
	gi, err := alice.GroupInfo(mls.GroupInfoOptions{ExternalPub: true, RatchetTree: true})
	if err != nil {
		t.Fatal(err)
	}
	hub, err := mls.NewFollower(gi.GroupInfo, nil, config)
	if err != nil {
		t.Fatal(err)
	}
	p := &goSide{t: t, suite: s, now: now, tr: &transcript{CipherSuite: ts.CipherSuite, GroupID: alice.GroupID()}, groups: map[string]*mls.Group{"alice": alice}, hub: hub}
	p.record(step{Op: "create", By: "alice", GroupInfo: wire.MustMarshal(gi), RatchetTree: wire.MustMarshal(alice.Tree()), EpochAuthenticator: alice.EpochAuthenticator()})

	bob, carl := newGoMember(t, s, "bob", now), newGoMember(t, s, "carl", now)
	adds := []*mls.Proposal{mls.AddProposal(kp("dave")), mls.AddProposal(bob.bundle(t).KeyPackage), mls.AddProposal(carl.bundle(t).KeyPackage)}
	p.commit("alice", mls.CommitOptions{Proposals: adds}, "alice adds dave (ts-mls), bob and carl (Go)", bob, carl)
	p.say("alice", "alice: hello dave, from Go")
	p.say("bob", "bob: hello from the other Go client")
	up, err := p.groups["bob"].ProposeUpdate()
	if err != nil {
		t.Fatal(err)
	}
	p.propose("bob", up, "bob's Update, by reference")
	p.commit("alice", mls.CommitOptions{IncludePending: true}, "alice commits bob's Update by reference")
	p.commit("alice", mls.CommitOptions{Proposals: []*mls.Proposal{mls.CustomProposal(customProposal, []byte("mimi-hub interop: private-use proposal 0xf001"))}}, "custom proposal 0xf001 by value, no path")
	p.say("alice", "alice: after the custom proposal")
	p.commit("bob", mls.CommitOptions{Proposals: []*mls.Proposal{mls.AddProposal(kp("erin"))}}, "bob adds erin (ts-mls)")
	p.commit("bob", mls.CommitOptions{ForcePath: true}, "bob's empty commit")
	p.say("bob", "bob: erin, welcome")
	rc := mls.RequiredCapabilities{Proposals: []mls.ProposalType{customProposal}, Credentials: []mls.CredentialType{mls.CredentialBasic}}
	gce := mls.GroupContextExtensionsProposal(mls.Extensions{{Type: mls.ExtRequiredCapabilities, Data: wire.MustMarshal(&rc)}})
	dave := p.memberLeaf("mimi://a.example/u/dave")
	p.commit("alice", mls.CommitOptions{Proposals: []*mls.Proposal{mls.RemoveProposal(dave), gce}}, "alice removes dave and requires 0xf001")
	p.say("alice", "alice: dave has left")
	p.say("bob", "bob: last words")
	return p.tr, carl
}

func (p *goSide) memberLeaf(identity string) mls.LeafIndex {
	for l, leaf := range p.groups["alice"].Tree().Members() {
		if string(leaf.Credential.Identity) == identity {
			return l
		}
	}
	p.t.Fatalf("no member %s", identity)
	return 0
}

// checkResults checks ts-mls's report on a Go transcript: every member
// joined, nobody erred, and every epoch authenticator and plaintext agrees.
func checkResults(t *testing.T, tr *transcript, res *results, names ...string) {
	t.Helper()
	auth := map[uint64][]byte{}
	for _, st := range tr.Steps {
		if st.EpochAuthenticator != nil {
			auth[st.Epoch] = st.EpochAuthenticator
		}
	}
	for _, name := range names {
		i := slices.IndexFunc(res.Members, func(m memberResult) bool { return m.Name == name })
		if i < 0 {
			t.Fatalf("ts-mls reports nothing for %s", name)
		}
		m := res.Members[i]
		if len(m.Errors) > 0 || m.JoinedEpoch == nil {
			t.Fatalf("ts-mls member %s: joined %v, errors %v", name, m.JoinedEpoch, m.Errors)
		}
		if len(m.Epochs) == 0 || len(m.Plaintexts) == 0 {
			t.Fatalf("ts-mls member %s followed %d epochs and read %d messages", name, len(m.Epochs), len(m.Plaintexts))
		}
		for _, e := range m.Epochs {
			if !bytes.Equal(e.EpochAuthenticator, auth[e.Epoch]) {
				t.Fatalf("ts-mls member %s derives epoch authenticator %x at epoch %d, Go %x", name, []byte(e.EpochAuthenticator), e.Epoch, auth[e.Epoch])
			}
		}
		for _, pt := range m.Plaintexts {
			if !bytes.Equal(pt.Plaintext, tr.Steps[pt.Step].Plaintext) {
				t.Fatalf("ts-mls member %s reads step %d as %q", name, pt.Step, pt.Plaintext)
			}
		}
	}
}

const (
	fixtures = "testdata"
	harness  = "tsmls"
)

func TestInteropFixtures(t *testing.T) {
	t.Run("ts-to-go", func(t *testing.T) {
		var tr transcript
		var me goMember
		readJSON(t, filepath.Join(fixtures, "ts_to_go", "transcript.json"), &tr)
		readJSON(t, filepath.Join(fixtures, "ts_to_go", "go_member_private.json"), &me)
		checkTsToGo(t, &tr, &me)
	})
	t.Run("go-to-ts", func(t *testing.T) {
		var tr transcript
		var carl goMember
		var res results
		readJSON(t, filepath.Join(fixtures, "go_to_ts", "go_transcript.json"), &tr)
		readJSON(t, filepath.Join(fixtures, "go_to_ts", "carl_private.json"), &carl)
		readJSON(t, filepath.Join(fixtures, "go_to_ts", "results.json"), &res)
		checkResults(t, &tr, &res, "dave", "erin")
		follow(t, &tr, carl.GeneratedAt)
		if n := replay(t, &tr, &carl, nil); n < 5 {
			t.Fatalf("carl decrypted %d messages, want at least 5", n)
		}
	})
}

// checkTsToGo checks a ts-mls transcript from the Go side: the hub follows
// every handshake message and the Go member follows the whole group.
func checkTsToGo(t *testing.T, tr *transcript, me *goMember) {
	t.Helper()
	hub := follow(t, tr, me.GeneratedAt)
	if n := replay(t, tr, me, nil); n < 5 {
		t.Fatalf("the Go member decrypted %d application messages, want at least 5", n)
	}
	var last uint64
	for _, st := range tr.Steps {
		last = max(last, st.Epoch)
	}
	if hub.Epoch() != last || last < 6 {
		t.Fatalf("the hub reached epoch %d of %d", hub.Epoch(), last)
	}
}

func TestInteropLive(t *testing.T) {
	if os.Getenv("MIMI_INTEROP_LIVE") != "1" && !*update {
		t.Skip("the live ts-mls interop needs node and npm: set MIMI_INTEROP_LIVE=1 (CI does) after `npm ci` in mimi/mls/interop/tsmls")
	}
	if _, err := os.Stat(filepath.Join(harness, "node_modules", "ts-mls")); err != nil {
		t.Fatalf("ts-mls is not installed: run `npm ci` in mimi/mls/interop/tsmls (%v)", err)
	}
	dir := t.TempDir()
	now := uint64(time.Now().Unix())
	s, err := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	if err != nil {
		t.Fatal(err)
	}

	// ts-to-go.
	me := newGoMember(t, s, "go", now)
	writeJSON(t, filepath.Join(dir, "go_member.json"), goMember{Name: me.Name, CipherSuite: me.CipherSuite, KeyPackage: me.KeyPackage})
	node(t, "ts-to-go", "--member", filepath.Join(dir, "go_member.json"), "--out", filepath.Join(dir, "transcript.json"))
	var tsTr transcript
	readJSON(t, filepath.Join(dir, "transcript.json"), &tsTr)
	checkTsToGo(t, &tsTr, me)

	// go-to-ts.
	node(t, "go-to-ts", "prepare", "--out", filepath.Join(dir, "ts_members.json"))
	var ts tsMembers
	readJSON(t, filepath.Join(dir, "ts_members.json"), &ts)
	goTr, carl := playGoToTs(t, &ts, now)
	writeJSON(t, filepath.Join(dir, "go_transcript.json"), goTr)
	node(t, "go-to-ts", "verify", "--members", filepath.Join(dir, "ts_members.json"), "--transcript", filepath.Join(dir, "go_transcript.json"), "--out", filepath.Join(dir, "results.json"))
	var res results
	readJSON(t, filepath.Join(dir, "results.json"), &res)
	checkResults(t, goTr, &res, "dave", "erin")

	if *update {
		writeJSON(t, filepath.Join(fixtures, "ts_to_go", "transcript.json"), &tsTr)
		writeJSON(t, filepath.Join(fixtures, "ts_to_go", "go_member_private.json"), me)
		writeJSON(t, filepath.Join(fixtures, "go_to_ts", "go_transcript.json"), goTr)
		writeJSON(t, filepath.Join(fixtures, "go_to_ts", "carl_private.json"), carl)
		writeJSON(t, filepath.Join(fixtures, "go_to_ts", "results.json"), &res)
	}
}

// node runs the harness and fails the test with its output if it fails.
func node(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("node", append([]string{"interop.mjs"}, args...)...)
	cmd.Dir = harness
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) || err != nil {
		t.Fatalf("node interop.mjs %v: %v\n%s", args, err, out)
	}
	if testing.Verbose() {
		fmt.Printf("node interop.mjs %v:\n%s", args, out)
	}
}
