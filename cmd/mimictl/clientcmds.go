package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mimihub/mimi-hub/internal/pause"

	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// saveTimeout bounds saving a profile after the command's context ended.
const saveTimeout = 30 * time.Second

// withProfile opens the profile, runs f, and saves the Member's state,
// also when f failed: a refused write may still have consumed message
// keys, and a sync may have moved the stream cursor.
func (e *env) withProfile(ctx context.Context, f func(s *session) error) error {
	s, err := e.openProfile(ctx, openOptions{})
	if err != nil {
		return err
	}
	defer s.close()
	// Check that the provider answers before changing any state: a write
	// that fails without an answer leaves an outcome the profile cannot
	// record (see session.save), and a provider that is down is the
	// common cause.
	if _, err := s.api.WhoAmI(ctx); err != nil {
		return fmt.Errorf("the provider at %s does not answer; nothing was changed: %w", strings.Join(s.prof.servers(), ", "), err)
	}
	opErr := f(s)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	if err := s.save(sctx); err != nil {
		return errors.Join(opErr, fmt.Errorf("saving the profile: %w", err))
	}
	return opErr
}

// readProfile opens the profile for a command that changes no state.
func (e *env) readProfile(ctx context.Context, f func(s *session) error) error {
	s, err := e.openProfile(ctx, openOptions{readOnly: true})
	if err != nil {
		return err
	}
	defer s.close()
	return f(s)
}

// catchUpWait bounds the wait for the commit that moved a room on, which
// reaches a follower provider asynchronously.
const catchUpWait = 5 * time.Second

// catchUp runs a write to room r; when the hub refuses it because the room
// has moved to a later epoch, it syncs until this client's epoch moves
// (printing what it finds), and tries once more.
func (e *env) catchUp(ctx context.Context, s *session, r proto.URI, write func() error) error {
	err := write()
	var re *client.RefusedError
	if !errors.As(err, &re) || re.Code != proto.UpdateWrongEpoch {
		return err
	}
	if !e.json {
		fmt.Fprintln(e.stderr, "mimictl: the room moved on; catching up before trying again")
	}
	before, _ := s.member.Epoch(r)
	deadline := time.Now().Add(catchUpWait)
	for {
		events, serr := s.member.SyncWait(ctx, time.Second)
		s.remember(events)
		if perr := e.printEvents(events); perr != nil {
			return perr
		}
		if serr != nil {
			return fmt.Errorf("%w (catching up failed: %w)", err, serr)
		}
		if now, ok := s.member.Epoch(r); !ok || now != before || time.Now().After(deadline) {
			break
		}
	}
	return write()
}

// explain adds hints to errors a user can act on.
func explain(err error) error {
	var se *client.StatusError
	var te *client.TransportError
	var kme *client.KeyMaterialError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te) && strings.Contains(te.Error(), "certificate signed by unknown authority"):
		return fmt.Errorf("%w\nhint: pass -ca with the provider's CA certificate (for a development provider: DATA/dev-ca/dev-ca.pem)", err)
	case errors.As(err, &te) && strings.Contains(te.Error(), "connection refused"):
		return fmt.Errorf("%w\nhint: is the provider running, and is -server its client API address (https://HOST:PORT)?", err)
	case errors.As(err, &se) && se.Status == 401 && strings.Contains(se.Message, "token"):
		return fmt.Errorf("%w\nhint: the provider does not accept this profile's token: the device was revoked, its user suspended, or the provider's data reset; add it again with 'mimictl link' (-profile NAME -force reuses this profile)", err)
	case errors.As(err, &kme):
		for _, u := range kme.Users {
			switch u.Status {
			case proto.UserNoConsent, proto.UserNoConsentForThisRoom:
				return fmt.Errorf("%w\nhint: %s's provider wants their consent: 'mimictl consent request %s', then wait for their grant", err, short(u.User), short(u.User))
			case proto.UserNoCompatibleMaterial:
				return fmt.Errorf("%w\nhint: %s has no KeyPackages left; they can upload more with 'mimictl publish-keys'", err, short(u.User))
			}
		}
		return err
	case errors.Is(err, client.ErrNotMember):
		return fmt.Errorf("%w\nhint: 'mimictl rooms' lists this client's rooms; run 'mimictl watch' to process Welcomes", err)
	}
	return err
}

