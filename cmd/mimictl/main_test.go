package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/internal/devca"
)

// world is two providers, a.example and b.example, federated on loopback
// with one development CA.
type world struct {
	a, b   *localProvider
	caFile string
}

// testLogger logs the providers' warnings into the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testCA makes a development CA, a folder for the test and the CA's
// certificate file in it (for -ca).
func testCA(t *testing.T) (ca *devca.CA, dir, caFile string) {
	t.Helper()
	ca, err := devca.New()
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	if caFile, err = writeCA(ca, dir); err != nil {
		t.Fatal(err)
	}
	return ca, dir, caFile
}

// startTestCluster starts an in-process provider of n nodes (certificates
// naming 127.0.0.1, so mimictl reaches each node by address) and returns
// it with the CA file; it stops at the end of the test.
func startTestCluster(t *testing.T, domain string, n int, adminToken string) (*localCluster, string) {
	t.Helper()
	ca, dir, caFile := testCA(t)
	c, err := startLocalCluster(t.Context(), localClusterConfig{Domain: domain, DataDir: dir, CA: ca, Nodes: n, AdminToken: adminToken, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, caFile
}

// startWorld starts both providers; a.example requires regKey to register
// when it is set.
func startWorld(t *testing.T, regKey string) *world {
	t.Helper()
	ca, dir, caFile := testCA(t)
	fedA, err := reservePort()
	if err != nil {
		t.Fatal(err)
	}
	fedB, err := reservePort()
	if err != nil {
		t.Fatal(err)
	}
	start := func(domain, fed, peer, peerFed, key string) *localProvider {
		p, err := startLocalProvider(t.Context(), localProviderConfig{
			Domain: domain, DataDir: filepath.Join(dir, domain), CA: ca, FederationAddr: fed,
			Peers: map[string]string{peer: peerFed}, RegistrationKey: key, Logger: testLogger(t).With("provider", domain),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := p.Close(); err != nil {
				t.Errorf("closing %s: %v", domain, err)
			}
		})
		return p
	}
	w := &world{caFile: caFile}
	w.a = start("a.example", fedA, "b.example", fedB, regKey)
	w.b = start("b.example", fedB, "a.example", fedA, "")
	return w
}

// user runs mimictl with one profile.
type user struct {
	t       *testing.T
	profile string
}

func newUser(t *testing.T) *user {
	return &user{t: t, profile: filepath.Join(t.TempDir(), "profile")}
}

// run runs mimictl with the user's profile and returns its output.
func (u *user) run(ctx context.Context, args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	err := runErr(ctx, append([]string{"-profile", u.profile}, args...), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// ok runs mimictl and fails the test on error.
func (u *user) ok(args ...string) string {
	u.t.Helper()
	out, errOut, err := u.run(u.t.Context(), args...)
	if err != nil {
		u.t.Fatalf("mimictl %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// fails runs mimictl, wants an error containing want, and returns it.
func (u *user) fails(want string, args ...string) error {
	u.t.Helper()
	out, _, err := u.run(u.t.Context(), args...)
	if err == nil {
		u.t.Fatalf("mimictl %s succeeded (stdout %q), want an error containing %q", strings.Join(args, " "), out, want)
	}
	if !strings.Contains(err.Error(), want) {
		u.t.Fatalf("mimictl %s: error %q, want it to contain %q", strings.Join(args, " "), err, want)
	}
	return err
}

// syncUntil syncs until the accumulated output holds every line in want
// (federation delivers asynchronously).
func (u *user) syncUntil(want ...string) string {
	u.t.Helper()
	var all strings.Builder
	deadline := time.Now().Add(10 * time.Second)
	for {
		all.WriteString(u.ok("watch", "-wait", "1s"))
		missing := ""
		for _, w := range want {
			if !strings.Contains(all.String(), w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return all.String()
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("watch never showed %q; it printed:\n%s", missing, all.String())
		}
	}
}

// hasRow reports whether a line of a table holds fields, in order
// (other fields may come between them).
func hasRow(table string, fields ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		want := fields
		for _, f := range strings.Fields(line) {
			if len(want) > 0 && f == want[0] {
				want = want[1:]
			}
		}
		if len(want) == 0 {
			return true
		}
	}
	return false
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader in parallel.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestClientFlow drives the CLI through a federated room: alice@a.example
// creates it and adds bob@b.example, both speak, bob leaves and alice
// commits his departure.
func TestClientFlow(t *testing.T) {
	w := startWorld(t, "sesame")
	alice, bob := newUser(t), newUser(t)

	// Registration: a.example wants its key.
	alice.fails("HTTP 403", "register", "-server", w.a.ClientURL, "-ca", w.caFile, "-user", "alice", "-device", "phone")
	if _, err := os.Stat(filepath.Join(alice.profile, profileFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused registration left a profile: %v", err)
	}
	out := alice.ok("register", "-server", w.a.ClientURL, "-ca", w.caFile, "-user", "alice", "-device", "phone", "-registration-key", "sesame", "-keys", "3", "-name", "Alice Liddell")
	if !strings.Contains(out, "registered alice@a.example as mimi://a.example/u/alice/d/phone") {
		t.Fatalf("register printed %q", out)
	}
	bob.ok("register", "-server", w.b.ClientURL, "-ca", w.caFile, "-user", "bob", "-device", "laptop", "-keys", "3")
	alice.fails("already holds a client", "register", "-server", w.a.ClientURL, "-ca", w.caFile, "-user", "alice", "-registration-key", "sesame")

	// The profile is private.
	if fi, err := os.Stat(alice.profile); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("profile folder: %v, %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(alice.profile, profileFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("profile file: %v, %v", fi.Mode(), err)
	}
	if out := bob.ok("whoami"); !strings.Contains(out, "keys:    3 KeyPackages at the provider, and a last-resort one") {
		t.Fatalf("bob's whoami: %q", out)
	}
	if out := alice.ok("whoami"); !strings.Contains(out, "client:  mimi://a.example/u/alice/d/phone") {
		t.Fatalf("whoami: %q", out)
	}
	if out := alice.ok("publish-keys", "-n", "2"); out != "uploaded 2 KeyPackages\n" {
		t.Fatalf("publish-keys: %q", out)
	}
	if out := alice.ok("whoami"); !strings.Contains(out, "keys:    5 KeyPackages at the provider") {
		t.Fatalf("whoami after publish-keys: %q", out)
	}
	// Bob finds Alice at her provider.
	if out := bob.ok("whois", "a.example", "partialName", "liddell"); !strings.Contains(out, `mimi://a.example/u/alice FN="Alice Liddell"`) {
		t.Fatalf("whois: %q", out)
	}

	// Consent, across providers, with the flag after the argument.
	if out := bob.ok("consent", "request", "alice@a.example", "-room", "a.example/club"); out != "sent: bob@b.example asks alice@a.example for consent to add them (room mimi://a.example/r/club)\n" {
		t.Fatalf("consent request: %q", out)
	}
	alice.syncUntil("consent: bob@b.example asks alice@a.example for consent to add them (room mimi://a.example/r/club)")
	if out := alice.ok("consent", "list"); !strings.Contains(out, "pending: bob@b.example asks alice@a.example") {
		t.Fatalf("consent list: %q", out)
	}

	// Alice creates the room and adds Bob; Bob joins from the Welcome.
	if out := alice.ok("create-room", "club"); out != "created mimi://a.example/r/club\n" {
		t.Fatalf("create-room: %q", out)
	}
	if out := alice.ok("add", "a.example/club", "bob@b.example"); out != "added bob@b.example (regular_user) to mimi://a.example/r/club\n" {
		t.Fatalf("add: %q", out)
	}
	bob.syncUntil("[mimi://a.example/r/club] joined the room (epoch 1)")

	// Both speak; each sees the other's message, not its own.
	alice.ok("send", "club", "hello", "bob")
	bob.ok("send", "mimi://a.example/r/club", "hi alice")
	got := bob.syncUntil("alice@a.example: hello bob")
	if !regexp.MustCompile(`(?m)^\[mimi://a.example/r/club\] #\d+ alice@a.example: hello bob$`).MatchString(got) {
		t.Fatalf("bob's watch shows the message as:\n%s", got)
	}
	if strings.Contains(got, "hi alice") {
		t.Fatalf("bob's watch shows his own message:\n%s", got)
	}
	alice.syncUntil("bob@b.example: hi alice")

	// The room as its hub shows it.
	info := alice.ok("members", "club")
	for _, want := range []string{"epoch:     1", "providers: a.example, b.example", "alice@a.example (owner", "bob@b.example (regular_user)"} {
		if !strings.Contains(info, want) {
			t.Fatalf("members lacks %q:\n%s", want, info)
		}
	}
	// Bob's provider does not host the room: he sees his own view.
	if info := bob.ok("members", "a.example/club"); !strings.Contains(info, "alice@a.example/phone") || !strings.Contains(info, "bob@b.example/laptop") {
		t.Fatalf("bob's members:\n%s", info)
	}

	// Machine output.
	alice.ok("send", "club", "in json")
	var ev jsonEvent
	var line string
	deadline := time.Now().Add(10 * time.Second)
	for line == "" && time.Now().Before(deadline) {
		line = strings.TrimSpace(bob.ok("-json", "watch", "-wait", "1s"))
	}
	if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Kind != "message" || ev.Text == nil || *ev.Text != "in json" ||
		ev.Sender != "mimi://a.example/u/alice/d/phone" || ev.Room != "mimi://a.example/r/club" {
		t.Fatalf("json watch: %q (%v)", line, err)
	}

	// Abuse reports: Alice reports Bob's message, the hub verifies it, and
	// its operator lists it.
	if out := alice.ok("report", "club", "-reason", "spam", "-note", "testing"); !regexp.MustCompile(`^reported message #\d+ from bob@b.example in mimi://a.example/r/club: "hi alice"\n$`).MatchString(out) {
		t.Fatalf("report: %q", out)
	}
	if out := bob.ok("report", "a.example/club", "alice@a.example"); !strings.Contains(out, `from alice@a.example in mimi://a.example/r/club: "in json"`) {
		t.Fatalf("bob's report: %q", out)
	}
	if out := alice.ok("report", "club", "carol@a.example"); out != "reported carol@a.example in mimi://a.example/r/club (no message of theirs is kept: the report carries none)\n" {
		t.Fatalf("report without a message: %q", out)
	}
	alice.fails(`unknown reason "rude"`, "report", "club", "-reason", "rude")
	alice.fails("message #999999 of mimi://a.example/r/club is not kept", "report", "-seq", "999999", "club")
	reports := alice.ok("reports", "-ops", w.a.OpsURL)
	for _, want := range [][]string{
		{"mimi://a.example/r/club", "alice@a.example", "bob@b.example", "spam", "1", "1", "testing"},
		{"mimi://a.example/r/club", "bob@b.example", "alice@a.example", "other", "1", "1"},
		{"mimi://a.example/r/club", "alice@a.example", "carol@a.example", "other", "0", "0"},
	} {
		if !hasRow(reports, want...) {
			t.Fatalf("reports lacks a row with %q:\n%s", want, reports)
		}
	}

	// Alice makes Bob an admin; Bob, who has not synced, sends: the hub
	// refuses the stale epoch, and send catches up and sends again.
	alice.ok("roles", "club", "bob@b.example", "admin")
	out = bob.ok("send", "a.example/club", "caught up")
	if !strings.Contains(out, "[mimi://a.example/r/club] alice@a.example committed epoch 2: set bob@b.example's roles to admin\n") ||
		!strings.HasSuffix(out, "sent to mimi://a.example/r/club\n") {
		t.Fatalf("send after a commit:\n%s", out)
	}
	alice.syncUntil("bob@b.example: caught up")

	// Alice removes Bob, and Bob learns he is out; she adds him back.
	if out := alice.ok("remove", "club", "bob@b.example"); out != "removed bob@b.example from mimi://a.example/r/club\n" {
		t.Fatalf("remove: %q", out)
	}
	bob.syncUntil("[mimi://a.example/r/club] you are no longer in the room (commit by ")
	if out := bob.ok("rooms"); out != "not in any room\n" {
		t.Fatalf("bob's rooms after his removal: %q", out)
	}
	alice.ok("add", "club", "bob@b.example")
	bob.syncUntil("[mimi://a.example/r/club] joined the room (epoch 4)")

	// Bob leaves: Alice sees the proposal, commits it, and Bob learns he
	// is out.
	bob.ok("leave", "a.example/club")
	alice.syncUntil("bob@b.example proposes: remove bob@b.example", "bob@b.example proposes: leave the room")
	if out := alice.ok("commit", "club"); out != "committed mimi://a.example/r/club: now at epoch 5\n" {
		t.Fatalf("commit: %q", out)
	}
	// (Whether the removed member learns who committed depends on
	// mimi/client: "a member" when it does not.)
	bob.syncUntil("committed epoch 5: remove bob@b.example; left: bob@b.example/laptop",
		"[mimi://a.example/r/club] you are no longer in the room (commit by ")
	if out := bob.ok("rooms"); out != "not in any room\n" {
		t.Fatalf("bob's rooms after leaving: %q", out)
	}
	if info := alice.ok("members", "club"); strings.Contains(info, "bob@") {
		t.Fatalf("members after bob left:\n%s", info)
	}
	bob.fails("not a member of the room", "send", "a.example/club", "still here?")
}

// TestWatch runs watch while other commands use the same profile.
func TestWatch(t *testing.T) {
	w := startWorld(t, "")
	alice, bob := newUser(t), newUser(t)
	alice.ok("register", "-server", w.a.ClientURL, "-ca", w.caFile, "-user", "alice", "-keys", "2")
	bob.ok("register", "-server", w.b.ClientURL, "-ca", w.caFile, "-user", "bob", "-keys", "2")
	alice.ok("create-room", "-open", "lobby")

	ctx, cancel := context.WithCancel(t.Context())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runErr(ctx, []string{"-profile", alice.profile, "watch", "-follow", "-poll", "2s"}, &out, &errOut)
	}()
	// Bob joins the open room by external commit and speaks; Alice's own
	// commands run meanwhile on the profile watch uses.
	bob.ok("join", "a.example/lobby")
	bob.ok("send", "a.example/lobby", "knock knock")
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("watch never printed %q; it printed:\n%s\nstderr:\n%s", want, out.String(), errOut.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("bob@b.example: knock knock")
	// Alice's own commands share the profile with the running watch.
	alice.ok("send", "lobby", "come in")
	bob.syncUntil("alice@a.example: come in")
	bob.ok("send", "a.example/lobby", "thanks")
	waitFor("bob@b.example: thanks")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch: %v", err)
	}
	if !strings.Contains(out.String(), "[mimi://a.example/r/lobby] bob@b.example committed epoch 1: bob@b.example/cli joined by external commit") {
		t.Fatalf("watch did not report the join:\n%s", out.String())
	}
	if strings.Contains(out.String(), "come in") {
		t.Fatalf("watch printed alice's own message:\n%s", out.String())
	}
	// After watch, the profile still works and holds every change.
	alice.ok("send", "lobby", "bye")
	bob.syncUntil("alice@a.example: bye")
}

// TestErrors checks bad command lines and failures.
func TestErrors(t *testing.T) {
	w := startWorld(t, "")
	alice := newUser(t)
	var ue *usageError
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "no command given"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"consent"}, "consent needs a subcommand"},
		{[]string{"consent", "paint"}, `unknown consent command "paint"`},
		{[]string{"register"}, "-user is required"},
		{[]string{"send", "club"}, "send: missing arguments"},
		{[]string{"bench", "-senders", "0"}, "is not a number between 1 and"},
		{[]string{"bench", "-mode", "fanout"}, "-mode must be messages or commits"},
		{[]string{"bench", "-shared-room"}, "-shared-room goes with -mode commits"},
		{[]string{"bench", "-duration", "0"}, "every level must end"},
		{[]string{"watch", "-nope"}, "flag provided but not defined: -nope"},
		{[]string{"reports", "-limit", "0"}, "-limit must be between 1 and 1000"},
		{[]string{"status", "-ops", "127.0.0.1:8445"}, "is not an http:// or https:// URL"},
		{[]string{"report", "club", "bob", "extra"}, "report: unexpected arguments"},
	} {
		err := alice.fails(c.want, c.args...)
		if !errors.As(err, &ue) {
			t.Errorf("mimictl %q: %T %v, want a usage error", c.args, err, err)
		}
	}
	if code := exitCode(alice.fails("no command given"), &bytes.Buffer{}); code != 2 {
		t.Errorf("a usage error exits %d, want 2", code)
	}
	if _, _, err := alice.run(t.Context(), "help", "add"); err != nil {
		t.Errorf("help add: %v", err)
	}
	if _, _, err := alice.run(t.Context(), "send", "-h"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("send -h: %v, want flag.ErrHelp", err)
	}

	// Without a profile.
	alice.fails("no profile in", "send", "club", "hello")
	// A server that is not there, and one whose CA is not given.
	alice.fails("connection refused", "register", "-server", "https://127.0.0.1:1", "-user", "alice")
	alice.fails("-ca", "register", "-server", w.a.ClientURL, "-user", "alice")
	alice.ok("register", "-server", w.a.ClientURL, "-ca", w.caFile, "-user", "alice", "-keys", "1")

	// Rooms that do not exist, or that alice is not in.
	alice.fails("not a member of the room", "send", "nowhere", "hello")
	alice.fails("not a member of the room", "send", "b.example/nowhere", "hello")
	alice.fails("noSuchRoom", "join", "a.example/nowhere")
	alice.fails("not a room", "send", "mimi://a.example/u/alice", "hello")
	alice.fails("HTTP 404", "members", "nowhere")
	// Users that do not exist.
	alice.ok("create-room", "club")
	alice.fails("no usable KeyPackage for mimi://b.example/u/nobody", "add", "club", "nobody@b.example")
	alice.fails(`unknown role "king"`, "add", "club", "bob@b.example:king")
	alice.fails("already a member", "create-room", "club")
	alice.fails("no message received in mimi://a.example/r/club is kept", "report", "club")
	// A profile whose state could not be saved refuses to send, but still
	// reads.
	marker := filepath.Join(alice.profile, unresolvedFile)
	if err := os.WriteFile(marker, []byte("at some time: send in a room: unknown\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	alice.fails("has a write of unknown outcome", "send", "club", "hello")
	alice.ok("rooms")
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	// The failures left the profile usable.
	if out := alice.ok("rooms"); out != "mimi://a.example/r/club (epoch 0)\n" {
		t.Fatalf("rooms: %q", out)
	}
}

// TestArgs checks the parsing of rooms, users and roles.
func TestArgs(t *testing.T) {
	for in, want := range map[string]string{
		"mimi://a.example/r/club": "mimi://a.example/r/club",
		"a.example/club":          "mimi://a.example/r/club",
		"club":                    "mimi://h.example/r/club",
	} {
		if got, err := parseRoom(in, "h.example"); err != nil || string(got) != want {
			t.Errorf("parseRoom(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a b", "mimi://a.example/u/x", "a.example/x/y"} {
		if got, err := parseRoom(bad, "h.example"); err == nil {
			t.Errorf("parseRoom(%q) = %q, want an error", bad, got)
		}
	}
	for in, want := range map[string]string{
		"mimi://b.example/u/bob":        "mimi://b.example/u/bob",
		"mimi://b.example/u/bob/d/desk": "mimi://b.example/u/bob",
		"bob@b.example":                 "mimi://b.example/u/bob",
		"bob":                           "mimi://h.example/u/bob",
	} {
		if got, err := parseUser(in, "h.example"); err != nil || string(got) != want {
			t.Errorf("parseUser(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"bob@b.example":                    "mimi://b.example/u/bob regular_user",
		"bob@b.example:admin,owner":        "mimi://b.example/u/bob admin,owner",
		"mimi://b.example/u/bob:visitor":   "mimi://b.example/u/bob visitor",
		"mimi://b.example/u/bob":           "mimi://b.example/u/bob regular_user",
		"carol:regular":                    "mimi://h.example/u/carol regular_user",
		"mimi://b.example/u/bob/d/x:admin": "mimi://b.example/u/bob admin",
	} {
		ur, err := parseUserRoles(in, "h.example")
		if got := string(ur.User) + " " + roleList(ur.Roles); err != nil || got != want {
			t.Errorf("parseUserRoles(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
