package interop_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

const (
	openmlsDir      = "openmls"
	openmlsFixtures = "testdata/openmls"
	// exporterLen is the length of the exporter secret both sides compare
	// after every step: core-crypto's exportSecretKey is
	// MLS-Exporter("exporter", "", length).
	exporterLen = 32
	// peerTimeout bounds a whole live run: a hung peer is killed.
	peerTimeout = 3 * time.Minute
	// maxAnswer bounds one answer line from the peer.
	maxAnswer = 8 << 20
)

// openmlsPeer is the Node process running OpenMLS (openmls/peer.mjs serve),
// driven one JSON line at a time.
type openmlsPeer struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr bytes.Buffer
	cancel context.CancelFunc
}

func startOpenMLS(t *testing.T, suite mls.CipherSuite) *openmlsPeer {
	t.Helper()
	// Not t.Context(): it ends before cleanups run, and the peer is to
	// exit by itself when its stdin closes.
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	p := &openmlsPeer{t: t, cancel: cancel}
	p.cmd = exec.CommandContext(ctx, "node", "peer.mjs", "serve")
	p.cmd.Dir = openmlsDir
	p.cmd.WaitDelay = 10 * time.Second
	p.cmd.Stderr = &p.stderr
	var err error
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewScanner(stdout)
	p.out.Buffer(make([]byte, 0, 64<<10), maxAnswer)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start the OpenMLS peer: %v", err)
	}
	t.Cleanup(func() {
		p.in.Close()
		if err := p.cmd.Wait(); err != nil && !t.Failed() {
			t.Errorf("OpenMLS peer: %v\n%s", err, p.stderr.String())
		}
		cancel()
	})
	var init struct {
		CoreCrypto string `json:"core_crypto"`
	}
	p.call(&init, "init", "suite", uint16(suite))
	if init.CoreCrypto != "9.3.4" {
		t.Fatalf("the peer runs core-crypto %q, want 9.3.4", init.CoreCrypto)
	}
	return p
}

// call sends op with its arguments (name, value, ...) and decodes the
// answer into out; an error answer fails the test.
func (p *openmlsPeer) call(out any, op string, args ...any) {
	p.t.Helper()
	if err := p.try(out, op, args...); err != nil {
		p.t.Fatal(err)
	}
}

// try is call returning the peer's refusal as an error.
func (p *openmlsPeer) try(out any, op string, args ...any) error {
	p.t.Helper()
	req := map[string]any{"op": op}
	for i := 0; i+1 < len(args); i += 2 {
		v := args[i+1]
		if b, ok := v.([]byte); ok {
			v = hexBytes(b)
		}
		req[args[i].(string)] = v
	}
	line, err := json.Marshal(req)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.in.Write(append(line, '\n')); err != nil {
		p.t.Fatalf("write to the OpenMLS peer: %v\n%s", err, p.stderr.String())
	}
	if !p.out.Scan() {
		p.t.Fatalf("the OpenMLS peer did not answer %s: %v\n%s", op, p.out.Err(), p.stderr.String())
	}
	var status struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(p.out.Bytes(), &status); err != nil {
		p.t.Fatalf("the OpenMLS peer's answer to %s: %v", op, err)
	}
	if !status.OK {
		return fmt.Errorf("OpenMLS: %s", status.Error)
	}
	if out != nil {
		if err := json.Unmarshal(p.out.Bytes(), out); err != nil {
			p.t.Fatalf("the OpenMLS peer's answer to %s: %v", op, err)
		}
	}
	return nil
}

// peerBundle is a commit as core-crypto hands it to its delivery service.
type peerBundle struct {
	Commit    hexBytes `json:"commit"`
	Welcome   hexBytes `json:"welcome"`
	GroupInfo hexBytes `json:"group_info"`
	GroupID   hexBytes `json:"group_id"`
	Epoch     uint64   `json:"epoch"`
}

type peerDecrypted struct {
	Plaintext    hexBytes `json:"plaintext"`
	Sender       *string  `json:"sender"`
	EpochChanged bool     `json:"epoch_changed"`
	Active       bool     `json:"active"`
	Epoch        uint64   `json:"epoch"`
}

// openmlsRun is what the live run recorded for replay without Node: the
// transcript, the listening Go member's keys, and what the OpenMLS members
// reported.
type openmlsRun struct {
	Transcript transcript   `json:"transcript"`
	Carl       goMember     `json:"carl"`
	Observed   []peerReport `json:"openmls_observed"`
}

