package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/mimi/client"
)

// Account and device commands: invite-device (on an existing device) and
// link (a new device of an existing user), approve, devices, revoke,
// password; and the operator's users group.

// maxPasswordFile bounds what readPassword reads.
const maxPasswordFile = 4096

// readPassword reads a password from the first line of a file ("-": the
// standard input). Passwords are never flags: command lines are visible
// to every user of the machine.
func (e *env) readPassword(file string) (string, error) {
	var r io.Reader = os.Stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("password file: %w", err)
		}
		defer f.Close()
		r = f
	}
	line, err := bufio.NewReader(io.LimitReader(r, maxPasswordFile)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("password file: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("password file %s: the first line is empty", file)
	}
	return line, nil
}

// optionalPassword is readPassword for a flag that may be left empty: no
// file, no password.
func (e *env) optionalPassword(file string) (string, error) {
	if file == "" {
		return "", nil
	}
	return e.readPassword(file)
}

// linkPoll is how often a new device asks whether it was approved.
const linkPoll = 2 * time.Second

func linkCommand() *command {
	return &command{
		name: "link", summary: "add this machine as a new device of an existing user",
		help: `Adds DEVICE to the existing user USER at -server and creates its profile,
like 'register' does for a new user. The provider needs proof from the
user. The way to give it: run 'mimictl invite-device' on one of the user's
devices and pass the code it prints (XXXX-XXXX-XXXX, valid 10 minutes,
once) with -code; the device is added at once. With -password-file, the
account's password is the proof. With neither, this prints a code
(XXXX-XXXX) and waits until one of the user's devices approves it with
'mimictl approve CODE' (the code expires after 10 minutes); anyone can
make such requests, so a flood of them can keep this from working, which
it cannot do to invitations.`,
		setup: func(fs *flag.FlagSet) runFunc {
			server := fs.String("server", "https://127.0.0.1:8444", "the provider's client API `URL`, or the client APIs of all its nodes, comma-separated (requests fail over among them)")
			ca := fs.String("ca", "", "PEM `file` of the CA that signed the provider's certificate (default: the system roots)")
			user := fs.String("user", "", "the existing user's `name` (required)")
			device := fs.String("device", "cli", "the new device's `name`")
			keys := fs.Int("keys", 10, "number of one-time KeyPackages to upload (plus one last-resort KeyPackage)")
			pwFile := fs.String("password-file", "", "prove the account with the password on the first line of `FILE` ('-': standard input) instead of an approval")
			code := fs.String("code", "", "the `CODE` 'mimictl invite-device' printed on one of the user's devices (the way to add a device)")
			force := fs.Bool("force", false, "replace an existing profile (its client and rooms are lost)")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("link", args, 0, 0); err != nil {
					return err
				}
				if *user == "" {
					return usagef("link", "link: -user is required")
				}
				if *keys < 0 || *keys > 1000 {
					return usagef("link", "link: -keys must be between 0 and 1000")
				}
				if *code != "" && *pwFile != "" {
					return usagef("link", "link: -code and -password-file are two proofs; give one")
				}
				password, err := e.optionalPassword(*pwFile)
				if err != nil {
					return err
				}
				servers, err := parseServers(*server)
				if err != nil {
					return usagef("link", "link: -server: %v", err)
				}
				verb := "linked"
				if *code != "" {
					verb = "invited"
				}
				return explain(e.register(ctx, servers, *ca, "", verb, func(ctx context.Context, api *client.User) (*client.Registration, error) {
					if *code != "" {
						return api.RedeemInvite(ctx, *user, *device, *code)
					}
					if password != "" {
						return api.AddDeviceWithPassword(ctx, *user, *device, password)
					}
					req, err := api.RequestLink(ctx, *user, *device)
					if err != nil {
						return nil, err
					}
					e.printf("to add %s, approve this code on one of %s's devices within %d minutes:\n\n    mimictl approve %s\n\nwaiting...\n",
						req.Client, short(req.User), int(time.Until(req.Expires).Round(time.Minute).Minutes()), req.Code)
					return api.WaitLinked(ctx, req, linkPoll)
				}, *keys, *force))
			}
		},
	}
}

