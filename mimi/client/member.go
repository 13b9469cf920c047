package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Defaults of MemberConfig.
const (
	DefaultSuite              = mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	DefaultKeyPackageLifetime = 30 * 24 * time.Hour
	DefaultSyncLimit          = 100
	// clockSkew backdates the start of KeyPackage and leaf lifetimes.
	clockSkew = 5 * time.Minute
)

var (
	// ErrNotMember reports a room this member does not belong to.
	ErrNotMember = errors.New("not a member of the room")
	// ErrUnresolved reports a write whose outcome is unknown: it failed
	// with a connection error or a 5xx answer after its retries, so the
	// server may or may not have applied it. The Member sends it again,
	// with the same idempotency key, before it next uses the room (and in
	// Resolve and Sync); until then Save refuses to run.
	ErrUnresolved = errors.New("the outcome of an earlier request is unknown")
	// ErrSenderMismatch reports an application message whose
	// authenticated_data does not name the member that sent it
	// (DECISIONS.md item 21): its provider lied about the sender.
	ErrSenderMismatch = errors.New("the message's authenticated_data does not name its sender")
)

// MemberConfig configures a Member.
type MemberConfig struct {
	// Suite is the cipher suite of the member's KeyPackages and of the
	// rooms it creates; zero means DefaultSuite.
	Suite mls.CipherSuite
	// KeyPackageLifetime is how long new KeyPackages (and a new room's
	// creator leaf) are valid; zero means DefaultKeyPackageLifetime.
	KeyPackageLifetime time.Duration
	// FullTree sends the ratchet tree with every commit; otherwise commits
	// go byReference and the hub derives the tree.
	FullTree bool
	// MaxVector bounds vectors when decoding; zero means DefaultMaxVector.
	MaxVector int
	// SyncLimit is the number of stream items Sync asks for per request;
	// zero means DefaultSyncLimit.
	SyncLimit int
	// Logger receives the member's debug and warning lines; nil discards.
	Logger *slog.Logger
	// Now is the clock for lifetimes; nil means time.Now.
	Now func() time.Time
	// Random is the MLS randomness; nil means crypto/rand.
	Random io.Reader
	// PastEpochs is how many past epochs each room's MLS group keeps to
	// decrypt application messages that arrive after the commit that ended
	// their epoch (mls.GroupOptions.PastEpochs): zero means
	// mls.DefaultPastEpochs, mls.NoPastEpochs none (and holds none). An
	// epoch one of the member's own commits ended is also held beyond
	// PastEpochs until the member's stream has passed that commit, up to
	// mls.MaxPastEpochs epochs back: the member moves on by its own commits
	// without waiting for its stream, which may lag (its provider's fanout
	// paused by a failover of the hub, for instance). See DESIGN.md, "Late
	// messages".
	PastEpochs int
}

