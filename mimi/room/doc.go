// Package room is the hub's room engine: everything MIMI says about a room,
// as a pure, deterministic state machine. A Room holds the room's MLS group
// (an mls.Follower), its participant list with roles, the proposals the next
// commit must cover and where Welcomes go; Apply takes one request
// (updateRoom, provisionalMessage, claimGroupInfo, reportAbuse, and the
// provider's own RemoveClients) at the time the Raft leader stamped on it
// and returns the answer and the fanout effects, as data, including the
// hub's own proposals, which it signs with keys derived from a replicated
// secret (HubKeys). No clock, randomness or I/O happens here, so every
// replica reaches the same state, and tests drive every rule directly.
//
// The rules are the seed's (draft-barnes-mimi-protocol sections 5 to 7) with
// the choices recorded in mimi/proto/DECISIONS.md; DESIGN.md beside this file
// explains how they are enforced.
package room
