package room

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/internal/pmap"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Config describes the hub a room lives on. It is static: every replica
// passes the same.
type Config struct {
	// Hub is the hub provider's domain; rooms it hosts have URIs under it.
	Hub string
	// MaxVector bounds vectors when decoding MIMI and MLS objects; zero
	// means 64 MiB, room for the ratchet tree of 100,000 members.
	MaxVector int
	// Keys are the hub's external-sender keys (the same on every
	// replica); nil while the provider has none. Rooms created with keys
	// must list the hub in their group's external_senders, and then take
	// the hub's own proposals.
	Keys *HubKeys

	// MaxTreeHistory bounds the bytes of past trees a room keeps for
	// Welcomes' recipients; zero means MaxTreeHistoryBytes.
	MaxTreeHistory int

	// plant switches off one rule, in builds with the mimi_plant tag only
	// (plant_on.go), to test the adversarial test's checkers.
	plant plant
}

// plant names a rule a test build may switch off.
type plant uint8

// Rules a mimi_plant build can switch off.
const (
	plantNone             plant = iota
	plantLingeringRemoves       // a lingering client may remove anyone's client (hole C)
	plantAddUnchecked           // Adds in commits are not authorized (hole D)
	plantQueueConflicts         // conflicting departures are queued (hole B)
	plantBannedSends            // banned users' clients may send
)

// planted reports whether p is switched off in this (test) build.
func (c Config) planted(p plant) bool { return plantsCompiled && c.plant == p }

func (c Config) maxTreeHistory() int {
	if c.MaxTreeHistory == 0 {
		return MaxTreeHistoryBytes
	}
	return c.MaxTreeHistory
}

func (c Config) maxVector() int {
	if c.MaxVector == 0 {
		return 64 << 20
	}
	return c.MaxVector
}

// MLSConfig is how rooms treat MIMI's MLS proposal types. A
// ParticipantListPatch may come from an external sender: the hub proposes
// one when it must take a departed user off the list again after an
// external commit (members accept external proposals only from the
// group's external_senders, which list only the hub).
func MLSConfig(maxVector int) mls.Config {
	return mls.Config{
		CustomProposals: map[mls.ProposalType]mls.ProposalTypeInfo{
			proto.ProposalParticipantListPatch: {PathRequired: false, External: true},
		},
		MaxVector: maxVector,
	}
}

// RulesLevel is the newest level of rules the room engine applies, in
// the numbering of the fsm's log levels: a rule brought by level n
// applies while the room's level is n or above. New and restored rooms
// apply it; a replicated embedding, whose replicas must apply an entry
// already in the log by the rules it was logged under, sets the log's
// level before each request (SetRulesLevel; fsm/levels.go).
const RulesLevel = 2

// rulesBoundedProposals is the level that brought the byte bounds on an
// epoch's optional proposals and on a leaf node.
const rulesBoundedProposals = 2

// SetRulesLevel makes the room apply the rules of level l and below.
func (r *Room) SetRulesLevel(l int) { r.rules = l }

// rulesAt reports whether the rules of level l apply.
func (r *Room) rulesAt(l int) bool { return r.rules >= l }

// Room is the hub's state of one room: its MLS group as a public-state
// follower, its participant list, the proposals the next commit must cover,
// and where Welcomes go. It is pure: no clock, randomness or I/O, so every
// replica applying the same requests reaches the same state (EncodeTLS is
// byte-identical). A Room is not safe for concurrent use.
type Room struct {
	cfg          Config
	id           proto.URI
	group        *mls.Follower
	participants participants
	// queued are refs of pending proposals that must be committed as soon
	// as possible: the next commit must cover them (seed section 4).
	queued [][]byte
	// mandates are the departures the hub was asked for and has proposed
	// itself (revoked clients, and departures an external commit could not
	// carry): until a regular commit executes them, the hub proposes them
	// again after every external commit. Sorted, unique.
	mandates []departure
	// routes maps KeyPackageRefs claimed for this room to the provider
	// that served them, for Welcome routing (seed section 7.3).
	routes []Route
	// seq numbers the messages the hub accepted, in hub order.
	seq uint64
	// used remembers the KeyPackages added to the room until they expire,
	// so that none is added twice (last-resort ones may be).
	used usedKeyPackages
	// welcomes remembers the recipients of recent Welcomes, who may fetch
	// the tree of their epoch (welcometree.go).
	welcomes welcomeRecords
	// goneWelcomes are recent Welcomes whose tree the byte bound dropped:
	// their recipients learn it is gone.
	goneWelcomes welcomeRecords
	// recent remembers the application messages accepted in the current
	// epoch, to answer an exact replay (replay.go).
	recent recentMessages

	// rules is the level of rules the room applies requests with
	// (RulesLevel unless its embedding says otherwise: SetRulesLevel);
	// not encoded.
	rules int

	// Derived state, rebuilt on restore.
	members   memberIndex
	lingering map[proto.URI]bool // users with clients who are not active participants
	qindex    queueIndex
	// senders caches the roles the base policy lets send, for one epoch
	// (the policy changes only with a commit): every message needs them.
	// Filled by Apply only, never by reads; not encoded.
	senders struct {
		epoch uint64
		ok    bool
		roles []proto.Role
	}
}