func inviteDeviceCommand() *command {
	return &command{
		name: "invite-device", summary: "invite a new device of this user: prints the code to type there",
		help: `Makes, as this profile's device, a single-use invitation for a new device
of the same user and prints its code (XXXX-XXXX-XXXX). On the new device,
run 'mimictl link -user USER -device NAME -code CODE' within 10 minutes:
it is added at once. This is the way to add a device: only the user's
own devices make invitations (at most 5 open at a time), so nobody else
can use them up. Type the code only on your own new device: that device
reads your rooms.`,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("invite-device", args, 0, 0); err != nil {
					return err
				}
				return explain(e.readProfile(ctx, func(s *session) error {
					inv, err := s.api.InviteDevice(ctx)
					if err != nil {
						return err
					}
					id, _ := inv.User.Parse()
					out := map[string]any{"user": inv.User, "id": inv.ID, "code": inv.Code, "expires_at": inv.Expires}
					return e.output(out, fmt.Sprintf("on the new device, within %d minutes, run:\n\n    mimictl link -user %s -device NAME -code %s\n\n(to cancel it: mimictl cancel-invite %s)\n",
						int(time.Until(inv.Expires).Round(time.Minute).Minutes()), id.User, inv.Code, inv.ID))
				}))
			}
		},
	}
}

func approveCommand() *command {
	return &command{
		name: "approve", synopsis: "CODE", summary: "approve a new device of this user by the code it shows",
		help: `Approves, as this profile's device, the link request of a new device of the
same user ('mimictl link' prints the code there). Approve only a code you
see on your own new device: the approved device reads your rooms.`,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("approve", args, 1, 1); err != nil {
					return err
				}
				return explain(e.readProfile(ctx, func(s *session) error {
					added, err := s.api.ApproveLink(ctx, args[0])
					if err != nil {
						return err
					}
					return e.output(map[string]string{"approved": string(added)}, fmt.Sprintf("approved %s\n", added))
				}))
			}
		},
	}
}

func devicesCommand() *command {
	return &command{
		name: "devices", summary: "list this user's devices, those waiting for approval, and open invitations",
		help: `Lists the devices of this profile's user as the provider knows them (how
and when each was added; this device is marked), then the devices waiting
for approval and until when, then the open device invitations (their ids,
not their codes). Approve a waiting device with 'mimictl approve CODE'
(the code the new device shows); revoke one with 'mimictl revoke DEVICE';
cancel an invitation with 'mimictl cancel-invite ID'.`,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("devices", args, 0, 0); err != nil {
					return err
				}
				return explain(e.readProfile(ctx, func(s *session) error {
					ds, pending, err := s.api.Devices(ctx)
					if err != nil {
						return err
					}
					for _, d := range ds {
						added := "-"
						if !d.AddedAt.IsZero() {
							added = d.AddedAt.Local().Format(time.DateTime)
						}
						mark := ""
						if d.Current {
							mark = " (this device)"
						}
						out := map[string]any{"client": d.Client, "how": d.How, "added_at": d.AddedAt, "current": d.Current}
						if err := e.output(out, fmt.Sprintf("%-50s %-10s %s%s\n", d.Client, d.How, added, mark)); err != nil {
							return err
						}
					}
					for _, p := range pending {
						out := map[string]any{"client": p.Client, "pending": true, "expires_at": p.ExpiresAt}
						if err := e.output(out, fmt.Sprintf("%-50s waiting for approval until %s\n", p.Client, p.ExpiresAt.Local().Format(time.TimeOnly))); err != nil {
							return err
						}
					}
					invs, err := s.api.Invitations(ctx)
					if err != nil {
						return err
					}
					for _, inv := range invs {
						out := map[string]any{"invitation": inv.ID, "inviter": inv.Inviter, "expires_at": inv.Expires}
						if err := e.output(out, fmt.Sprintf("invitation %s by %s, open until %s\n", inv.ID, inv.Inviter, inv.Expires.Local().Format(time.TimeOnly))); err != nil {
							return err
						}
					}
					return nil
				}))
			}
		},
	}
}

