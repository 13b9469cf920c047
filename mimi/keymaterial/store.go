package keymaterial

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Errors callers branch on. Every error the package returns wraps one of
// them (test with errors.Is) with a message that says what was wrong.
var (
	// ErrInvalidIdentifier: a URI does not parse or names the wrong kind of
	// identifier.
	ErrInvalidIdentifier = errors.New("invalid identifier")
	// ErrNotLocal: the user or client does not belong to this provider.
	ErrNotLocal = errors.New("identifier is not local")
	// ErrUnknownUser: the user is not registered.
	ErrUnknownUser = errors.New("unknown user")
	// ErrUserExists: the user is registered already.
	ErrUserExists = errors.New("user exists")
	// ErrUserDeleted: the user was deleted; its identifier is not reused.
	ErrUserDeleted = errors.New("user deleted")
	// ErrUnknownClient: the client is not registered.
	ErrUnknownClient = errors.New("unknown client")
	// ErrClientExists: the client is registered already.
	ErrClientExists = errors.New("client exists")
	// ErrInvalidKeyPackage: the KeyPackage does not validate at the time
	// given, or two last-resort KeyPackages of one upload share a suite.
	ErrInvalidKeyPackage = errors.New("invalid KeyPackage")
	// ErrWrongIdentity: the KeyPackage's credential is not a basic
	// credential whose identity is the client's URI.
	ErrWrongIdentity = errors.New("KeyPackage credential does not name the client")
	// ErrDuplicateKeyPackage: a KeyPackage with the same KeyPackageRef is
	// stored, was handed out, or appears twice in the upload.
	ErrDuplicateKeyPackage = errors.New("duplicate KeyPackage")
	// ErrLimit: the operation would exceed one of the store's Limits.
	ErrLimit = errors.New("key material limit reached")
	// ErrInvalidRequest: a claim is malformed (bad requesting user or room,
	// no or too many or repeated target users, no consent function).
	ErrInvalidRequest = errors.New("invalid key material request")
)

// UploadError reports which KeyPackage of an upload was refused; Err wraps
// one of the sentinel errors.
type UploadError struct {
	Index int // position in the upload
	Err   error
}

// Error says which KeyPackage was refused and why.
func (e *UploadError) Error() string { return fmt.Sprintf("KeyPackage %d: %v", e.Index, e.Err) }

// Unwrap returns the reason.
func (e *UploadError) Unwrap() error { return e.Err }

// Limits bound what a Store holds and what a claim may ask. They restrict
// growth only: a store whose limits are lowered keeps what it has.
type Limits struct {
	// MaxKeyPackagesPerClient bounds a client's regular KeyPackages.
	MaxKeyPackagesPerClient int
	// MaxClientsPerUser bounds a user's clients.
	MaxClientsPerUser int
	// MaxTargetsPerClaim bounds the target users of one claim.
	MaxTargetsPerClaim int
}

// DefaultLimits returns the limits NewStore starts with.
func DefaultLimits() Limits {
	return Limits{MaxKeyPackagesPerClient: 1000, MaxClientsPerUser: 100, MaxTargetsPerClaim: 100}
}

// maxLimit is the largest value a limit may take.
const maxLimit = 1 << 24

func (l *Limits) fields() []*int {
	return []*int{&l.MaxKeyPackagesPerClient, &l.MaxClientsPerUser, &l.MaxTargetsPerClaim}
}

func (l Limits) validate() error {
	for i, p := range l.fields() {
		if *p < 1 || *p > maxLimit {
			return fmt.Errorf("key material limit %d is %d, want 1..%d", i, *p, maxLimit)
		}
	}
	return nil
}

// Store is one provider's KeyPackage pools. It is not safe for concurrent
// use; the state machine applies operations one at a time.
type Store struct {
	domain string
	limits Limits
	users  map[proto.URI]*user
	// index maps the KeyPackageRef of every stored KeyPackage to its
	// client.
	index map[string]proto.URI
	// routes maps the KeyPackageRef of every KeyPackage handed out to its
	// client, until its not_after or ForgetRoute.
	routes map[string]route
	// spent holds the KeyPackageRefs of the regular KeyPackages handed
	// out, with their not_after, so they are never stored again.
	spent map[string]uint64
	// rules is the level of rules the store applies (SetRulesLevel);
	// not encoded.
	rules int
}

