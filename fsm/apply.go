package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/consent"
	"github.com/mimihub/mimi-hub/mimi/keymaterial"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// apply runs one command. A refused command leaves the state unchanged.
func (s *State) apply(c *Command) *Result {
	c.AcceptedAt = max(c.AcceptedAt, s.lastAt)
	if r := s.checkCredential(c.Auth); r != nil {
		return r
	}
	if len(c.RequestID) > 0 {
		if r, ok := s.dedup.get(c.RequestID); ok {
			return r
		}
	}
	res := s.dispatch(c)
	if res.Kind != OK || res.unchanged {
		// Nothing was applied, so nothing is remembered: a retry is a
		// fresh attempt, which is safe exactly because this one did
		// nothing.
		return res
	}
	if !keysUnchanged(c.Type) {
		s.keysEnc, s.consentEnc, s.acctEnc = nil, nil, nil
	}
	s.lastAt = c.AcceptedAt
	if len(c.RequestID) > 0 {
		s.dedup.put(c.RequestID, c.AcceptedAt, s.cfg.DedupWindow, res)
	}
	return res
}

// keysUnchanged reports whether applying a command of type t leaves the
// key material store, the consent book and the accounts as they were (but for a
// Welcome's route, which deliverLocal forgets itself): the hot path of
// messages, acknowledgements and fanout, so that a snapshot under message
// load reuses their encodings. Every other type may change them.
func keysUnchanged(t CommandType) bool {
	switch t {
	case CmdProvisional, CmdAck, CmdSubscribe, CmdDelivered, CmdDeliveredMany, CmdReportAbuse, CmdFanout:
		return true
	}
	return false
}

// body decodes a command body.
func body[T any, P interface {
	*T
	wire.Decoder
}](c *Command, maxVector int) (P, *Result) {
	b := P(new(T))
	if err := proto.Decode(c.Body, b, maxVector); err != nil {
		return nil, refused(Invalid, "%s body: %v", c.Type, err)
	}
	return b, nil
}

// defaultMaxVector bounds decoding when Config.MaxVector is zero.
const defaultMaxVector = 64 << 20

func (s *State) maxVector() int {
	if s.cfg.MaxVector == 0 {
		return defaultMaxVector
	}
	return s.cfg.MaxVector
}

func (s *State) dispatch(c *Command) *Result {
	s.setAuditRules()
	if r, ok := s.dispatchAccounts(c); ok {
		return r
	}
	mv := s.maxVector()
	if localOnly(c.Type) && c.Peer != "" {
		return refused(NotAllowed, "%s is for this provider's own clients, not for %s", c.Type, c.Peer)
	}
	switch c.Type {
	case CmdRegister:
		b, r := body[RegisterBody](c, mv)
		if r != nil {
			return r
		}
		return s.register(b)
	case CmdUploadKeyPackages:
		b, r := body[UploadBody](c, mv)
		if r != nil {
			return r
		}
		return s.upload(b, c.AcceptedAt)
	case CmdCreateRoom:
		b, r := body[CreateRoomBody](c, mv)
		if r != nil {
			return r
		}
		return s.createRoom(b, c.AcceptedAt)
	case CmdUpdateRoom, CmdProvisional, CmdReportAbuse:
		b, r := body[RoomBody](c, mv)
		if r != nil {
			return r
		}
		return s.roomRequest(c, b)
	case CmdRouteKeyPackages:
		b, r := body[RouteBody](c, mv)
		if r != nil {
			return r
		}
		rm, ok := s.rooms[b.Room]
		if !ok {
			return refused(NotFound, "room %s is not hosted here", b.Room)
		}
		if out := s.applyRoom(b.Room, rm, &room.RouteKeyPackages{Routes: b.Routes}, c.AcceptedAt); out.Err != nil {
			return refused(Invalid, "%v", out.Err)
		}
		return success(nil)
	case CmdClaimKeyMaterial:
		b, r := body[ClaimBody](c, mv)
		if r != nil {
			return r
		}
		return s.claim(c, &b.Request)
	case CmdConsent:
		b, r := body[ConsentBody](c, mv)
		if r != nil {
			return r
		}
		return s.consentOp(c, &b.Entry)
	case CmdFanout:
		b, r := body[FanoutBody](c, mv)
		if r != nil {
			return r
		}
		return s.fanout(c, b)
	case CmdDelivered:
		b, r := body[DeliveredBody](c, mv)
		if r != nil {
			return r
		}
		return s.deliveredMany(&DeliveredManyBody{Marks: []DeliveredBody{*b}})
	case CmdDeliveredMany:
		b, r := body[DeliveredManyBody](c, mv)
		if r != nil {
			return r
		}
		return s.deliveredMany(b)
	case CmdAck:
		b, r := body[AckBody](c, mv)
		if r != nil {
			return r
		}
		return s.ack(b)
	case CmdSubscribe:
		b, r := body[SubscribeBody](c, mv)
		if r != nil {
			return r
		}
		return s.subscribe(b)
	case CmdPrune:
		s.keys.Prune(c.AcceptedAt / 1000)
		s.sweepLogs(c.AcceptedAt)
		s.acct.prunePasswordFailures(c.AcceptedAt)
		return success(nil)
	case CmdHubKey:
		b, r := body[HubKeyBody](c, mv)
		if r != nil {
			return r
		}
		return s.setHubKey(b)
	case CmdRemoveClients:
		b, r := body[RemoveClientsBody](c, mv)
		if r != nil {
			return r
		}
		return s.removeClients(c, b)
	case CmdSetBounds:
		b, r := body[BoundsBody](c, mv)
		if r != nil {
			return r
		}
		return s.setBounds(b)
	case CmdOutboxIDs:
		return s.numberOutboxStateWide()
	}
	return refused(Invalid, "unknown command type %d", c.Type)
}