// peerReport is what one OpenMLS member reported after a step.
type peerReport struct {
	Step      int      `json:"step"`
	Member    string   `json:"member"`
	Epoch     uint64   `json:"epoch"`
	Exporter  hexBytes `json:"exporter,omitempty"`
	Members   []string `json:"members,omitempty"`
	Plaintext hexBytes `json:"plaintext,omitempty"`
}

// mixedRoom is one group with Go members (mls.Group), OpenMLS members (the
// peer) and a Go hub (mls.Follower) following every commit it can. carl is
// a Go member who only listens, so that the recorded run can be replayed.
type mixedRoom struct {
	t        *testing.T
	peer     *openmlsPeer
	suite    *mls.Suite
	now      uint64
	gid      []byte
	hub      *mls.Follower
	goGroups map[string]*mls.Group
	openmls  map[string]bool // active OpenMLS members
	run      openmlsRun
}

func newMixedRoom(t *testing.T, suite mls.CipherSuite) *mixedRoom {
	s, err := suite.Suite()
	if err != nil {
		t.Fatal(err)
	}
	now := uint64(time.Now().Unix())
	r := &mixedRoom{t: t, peer: startOpenMLS(t, suite), suite: s, now: now, goGroups: map[string]*mls.Group{}, openmls: map[string]bool{}}
	r.run.Transcript.CipherSuite = uint16(suite)
	r.run.Carl = *r.newGoMember("carl")
	return r
}

// openmlsCapabilities are a Go member's: core-crypto's groups require the
// basic and x509 credential types (required_capabilities), so every member
// must list both.
func openmlsCapabilities() mls.Capabilities {
	return mls.Capabilities{Proposals: []mls.ProposalType{customProposal}, Credentials: []mls.CredentialType{mls.CredentialBasic, mls.CredentialX509}}
}

func (r *mixedRoom) newGoMember(name string) *goMember {
	return newGoMemberWith(r.t, r.suite, name, r.now, openmlsCapabilities())
}

func (r *mixedRoom) opts() mls.GroupOptions {
	return mls.GroupOptions{Config: config, Now: fixedClock(r.now)}
}

// newPeer makes an OpenMLS client and returns its KeyPackage.
func (r *mixedRoom) newPeer(name string) *mls.KeyPackage {
	r.t.Helper()
	r.peer.call(nil, "new_client", "name", name)
	var kp struct {
		KeyPackage hexBytes `json:"key_package"`
	}
	r.peer.call(&kp, "key_package", "name", name)
	var out mls.KeyPackage
	if err := wire.Unmarshal(kp.KeyPackage, &out); err != nil {
		r.t.Fatalf("%s's KeyPackage from OpenMLS: %v", name, err)
	}
	if err := out.Validate(r.now); err != nil {
		r.t.Fatalf("%s's KeyPackage from OpenMLS: %v", name, err)
	}
	return &out
}

func (r *mixedRoom) record(st step) int {
	r.run.Transcript.Steps = append(r.run.Transcript.Steps, st)
	return len(r.run.Transcript.Steps) - 1
}

// anyGo returns a Go member still in the group (carl always is).
func (r *mixedRoom) anyGo() *mls.Group { return r.goGroups["carl"] }

// deliver hands a handshake message (commit) to every member but the
// sender: Go members process it, OpenMLS members decrypt it. Members it
// removes leave.
func (r *mixedRoom) deliver(by string, m []byte) {
	r.t.Helper()
	for name, g := range r.goGroups {
		if name == by {
			continue
		}
		if _, err := g.Process(decode(r.t, m, "commit")); err != nil {
			r.t.Fatalf("Go member %s processing %s's commit: %v", name, by, err)
		}
		if g.Removed() {
			delete(r.goGroups, name)
		}
	}
	for _, name := range r.openmlsNames() {
		if name == by {
			continue
		}
		var d peerDecrypted
		r.peer.call(&d, "decrypt", "name", name, "group_id", r.gid, "message", m)
		if d.Plaintext != nil {
			r.t.Fatalf("OpenMLS member %s read %s's commit as an application message", name, by)
		}
		if !d.Active {
			delete(r.openmls, name)
			continue
		}
		if !d.EpochChanged {
			r.t.Fatalf("OpenMLS member %s: %s's commit did not change its epoch", name, by)
		}
	}
}

func (r *mixedRoom) openmlsNames() []string { return slices.Sorted(maps.Keys(r.openmls)) }

