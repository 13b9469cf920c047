// Package consent keeps one provider's consent book: the consent requests
// addressed to its users, the grants and revocations its users have made, and
// the grants its users have received (draft-barnes-mimi-protocol, sections
// "Consent" and "Obtain consent").
//
// A Book belongs to one provider domain. Its users act through the client
// API (ApplyLocal); other providers' users act through MIMI (ApplyRemote,
// after the caller has authenticated the peer's domain). ApplyLocal returns
// the MIMI messages the provider must send, so the book itself never does
// I/O:
//
//   - request and cancel go from the requester's provider to the target's
//     (POST /requestConsent/{targetDomain});
//   - grant goes from the target's provider to the requester's
//     (POST /updateConsent/{requesterDomain});
//   - revoke is never sent: the requester learns nothing of it. A provider
//     that receives one anyway (another implementation may send it) drops the
//     grants it covers.
//
// Nothing is sent when both users are local. A request is acknowledged by
// the target's provider only; whether the target saw it is not revealed, and
// a request the target has already refused (revoked for its scope) is
// acknowledged and dropped.
//
// # Precedence
//
// Each decision (grant or revoke) a target makes about a requester has a
// scope: any room, or one room. The decision that counts for a room is the
// most recent one whose scope covers that room. The book keeps only what can
// still count: a decision for any room replaces every earlier decision about
// that requester, and a room decision replaces the earlier decision for that
// room. So a later revoke overrides an earlier grant of the same scope, a
// revoke for any room overrides all earlier room grants, a room revoke
// affects only its room, and a room grant made after a revoke for any room
// admits the requester to that room alone.
//
// With no decision, the provider's default applies: NewBook's requireConsent
// false models providers that consent by default (everything is allowed
// until revoked); true requires a grant. A user always consents to itself.
// Check turns the decisions into the claim codes of key material requests:
// success, noConsentForThisRoom when the requester is allowed into some room
// but not the one named (or, with no room named, only into specific rooms),
// and noConsent otherwise. A claim that names no room is judged by the
// any-room decision alone: room revokes cannot be enforced without a room.
//
// # Determinism and bounds
//
// The Raft state machine runs a Book identically on every node, so the
// package reads no clock, draws no randomness and lets no map order reach an
// output: queries, snapshots and errors are sorted or come from the inputs.
// Every table a peer can fill is bounded (Limits): pending requests per
// target, room scopes per pair of users, grants per requester, KeyPackages
// per grant and records held for any one peer domain. A full table rejects
// the operation with ErrLimit and changes nothing.
//
// EncodeTLS and DecodeTLS give the snapshot: a canonical, strictly decoded
// encoding (sorted records, no duplicates, every invariant of a live Book
// checked), so what decodes re-encodes byte for byte.
package consent
