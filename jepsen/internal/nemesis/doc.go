// Package nemesis injects the faults of the jepsen harness and records
// when each was in force:
//
//   - kill: SIGKILL a node (one, the leader, or a minority), start it again
//     on heal;
//   - pause: SIGSTOP, then SIGCONT on heal;
//   - partition: iptables rules inside each node's namespace drop all
//     traffic (TCP and UDP, every port: Raft, gossip, internal channel,
//     HTTP) between the sides of a split: majority/minority, the leader
//     alone, or a bridge (two halves that both see one middle node);
//   - loss: iptables drops a fraction of the packets between nodes
//     (-m statistic --mode random);
//   - delay: iptables sends the packets between nodes to an NFQUEUE that a
//     user-space queue (jepsen/internal/nfqueue) releases after a delay,
//     because the kernel lacks tc netem;
//   - membership: add a node, remove one gracefully, or replace a dead one
//     with a fresh node, through the cluster's operations API;
//   - snapshot: pause a follower, drive enough writes past the snapshot
//     threshold and trailing logs that it can only catch up by
//     InstallSnapshot, then resume it.
//
// Every nemesis has Start (inject) and Stop (heal); a Schedule runs them
// alone or mixed and records fault windows (kind, targets, start, end) in
// a Log. The nemeses act on a Cluster, which the runner implements with
// real processes and the test network; the firewall rules go through a
// Firewall, so tests can check them without root.
package nemesis
