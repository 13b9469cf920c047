package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
)

// Target selection for process faults.
const (
	TargetOne      = "one"
	TargetLeader   = "leader"
	TargetMinority = "minority"
)

// pick chooses the targets of a process fault.
func pick(ctx context.Context, c Cluster, r *rand.Rand, modes []string) ([]string, string) {
	nodes := ids(c.Nodes())
	if len(modes) == 0 {
		modes = []string{TargetOne, TargetLeader, TargetMinority}
	}
	switch mode := modes[r.IntN(len(modes))]; mode {
	case TargetLeader:
		if l, err := c.Leader(ctx); err == nil && l != "" {
			return []string{l}, "the leader"
		}
		return []string{nodes[r.IntN(len(nodes))]}, "a random node (no leader known)"
	case TargetMinority:
		return Minority(nodes, r), "a minority"
	default:
		return []string{nodes[r.IntN(len(nodes))]}, "a random node"
	}
}

// Kill kills nodes with SIGKILL and starts them again on heal.
type Kill struct {
	Cluster Cluster
	Rand    *rand.Rand
	// Targets are the target modes to pick from (TargetOne, TargetLeader,
	// TargetMinority); empty means all.
	Targets []string

	mu     sync.Mutex
	killed []string
}

// Kind implements Nemesis.
func (k *Kill) Kind() string { return "kill" }

// Start implements Nemesis.
func (k *Kill) Start(ctx context.Context) (Fault, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	targets, why := pick(ctx, k.Cluster, k.Rand, k.Targets)
	for _, id := range targets {
		if err := k.Cluster.Kill(ctx, id); err != nil {
			return Fault{Targets: k.killed}, fmt.Errorf("kill %s: %w", id, err)
		}
		k.killed = append(k.killed, id)
	}
	return Fault{Targets: targets, Detail: "kill -9 " + why}, nil
}

// Stop implements Nemesis: it restarts the killed nodes.
func (k *Kill) Stop(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var errs []error
	for _, id := range k.killed {
		if err := k.Cluster.Start(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("restart %s: %w", id, err))
		}
	}
	k.killed = nil
	return errors.Join(errs...)
}

// Pause stops nodes with SIGSTOP and continues them on heal.
type Pause struct {
	Cluster Cluster
	Rand    *rand.Rand
	Targets []string

	mu     sync.Mutex
	paused []string
}

// Kind implements Nemesis.
func (p *Pause) Kind() string { return "pause" }

// Start implements Nemesis.
func (p *Pause) Start(ctx context.Context) (Fault, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	targets, why := pick(ctx, p.Cluster, p.Rand, p.Targets)
	for _, id := range targets {
		if err := p.Cluster.Pause(ctx, id); err != nil {
			return Fault{Targets: p.paused}, fmt.Errorf("pause %s: %w", id, err)
		}
		p.paused = append(p.paused, id)
	}
	return Fault{Targets: targets, Detail: "SIGSTOP " + why}, nil
}

// Stop implements Nemesis: SIGCONT to every paused node.
func (p *Pause) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, id := range p.paused {
		if err := p.Cluster.Resume(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("resume %s: %w", id, err))
		}
	}
	p.paused = nil
	return errors.Join(errs...)
}
