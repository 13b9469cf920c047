// Package interop checks mimi/mls against two independent RFC 9420
// implementations, in both directions.
//
// ts-mls 1.6.4 (see tsmls/README.md):
//
//   - ts-to-go: ts-mls members run a group with one Go member; the Go member
//     replays the transcript (join by Welcome, every commit, every
//     application message) and a Go hub (mls.Follower) follows every commit
//     with the GroupInfo its committer made.
//   - go-to-ts: Go members run a group that adds two ts-mls members; ts-mls
//     replays it and reports every epoch authenticator and plaintext.
//
// OpenMLS, as Wire's core-crypto 9.3.4 (see openmls/README.md): a Node peer
// holds OpenMLS members of the same live group as Go members and a Go hub,
// one created by OpenMLS and one by Go, with Welcomes, UpdatePath commits,
// external joins, removals and messages from each side, in every suite
// core-crypto offers (1, 2, 3, 5, 7).
//
// TestInteropFixtures and TestOpenMLSFixtures replay recorded runs
// (testdata/) without Node. TestInteropLive and TestOpenMLSLive run the
// peers themselves; they need node and npm, so they run when
// MIMI_INTEROP_LIVE=1 (CI sets it) and say why they skip otherwise. With
// -interop.update they rewrite the fixtures from the live runs.
package interop
