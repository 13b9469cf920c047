package nemesis

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// Firewall runs iptables inside a namespace.
type Firewall interface {
	// IPTables runs iptables with args inside namespace ns.
	IPTables(ctx context.Context, ns string, args ...string) error
}

// IPTables is the real Firewall: ip netns exec NS iptables -w ARGS.
type IPTables struct{}

// IPTables implements Firewall.
func (IPTables) IPTables(ctx context.Context, ns string, args ...string) error {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, "iptables", "-w"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables %s in %s: %w: %s", strings.Join(args, " "), ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// The nemesis's own chains, jumped to first from INPUT and OUTPUT, so
// healing is flushing them.
const (
	ChainIn  = "MJ-IN"
	ChainOut = "MJ-OUT"
)

// Rules manages the nemesis chains of the nodes' namespaces.
type Rules struct {
	FW Firewall
}

// Prepare creates the chains in ns (idempotent: an existing chain is
// flushed) and hooks them first into INPUT and OUTPUT.
func (r Rules) Prepare(ctx context.Context, ns string) error {
	for _, c := range []struct{ chain, hook string }{{ChainIn, "INPUT"}, {ChainOut, "OUTPUT"}} {
		if err := r.FW.IPTables(ctx, ns, "-N", c.chain); err != nil {
			if err := r.FW.IPTables(ctx, ns, "-F", c.chain); err != nil {
				return err
			}
			continue // already hooked
		}
		if err := r.FW.IPTables(ctx, ns, "-I", c.hook, "1", "-j", c.chain); err != nil {
			return err
		}
	}
	return nil
}

// Flush removes every nemesis rule in ns.
func (r Rules) Flush(ctx context.Context, ns string) error {
	for _, c := range []string{ChainIn, ChainOut} {
		if err := r.FW.IPTables(ctx, ns, "-F", c); err != nil {
			return err
		}
	}
	return nil
}

// Drop drops all traffic between ns and peer, both ways.
func (r Rules) Drop(ctx context.Context, ns string, peer netip.Addr) error {
	if err := r.FW.IPTables(ctx, ns, "-A", ChainIn, "-s", peer.String(), "-j", "DROP"); err != nil {
		return err
	}
	return r.FW.IPTables(ctx, ns, "-A", ChainOut, "-d", peer.String(), "-j", "DROP")
}

// Lose drops incoming packets from peer with probability p.
func (r Rules) Lose(ctx context.Context, ns string, peer netip.Addr, p float64) error {
	return r.FW.IPTables(ctx, ns, "-A", ChainIn, "-s", peer.String(), "-m", "statistic", "--mode", "random",
		"--probability", fmt.Sprintf("%.4f", p), "-j", "DROP")
}

// Queue sends outgoing packets to peer to netfilter queue q (bypassed
// while nothing is bound to it).
func (r Rules) Queue(ctx context.Context, ns string, peer netip.Addr, q uint16) error {
	return r.FW.IPTables(ctx, ns, "-A", ChainOut, "-d", peer.String(), "-j", "NFQUEUE", "--queue-num", fmt.Sprint(q), "--queue-bypass")
}