func (c *MemberConfig) defaults() {
	if c.Suite == 0 {
		c.Suite = DefaultSuite
	}
	if c.KeyPackageLifetime <= 0 {
		c.KeyPackageLifetime = DefaultKeyPackageLifetime
	}
	if c.MaxVector <= 0 {
		c.MaxVector = DefaultMaxVector
	}
	if c.SyncLimit <= 0 {
		c.SyncLimit = DefaultSyncLimit
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Member is one MIMI client with a real MLS client, on top of User: it
// holds the MLS group of each room it is in, its signature key and the
// private halves of the KeyPackages it uploaded (keyed by KeyPackageRef, so
// a Welcome from the stream can be opened), and runs the common flows:
// create a room, add, remove and promote users, leave, send, join by
// external commit, report abuse, and Sync, which reads the stream and turns
// it into events.
//
// Every commit covers the pending proposals (the hub refuses commits that
// leave queued departures out), every GroupInfo carries external_pub, and
// application messages carry room.SenderHint of this client. A Member is
// safe for concurrent use; its calls run one at a time. Save after every
// call that changes it (see Save).
type Member struct {
	cfg    MemberConfig
	api    *User
	suite  *mls.Suite
	log    *slog.Logger
	client proto.URI
	user   proto.URI
	signer *mls.SigningKey

	// hostsHere reports whether this member's own provider is room r's
	// hub; tests of other hubs' rooms, which the fake API cannot host,
	// replace it.
	hostsHere func(r proto.URI) bool

	mu          sync.Mutex
	keyPackages map[string]*mls.KeyPackageBundle // by hex KeyPackageRef
	rooms       map[proto.URI]*memberRoom
	cursor      uint64 // last stream seq processed
	acked       uint64 // last stream seq acknowledged
	saved       bool   // Save or LoadMember ran
	savedCursor uint64 // cursor of the last Save or LoadMember
}

// memberRoom is the member's state of one room.
type memberRoom struct {
	group *mls.Group
	// sent holds digests of this member's recent messages, with the epoch
	// each was sent in. A mimi-hub does not echo a client's own messages
	// to it (-06 "Fanout"), but a hub may, after a failover or if it
	// implements only the seed: the echo is then recognized and skipped.
	// Digests older than the previous epoch are dropped (pruneSent).
	sent map[string]uint64
	// pending is a write whose outcome is unknown.
	pending *pendingRequest
}

// newMemberRoom wraps a group.
func newMemberRoom(g *mls.Group) *memberRoom { return &memberRoom{group: g, sent: map[string]uint64{}} }

// markSent remembers a message this member sent.
func (mr *memberRoom) markSent(d string) { mr.sent[d] = mr.group.Epoch() }

// pruneSent forgets the digests of messages sent before the previous
// epoch and before the epochs the group holds: no echo of them can arrive
// in a useful order any more.
func (mr *memberRoom) pruneSent() {
	e := mr.group.Epoch()
	held := mr.group.HeldEpochs()
	maps.DeleteFunc(mr.sent, func(_ string, sent uint64) bool {
		return sent+1 < e && (len(held) == 0 || sent < held[0])
	})
}

// pendingRequest is a write to the hub, replayable with its idempotency
// key, and what to do once its outcome is known.
type pendingRequest struct {
	op   string
	send func(ctx context.Context) (*proto.UpdateRoomResponse, error)
	// accepted runs once the hub accepted; an error it returns is a
	// failure after the acceptance.
	accepted func(ctx context.Context) error
	refused  func()
}

// RegisterMember registers device of user with api (which then holds the
// token) and returns a new Member for the client.
func RegisterMember(ctx context.Context, api *User, user, device string, cfg MemberConfig) (*Member, error) {
	if _, err := api.Register(ctx, user, device, nil); err != nil {
		return nil, err
	}
	return NewMember(api, cfg)
}

// NewMember returns a Member for the client api's token names, with a new
// signature key and no KeyPackages (see UploadKeyPackages).
func NewMember(api *User, cfg MemberConfig) (*Member, error) {
	m, err := newMember(api, cfg)
	if err != nil {
		return nil, err
	}
	if m.signer, err = m.suite.GenerateSigningKey(); err != nil {
		return nil, fmt.Errorf("member: %w", err)
	}
	return m, nil
}

func newMember(api *User, cfg MemberConfig) (*Member, error) {
	if api == nil {
		return nil, errors.New("member: no client API")
	}
	cfg.defaults()
	client, err := api.Client()
	if err != nil {
		return nil, fmt.Errorf("member: the client API's token: %w", err)
	}
	user, _ := client.UserOf()
	suite, err := cfg.Suite.Suite()
	if err != nil {
		return nil, fmt.Errorf("member: %w", err)
	}
	domain, _ := client.Domain()
	return &Member{
		cfg: cfg, api: api, suite: suite, client: client, user: user,
		log:         cfg.Logger.With("component", "mimi-member", "client", string(client)),
		keyPackages: map[string]*mls.KeyPackageBundle{}, rooms: map[proto.URI]*memberRoom{},
		hostsHere: func(r proto.URI) bool {
			d, err := r.Domain()
			return err == nil && d == domain
		},
	}, nil
}

// Client returns the member's client URI.
func (m *Member) Client() proto.URI { return m.client }

// User returns the member's user URI.
func (m *Member) User() proto.URI { return m.user }

// API returns the client API the member uses.
func (m *Member) API() *User { return m.api }

// Rooms lists the rooms the member is in, sorted.
func (m *Member) Rooms() []proto.URI {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.rooms))
}

// Epoch returns the member's epoch of a room.
func (m *Member) Epoch(r proto.URI) (uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mr, ok := m.rooms[r]
	if !ok {
		return 0, false
	}
	return mr.group.Epoch(), true
}

// Members lists the client URIs in the room's MLS group, in leaf order.
func (m *Member) Members(r proto.URI) ([]proto.URI, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mr, ok := m.rooms[r]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotMember, r)
	}
	var out []proto.URI
	for _, leaf := range mr.group.Tree().Members() {
		out = append(out, proto.URI(leaf.Credential.Identity))
	}
	return out, nil
}

// KeyPackages returns the number of KeyPackages whose private keys the
// member keeps (uploaded and not yet used to join).
func (m *Member) KeyPackages() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keyPackages)
}

func (m *Member) now() uint64 { return uint64(m.cfg.Now().Unix()) }

