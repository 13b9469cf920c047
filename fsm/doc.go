// Package fsm is the provider's Raft state machine (raft.FSM): everything a
// provider replicates, and the only code that changes it.
//
// A Command is an envelope (type, request id, the leader's acceptance time,
// the authenticated peer) around a typed body. Apply dispatches it to the
// room engine (mimi/room) for hosted rooms and to the provider tables: key
// material (mimi/keymaterial), consent (mimi/consent), users and their
// clients' tokens, each client's message stream, the rooms local clients
// follow, the outbox of requests waiting for peers, and abuse reports.
//
// Apply is deterministic: time comes only from the command, nothing is
// random, maps are visited in sorted order, and nothing does I/O. Results
// are values returned to the proposer; a refused command changes nothing,
// not even the clock or the dedup table. A command carrying a request id
// that was applied within the dedup window returns the first result again
// without being applied twice, so a client (or the cluster, forwarding to a
// new leader) may retry after an ambiguous failure; a retry of a refused
// command is simply a new attempt.
//
// Snapshots are the versioned encoding of the whole State; two FSMs fed the
// same log encode identically. DESIGN.md beside this file says more.
package fsm
