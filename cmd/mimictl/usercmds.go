package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/mimihub/mimi-hub/mimi/proto"
)

func consentCommand() *command {
	op := func(name, summary, help string, kind proto.ConsentOperation) *command {
		return &command{
			name: name, synopsis: "USER", summary: summary, help: help,
			setup: func(fs *flag.FlagSet) runFunc {
				room := fs.String("room", "", "limit the consent to this `ROOM` (default: any room)")
				return func(ctx context.Context, e *env, args []string) error {
					if err := wantArgs("consent "+name, args, 1, 1); err != nil {
						return err
					}
					return explain(e.readProfile(ctx, func(s *session) error {
						other, err := parseUser(args[0], s.domain())
						if err != nil {
							return err
						}
						entry := &proto.ConsentEntry{Operation: kind, Requester: s.member.User(), Target: other}
						if kind == proto.ConsentGrant || kind == proto.ConsentRevoke {
							entry.Requester, entry.Target = other, s.member.User()
						}
						if *room != "" {
							r, err := parseRoom(*room, s.domain())
							if err != nil {
								return err
							}
							entry.Room = &r
						}
						if err := s.api.Consent(ctx, entry); err != nil {
							return err
						}
						return e.output(consentJSON(entry), fmt.Sprintf("sent: %s\n", describeConsent(entry)))
					}))
				}
			},
		}
	}
	return &command{
		name: "consent", summary: "ask for, grant, revoke and list consent to be added",
		help: `On providers that require consent (mimi-hub -require-consent), a user's
KeyPackages are claimed only by users it granted consent to. 'request' and
'cancel' are made as the requester (this user wants to add USER); 'grant'
and 'revoke' as the target (USER may add this user).`,
		sub: []*command{
			op("request", "ask USER for consent to add them", `Asks USER (through their provider) for consent to add them to rooms: to
any room, or with -room to that one. USER sees the request in 'watch' and
'consent list', and answers with 'consent grant'.`, proto.ConsentRequest),
			op("cancel", "withdraw a request to USER", `Withdraws this user's earlier consent request to USER (the same -room
as the request).`, proto.ConsentCancel),
			op("grant", "let USER add this user", `Lets USER add this user to rooms (any room, or with -room that one): their
provider can then claim this user's KeyPackages. USER is told.`, proto.ConsentGrant),
			op("revoke", "withdraw USER's consent", `Withdraws the consent this user granted USER (the same -room as the
grant): USER can no longer add this user. Rooms already shared stay.`, proto.ConsentRevoke),
			{
				name: "list", summary: "list pending requests, grants received and decisions given",
				help: `Asks the provider for this user's consent state: requests others sent
that wait for an answer, grants this user received (whom it may add), and
the decisions it gave (grants and revocations).`,
				setup: func(fs *flag.FlagSet) runFunc {
					return func(ctx context.Context, e *env, args []string) error {
						if err := wantArgs("consent list", args, 0, 0); err != nil {
							return err
						}
						return explain(e.readProfile(ctx, func(s *session) error {
							l, err := s.api.ConsentList(ctx)
							if err != nil {
								return err
							}
							for _, g := range []struct {
								name    string
								entries []proto.ConsentEntry
							}{{"pending", l.Pending}, {"received", l.Received}, {"given", l.Given}} {
								for i := range g.entries {
									c := &g.entries[i]
									out := struct {
										List string `json:"list"`
										*jsonConsent
									}{g.name, consentJSON(c)}
									if err := e.output(out, fmt.Sprintf("%-8s %s\n", g.name+":", describeConsent(c))); err != nil {
										return err
									}
								}
							}
							if len(l.Pending)+len(l.Received)+len(l.Given) == 0 {
								e.printf("no consent entries\n")
							}
							return nil
						}))
					}
				},
			},
		},
	}
}

// searchTypes names the identifier query types.
func searchType(name string) (proto.SearchIdentifierType, bool) {
	for i, n := range []string{"handle", "nick", "email", "phone", "partialName", "wholeProfile", "oidcStdClaim", "vcardField"} {
		if strings.EqualFold(n, name) {
			return proto.SearchHandle + proto.SearchIdentifierType(i), true
		}
	}
	return 0, false
}

func whoisCommand() *command {
	return &command{
		name: "whois", synopsis: "DOMAIN TYPE VALUE", summary: "look users up at a provider (identifierQuery)",
		help: `TYPE is handle (the user name), nick, email, phone, partialName,
wholeProfile, oidcStdClaim or vcardField (these two need -field).`,
		setup: func(fs *flag.FlagSet) runFunc {
			field := fs.String("field", "", "claim or vCard field `name` for oidcStdClaim and vcardField")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("whois", args, 3, 3); err != nil {
					return err
				}
				t, ok := searchType(args[1])
				if !ok {
					return usagef("whois", "whois: unknown search type %q", args[1])
				}
				return explain(e.readProfile(ctx, func(s *session) error {
					res, err := s.api.Identifiers(ctx, args[0], &proto.IdentifierRequest{Type: t, Value: args[2], Field: *field})
					if err != nil {
						return err
					}
					if res.Code != proto.QuerySuccess {
						return e.output(map[string]any{"code": res.Code.String()}, fmt.Sprintf("%s\n", res.Code))
					}
					for _, p := range res.Profiles {
						var fields []string
						jf := map[string]string{}
						for _, f := range p.Fields {
							fields = append(fields, fmt.Sprintf("%s=%q", f.Name, f.Value))
							jf[f.Name] = string(f.Value)
						}
						text := strings.Join(append([]string{string(p.URI)}, fields...), " ") + "\n"
						if err := e.output(map[string]any{"uri": p.URI, "fields": jf}, text); err != nil {
							return err
						}
					}
					return nil
				}))
			}
		},
	}
}

// abuseType reads a report reason.
func abuseType(name string) (proto.AbuseType, bool) {
	switch strings.ToLower(name) {
	case "spam":
		return proto.AbuseSpam, true
	case "harassment":
		return proto.AbuseHarassment, true
	case "hate":
		return proto.AbuseHate, true
	case "violence":
		return proto.AbuseViolence, true
	case "sexual":
		return proto.AbuseSexual, true
	case "impersonation":
		return proto.AbuseImpersonation, true
	case "illegal":
		return proto.AbuseIllegal, true
	case "other":
		return proto.AbuseOther, true
	}
	return 0, false
}
