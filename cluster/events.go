package cluster

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// MaxEvents is how many recent cluster events a node keeps (Node.Events);
// older ones are dropped.
const MaxEvents = 100

// EventKind names what a cluster Event records.
type EventKind string

// Event kinds.
const (
	// EventLeader: this node learned of a new leader (Node: its id, "" for
	// none: an election is under way).
	EventLeader EventKind = "leader"
	// EventNodeDown and EventNodeUp: gossip found a node failed, or alive
	// again; EventNodeLeft: a node left gracefully.
	EventNodeDown EventKind = "node_down"
	EventNodeUp   EventKind = "node_up"
	EventNodeLeft EventKind = "node_left"
	// EventUnreachable and EventReachable: this node, as leader, got no
	// answer to its heartbeats from a follower, or answers again.
	EventUnreachable EventKind = "unreachable"
	EventReachable   EventKind = "reachable"
)

// Event is one change in the cluster as this node saw it.
type Event struct {
	At   time.Time `json:"at"`
	Kind EventKind `json:"kind"`
	// Node is the node the event is about.
	Node string `json:"node"`
	// Term is this node's Raft term when it saw the event.
	Term uint64 `json:"term"`
}

// eventLog keeps the last MaxEvents events and remembers which followers
// are unanswered, so a dead follower is one log line, not one per
// heartbeat.
type eventLog struct {
	mu          sync.Mutex
	events      []Event
	unreachable map[string]bool
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.events) == MaxEvents {
		l.events = slices.Delete(l.events, 0, 1)
	}
	l.events = append(l.events, e)
}

// Events returns the recent cluster events this node saw, oldest first
// (at most MaxEvents): leader changes, nodes going down, coming back and
// leaving.
func (n *Node) Events() []Event {
	n.events.mu.Lock()
	defer n.events.mu.Unlock()
	return slices.Clone(n.events.events)
}

// record adds an event about node now.
func (n *Node) record(kind EventKind, node string) {
	n.events.add(Event{At: time.Now().UTC(), Kind: kind, Node: node, Term: n.raft.CurrentTerm()})
}

// observe follows Raft's leader changes and, on the leader, its
// heartbeats to each follower, until Shutdown begins. hashicorp/raft logs
// every failed heartbeat (the adapter in hclog.go turns those lines down
// to debug); this logs one line when a follower stops answering and one
// when it answers again.
func (n *Node) observe(obs chan raft.Observation) {
	defer n.bg.Done()
	for {
		select {
		case o := <-obs:
			switch d := o.Data.(type) {
			case raft.LeaderObservation:
				n.record(EventLeader, string(d.LeaderID))
				if d.LeaderID == "" {
					n.log.Info("no leader known: an election is under way")
				} else {
					n.log.Info("leader is now "+string(d.LeaderID), "leader", d.LeaderID, "addr", d.LeaderAddr)
				}
				if string(d.LeaderID) != n.cfg.NodeID {
					// Not leading: no heartbeats to judge by. A later term
					// of this node's starts afresh.
					n.events.mu.Lock()
					clear(n.events.unreachable)
					n.events.mu.Unlock()
				}
			case raft.FailedHeartbeatObservation:
				if n.markUnreachable(string(d.PeerID), true) {
					since := "never answered"
					if !d.LastContact.IsZero() {
						since = "last answer " + time.Since(d.LastContact).Round(time.Millisecond).String() + " ago"
					}
					n.record(EventUnreachable, string(d.PeerID))
					n.log.Warn("node "+string(d.PeerID)+" is down: it does not answer heartbeats", "node", d.PeerID, "since", since)
				}
			case raft.ResumedHeartbeatObservation:
				if n.markUnreachable(string(d.PeerID), false) {
					n.record(EventReachable, string(d.PeerID))
					n.log.Info("node "+string(d.PeerID)+" is up: it answers heartbeats again", "node", d.PeerID)
				}
			}
		case <-n.stopping:
			return
		}
	}
}

// markUnreachable records a follower's heartbeat state and reports
// whether it changed.
func (n *Node) markUnreachable(id string, down bool) bool {
	n.events.mu.Lock()
	defer n.events.mu.Unlock()
	if n.events.unreachable == nil {
		n.events.unreachable = map[string]bool{}
	}
	if n.events.unreachable[id] == down {
		return false
	}
	if down {
		n.events.unreachable[id] = true
	} else {
		delete(n.events.unreachable, id)
	}
	return true
}

// gossipChanged records a node's gossip status change as an event.
// Suspicion is not one: it resolves either way within seconds.
func (n *Node) gossipChanged(id string, from, to MemberStatus) {
	var kind EventKind
	switch {
	case to == StatusFailed:
		kind = EventNodeDown
	case to == StatusLeft:
		kind = EventNodeLeft
	case to == StatusAlive && (from == StatusFailed || from == StatusLeft):
		kind = EventNodeUp
	default:
		return
	}
	n.record(kind, id)
	level := slog.LevelDebug // the leader's heartbeat line says it first
	if kind == EventNodeLeft {
		level = slog.LevelInfo
	}
	n.log.Log(context.Background(), level, "gossip: node "+id+" is "+string(to), "node", id, "was", from)
}

// startObserving registers the observer of leader changes and heartbeats.
func (n *Node) startObserving() {
	obs := make(chan raft.Observation, 64)
	n.raft.RegisterObserver(raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	}))
	n.bg.Add(1)
	go n.observe(obs)
}