func (m *Member) lifetime() mls.Lifetime {
	now := m.cfg.Now()
	return mls.Lifetime{NotBefore: uint64(now.Add(-clockSkew).Unix()), NotAfter: uint64(now.Add(m.cfg.KeyPackageLifetime).Unix())}
}

func (m *Member) groupOptions() mls.GroupOptions {
	return mls.GroupOptions{Config: room.MLSConfig(m.cfg.MaxVector), Random: m.cfg.Random, Now: m.now, PastEpochs: m.cfg.PastEpochs}
}

func (m *Member) credential() mls.Credential { return mls.BasicCredential([]byte(m.client)) }

// Capabilities are what a Member's leaves support beyond MLS's defaults:
// the ParticipantListPatch and SelfRemove proposals and the base policy
// extension.
func Capabilities() mls.Capabilities {
	return mls.Capabilities{
		Proposals:  []mls.ProposalType{proto.ProposalParticipantListPatch, mls.ProposalSelfRemove},
		Extensions: []mls.ExtensionType{proto.ExtBasePolicy},
	}
}

// digest identifies a message's encoding.
func digest(b []byte) string {
	d := sha256.Sum256(b)
	return string(d[:])
}

// UploadKeyPackages makes n new KeyPackages, plus a last-resort one when
// lastResort is set, and uploads them. Their private keys are kept first,
// so a Welcome to any of them can be opened even if the answer is lost.
func (m *Member) UploadKeyPackages(ctx context.Context, n int, lastResort bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneKeyPackages()
	var kps []*mls.KeyPackage
	var refs []string
	for i := 0; i < n+1; i++ {
		last := i == n
		if last && !lastResort {
			break
		}
		b, err := mls.NewKeyPackage(m.suite, m.signer, mls.KeyPackageOptions{
			Credential: m.credential(), Capabilities: Capabilities(), Lifetime: m.lifetime(), LastResort: last,
		})
		if err != nil {
			return fmt.Errorf("upload KeyPackages: %w", err)
		}
		ref, err := b.KeyPackage.Ref()
		if err != nil {
			return fmt.Errorf("upload KeyPackages: %w", err)
		}
		k := hex.EncodeToString(ref)
		m.keyPackages[k] = b
		refs = append(refs, k)
		kps = append(kps, b.KeyPackage)
	}
	if len(kps) == 0 {
		return nil
	}
	if err := m.api.UploadKeyPackages(ctx, kps); err != nil {
		if !ambiguous(err) {
			for _, k := range refs {
				delete(m.keyPackages, k)
			}
		}
		return err
	}
	return nil
}

// pruneKeyPackages forgets KeyPackages whose lifetime ended.
func (m *Member) pruneKeyPackages() {
	now := m.now()
	maps.DeleteFunc(m.keyPackages, func(_ string, b *mls.KeyPackageBundle) bool {
		return b.KeyPackage.LeafNode.Lifetime.NotAfter < now
	})
}

// ambiguous reports whether a failed write may have been applied: it got
// no answer, a 5xx answer, or a 2xx answer that could not be read.
func ambiguous(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status >= 500
	}
	var te *TransportError
	var be *badAnswerError
	return errors.As(err, &te) || errors.As(err, &be)
}

// room returns the member's state of r, first settling its pending write.
func (m *Member) room(ctx context.Context, r proto.URI) (*memberRoom, error) {
	mr, ok := m.rooms[r]
	if ok && mr.pending != nil {
		if err := m.settle(ctx, r, mr, mr.pending); errors.Is(err, ErrUnresolved) {
			return nil, err
		} else if err != nil {
			m.log.WarnContext(ctx, "an earlier request was refused", "room", string(r), "err", err)
		}
		mr, ok = m.rooms[r]
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotMember, r)
	}
	return mr, nil
}

// submit sends a write to the hub with a fresh idempotency key and settles
// it.
func (m *Member) submit(ctx context.Context, r proto.URI, mr *memberRoom, p *pendingRequest) error {
	key, err := m.api.NewIdempotencyKey()
	if err != nil {
		p.refused()
		return err
	}
	send := p.send
	p.send = func(ctx context.Context) (*proto.UpdateRoomResponse, error) {
		return send(WithIdempotencyKey(ctx, key))
	}
	return m.settle(ctx, r, mr, p)
}

