package room

import (
	"bytes"
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// maxReportedMessages bounds the messages one abuse report carries.
const maxReportedMessages = 32

// ReportAbuse is a reportAbuse request (seed section 7.9) from provider
// From. The hub keeps accepted reports for its operators; the room checks
// what it can.
type ReportAbuse struct {
	From string
	Body *proto.AbuseReport
}

// Report is an accepted abuse report.
type Report struct {
	Room       proto.URI
	Body       *proto.AbuseReport
	ReceivedAt uint64
	// Verified counts the reported messages the hub decrypted with the
	// disclosed keys and found signed by the alleged abuser's leaf. Only
	// messages of the current epoch can be checked.
	Verified int
	// Size is the length of Body's encoding (what the report weighs where
	// it is kept); it is not part of the report's encoding.
	Size int
}

func (q *ReportAbuse) apply(r *Room, at uint64) Outcome {
	b := q.Body
	if b == nil {
		return Outcome{Err: fmt.Errorf("%w: empty report", ErrInvalid)}
	}
	if d, err := b.ReportingUser.Domain(); err != nil || d != q.From {
		return Outcome{Err: fmt.Errorf("%w: %s may not report for %s", ErrNotAllowed, q.From, b.ReportingUser)}
	}
	if r.participants.get(b.ReportingUser) == nil {
		return Outcome{Err: fmt.Errorf("%w: %s is not a participant of %s", ErrNotAllowed, b.ReportingUser, r.id)}
	}
	if !bytes.Equal(b.GroupID, []byte(r.id)) {
		return Outcome{Err: fmt.Errorf("%w: the report is about group %q, not this room", ErrInvalid, b.GroupID)}
	}
	if id, err := b.AllegedAbuser.Parse(); err != nil || id.Kind != proto.KindUser {
		return Outcome{Err: fmt.Errorf("%w: the alleged abuser %q is not a user URI", ErrInvalid, b.AllegedAbuser)}
	}
	if len(b.Messages) > maxReportedMessages {
		return Outcome{Err: fmt.Errorf("%w: %d messages in one report; at most %d", ErrInvalid, len(b.Messages), maxReportedMessages)}
	}
	rep := &Report{Room: r.id, Body: b, ReceivedAt: at, Size: len(wire.MustMarshal(b))}
	abuser, ok := r.members.get(mls.LeafIndex(b.AllegedAbuserAt))
	if ok && abuser.user == b.AllegedAbuser && b.Epoch == r.Epoch() {
		for _, m := range b.Messages {
			if _, err := r.group.OpenReported(m.Message, m.Key, m.Nonce, mls.LeafIndex(b.AllegedAbuserAt)); err == nil {
				rep.Verified++
			}
		}
	}
	return Outcome{Report: rep}
}
