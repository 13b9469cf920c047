// Package workload drives the provider under test with real MLS clients
// (mimi/mls groups, mimi/client's client API) through randomly chosen
// nodes, and records every operation in a history.History:
//
//   - CommitRace: rooms of a few members; in each round several members
//     build a commit on the room's current epoch and submit them at once,
//     each through a random node, while readers read the room's epoch and
//     transcript hash. Exactly one should win; the members follow the
//     winner (found by its transcript hash when no answer says who won).
//   - KeyPackages: target users' clients upload KeyPackages while
//     claimers claim them concurrently; every claim records the references
//     it got.
//   - Messages: members of rooms that also hold a user of the follower
//     provider send application messages; a local observer reads the hub's
//     order back at the end, the recorder (jepsen/internal/recorder)
//     captures the fanout.
//
// A write whose answer is lost is sent again with the same Idempotency-Key
// and stays one operation in the history, from its first call to its last
// answer; if no answer ever comes it stays unknown.
package workload
