// Package check holds the jepsen harness's checkers. They are pure
// functions of a recorded history (jepsen/internal/history) and report
// anomalies; each has tests that feed it the anomaly it exists to catch.
//
//   - Linearizability (porcupine): per room, commits "at epoch e on parent
//     hash p producing hash h" with outcomes accepted, wrongEpoch or
//     unknown, and reads returning (epoch, hash), against the model of a
//     room that accepts exactly one commit per epoch. Unknown outcomes stay
//     open-ended, as porcupine expects, unless the final state settles them.
//   - Commits: no epoch accepted twice (a fork), no acknowledged commit
//     missing from the final state, no refused commit in it, every node
//     agreeing on each room's final state.
//   - KeyPackages: none handed out twice (last-resort ones excepted), none
//     handed out that was never uploaded.
//   - Fanout: every accepted application message reaches the follower
//     provider exactly once in effect (applying the follower's rule: a
//     message whose sequence number is not above the last one seen is a
//     redelivery), in hub order, with no gap and in an order consistent
//     with real time.
//   - Authentication: no request refused with 401 after its client's
//     registration was acknowledged (a node serving state older than an
//     acknowledged write).
//
// Unknown outcomes are resolved from the final state where it decides them
// (Resolve): a commit whose hash is in the room's final chain happened, one
// whose epoch the chain filled with another commit did not; a message seen
// in hub order or at the follower happened.
package check
