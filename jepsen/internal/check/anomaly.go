package check

import "fmt"

// AnomalyKind names what a checker found.
type AnomalyKind string

// Anomaly kinds.
const (
	// NotLinearizable: a room's history has no linearization.
	NotLinearizable AnomalyKind = "not-linearizable"
	// ForkedEpoch: two different commits were accepted for one epoch.
	ForkedEpoch AnomalyKind = "forked-epoch"
	// LostCommit: an acknowledged commit is not in the final state.
	LostCommit AnomalyKind = "lost-commit"
	// RefusedCommitApplied: a commit refused as wrongEpoch is in the final
	// state.
	RefusedCommitApplied AnomalyKind = "refused-commit-applied"
	// NodesDiverge: nodes report different final states for a room.
	NodesDiverge AnomalyKind = "nodes-diverge"
	// FinalStateMismatch: the final state of a room matches no chain of
	// commits the clients made.
	FinalStateMismatch AnomalyKind = "final-state-mismatch"
	// DuplicateKeyPackage: one KeyPackage was handed out to two claims.
	DuplicateKeyPackage AnomalyKind = "duplicate-keypackage"
	// UnknownKeyPackage: a claim got a KeyPackage nobody uploaded.
	UnknownKeyPackage AnomalyKind = "unknown-keypackage"
	// MissingFanout: an accepted message never reached the follower, or
	// the follower's sequence has a gap.
	MissingFanout AnomalyKind = "missing-fanout"
	// DuplicateFanout: a message took effect twice at the follower.
	DuplicateFanout AnomalyKind = "duplicate-fanout"
	// ReorderedFanout: the follower's order differs from the hub's, or
	// contradicts real time.
	ReorderedFanout AnomalyKind = "reordered-fanout"
	// ConflictingFanout: one sequence number carried two different
	// messages.
	ConflictingFanout AnomalyKind = "conflicting-fanout"
	// LostMessage: an accepted message is missing from the hub's order.
	LostMessage AnomalyKind = "lost-message"
	// RefusedMessageDelivered: a refused message was delivered.
	RefusedMessageDelivered AnomalyKind = "refused-message-delivered"
	// StaleAuth: a node refused the token of a client whose registration
	// had been acknowledged before the request was sent: it served a state
	// older than an acknowledged write.
	StaleAuth AnomalyKind = "stale-auth"
)

// Anomaly is one violation a checker found.
type Anomaly struct {
	Kind AnomalyKind `json:"kind"`
	// Room is the room concerned, if any.
	Room string `json:"room,omitempty"`
	// Detail explains it for a person.
	Detail string `json:"detail"`
	// Ops are the IDs of the operations involved.
	Ops []int `json:"ops,omitempty"`
}

// String renders the anomaly on one line.
func (a Anomaly) String() string {
	s := string(a.Kind)
	if a.Room != "" {
		s += " " + a.Room
	}
	s += ": " + a.Detail
	if len(a.Ops) > 0 {
		s += fmt.Sprintf(" (ops %v)", a.Ops)
	}
	return s
}

func anomaly(kind AnomalyKind, room string, ops []int, format string, args ...any) Anomaly {
	return Anomaly{Kind: kind, Room: room, Detail: fmt.Sprintf(format, args...), Ops: ops}
}