// settle sends p and applies its outcome: accepted, refused, or unknown
// (then p stays pending on the room and the error wraps ErrUnresolved).
func (m *Member) settle(ctx context.Context, r proto.URI, mr *memberRoom, p *pendingRequest) error {
	resp, err := p.send(ctx)
	switch {
	case err != nil && ambiguous(err):
		mr.pending = p
		return fmt.Errorf("%s in %s: %w: %w", p.op, r, ErrUnresolved, err)
	case err != nil:
		mr.pending = nil
		p.refused()
		return fmt.Errorf("%s in %s: %w", p.op, r, err)
	case resp.Code != proto.UpdateSuccess:
		mr.pending = nil
		p.refused()
		return &RefusedError{Op: p.op, Room: r, Code: resp.Code, Description: resp.Description}
	}
	mr.pending = nil
	if err := p.accepted(ctx); err != nil {
		return fmt.Errorf("%s in %s was accepted, but %w", p.op, r, err)
	}
	return nil
}

// Resolve settles every write whose outcome is unknown by sending it again
// with its idempotency key. It returns an error wrapping ErrUnresolved when
// some outcome is still unknown; writes found refused are logged.
func (m *Member) Resolve(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.resolveAll(ctx)
	return err
}

// resolveAll settles all pending writes and reports each outcome.
func (m *Member) resolveAll(ctx context.Context) ([]Event, error) {
	var events []Event
	for _, r := range slices.Sorted(maps.Keys(m.rooms)) {
		mr := m.rooms[r]
		if mr.pending == nil {
			continue
		}
		op := mr.pending.op
		err := m.settle(ctx, r, mr, mr.pending)
		if errors.Is(err, ErrUnresolved) {
			return events, err
		}
		events = append(events, Event{Kind: EventResolved, Room: r, Op: op, Err: err})
	}
	return events, nil
}

// CreateRoom creates the room roomID hosted by this member's provider: an
// MLS group whose id is the room URI, with policy in its base policy
// extension, the hub in its external_senders (from GET /v1/hub, so the hub
// can propose removals itself), MIMI's proposals and extension in its
// required_capabilities, and this client as its only member, announced to
// the provider with a GroupInfo carrying external_pub. It returns the room
// URI.
func (m *Member) CreateRoom(ctx context.Context, roomID string, policy proto.BasePolicy) (proto.URI, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	domain, _ := m.client.Domain()
	r := proto.RoomURI(domain, roomID)
	if id, err := r.Parse(); err != nil || id.Kind != proto.KindRoom {
		return "", fmt.Errorf("create room: invalid room id %q", roomID)
	}
	if _, ok := m.rooms[r]; ok {
		return "", fmt.Errorf("create room: %s: already a member", r)
	}
	ext, err := m.roomExtensions(ctx, policy)
	if err != nil {
		return "", fmt.Errorf("create room %s: %w", r, err)
	}
	g, err := mls.CreateGroup(m.suite, m.signer, mls.CreateOptions{
		GroupOptions: m.groupOptions(), GroupID: []byte(r), Extensions: ext,
		Credential: m.credential(), Capabilities: Capabilities(), Lifetime: m.lifetime(),
	})
	if err != nil {
		return "", fmt.Errorf("create room %s: %w", r, err)
	}
	gi, err := g.GroupInfo(mls.GroupInfoOptions{ExternalPub: true})
	if err != nil {
		return "", fmt.Errorf("create room %s: %w", r, err)
	}
	tree, err := wire.Marshal(g.Tree())
	if err != nil {
		return "", fmt.Errorf("create room %s: %w", r, err)
	}
	mr := newMemberRoom(g)
	m.rooms[r] = mr
	err = m.submit(ctx, r, mr, &pendingRequest{
		op: "create room",
		send: func(ctx context.Context) (*proto.UpdateRoomResponse, error) {
			got, err := m.api.CreateRoom(ctx, roomID, gi, tree)
			if err != nil {
				return nil, err
			}
			if got != r {
				return nil, &badAnswerError{fmt.Errorf("the provider created %s, not %s", got, r)}
			}
			return &proto.UpdateRoomResponse{Code: proto.UpdateSuccess}, nil
		},
		accepted: func(context.Context) error { return nil },
		refused:  func() { delete(m.rooms, r) },
	})
	if err != nil {
		return "", err
	}
	return r, nil
}

// roomExtensions are a new room's GroupContext extensions: the base
// policy, what every member must support, and the hub as external sender.
func (m *Member) roomExtensions(ctx context.Context, policy proto.BasePolicy) (mls.Extensions, error) {
	hub, err := m.api.Hub(ctx)
	if err != nil {
		return nil, err
	}
	senders, ok := hub.ExternalSenders[m.suite.ID()]
	if !ok {
		return nil, fmt.Errorf("the provider has no external sender for %s", m.suite.ID())
	}
	rc := room.RequiredCapabilitiesOf(mls.Extensions{policy.Extension()})
	return mls.Extensions{
		policy.Extension(),
		{Type: mls.ExtRequiredCapabilities, Data: wire.MustMarshal(&rc)},
		{Type: mls.ExtExternalSenders, Data: senders},
	}, nil
}