// peerJoinsFromHub has a new OpenMLS client join by external commit from
// the GroupInfo the hub holds, as a MIMI hub serves it to external joiners.
func (r *mixedRoom) peerJoinsFromHub(name string) *peerBundle {
	r.t.Helper()
	r.newPeer(name)
	var ext peerBundle
	r.peer.call(&ext, "external_join", "name", name, "group_info", wire.MustMarshal(mls.NewGroupInfoMessage(hubGroupInfo(r.t, r.hub))))
	r.openmls[name] = true
	r.peerCommit(name, &ext, "new_member_commit", name+" (OpenMLS) joins by external commit from the hub's GroupInfo", nil)
	return &ext
}

// peerUpdate has an OpenMLS member commit an UpdatePath
// (updateKeyingMaterial).
func (r *mixedRoom) peerUpdate(name string) {
	r.t.Helper()
	var upd peerBundle
	r.peer.call(&upd, "update", "name", name, "group_id", r.gid)
	r.peerCommit(name, &upd, "member", name+" (OpenMLS) updates its keys: a commit with an UpdatePath", nil)
}

// agree checks that every member and the hub are in the same epoch with the
// same tree and exporter secret, and that OpenMLS sees the members Go sees.
// It records OpenMLS's reports against step i.
func (r *mixedRoom) agree(i int) {
	r.t.Helper()
	ref := r.anyGo()
	epoch := ref.Epoch()
	exporter, err := ref.Export("exporter", nil, exporterLen)
	if err != nil {
		r.t.Fatal(err)
	}
	tree := wire.MustMarshal(ref.Tree())
	for name, g := range r.goGroups {
		if g.Epoch() != epoch || !bytes.Equal(wire.MustMarshal(g.Tree()), tree) || !bytes.Equal(g.EpochAuthenticator(), ref.EpochAuthenticator()) {
			r.t.Fatalf("step %d: Go member %s disagrees with carl", i, name)
		}
	}
	if r.hub != nil && (r.hub.Epoch() != epoch || !bytes.Equal(wire.MustMarshal(r.hub.Tree()), tree)) {
		r.t.Fatalf("step %d: the hub (epoch %d) disagrees with the members (epoch %d)", i, r.hub.Epoch(), epoch)
	}
	var identities []string
	for _, leaf := range ref.Tree().Members() {
		identities = append(identities, string(leaf.Credential.Identity))
	}
	slices.Sort(identities)
	for _, name := range r.openmlsNames() {
		var o struct {
			Epoch    uint64   `json:"epoch"`
			Exporter hexBytes `json:"exporter"`
			Members  []string `json:"members"`
		}
		r.peer.call(&o, "observe", "name", name, "group_id", r.gid, "length", exporterLen)
		if o.Epoch != epoch {
			r.t.Fatalf("step %d: OpenMLS member %s is at epoch %d, Go at %d", i, name, o.Epoch, epoch)
		}
		if !bytes.Equal(o.Exporter, exporter) {
			r.t.Fatalf("step %d: OpenMLS member %s exports %x, Go %x", i, name, []byte(o.Exporter), exporter)
		}
		if !slices.Equal(o.Members, identities) {
			r.t.Fatalf("step %d: OpenMLS member %s sees members %q, Go %q", i, name, o.Members, identities)
		}
		r.run.Observed = append(r.run.Observed, peerReport{Step: i, Member: name, Epoch: o.Epoch, Exporter: o.Exporter, Members: o.Members})
	}
	st := &r.run.Transcript.Steps[i]
	st.Epoch, st.EpochAuthenticator, st.RatchetTree = epoch, ref.EpochAuthenticator(), tree
}

// goCommit has Go member by commit opts, the hub accept it, and everyone
// process it; goJoiners and peerJoiners join from its Welcome.
func (r *mixedRoom) goCommit(by string, opts mls.CommitOptions, note string, goJoiners []*goMember, peerJoiners ...string) {
	r.t.Helper()
	opts.GroupInfo = mls.GroupInfoOptions{ExternalPub: true, RatchetTree: true}
	// core-crypto takes no tree beside a Welcome: its GroupInfo must carry it.
	opts.WelcomeRatchetTree = true
	g := r.goGroups[by]
	b, err := g.Commit(opts)
	if err != nil {
		r.t.Fatalf("%s commit: %v", by, err)
	}
	if _, err := r.hub.ProcessCommit(decodeAgain(r.t, b.Commit), decodeAgain(r.t, b.GroupInfo).GroupInfo, r.now, nil); err != nil {
		r.t.Fatalf("the hub rejects %s's commit: %v", by, err)
	}
	g.MergePendingCommit()
	st := step{Op: "commit", By: by, SenderType: "member", Commit: wire.MustMarshal(b.Commit), GroupInfo: wire.MustMarshal(b.GroupInfo), Note: note}
	if b.Welcome != nil {
		st.Welcome = wire.MustMarshal(b.Welcome)
	}
	r.deliver(by, st.Commit)
	r.join(st.Welcome, nil, goJoiners, peerJoiners)
	r.agree(r.record(st))
}

