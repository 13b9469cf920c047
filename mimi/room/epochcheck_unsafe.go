//go:build mimi_unsafe_noepochcheck

package room

// unsafeNoEpochCheck, set by the mimi_unsafe_noepochcheck build tag, makes
// the hub acknowledge commits for past epochs as accepted (without
// applying them). It exists only so that the fault-injection harness
// (jepsen/) can show that its checkers detect the forked histories this
// causes. Never ship a binary built with it.
const unsafeNoEpochCheck = true