// RulesLevel is the newest level of rules the store applies, in the
// numbering of the fsm's log levels; level 2 brought routes bound to the
// room a KeyPackage was claimed for (routesByRoom) and the bound on a
// KeyPackage's size (sizeBound). A new store applies
// it; a replicated embedding sets its log's level (SetRulesLevel), so
// that entries logged before a rule apply by the rules of then.
const RulesLevel = 2

// The levels from which a route remembers its claim's room, and an
// uploaded KeyPackage is at most proto.MaxKeyPackageSize.
const (
	routesByRoom = 2
	sizeBound    = 2
)

// SetRulesLevel makes the store apply the rules of level l and below.
func (s *Store) SetRulesLevel(l int) { s.rules = l }

type user struct {
	deleted bool
	clients map[proto.URI]*client
}

type client struct {
	regular    []*entry // oldest first
	lastResort map[mls.CipherSuite]*entry
}

// entry is a stored KeyPackage.
type entry struct {
	enc []byte          // its encoding
	kp  *mls.KeyPackage // decoded from enc; shares no memory with callers
	ref []byte
}

type route struct {
	client   proto.URI
	notAfter uint64
	// room is the room the KeyPackage was claimed for: only that room's
	// Welcome may name it, so a peer that saw the KeyPackage in another
	// room's commit cannot use it to welcome the client into a room of its
	// own (and take the route the real Welcome needs). Empty for a claim
	// that named no room and for last-resort KeyPackages, which every
	// claim may get: any room.
	room proto.URI
}

// NewStore returns an empty store for the provider of domain, which must be
// a valid lowercase DNS name.
func NewStore(domain string) (*Store, error) {
	if !validDomain(domain) {
		return nil, fmt.Errorf("keymaterial: %w: invalid provider domain %q", ErrInvalidIdentifier, domain)
	}
	return newStore(domain, DefaultLimits()), nil
}

func newStore(domain string, l Limits) *Store {
	return &Store{
		domain: domain,
		limits: l,
		users:  make(map[proto.URI]*user),
		index:  make(map[string]proto.URI),
		routes: make(map[string]route),
		spent:  make(map[string]uint64),
		rules:  RulesLevel,
	}
}

func validDomain(d string) bool {
	got, err := proto.UserURI(d, "x").Domain()
	return err == nil && got == d
}

// Domain returns the provider domain the store belongs to.
func (s *Store) Domain() string { return s.domain }

// Limits returns the store's limits.
func (s *Store) Limits() Limits { return s.limits }

// SetLimits replaces the store's limits; each must be in 1..2^24.
func (s *Store) SetLimits(l Limits) error {
	if err := l.validate(); err != nil {
		return fmt.Errorf("keymaterial: %w", err)
	}
	s.limits = l
	return nil
}

// parseLocal parses u, which must name a local identifier of kind.
func (s *Store) parseLocal(u proto.URI, kind proto.Kind) (proto.Identifier, error) {
	id, err := u.Parse()
	if err != nil {
		return id, fmt.Errorf("%w: %v", ErrInvalidIdentifier, err)
	}
	if id.Kind != kind {
		what := map[proto.Kind]string{proto.KindUser: "user", proto.KindClient: "client"}[kind]
		return id, fmt.Errorf("%w: %q is not a %s identifier", ErrInvalidIdentifier, u, what)
	}
	if id.Domain != s.domain {
		return id, fmt.Errorf("%w: %s", ErrNotLocal, u)
	}
	return id, nil
}

// activeUser returns the registered, undeleted local user u.
func (s *Store) activeUser(u proto.URI) (*user, error) {
	if _, err := s.parseLocal(u, proto.KindUser); err != nil {
		return nil, err
	}
	usr := s.users[u]
	if usr == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownUser, u)
	}
	if usr.deleted {
		return nil, fmt.Errorf("%w: %s", ErrUserDeleted, u)
	}
	return usr, nil
}

// client returns the registered client c.
func (s *Store) client(c proto.URI) (*client, error) {
	id, err := s.parseLocal(c, proto.KindClient)
	if err != nil {
		return nil, err
	}
	usr, err := s.activeUser(proto.UserURI(id.Domain, id.User))
	if err != nil {
		return nil, err
	}
	cl := usr.clients[c]
	if cl == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownClient, c)
	}
	return cl, nil
}

