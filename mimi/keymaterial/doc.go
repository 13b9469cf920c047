// Package keymaterial keeps one provider's KeyPackage pools and answers key
// material claims (draft-barnes-mimi-protocol, section "Claim keys").
//
// A Store belongs to one provider domain. It owns the registry of the
// provider's users and their clients (a user can be deleted, after which
// claims for it report userDeleted), the KeyPackages each client uploaded,
// and the routes from the KeyPackageRef of every KeyPackage it handed out to
// the client that owns it, so the Welcome that follows can be delivered. A
// KeyPackage claimed for a room routes only that room's Welcome (one
// claimed with no room, or a last-resort one, any room's): whoever saw the
// KeyPackage in the room's commit cannot welcome its client elsewhere with
// it, nor use up the route the real Welcome needs. A
// route goes once its Welcome is delivered (ForgetRoute) or its
// KeyPackage's not_after has passed (Prune); a route to a last-resort
// KeyPackage still in its pool stays until then, as more Welcomes may name
// it.
//
// Upload accepts only KeyPackages that validate at the time given, carry a
// basic credential whose identity is exactly the client's URI, and are new
// (by KeyPackageRef, including those already handed out). A client holds
// regular KeyPackages, oldest first and bounded in number, and at most one
// last-resort KeyPackage per cipher suite; a new last-resort KeyPackage
// replaces the old one of its suite.
//
// Claim follows the seed exactly. A protocol other than mls10 gets
// incompatibleProtocol for every user. Each target user, in the request's
// order, must be a known local user (userUnknown), not deleted
// (userDeleted), and must consent to the requester for the room, as the
// consent function passed in says (noConsent, noConsentForThisRoom). Then
// each of its clients, in URI order, gets the oldest regular KeyPackage
// that fits (an acceptable cipher suite, the required capabilities, a
// lifetime that contains now), which is removed and never handed out again;
// failing that a last-resort KeyPackage that fits, kept and handed out only
// when the request allows last resort (else onlyLastResort); a client with
// no usable KeyPackage at all reports keyMaterialExhausted, and one whose
// KeyPackages all fail the request reports nothingCompatible with the
// capabilities of its newest KeyPackage. The user's code is success when
// every client succeeded, partialSuccess when some did and
// noCompatibleMaterial when none did (or it has no clients); only these
// three codes list clients.
//
// Choices the seed leaves open:
//
//   - An empty list of acceptable cipher suites accepts every suite (like
//     the empty lists of RequiredCapabilities, it constrains nothing).
//   - Among last-resort KeyPackages the first acceptable suite in the
//     request's order wins (ascending suite when the list is empty).
//   - "Usable" means the lifetime contains now. Expired KeyPackages are
//     dropped whenever their client's pool is touched; one not yet valid
//     (possible only if the time given goes backwards) is kept but unusable.
//   - nothingCompatible carries the capabilities of the client's newest
//     usable KeyPackage: the requester has consent by then, and it tells it
//     what to ask for.
//   - A user with no clients gets noCompatibleMaterial with no clients.
//   - A request that names a target user twice, no user, or more than the
//     limit is refused as a whole (ErrInvalidRequest), as is one whose
//     requesting user or room is not an identifier of that kind.
//   - A deleted user's identifier is not registered again, so claims keep
//     reporting userDeleted for it.
//
// # Determinism and bounds
//
// The Raft state machine runs a Store identically on every node: time comes
// in as an argument (Unix seconds), nothing is random, and map order never
// reaches an output (clients are visited in URI order; snapshots, counts and
// lists are sorted). Limits bound the regular KeyPackages per client, the
// clients per user and the users per claim; an operation that would exceed
// one fails with ErrLimit and changes nothing. Every operation that fails
// leaves the store unchanged.
//
// EncodeTLS and DecodeTLS give the snapshot: canonical and strictly decoded,
// so what decodes re-encodes byte for byte. KeyPackage signatures are not
// re-verified on decode; the snapshot comes from the store itself.
package keymaterial
