package fsm

import (
	"errors"
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// ErrorKind classifies a refused command, so the API can choose an HTTP
// status without parsing messages.
type ErrorKind uint8

// Error kinds.
const (
	OK         ErrorKind = 0
	Invalid    ErrorKind = 1 // malformed or inconsistent request (400)
	NotAllowed ErrorKind = 2 // the requester may not do this (403)
	NotFound   ErrorKind = 3 // no such room, user or client (404)
	Conflict   ErrorKind = 4 // already exists (409)
	Limit      ErrorKind = 5 // a bound was reached (429)
	// Unauthenticated: the client's credential the command carries is no
	// longer valid (revoked, or the user suspended) (401).
	Unauthenticated ErrorKind = 6
)

func (k ErrorKind) String() string {
	switch k {
	case OK:
		return "ok"
	case Invalid:
		return "invalid"
	case NotAllowed:
		return "not allowed"
	case NotFound:
		return "not found"
	case Conflict:
		return "conflict"
	case Limit:
		return "limit"
	case Unauthenticated:
		return "unauthenticated"
	}
	return fmt.Sprintf("error kind %d", uint8(k))
}

// Result is what applying a command returns to its proposer (and, for a
// repeated request id, what the first application returned).
type Result struct {
	Kind    ErrorKind
	Message string
	// Body is the encoded MIMI response, for commands that have one
	// (UpdateRoomResponse, KeyMaterialResponse).
	Body []byte

	// Index is the log index of the entry the command was applied in, or,
	// for an answer given without one, the index of the state it was
	// decided on: a client that reads with it as its read-your-writes
	// token sees what the command did. Set by the cluster; not encoded.
	Index uint64

	// unchanged marks an answer that changed nothing (a MIMI-level
	// refusal such as wrongEpoch, a fanout with nothing to keep): like a
	// refusal, it leaves no trace, not even in the dedup table or the
	// clock. Not encoded.
	unchanged bool
}

// Err returns the result as an error, or nil when it succeeded.
func (r *Result) Err() error {
	if r.Kind == OK {
		return nil
	}
	return &Error{Kind: r.Kind, Message: r.Message}
}

// Error is a refused command.
type Error struct {
	Kind    ErrorKind
	Message string
}

func (e *Error) Error() string { return e.Kind.String() + ": " + e.Message }

// KindOf returns the kind of a refusal, or OK for other errors.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return OK
}

func refused(kind ErrorKind, format string, args ...any) *Result {
	return &Result{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// answerUnchanged is a successful answer to a command that changed
// nothing.
func answerUnchanged(body wire.Encoder) *Result {
	r := success(body)
	r.unchanged = true
	return r
}

func success(body wire.Encoder) *Result {
	if body == nil {
		return &Result{}
	}
	return &Result{Body: wire.MustMarshal(body)}
}

// EncodeTLS writes the result (for the duplicate-request table).
func (r *Result) EncodeTLS(w *wire.Writer) {
	w.Uint8(uint8(r.Kind))
	w.Opaque([]byte(r.Message))
	w.Opaque(r.Body)
}

// DecodeTLS reads the result.
func (r *Result) DecodeTLS(rd *wire.Reader) {
	var k uint8
	rd.Uint8(&k)
	r.Kind = ErrorKind(k)
	var m []byte
	rd.Opaque(&m)
	r.Message = string(m)
	rd.Opaque(&r.Body)
}