func cancelInviteCommand() *command {
	return &command{
		name: "cancel-invite", synopsis: "ID", summary: "cancel an open device invitation of this user",
		help: `Cancels the open device invitation ID of this profile's user ('mimictl
devices' lists them; 'mimictl invite-device' prints the id of the one it
makes): its code then adds no device. Any device of the user may cancel
any of the user's invitations.`,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("cancel-invite", args, 1, 1); err != nil {
					return err
				}
				return explain(e.readProfile(ctx, func(s *session) error {
					if err := s.api.CancelInvitation(ctx, args[0]); err != nil {
						return err
					}
					return e.output(map[string]string{"cancelled": args[0]}, fmt.Sprintf("cancelled invitation %s\n", args[0]))
				}))
			}
		},
	}
}

func revokeCommand() *command {
	return &command{
		name: "revoke", synopsis: "DEVICE", summary: "revoke one of this user's devices",
		help: `Revokes DEVICE (a name, as 'mimictl devices' lists it under the user) of
this profile's user: its token stops working at once on every node of the
provider, and its KeyPackages are deleted. The user's last device can be
revoked only if the account has a password.`,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("revoke", args, 1, 1); err != nil {
					return err
				}
				return explain(e.readProfile(ctx, func(s *session) error {
					if err := s.api.RevokeDevice(ctx, args[0]); err != nil {
						return err
					}
					return e.output(map[string]string{"revoked": args[0]}, fmt.Sprintf("revoked %s\n", args[0]))
				}))
			}
		},
	}
}

func passwordCommand() *command {
	return &command{
		name: "password", summary: "set or change the account's password",
		help: `Sets the password of this profile's user from the first line of
-password-file ('-': standard input). With a password, a device can be
added by 'mimictl link -password-file' without another device's approval.
Changing a password needs the current one (-current-file).`,
		setup: func(fs *flag.FlagSet) runFunc {
			pwFile := fs.String("password-file", "-", "the new password, first line of `FILE` ('-': standard input)")
			curFile := fs.String("current-file", "", "the current password, first line of `FILE`, when one is set")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("password", args, 0, 0); err != nil {
					return err
				}
				password, err := e.readPassword(*pwFile)
				if err != nil {
					return err
				}
				current, err := e.optionalPassword(*curFile)
				if err != nil {
					return err
				}
				return explain(e.readProfile(ctx, func(s *session) error {
					if err := s.api.SetPassword(ctx, password, current); err != nil {
						return err
					}
					e.printf("password set\n")
					return nil
				}))
			}
		},
	}
}

