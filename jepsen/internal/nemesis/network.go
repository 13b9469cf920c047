package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/mimihub/mimi-hub/jepsen/internal/nfqueue"
	"github.com/mimihub/mimi-hub/jepsen/internal/testnet"
)

// Partition modes.
const (
	PartitionMajority = "majority"
	PartitionLeader   = "leader"
	PartitionBridge   = "bridge"
)

// Partition splits the cluster with iptables rules in every node's
// namespace. Each Start picks one of Modes at random.
type Partition struct {
	Cluster Cluster
	Rules   Rules
	Modes   []string
	Rand    *rand.Rand

	mu       sync.Mutex
	affected []Node
}

// Kind implements Nemesis.
func (p *Partition) Kind() string { return "partition" }

// Start implements Nemesis.
func (p *Partition) Start(ctx context.Context) (Fault, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	nodes := p.Cluster.Nodes()
	modes := p.Modes
	if len(modes) == 0 {
		modes = []string{PartitionMajority, PartitionLeader, PartitionBridge}
	}
	var g Grudge
	var detail string
	switch mode := modes[p.Rand.IntN(len(modes))]; mode {
	case PartitionMajority:
		g, detail = MajorityMinority(ids(nodes), p.Rand)
	case PartitionBridge:
		g, detail = Bridge(ids(nodes), p.Rand)
	case PartitionLeader:
		leader, err := p.Cluster.Leader(ctx)
		if err != nil || leader == "" {
			leader = nodes[p.Rand.IntN(len(nodes))].ID
			detail = "no leader known; "
		}
		var d string
		g, d = IsolateNode(ids(nodes), leader)
		detail += d
	default:
		return Fault{}, fmt.Errorf("partition: unknown mode %q", mode)
	}
	byID := map[string]Node{}
	for _, n := range nodes {
		byID[n.ID] = n
	}
	p.affected = nodes
	for _, n := range nodes {
		if err := p.Rules.Prepare(ctx, n.Namespace); err != nil {
			return Fault{}, err
		}
		for _, peer := range g[n.ID] {
			if err := p.Rules.Drop(ctx, n.Namespace, byID[peer].Addr); err != nil {
				return Fault{}, err
			}
		}
	}
	var targets []string
	for n := range g {
		targets = append(targets, n)
	}
	slices.Sort(targets)
	return Fault{Targets: targets, Detail: detail}, nil
}

// Stop implements Nemesis: it flushes the rules of every node it touched.
func (p *Partition) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return flushAll(ctx, p.Rules, &p.affected)
}

func flushAll(ctx context.Context, r Rules, nodes *[]Node) error {
	var errs []error
	for _, n := range *nodes {
		if err := r.Flush(ctx, n.Namespace); err != nil {
			errs = append(errs, err)
		}
	}
	*nodes = nil
	return errors.Join(errs...)
}

// Loss drops a fraction of the packets between every pair of nodes.
type Loss struct {
	Cluster Cluster
	Rules   Rules
	// Probability is the chance that a packet is dropped; zero means 0.2.
	Probability float64

	mu       sync.Mutex
	affected []Node
}

// Kind implements Nemesis.
func (l *Loss) Kind() string { return "loss" }

// Start implements Nemesis.
func (l *Loss) Start(ctx context.Context) (Fault, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.Probability
	if p <= 0 {
		p = 0.2
	}
	nodes := l.Cluster.Nodes()
	l.affected = nodes
	for _, n := range nodes {
		if err := l.Rules.Prepare(ctx, n.Namespace); err != nil {
			return Fault{}, err
		}
		for _, peer := range nodes {
			if peer.ID == n.ID {
				continue
			}
			if err := l.Rules.Lose(ctx, n.Namespace, peer.Addr, p); err != nil {
				return Fault{}, err
			}
		}
	}
	return Fault{Targets: ids(nodes), Detail: fmt.Sprintf("%.0f%% of packets between nodes dropped", 100*p)}, nil
}

// Stop implements Nemesis.
func (l *Loss) Stop(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return flushAll(ctx, l.Rules, &l.affected)
}

// Closer is a bound delaying queue.
type Closer interface{ Close(context.Context) error }

// QueueOpener binds a delaying queue inside a namespace.
type QueueOpener func(ns string, cfg nfqueue.Config) (Closer, error)

// OpenQueue binds a real nfqueue.Queue inside namespace ns.
func OpenQueue(ns string, cfg nfqueue.Config) (Closer, error) {
	var q *nfqueue.Queue
	err := testnet.InNamespace(ns, func() error {
		var err error
		q, err = nfqueue.Open(cfg)
		return err
	})
	if err != nil {
		return nil, err
	}
	return q, nil
}

// Delay delays every packet between nodes: outgoing packets to peers go
// to a netfilter queue in each node's namespace, released after Delay.
type Delay struct {
	Cluster Cluster
	Rules   Rules
	// Delay is added to every packet between nodes (so about twice to a
	// round trip); zero means 100ms.
	Delay time.Duration
	// Queue is the netfilter queue number; zero means 77.
	Queue uint16
	// Open binds the queues; nil means OpenQueue.
	Open QueueOpener

	mu       sync.Mutex
	affected []Node
	queues   []Closer
}

// Kind implements Nemesis.
func (d *Delay) Kind() string { return "delay" }

// Start implements Nemesis.
func (d *Delay) Start(ctx context.Context) (Fault, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delay, qn, open := d.Delay, d.Queue, d.Open
	if delay <= 0 {
		delay = 100 * time.Millisecond
	}
	if qn == 0 {
		qn = 77
	}
	if open == nil {
		open = OpenQueue
	}
	nodes := d.Cluster.Nodes()
	d.affected = nodes
	for _, n := range nodes {
		q, err := open(n.Namespace, nfqueue.Config{Queue: qn, Delay: delay})
		if err != nil {
			return Fault{}, fmt.Errorf("delay on %s: %w", n.ID, err)
		}
		d.queues = append(d.queues, q)
		if err := d.Rules.Prepare(ctx, n.Namespace); err != nil {
			return Fault{}, err
		}
		for _, peer := range nodes {
			if peer.ID == n.ID {
				continue
			}
			if err := d.Rules.Queue(ctx, n.Namespace, peer.Addr, qn); err != nil {
				return Fault{}, err
			}
		}
	}
	return Fault{Targets: ids(nodes), Detail: fmt.Sprintf("%v added to every packet between nodes", delay)}, nil
}

// Stop implements Nemesis: rules first, then the queues release what they
// hold.
func (d *Delay) Stop(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	err := flushAll(ctx, d.Rules, &d.affected)
	for _, q := range d.queues {
		err = errors.Join(err, q.Close(ctx))
	}
	d.queues = nil
	return err
}
