package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Membership changes the cluster's membership: each Start adds a node,
// removes one gracefully, or replaces one (kill -9, wipe, a fresh node in
// its place). It steers the size back towards Base: above it, it removes;
// below it, it adds. Stop waits for the change to settle.
type Membership struct {
	Cluster Members
	Rand    *rand.Rand
	// Base is the cluster's intended size; zero means the size at the
	// first Start.
	Base int
	// Min is the smallest size it shrinks to; zero means 3.
	Min int

	mu sync.Mutex
}

// Kind implements Nemesis.
func (m *Membership) Kind() string { return "membership" }

// Start implements Nemesis.
func (m *Membership) Start(ctx context.Context) (Fault, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	nodes := ids(m.Cluster.Nodes())
	if m.Base == 0 {
		m.Base = len(nodes)
	}
	minSize := m.Min
	if minSize == 0 {
		minSize = 3
	}
	switch action := m.choose(len(nodes), minSize); action {
	case "add":
		id, err := m.Cluster.Add(ctx)
		if err != nil {
			return Fault{}, fmt.Errorf("add a node: %w", err)
		}
		return Fault{Targets: []string{id}, Detail: "added " + id}, nil
	case "remove":
		id := nodes[m.Rand.IntN(len(nodes))]
		if err := m.Cluster.Remove(ctx, id); err != nil {
			return Fault{Targets: []string{id}}, fmt.Errorf("remove %s: %w", id, err)
		}
		return Fault{Targets: []string{id}, Detail: "removed " + id + " (graceful leave)"}, nil
	default:
		id := nodes[m.Rand.IntN(len(nodes))]
		fresh, err := m.Cluster.Replace(ctx, id)
		if err != nil {
			return Fault{Targets: []string{id}}, fmt.Errorf("replace %s: %w", id, err)
		}
		return Fault{Targets: []string{id, fresh}, Detail: fmt.Sprintf("replaced %s (killed, wiped) with %s", id, fresh)}, nil
	}
}

// choose picks the next change: back towards Base when the size is off,
// else any change the spares and Min allow.
func (m *Membership) choose(size, minSize int) string {
	spare := m.Cluster.Spares() > 0
	switch {
	case size > m.Base && size > minSize:
		return "remove"
	case size < m.Base && spare:
		return "add"
	}
	actions := []string{"replace"}
	if spare && size <= m.Base {
		actions = append(actions, "add")
	}
	if size > minSize && size >= m.Base {
		actions = append(actions, "remove")
	}
	return actions[m.Rand.IntN(len(actions))]
}

// Stop implements Nemesis: it waits until the change settled (the new
// node promoted, the old one removed), as an operator would before the
// next one: two quick replacements in a row can otherwise leave dead
// voters holding half of the votes, which no Raft cluster survives.
func (m *Membership) Stop(ctx context.Context) error { return m.Cluster.Settle(ctx) }

// Snapshot forces a lagging node onto InstallSnapshot: Start pauses a
// follower and drives Writes writes (set it above the snapshot threshold
// plus the trailing logs), Stop resumes it and waits for it to catch up.
type Snapshot struct {
	Cluster Cluster
	Loader  Loader
	Rand    *rand.Rand
	// Writes is how many writes to drive while the follower is paused.
	Writes int

	mu      sync.Mutex
	paused  string
	applied uint64 // the paused node's applied index when paused
	result  string
}

// Kind implements Nemesis.
func (s *Snapshot) Kind() string { return "snapshot" }

// Start implements Nemesis.
func (s *Snapshot) Start(ctx context.Context) (Fault, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	leader, _ := s.Cluster.Leader(ctx)
	var followers []string
	for _, id := range ids(s.Cluster.Nodes()) {
		if id != leader {
			followers = append(followers, id)
		}
	}
	if len(followers) == 0 {
		return Fault{}, errors.New("snapshot: no follower to hold back")
	}
	id := followers[s.Rand.IntN(len(followers))]
	s.applied, _, _ = s.Loader.Progress(ctx, id)
	s.result = ""
	if err := s.Cluster.Pause(ctx, id); err != nil {
		return Fault{}, fmt.Errorf("snapshot: pause %s: %w", id, err)
	}
	s.paused = id
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	err := s.Loader.Load(lctx, s.Writes, []string{id})
	cancel()
	f := Fault{Targets: []string{id}, Detail: fmt.Sprintf("%s paused while %d writes were driven", id, s.Writes)}
	if err != nil {
		return f, fmt.Errorf("snapshot: load: %w", err)
	}
	return f, nil
}

// Stop implements Nemesis.
func (s *Snapshot) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paused == "" {
		return nil
	}
	id := s.paused
	s.paused = ""
	if err := s.Cluster.Resume(ctx, id); err != nil {
		return fmt.Errorf("snapshot: resume %s: %w", id, err)
	}
	if err := s.Loader.CaughtUp(ctx, id); err != nil {
		s.result = id + " did not catch up"
		return fmt.Errorf("snapshot: %s did not catch up: %w", id, err)
	}
	if _, snap, err := s.Loader.Progress(ctx, id); err != nil {
		s.result = fmt.Sprintf("%s caught up (snapshot index unknown: %v)", id, err)
	} else if snap > s.applied {
		s.result = fmt.Sprintf("%s caught up by InstallSnapshot (snapshot index %d, applied %d when paused)", id, snap, s.applied)
	} else {
		s.result = fmt.Sprintf("%s caught up from the log: no snapshot past index %d (drive more writes or lower the snapshot threshold)", id, s.applied)
	}
	return nil
}

// Result implements Reporter: how the held-back node caught up.
func (s *Snapshot) Result() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.result
}