// localClient checks uri names a client of a local user.
func (s *State) localClient(uri proto.URI) (proto.Identifier, *Result) {
	id, err := uri.Parse()
	if err != nil || id.Kind != proto.KindClient {
		return id, refused(Invalid, "%q is not a client URI", uri)
	}
	if id.Domain != s.cfg.Domain {
		return id, refused(NotAllowed, "client %s is not of %s", uri, s.cfg.Domain)
	}
	return id, nil
}

func (s *State) register(b *RegisterBody) *Result {
	id, r := s.localClient(b.Client)
	if r != nil {
		return r
	}
	if len(b.TokenHash) != 32 {
		return refused(Invalid, "token hash is %d bytes, want 32 (SHA-256)", len(b.TokenHash))
	}
	if _, ok := s.clients[b.Client]; ok {
		return refused(Conflict, "client %s is already registered", b.Client)
	}
	user := proto.UserURI(id.Domain, id.User)
	switch s.keys.UserStatus(user) {
	case keymaterial.UserDeleted:
		return refused(NotAllowed, "user %s was deleted", user)
	case keymaterial.UserActive:
		if cs, _ := s.keys.Clients(user); len(cs) >= s.keys.Limits().MaxClientsPerUser {
			return refused(Limit, "user %s has %d clients, the most allowed", user, len(cs))
		}
	default:
		if err := s.keys.AddUser(user); err != nil {
			return refused(Invalid, "%v", err)
		}
		s.users[user] = &userRecord{}
		s.acct.noteUser(user)
	}
	if err := s.keys.AddClient(b.Client); err != nil {
		return refused(Invalid, "%v", err) // unreachable after the checks above
	}
	if len(b.Profile) > 0 {
		s.users[user].profile = b.Profile
	}
	s.clients[b.Client] = &clientRecord{tokenHash: b.TokenHash}
	return success(nil)
}

func (s *State) upload(b *UploadBody, at uint64) *Result {
	if _, ok := s.clients[b.Client]; !ok {
		return refused(NotFound, "no client %s", b.Client)
	}
	kps := make([]*mls.KeyPackage, len(b.KeyPackages))
	for i, m := range b.KeyPackages {
		kps[i] = m.KeyPackage
	}
	if err := s.keys.Upload(b.Client, kps, at/1000); err != nil {
		return refused(kindOfKeys(err), "%v", err)
	}
	return success(nil)
}

