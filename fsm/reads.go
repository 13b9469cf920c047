package fsm

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"slices"
	"strings"

	"github.com/mimihub/mimi-hub/mimi/keymaterial"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Reads for the API and the delivery worker. They run under FSM.Read and
// return copies, never references into the state.

// LastAcceptedAt returns the acceptance time (ms) of the last command.
func (s *State) LastAcceptedAt() uint64 { return s.lastAt }

// Domain returns the provider's domain.
func (s *State) Domain() string { return s.cfg.Domain }

// Authenticate reports whether tokenHash is client's token hash and the
// client's user is not suspended. A revoked client has no record.
func (s *State) Authenticate(client proto.URI, tokenHash []byte) bool {
	rec, ok := s.clients[client]
	user, _ := client.UserOf()
	return ok && subtle.ConstantTimeCompare(rec.tokenHash, tokenHash) == 1 && !s.acct.suspended(user)
}

// HasClient reports whether client is registered here.
func (s *State) HasClient(client proto.URI) bool {
	_, ok := s.clients[client]
	return ok
}

// Hosts reports whether the room is hosted here.
func (s *State) Hosts(id proto.URI) bool {
	_, ok := s.rooms[id]
	return ok
}

// GroupInfo answers claimGroupInfo for a hosted room; ok is false when the
// room is not hosted here.
func (s *State) GroupInfo(id proto.URI, from string, req *proto.GroupInfoRequest) (resp *proto.GroupInfoResponse, ok bool) {
	rm, ok := s.rooms[id]
	if !ok {
		return nil, false
	}
	return rm.Apply(&room.ClaimGroupInfo{From: from, Body: req}, 0).GroupInfo, true
}

// WelcomeTree gives a Welcome's recipient the ratchet tree of the epoch
// its Welcome joins (room.Room.WelcomeTree): client, asking through
// provider from (this provider's domain for its own clients), names the
// KeyPackageRef of the Welcome. The view is captured: encode it after the
// read returns. Errors: a NotFound *Error when the room is not hosted
// here, else the room's (room.ErrUnknownWelcome, room.ErrNotAllowed,
// room.ErrTreeGone).
func (s *State) WelcomeTree(id proto.URI, from string, client proto.URI, ref []byte) (*mls.TreeView, error) {
	rm, ok := s.rooms[id]
	if !ok {
		return nil, &Error{Kind: NotFound, Message: fmt.Sprintf("room %s is not hosted here", id)}
	}
	return rm.WelcomeTree(from, client, ref)
}

// RoomParticipant returns user's entry in a hosted room's participant
// list and the providers with member clients, without listing every
// participant (rooms have 100,000). ok is false when the room is not
// hosted here; listed when user is a participant.
func (s *State) RoomParticipant(id, user proto.URI) (p room.Participant, listed bool, providers []string, ok bool) {
	rm, ok := s.rooms[id]
	if !ok {
		return room.Participant{}, false, nil, false
	}
	p, listed = rm.Participant(user)
	return p, listed, rm.Providers(), true
}

// RoomMembers returns the number of member clients of a hosted room.
func (s *State) RoomMembers(id proto.URI) (int, bool) {
	rm, ok := s.rooms[id]
	if !ok {
		return 0, false
	}
	return rm.Members(), true
}

// RoomEncoding returns a hosted room's state as a snapshot holds it
// (room.Restore reads it back): for measuring what a room costs.
func (s *State) RoomEncoding(id proto.URI) ([]byte, bool) {
	rm, ok := s.rooms[id]
	if !ok {
		return nil, false
	}
	return wire.MustMarshal(rm), true
}

// RoomInfo describes a hosted room.
type RoomInfo struct {
	ID           proto.URI
	Epoch        uint64
	Sequence     uint64
	Policy       proto.BasePolicy
	Participants []room.Participant
	Providers    []string
	Members      int
	// TranscriptHash is the confirmed transcript hash of the current
	// epoch: it names the chain of commits that led here, so two readers
	// that see the same epoch and hash saw the same history.
	TranscriptHash []byte
}

