package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// jsonEvent is an event in -json output.
type jsonEvent struct {
	Kind     string       `json:"kind"`
	Seq      uint64       `json:"seq,omitempty"`
	Room     proto.URI    `json:"room,omitempty"`
	At       *time.Time   `json:"at,omitempty"`
	Sender   proto.URI    `json:"sender,omitempty"`
	User     proto.URI    `json:"user,omitempty"`
	Epoch    uint64       `json:"epoch,omitempty"`
	Text     *string      `json:"text,omitempty"`
	Proposal string       `json:"proposal,omitempty"`
	Added    []proto.URI  `json:"added,omitempty"`
	Removed  []proto.URI  `json:"removed,omitempty"`
	Patches  []jsonPatch  `json:"patches,omitempty"`
	Consent  *jsonConsent `json:"consent,omitempty"`
	Op       string       `json:"op,omitempty"`
	Error    string       `json:"error,omitempty"`
}

// jsonPatch is a ParticipantListPatch in -json output.
type jsonPatch struct {
	Add    []jsonUserRoles `json:"add,omitempty"`
	Update []jsonUserRoles `json:"update,omitempty"`
	Remove []proto.URI     `json:"remove,omitempty"`
}

type jsonUserRoles struct {
	User  proto.URI `json:"user"`
	Roles []string  `json:"roles"`
}

// jsonConsent is a ConsentEntry in -json output.
type jsonConsent struct {
	Operation   string    `json:"operation"`
	Requester   proto.URI `json:"requester"`
	Target      proto.URI `json:"target"`
	Room        proto.URI `json:"room,omitempty"`
	KeyPackages int       `json:"key_packages,omitempty"`
}

func consentJSON(c *proto.ConsentEntry) *jsonConsent {
	j := &jsonConsent{Operation: c.Operation.String(), Requester: c.Requester, Target: c.Target, KeyPackages: len(c.KeyPackages)}
	if c.Room != nil {
		j.Room = *c.Room
	}
	return j
}

func userRolesJSON(list []proto.UserRoles) []jsonUserRoles {
	var out []jsonUserRoles
	for _, ur := range list {
		out = append(out, jsonUserRoles{User: ur.User, Roles: roleStrings(ur.Roles)})
	}
	return out
}

// eventJSON turns an event into its JSON form.
func eventJSON(ev *client.Event) jsonEvent {
	j := jsonEvent{Kind: ev.Kind.String(), Seq: ev.Seq, Room: ev.Room, Sender: ev.Sender, Epoch: ev.Epoch, Op: ev.Op,
		Added: ev.Added, Removed: ev.Removed}
	if !ev.At.IsZero() {
		at := ev.At.UTC()
		j.At = &at
	}
	if ev.Sender != "" {
		j.User, _ = ev.Sender.UserOf()
	}
	if ev.Kind == client.EventMessage {
		text := string(ev.Text)
		j.Text = &text
	}
	if ev.Proposal != nil {
		j.Proposal = describeProposal(ev.Proposal.Proposal)
	}
	for _, p := range ev.Patches {
		j.Patches = append(j.Patches, jsonPatch{Add: userRolesJSON(p.AddUsers), Update: userRolesJSON(p.UpdateUsers), Remove: p.RemoveUsers})
	}
	if ev.Consent != nil {
		j.Consent = consentJSON(ev.Consent)
	}
	if ev.Err != nil {
		j.Error = ev.Err.Error()
	}
	return j
}

// describePatch writes a ParticipantListPatch for people.
func describePatch(p *proto.ParticipantListPatch) string {
	var parts []string
	for _, ur := range p.AddUsers {
		parts = append(parts, fmt.Sprintf("add %s (%s)", short(ur.User), roleList(ur.Roles)))
	}
	for _, ur := range p.UpdateUsers {
		parts = append(parts, fmt.Sprintf("set %s's roles to %s", short(ur.User), roleList(ur.Roles)))
	}
	for _, u := range p.RemoveUsers {
		parts = append(parts, "remove "+short(u))
	}
	if len(parts) == 0 {
		return "empty participant list change"
	}
	return strings.Join(parts, ", ")
}

// describeProposal writes a proposal for people.
func describeProposal(p *mls.Proposal) string {
	if p == nil {
		return "unknown proposal"
	}
	switch p.Type {
	case mls.ProposalSelfRemove:
		return "leave the room"
	case mls.ProposalRemove:
		return fmt.Sprintf("remove the client at leaf %d", p.Removed)
	case mls.ProposalAdd:
		if p.KeyPackage != nil {
			return "add " + short(proto.URI(p.KeyPackage.LeafNode.Credential.Identity))
		}
		return "add a client"
	case mls.ProposalUpdate:
		return "update its keys"
	case mls.ProposalGroupContextExtensions:
		return "change the room policy"
	case proto.ProposalParticipantListPatch:
		patch, _, err := proto.PatchOf(p, client.DefaultMaxVector)
		if err != nil {
			return "an unreadable participant list change"
		}
		return describePatch(patch)
	}
	return fmt.Sprintf("proposal type 0x%04x", uint16(p.Type))
}

