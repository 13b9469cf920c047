// Package cluster runs the Raft node that replicates mimi-hub's state
// machine (package fsm) with hashicorp/raft.
//
// It owns the node's durable Raft state in a data directory (BoltDB log and
// stable store, file snapshots), the Raft transport, bootstrapping a new
// cluster, and the operations the rest of the server needs from Raft:
//
//   - Apply: append a command and wait for the FSM's response, with typed
//     errors for "not the leader" (ErrNotLeader, naming the leader),
//     "outcome unknown" (ErrTimeout, ErrLeadershipLost, cancellation) and
//     "stopped" (ErrShutdown). The FSM's own rejections are responses,
//     not errors.
//   - Barrier: the step before a linearizable read on the leader.
//   - WatchLeadership: leadership changes, for leader-only workers such as
//     the fanout delivery worker.
//   - Stats, Snapshot, Shutdown (snapshot on graceful stop, idempotent).
//
// Every blocking call takes a context. Raft's own logs go to the node's
// *slog.Logger through an hclog adapter.
//
// This version runs a single voter over plain TCP on loopback. Peers
// (discovery and membership), the TLS stream layer and forwarding writes to
// the leader attach through Config.Transport (see StreamTransport) and
// bootstrapServers; DESIGN.md describes the choices and those seams.
package cluster