// peerCommit takes a commit an OpenMLS member made: the hub (if it follows
// already) accepts it with the GroupInfo core-crypto made, and everyone else
// processes it.
func (r *mixedRoom) peerCommit(by string, b *peerBundle, senderType, note string, goJoiners []*goMember, peerJoiners ...string) {
	r.t.Helper()
	if r.hub != nil {
		// A GroupInfo whose signature does not verify is refused and
		// changes nothing (GroupInfo ends with its signature).
		forged := bytes.Clone(b.GroupInfo)
		forged[len(forged)-1] ^= 1
		before := wire.MustMarshal(r.hub)
		if _, err := r.hub.ProcessCommit(decode(r.t, b.Commit, "commit"), decode(r.t, forged, "group_info").GroupInfo, r.now, nil); err == nil {
			r.t.Fatalf("the hub accepts %s's commit with a forged GroupInfo", by)
		}
		if !bytes.Equal(wire.MustMarshal(r.hub), before) {
			r.t.Fatalf("a refused commit by %s changed the hub", by)
		}
		if _, err := r.hub.ProcessCommit(decode(r.t, b.Commit, "commit"), decode(r.t, b.GroupInfo, "group_info").GroupInfo, r.now, nil); err != nil {
			r.t.Fatalf("the hub rejects OpenMLS member %s's commit: %v", by, err)
		}
	}
	r.deliver(by, b.Commit)
	r.join(b.Welcome, b.GroupInfo, goJoiners, peerJoiners)
	r.agree(r.record(step{Op: "commit", By: by, SenderType: senderType, Commit: b.Commit, GroupInfo: b.GroupInfo, Welcome: b.Welcome, Note: note}))
}

func (r *mixedRoom) join(welcome, groupInfo []byte, goJoiners []*goMember, peerJoiners []string) {
	r.t.Helper()
	for _, j := range goJoiners {
		g, err := mls.JoinFromWelcome(decode(r.t, welcome, "welcome").Welcome, j.bundle(r.t), nil, r.opts())
		if err != nil {
			r.t.Fatalf("Go member %s joining from the Welcome: %v", j.Name, err)
		}
		r.goGroups[j.Name] = g
	}
	for _, name := range peerJoiners {
		var joined peerBundle
		r.peer.call(&joined, "welcome", "name", name, "welcome", welcome)
		if !bytes.Equal(joined.GroupID, r.gid) {
			r.t.Fatalf("OpenMLS member %s joined group %x", name, []byte(joined.GroupID))
		}
		r.openmls[name] = true
	}
}

// goSay has a Go member send text; everyone reads it.
func (r *mixedRoom) goSay(by, text string) {
	r.t.Helper()
	m, err := r.goGroups[by].Encrypt([]byte(text), nil)
	if err != nil {
		r.t.Fatal(err)
	}
	r.read(by, wire.MustMarshal(m), text)
}

// peerSay has an OpenMLS member send text; everyone reads it.
func (r *mixedRoom) peerSay(by, text string) {
	r.t.Helper()
	var m struct {
		Message hexBytes `json:"message"`
	}
	r.peer.call(&m, "encrypt", "name", by, "group_id", r.gid, "plaintext", []byte(text))
	r.read(by, m.Message, text)
}

func (r *mixedRoom) read(by string, m []byte, text string) {
	r.t.Helper()
	i := r.record(step{Op: "application", By: by, Epoch: r.anyGo().Epoch(), Message: m, Plaintext: []byte(text)})
	for name, g := range r.goGroups {
		if name == by {
			continue
		}
		got, err := g.Process(decode(r.t, m, "application"))
		if err != nil || string(got.ApplicationData) != text {
			r.t.Fatalf("Go member %s reading %s: %q, %v", name, by, got.ApplicationData, err)
		}
	}
	for _, name := range r.openmlsNames() {
		if name == by {
			continue
		}
		var d peerDecrypted
		r.peer.call(&d, "decrypt", "name", name, "group_id", r.gid, "message", m)
		if string(d.Plaintext) != text {
			r.t.Fatalf("OpenMLS member %s reading %s: %q", name, by, d.Plaintext)
		}
		r.run.Observed = append(r.run.Observed, peerReport{Step: i, Member: name, Epoch: d.Epoch, Plaintext: d.Plaintext})
	}
}