// commit makes a commit of opts (plus the pending proposals an honest
// member covers: room.CommitReferencesWith, which puts first what the hub
// queued and leaves out what would clash with opts' own proposals), with
// external_pub in its GroupInfo, submits it, and merges it once the hub
// accepts it or discards it when the hub refuses.
//
// When the hub refuses such a commit as invalid or not allowed and it
// covered optional proposals (another member's Update, say), the commit is
// made once more with only what the hub queued (room.QueuedReferences),
// which an active member the queue does not remove can always commit: an
// optional proposal the hub will not see committed with this one, for a
// reason the member cannot foresee, does not block the member's own
// change. The optional proposals stay pending for a later commit.
func (m *Member) commit(ctx context.Context, r proto.URI, mr *memberRoom, op string, opts mls.CommitOptions) error {
	given := slices.Clip(opts.References)
	covered := room.CommitReferencesWith(mr.group, opts.Proposals, m.cfg.MaxVector)
	opts.References = append(given, covered...)
	err := m.commitOnce(ctx, r, mr, op, opts)
	var refused *RefusedError
	if !errors.As(err, &refused) || (refused.Code != proto.UpdateInvalidProposal && refused.Code != proto.UpdateNotAllowed) {
		return err
	}
	queued := room.QueuedReferences(mr.group, m.cfg.MaxVector)
	if len(queued) >= len(covered) {
		return err // nothing optional was covered: the refusal is the commit's own
	}
	m.log.InfoContext(ctx, "commit refused while covering optional proposals; committing only the hub's queue", "room", string(r), "op", op, "code", refused.Code, "description", refused.Description)
	opts.References = append(given, queued...)
	return m.commitOnce(ctx, r, mr, op, opts)
}

// commitOnce makes one commit with opts and sends it.
func (m *Member) commitOnce(ctx context.Context, r proto.URI, mr *memberRoom, op string, opts mls.CommitOptions) error {
	opts.GroupInfo.ExternalPub = true
	b, err := mr.group.Commit(opts)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", op, r, err)
	}
	bundle := &CommitBundle{Commit: b.Commit, Welcome: b.Welcome, GroupInfo: b.GroupInfo}
	if m.cfg.FullTree {
		if bundle.RatchetTree, err = wire.Marshal(mr.group.Tree()); err != nil {
			mr.group.DiscardPendingCommit()
			return fmt.Errorf("%s in %s: %w", op, r, err)
		}
	}
	d, err := wire.Marshal(b.Commit)
	if err != nil {
		mr.group.DiscardPendingCommit()
		return fmt.Errorf("%s in %s: %w", op, r, err)
	}
	mr.markSent(digest(d))
	return m.submit(ctx, r, mr, &pendingRequest{
		op:   op,
		send: func(ctx context.Context) (*proto.UpdateRoomResponse, error) { return m.api.Commit(ctx, r, bundle) },
		accepted: func(context.Context) error {
			ended := mr.group.Epoch()
			mr.group.MergePendingCommit()
			// The hub sequenced every message of the ended epoch before
			// this commit, but the stream may not have delivered them
			// yet: the epoch is held until it has (passed, sync.go).
			// HoldEpoch says no only with NoPastEpochs, which holds none.
			mr.group.HoldEpoch(ended)
			mr.pruneSent()
			return nil
		},
		refused: func() {
			mr.group.DiscardPendingCommit()
			delete(mr.sent, digest(d))
		},
	})
}

// AddUsers adds users with their roles: it claims their clients'
// KeyPackages through the room's hub, checks them, and commits a
// ParticipantListPatch with the Adds (and the pending proposals). A user
// none of whose clients could be claimed fails the whole call with a
// *KeyMaterialError before anything is committed.
func (m *Member) AddUsers(ctx context.Context, r proto.URI, users []proto.UserRoles) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	mr, err := m.room(ctx, r)
	if err != nil {
		return fmt.Errorf("add users: %w", err)
	}
	if len(users) == 0 {
		return errors.New("add users: nobody to add")
	}
	req := ClaimRequest{Room: r, CipherSuites: []mls.CipherSuite{mr.group.Suite().ID()}}
	for _, u := range users {
		req.Users = append(req.Users, u.User)
	}
	claim, err := m.api.ClaimKeyMaterial(ctx, req)
	if err != nil {
		return fmt.Errorf("add users to %s: %w", r, err)
	}
	adds, err := m.checkClaim(mr.group, users, claim)
	if err != nil {
		return fmt.Errorf("add users to %s: %w", r, err)
	}
	patch := &proto.ParticipantListPatch{AddUsers: users}
	// The Welcome carries no tree: the new members fetch it by reference
	// from the hub (a full tree would make the Welcome, and the hub's log
	// entry, O(members)).
	return m.commit(ctx, r, mr, "add users", mls.CommitOptions{Proposals: append([]*mls.Proposal{patch.Proposal()}, adds...)})
}

