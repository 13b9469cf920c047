// Package pause waits for a while unless a context ends first. It is the
// sleep that backoffs, retry loops and fault schedules share (cluster
// delivery, the client library, the jepsen harness), so that none of them
// outlives its context by a timer's length.
package pause
