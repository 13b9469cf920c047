package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// roomWrite builds a command that changes a room: its first argument is
// the room, the rest go to do.
func roomWrite(name, synopsis, summary, help string, minArgs, maxArgs int, do func(ctx context.Context, e *env, s *session, r proto.URI, args []string) error) *command {
	return &command{
		name: name, synopsis: synopsis, summary: summary, help: help,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs(name, args, minArgs, maxArgs); err != nil {
					return err
				}
				return explain(e.withProfile(ctx, func(s *session) error {
					r, err := parseRoom(args[0], s.domain())
					if err != nil {
						return err
					}
					return do(ctx, e, s, r, args[1:])
				}))
			}
		},
	}
}

func createRoomCommand() *command {
	return &command{
		name: "create-room", synopsis: "ID", summary: "create a room hosted by this client's provider",
		help: `Creates mimi://DOMAIN/r/ID with this client as its only member and owner.
The default policy: members only; owners and admins add, remove and change
roles; everyone but visitors sends.`,
		setup: func(fs *flag.FlagSet) runFunc {
			open := fs.Bool("open", false, "anyone may join by external commit ('join'), as a regular user")
			single := fs.Bool("single-client", false, "each user may have only one client in the room")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("create-room", args, 1, 1); err != nil {
					return err
				}
				policy := proto.DefaultPolicy()
				if *open {
					policy.JoinRule = proto.Open
				}
				policy.MultipleClients = !*single
				return explain(e.withProfile(ctx, func(s *session) error {
					r, err := s.member.CreateRoom(ctx, args[0], policy)
					if err != nil {
						return err
					}
					return e.output(map[string]any{"room": r}, fmt.Sprintf("created %s\n", r))
				}))
			}
		},
	}
}

func roomsCommand() *command {
	return &command{
		name: "rooms", summary: "list the rooms this client is in",
		help: `Lists the rooms this client's saved MLS state holds, with the epoch it
knows each at. It does not ask the provider: run 'watch' first to process
Welcomes and commits that arrived since.`,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("rooms", args, 0, 0); err != nil {
					return err
				}
				return e.readProfile(ctx, func(s *session) error {
					if len(s.member.Rooms()) == 0 {
						e.printf("not in any room\n")
					}
					for _, r := range s.member.Rooms() {
						epoch, _ := s.member.Epoch(r)
						if err := e.output(map[string]any{"room": r, "epoch": epoch}, fmt.Sprintf("%s (epoch %d)\n", r, epoch)); err != nil {
							return err
						}
					}
					return nil
				})
			}
		},
	}
}

func membersCommand() *command {
	return &command{
		name: "members", synopsis: "ROOM", summary: "show a room's participants and state",
		help: `Asks the provider for the room's state when it hosts the room (participants
with roles, epoch, providers); for rooms hosted elsewhere it shows this
client's own view (member clients and epoch).`,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("members", args, 1, 1); err != nil {
					return err
				}
				return explain(e.readProfile(ctx, func(s *session) error { return e.roomInfo(ctx, s, args[0]) }))
			}
		},
	}
}

func addCommand() *command {
	return roomWrite("add", "ROOM USER[:ROLE,ROLE]...", "add users to a room (default role regular_user)",
		`Claims the users' KeyPackages through the room's hub and commits their
addition; they join when they next run 'watch'. Roles: owner, admin,
regular_user, visitor, banned.`,
		2, -1, func(ctx context.Context, e *env, s *session, r proto.URI, args []string) error {
			var users []proto.UserRoles
			for _, a := range args {
				ur, err := parseUserRoles(a, s.domain())
				if err != nil {
					return &usageError{msg: err.Error(), hint: "Run 'mimictl help add' for usage."}
				}
				users = append(users, ur)
			}
			if err := e.catchUp(ctx, s, r, func() error { return s.member.AddUsers(ctx, r, users) }); err != nil {
				return err
			}
			for _, ur := range users {
				if err := e.output(map[string]any{"room": r, "added": ur.User, "roles": roleStrings(ur.Roles)}, fmt.Sprintf("added %s (%s) to %s\n", short(ur.User), roleList(ur.Roles), r)); err != nil {
					return err
				}
			}
			return nil
		})
}

func removeCommand() *command {
	return roomWrite("remove", "ROOM USER", "remove a user (all its clients) from a room", `Commits the removal of every client of USER from ROOM and takes USER off
its participant list. The room's policy decides who may (by default owners
and admins). A room that moved on meanwhile is caught up first.`, 2, 2,
		func(ctx context.Context, e *env, s *session, r proto.URI, args []string) error {
			u, err := parseUser(args[0], s.domain())
			if err != nil {
				return err
			}
			if err := e.catchUp(ctx, s, r, func() error { return s.member.RemoveUser(ctx, r, u) }); err != nil {
				return err
			}
			return e.output(map[string]any{"room": r, "removed": u}, fmt.Sprintf("removed %s from %s\n", short(u), r))
		})
}

