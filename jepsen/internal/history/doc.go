// Package history records what the jepsen workloads did and saw: every
// client operation with its invocation and completion times and outcome
// (Op), every fanout request the follower provider received (Delivery), the
// hub order a local observer read back (Observed), and the state each node
// reported at the end (Final). The checkers (jepsen/internal/check) read a
// History; the report (jepsen/internal/report) writes it out as JSON.
//
// Times are nanoseconds since the start of the run, from the monotonic
// clock, so they order events of one process exactly.
package history