func kindOfKeys(err error) ErrorKind {
	switch {
	case errors.Is(err, keymaterial.ErrLimit):
		return Limit
	case errors.Is(err, keymaterial.ErrUnknownClient), errors.Is(err, keymaterial.ErrUnknownUser):
		return NotFound
	case errors.Is(err, keymaterial.ErrDuplicateKeyPackage), errors.Is(err, keymaterial.ErrClientExists), errors.Is(err, keymaterial.ErrUserExists):
		return Conflict
	case errors.Is(err, keymaterial.ErrNotLocal), errors.Is(err, keymaterial.ErrUserDeleted):
		return NotAllowed
	}
	return Invalid
}

func (s *State) createRoom(b *CreateRoomBody, at uint64) *Result {
	if _, ok := s.clients[b.Client]; !ok {
		return refused(NotFound, "no client %s", b.Client)
	}
	if _, ok := s.rooms[b.Room]; ok {
		return refused(Conflict, "room %s exists", b.Room)
	}
	user, _ := b.Client.UserOf()
	rm, err := room.Create(s.roomConfig(), room.CreateRequest{Room: b.Room, Creator: user, GroupInfo: b.GroupInfo.GroupInfo, Tree: b.Tree}, at)
	if err != nil {
		return refusedByRoom(err)
	}
	if !slices.Contains(rm.Clients(user), b.Client) {
		return refused(Invalid, "the creating client %s is not in the room's group", b.Client)
	}
	s.rooms[b.Room] = rm
	st := s.stream(b.Room, s.cfg.Domain)
	if r := s.subscribeClient(b.Client, st); r != nil {
		delete(s.rooms, b.Room)
		s.dropIdleStream(st)
		return r
	}
	return success(nil)
}

// roomRequest runs updateRoom, provisionalMessage or reportAbuse on a hosted
// room and dispatches its effects.
func (s *State) roomRequest(c *Command, b *RoomBody) *Result {
	rm, ok := s.rooms[b.Room]
	if !ok {
		return refused(NotFound, "room %s is not hosted here", b.Room)
	}
	req, r := s.roomRequestOf(c.Type, c.Peer, b)
	if r != nil {
		return r
	}
	if u, ok := req.(*room.UpdateRoom); ok {
		u.Verified = c.Verified
	}
	out := s.applyRoom(b.Room, rm, req, c.AcceptedAt)
	if out.Err != nil {
		return refusedByRoom(out.Err)
	}
	if out.Report != nil {
		s.keepReport(*out.Report)
		return success(nil)
	}
	if out.Response.Code != proto.UpdateSuccess && len(out.Effects) == 0 || out.Repeat {
		return answerUnchanged(&out.Response) // a MIMI-level refusal, or a message accepted already
	}
	if _, local := s.clients[out.Joined]; local {
		// The joiner follows the room from its own commit on. At its
		// subscription cap it joins without following.
		s.subscribeClient(out.Joined, s.stream(b.Room, s.cfg.Domain))
	}
	s.dispatchEffects(b.Room, out.Effects, c.AcceptedAt)
	return success(&out.Response)
}

// refusedByRoom turns a room's refusal of a request into a result.
func refusedByRoom(err error) *Result {
	if errors.Is(err, room.ErrNotAllowed) {
		return refused(NotAllowed, "%v", err)
	}
	return refused(Invalid, "%v", err)
}

// roomRequestOf decodes a room command's MIMI request: an updateRoom,
// provisionalMessage or reportAbuse from peer (this provider when empty).
func (s *State) roomRequestOf(t CommandType, peer string, b *RoomBody) (room.Request, *Result) {
	from := peer
	if from == "" {
		from = s.cfg.Domain
	}
	switch t {
	case CmdUpdateRoom:
		u, ok := b.Decoded.(*proto.UpdateRoomRequest)
		if !ok {
			u = new(proto.UpdateRoomRequest)
			if err := proto.Decode(b.Request, u, s.maxVector()); err != nil {
				return nil, refused(Invalid, "updateRoom body: %v", err)
			}
		}
		return &room.UpdateRoom{From: from, Body: u}, nil
	case CmdProvisional:
		m, ok := b.Decoded.(*mls.Message)
		if !ok {
			m = new(mls.Message)
			if err := proto.Decode(b.Request, m, s.maxVector()); err != nil {
				return nil, refused(Invalid, "provisionalMessage body: %v", err)
			}
		}
		return &room.ProvisionalMessage{From: from, Message: m, Raw: b.Request}, nil
	case CmdReportAbuse:
		rep, ok := b.Decoded.(*proto.AbuseReport)
		if !ok {
			rep = new(proto.AbuseReport)
			if err := proto.Decode(b.Request, rep, s.maxVector()); err != nil {
				return nil, refused(Invalid, "reportAbuse body: %v", err)
			}
		}
		return &room.ReportAbuse{From: from, Body: rep}, nil
	}
	return nil, refused(Invalid, "%s is not a room command", t)
}