// Room describes a hosted room.
func (s *State) Room(id proto.URI) (RoomInfo, bool) {
	rm, ok := s.rooms[id]
	if !ok {
		return RoomInfo{}, false
	}
	return RoomInfo{ID: id, Epoch: rm.Epoch(), Sequence: rm.Sequence(), Policy: rm.Policy(), Participants: rm.Participants(),
		Providers: rm.Providers(), Members: rm.Members(),
		TranscriptHash: rm.Group().GroupContext().ConfirmedTranscriptHash}, true
}

// Stream returns up to limit items of client's stream after seq (its
// inbox and the room messages of its windows, in delivery order), whether
// items after seq were dropped unread, and the stream's last sequence (at
// least the client's cursor).
func (s *State) Stream(client proto.URI, after uint64, limit int) (items []Item, gap bool, last uint64, ok bool) {
	rec, ok := s.clients[client]
	if !ok {
		return nil, false, 0, false
	}
	cs := clientStream{s: s, c: client, rec: rec}
	items, gap, last = cs.read(after, limit)
	for i := range items {
		items[i].Data = bytes.Clone(items[i].Data)
	}
	return items, gap, last, true
}

// PeerQueue is one peer's undelivered outbox items.
type PeerQueue struct {
	Domain string
	Items  []OutItem
}

// Outbox returns every peer's undelivered items, peers sorted, at most
// limit items each.
func (s *State) Outbox(limit int) []PeerQueue {
	var out []PeerQueue
	for _, d := range sortedKeys(s.outbox) {
		q := s.outbox[d].q.items
		if len(q) == 0 {
			continue // kept while the outbox is numbered per queue
		}
		n := min(limit, len(q))
		items := make([]OutItem, n)
		for i := range n {
			items[i] = q[i]
			items[i].Data = bytes.Clone(q[i].Data)
			items[i].Exclude = slices.Clone(q[i].Exclude)
		}
		out = append(out, PeerQueue{Domain: d, Items: items})
	}
	return out
}

// OutboxAfter returns up to limit of domain's waiting items with an ID
// above after, oldest first, and whether anything waits for the peer at
// all (delivered or not yet recorded). It reads only that peer's queue.
// The items share their Data and Exclude with the state, which never
// modifies them in place: callers must not either.
func (s *State) OutboxAfter(domain string, after uint64, limit int) (items []OutItem, waiting bool) {
	q, ok := s.outbox[domain]
	if !ok || len(q.q.items) == 0 {
		return nil, false
	}
	all := q.q.items
	i, _ := slices.BinarySearchFunc(all, after+1, func(it OutItem, id uint64) int {
		switch {
		case it.ID < id:
			return -1
		case it.ID > id:
			return 1
		}
		return 0
	})
	return slices.Clone(all[i:min(len(all), i+limit)]), true
}

