package fsm

import (
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Admit decides on a read of the state what Apply would answer to a
// command without changing anything, so that the cluster answers it at
// once and never logs it: a request id already applied (its first
// result), a command only local clients may send coming from a peer, a
// room that is not hosted here, a message or commit the room refuses at
// once (room.Admit), fanout for a room nobody here follows or that only
// repeats what was delivered, an acknowledgement or (un)subscription that
// changes nothing, and unknown clients. It returns nil when the command
// must go through the log. body is the command's body as given to
// NewCommand. Admit only reads: call it under FSM.Read.
func (s *State) Admit(t CommandType, requestID []byte, peer string, body wire.Encoder) *Result {
	return s.AdmitProposal(&Proposal{Type: t, RequestID: requestID, Peer: peer, Body: body})
}

// AdmitProposal is Admit for a proposal: a credential it carries that is
// no longer valid is refused first, as Apply refuses it.
func (s *State) AdmitProposal(p *Proposal) *Result {
	if r := s.checkCredential(p.Auth); r != nil {
		return r
	}
	t, requestID, peer, body := p.Type, p.RequestID, p.Peer, p.Body
	if len(requestID) > 0 {
		if r, ok := s.dedup.get(requestID); ok {
			return r
		}
	}
	if localOnly(t) && peer != "" {
		return refused(NotAllowed, "%s is for this provider's own clients, not for %s", t, peer)
	}
	if t == CmdOutboxIDs && s.outWide {
		return answerUnchanged(nil)
	}
	if b, ok := body.(*LogLevelBody); ok && t == CmdLogLevel {
		return s.checkLevel(b)
	}
	switch b := body.(type) {
	case *RoomBody:
		return s.admitRoom(t, peer, b)
	case *FanoutBody:
		return s.admitFanout(peer, b)
	case *AckBody:
		rec, ok := s.clients[b.Client]
		if !ok {
			return refused(NotFound, "no client %s", b.Client)
		}
		if min(b.UpTo, s.lastDelivery()) <= rec.cursor {
			return answerUnchanged(nil)
		}
	case *SubscribeBody:
		r, _ := s.checkSubscribe(b)
		return r
	case *UploadBody:
		if _, ok := s.clients[b.Client]; !ok {
			return refused(NotFound, "no client %s", b.Client)
		}
	case *CreateRoomBody:
		if _, ok := s.clients[b.Client]; !ok {
			return refused(NotFound, "no client %s", b.Client)
		}
		if _, ok := s.rooms[b.Room]; ok {
			return refused(Conflict, "room %s exists", b.Room)
		}
	case *RegisterBody:
		if _, ok := s.clients[b.Client]; ok {
			return refused(Conflict, "client %s is already registered", b.Client)
		}
	case *RedeemInviteBody:
		_, r := s.findInvitation(b, s.lastAt)
		return r
	case *PasswordFailureBody:
		return s.checkPasswordFailure(b)
	}
	return nil
}

// localOnly reports whether only the provider's own clients (or the
// provider itself) may send commands of type t.
func localOnly(t CommandType) bool {
	if accountCommand(t) {
		return true
	}
	switch t {
	case CmdRegister, CmdUploadKeyPackages, CmdCreateRoom, CmdRouteKeyPackages, CmdDelivered, CmdAck, CmdSubscribe, CmdPrune, CmdHubKey,
		CmdSetBounds, CmdBatch, CmdDeliveredMany, CmdOutboxIDs, CmdLogLevel:
		return true
	}
	return false
}

// admitRoom decides updateRoom, provisionalMessage and reportAbuse for
// rooms that are not hosted here, and what the room refuses at once.
func (s *State) admitRoom(t CommandType, peer string, b *RoomBody) *Result {
	rm, ok := s.rooms[b.Room]
	if !ok {
		return refused(NotFound, "room %s is not hosted here", b.Room)
	}
	if t == CmdReportAbuse {
		return nil // nothing to decide before the room's rules
	}
	req, r := s.roomRequestOf(t, peer, b)
	if r != nil {
		return r
	}
	out, decided := rm.Admit(req)
	if !decided {
		return nil
	}
	if out.Err != nil {
		return refusedByRoom(out.Err)
	}
	return answerUnchanged(&out.Response)
}

// admitFanout decides fanout that Apply would refuse or drop: from a peer
// that is not the room's hub, for a room hosted here, for a room nobody
// here follows (unless it welcomes a local client), or repeating only
// messages already delivered (by sequence number, or for unnumbered fanout
// by digest).
func (s *State) admitFanout(peer string, b *FanoutBody) *Result {
	id, err := b.Room.Parse()
	if err != nil || id.Kind != proto.KindRoom {
		return refused(Invalid, "%q is not a room URI", b.Room)
	}
	if peer == "" || id.Domain != peer {
		return refused(NotAllowed, "fanout for %s is accepted only from its hub %s, not %q", b.Room, id.Domain, peer)
	}
	if id.Domain == s.cfg.Domain {
		return refused(NotAllowed, "this provider hosts %s", b.Room)
	}
	st, ok := s.streams[b.Room]
	if !ok && !s.welcomesLocal(b.Room, b.Batch) {
		return answerUnchanged(nil)
	}
	if !ok {
		return nil
	}
	if b.FirstSeq == 0 { // unnumbered (seedfanout.go)
		if !st.digests.anyFresh(b.Batch) {
			return answerUnchanged(nil) // every message was taken before
		}
		return nil
	}
	if b.FirstSeq+uint64(len(b.Batch)) <= st.lastSeq+1 {
		return answerUnchanged(nil) // every message is a redelivery
	}
	return nil
}