// sendRoles returns the roles that may send messages in the current
// epoch. It caches them: call it only from Apply.
func (r *Room) sendRoles() []proto.Role {
	if c := &r.senders; c.ok && c.epoch == r.Epoch() {
		return c.roles
	}
	roles := r.Policy().Send
	r.senders.epoch, r.senders.ok, r.senders.roles = r.Epoch(), true, roles
	return roles
}

// usedKeyPackages remembers the KeyPackages added to the room until they
// expire, by ref (the ref's bytes as a string, so sorted as bytes), in a
// persistent map: a change is O(log n) and a snapshot captures it in
// constant time. Expired ones are forgotten by a sweep that resumes after
// swept and checks a few entries per commit, so there is no second index
// by expiry (a room of 100,000 members would pay for it per member) and no
// scan of all. An expired entry kept a while changes nothing: nobody can
// add an expired KeyPackage.
type usedKeyPackages struct {
	byRef pmap.Map[string, uint64]
	swept string
}

// has reports whether ref was added to the room before.
func (u *usedKeyPackages) has(ref []byte) bool { return u.byRef.Has(string(ref)) }

// add remembers ref until notAfter (Unix seconds).
func (u *usedKeyPackages) add(ref []byte, notAfter uint64) {
	if !u.byRef.Has(string(ref)) {
		u.byRef = u.byRef.Set(string(ref), notAfter)
	}
}

// expire checks the next n entries of the sweep (wrapping around at the
// end, none twice) and forgets those expired at now (Unix seconds).
func (u *usedKeyPackages) expire(now uint64, n int) {
	n = min(n, u.byRef.Len())
	var expired []string
	for n > 0 {
		took := 0
		for ref, notAfter := range u.byRef.After(u.swept) {
			u.swept = ref
			if notAfter < now {
				expired = append(expired, ref)
			}
			if took++; took == n {
				break
			}
		}
		if n -= took; n > 0 {
			u.swept = "" // the end: go on from the start
		}
	}
	for _, ref := range expired {
		u.byRef = u.byRef.Delete(ref)
	}
}

// wasUsed reports whether ref was added to the room before.
func (r *Room) wasUsed(ref []byte) bool { return r.used.has(ref) }

// Route ties a claimed KeyPackage to the provider that served it.
type Route struct {
	Ref    []byte
	Domain string
}

// ID returns the room URI.
func (r *Room) ID() proto.URI { return r.id }

// Epoch returns the group's current epoch.
func (r *Room) Epoch() uint64 { return r.group.Epoch() }

// Sequence returns the number of the last message the hub accepted.
func (r *Room) Sequence() uint64 { return r.seq }

// Group returns the room's MLS group. Callers must not modify it.
func (r *Room) Group() *mls.Follower { return r.group }

// Participants returns a copy of the participant list, sorted by user.
func (r *Room) Participants() []Participant { return r.participants.list() }

// Participant returns user's entry in the participant list, in O(log n).
func (r *Room) Participant(user proto.URI) (Participant, bool) {
	p := r.participants.get(user)
	if p == nil {
		return Participant{}, false
	}
	return Participant{User: p.User, Roles: slices.Clone(p.Roles)}, true
}

// Policy returns the room's base policy.
func (r *Room) Policy() proto.BasePolicy {
	ctx := r.group.GroupContext()
	p, err := proto.PolicyOf(ctx.Extensions)
	if err != nil {
		panic(fmt.Sprintf("room %s: %v", r.id, err)) // checked on every change
	}
	return *p
}

// Providers returns the providers with member clients, sorted.
func (r *Room) Providers() []string { return r.members.domains() }

// Clients returns the member clients of user, sorted.
func (r *Room) Clients(user proto.URI) []proto.URI { return slices.Clone(r.members.clientsOf(user)) }