// AddUser registers the local user u.
func (s *Store) AddUser(u proto.URI) error {
	if _, err := s.parseLocal(u, proto.KindUser); err != nil {
		return fmt.Errorf("keymaterial: add user: %w", err)
	}
	if usr := s.users[u]; usr != nil {
		if usr.deleted {
			return fmt.Errorf("keymaterial: add user: %w: %s", ErrUserDeleted, u)
		}
		return fmt.Errorf("keymaterial: add user: %w: %s", ErrUserExists, u)
	}
	s.users[u] = &user{clients: make(map[proto.URI]*client)}
	return nil
}

// DeleteUser deletes the local user u with its clients, their KeyPackages
// and their Welcome routes. Claims then report userDeleted for it, and the
// identifier cannot be registered again.
func (s *Store) DeleteUser(u proto.URI) error {
	usr, err := s.activeUser(u)
	if err != nil {
		return fmt.Errorf("keymaterial: delete user: %w", err)
	}
	for c := range usr.clients {
		s.dropClient(usr, c)
	}
	usr.deleted = true
	return nil
}

// AddClient registers client c under its user, which must be registered
// and not deleted.
func (s *Store) AddClient(c proto.URI) error {
	id, err := s.parseLocal(c, proto.KindClient)
	if err != nil {
		return fmt.Errorf("keymaterial: add client: %w", err)
	}
	usr, err := s.activeUser(proto.UserURI(id.Domain, id.User))
	if err != nil {
		return fmt.Errorf("keymaterial: add client %s: %w", c, err)
	}
	if usr.clients[c] != nil {
		return fmt.Errorf("keymaterial: add client: %w: %s", ErrClientExists, c)
	}
	if len(usr.clients) >= s.limits.MaxClientsPerUser {
		return fmt.Errorf("keymaterial: add client %s: %w: at most %d clients per user", c, ErrLimit, s.limits.MaxClientsPerUser)
	}
	usr.clients[c] = &client{lastResort: make(map[mls.CipherSuite]*entry)}
	return nil
}

// RemoveClient removes client c with its KeyPackages and Welcome routes.
func (s *Store) RemoveClient(c proto.URI) error {
	if _, err := s.client(c); err != nil {
		return fmt.Errorf("keymaterial: remove client: %w", err)
	}
	u, _ := c.UserOf()
	s.dropClient(s.users[u], c)
	return nil
}

// dropClient removes a client, its KeyPackages and its routes. Ranging over
// routes only deletes, so its order cannot show.
func (s *Store) dropClient(usr *user, c proto.URI) {
	cl := usr.clients[c]
	for _, e := range cl.regular {
		delete(s.index, string(e.ref))
	}
	for _, e := range cl.lastResort {
		delete(s.index, string(e.ref))
	}
	for ref, r := range s.routes {
		if r.client == c {
			delete(s.routes, ref)
		}
	}
	delete(usr.clients, c)
}

// UserStatus says whether a user is registered.
type UserStatus uint8

// User statuses.
const (
	UserAbsent  UserStatus = iota // not registered (or not local)
	UserActive                    // registered
	UserDeleted                   // deleted
)

// UserStatus returns the status of user u.
func (s *Store) UserStatus(u proto.URI) UserStatus {
	usr := s.users[u]
	switch {
	case usr == nil:
		return UserAbsent
	case usr.deleted:
		return UserDeleted
	}
	return UserActive
}

// Clients returns the clients of the local user u in URI order.
func (s *Store) Clients(u proto.URI) ([]proto.URI, error) {
	usr, err := s.activeUser(u)
	if err != nil {
		return nil, fmt.Errorf("keymaterial: clients: %w", err)
	}
	return slices.Sorted(maps.Keys(usr.clients)), nil
}