// dispatchEffects delivers a hosted room's accepted messages: to local
// clients at once, to peers through the outbox.
// A message for several peers is encoded once: every peer's item shares
// the bytes (never modified in place), and a snapshot stores them once
// (snapshot.go, recPayload).
func (s *State) dispatchEffects(id proto.URI, effects []room.Effect, at uint64) {
	for _, e := range effects {
		var data []byte
		for _, rc := range e.To {
			if rc.Domain == s.cfg.Domain {
				s.deliverLocal(s.stream(id, s.cfg.Domain), e.Seq, &e.Fanout, e.Raw, rc.Exclude, at)
				continue
			}
			if data == nil {
				data = fanoutEncoding(&e)
			}
			s.enqueue(rc.Domain, OutItem{Kind: OutFanout, Room: id, Seq: e.Seq, Data: data, Exclude: rc.Exclude, Enqueued: at})
		}
	}
}

// stream returns the stream of a room, creating it.
func (s *State) stream(id proto.URI, hub string) *roomStream {
	st := s.streams[id]
	if st == nil {
		st = newRoomStream(id, hub)
		s.streams[id] = st
	}
	return st
}

// applyRoom applies a request that may change a hosted room. Every
// change of a room must go through it: it forgets the room's frozen copy,
// which the next snapshot would otherwise encode instead of the room
// (room.Frozen; checked by the fsm tests' apply helper).
func (s *State) applyRoom(id proto.URI, rm *room.Room, req room.Request, at uint64) room.Outcome {
	delete(s.frozen, id)
	return rm.Apply(req, at)
}

// fanoutEncoding returns an effect's FanoutMessage encoding: the message's
// own encoding, when the request carried it, and the timestamp.
func fanoutEncoding(e *room.Effect) []byte {
	if e.Raw == nil {
		return wire.MustMarshal(&e.Fanout)
	}
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, len(e.Raw)+8), e.Raw...), e.Fanout.Timestamp)
}

// deliverLocal delivers one fanout message of a room to local clients at
// time now: a Welcome into the inboxes of the clients whose KeyPackages it
// names (who then follow the room), anything else once into the room's
// log for the clients following it but the excluded. raw, when not nil,
// is the message's encoding; it is copied (it may alias a whole log
// entry, which the room's log must not keep alive).
func (s *State) deliverLocal(st *roomStream, seq uint64, fm *proto.FanoutMessage, raw []byte, exclude []proto.URI, now uint64) {
	data := bytes.Clone(raw)
	if data == nil {
		data = wire.MustMarshal(fm.Message)
	}
	if fm.Message.WireFormat == mls.WireWelcome {
		for _, sec := range fm.Message.Welcome.Secrets {
			client, ok := s.keys.RouteWelcome(sec.NewMember)
			if !ok {
				continue
			}
			s.keys.ForgetRoute(sec.NewMember)
			s.keysEnc = nil
			if rec, ok := s.clients[client]; ok {
				rec.inbox.push(Item{Seq: s.takeSeq(), Kind: ItemWelcome, Room: st.id, HubSeq: seq, At: fm.Timestamp, Data: data}, s.cfg.InboxLimit, s.cfg.InboxBytes)
				// At its subscription cap the client gets the Welcome but
				// does not follow the room.
				s.subscribeClient(client, st)
			}
		}
	} else if st.deliverable(exclude) {
		ex := slices.Clone(exclude)
		slices.Sort(ex)
		s.appendLog(st, logEntry{seq: s.takeSeq(), hubSeq: seq, at: fm.Timestamp, stored: now, data: data, exclude: slices.Compact(ex)})
	}
	st.lastSeq = max(st.lastSeq, seq)
}