// KeyMaterialError reports users whose KeyPackages could not be claimed.
type KeyMaterialError struct {
	// Users are the failed users' results.
	Users []proto.UserKeyMaterial
}

// Error implements error.
func (e *KeyMaterialError) Error() string {
	var b bytes.Buffer
	b.WriteString("no usable KeyPackage for")
	for i, u := range e.Users {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s (%s)", u.User, u.Status)
	}
	return b.String()
}

// checkClaim turns a claim's answer into Add proposals, checking every
// KeyPackage: valid now, of the group's suite, for a client of the user it
// was claimed for.
func (m *Member) checkClaim(g *mls.Group, users []proto.UserRoles, claim *proto.KeyMaterialResponse) ([]*mls.Proposal, error) {
	var adds []*mls.Proposal
	var failed []proto.UserKeyMaterial
	byUser := map[proto.URI]*proto.UserKeyMaterial{}
	for i := range claim.Users {
		byUser[claim.Users[i].User] = &claim.Users[i]
	}
	for _, u := range users {
		ukm, ok := byUser[u.User]
		if !ok {
			failed = append(failed, proto.UserKeyMaterial{User: u.User, Status: proto.UserUnknown})
			continue
		}
		n := 0
		for _, c := range ukm.Clients {
			if c.Status != proto.ClientSuccess || c.KeyPackage == nil || c.KeyPackage.KeyPackage == nil {
				continue
			}
			kp := c.KeyPackage.KeyPackage
			if err := m.checkKeyPackage(g, u.User, c.Client, kp); err != nil {
				return nil, err
			}
			adds = append(adds, mls.AddProposal(kp))
			n++
		}
		if n == 0 || (ukm.Status != proto.UserSuccess && ukm.Status != proto.UserPartialSuccess) {
			failed = append(failed, *ukm)
		}
	}
	if len(failed) > 0 {
		return nil, &KeyMaterialError{Users: failed}
	}
	return adds, nil
}

func (m *Member) checkKeyPackage(g *mls.Group, user, client proto.URI, kp *mls.KeyPackage) error {
	id := proto.URI(kp.LeafNode.Credential.Identity)
	if kp.LeafNode.Credential.Type != mls.CredentialBasic || id != client {
		return fmt.Errorf("the KeyPackage served for %s names %q", client, id)
	}
	if owner, err := id.UserOf(); err != nil || owner != user {
		return fmt.Errorf("the KeyPackage served for %s belongs to %s, not to a client of the user", client, owner)
	}
	if kp.CipherSuite != g.Suite().ID() {
		return fmt.Errorf("the KeyPackage of %s is for suite %s, the room uses %s", client, kp.CipherSuite, g.Suite().ID())
	}
	if err := kp.Validate(m.now()); err != nil {
		return fmt.Errorf("the KeyPackage of %s: %w", client, err)
	}
	rc := room.RequiredCapabilitiesOf(g.GroupContext().Extensions)
	if err := rc.SatisfiedBy(&kp.LeafNode.Capabilities); err != nil {
		return fmt.Errorf("the KeyPackage of %s cannot join the room: %w", client, err)
	}
	return nil
}

// clientsOf returns the leaves of user's clients in g.
func clientsOf(g *mls.Group, user proto.URI) []mls.LeafIndex {
	var out []mls.LeafIndex
	for l, leaf := range g.Tree().Members() {
		if u, err := proto.URI(leaf.Credential.Identity).UserOf(); err == nil && u == user {
			out = append(out, l)
		}
	}
	return out
}

// RemoveUser removes user from the room: a ParticipantListPatch removing
// it and the Removes of its clients, in one commit. To leave, use Leave.
func (m *Member) RemoveUser(ctx context.Context, r proto.URI, user proto.URI) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if user == m.user {
		return errors.New("remove user: use Leave to remove yourself")
	}
	mr, err := m.room(ctx, r)
	if err != nil {
		return fmt.Errorf("remove user: %w", err)
	}
	patch := &proto.ParticipantListPatch{RemoveUsers: []proto.URI{user}}
	ps := []*mls.Proposal{patch.Proposal()}
	for _, l := range clientsOf(mr.group, user) {
		ps = append(ps, mls.RemoveProposal(l))
	}
	return m.commit(ctx, r, mr, "remove user", mls.CommitOptions{Proposals: ps})
}

