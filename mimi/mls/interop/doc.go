// Package interop checks mimi/mls against ts-mls 1.6.4, an independent
// RFC 9420 implementation, in both directions (see tsmls/README.md):
//
//   - ts-to-go: ts-mls members run a group with one Go member; the Go member
//     replays the transcript (join by Welcome, every commit, every
//     application message) and a Go hub (mls.Follower) follows every commit
//     with the GroupInfo its committer made.
//   - go-to-ts: Go members run a group that adds two ts-mls members; ts-mls
//     replays it and reports every epoch authenticator and plaintext.
//
// TestInteropFixtures replays recorded runs (testdata/) without Node.
// TestInteropLive runs ts-mls itself; it needs node and npm, so it runs
// when MIMI_INTEROP_LIVE=1 (CI sets it) and says why it skips otherwise.
// With -interop.update it rewrites the fixtures from the live run.
package interop
