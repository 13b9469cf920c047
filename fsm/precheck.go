package fsm

import (
	"bytes"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
)

// Precheck is a command's signature checks, made by the node that
// receives it before it is proposed, on any core (room.Precheck): State.
// Precheck takes them under FSM.Read, Run makes them without the lock.
// The record Run returns goes into the command (Command.Verified) and
// lets every replica's Apply skip the checks it covers while the room is
// still at the epoch and transcript hash it names (DESIGN.md).
type Precheck struct {
	room       proto.URI
	epoch      uint64
	transcript []byte
	check      *room.Precheck
}

// Precheck returns the signature checks of an updateRoom commit for a
// room hosted here, or nil when there are none to make ahead. Call it
// under FSM.Read, after Admit found nothing to answer.
func (s *State) Precheck(p *Proposal) *Precheck {
	b, ok := p.Body.(*RoomBody)
	if p.Type != CmdUpdateRoom || !ok {
		return nil
	}
	rm, ok := s.rooms[b.Room]
	if !ok {
		return nil
	}
	req, r := s.roomRequestOf(p.Type, p.Peer, b)
	if r != nil {
		return nil
	}
	c := rm.Precheck(req)
	if c == nil {
		return nil
	}
	return &Precheck{room: b.Room, epoch: rm.Epoch(), transcript: bytes.Clone(rm.Group().GroupContext().ConfirmedTranscriptHash), check: c}
}

// Run makes the checks: it returns the record for the command, or, when
// the commit's own signature does not verify, the result Apply gives
// while the room is at the state the checks were taken at (Current).
func (pc *Precheck) Run() (*mls.Verified, *Result) {
	v, out := pc.check.Run()
	if out != nil {
		return nil, answerUnchanged(&out.Response)
	}
	return v, nil
}

// Current reports whether the room is still at the epoch and transcript
// hash the checks were taken at. Call it under FSM.Read.
func (pc *Precheck) Current(s *State) bool {
	rm, ok := s.rooms[pc.room]
	return ok && rm.Epoch() == pc.epoch && bytes.Equal(rm.Group().GroupContext().ConfirmedTranscriptHash, pc.transcript)
}