func registerCommand() *command {
	return &command{
		name: "register", summary: "register a new user with its first device and create its profile",
		help: `Registers the new user USER with its first device DEVICE at the provider
whose client API is -server (for a cluster, list every node's client API,
comma-separated: the profile keeps them all, and every command then fails
over to the next node when one is down, answers 503 or breaks off; an
existing user's further devices are added with 'mimictl link'),
uploads a batch of KeyPackages plus a last-resort one, and creates the
profile (a folder, 0700) holding the server URL, the CA file's path, the
token and the client's MLS private keys (profile.json, 0600). The profile
is $MIMICTL_HOME/USER@DOMAIN (default ~/.mimictl/USER@DOMAIN), or the one
-profile names. The token is shown only once by the provider: it is saved
before anything else is tried.`,
		setup: func(fs *flag.FlagSet) runFunc {
			server := fs.String("server", "https://127.0.0.1:8444", "the provider's client API `URL`, or the client APIs of all its nodes, comma-separated (requests fail over among them)")
			ca := fs.String("ca", "", "PEM `file` of the CA that signed the provider's certificate (default: the system roots)")
			user := fs.String("user", "", "user `name` (required): the user is mimi://DOMAIN/u/NAME")
			device := fs.String("device", "cli", "device `name`: the client is mimi://DOMAIN/u/USER/d/DEVICE")
			regKey := fs.String("registration-key", "", "the provider's registration `key`, when it has one (default $MIMICTL_REGISTRATION_KEY)")
			keys := fs.Int("keys", 10, "number of one-time KeyPackages to upload (plus one last-resort KeyPackage)")
			name := fs.String("name", "", "full name for the user's profile (vCard FN; found by 'whois DOMAIN partialName')")
			email := fs.String("email", "", "email address for the user's profile (vCard EMAIL)")
			nick := fs.String("nick", "", "nickname for the user's profile (vCard NICKNAME)")
			force := fs.Bool("force", false, "replace an existing profile (its client and rooms are lost)")
			pwFile := fs.String("password-file", "", "set the account's password from the first line of `FILE` ('-': standard input), so devices can be added with it")
			invite := fs.String("invite", "", "invite `code` (providers with -registration invite)")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("register", args, 0, 0); err != nil {
					return err
				}
				if *user == "" {
					return usagef("register", "register: -user is required")
				}
				if *keys < 0 || *keys > 1000 {
					return usagef("register", "register: -keys must be between 0 and 1000")
				}
				key := *regKey
				if key == "" {
					key = e.getenv("MIMICTL_REGISTRATION_KEY")
				}
				var fields []proto.ProfileField
				for _, f := range []struct{ name, value string }{{"FN", *name}, {"EMAIL", *email}, {"NICKNAME", *nick}} {
					if f.value != "" {
						fields = append(fields, proto.ProfileField{Source: proto.FieldVCardField, Name: f.name, Value: []byte(f.value)})
					}
				}
				password, err := e.optionalPassword(*pwFile)
				if err != nil {
					return err
				}
				servers, err := parseServers(*server)
				if err != nil {
					return usagef("register", "register: -server: %v", err)
				}
				opts := client.RegisterOptions{Profile: fields, Password: password, Invite: *invite}
				return explain(e.register(ctx, servers, *ca, key, "registered", func(ctx context.Context, api *client.User) (*client.Registration, error) {
					return api.RegisterWith(ctx, *user, *device, opts)
				}, *keys, *force))
			}
		},
	}
}

// errProfileTaken reports a profile folder that already holds a client.
var errProfileTaken = errors.New("the profile already holds a client")

// maxProfileSuffix bounds the search for a free default profile name.
const maxProfileSuffix = 100

// claimProfileDir creates and locks a profile folder for a new client. It
// fails with errProfileTaken when the folder holds a profile, unless force.
func (e *env) claimProfileDir(ctx context.Context, dir string, force bool) (func(), error) {
	if err := makeProfileDir(dir); err != nil {
		return nil, err
	}
	release, err := lockProfile(ctx, dir, e.stderr)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, profileFile)); err == nil && !force {
		release()
		return nil, fmt.Errorf("%s: %w", dir, errProfileTaken)
	}
	return release, nil
}

