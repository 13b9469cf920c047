//go:build !mimi_unsafe_noepochcheck

package room

// unsafeNoEpochCheck is false in every real build: a commit for a past
// epoch is refused with wrongEpoch.
const unsafeNoEpochCheck = false
