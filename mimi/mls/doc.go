// Package mls implements the Messaging Layer Security protocol (RFC 9420)
// on the Go standard library's cryptography (and circl's X448 and Ed448),
// for a MIMI hub and its clients.
//
// It has two faces over one core:
//
//   - Follower is a hub's view of a group. It holds only public state (the
//     GroupContext, the ratchet tree, the transcript hashes and the proposals
//     of the epoch) and checks every commit and proposal as far as public
//     state allows: signatures, the proposal list rules of RFC 9420 section
//     12.2, the UpdatePath and its parent hashes, the new tree hash, and the
//     GroupInfo the committer supplies for the new epoch. It accepts at most
//     one commit per epoch and leaves itself untouched by a commit it
//     rejects.
//   - Group is a member: it does all the Follower does and then what needs
//     secrets (the key schedule, the secret tree, TreeKEM, Welcome, external
//     joins and message protection). It always sends handshake messages as
//     PublicMessage so that a hub can follow them. It keeps the keys of a
//     few past epochs (GroupOptions.PastEpochs), and of the epochs its
//     caller holds (HoldEpoch), so that application messages that cross a
//     commit still decrypt.
//
// Both embed the same unexported groupState, so the rules that decide
// whether a commit is valid are written once.
//
// Wire structs (Message, PublicMessage, PrivateMessage, Welcome, GroupInfo,
// KeyPackage, LeafNode, Proposal, Commit, ...) encode and decode through the
// wire package, strictly: a decoded value re-encodes to the same bytes.
//
// Every cipher suite of RFC 9420 (1 to 7) is supported. The standard library
// implements all their primitives but X448 and Ed448 (suites 4 and 6), which
// come from github.com/cloudflare/circl. Any other code point decodes, but
// every operation on it reports an *UnsupportedCipherSuiteError.
//
// DESIGN.md beside this file explains the representation choices.
package mls
