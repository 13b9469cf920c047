package check

import (
	"time"

	"github.com/mimihub/mimi-hub/jepsen/internal/history"
)

// Result is the outcome of every checker on one history.
type Result struct {
	// Valid is true when no checker found an anomaly.
	Valid bool `json:"valid"`
	// Anomalies are what the checkers found, in checker order.
	Anomalies []Anomaly `json:"anomalies"`
	// Rooms are the per-room linearizability verdicts.
	Rooms []RoomCheck `json:"rooms"`
	// Ops are the history's operations with unknown outcomes resolved
	// where the final state decides them.
	Ops []history.Op `json:"-"`
}

// Options tune Run.
type Options struct {
	// LinearizabilityTimeout bounds porcupine's search per room; zero
	// means one minute. A room that runs out gets the verdict "timeout"
	// (no anomaly, no proof either).
	LinearizabilityTimeout time.Duration
}

// Run resolves unknown outcomes and runs every checker on a copy of snap.
func Run(snap history.Snapshot, opts Options) Result {
	if opts.LinearizabilityTimeout <= 0 {
		opts.LinearizabilityTimeout = time.Minute
	}
	s := snap
	s.Ops = append([]history.Op(nil), snap.Ops...)
	var anomalies []Anomaly
	anomalies = append(anomalies, Commits(&s)...)
	rooms, lin := Linearizable(&s, opts.LinearizabilityTimeout)
	anomalies = append(anomalies, lin...)
	anomalies = append(anomalies, KeyPackages(&s)...)
	anomalies = append(anomalies, Fanout(&s)...)
	anomalies = append(anomalies, Auth(&s)...)
	if anomalies == nil {
		anomalies = []Anomaly{}
	}
	return Result{Valid: len(anomalies) == 0, Anomalies: anomalies, Rooms: rooms, Ops: s.Ops}
}
