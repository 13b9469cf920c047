package room

import (
	"bytes"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// Admit answers, without changing the room, a request that the room
// would refuse for a reason it can tell at once: a provisional message
// that is malformed, for another group or epoch, or whose sender is not a
// member client of the sending provider; a commit or proposals for another
// epoch. It reports false when the request must be applied to be decided
// (signatures, the tree, policy). Its answers are the ones Apply gives, so
// a cluster may answer them without logging the request. Safe for
// concurrent use with other reads.
func (r *Room) Admit(req Request) (Outcome, bool) {
	switch q := req.(type) {
	case *ProvisionalMessage:
		m := q.Message
		if m == nil || m.WireFormat != mls.WirePrivateMessage || m.Private == nil || m.Private.ContentType != mls.ContentApplication {
			return respond(proto.UpdateInvalidProposal, "a provisional message is an application message sent as PrivateMessage"), true
		}
		pm := m.Private
		if !bytes.Equal(pm.GroupID, []byte(r.id)) {
			return respond(proto.UpdateInvalidProposal, "the message is for group %q, not this room", pm.GroupID), true
		}
		if pm.Epoch != r.Epoch() {
			return respond(proto.UpdateWrongEpoch, "the message is for epoch %d, the room is at epoch %d", pm.Epoch, r.Epoch()), true
		}
		sender := proto.URI(pm.AuthenticatedData)
		l, ok := r.members.byClient[sender]
		if !ok {
			return respond(proto.UpdateNotAllowed, "authenticated_data must name the sending client, and %q is not a member", sender), true
		}
		if _, err := r.memberActor(l, q.From); err != nil {
			return refuse(err), true
		}
		if r.recent.has(r.Epoch(), q.sum()) {
			return repeated(), true
		}
	case *UpdateRoom:
		if q.Body == nil || q.Body.Message == nil || q.Body.Message.Public == nil {
			return respond(proto.UpdateInvalidProposal, "updateRoom without a PublicMessage"), true
		}
		if q.Body.IsCommit() && !wellFormedCommit(q.Body) {
			return Outcome{}, false // Apply says what is wrong with it first
		}
		c := &q.Body.Message.Public.Content
		if !unsafeNoEpochCheck && !r.group.Closed() && bytes.Equal(c.GroupID, []byte(r.id)) && c.Epoch != r.Epoch() {
			return respond(proto.UpdateWrongEpoch, "the %s is for epoch %d, the room is at epoch %d", c.ContentType, c.Epoch, r.Epoch()), true
		}
	}
	return Outcome{}, false
}

// wellFormedCommit reports whether a commit passes the checks commit makes
// before the MLS layer sees it.
func wellFormedCommit(body *proto.UpdateRoomRequest) bool {
	if body.GroupInfo == nil || body.GroupInfo.GroupInfo == nil {
		return false
	}
	if rt := body.RatchetTree.Representation; rt != proto.TreeFull && rt != proto.TreeByReference {
		return false
	}
	_, ok, err := body.GroupInfo.GroupInfo.ExternalPub()
	return err == nil && ok
}

// Precheck is an updateRoom commit's signature checks, made before the
// commit is applied: Room.Precheck takes them from the room as it is
// (under the caller's read lock), Run makes them on any goroutine. The
// record Run returns goes into UpdateRoom.Verified; Apply skips what it
// covers while the room is still at the epoch and confirmed transcript
// hash it names, and checks everything otherwise (mls.CommitCheck).
type Precheck struct {
	check *mls.CommitCheck
}

// Precheck returns the signature checks of an updateRoom commit from a
// member, or nil: not such a commit, or one Apply refuses before any
// signature (Admit's refusals, a malformed bundle). Safe for concurrent
// use with other reads.
func (r *Room) Precheck(req Request) *Precheck {
	q, ok := req.(*UpdateRoom)
	if !ok || q.Body == nil || q.Body.Message == nil || q.Body.Message.Public == nil || !q.Body.IsCommit() || !wellFormedCommit(q.Body) {
		return nil
	}
	c := r.group.PrepareCommitCheck(q.Body.Message, q.Body.GroupInfo.GroupInfo)
	if c == nil {
		return nil
	}
	return &Precheck{check: c}
}

// Epoch returns the epoch the checks were taken at.
func (p *Precheck) Epoch() uint64 { return p.check.Epoch() }

// Run makes the checks. It returns the record of those that passed, or,
// when the commit's own signature does not verify, the outcome Apply
// gives while the room is at the epoch the checks were taken at.
func (p *Precheck) Run() (*mls.Verified, *Outcome) {
	v, err := p.check.Run()
	if err != nil {
		o := refuse(err)
		return nil, &o
	}
	return v, nil
}