// SetRoles replaces user's roles in the room (a ParticipantListPatch
// updating it).
func (m *Member) SetRoles(ctx context.Context, r proto.URI, user proto.URI, roles []proto.Role) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	mr, err := m.room(ctx, r)
	if err != nil {
		return fmt.Errorf("set roles: %w", err)
	}
	patch := &proto.ParticipantListPatch{UpdateUsers: []proto.UserRoles{{User: user, Roles: roles}}}
	return m.commit(ctx, r, mr, "set roles", mls.CommitOptions{Proposals: []*mls.Proposal{patch.Proposal()}})
}

// CommitPending commits the room's pending proposals (for instance another
// user's departure) with a fresh UpdatePath.
func (m *Member) CommitPending(ctx context.Context, r proto.URI) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	mr, err := m.room(ctx, r)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return m.commit(ctx, r, mr, "commit", mls.CommitOptions{ForcePath: true})
}

// Leave proposes this member's departure: a ParticipantListPatch removing
// its user, a SelfRemove, and Removes of the user's other clients in the
// room. The hub queues them, so the next commit by anyone must include
// them; the member stays in the room until then and Sync reports the
// removal.
func (m *Member) Leave(ctx context.Context, r proto.URI) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	mr, err := m.room(ctx, r)
	if err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	// What is already on its way out is not proposed again: the hub
	// refuses a second departure of a leaf or a user (it could not be
	// committed with the first).
	leaving := map[mls.LeafIndex]bool{}
	userLeaving := false
	for _, pp := range mr.group.PendingProposals() {
		switch p := pp.Proposal; {
		case p.Type == mls.ProposalRemove:
			leaving[p.Removed] = true
		case p.Type == mls.ProposalSelfRemove && pp.Sender.Type == mls.SenderMember:
			leaving[mls.LeafIndex(pp.Sender.Index)] = true
		case p.Type == proto.ProposalParticipantListPatch:
			if patch, ok, err := proto.PatchOf(p, m.cfg.MaxVector); err == nil && ok && slices.Contains(patch.RemoveUsers, m.user) {
				userLeaving = true
			}
		}
	}
	var ps []*mls.Proposal
	if !userLeaving {
		ps = append(ps, (&proto.ParticipantListPatch{RemoveUsers: []proto.URI{m.user}}).Proposal())
	}
	if !leaving[mr.group.MyLeaf()] {
		ps = append(ps, mls.SelfRemoveProposal())
	}
	for _, l := range clientsOf(mr.group, m.user) {
		if l != mr.group.MyLeaf() && !leaving[l] {
			ps = append(ps, mls.RemoveProposal(l))
		}
	}
	if len(ps) == 0 {
		return nil // everything is already proposed
	}
	return m.propose(ctx, r, mr, "leave", ps)
}

// propose sends proposals by reference in one request. A refusal restores
// the group as it was, so the refused proposals are not pending.
func (m *Member) propose(ctx context.Context, r proto.URI, mr *memberRoom, op string, ps []*mls.Proposal) error {
	before, err := wire.Marshal(mr.group)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", op, r, err)
	}
	restore := func() {
		g, err := mls.RestoreGroup(before, m.groupOptions())
		if err != nil {
			// Cannot happen: the state was just encoded by this group.
			m.log.Error("restoring the group after a refused proposal", "room", string(r), "err", err)
			return
		}
		mr.group = g
	}
	var msgs []*mls.Message
	var digests []string
	for _, p := range ps {
		msg, err := mr.group.Propose(p)
		if err == nil {
			var d []byte
			if d, err = wire.Marshal(msg); err == nil {
				digests = append(digests, digest(d))
			}
		}
		if err != nil {
			restore()
			return fmt.Errorf("%s in %s: %w", op, r, err)
		}
		msgs = append(msgs, msg)
	}
	for _, d := range digests {
		mr.markSent(d)
	}
	return m.submit(ctx, r, mr, &pendingRequest{
		op:       op,
		send:     func(ctx context.Context) (*proto.UpdateRoomResponse, error) { return m.api.Propose(ctx, r, msgs) },
		accepted: func(context.Context) error { return nil },
		refused: func() {
			restore()
			for _, d := range digests {
				delete(mr.sent, d)
			}
		},
	})
}