// Errors for requests that have no MIMI response code of their own.
var (
	// ErrNotAllowed: the requester may not do this.
	ErrNotAllowed = errors.New("not allowed")
	// ErrInvalid: the request is malformed or inconsistent.
	ErrInvalid = errors.New("invalid request")
)

// CreateRequest asks the hub to host a new room whose MLS group the creator
// made (out of the seed's scope: between a client and its provider).
type CreateRequest struct {
	Room    proto.URI
	Creator proto.URI // the creating user; it becomes owner, admin and regular user
	// GroupInfo is the group's GroupInfo (epoch any, signed by a creator's
	// client), with the external_pub extension; Tree its ratchet tree.
	GroupInfo *mls.GroupInfo
	Tree      []byte
	// RulesLevel is the level of rules the room is made and then applies
	// requests with (SetRulesLevel); levels start at 1, and 0 asks for
	// the newest (RulesLevel).
	RulesLevel int
}

// Create makes a room. The group must name the room (group id = room URI),
// carry a base policy, and hold only the creator's clients.
func Create(cfg Config, req CreateRequest, acceptedAt uint64) (*Room, error) {
	id, err := req.Room.Parse()
	if err != nil || id.Kind != proto.KindRoom {
		return nil, fmt.Errorf("%w: %q is not a room URI", ErrInvalid, req.Room)
	}
	if id.Domain != cfg.Hub {
		return nil, fmt.Errorf("%w: room %s is not hosted on %s", ErrNotAllowed, req.Room, cfg.Hub)
	}
	if cid, err := req.Creator.Parse(); err != nil || cid.Kind != proto.KindUser {
		return nil, fmt.Errorf("%w: creator %q is not a user URI", ErrInvalid, req.Creator)
	}
	gc := &req.GroupInfo.GroupContext
	if !bytes.Equal(gc.GroupID, []byte(req.Room)) {
		return nil, fmt.Errorf("%w: the group id must be the room URI %s", ErrInvalid, req.Room)
	}
	if _, err := proto.PolicyOf(gc.Extensions); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, ok, err := req.GroupInfo.ExternalPub(); err != nil || !ok {
		return nil, fmt.Errorf("%w: the GroupInfo must carry external_pub so that clients can join by external commit", ErrInvalid)
	}
	if err := cfg.checkExternalSenders(gc.CipherSuite, gc.Extensions, false); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	f, err := mls.NewFollower(req.GroupInfo, req.Tree, MLSConfig(cfg.maxVector()))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	r := &Room{cfg: cfg, id: req.Room, group: f, rules: cmp.Or(req.RulesLevel, RulesLevel)}
	if r.members, err = indexTree(f.Tree()); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for _, leaf := range f.Tree().Members() {
		if err := r.checkCapabilities(leaf, gc.Extensions); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	for user := range r.members.byUser {
		if user != req.Creator {
			return nil, fmt.Errorf("%w: the new group holds a client of %s; only the creator's clients may start a room", ErrInvalid, user)
		}
	}
	r.participants.set(req.Creator, []proto.Role{proto.RoleOwner, proto.RoleAdmin, proto.RoleRegularUser})
	r.lingering = map[proto.URI]bool{}
	return r, nil
}

// Request is one of the requests a room takes: *UpdateRoom,
// *ProvisionalMessage, *ClaimGroupInfo, *ReportAbuse, *RouteKeyPackages.
type Request interface {
	apply(r *Room, acceptedAt uint64) Outcome
}

// Outcome is what a request produced: its answer and its effects.
type Outcome struct {
	// Response answers updateRoom and provisionalMessage.
	Response proto.UpdateRoomResponse
	// GroupInfo answers claimGroupInfo.
	GroupInfo *proto.GroupInfoResponse
	// Report is the accepted abuse report.
	Report *Report
	// Repeat marks a success that changed nothing: the request repeats an
	// application message the room accepted already (replay.go), and is
	// not fanned out again.
	Repeat bool
	// Err is set when a request without a MIMI response code is refused
	// (wraps ErrNotAllowed or ErrInvalid).
	Err error
	// Effects are the messages to fan out, in hub order.
	Effects []Effect
	// Joined names the client that joined by external commit, if any: its
	// provider starts delivering the room to it at once, so it misses
	// nothing accepted after its commit.
	Joined proto.URI
}

// Effect is one message the hub accepted and must deliver.
type Effect struct {
	// Seq is the message's number in the room's hub order.
	Seq    uint64
	Fanout proto.FanoutMessage
	// To lists the providers that receive it, sorted by domain.
	To []Recipient
	// Raw is Fanout.Message's encoding when the request carried it (nil
	// otherwise); it may alias the request's bytes.
	Raw []byte
}

// Recipient is a provider that receives a fanout message.
type Recipient struct {
	Domain string
	// Exclude lists clients the provider must not deliver to: those of users
	// removed or banned while their clients are still members (seed section
	// 7.4: the hub must keep them from receiving).
	Exclude []proto.URI
	// WelcomeRefs, for a Welcome, are the KeyPackageRefs of this provider's
	// new members; the provider delivers to the clients it served them to.
	WelcomeRefs [][]byte
}

// Apply runs a request at the hub's acceptance time (milliseconds since the
// Unix epoch, stamped by the Raft leader). A refused request changes nothing.
func (r *Room) Apply(req Request, acceptedAt uint64) Outcome {
	return req.apply(r, acceptedAt)
}

// RouteKeyPackages records which provider served KeyPackages claimed for
// this room, so their Welcome reaches it.
type RouteKeyPackages struct {
	Routes []Route
}

func (q *RouteKeyPackages) apply(r *Room, _ uint64) Outcome {
	for _, rt := range q.Routes {
		if len(rt.Ref) == 0 || rt.Domain == "" {
			return Outcome{Err: fmt.Errorf("%w: empty KeyPackage route", ErrInvalid)}
		}
	}
	for _, rt := range q.Routes {
		i, found := slices.BinarySearchFunc(r.routes, rt.Ref, func(a Route, ref []byte) int { return bytes.Compare(a.Ref, ref) })
		if found {
			r.routes[i].Domain = rt.Domain
		} else {
			r.routes = slices.Insert(r.routes, i, Route{Ref: bytes.Clone(rt.Ref), Domain: rt.Domain})
		}
	}
	return Outcome{}
}

// takeRoute returns and forgets the provider that served ref.
func (r *Room) takeRoute(ref []byte) (string, bool) {
	i, found := slices.BinarySearchFunc(r.routes, ref, func(a Route, ref []byte) int { return bytes.Compare(a.Ref, ref) })
	if !found {
		return "", false
	}
	d := r.routes[i].Domain
	r.routes = slices.Delete(r.routes, i, i+1)
	return d, true
}

// recipients lists the providers with member clients, each with the
// clients it must skip: lingering clients (seed section 7.4), and sender,
// the client whose message this is (a hub does not echo a client's own
// message to it, draft-ietf-mimi-protocol-06 "Fanout"; its provider still
// gets the message for its other clients).
func (r *Room) recipients(sender proto.URI) []Recipient {
	if len(r.lingering) == 0 {
		domains := r.members.domains()
		out := make([]Recipient, len(domains))
		for i, d := range domains {
			out[i] = Recipient{Domain: d}
		}
		return excludeSender(out, sender)
	}
	excluded := map[string][]proto.URI{}
	users := make([]proto.URI, 0, len(r.lingering))
	for u := range r.lingering {
		users = append(users, u)
	}
	slices.Sort(users)
	for _, u := range users {
		for _, c := range r.members.clientsOf(u) {
			d, _ := c.Domain()
			excluded[d] = append(excluded[d], c)
		}
	}
	var out []Recipient
	for _, d := range r.members.domains() {
		out = append(out, Recipient{Domain: d, Exclude: excluded[d]})
	}
	return excludeSender(out, sender)
}

// excludeSender adds the sending client to its provider's exclusions.
func excludeSender(rs []Recipient, sender proto.URI) []Recipient {
	if sender == "" {
		return rs
	}
	d, _ := sender.Domain()
	for i := range rs {
		if rs[i].Domain == d && !slices.Contains(rs[i].Exclude, sender) {
			ex := append(slices.Clone(rs[i].Exclude), sender)
			slices.Sort(ex)
			rs[i].Exclude = ex
		}
	}
	return rs
}

// accept numbers an accepted message and addresses it.
func (r *Room) accept(m *mls.Message, at uint64, to []Recipient) Effect {
	r.seq++
	return Effect{Seq: r.seq, Fanout: proto.FanoutMessage{Message: m, Timestamp: at}, To: to}
}

// updateLingering recomputes whether each of users lingers: has member
// clients but is not an active participant.
func (r *Room) updateLingering(users []proto.URI) {
	for _, u := range users {
		if len(r.members.clientsOf(u)) > 0 && !r.participants.active(u) {
			r.lingering[u] = true
		} else {
			delete(r.lingering, u)
		}
	}
}

// stateVersion is the format of Room.EncodeTLS. Version 1 (before hub
// proposals) had no mandates, version 2 no Welcome records, version 3 no
// recent messages; all still restore, without them.
const stateVersion = 4

// EncodeTLS writes the room's state for snapshots.
func (r *Room) EncodeTLS(w *wire.Writer) {
	w.Uint8(stateVersion)
	r.id.EncodeTLS(w)
	w.Vector(func(w *wire.Writer) { r.group.EncodeTLS(w) })
	r.participants.EncodeTLS(w)
	w.Vector(func(w *wire.Writer) {
		for _, q := range r.queued {
			w.Opaque(q)
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, rt := range r.routes {
			w.Opaque(rt.Ref)
			w.Opaque([]byte(rt.Domain))
		}
	})
	w.Uint64(r.seq)
	w.Vector(func(w *wire.Writer) {
		for ref, notAfter := range r.used.byRef.All() {
			w.Opaque([]byte(ref))
			w.Uint64(notAfter)
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, d := range r.mandates {
			d.client.EncodeTLS(w)
			d.user.EncodeTLS(w)
		}
	})
	r.welcomes.encode(w)
	r.goneWelcomes.encode(w)
	w.Opaque([]byte(r.used.swept))
	r.recent.encode(w)
}

// Restore rebuilds a room from EncodeTLS output.
func Restore(cfg Config, state []byte) (*Room, error) {
	rd := wire.NewReader(state)
	rd.SetMaxVector(cfg.maxVector())
	var version uint8
	rd.Uint8(&version)
	if rd.OK() && (version < 1 || version > stateVersion) {
		return nil, fmt.Errorf("restore room: state format %d, want %d (or 1 to 3)", version, stateVersion)
	}
	r := &Room{cfg: cfg, rules: RulesLevel}
	r.id.DecodeTLS(rd)
	var group []byte
	rd.Opaque(&group)
	r.participants.DecodeTLS(rd)
	rd.VectorEach(func(rd *wire.Reader) {
		var q []byte
		rd.Opaque(&q)
		r.queued = append(r.queued, bytes.Clone(q))
	})
	rd.VectorEach(func(rd *wire.Reader) {
		var ref, domain []byte
		rd.Opaque(&ref)
		rd.Opaque(&domain)
		r.routes = append(r.routes, Route{Ref: bytes.Clone(ref), Domain: string(domain)})
	})
	rd.Uint64(&r.seq)
	rd.VectorEach(func(rd *wire.Reader) {
		var ref []byte
		var notAfter uint64
		rd.Opaque(&ref)
		rd.Uint64(&notAfter)
		if rd.OK() && r.used.byRef.Len() > 0 {
			if last, _, _ := r.used.byRef.Max(); last >= string(ref) {
				rd.Failf("used KeyPackages are not sorted and unique")
			}
		}
		r.used.add(ref, notAfter)
	})
	if version >= 2 {
		rd.VectorEach(func(rd *wire.Reader) {
			var d departure
			d.client.DecodeTLS(rd)
			d.user.DecodeTLS(rd)
			if rd.OK() && len(r.mandates) > 0 && !r.mandates[len(r.mandates)-1].less(d) {
				rd.Failf("room mandates are not sorted and unique")
			}
			r.mandates = append(r.mandates, d)
		})
	}
	if version >= 3 {
		r.welcomes.decode(rd)
		r.goneWelcomes.decode(rd)
		var swept []byte
		rd.Opaque(&swept)
		r.used.swept = string(swept)
	}
	if version >= 4 {
		r.recent.decode(rd)
	}
	if err := rd.Finish(); err != nil {
		return nil, fmt.Errorf("restore room: %w", err)
	}
	var err error
	if r.group, err = mls.RestoreFollower(group, MLSConfig(cfg.maxVector())); err != nil {
		return nil, fmt.Errorf("restore room %s: %w", r.id, err)
	}
	if r.members, err = indexTree(r.group.Tree()); err != nil {
		return nil, fmt.Errorf("restore room %s: %w", r.id, err)
	}
	r.lingering = map[proto.URI]bool{}
	r.reindexQueue()
	users := make([]proto.URI, 0, len(r.members.byUser))
	for u := range r.members.byUser {
		users = append(users, u)
	}
	r.updateLingering(users)
	return r, nil
}