// OutboxDomains lists, sorted, the peers something waits for.
func (s *State) OutboxDomains() []string {
	var out []string
	for d, q := range s.outbox {
		if len(q.q.items) > 0 {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// PeerDepth describes one peer's outbox.
type PeerDepth struct {
	// Items and Bytes are what waits for the peer.
	Items int
	Bytes int64
	// Oldest is the enqueue time (ms) of the oldest waiting item.
	Oldest uint64
	// Dropped counts items dropped undelivered because the queue, or all
	// queues together, were full, since the queue was made: a queue is
	// forgotten when it empties, and its count joins
	// Counts.OutboxDroppedGone.
	Dropped uint64
}

// OutboxDepth describes every peer's outbox: once the outbox is numbered
// state-wide (CmdOutboxIDs), only peers something waits for have one.
func (s *State) OutboxDepth() map[string]PeerDepth {
	out := map[string]PeerDepth{}
	for d, q := range s.outbox {
		pd := PeerDepth{Items: len(q.q.items), Bytes: q.bytes, Dropped: q.dropped}
		if len(q.q.items) > 0 {
			pd.Oldest = q.q.items[0].Enqueued
		}
		out[d] = pd
	}
	return out
}

// ConsentPending lists consent requests addressed to a local user.
func (s *State) ConsentPending(user proto.URI) ([]proto.ConsentEntry, error) {
	return s.consent.Pending(user)
}

// ConsentReceived lists grants a local user received.
func (s *State) ConsentReceived(user proto.URI) ([]proto.ConsentEntry, error) {
	return s.consent.Received(user)
}

// ConsentGiven lists the decisions a local user made.
func (s *State) ConsentGiven(user proto.URI) ([]proto.ConsentEntry, error) {
	return s.consent.Given(user)
}

// KeyPackages counts a local client's KeyPackages.
func (s *State) KeyPackages(client proto.URI) (keymaterial.ClientCount, error) {
	return s.keys.Count(client)
}

// Reports returns the abuse reports kept, oldest first.
func (s *State) Reports() []room.Report {
	return slices.Clone(s.reports.items)
}

// Counts summarizes the state for operators.
type Counts struct {
	Rooms, Users, Clients, Streams, Reports int
	OutboxItems                             int
	OutboxBytes                             int64
	// OutboxDroppedGone counts the items dropped undelivered (as
	// PeerDepth.Dropped) from peers' queues that have since emptied and
	// been forgotten: with every PeerDepth.Dropped it makes a count that
	// never goes down.
	OutboxDroppedGone uint64
	// LogEntries and LogBytes are the room messages stored for local
	// readers; InboxItems and InboxBytes the clients' inbox-only items.
	LogEntries int
	LogBytes   int64
	InboxItems int
	InboxBytes int64
	// RetentionDropped and RetentionDroppedBytes count the room-log
	// entries retention (age, per-room and provider-wide bounds) dropped
	// since the state was built (start or last snapshot restore): readers
	// still behind them get a gap instead. Entries every reader had read
	// leave by read trims and are not counted, except when retention on a
	// new message drops entries read since the room's last read trim (an
	// upper bound there; exact at the periodic prune).
	RetentionDropped      uint64
	RetentionDroppedBytes int64
}

// Counts returns the state's sizes.
func (s *State) Counts() Counts {
	c := Counts{Rooms: len(s.rooms), Users: len(s.users), Clients: len(s.clients), Streams: len(s.streams), Reports: len(s.reports.items)}
	for _, q := range s.outbox {
		c.OutboxItems += len(q.q.items)
		c.OutboxBytes += q.bytes
	}
	c.OutboxDroppedGone = s.outDroppedGone
	c.LogEntries, c.LogBytes = s.logStats()
	c.RetentionDropped, c.RetentionDroppedBytes = s.retentionDropped, s.retentionDroppedBytes
	for _, rec := range s.clients {
		c.InboxItems += len(rec.inbox.q.items)
		c.InboxBytes += rec.inbox.bytes
	}
	return c
}

// MaxIdentifierMatches bounds the users an identifier query lists: a
// search matching more is answered ambiguous, with none (refine it).
const MaxIdentifierMatches = 100

// IdentifierQuery searches local users' profiles (seed section 7.10).
// Exact searches (handle, nick, email, phone, claims and vCard fields) are
// ambiguous when several users match; name searches list up to
// MaxIdentifierMatches matches (more are ambiguous). Every query is one
// pass over the users, so the pass does no parsing or allocation for a
// user that does not match.
func (s *State) IdentifierQuery(q *proto.IdentifierRequest) *proto.IdentifierResponse {
	value := strings.TrimSpace(q.Value)
	if value == "" {
		return &proto.IdentifierResponse{Code: proto.QueryNotFound}
	}
	lower := strings.ToLower(value)
	exact := true
	userPrefix := string(proto.UserURI(s.cfg.Domain, "")) // every user here is mimi://{domain}/u/{name}
	lowerBytes := []byte(lower)
	match := func(u proto.URI, rec *userRecord) bool {
		handle := strings.TrimPrefix(string(u), userPrefix)
		has := func(source proto.FieldSource, names []string, eq func([]byte) bool) bool {
			return slices.ContainsFunc(rec.profile, func(f proto.ProfileField) bool {
				return f.Source == source && slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, f.Name) }) && eq(f.Value)
			})
		}
		same := func(v []byte) bool { return bytes.EqualFold(v, []byte(value)) }
		contains := func(v []byte) bool { return containsFold(v, lowerBytes) }
		switch q.Type {
		case proto.SearchHandle:
			return strings.EqualFold(handle, value)
		case proto.SearchNick:
			return has(proto.FieldVCardField, nickFields, same) || has(proto.FieldOIDCStdClaim, nickClaims, same)
		case proto.SearchEmail:
			return has(proto.FieldVCardField, emailFields, same) || has(proto.FieldOIDCStdClaim, emailClaims, same)
		case proto.SearchPhone:
			norm := func(v []byte) string { return strings.Map(phoneDigit, string(v)) }
			want := norm([]byte(value))
			eq := func(v []byte) bool { return want != "" && norm(v) == want }
			return has(proto.FieldVCardField, phoneFields, eq) || has(proto.FieldOIDCStdClaim, phoneClaims, eq)
		case proto.SearchPartialName:
			exact = false
			return has(proto.FieldVCardField, nameFields, contains) || has(proto.FieldOIDCStdClaim, nameClaims, contains)
		case proto.SearchWholeProfile:
			exact = false
			return strings.EqualFold(handle, value) || slices.ContainsFunc(rec.profile, func(f proto.ProfileField) bool { return contains(f.Value) })
		case proto.SearchOIDCStdClaim:
			return has(proto.FieldOIDCStdClaim, []string{q.Field}, same)
		case proto.SearchVCardField:
			return has(proto.FieldVCardField, []string{q.Field}, same)
		}
		return false
	}
	if (q.Type == proto.SearchOIDCStdClaim || q.Type == proto.SearchVCardField) && strings.TrimSpace(q.Field) == "" {
		return &proto.IdentifierResponse{Code: proto.QueryUnsupportedField}
	}
	// One pass in map order, stopping past the bound (no sort of every
	// user per query); the matches alone are sorted.
	var found []proto.URI
	for u, rec := range s.users {
		if match(u, rec) && s.keys.UserStatus(u) == keymaterial.UserActive {
			if found = append(found, u); len(found) > MaxIdentifierMatches || exact && len(found) > 1 {
				return &proto.IdentifierResponse{Code: proto.QueryAmbiguous}
			}
		}
	}
	if len(found) == 0 {
		return &proto.IdentifierResponse{Code: proto.QueryNotFound}
	}
	slices.Sort(found)
	resp := &proto.IdentifierResponse{Code: proto.QuerySuccess, URIs: found}
	for _, u := range found {
		resp.Profiles = append(resp.Profiles, proto.UserProfile{URI: u, Fields: slices.Clone(s.users[u].profile)})
	}
	return resp
}

// The profile fields each search type looks at.
var (
	nickFields, nickClaims   = []string{"NICKNAME"}, []string{"nickname", "preferred_username"}
	emailFields, emailClaims = []string{"EMAIL"}, []string{"email"}
	phoneFields, phoneClaims = []string{"TEL"}, []string{"phone_number"}
	nameFields, nameClaims   = []string{"FN", "N"}, []string{"name", "given_name", "family_name"}
)

// containsFold says whether v, lowercased, contains lower (itself
// lowercase), with no allocation when both are ASCII.
func containsFold(v, lower []byte) bool {
	if !isASCII(v) || !isASCII(lower) {
		return bytes.Contains(bytes.ToLower(v), lower)
	}
outer:
	for i := 0; i+len(lower) <= len(v); i++ {
		for j, c := range lower {
			b := v[i+j]
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			if b != c {
				continue outer
			}
		}
		return true
	}
	return false
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func phoneDigit(r rune) rune {
	if r >= '0' && r <= '9' || r == '+' {
		return r
	}
	return -1
}