// usersCommand is the operator's account group (ops listener).
func usersCommand() *command {
	suspend := func(name string, on bool, summary string) *command {
		help := `Suspends USER (a name or mimi://DOMAIN/u/NAME) on the provider: none of
its devices authenticates from the next request on, on every node, until
'mimictl users unsuspend'. Its devices, rooms and KeyPackages are kept.`
		if !on {
			help = `Reinstates a suspended USER (a name or mimi://DOMAIN/u/NAME): its devices
that were not revoked authenticate again with their tokens.`
		}
		return &command{
			name: name, synopsis: "USER", summary: summary, help: help, noProfile: true,
			setup: func(fs *flag.FlagSet) runFunc {
				o := &opsFlags{}
				o.define(fs)
				return func(ctx context.Context, e *env, args []string) error {
					if err := wantArgs("users "+name, args, 1, 1); err != nil {
						return err
					}
					var out hub.OpsSuspendRequest
					if _, err := o.post(ctx, e, "/v1/users/suspend", hub.OpsSuspendRequest{User: args[0], Suspend: on}, &out); err != nil {
						return err
					}
					verb := "suspended"
					if !out.Suspend {
						verb = "reinstated"
					}
					return e.output(out, fmt.Sprintf("%s %s\n", verb, out.User))
				}
			},
		}
	}
	return &command{
		name: "users", summary: "operator: suspend users, revoke devices, mint invite codes",
		help: `Account operations on the provider's operations listener (-ops, with the
admin token). A suspended user's tokens stop working at once on every node;
a revoked device loses its token and KeyPackages.`,
		sub: []*command{
			suspend("suspend", true, "suspend USER: none of its devices authenticates"),
			suspend("unsuspend", false, "reinstate a suspended USER"),
			{
				name: "revoke", synopsis: "CLIENT", summary: "revoke one device (mimi://DOMAIN/u/USER/d/DEVICE)", noProfile: true,
				help: `Revokes CLIENT (mimi://DOMAIN/u/USER/d/DEVICE): its token stops working at
once on every node, its KeyPackages are deleted, and the hub proposes its
removal from every room it is in (rooms hosted elsewhere are asked to).
The answer lists rooms that cannot take the hub's proposals.`,
				setup: func(fs *flag.FlagSet) runFunc {
					o := &opsFlags{}
					o.define(fs)
					return func(ctx context.Context, e *env, args []string) error {
						if err := wantArgs("users revoke", args, 1, 1); err != nil {
							return err
						}
						var out hub.OpsRevokeAnswer
						if _, err := o.post(ctx, e, "/v1/users/revoke", hub.OpsRevokeRequest{Client: args[0]}, &out); err != nil {
							return err
						}
						return e.output(out, fmt.Sprintf("revoked %s; removal proposed in %d rooms hosted here, asked of the hubs of %d others, impossible in %d (rooms without the hub as external sender: their members must remove it)\n",
							out.Client, len(out.Proposed), len(out.Asked), len(out.Unable)))
					}
				},
			},
			{
				name: "devices", synopsis: "USER", summary: "list a user's devices", noProfile: true,
				help: `Lists the devices of USER (a name or mimi://DOMAIN/u/NAME) with how and
when each was added, and whether the user is suspended.`,
				setup: func(fs *flag.FlagSet) runFunc {
					o := &opsFlags{}
					o.define(fs)
					return func(ctx context.Context, e *env, args []string) error {
						if err := wantArgs("users devices", args, 1, 1); err != nil {
							return err
						}
						var out hub.OpsDevices
						if _, err := o.get(ctx, e, "/v1/users/devices", url.Values{"user": {args[0]}}, &out); err != nil {
							return err
						}
						var b strings.Builder
						if out.Suspended {
							fmt.Fprintf(&b, "%s is suspended\n", out.User)
						}
						for _, d := range out.Devices {
							fmt.Fprintf(&b, "%-50s %s\n", d.Client, d.How)
						}
						return e.output(out, b.String())
					}
				},
			},
			{
				name: "invite", summary: "mint a single-use invite code (mimi-hub -registration invite)", noProfile: true,
				help: `Mints a single-use invite code, valid for -ttl, that lets one new user
register on a provider running with -registration invite
('mimictl register -invite CODE').`,
				setup: func(fs *flag.FlagSet) runFunc {
					o := &opsFlags{}
					o.define(fs)
					ttl := fs.Duration("ttl", 7*24*time.Hour, "how long the code stays valid (at most 720h)")
					return func(ctx context.Context, e *env, args []string) error {
						if err := wantArgs("users invite", args, 0, 0); err != nil {
							return err
						}
						var out hub.OpsInvite
						if _, err := o.post(ctx, e, "/v1/invites", hub.OpsInviteRequest{TTLSeconds: int64(ttl.Seconds())}, &out); err != nil {
							return err
						}
						return e.output(out, fmt.Sprintf("%s (valid until %s; give it to one new user: mimictl register -invite %s ...)\n",
							out.Code, out.ExpiresAt.Local().Format(time.DateTime), out.Code))
					}
				},
			},
		},
	}
}
