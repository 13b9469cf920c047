package mls

import (
	"errors"
	"fmt"
)

// Categories of rejection. Every error the Follower returns wraps exactly one
// of these (test with errors.Is), with a message that says what was wrong.
var (
	// ErrMalformed: the message does not decode or is not the kind of message
	// the operation takes.
	ErrMalformed = errors.New("malformed message")
	// ErrWrongGroup: the message is for another group.
	ErrWrongGroup = errors.New("wrong group")
	// ErrWrongEpoch: the message was made for another epoch; another commit
	// won the race for this one.
	ErrWrongEpoch = errors.New("wrong epoch")
	// ErrUnknownSender: the sender is not a member, external sender or
	// allowed new member.
	ErrUnknownSender = errors.New("unknown sender")
	// ErrSignature: a signature does not verify (it wraps ErrBadSignature too).
	ErrSignature = errors.New("invalid signature")
	// ErrInvalidProposal: a proposal, or the list a commit covers, breaks RFC
	// 9420 section 12.
	ErrInvalidProposal = errors.New("invalid proposal")
	// ErrInvalidPath: the UpdatePath or the committer's new leaf is invalid.
	ErrInvalidPath = errors.New("invalid update path")
	// ErrInvalidTree: a ratchet tree fails validation.
	ErrInvalidTree = errors.New("invalid ratchet tree")
	// ErrGroupInfoMismatch: the GroupInfo supplied with a commit does not
	// describe the epoch the commit creates, or a GroupInfo is invalid.
	ErrGroupInfoMismatch = errors.New("GroupInfo mismatch")
	// ErrUnsupported: the message needs something this implementation or a
	// hub cannot do (an unsupported suite, or a commit sent as
	// PrivateMessage).
	ErrUnsupported = errors.New("unsupported")
	// ErrGroupClosed: the group was reinitialized and accepts no more
	// handshake messages.
	ErrGroupClosed = errors.New("group closed by ReInit")
	// ErrRejectedByPolicy: the caller's check refused the change.
	ErrRejectedByPolicy = errors.New("rejected by policy")
)

// reject wraps a category around an error so both match errors.Is.
type reject struct {
	kind error
	err  error
}

func (e *reject) Error() string   { return e.kind.Error() + ": " + e.err.Error() }
func (e *reject) Unwrap() []error { return []error{e.kind, e.err} }

// rejectf returns an error of category kind with a formatted message.
func rejectf(kind error, format string, args ...any) error {
	return &reject{kind: kind, err: fmt.Errorf(format, args...)}
}

// rejectAs files err under category kind, unless it is nil or already
// filed under a category.
func rejectAs(kind error, err error) error {
	var r *reject
	if err == nil || errors.As(err, &r) {
		return err
	}
	return &reject{kind: kind, err: err}
}