// register runs the register and link commands: obtain makes the new
// device's token (registering a user, or linking a device), then the
// profile is saved and KeyPackages uploaded. servers are the provider's
// client API URLs (parseServers), among which requests fail over.
func (e *env) register(ctx context.Context, servers []string, ca, regKey, verb string, obtain func(context.Context, *client.User) (*client.Registration, error), keys int, force bool) error {
	server := servers[0]
	var err error
	if ca != "" {
		if ca, err = filepath.Abs(ca); err != nil {
			return fmt.Errorf("CA file: %w", err)
		}
	}
	// A named profile is claimed before registering, so that a taken name
	// costs no registration; the default name needs the provider's domain.
	var dir string
	release := func() {}
	defer func() { release() }()
	if name := e.profileName(); name != "" {
		if dir, err = e.profilePath(name); err != nil {
			return err
		}
		rel, err := e.claimProfileDir(ctx, dir, force)
		if err != nil {
			if errors.Is(err, errProfileTaken) {
				return fmt.Errorf("profile %s already holds a client; name another with -profile, or replace it with -force", dir)
			}
			return err
		}
		release = rel
	}
	hc, tr, err := httpClient(ca, regKey)
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	if hc.Transport, err = newFailover(hc.Transport, servers, e.logger()); err != nil {
		return err
	}
	api, err := client.NewUser(client.UserConfig{BaseURL: server, HTTPClient: hc, Logger: e.logger()})
	if err != nil {
		return err
	}
	reg, err := obtain(ctx, api)
	if err != nil {
		return err
	}
	if dir == "" {
		home, err := e.profileHome()
		if err != nil {
			return fmt.Errorf("registered %s, but %w", reg.Client, err)
		}
		for i := 1; i <= maxProfileSuffix; i++ {
			name := short(reg.User)
			if i > 1 {
				name = fmt.Sprintf("%s-%d", name, i)
			}
			dir = filepath.Join(home, name)
			var rel func()
			if rel, err = e.claimProfileDir(ctx, dir, force); err == nil {
				release = rel
				break
			}
			if !errors.Is(err, errProfileTaken) {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("registered %s, but no profile folder could hold it: %w", reg.Client, err)
		}
	}
	m, err := client.NewMember(api, e.memberConfig())
	if err != nil {
		return err
	}
	s := &session{e: e, dir: dir, api: api, member: m, tr: tr,
		prof: &profile{Version: profileVersion, Server: server, CA: ca, Client: reg.Client}}
	if len(servers) > 1 {
		s.prof.Servers = servers
	}
	// Save at once: the token exists only here.
	if err := s.save(ctx); err != nil {
		return fmt.Errorf("registered %s, but %w", reg.Client, err)
	}
	_ = os.Remove(filepath.Join(dir, unresolvedFile))
	upErr := m.UploadKeyPackages(ctx, keys, true)
	if err := s.save(context.WithoutCancel(ctx)); err != nil {
		return errors.Join(upErr, err)
	}
	if upErr != nil {
		return fmt.Errorf("registered %s (profile %s), but uploading KeyPackages failed: %w\nRun 'mimictl publish-keys' to try again", reg.Client, dir, upErr)
	}
	out := struct {
		Client      proto.URI `json:"client"`
		User        proto.URI `json:"user"`
		Profile     string    `json:"profile"`
		KeyPackages int       `json:"key_packages"`
	}{reg.Client, reg.User, dir, keys + 1}
	return e.output(out, fmt.Sprintf("%s %s as %s\nuploaded %d KeyPackages and a last-resort one\nprofile: %s (holds the client's private keys: keep it private)\n",
		verb, short(reg.User), reg.Client, keys, dir))
}

func whoamiCommand() *command {
	return &command{
		name: "whoami", summary: "show this profile's client, asking the provider",
		help: `Asks the provider who this profile's token belongs to and how many
KeyPackages this client has left there, and shows the profile's folder,
server and rooms. A failure here usually means the provider is down or no
longer knows the token.`,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("whoami", args, 0, 0); err != nil {
					return err
				}
				return explain(e.readProfile(ctx, func(s *session) error {
					id, err := s.api.WhoAmI(ctx)
					if err != nil {
						return err
					}
					kp, err := s.api.KeyPackageCount(ctx)
					if err != nil {
						return err
					}
					out := struct {
						Client      proto.URI   `json:"client"`
						User        proto.URI   `json:"user"`
						Domain      string      `json:"domain"`
						Server      string      `json:"server"`
						Profile     string      `json:"profile"`
						Rooms       []proto.URI `json:"rooms"`
						KeyPackages int         `json:"key_packages"`
						LastResort  bool        `json:"last_resort"`
					}{id.Client, id.User, id.Domain, strings.Join(s.prof.servers(), ","), s.dir, s.member.Rooms(), kp.Count, len(kp.LastResortSuites) > 0}
					lr := "no last-resort one"
					if out.LastResort {
						lr = "and a last-resort one"
					}
					text := fmt.Sprintf("client:  %s\nuser:    %s\nserver:  %s\nprofile: %s\nrooms:   %d\nkeys:    %d KeyPackages at the provider, %s\n",
						id.Client, short(id.User), strings.Join(s.prof.servers(), ", "), s.dir, len(out.Rooms), kp.Count, lr)
					return e.output(out, text)
				}))
			}
		},
	}
}

