// Package hubproc runs the mimi-hub binary under test: it builds it (go
// build, optionally with extra build tags), learns which flags it has (its
// -h output), and starts one process per node inside the test network's
// host namespaces (ip netns exec), all of one provider domain and sharing
// one development CA. It implements the nemeses' Cluster: kill -9, restart,
// SIGSTOP/SIGCONT, and membership changes through the nodes' operations
// API (join through gossip, graceful leave, replacing a dead node).
//
// Flags the binary does not have are left out and reported, so the
// harness runs against a single-node build (no -node-id, -join, ...) as
// well as against the clustered one.
package hubproc