// fanout receives a batch from a room's hub. Fanout that admitFanout
// decides (a peer that is not the hub, a room nobody here follows, only
// redeliveries) leaves no trace: a peer must not grow this provider's
// state with rooms that nobody here follows.
func (s *State) fanout(c *Command, b *FanoutBody) *Result {
	if r := s.admitFanout(c.Peer, b); r != nil {
		return r
	}
	id, _ := b.Room.Parse()
	st := s.stream(b.Room, id.Domain)
	if b.FirstSeq == 0 {
		r := s.unnumberedFanout(st, b, c.AcceptedAt)
		s.dropIdleStream(st)
		return r
	}
	if st.lastSeq > 0 && b.FirstSeq > st.lastSeq+1 {
		st.gaps++
	}
	for i := range b.Batch {
		seq := b.FirstSeq + uint64(i)
		if seq <= st.lastSeq {
			continue // a redelivery
		}
		s.deliverLocal(st, seq, &b.Batch[i], nil, b.Exclude, c.AcceptedAt)
	}
	s.dropIdleStream(st)
	return success(nil)
}

// welcomesLocal reports whether a fanout batch holds a Welcome that
// deliverLocal would hand to a local client.
func (s *State) welcomesLocal(batch proto.FanoutBatch) bool {
	for i := range batch {
		m := batch[i].Message
		if m == nil || m.WireFormat != mls.WireWelcome {
			continue
		}
		for _, sec := range m.Welcome.Secrets {
			if c, ok := s.keys.RouteWelcome(sec.NewMember); ok {
				if _, ok := s.clients[c]; ok {
					return true
				}
			}
		}
	}
	return false
}

func (s *State) subscribe(b *SubscribeBody) *Result {
	if r, decided := s.checkSubscribe(b); decided {
		return r
	}
	st := s.streams[b.Room]
	if !b.Subscribe {
		s.unsubscribeClient(b.Client, st)
		return success(nil)
	}
	id, _ := b.Room.Parse()
	st = s.stream(b.Room, id.Domain)
	if r := s.subscribeClient(b.Client, st); r != nil {
		s.dropIdleStream(st)
		return r
	}
	return success(nil)
}

// checkSubscribe decides a (un)subscription that is refused or changes
// nothing; decided is false when it must be applied.
func (s *State) checkSubscribe(b *SubscribeBody) (r *Result, decided bool) {
	rec, ok := s.clients[b.Client]
	if !ok {
		return refused(NotFound, "no client %s", b.Client), true
	}
	id, err := b.Room.Parse()
	if err != nil || id.Kind != proto.KindRoom {
		return refused(Invalid, "%q is not a room URI", b.Room), true
	}
	st := s.streams[b.Room]
	if subscribed := st != nil && st.subscribed(b.Client); subscribed == b.Subscribe {
		return answerUnchanged(nil), true
	}
	if !b.Subscribe {
		return nil, false
	}
	if rm, hosted := s.rooms[b.Room]; hosted {
		user, _ := b.Client.UserOf()
		if !slices.Contains(rm.Clients(user), b.Client) {
			return refused(NotAllowed, "%s is not a member of %s", b.Client, b.Room), true
		}
	}
	if _, has := slices.BinarySearch(rec.rooms, b.Room); !has && len(rec.rooms) >= s.cfg.MaxSubscriptions {
		return refused(Limit, "client %s follows %d rooms, the most allowed", b.Client, len(rec.rooms)), true
	}
	return nil, false
}

// ack moves a client's cursor: it has read its stream up to b.UpTo (at
// most the last delivery).
func (s *State) ack(b *AckBody) *Result {
	rec, ok := s.clients[b.Client]
	if !ok {
		return refused(NotFound, "no client %s", b.Client)
	}
	upTo := min(b.UpTo, s.lastDelivery())
	if upTo <= rec.cursor {
		return answerUnchanged(nil)
	}
	rec.cursor = upTo
	rec.inbox.ack(upTo)
	s.closeFinishedWindows(b.Client, rec)
	return success(nil)
}