// peerIdentity is the identity the peer gives an OpenMLS client.
func peerIdentity(name string) string { return "mimi://o.example/u/" + name }

func goIdentity(name string) string { return "mimi://a.example/u/" + name }

func (r *mixedRoom) leafOf(identity string) mls.LeafIndex {
	for l, leaf := range r.anyGo().Tree().Members() {
		if string(leaf.Credential.Identity) == identity {
			return l
		}
	}
	r.t.Fatalf("no member %s", identity)
	return 0
}

// playOpenMLSGroup: an OpenMLS member creates the group and adds Go members
// by Welcome; the Go hub adopts the room from the GroupInfo of that first
// commit (core-crypto makes none before) and follows everything after.
func playOpenMLSGroup(t *testing.T, suite mls.CipherSuite) *openmlsRun {
	r := newMixedRoom(t, suite)
	r.gid = []byte("openmls-made room")
	r.run.Transcript.GroupID = r.gid
	for _, n := range []string{"alice", "bob"} {
		r.newPeer(n)
	}
	var created struct {
		Epoch uint64 `json:"epoch"`
	}
	r.peer.call(&created, "create", "name", "alice", "group_id", r.gid)
	r.openmls["alice"] = true
	gopher := r.newGoMember("gopher")
	var kp struct {
		KeyPackage hexBytes `json:"key_package"`
	}
	r.peer.call(&kp, "key_package", "name", "bob")
	var add peerBundle
	r.peer.call(&add, "add", "name", "alice", "group_id", r.gid, "key_packages",
		[]hexBytes{kp.KeyPackage, goKeyPackage(t, gopher), goKeyPackage(t, &r.run.Carl)})
	r.peerCommit("alice", &add, "member", "alice (OpenMLS) creates the room and adds bob (OpenMLS), gopher and carl (Go) by Welcome",
		[]*goMember{gopher, &r.run.Carl}, "bob")

	hub, err := mls.NewFollower(decode(t, add.GroupInfo, "group_info").GroupInfo, nil, config)
	if err != nil {
		t.Fatalf("the hub adopting OpenMLS's GroupInfo: %v", err)
	}
	r.hub = hub
	r.agree(r.record(step{Op: "create", By: "hub", GroupInfo: add.GroupInfo, Note: "the Go hub adopts the room from OpenMLS's GroupInfo of epoch 1"}))

	r.peerSay("alice", "alice (OpenMLS): hello Go")
	r.goSay("gopher", "gopher (Go): hello OpenMLS")
	r.peerUpdate("bob")
	r.peerSay("bob", "bob (OpenMLS): after my update")
	r.goCommit("gopher", mls.CommitOptions{ForcePath: true}, "gopher (Go) commits with an UpdatePath", nil)
	r.goSay("gopher", "gopher (Go): after my update")

	erinKP := r.newPeer("erin")
	r.goCommit("gopher", mls.CommitOptions{Proposals: []*mls.Proposal{mls.AddProposal(erinKP)}}, "gopher (Go) adds erin (OpenMLS) by Welcome", nil, "erin")
	r.peerSay("erin", "erin (OpenMLS): joined by a Go Welcome")

	ext := r.peerJoinsFromHub("frank")
	r.peerSay("frank", "frank (OpenMLS): joined from outside")

	// A Go client joins by external commit from OpenMLS's GroupInfo.
	ginaKey, err := r.suite.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	gina, b, err := mls.JoinExternal(decode(t, ext.GroupInfo, "group_info").GroupInfo, nil, ginaKey, mls.ExternalJoinOptions{
		GroupOptions: r.opts(), Credential: mls.BasicCredential([]byte(goIdentity("gina"))),
		Capabilities: openmlsCapabilities(),
		Commit:       mls.CommitOptions{GroupInfo: mls.GroupInfoOptions{ExternalPub: true, RatchetTree: true}},
	})
	if err != nil {
		t.Fatalf("gina (Go) joining from OpenMLS's GroupInfo: %v", err)
	}
	if _, err := r.hub.ProcessCommit(decodeAgain(t, b.Commit), decodeAgain(t, b.GroupInfo).GroupInfo, r.now, nil); err != nil {
		t.Fatalf("the hub rejects gina's external commit: %v", err)
	}
	gina.MergePendingCommit()
	st := step{Op: "commit", By: "gina", SenderType: "new_member_commit", Commit: wire.MustMarshal(b.Commit), GroupInfo: wire.MustMarshal(b.GroupInfo),
		Note: "gina (Go) joins by external commit from frank's (OpenMLS) GroupInfo"}
	r.deliver("gina", st.Commit)
	r.goGroups["gina"] = gina
	r.agree(r.record(st))
	r.goSay("gina", "gina (Go): joined from outside")

	var rm peerBundle
	r.peer.call(&rm, "remove", "name", "alice", "group_id", r.gid, "identities", []string{goIdentity("gopher")})
	r.peerCommit("alice", &rm, "member", "alice (OpenMLS) removes gopher (Go)", nil)
	if _, ok := r.goGroups["gopher"]; ok {
		t.Fatal("gopher is still in the group after alice removed him")
	}
	r.goCommit("gina", mls.CommitOptions{Proposals: []*mls.Proposal{mls.RemoveProposal(r.leafOf(peerIdentity("bob")))}}, "gina (Go) removes bob (OpenMLS)", nil)
	if r.openmls["bob"] {
		t.Fatal("bob is still in the group after gina removed him")
	}
	r.peerSay("alice", "alice (OpenMLS): last words")
	r.goSay("gina", "gina (Go): last words")
	return &r.run
}

