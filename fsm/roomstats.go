package fsm

import "github.com/mimihub/mimi-hub/mimi/proto"

// RoomSize is a hosted room's size and activity, for operators.
type RoomSize struct {
	ID proto.URI
	// Members is the number of clients in the room's MLS group.
	Members int
	// Sequence is the number of messages the hub has sequenced in the
	// room since it was created.
	Sequence uint64
	Epoch    uint64
}

// RoomSizes lists every hosted room's size, sorted by room ID. It walks
// every room: callers on a hot path cache it.
func (s *State) RoomSizes() []RoomSize {
	out := make([]RoomSize, 0, len(s.rooms))
	for _, id := range sortedKeys(s.rooms) {
		rm := s.rooms[id]
		out = append(out, RoomSize{ID: id, Members: rm.Group().Tree().NumMembers(), Sequence: rm.Sequence(), Epoch: rm.Epoch()})
	}
	return out
}