// Send encrypts plaintext as an application message whose
// authenticated_data names this client (room.SenderHint) and submits it.
func (m *Member) Send(ctx context.Context, r proto.URI, plaintext []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	mr, err := m.room(ctx, r)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	msg, err := mr.group.Encrypt(plaintext, room.SenderHint(m.client))
	if err != nil {
		return fmt.Errorf("send in %s: %w", r, err)
	}
	d, err := wire.Marshal(msg)
	if err != nil {
		return fmt.Errorf("send in %s: %w", r, err)
	}
	mr.markSent(digest(d))
	return m.submit(ctx, r, mr, &pendingRequest{
		op:       "send",
		send:     func(ctx context.Context) (*proto.UpdateRoomResponse, error) { return m.api.SendMessage(ctx, r, msg) },
		accepted: func(context.Context) error { return nil },
		refused:  func() { delete(mr.sent, digest(d)) },
	})
}

// GroupInfoError reports a refused claimGroupInfo.
type GroupInfoError struct {
	Room   proto.URI
	Status proto.GroupInfoCode
}

// Error implements error.
func (e *GroupInfoError) Error() string {
	return fmt.Sprintf("claim GroupInfo of %s: %s", e.Room, e.Status)
}

// JoinExternal joins a room by external commit: it claims the GroupInfo
// through the client API, commits (covering the epoch's pending
// SelfRemoves, with external_pub in the new GroupInfo), and subscribes to
// the room's messages once the hub accepted.
func (m *Member) JoinExternal(ctx context.Context, r proto.URI) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.rooms[r]; ok {
		return fmt.Errorf("join %s: already a member", r)
	}
	resp, err := m.api.ClaimGroupInfo(ctx, r, m.signer.PublicKey())
	if err != nil {
		return fmt.Errorf("join %s: %w", r, err)
	}
	if resp.Status != proto.GroupInfoSuccess {
		return &GroupInfoError{Room: r, Status: resp.Status}
	}
	gi := resp.GroupInfo.GroupInfo
	if !bytes.Equal(gi.GroupContext.GroupID, []byte(r)) {
		return fmt.Errorf("join %s: the GroupInfo is for group %q", r, gi.GroupContext.GroupID)
	}
	g, b, err := mls.JoinExternal(gi, resp.RatchetTree.Tree, m.signer, mls.ExternalJoinOptions{
		GroupOptions: m.groupOptions(), Credential: m.credential(), Capabilities: Capabilities(),
		PendingSelfRemoves: resp.PendingProposals,
		Commit:             mls.CommitOptions{GroupInfo: mls.GroupInfoOptions{ExternalPub: true}},
	})
	if err != nil {
		return fmt.Errorf("join %s: %w", r, err)
	}
	bundle := &CommitBundle{Commit: b.Commit, GroupInfo: b.GroupInfo}
	if m.cfg.FullTree {
		if bundle.RatchetTree, err = wire.Marshal(g.Tree()); err != nil {
			return fmt.Errorf("join %s: %w", r, err)
		}
	}
	d, err := wire.Marshal(b.Commit)
	if err != nil {
		return fmt.Errorf("join %s: %w", r, err)
	}
	mr := newMemberRoom(g)
	mr.markSent(digest(d))
	m.rooms[r] = mr
	return m.submit(ctx, r, mr, &pendingRequest{
		op:   "external join",
		send: func(ctx context.Context) (*proto.UpdateRoomResponse, error) { return m.api.Commit(ctx, r, bundle) },
		accepted: func(ctx context.Context) error {
			g.MergePendingCommit()
			if err := m.api.Subscribe(ctx, r); err != nil {
				return fmt.Errorf("subscribing to its messages failed (call API().Subscribe again): %w", err)
			}
			return nil
		},
		refused: func() { delete(m.rooms, r) },
	})
}

// ReportAbuse reports an application message Sync returned as abusive to
// the room's hub, disclosing the key and nonce of that message only. The
// hub can verify it only while the room is still in the message's epoch
// (so not for a message that arrived after the commit ending its epoch).
func (m *Member) ReportAbuse(ctx context.Context, ev *Event, reason proto.AbuseType, note string) error {
	if ev == nil || ev.Kind != EventMessage || ev.Message == nil || ev.ContentKey == nil {
		return errors.New("report abuse: only a received application message can be reported")
	}
	abuser, err := ev.Sender.UserOf()
	if err != nil {
		return fmt.Errorf("report abuse: %w", err)
	}
	report := &proto.AbuseReport{
		ReportingUser: m.user, AllegedAbuser: abuser, GroupID: []byte(ev.Room), Epoch: ev.Epoch,
		AllegedAbuserAt: uint32(ev.SenderLeaf),
		Messages:        []proto.AbusiveMessage{{Message: ev.Message, Key: ev.ContentKey, Nonce: ev.ContentNonce}},
		Reason:          reason, Note: note,
	}
	return m.api.ReportAbuse(ctx, ev.Room, report)
}
