package consent

import (
	"errors"
	"fmt"
	"math"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Errors callers branch on. Every error the package returns wraps one of
// them (test with errors.Is) with a message that says what was wrong.
var (
	// ErrInvalidEntry: the entry is malformed: an unknown operation, a URI
	// that does not parse or names the wrong kind of identifier, a requester
	// who is the target, or KeyPackages that are malformed, belong to
	// another user or come with an operation other than grant.
	ErrInvalidEntry = errors.New("invalid consent entry")
	// ErrNotLocal: a user who must belong to this provider does not.
	ErrNotLocal = errors.New("user is not local")
	// ErrWrongPeer: the authenticated peer may not make this operation: it
	// is not the requester's domain (request, cancel), not the target's
	// domain (grant, revoke), or it is this provider's own domain.
	ErrWrongPeer = errors.New("consent operation not allowed from this peer")
	// ErrLimit: the operation would exceed one of the book's Limits. The
	// book is unchanged.
	ErrLimit = errors.New("consent limit reached")
)

// Outgoing is a MIMI message ApplyLocal asks the provider to send:
// Entry goes to Domain's Primitive endpoint (/requestConsent/{Domain} or
// /updateConsent/{Domain}).
type Outgoing struct {
	Primitive proto.Primitive
	Domain    string
	Entry     proto.ConsentEntry
}

// Limits bound what a Book holds. They restrict growth only: a Book whose
// limits are lowered keeps what it has and refuses to add more.
type Limits struct {
	// MaxPendingPerTarget bounds the pending requests (one per requester
	// and scope) addressed to one local user.
	MaxPendingPerTarget int
	// MaxScopesPerPair bounds the scopes (any room and each room) of one
	// pair of users in each table: pending requests, decisions, received
	// grants.
	MaxScopesPerPair int
	// MaxDecisionsPerTarget bounds the grants and revokes one local user
	// keeps in force.
	MaxDecisionsPerTarget int
	// MaxGrantsPerRequester bounds the grants one local user keeps as
	// received.
	MaxGrantsPerRequester int
	// MaxRecordsPerPeer bounds what one remote domain makes the book hold:
	// the pending requests of its users plus the grants they sent.
	MaxRecordsPerPeer int
	// MaxKeyPackagesPerGrant bounds the KeyPackages of one grant.
	MaxKeyPackagesPerGrant int
}

// MaxGrantBytesPerTarget bounds the KeyPackage bytes kept with the grants
// one user made to local requesters, which need not exist: without it
// one user could keep its decisions' worth (10,000) of 1 MiB grants. (A
// constant, not a Limit: the limits are in the snapshot.)
const MaxGrantBytesPerTarget = 1 << 20

// DefaultLimits returns the limits NewBook starts with.
func DefaultLimits() Limits {
	return Limits{
		MaxPendingPerTarget:    1000,
		MaxScopesPerPair:       100,
		MaxDecisionsPerTarget:  10000,
		MaxGrantsPerRequester:  10000,
		MaxRecordsPerPeer:      100000,
		MaxKeyPackagesPerGrant: 100,
	}
}

// maxGrantBytesPerPeer bounds the KeyPackages (their encodings) the book
// keeps from the grants of one remote provider's users: a grant may carry
// up to MaxKeyPackagesPerGrant of them in a 1 MiB request, and without a
// byte bound MaxRecordsPerPeer unsolicited grants would keep 100 GB.
const maxGrantBytesPerPeer = 16 << 20

// maxLimit is the largest value a limit may take.
const maxLimit = 1 << 24

func (l *Limits) fields() []*int {
	return []*int{&l.MaxPendingPerTarget, &l.MaxScopesPerPair, &l.MaxDecisionsPerTarget,
		&l.MaxGrantsPerRequester, &l.MaxRecordsPerPeer, &l.MaxKeyPackagesPerGrant}
}

func (l Limits) validate() error {
	for i, p := range l.fields() {
		if *p < 1 || *p > maxLimit {
			return fmt.Errorf("consent limit %d is %d, want 1..%d", i, *p, maxLimit)
		}
	}
	return nil
}

// Book is one provider's consent book. It is not safe for concurrent use;
// the state machine applies operations one at a time.
type Book struct {
	domain         string
	requireConsent bool
	limits         Limits
	// pending: requests addressed to local targets (owner target, other
	// requester).
	pending table[struct{}]
	// decisions: grants and revokes local targets made (owner target,
	// other requester); values are ConsentGrant or ConsentRevoke.
	decisions table[proto.ConsentOperation]
	// received: grants local requesters received (owner requester, other
	// target), with their KeyPackages.
	received table[[]*mls.Message]
	// rules is the level of rules the book applies (SetRulesLevel); not
	// encoded.
	rules int
}

// RulesLevel is the newest level of rules the book applies, in the
// numbering of the fsm's log levels; level 2 brought the bounds against
// floods by other users and other providers (floodRules). A new book
// applies it; a replicated embedding sets its log's level
// (SetRulesLevel), so that entries logged before a rule apply by the
// rules of then.
const RulesLevel = 2

// SetRulesLevel makes the book apply the rules of level l and below.
func (b *Book) SetRulesLevel(l int) { b.rules = l }

// floodRules reports whether the bounds against floods apply: the
// KeyPackage size, the KeyPackage bytes of one target's and of one
// provider's grants, and the sharing of full tables (a full target's
// pending requests, a requester's grants) among providers and users.
func (b *Book) floodRules() bool { return b.rules >= floodRulesLevel }

// floodRulesLevel is the level that brought floodRules.
const floodRulesLevel = 2

// NewBook returns an empty book for the provider of domain, which must be a
// valid lowercase DNS name. requireConsent false models providers that
// consent by default: everything is allowed until revoked.
func NewBook(domain string, requireConsent bool) (*Book, error) {
	if !validDomain(domain) {
		return nil, fmt.Errorf("consent: %w: invalid provider domain %q", ErrInvalidEntry, domain)
	}
	return newBook(domain, requireConsent, DefaultLimits()), nil
}

func newBook(domain string, requireConsent bool, l Limits) *Book {
	return &Book{
		domain:         domain,
		requireConsent: requireConsent,
		rules:          RulesLevel,
		limits:         l,
		pending:        newTable[struct{}](domain),
		decisions:      newTable[proto.ConsentOperation](domain),
		received:       newWeighedTable(domain, keyPackageBytes),
	}
}

// validDomain reports whether d is a domain MIMI identifiers accept.
func validDomain(d string) bool {
	got, err := proto.UserURI(d, "x").Domain()
	return err == nil && got == d
}

// Domain returns the provider domain the book belongs to.
func (b *Book) Domain() string { return b.domain }

// RequireConsent reports whether a grant is needed where no decision exists.
func (b *Book) RequireConsent() bool { return b.requireConsent }

// SetRequireConsent changes the provider's default from now on; the
// decisions already recorded stay.
func (b *Book) SetRequireConsent(v bool) { b.requireConsent = v }

// Limits returns the book's limits.
func (b *Book) Limits() Limits { return b.limits }

// SetLimits replaces the book's limits; each must be in 1..2^24.
func (b *Book) SetLimits(l Limits) error {
	if err := l.validate(); err != nil {
		return fmt.Errorf("consent: %w", err)
	}
	b.limits = l
	return nil
}

// parsed is a validated entry.
type parsed struct {
	op                   proto.ConsentOperation
	requester, target    proto.URI
	reqDomain, tgtDomain string
	scope                proto.URI
	keyPackages          []*mls.Message // grant only; copies
}

// parse validates an entry on its own: the operation, the kinds of its
// URIs, and the KeyPackages of a grant.
func (b *Book) parse(e *proto.ConsentEntry) (parsed, error) {
	maxSize := math.MaxInt
	if b.floodRules() {
		maxSize = proto.MaxKeyPackageSize
	}
	return b.parseWith(e, b.limits.MaxKeyPackagesPerGrant, maxSize)
}

// parseWith is parse with maxKeyPackages KeyPackages allowed in a grant.
func (b *Book) parseWith(e *proto.ConsentEntry, maxKeyPackages, maxKeyPackageSize int) (parsed, error) {
	p := parsed{op: e.Operation, requester: e.Requester, target: e.Target, scope: scopeOf(e.Room)}
	if e.Operation > proto.ConsentRevoke {
		return p, fmt.Errorf("%w: unknown operation %d", ErrInvalidEntry, e.Operation)
	}
	var err error
	if p.reqDomain, err = userDomain(e.Requester); err != nil {
		return p, fmt.Errorf("%w: requester: %v", ErrInvalidEntry, err)
	}
	if p.tgtDomain, err = userDomain(e.Target); err != nil {
		return p, fmt.Errorf("%w: target: %v", ErrInvalidEntry, err)
	}
	if e.Requester == e.Target {
		return p, fmt.Errorf("%w: %s is both requester and target", ErrInvalidEntry, e.Requester)
	}
	if e.Room != nil {
		id, err := e.Room.Parse()
		if err != nil {
			return p, fmt.Errorf("%w: room: %v", ErrInvalidEntry, err)
		}
		if id.Kind != proto.KindRoom {
			return p, fmt.Errorf("%w: room %q is not a room identifier", ErrInvalidEntry, *e.Room)
		}
	}
	if e.Operation != proto.ConsentGrant {
		if len(e.KeyPackages) > 0 {
			return p, fmt.Errorf("%w: %s carries KeyPackages", ErrInvalidEntry, e.Operation)
		}
		return p, nil
	}
	p.keyPackages, err = checkKeyPackages(e.Target, e.KeyPackages, maxKeyPackages, maxKeyPackageSize)
	return p, err
}

// userDomain returns the domain of a user URI.
func userDomain(u proto.URI) (string, error) {
	id, err := u.Parse()
	if err != nil {
		return "", err
	}
	if id.Kind != proto.KindUser {
		return "", fmt.Errorf("%q is not a user identifier", u)
	}
	return id.Domain, nil
}

// checkKeyPackages checks what needs no clock of the KeyPackages of a grant
// by target: each is an MLSMessage holding a KeyPackage whose basic
// credential names a client of target. It returns copies that share no
// memory with the input. Signatures and lifetimes need the current time;
// the receiving client checks them (KeyPackage.Validate) before use.
func checkKeyPackages(target proto.URI, list []*mls.Message, max, maxSize int) ([]*mls.Message, error) {
	if len(list) > max {
		return nil, fmt.Errorf("%w: grant carries %d KeyPackages, at most %d allowed", ErrLimit, len(list), max)
	}
	var out []*mls.Message
	for i, m := range list {
		c, err := checkKeyPackage(target, m, maxSize)
		if err != nil {
			return nil, fmt.Errorf("%w: KeyPackage %d: %v", ErrInvalidEntry, i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func checkKeyPackage(target proto.URI, m *mls.Message, maxSize int) (*mls.Message, error) {
	if m == nil || m.WireFormat != mls.WireKeyPackage || m.KeyPackage == nil {
		return nil, fmt.Errorf("not an MLSMessage holding a KeyPackage")
	}
	if n := len(wire.MustMarshal(m.KeyPackage)); n > maxSize {
		return nil, fmt.Errorf("%d bytes, at most %d", n, maxSize)
	}
	cred := &m.KeyPackage.LeafNode.Credential
	if cred.Type != mls.CredentialBasic {
		return nil, fmt.Errorf("credential type 0x%04x is not basic", uint16(cred.Type))
	}
	client := proto.URI(cred.Identity)
	id, err := client.Parse()
	if err != nil {
		return nil, fmt.Errorf("credential identity: %v", err)
	}
	if id.Kind != proto.KindClient {
		return nil, fmt.Errorf("credential identity %q is not a client identifier", client)
	}
	if user, _ := client.UserOf(); user != target {
		return nil, fmt.Errorf("credential identity %q is not a client of %s", client, target)
	}
	return cloneMessage(m)
}

// cloneMessage returns a deep copy of m by re-decoding its encoding, which
// also proves that it encodes.
func cloneMessage(m *mls.Message) (*mls.Message, error) {
	enc, err := wire.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mls.DecodeMessage(enc)
}

func cloneMessages(list []*mls.Message) ([]*mls.Message, error) {
	var out []*mls.Message
	for _, m := range list {
		c, err := cloneMessage(m)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// ApplyLocal applies an operation a local user makes through the client
// API: request and cancel by a local requester, grant and revoke by a local
// target. It returns the MIMI message to send, if any: request and cancel
// to a remote target's provider, grant to a remote requester's provider.
// Revokes and operations between two local users send nothing.
func (b *Book) ApplyLocal(e proto.ConsentEntry) ([]Outgoing, error) {
	p, err := b.parse(&e)
	if err != nil {
		return nil, fmt.Errorf("consent: local %s: %w", e.Operation, err)
	}
	switch p.op {
	case proto.ConsentRequest, proto.ConsentCancel:
		if p.reqDomain != b.domain {
			return nil, fmt.Errorf("consent: local %s: %w: requester %s", p.op, ErrNotLocal, p.requester)
		}
		if p.tgtDomain != b.domain {
			return []Outgoing{{Primitive: proto.RequestConsent, Domain: p.tgtDomain, Entry: outgoingEntry(p)}}, nil
		}
		if p.op == proto.ConsentCancel {
			b.pending.del(p.target, p.requester, p.scope)
			return nil, nil
		}
		if err := b.request(p); err != nil {
			return nil, fmt.Errorf("consent: local request by %s to %s: %w", p.requester, p.target, err)
		}
		return nil, nil
	default:
		if p.tgtDomain != b.domain {
			return nil, fmt.Errorf("consent: local %s: %w: target %s", p.op, ErrNotLocal, p.target)
		}
		if err := b.decide(p); err != nil {
			return nil, fmt.Errorf("consent: local %s by %s for %s: %w", p.op, p.target, p.requester, err)
		}
		if p.op == proto.ConsentRevoke || p.reqDomain == b.domain {
			return nil, nil
		}
		return []Outgoing{{Primitive: proto.UpdateConsent, Domain: p.reqDomain, Entry: outgoingEntry(p)}}, nil
	}
}

// outgoingEntry rebuilds the entry to send from its validated parts, which
// share no memory with the caller's entry or the book.
func outgoingEntry(p parsed) proto.ConsentEntry {
	return proto.ConsentEntry{Operation: p.op, Requester: p.requester, Target: p.target,
		Room: roomOf(p.scope), KeyPackages: p.keyPackages}
}

// ApplyRemote applies an operation that arrived over MIMI from the
// authenticated peer fromDomain: request and cancel from the requester's
// provider for a local target, grant and revoke from the target's provider
// for a local requester. The caller should check that the local user
// exists. A nil error is the acknowledgement; it says nothing of what the
// target will see.
func (b *Book) ApplyRemote(fromDomain string, e proto.ConsentEntry) error {
	_, err := b.ApplyRemoteNews(fromDomain, e)
	return err
}

// ApplyRemoteNews is ApplyRemote that also reports whether the operation is
// news for the local user: a request that was not pending (nor refused by
// a revoke), or a grant for a scope the requester held none for. Only news
// is worth a notice: a peer repeating a request or a grant (with other
// KeyPackages) changes nothing the user has to decide or learn, so it must
// not reach the user's inbox again.
func (b *Book) ApplyRemoteNews(fromDomain string, e proto.ConsentEntry) (news bool, err error) {
	p, err := b.parse(&e)
	if err != nil {
		return false, fmt.Errorf("consent: %s from %s: %w", e.Operation, fromDomain, err)
	}
	wrap := func(err error) error {
		return fmt.Errorf("consent: %s from %s (requester %s, target %s): %w", p.op, fromDomain, p.requester, p.target, err)
	}
	if fromDomain == b.domain {
		return false, wrap(fmt.Errorf("%w: %s is this provider's own domain", ErrWrongPeer, fromDomain))
	}
	switch p.op {
	case proto.ConsentRequest, proto.ConsentCancel:
		if p.reqDomain != fromDomain {
			return false, wrap(fmt.Errorf("%w: only the requester's provider %s may send it", ErrWrongPeer, p.reqDomain))
		}
		if p.tgtDomain != b.domain {
			return false, wrap(fmt.Errorf("%w: target", ErrNotLocal))
		}
		if p.op == proto.ConsentCancel {
			b.pending.del(p.target, p.requester, p.scope)
			return false, nil
		}
		_, was := b.pending.get(p.target, p.requester, p.scope)
		if err := b.request(p); err != nil {
			return false, wrap(err)
		}
		_, is := b.pending.get(p.target, p.requester, p.scope)
		return is && !was, nil
	default:
		if p.tgtDomain != fromDomain {
			return false, wrap(fmt.Errorf("%w: only the target's provider %s may send it", ErrWrongPeer, p.tgtDomain))
		}
		if p.reqDomain != b.domain {
			return false, wrap(fmt.Errorf("%w: requester", ErrNotLocal))
		}
		if p.op == proto.ConsentRevoke {
			b.forgetGrant(p)
			return false, nil
		}
		if err := b.checkReceive(p); err != nil {
			return false, wrap(err)
		}
		_, was := b.received.get(p.requester, p.target, p.scope)
		b.receive(p)
		return !was, nil
	}
}

// peerRecords returns how many records the book holds for remote domain d.
func (b *Book) peerRecords(d string) int {
	return b.pending.peers[d] + b.received.peers[d]
}

// limitErr reports an exceeded limit.
func limitErr(what string, max int) error {
	return fmt.Errorf("%w: %s (at most %d)", ErrLimit, what, max)
}

// request stores a pending request for a local target, unless the target
// has revoked consent for its scope: then the request is acknowledged and
// dropped, so a refused requester cannot fill the target's inbox.
func (b *Book) request(p parsed) error {
	if b.covering(p.target, p.requester, p.scope) == proto.ConsentRevoke {
		return nil
	}
	if _, ok := b.pending.get(p.target, p.requester, p.scope); ok {
		return nil
	}
	if len(b.pending.pair(p.target, p.requester)) >= b.limits.MaxScopesPerPair {
		return limitErr("too many pending requests between these users", b.limits.MaxScopesPerPair)
	}
	if p.reqDomain != b.domain && b.peerRecords(p.reqDomain) >= b.limits.MaxRecordsPerPeer {
		return limitErr("too many records for "+p.reqDomain, b.limits.MaxRecordsPerPeer)
	}
	if b.pending.counts[p.target] >= b.limits.MaxPendingPerTarget {
		// Full: anyone may request, so neither one provider's users nor a
		// few accounts with many room scopes may keep everyone else from
		// asking the target. The provider holding the most of the
		// target's requests gives one up if it holds more than the
		// requester's provider; else the requester holding the most does,
		// if it holds more than this one.
		if !b.floodRules() {
			return limitErr("too many pending requests for the target", b.limits.MaxPendingPerTarget)
		}
		if top, n, mine := b.topRequesterDomain(p.target, p.reqDomain); n > mine {
			b.dropOnePending(p.target, top)
		} else if d := b.pending.displaceable(p.target, p.requester); d != "" {
			b.pending.dropOne(p.target, d)
		} else {
			return limitErr("too many pending requests for the target", b.limits.MaxPendingPerTarget)
		}
	}
	b.pending.put(p.target, p.requester, p.scope, struct{}{})
	return nil
}

// topRequesterDomain returns the domain whose users hold the most pending
// requests to target (the greatest name among equals), how many they hold,
// and how many domain's users hold. The maps are only summed, so their
// order cannot show.
func (b *Book) topRequesterDomain(target proto.URI, domain string) (top string, n, mine int) {
	per := make(map[string]int)
	for requester, scopes := range b.pending.rows[target] {
		d, _ := requester.Domain()
		per[d] += len(scopes)
	}
	for d, c := range per {
		if c > n || c == n && d > top {
			top, n = d, c
		}
	}
	return top, n, per[domain]
}

// dropOnePending drops the first (by requester, then scope) of the
// requests to target made by users of domain.
func (b *Book) dropOnePending(target proto.URI, domain string) {
	var requester, scope proto.URI
	found := false
	for r, scopes := range b.pending.rows[target] {
		if d, _ := r.Domain(); d != domain {
			continue
		}
		for sc := range scopes {
			if !found || compareKeys(target, r, sc, target, requester, scope) < 0 {
				requester, scope, found = r, sc, true
			}
		}
	}
	if found {
		b.pending.del(target, requester, scope)
	}
}

// covering returns the decision that counts for scope (ConsentGrant or
// ConsentRevoke), or ConsentCancel when there is none: the room's own
// decision, else the decision for any room.
func (b *Book) covering(target, requester, scope proto.URI) proto.ConsentOperation {
	d := b.decisions.pair(target, requester)
	if op, ok := d[scope]; ok {
		return op
	}
	if op, ok := d[anyRoom]; ok {
		return op
	}
	return proto.ConsentCancel
}

// decide records a local target's grant or revoke. A decision for any room
// replaces every earlier decision about the requester; a room decision
// replaces the room's. It answers the pending requests it covers, and a
// grant to a local requester is also recorded as received.
func (b *Book) decide(p parsed) error {
	d := b.decisions.pair(p.target, p.requester)
	delta := 1 // change in the number of the target's decisions
	if p.scope == anyRoom {
		delta = 1 - len(d)
	} else if _, ok := d[p.scope]; ok {
		delta = 0
	} else if len(d) >= b.limits.MaxScopesPerPair {
		return limitErr("too many room decisions about this requester", b.limits.MaxScopesPerPair)
	}
	if delta > 0 && b.decisions.counts[p.target] >= b.limits.MaxDecisionsPerTarget {
		return limitErr("too many decisions by the target", b.limits.MaxDecisionsPerTarget)
	}
	local := p.op == proto.ConsentGrant && p.reqDomain == b.domain
	if local {
		if err := b.checkReceive(p); err != nil {
			return err
		}
	}

	if p.scope == anyRoom {
		b.decisions.delPair(p.target, p.requester)
		b.pending.delPair(p.target, p.requester)
	} else {
		b.pending.del(p.target, p.requester, p.scope)
	}
	b.decisions.put(p.target, p.requester, p.scope, p.op)
	if local {
		b.receive(p)
	}
	return nil
}

// checkReceive checks that a grant for a local requester fits.
func (b *Book) checkReceive(p parsed) error {
	g := b.received.pair(p.requester, p.target)
	if n := keyPackageBytes(p.keyPackages); n > 0 && b.floodRules() {
		replaced := keyPackageBytes(g[p.scope])
		if p.scope == anyRoom { // replaces the pair's room grants too
			replaced = 0
			for _, kps := range g {
				replaced += keyPackageBytes(kps)
			}
		}
		if b.received.weights[p.target]-replaced+n > MaxGrantBytesPerTarget {
			return limitErr("too many KeyPackage bytes in the target's grants", MaxGrantBytesPerTarget)
		}
	}
	delta := 1
	if p.scope == anyRoom {
		delta = 1 - len(g)
	} else if _, ok := g[p.scope]; ok {
		delta = 0
	} else if len(g) >= b.limits.MaxScopesPerPair {
		return limitErr("too many room grants from this target", b.limits.MaxScopesPerPair)
	}
	if p.tgtDomain != b.domain && b.floodRules() {
		// The pair's grants this one replaces give their bytes back.
		replaced := int64(0)
		for sc, kps := range g {
			if p.scope == anyRoom || sc == p.scope {
				replaced += b.received.size(kps)
			}
		}
		if n := b.received.bytes[p.tgtDomain] - replaced + b.received.size(p.keyPackages); n > maxGrantBytesPerPeer {
			return limitErr(fmt.Sprintf("the grants of %s would keep %d bytes of KeyPackages", p.tgtDomain, n), maxGrantBytesPerPeer)
		}
	}
	if delta <= 0 {
		return nil
	}
	if b.received.counts[p.requester] >= b.limits.MaxGrantsPerRequester && (!b.floodRules() || b.received.displaceable(p.requester, p.target) == "") {
		return limitErr("too many grants received by the requester", b.limits.MaxGrantsPerRequester)
	}
	if p.tgtDomain != b.domain && b.peerRecords(p.tgtDomain) >= b.limits.MaxRecordsPerPeer {
		return limitErr("too many records for "+p.tgtDomain, b.limits.MaxRecordsPerPeer)
	}
	return nil
}

// keyPackageBytes is what a grant's KeyPackages weigh against
// MaxGrantBytesPerTarget: their encodings.
func keyPackageBytes(kps []*mls.Message) int64 {
	var n int64
	for _, m := range kps {
		n += int64(len(wire.MustMarshal(m.KeyPackage)))
	}
	return n
}

// receive records a grant for a local requester; checkReceive has passed.
// A grant for any room replaces the earlier grants of the same target.
func (b *Book) receive(p parsed) {
	if p.scope == anyRoom {
		b.received.delPair(p.requester, p.target)
	}
	if _, ok := b.received.get(p.requester, p.target, p.scope); !ok && b.received.counts[p.requester] >= b.limits.MaxGrantsPerRequester {
		// Anyone may grant: a full table drops a grant of the target
		// holding the most (checkReceive found it holds more).
		b.received.dropOne(p.requester, b.received.displaceable(p.requester, p.target))
	}
	b.received.put(p.requester, p.target, p.scope, p.keyPackages)
}

// forgetGrant drops the received grants a remote revoke covers.
func (b *Book) forgetGrant(p parsed) {
	if p.scope == anyRoom {
		b.received.delPair(p.requester, p.target)
	} else {
		b.received.del(p.requester, p.target, p.scope)
	}
}

// localUser checks that user is a user of this provider.
func (b *Book) localUser(user proto.URI) error {
	d, err := userDomain(user)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidEntry, err)
	}
	if d != b.domain {
		return fmt.Errorf("%w: %s", ErrNotLocal, user)
	}
	return nil
}

// RemoveUser forgets everything about a local user who is deleted: the
// requests addressed to it, its decisions, its received grants, and what
// other local users decided or received about it.
func (b *Book) RemoveUser(user proto.URI) error {
	if err := b.localUser(user); err != nil {
		return fmt.Errorf("consent: remove user: %w", err)
	}
	b.pending.delUser(user)
	b.decisions.delUser(user)
	b.received.delUser(user)
	return nil
}