func publishKeysCommand() *command {
	return &command{
		name: "publish-keys", summary: "upload new KeyPackages, so that others can add this client to rooms",
		help: `Makes -n new KeyPackages (and with -last-resort a new last-resort one,
which the provider hands out when the others are used up), keeps their
private keys in the profile and uploads them. Each one-time KeyPackage
lets one room add this client; 'whoami' shows how many are left.`,
		setup: func(fs *flag.FlagSet) runFunc {
			n := fs.Int("n", 10, "number of one-time KeyPackages")
			last := fs.Bool("last-resort", false, "also upload a new last-resort KeyPackage")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("publish-keys", args, 0, 0); err != nil {
					return err
				}
				if *n < 0 || *n > 1000 || (*n == 0 && !*last) {
					return usagef("publish-keys", "publish-keys: -n must be between 1 and 1000 (or 0 with -last-resort)")
				}
				return explain(e.withProfile(ctx, func(s *session) error {
					if err := s.member.UploadKeyPackages(ctx, *n, *last); err != nil {
						return err
					}
					extra := ""
					if *last {
						extra = " and a last-resort one"
					}
					return e.output(map[string]any{"uploaded": *n, "last_resort": *last}, fmt.Sprintf("uploaded %d KeyPackages%s\n", *n, extra))
				}))
			}
		},
	}
}

func sendCommand() *command {
	return &command{
		name: "send", synopsis: "ROOM TEXT...", summary: "send a message to a room",
		help: `Sends TEXT (the remaining arguments joined by spaces) as an end-to-end
encrypted application message. Put -- before text that starts with a dash.`,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("send", args, 2, -1); err != nil {
					return err
				}
				text := strings.Join(args[1:], " ")
				return explain(e.withProfile(ctx, func(s *session) error {
					r, err := parseRoom(args[0], s.domain())
					if err != nil {
						return err
					}
					if err := e.catchUp(ctx, s, r, func() error { return s.member.Send(ctx, r, []byte(text)) }); err != nil {
						return err
					}
					return e.output(map[string]any{"room": r, "sent": text}, fmt.Sprintf("sent to %s\n", r))
				}))
			}
		},
	}
}

func watchCommand() *command {
	return &command{
		name: "watch", summary: "print this client's stream: messages, joins, removals, consent",
		help: `Reads this client's stream and prints one line per event: messages with
their sender, room and stream number (#N, for 'report -seq'), rooms joined
from Welcomes, commits (adds, removals, key updates), removals of this
client, consent requests and grants. Without -follow it processes what is
there (waiting up to -wait for the first item) and exits; with -follow it
long-polls and prints events as they arrive until interrupted (Ctrl-C);
when the provider goes away (a node restarts, the cluster elects a new
leader) it says so, reconnects (to the next node, when the profile lists
several) and goes on from the last position it saved.
The state is saved after each batch. The profile is locked only while a
batch is processed, so other mimictl commands (send, add...) can use the
same profile meanwhile; a command whose write is refused because the room
moved to a later epoch catches up first and prints the events it
processed itself, and watch does not print them again.`,
		setup: func(fs *flag.FlagSet) runFunc {
			follow := fs.Bool("follow", false, "keep printing events as they arrive, until interrupted")
			wait := fs.Duration("wait", 0, "without -follow: wait up to this long for the first item (at most 60s)")
			poll := fs.Duration("poll", 30*time.Second, "with -follow: long-poll duration of each request (at most 60s)")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("watch", args, 0, 0); err != nil {
					return err
				}
				if *wait < 0 || *wait > time.Minute || *poll <= 0 || *poll > time.Minute {
					return usagef("watch", "watch: -wait and -poll must be between 0 and 60s")
				}
				if !*follow {
					return explain(e.withProfile(ctx, func(s *session) error {
						events, err := s.member.SyncWait(ctx, *wait)
						s.remember(events)
						if perr := e.printEvents(events); perr != nil {
							return perr
						}
						return err
					}))
				}
				return explain(e.watch(ctx, *poll))
			}
		},
	}
}