// describeEvent writes an event as one line (without newline).
func describeEvent(ev *client.Event) string {
	prefix := ""
	if ev.Room != "" {
		prefix = "[" + string(ev.Room) + "] "
	}
	who := "the hub" // proposals without a member sender come from the hub
	switch {
	case ev.Sender != "":
		who = shortUser(ev.Sender)
	case ev.Kind == client.EventCommit || ev.Kind == client.EventRemoved:
		// Only members commit; a member removed by a commit is not told
		// who made it (mls leaves CommitResult.CommitterLeaf unset then).
		who = "a member"
	}
	switch ev.Kind {
	case client.EventMessage:
		return fmt.Sprintf("%s#%d %s: %s", prefix, ev.Seq, who, sanitize(string(ev.Text)))
	case client.EventProposal:
		desc := "?"
		if ev.Proposal != nil {
			desc = describeProposal(ev.Proposal.Proposal)
		}
		return prefix + who + " proposes: " + desc
	case client.EventCommit:
		var parts []string
		for _, p := range ev.Patches {
			parts = append(parts, describePatch(&p))
		}
		for _, a := range ev.Added {
			parts = append(parts, "joined: "+short(a))
		}
		for _, r := range ev.Removed {
			parts = append(parts, "left: "+short(r))
		}
		if ev.Commit != nil && ev.Commit.External && len(ev.Added) == 0 {
			parts = append(parts, short(ev.Sender)+" joined by external commit")
		}
		if len(parts) == 0 {
			parts = append(parts, "key update")
		}
		return fmt.Sprintf("%s%s committed epoch %d: %s", prefix, who, ev.Epoch, strings.Join(parts, "; "))
	case client.EventJoined:
		return fmt.Sprintf("%sjoined the room (epoch %d)", prefix, ev.Epoch)
	case client.EventRemoved:
		return fmt.Sprintf("%syou are no longer in the room (commit by %s, epoch %d)", prefix, who, ev.Epoch)
	case client.EventConsent:
		return "consent: " + describeConsent(ev.Consent)
	case client.EventGap:
		return "stream gap: items were dropped before they were read; rooms may need rejoining"
	case client.EventResolved:
		if ev.Err != nil {
			return fmt.Sprintf("%searlier %s was refused: %v", prefix, ev.Op, ev.Err)
		}
		return fmt.Sprintf("%searlier %s was accepted", prefix, ev.Op)
	case client.EventError:
		return fmt.Sprintf("%serror (stream item %d): %v", prefix, ev.Seq, ev.Err)
	}
	return fmt.Sprintf("%s%s event", prefix, ev.Kind)
}

// describeConsent writes a consent entry as a sentence.
func describeConsent(c *proto.ConsentEntry) string {
	scope := "any room"
	if c.Room != nil {
		scope = "room " + string(*c.Room)
	}
	req, tgt := short(c.Requester), short(c.Target)
	var s string
	switch c.Operation {
	case proto.ConsentRequest:
		s = fmt.Sprintf("%s asks %s for consent to add them (%s)", req, tgt, scope)
	case proto.ConsentCancel:
		s = fmt.Sprintf("%s withdraws its request to %s (%s)", req, tgt, scope)
	case proto.ConsentGrant:
		s = fmt.Sprintf("%s lets %s add them (%s)", tgt, req, scope)
	case proto.ConsentRevoke:
		s = fmt.Sprintf("%s no longer lets %s add them (%s)", tgt, req, scope)
	default:
		s = fmt.Sprintf("%s: requester %s, target %s (%s)", c.Operation, req, tgt, scope)
	}
	if len(c.KeyPackages) > 0 {
		s += fmt.Sprintf(", with %d KeyPackages", len(c.KeyPackages))
	}
	return s
}

// sanitize replaces control characters so that a message cannot forge
// terminal output; newlines and tabs become spaces.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n', r == '\t':
			return ' '
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return '?'
		}
		return r
	}, s)
}

// printEvents prints events, one per line.
func (e *env) printEvents(events []client.Event) error {
	for i := range events {
		ev := &events[i]
		if e.json {
			if err := e.emit(eventJSON(ev)); err != nil {
				return err
			}
			continue
		}
		if _, err := fmt.Fprintln(e.stdout, describeEvent(ev)); err != nil {
			return err
		}
	}
	return nil
}
