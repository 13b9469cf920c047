// Package cluster runs a provider's Raft cluster: the replicated log that
// sequences every room and provider table (package fsm), with
// hashicorp/raft, raft-boltdb/v2 stores and hashicorp/memberlist gossip.
//
// A Node is one server. It owns its durable Raft state in a data directory,
// a mutually authenticated TLS port (cluster CA) that carries both Raft and
// the internal channel, gossip discovery, bootstrap (alone, or once the
// expected number of empty nodes see each other), and, as leader, the
// reconciliation of the Raft configuration with gossip (non-voters added,
// promoted once caught up, failed servers removed only after a
// conservative delay and never below quorum).
//
// A Store is the replicated provider state as the API uses it
// (httpapi.Backend): any node accepts writes and forwards them to the
// leader with a request id, so a retry after an ambiguous failure can never
// apply twice; linearizable reads use a read index from the leader and wait
// until the local FSM has caught up. Delivery is the leader-only worker
// that drains the replicated fanout outbox to peer providers.
//
// Every blocking call takes a context; errors callers branch on are
// ErrNotLeader (nothing done), ErrShutdown, and the "outcome unknown"
// family (ErrTimeout, ErrLeadershipLost, cancellation). DESIGN.md explains
// the choices: readiness after election, read index, forwarding,
// membership rules, shutdown, backups.
package cluster
