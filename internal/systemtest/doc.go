// Package systemtest runs mimi-hub as real processes, the way operators do,
// and checks what the clustering design promises under crashes, restarts,
// membership changes and lagging nodes.
//
// The package has two parts.
//
// The harness (this package's non-test files) builds cmd/mimi-hub (Build),
// starts the nodes of a provider's cluster as separate processes on
// distinct loopback addresses (127.0.0.11, 127.0.0.12, ...; Linux routes
// all of 127/8 to the loopback interface) with fixed free ports, their own
// data folders and their logs in files (Provider, Node), and kills (SIGKILL),
// stops (SIGTERM), freezes (SIGSTOP) and thaws (SIGCONT) them. It reads each
// node's view of the cluster from its operations listener (Node.Status,
// Node.ClusterStatus). A TCP Proxy stands for the load balancer in front of
// a provider, so a peer provider keeps reaching the cluster whichever node
// dies, and FailoverClient gives MIMI clients the same. `mimictl bench
// -failover` uses the harness to measure leader failover with kill -9.
//
// The tests (the _test files) build the binary once with the race detector,
// then:
//
//   - TestLeaderKill3Nodes, TestLeaderKill5Nodes: kill -9 the leader in the
//     middle of the seed's scenario (a room, users added from this provider
//     and from a follower provider b.example, messages and commits) while
//     clients keep sending through the other nodes. No acknowledged message
//     or commit is lost, no epoch is accepted twice (every member's epochs
//     follow each other one by one, every node reports one transcript hash
//     per epoch, and every member decrypts every other member's last
//     message, which needs the same key schedule and so the same
//     transcript), every client, including those at b.example, receives
//     every message once and in hub order.
//   - TestRollingRestart: every node in turn stopped with SIGTERM and
//     started again under continuous load; nothing acknowledged is lost,
//     the service keeps accepting writes, and every node exits cleanly.
//   - TestReplaceDeadNode: a killed voter is not removed while that would
//     leave fewer voters than the cluster was bootstrapped with; a new node
//     (-bootstrap-expect 0 -join) comes in as a non-voter, is promoted, and
//     only then is the dead node removed.
//   - TestLaggingNodeSnapshot: a follower frozen with SIGSTOP while the
//     leader compacts its log past the follower's position catches up by
//     InstallSnapshot when thawed, and serves linearizable reads.
//
// Why processes and not the in-process clusters of the cluster package's
// tests: only a separate process can be killed at an arbitrary instruction
// (kill -9 leaves no deferred function, no graceful shutdown, no final
// snapshot, half-written sockets), frozen with its sockets still open
// (SIGSTOP: peers see a node that accepts connections and never answers),
// or stopped by the signal an orchestrator sends. These tests exercise the
// daemon's flag parsing, its TLS material on disk, its shutdown on SIGTERM
// and its restart from its data folder exactly as deployed. Every node runs
// with the race detector, and a data race reported in any node's log fails
// the test.
//
// Nothing here asserts a duration: waits are bounded only so that a broken
// build fails instead of hanging. Durations are logged for reading.
// `go test -short` skips the longest tests (the 5-node cluster and the
// rolling restart); CI runs them all.
package systemtest
