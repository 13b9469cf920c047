package room

import (
	"bytes"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// ProvisionalMessage is a provisionalMessage request (seed section 7.5): an
// application message from provider From.
//
// The hub cannot read a PrivateMessage's sender, so the message names its
// sending client in authenticated_data (DECISIONS.md item 21): the hub checks
// that this client is a member of the sending provider whose user may send;
// members check, after decrypting, that it names the real sender.
type ProvisionalMessage struct {
	From    string
	Message *mls.Message
	// Raw, when the caller has it, is Message's encoding: the effect
	// carries it (Effect.Raw), so it is not encoded again.
	Raw []byte
}

func (q *ProvisionalMessage) apply(r *Room, at uint64) Outcome {
	m := q.Message
	if m == nil || m.WireFormat != mls.WirePrivateMessage || m.Private == nil || m.Private.ContentType != mls.ContentApplication {
		return respond(proto.UpdateInvalidProposal, "a provisional message is an application message sent as PrivateMessage")
	}
	pm := m.Private
	if !bytes.Equal(pm.GroupID, []byte(r.id)) {
		return respond(proto.UpdateInvalidProposal, "the message is for group %q, not this room", pm.GroupID)
	}
	if pm.Epoch != r.Epoch() {
		return respond(proto.UpdateWrongEpoch, "the message is for epoch %d, the room is at epoch %d", pm.Epoch, r.Epoch())
	}
	sender := proto.URI(pm.AuthenticatedData)
	l, ok := r.members.byClient[sender]
	if !ok {
		return respond(proto.UpdateNotAllowed, "authenticated_data must name the sending client, and %q is not a member", sender)
	}
	a, err := r.memberActor(l, q.From)
	if err != nil {
		return refuse(err)
	}
	// A message accepted already in this epoch passed the checks below
	// (roles change only with a commit, which starts a new epoch), as
	// Admit assumes.
	sum := q.sum()
	if r.recent.has(r.Epoch(), sum) {
		return repeated()
	}
	if (!a.active || !proto.Allows(r.sendRoles(), a.roles)) && !r.cfg.planted(plantBannedSends) {
		return respond(proto.UpdateNotAllowed, "%s may not send messages in this room", a.user)
	}
	r.recent.add(r.Epoch(), sum)
	e := r.accept(m, at, r.recipients(sender))
	e.Raw = q.Raw
	return Outcome{Response: proto.UpdateRoomResponse{Code: proto.UpdateSuccess}, Effects: []Effect{e}}
}

// sum is the message's digest for recentMessages: of the encoding it
// came in, when the caller kept it.
func (q *ProvisionalMessage) sum() uint64 {
	if q.Raw != nil {
		return messageSum(q.Raw)
	}
	return messageSum(wire.MustMarshal(q.Message))
}

// repeated answers a message the room accepted already: success, nothing
// changed, nothing fanned out.
func repeated() Outcome {
	return Outcome{Response: proto.UpdateRoomResponse{Code: proto.UpdateSuccess}, Repeat: true}
}

// SenderHint returns the authenticated_data a client puts on its
// application messages so the hub can authorize them.
func SenderHint(client proto.URI) []byte { return []byte(client) }