// playGoGroup: a Go member creates the group (the hub follows it from epoch
// 0) and adds OpenMLS members by Welcome.
func playGoGroup(t *testing.T, suite mls.CipherSuite) *openmlsRun {
	r := newMixedRoom(t, suite)
	aliceKey, err := r.suite.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	alice, err := mls.CreateGroup(r.suite, aliceKey, mls.CreateOptions{
		GroupOptions: r.opts(),
		Credential:   mls.BasicCredential([]byte(goIdentity("alice"))),
		Capabilities: openmlsCapabilities(),
		Lifetime:     mls.Lifetime{NotBefore: r.now - 3600, NotAfter: r.now + 30*86400},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.gid = alice.GroupID()
	r.run.Transcript.GroupID = r.gid
	gi, err := alice.GroupInfo(mls.GroupInfoOptions{ExternalPub: true, RatchetTree: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.hub, err = mls.NewFollower(gi.GroupInfo, nil, config); err != nil {
		t.Fatal(err)
	}
	r.goGroups["alice"] = alice
	r.record(step{Op: "create", By: "alice", GroupInfo: wire.MustMarshal(gi), RatchetTree: wire.MustMarshal(alice.Tree()), EpochAuthenticator: alice.EpochAuthenticator()})

	dave, erin := r.newPeer("dave"), r.newPeer("erin")
	carl := mls.AddProposal(decode(t, r.run.Carl.KeyPackage, "carl").KeyPackage)
	r.goCommit("alice", mls.CommitOptions{Proposals: []*mls.Proposal{mls.AddProposal(dave), mls.AddProposal(erin), carl}},
		"alice (Go) adds dave, erin (OpenMLS) and carl (Go) by Welcome", []*goMember{&r.run.Carl}, "dave", "erin")
	r.goSay("alice", "alice (Go): hello OpenMLS")
	r.peerSay("dave", "dave (OpenMLS): hello Go")
	r.peerUpdate("dave")
	r.goCommit("alice", mls.CommitOptions{ForcePath: true}, "alice (Go) commits with an UpdatePath", nil)
	r.peerSay("erin", "erin (OpenMLS): after two updates")

	bob := r.newGoMember("bob")
	var add peerBundle
	r.peer.call(&add, "add", "name", "erin", "group_id", r.gid, "key_packages", []hexBytes{goKeyPackage(t, bob)})
	r.peerCommit("erin", &add, "member", "erin (OpenMLS) adds bob (Go) by Welcome", []*goMember{bob})
	r.goSay("bob", "bob (Go): joined by an OpenMLS Welcome")

	r.peerJoinsFromHub("frank")
	r.goCommit("bob", mls.CommitOptions{Proposals: []*mls.Proposal{mls.RemoveProposal(r.leafOf(peerIdentity("dave")))}}, "bob (Go) removes dave (OpenMLS)", nil)
	r.peerSay("frank", "frank (OpenMLS): dave has gone")
	r.goSay("alice", "alice (Go): last words")
	return &r.run
}

func goKeyPackage(t *testing.T, m *goMember) hexBytes {
	t.Helper()
	// core-crypto reads a bare KeyPackage, not an MLSMessage.
	return wire.MustMarshal(decode(t, m.KeyPackage, m.Name).KeyPackage)
}

// hubGroupInfo is the GroupInfo the hub holds for external joiners.
func hubGroupInfo(t *testing.T, hub *mls.Follower) *mls.GroupInfo {
	t.Helper()
	var gi mls.GroupInfo
	if err := wire.Unmarshal(hub.GroupInfo(), &gi); err != nil {
		t.Fatal(err)
	}
	return &gi
}

// checkOpenMLSRun replays a recorded run without Node: the hub follows every
// commit after it adopted the room, carl (Go) replays the whole group, and
// everything OpenMLS reported must match what carl derives.
func checkOpenMLSRun(t *testing.T, run *openmlsRun) {
	t.Helper()
	tr := &run.Transcript
	hub := follow(t, tr, run.Carl.GeneratedAt)
	exporters := map[uint64][]byte{}
	onEpoch := func(g *mls.Group) {
		e, err := g.Export("exporter", nil, exporterLen)
		if err != nil {
			t.Fatal(err)
		}
		exporters[g.Epoch()] = e
	}
	if n := replay(t, tr, &run.Carl, onEpoch); n < 5 {
		t.Fatalf("carl decrypted %d application messages, want at least 5", n)
	}
	var last uint64
	for _, st := range tr.Steps {
		last = max(last, st.Epoch)
	}
	if hub.Epoch() != last {
		t.Fatalf("the hub reached epoch %d of %d", hub.Epoch(), last)
	}
	if err := checkObserved(run, exporters); err != nil {
		t.Fatal(err)
	}
}

// checkObserved compares what the OpenMLS members reported with Go's
// exporter secret per epoch and the plaintexts the senders wrote.
func checkObserved(run *openmlsRun, exporters map[uint64][]byte) error {
	if len(run.Observed) == 0 {
		return fmt.Errorf("the run recorded nothing OpenMLS reported")
	}
	steps := run.Transcript.Steps
	for _, o := range run.Observed {
		switch {
		case o.Exporter != nil:
			if want, ok := exporters[o.Epoch]; !ok || !bytes.Equal(o.Exporter, want) {
				return fmt.Errorf("step %d: OpenMLS member %s exported %x at epoch %d, Go %x", o.Step, o.Member, []byte(o.Exporter), o.Epoch, want)
			}
		case o.Plaintext != nil:
			if o.Step < 0 || o.Step >= len(steps) || !bytes.Equal(o.Plaintext, steps[o.Step].Plaintext) {
				return fmt.Errorf("step %d: OpenMLS member %s read %q, not what the sender wrote", o.Step, o.Member, o.Plaintext)
			}
		default:
			return fmt.Errorf("step %d: an empty report from %s", o.Step, o.Member)
		}
	}
	return nil
}

var openmlsScenarios = []struct {
	name string
	play func(*testing.T, mls.CipherSuite) *openmlsRun
}{
	{"openmls-group", playOpenMLSGroup},
	{"go-group", playGoGroup},
}

// openmlsSuites are the suites core-crypto 9.3.4 offers: it has no X448 or
// Ed448 (UnsupportedSignatureScheme for suites 4 and 6).
var openmlsSuites = []mls.CipherSuite{
	mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
	mls.MLS_128_DHKEMP256_AES128GCM_SHA256_P256,
	mls.MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519,
	mls.MLS_256_DHKEMP521_AES256GCM_SHA512_P521,
	mls.MLS_256_DHKEMP384_AES256GCM_SHA384_P384,
}

func openmlsFixture(scenario string, suite mls.CipherSuite) string {
	return filepath.Join(openmlsFixtures, fmt.Sprintf("%s-suite%d.json", scenario, uint16(suite)))
}

func TestOpenMLSFixtures(t *testing.T) {
	for _, sc := range openmlsScenarios {
		for _, suite := range openmlsSuites {
			t.Run(fmt.Sprintf("%s/suite%d", sc.name, uint16(suite)), func(t *testing.T) {
				var run openmlsRun
				readJSON(t, openmlsFixture(sc.name, suite), &run)
				if run.Transcript.CipherSuite != uint16(suite) {
					t.Fatalf("the fixture is for suite %d", run.Transcript.CipherSuite)
				}
				checkOpenMLSRun(t, &run)
			})
		}
	}
}

// TestOpenMLSFixturesDetectTampering makes sure the replay judges what
// OpenMLS reported: a changed exporter or plaintext report fails it.
func TestOpenMLSFixturesDetectTampering(t *testing.T) {
	var run openmlsRun
	readJSON(t, openmlsFixture("openmls-group", mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519), &run)
	exporters := map[uint64][]byte{}
	replay(t, &run.Transcript, &run.Carl, func(g *mls.Group) {
		exporters[g.Epoch()] = must(g.Export("exporter", nil, exporterLen))
	})
	if err := checkObserved(&run, exporters); err != nil {
		t.Fatalf("the untouched fixture: %v", err)
	}
	exporterAt, plaintextAt := -1, -1
	for i, o := range run.Observed {
		if o.Exporter != nil && exporterAt < 0 {
			exporterAt = i
		}
		if o.Plaintext != nil && plaintextAt < 0 {
			plaintextAt = i
		}
	}
	for name, tamper := range map[string]func(r *openmlsRun){
		"exporter":         func(r *openmlsRun) { r.Observed[exporterAt].Exporter[0] ^= 1 },
		"exporter's epoch": func(r *openmlsRun) { r.Observed[exporterAt].Epoch += 100 },
		"plaintext":        func(r *openmlsRun) { r.Observed[plaintextAt].Plaintext[0] ^= 1 },
		"plaintext's step": func(r *openmlsRun) { r.Observed[plaintextAt].Step = len(r.Transcript.Steps) },
		"nothing reported": func(r *openmlsRun) { r.Observed = nil },
	} {
		var copied openmlsRun
		readJSON(t, openmlsFixture("openmls-group", mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519), &copied)
		tamper(&copied)
		if err := checkObserved(&copied, exporters); err == nil {
			t.Errorf("a changed %s passes the replay", name)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestOpenMLSLive(t *testing.T) {
	if os.Getenv("MIMI_INTEROP_LIVE") != "1" && !*update {
		t.Skip("the live OpenMLS interop needs node and npm: set MIMI_INTEROP_LIVE=1 (CI does) after `npm ci` in mimi/mls/interop/openmls")
	}
	if _, err := os.Stat(filepath.Join(openmlsDir, "node_modules", "@wireapp", "core-crypto")); err != nil {
		t.Fatalf("core-crypto is not installed: run `npm ci` in mimi/mls/interop/openmls (%v)", err)
	}
	for _, sc := range openmlsScenarios {
		for _, suite := range openmlsSuites {
			t.Run(fmt.Sprintf("%s/suite%d", sc.name, uint16(suite)), func(t *testing.T) {
				run := sc.play(t, suite)
				checkOpenMLSRun(t, run)
				if *update {
					writeJSON(t, openmlsFixture(sc.name, suite), run)
				}
			})
		}
	}
}

// TestOpenMLSPeerRefusesBadRequests checks the peer's own input handling,
// so that a broken run fails with a reason rather than hangs.
func TestOpenMLSPeerRefusesBadRequests(t *testing.T) {
	if os.Getenv("MIMI_INTEROP_LIVE") != "1" {
		t.Skip("needs node and npm: set MIMI_INTEROP_LIVE=1 (CI does) after `npm ci` in mimi/mls/interop/openmls")
	}
	p := startOpenMLS(t, mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519)
	p.call(nil, "new_client", "name", "alice")
	for _, c := range []struct {
		op   string
		args []any
		want string
	}{
		{"no_such_op", nil, "unknown op"},
		{"new_client", []any{"name", "alice"}, "duplicate"},
		{"create", []any{"name", "nobody", "group_id", []byte("g")}, "no client"},
		{"create", []any{"name", "alice", "group_id", "not hex"}, "hex"},
		{"external_join", []any{"name", "alice", "group_info", []byte{0, 1, 0, 1}}, "mls_group_info"},
		{"observe", []any{"name", "alice", "group_id", []byte("g"), "length", 100000}, "length"},
		{"decrypt", []any{"name", "alice", "group_id", []byte("g"), "message", []byte{1, 2, 3}}, ""},
	} {
		err := p.try(nil, c.op, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: %v, want an error containing %q", c.op, c.args, err, c.want)
		}
	}
}
