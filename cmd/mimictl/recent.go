package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"time"

	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// recentPerRoom is how many received messages a profile keeps per room
// for abuse reports.
const recentPerRoom = 20

// recentMessage is a received application message kept for an abuse
// report: what Member.ReportAbuse needs of its client.Event. Key and
// Nonce decrypt this message only (they are what a report discloses).
type recentMessage struct {
	// Seq is the message's position in this client's stream (watch
	// prints it as #Seq).
	Seq uint64 `json:"seq"`
	// At is the hub's acceptance time, when known.
	At time.Time `json:"at,omitzero"`
	// Sender is the sending client; Leaf its leaf index.
	Sender proto.URI `json:"sender"`
	Leaf   uint32    `json:"leaf"`
	// Epoch is the epoch the message was sent in.
	Epoch uint64 `json:"epoch"`
	// Message is the MLSMessage (a PrivateMessage), as received.
	Message []byte `json:"message"`
	Key     []byte `json:"key"`
	Nonce   []byte `json:"nonce"`
	// Text is the start of the message, for display.
	Text string `json:"text"`
}

// maxRecentText bounds recentMessage.Text.
const maxRecentText = 80

// remember keeps the application messages among events for reports, and
// forgets the rooms this client was removed from. The next save stores
// them.
func (s *session) remember(events []client.Event) {
	for i := range events {
		ev := &events[i]
		switch {
		case ev.Kind == client.EventRemoved:
			delete(s.prof.Recent, ev.Room)
		case ev.Kind == client.EventMessage && ev.Message != nil && ev.ContentKey != nil:
			msg, err := wire.Marshal(ev.Message)
			if err != nil {
				s.e.logger().Warn("not keeping a message for reports", "room", string(ev.Room), "seq", ev.Seq, "err", err)
				continue
			}
			text := []rune(sanitize(string(ev.Text)))
			if len(text) > maxRecentText {
				text = append(text[:maxRecentText-3], []rune("...")...)
			}
			if s.prof.Recent == nil {
				s.prof.Recent = map[proto.URI][]recentMessage{}
			}
			kept := append(s.prof.Recent[ev.Room], recentMessage{
				Seq: ev.Seq, At: ev.At, Sender: ev.Sender, Leaf: uint32(ev.SenderLeaf), Epoch: ev.Epoch,
				Message: msg, Key: ev.ContentKey, Nonce: ev.ContentNonce, Text: string(text),
			})
			s.prof.Recent[ev.Room] = kept[max(0, len(kept)-recentPerRoom):]
		}
	}
}

// event rebuilds the client.Event Member.ReportAbuse takes.
func (m *recentMessage) event(r proto.URI) (*client.Event, error) {
	msg := new(mls.Message)
	if err := wire.Unmarshal(m.Message, msg); err != nil {
		return nil, fmt.Errorf("the kept message #%d: %w", m.Seq, err)
	}
	return &client.Event{
		Kind: client.EventMessage, Seq: m.Seq, Room: r, At: m.At, Sender: m.Sender, Epoch: m.Epoch,
		Message: msg, SenderLeaf: mls.LeafIndex(m.Leaf), ContentKey: m.Key, ContentNonce: m.Nonce,
	}, nil
}

// findRecent picks the kept message of room r a report is about: stream
// number seq when non-zero, else the last one from user when set, else
// the last one.
func findRecent(kept []recentMessage, seq uint64, user proto.URI) (*recentMessage, bool) {
	for i, m := range slices.Backward(kept) {
		sender, _ := m.Sender.UserOf()
		switch {
		case seq != 0 && m.Seq == seq, seq == 0 && (user == "" || sender == user):
			return &kept[i], true
		}
	}
	return nil, false
}

func reportCommand() *command {
	return &command{
		name: "report", synopsis: "ROOM [USER]", summary: "report a message (or a participant) to the room's hub as abuse",
		help: `Sends an abuse report (reportAbuse) to the hub of ROOM about a message this
client received: the last one in ROOM, the last one from USER, or the one
'watch' printed as #N (-seq N). The report discloses that message's
decryption key and nonce only, so that the hub can check who sent it while
the room is still in the message's epoch. mimictl keeps the last 20
messages received per room for this.

With USER and no kept message from them, the report names USER without a
message, and the hub records it unverified.`,
		setup: func(fs *flag.FlagSet) runFunc {
			reason := fs.String("reason", "other", "spam, harassment, hate, violence, sexual, impersonation, illegal or other")
			note := fs.String("note", "", "free text for the hub's operators")
			seq := fs.Uint64("seq", 0, "report the message 'watch' printed as #`N`")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("report", args, 1, 2); err != nil {
					return err
				}
				t, ok := abuseType(*reason)
				if !ok {
					return usagef("report", "report: unknown reason %q", *reason)
				}
				return explain(e.readProfile(ctx, func(s *session) error {
					return e.report(ctx, s, args, *seq, t, *note)
				}))
			}
		},
	}
}

// report runs the report command.
func (e *env) report(ctx context.Context, s *session, args []string, seq uint64, reason proto.AbuseType, note string) error {
	r, err := parseRoom(args[0], s.domain())
	if err != nil {
		return err
	}
	epoch, ok := s.member.Epoch(r)
	if !ok {
		return fmt.Errorf("report: %w: %s", client.ErrNotMember, r)
	}
	var user proto.URI
	if len(args) > 1 {
		if user, err = parseUser(args[1], s.domain()); err != nil {
			return err
		}
	}
	if m, ok := findRecent(s.prof.Recent[r], seq, user); ok {
		ev, err := m.event(r)
		if err != nil {
			return err
		}
		if err := s.member.ReportAbuse(ctx, ev, reason, note); err != nil {
			return err
		}
		abuser := shortUser(m.Sender)
		return e.output(map[string]any{"room": r, "reported": abuser, "seq": m.Seq, "reason": hub.AbuseTypeName(reason)},
			fmt.Sprintf("reported message #%d from %s in %s: %q\n", m.Seq, abuser, r, m.Text))
	}
	switch {
	case seq != 0:
		return fmt.Errorf("report: message #%d of %s is not kept (mimictl keeps the last %d received per room)", seq, r, recentPerRoom)
	case user == "":
		return errors.New("report: no message received in " + string(r) + " is kept: run 'mimictl watch' first, or name the USER to report without a message")
	}
	rep := &proto.AbuseReport{ReportingUser: s.member.User(), AllegedAbuser: user, GroupID: []byte(r), Epoch: epoch, Reason: reason, Note: note}
	if err := s.api.ReportAbuse(ctx, r, rep); err != nil {
		return err
	}
	return e.output(map[string]any{"room": r, "reported": user, "reason": hub.AbuseTypeName(reason)},
		fmt.Sprintf("reported %s in %s (no message of theirs is kept: the report carries none)\n", short(user), r))
}