// claim answers a key material claim on local users.
func (s *State) claim(c *Command, req *proto.KeyMaterialRequest) *Result {
	from := c.Peer
	if from == "" {
		from = s.cfg.Domain
	}
	// A claim comes from the requester's provider, or from the hub of the
	// room it names, which relays claims for its rooms (seed section 7.3).
	requester, err := req.RequestingUser.Domain()
	if err != nil {
		return refused(Invalid, "requesting user %q: %v", req.RequestingUser, err)
	}
	if hub, _ := req.Room.Domain(); from != requester && (req.Room == "" || from != hub) {
		return refused(NotAllowed, "%s may not claim on behalf of %s", from, req.RequestingUser)
	}
	resp, claimed, err := s.keys.Claim(req, s.consentCheck(from, requester), c.AcceptedAt/1000)
	if err != nil {
		return refused(kindOfKeys(err), "%v", err)
	}
	// A claim for a room hosted here routes its Welcome to this provider.
	if rm, hosted := s.rooms[req.Room]; hosted && len(claimed) > 0 {
		routes := make([]room.Route, len(claimed))
		for i, cl := range claimed {
			routes[i] = room.Route{Ref: cl.Ref, Domain: s.cfg.Domain}
		}
		s.applyRoom(req.Room, rm, &room.RouteKeyPackages{Routes: routes}, c.AcceptedAt)
	}
	return success(resp)
}

// consentOp applies a consent operation and tells the users concerned.
func (s *State) consentOp(c *Command, e *proto.ConsentEntry) *Result {
	// A grant's KeyPackages must be usable: the book checks their form, the
	// FSM their signatures and lifetimes at the command's time.
	for i, m := range e.KeyPackages {
		if err := m.KeyPackage.Validate(c.AcceptedAt / 1000); err != nil {
			return refused(Invalid, "grant KeyPackage %d: %v", i, err)
		}
	}
	if c.Peer == "" {
		out, err := s.consent.ApplyLocal(*e)
		if err != nil {
			return refused(kindOfConsent(err), "%v", err)
		}
		for _, o := range out {
			kind := OutRequestConsent
			if o.Primitive == proto.UpdateConsent {
				kind = OutUpdateConsent
			}
			s.enqueue(o.Domain, OutItem{Kind: kind, Data: wire.MustMarshal(&o.Entry), Enqueued: c.AcceptedAt})
		}
		if len(out) == 0 {
			s.notifyConsent(e, c.AcceptedAt) // both users are local
		}
		return success(nil)
	}
	local := e.Target
	if e.Operation == proto.ConsentGrant || e.Operation == proto.ConsentRevoke {
		local = e.Requester
	}
	if s.keys.UserStatus(local) != keymaterial.UserActive {
		return refused(NotFound, "no user %s here", local)
	}
	if err := s.consent.ApplyRemote(c.Peer, *e); err != nil {
		return refused(kindOfConsent(err), "%v", err)
	}
	s.notifyConsent(e, c.AcceptedAt)
	return success(nil)
}

// notifyConsent puts a request into the local target's streams and a grant
// into the local requester's. Revokes and cancels are not announced.
func (s *State) notifyConsent(e *proto.ConsentEntry, at uint64) {
	var user proto.URI
	switch e.Operation {
	case proto.ConsentRequest:
		user = e.Target
	case proto.ConsentGrant:
		user = e.Requester
	default:
		return
	}
	cs, err := s.keys.Clients(user)
	if err != nil {
		return
	}
	data := wire.MustMarshal(e)
	var room proto.URI
	if e.Room != nil {
		room = *e.Room
	}
	for _, c := range cs {
		// Anyone may send a user consent operations, with no KeyPackage or
		// room to spend, so a notice never pushes older items (Welcomes)
		// out: it goes only into an inbox less than half full, and is
		// otherwise left out. The book keeps the request or grant itself
		// (GET /v1/consent), so a notice left out loses nothing.
		it := Item{Kind: ItemConsent, Room: room, At: at, Data: data}
		if rec, ok := s.clients[c]; ok && (!s.auditRules() || rec.inbox.fits(it.size(), s.cfg.InboxLimit/2, s.cfg.InboxBytes/2)) {
			it.Seq = s.takeSeq()
			rec.inbox.push(it, s.cfg.InboxLimit, s.cfg.InboxBytes)
		}
	}
}

func kindOfConsent(err error) ErrorKind {
	switch {
	case errors.Is(err, consent.ErrLimit):
		return Limit
	case errors.Is(err, consent.ErrNotLocal), errors.Is(err, consent.ErrWrongPeer):
		return NotAllowed
	}
	return Invalid
}