// Reconnection of watch -follow: after a connection error or a 502, 503
// or 504 (the node restarts, the cluster elects a leader) watch waits,
// starting at watchRetryMin and doubling up to watchRetryMax, and goes on
// from the stream cursor saved with the last batch; with several nodes in
// the profile the next try goes to the next node.
const (
	watchRetryMin = time.Second
	watchRetryMax = 30 * time.Second
)

// watch runs the watch command: sync under the lock, then wait for the
// stream to move past what it held before the sync, without the lock.
func (e *env) watch(ctx context.Context, poll time.Duration) error {
	s, err := e.openProfile(ctx, openOptions{})
	if err != nil {
		return err
	}
	release := s.release
	s.release = nil
	defer func() { s.close() }()
	if !e.json {
		fmt.Fprintf(e.stderr, "mimictl: watching %s (Ctrl-C to stop)\n", s.member.Client())
	}
	wait := watchRetryMin
	for {
		err := e.watchRound(ctx, s, release, poll)
		release = nil
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && !transient(err) {
			return err
		}
		if err != nil {
			if !e.json {
				fmt.Fprintf(e.stderr, "mimictl: lost the provider (%v); reconnecting in %s\n", err, wait)
			}
			if !pause.For(ctx, wait) {
				return nil
			}
			wait = min(2*wait, watchRetryMax)
		} else if wait > watchRetryMin {
			if !e.json {
				fmt.Fprintln(e.stderr, "mimictl: reconnected; resuming from the saved stream position")
			}
			wait = watchRetryMin
		}
		// The next round reads the profile again: commands run meanwhile
		// in other processes are not overwritten, and the stream goes on
		// from the cursor the last batch saved.
		if release, err = lockProfile(ctx, s.dir, e.stderr); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := s.reload(); err != nil {
			release()
			return err
		}
	}
}

// watchRound syncs one batch under the lock (release, when not nil, ends
// it) and then long-polls, without the lock, until the stream moves past
// what it held before the sync.
func (e *env) watchRound(ctx context.Context, s *session, release func(), poll time.Duration) error {
	if release == nil {
		release = func() {}
	}
	// The stream's end before syncing: waiting for items after it cannot
	// miss one that arrives during the sync.
	page, err := s.api.Stream(ctx, client.StreamOptions{Limit: 1})
	if err != nil {
		release()
		return err
	}
	if err := e.syncBatch(ctx, s, release); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	after := page.Last
	if after == math.MaxUint64 {
		// The provider answers last = 2^64-1 for a stream that never
		// held an item (fsm: inbox.next - 1 with next still 0).
		after = 0
	}
	_, err = s.api.Stream(ctx, client.StreamOptions{After: after, Wait: poll, Limit: 1})
	return err
}

// transient reports an error a later try may not meet: no answer, or 502,
// 503 or 504.
func transient(err error) bool {
	var se *client.StatusError
	if errors.As(err, &se) {
		switch se.Status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests:
			return true
		}
		return false
	}
	var te *client.TransportError
	return errors.As(err, &te) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, client.ErrUnresolved)
}

// syncBatch syncs once, prints and saves, then releases the lock.
func (e *env) syncBatch(ctx context.Context, s *session, release func()) error {
	defer release()
	events, err := s.member.Sync(ctx)
	s.remember(events)
	perr := e.printEvents(events)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	if serr := s.save(sctx); serr != nil {
		return errors.Join(err, serr)
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(err, perr)
}