// Upload stores a client's KeyPackages. Each must validate at now, carry a
// basic credential whose identity is the client's URI and be new by
// KeyPackageRef. Last-resort KeyPackages replace the client's last-resort
// KeyPackage of the same suite; the others join the client's regular
// KeyPackages, which the limit bounds. The client's expired KeyPackages are
// dropped first. The upload is all or nothing; a refused KeyPackage is
// reported as an *UploadError.
func (s *Store) Upload(c proto.URI, kps []*mls.KeyPackage, now uint64) error {
	cl, err := s.client(c)
	if err != nil {
		return fmt.Errorf("keymaterial: upload: %w", err)
	}
	regular := 0
	lastResort := make(map[mls.CipherSuite]int) // suite → index in kps
	entries := make([]*entry, len(kps))
	seen := make(map[string]int) // KeyPackageRef → index in kps
	for i, kp := range kps {
		e, err := s.checkUpload(c, kp, now, seen, lastResort)
		if err != nil {
			return fmt.Errorf("keymaterial: upload for %s: %w", c, &UploadError{Index: i, Err: err})
		}
		if e.kp.IsLastResort() {
			lastResort[e.kp.CipherSuite] = i
		} else {
			regular++
		}
		seen[string(e.ref)] = i
		entries[i] = e
	}
	live := 0
	for _, e := range cl.regular {
		if !e.expired(now) {
			live++
		}
	}
	if n := live + regular; n > s.limits.MaxKeyPackagesPerClient {
		return fmt.Errorf("keymaterial: upload for %s: %w: %d regular KeyPackages, at most %d per client",
			c, ErrLimit, n, s.limits.MaxKeyPackagesPerClient)
	}

	s.pruneClient(cl, now)
	for _, e := range entries {
		if e.kp.IsLastResort() {
			if old := cl.lastResort[e.kp.CipherSuite]; old != nil {
				delete(s.index, string(old.ref))
			}
			cl.lastResort[e.kp.CipherSuite] = e
		} else {
			cl.regular = append(cl.regular, e)
		}
		s.index[string(e.ref)] = c
	}
	return nil
}

// newEntry checks a KeyPackage for client c at now and returns a private
// copy of it.
func newEntry(c proto.URI, kp *mls.KeyPackage, now uint64, maxSize int) (*entry, error) {
	if kp == nil {
		return nil, fmt.Errorf("%w: missing", ErrInvalidKeyPackage)
	}
	cred := &kp.LeafNode.Credential
	if cred.Type != mls.CredentialBasic {
		return nil, fmt.Errorf("%w: credential type 0x%04x, want basic", ErrWrongIdentity, uint16(cred.Type))
	}
	if proto.URI(cred.Identity) != c {
		return nil, fmt.Errorf("%w: identity %q, want %q", ErrWrongIdentity, cred.Identity, c)
	}
	if err := kp.Validate(now); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKeyPackage, err)
	}
	enc, err := wire.Marshal(kp)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKeyPackage, err)
	}
	if len(enc) > maxSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidKeyPackage, len(enc), maxSize)
	}
	return decodeEntry(enc)
}

// decodeEntry decodes a KeyPackage encoding the entry then owns.
func decodeEntry(enc []byte) (*entry, error) {
	kp := new(mls.KeyPackage)
	if err := wire.Unmarshal(enc, kp); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKeyPackage, err)
	}
	ref, err := kp.Ref()
	if err != nil {
		return nil, fmt.Errorf("%w: KeyPackageRef: %v", ErrInvalidKeyPackage, err)
	}
	return &entry{enc: enc, kp: kp, ref: ref}, nil
}

// checkUpload checks one KeyPackage of an upload for client c at now and
// returns a private copy. Its KeyPackageRef must not be stored, handed out,
// or earlier in the same upload (seen); a last-resort KeyPackage's suite
// must not be earlier in the upload (lastResort).
func (s *Store) checkUpload(c proto.URI, kp *mls.KeyPackage, now uint64, seen map[string]int, lastResort map[mls.CipherSuite]int) (*entry, error) {
	maxSize := math.MaxInt
	if s.rules >= sizeBound {
		maxSize = proto.MaxKeyPackageSize
	}
	e, err := newEntry(c, kp, now, maxSize)
	if err != nil {
		return nil, err
	}
	key := string(e.ref)
	if j, ok := seen[key]; ok {
		return nil, fmt.Errorf("%w: same as KeyPackage %d", ErrDuplicateKeyPackage, j)
	}
	if _, ok := s.index[key]; ok {
		return nil, fmt.Errorf("%w: already stored", ErrDuplicateKeyPackage)
	}
	if _, ok := s.spent[key]; ok {
		return nil, fmt.Errorf("%w: already handed out", ErrDuplicateKeyPackage)
	}
	if j, ok := lastResort[e.kp.CipherSuite]; ok && e.kp.IsLastResort() {
		return nil, fmt.Errorf("%w: KeyPackage %d is last resort for %s too", ErrInvalidKeyPackage, j, e.kp.CipherSuite)
	}
	return e, nil
}