func rolesCommand() *command {
	return roomWrite("roles", "ROOM USER ROLE[,ROLE...]", "set a participant's roles (owner, admin, regular_user, visitor, banned)", `Commits a participant-list change that gives USER exactly the roles
listed, comma-separated (banned removes them from the room's members and
keeps them out). The room's policy decides who may change roles.`, 3, 3,
		func(ctx context.Context, e *env, s *session, r proto.URI, args []string) error {
			u, err := parseUser(args[0], s.domain())
			if err != nil {
				return err
			}
			roles, err := parseRoles(args[1])
			if err != nil {
				return err
			}
			if err := e.catchUp(ctx, s, r, func() error { return s.member.SetRoles(ctx, r, u, roles) }); err != nil {
				return err
			}
			return e.output(map[string]any{"room": r, "user": u, "roles": roleStrings(roles)}, fmt.Sprintf("%s is now %s in %s\n", short(u), roleList(roles), r))
		})
}

func commitCommand() *command {
	return roomWrite("commit", "ROOM", "commit the room's pending proposals (e.g. departures) with fresh keys", `Commits every proposal the hub holds for ROOM (departures proposed with
'leave', the hub's own removals) together with a fresh path of keys for
this client, moving the room to its next epoch. With no proposal pending it
is a plain key update.`, 1, 1,
		func(ctx context.Context, e *env, s *session, r proto.URI, args []string) error {
			if err := e.catchUp(ctx, s, r, func() error { return s.member.CommitPending(ctx, r) }); err != nil {
				return err
			}
			epoch, _ := s.member.Epoch(r)
			return e.output(map[string]any{"room": r, "epoch": epoch}, fmt.Sprintf("committed %s: now at epoch %d\n", r, epoch))
		})
}

func leaveCommand() *command {
	return roomWrite("leave", "ROOM", "leave a room", `Proposes this client's departure (its user leaves the participant list).
The hub queues it; it takes effect with the next commit by another member
(for example their 'commit', or any add or remove), and 'watch' then
reports that this client is no longer in the room.`, 1, 1,
		func(ctx context.Context, e *env, s *session, r proto.URI, args []string) error {
			if err := e.catchUp(ctx, s, r, func() error { return s.member.Leave(ctx, r) }); err != nil {
				return err
			}
			return e.output(map[string]any{"room": r, "left": true}, fmt.Sprintf("proposed leaving %s; it takes effect at the next commit by another member\n", r))
		})
}

func joinCommand() *command {
	return roomWrite("join", "ROOM", "join a room by external commit (open rooms, or rooms you are a participant of)", `Fetches ROOM's public group state from its hub and joins it with an
external commit, without a Welcome: for rooms whose policy lets anyone
join, and for a new device of a user who is already a participant.`, 1, 1,
		func(ctx context.Context, e *env, s *session, r proto.URI, args []string) error {
			if err := s.member.JoinExternal(ctx, r); err != nil {
				return err
			}
			epoch, _ := s.member.Epoch(r)
			return e.output(map[string]any{"room": r, "epoch": epoch}, fmt.Sprintf("joined %s at epoch %d\n", r, epoch))
		})
}

// roomInfo prints a room's state.
func (e *env) roomInfo(ctx context.Context, s *session, arg string) error {
	r, err := parseRoom(arg, s.domain())
	if err != nil {
		return err
	}
	info, err := s.api.Room(ctx, r)
	if client.IsKind(err, client.KindNotFound) || client.IsKind(err, client.KindNotAllowed) {
		members, merr := s.member.Members(r)
		if merr != nil {
			return err
		}
		epoch, _ := s.member.Epoch(r)
		out := map[string]any{"room": r, "epoch": epoch, "members": members, "source": "local"}
		var b strings.Builder
		why := "hosted by another provider"
		if client.IsKind(err, client.KindNotAllowed) {
			why = "the hub refused to describe it"
		}
		fmt.Fprintf(&b, "room:    %s (%s: this client's view)\nepoch:   %d\nmembers:\n", r, why, epoch)
		for _, c := range members {
			fmt.Fprintf(&b, "  %s\n", short(c))
		}
		return e.output(out, b.String())
	}
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "room:      %s\nepoch:     %d\nsequence:  %d\nclients:   %d\nproviders: %s\nparticipants:\n", info.Room, info.Epoch, info.Sequence, info.Members, strings.Join(info.Providers, ", "))
	parts := []map[string]any{}
	for _, p := range info.Participants {
		fmt.Fprintf(&b, "  %s (%s)\n", short(p.User), roleList(p.Roles))
		parts = append(parts, map[string]any{"user": p.User, "roles": roleStrings(p.Roles)})
	}
	out := map[string]any{"room": info.Room, "epoch": info.Epoch, "sequence": info.Sequence, "clients": info.Members,
		"providers": info.Providers, "participants": parts, "source": "provider"}
	return e.output(out, b.String())
}