// expired reports whether e's lifetime ended before now.
func (e *entry) expired(now uint64) bool { return e.kp.LeafNode.Lifetime.NotAfter < now }

// pruneClient drops a client's expired KeyPackages and returns how many.
func (s *Store) pruneClient(cl *client, now uint64) int {
	n := 0
	cl.regular = slices.DeleteFunc(cl.regular, func(e *entry) bool {
		if e.expired(now) {
			delete(s.index, string(e.ref))
			n++
			return true
		}
		return false
	})
	for suite, e := range cl.lastResort {
		if e.expired(now) {
			delete(s.index, string(e.ref))
			delete(cl.lastResort, suite)
			n++
		}
	}
	return n
}

// PruneStats says what Prune dropped.
type PruneStats struct {
	KeyPackages int // expired KeyPackages
	Routes      int // Welcome routes past their KeyPackage's not_after
}

// Prune drops the KeyPackages whose lifetime ended before now, and the
// Welcome routes (and records of KeyPackages handed out) whose KeyPackage's
// not_after is before now.
func (s *Store) Prune(now uint64) PruneStats {
	var st PruneStats
	for _, usr := range s.users {
		for _, cl := range usr.clients {
			st.KeyPackages += s.pruneClient(cl, now)
		}
	}
	for ref, r := range s.routes {
		if r.notAfter < now {
			delete(s.routes, ref)
			st.Routes++
		}
	}
	for ref, notAfter := range s.spent {
		if notAfter < now {
			delete(s.spent, ref)
		}
	}
	return st
}

// RouteWelcome returns the client a KeyPackage this store handed out
// belongs to, so that a Welcome into room naming its KeyPackageRef can be
// delivered; ok is false when the KeyPackage was claimed for another room.
func (s *Store) RouteWelcome(ref []byte, room proto.URI) (client proto.URI, ok bool) {
	r, ok := s.routes[string(ref)]
	if !ok || r.room != "" && r.room != room {
		return "", false
	}
	return r.client, true
}

// ForgetRoute drops the route of ref, once its Welcome is delivered; the
// KeyPackage still cannot be uploaded again. A route to a last-resort
// KeyPackage that is still in its client's pool stays: it is handed out to
// every claim that allows last resort, so more Welcomes may name it. Such
// routes go when the KeyPackage expires (Prune), is replaced and then
// forgotten, or its client is removed.
func (s *Store) ForgetRoute(ref []byte) {
	if !s.storedLastResort(ref) {
		delete(s.routes, string(ref))
	}
}

// storedLastResort reports whether ref names a last-resort KeyPackage in a
// pool. (Ranging over the suites yields only a yes or no.)
func (s *Store) storedLastResort(ref []byte) bool {
	c, ok := s.index[string(ref)]
	if !ok {
		return false
	}
	u, _ := c.UserOf()
	for _, e := range s.users[u].clients[c].lastResort {
		if bytes.Equal(e.ref, ref) {
			return true
		}
	}
	return false
}

// ClientCount is what an operator sees of a client's pool.
type ClientCount struct {
	Client proto.URI
	// KeyPackages counts the regular KeyPackages stored, expired ones
	// included until they are pruned.
	KeyPackages int
	// LastResort lists the suites the client has a last-resort KeyPackage
	// for, ascending.
	LastResort []mls.CipherSuite
}

func countOf(c proto.URI, cl *client) ClientCount {
	return ClientCount{Client: c, KeyPackages: len(cl.regular), LastResort: slices.Sorted(maps.Keys(cl.lastResort))}
}

// Count returns the pool of client c.
func (s *Store) Count(c proto.URI) (ClientCount, error) {
	cl, err := s.client(c)
	if err != nil {
		return ClientCount{}, fmt.Errorf("keymaterial: count: %w", err)
	}
	return countOf(c, cl), nil
}

// Counts returns the pools of every client, in URI order.
func (s *Store) Counts() []ClientCount {
	var out []ClientCount
	for _, usr := range s.users {
		for c, cl := range usr.clients {
			out = append(out, countOf(c, cl))
		}
	}
	slices.SortFunc(out, func(a, b ClientCount) int { return cmp.Compare(a.Client, b.Client) })
	return out
}
