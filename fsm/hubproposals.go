package fsm

import (
	"bytes"
	"errors"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Hub-initiated proposals (seed section 5: "any action initiated by a
// server"). The hub signs its own proposals as an external sender; its keys
// derive from one secret in the replicated state, drawn at random by the
// node that proposes CmdHubKey (outside Apply) and set once for the life of
// the provider, so every replica signs the same bytes.

// HubKeyBody sets the hub's external-sender secret (CmdHubKey). A second
// one is answered unchanged: the first secret stays.
type HubKeyBody struct {
	Secret []byte // room.HubSecretSize random bytes
}

// EncodeTLS writes the body.
func (b *HubKeyBody) EncodeTLS(w *wire.Writer) { w.Opaque(b.Secret) }

// DecodeTLS reads the body.
func (b *HubKeyBody) DecodeTLS(r *wire.Reader) { r.Opaque(&b.Secret) }

// RemoveClientsBody removes clients from rooms with the hub's own Remove
// proposals (CmdRemoveClients).
//
// From this provider (no Peer): Clients are local clients (a revoked
// device); Room is empty, meaning every room they are in. In rooms hosted
// here the hub queues its Removes for the next commit; for rooms hosted
// elsewhere that the clients follow, the room's hub is asked through the
// outbox (POST /removeClients/{roomId}, DECISIONS.md item 27). The clients
// stop receiving every room's messages at once.
//
// From a peer (Peer set, the /removeClients endpoint): Room is a room
// hosted here and Clients are the peer's own clients in it.
type RemoveClientsBody struct {
	Room    proto.URI
	Clients []proto.URI
}

// EncodeTLS writes the body.
func (b *RemoveClientsBody) EncodeTLS(w *wire.Writer) {
	b.Room.EncodeTLS(w)
	writeURIs(w, b.Clients)
}

// DecodeTLS reads the body.
func (b *RemoveClientsBody) DecodeTLS(r *wire.Reader) {
	b.Room.DecodeTLS(r)
	b.Clients = readURIs(r)
}

// RemoveClientsResult is the body of a CmdRemoveClients result: which rooms
// took the hub's proposals, which are hosted here but cannot (created before
// the hub had keys: their group does not list it as an external sender),
// and which hubs elsewhere were asked.
type RemoveClientsResult struct {
	Proposed []proto.URI
	Unable   []proto.URI
	Asked    []proto.URI
}

// EncodeTLS writes the result.
func (b *RemoveClientsResult) EncodeTLS(w *wire.Writer) {
	writeURIs(w, b.Proposed)
	writeURIs(w, b.Unable)
	writeURIs(w, b.Asked)
}

// DecodeTLS reads the result.
func (b *RemoveClientsResult) DecodeTLS(r *wire.Reader) {
	b.Proposed = readURIs(r)
	b.Unable = readURIs(r)
	b.Asked = readURIs(r)
}

// maxRemoveClients bounds the clients of one CmdRemoveClients.
const maxRemoveClients = 1000

// roomConfig is the configuration of hosted rooms, with the hub's keys
// once they are set.
func (s *State) roomConfig() room.Config {
	c := s.cfg.roomConfig()
	c.Keys = s.hubKeys
	return c
}

// setHubKey applies CmdHubKey.
func (s *State) setHubKey(b *HubKeyBody) *Result {
	if s.hubSecret != nil {
		return answerUnchanged(nil) // set once; the first secret stays
	}
	keys, err := room.NewHubKeys(s.cfg.Domain, b.Secret)
	if err != nil {
		return refused(Invalid, "%v", err)
	}
	s.hubSecret, s.hubKeys = bytes.Clone(b.Secret), keys
	for _, id := range sortedKeys(s.rooms) {
		delete(s.frozen, id) // a changed room (applyRoom)
		s.rooms[id].SetHubKeys(keys)
	}
	return success(nil)
}

// removeClients applies CmdRemoveClients.
func (s *State) removeClients(c *Command, b *RemoveClientsBody) *Result {
	if len(b.Clients) == 0 || len(b.Clients) > maxRemoveClients {
		return refused(Invalid, "removeClients names %d clients; 1 to %d", len(b.Clients), maxRemoveClients)
	}
	if c.Peer != "" {
		return s.peerRemoveClients(c, b)
	}
	if b.Room != "" {
		return refused(Invalid, "a local removeClients covers every room; it names none")
	}
	for _, cl := range b.Clients {
		if _, r := s.localClient(cl); r != nil {
			return r
		}
	}
	res := &RemoveClientsResult{}
	// First the streams: a revoked client receives nothing more, not even
	// the hub's Remove of itself.
	for _, id := range sortedKeys(s.streams) {
		st := s.streams[id]
		var followers []proto.URI
		for _, cl := range b.Clients {
			if _, has := st.window(cl); has {
				followers = append(followers, cl)
				// Not even what is already in the log: the window goes.
				st.dropWindow(cl)
				s.forgetRoom(cl, st)
			}
		}
		if len(followers) == 0 || st.hub == s.cfg.Domain {
			continue
		}
		res.Asked = append(res.Asked, id)
		s.enqueue(st.hub, OutItem{Kind: OutRemoveClients, Room: id, Data: wire.MustMarshal(&proto.RemoveClientsRequest{Clients: followers}), Enqueued: c.AcceptedAt})
	}
	for _, id := range sortedKeys(s.rooms) {
		rm := s.rooms[id]
		var members []proto.URI
		for _, cl := range b.Clients {
			if user, _ := cl.UserOf(); slices.Contains(rm.Clients(user), cl) {
				members = append(members, cl)
			}
		}
		if len(members) == 0 {
			continue
		}
		out := s.applyRoom(id, rm, &room.RemoveClients{From: s.cfg.Domain, Clients: members}, c.AcceptedAt)
		if out.Err != nil {
			res.Unable = append(res.Unable, id)
			continue
		}
		res.Proposed = append(res.Proposed, id)
		s.dispatchEffects(id, out.Effects, c.AcceptedAt)
	}
	return success(res)
}

// peerRemoveClients applies a peer's /removeClients for a room hosted here.
func (s *State) peerRemoveClients(c *Command, b *RemoveClientsBody) *Result {
	rm, ok := s.rooms[b.Room]
	if !ok {
		return refused(NotFound, "room %s is not hosted here", b.Room)
	}
	out := s.applyRoom(b.Room, rm, &room.RemoveClients{From: c.Peer, Clients: b.Clients}, c.AcceptedAt)
	switch {
	case errors.Is(out.Err, room.ErrNotAllowed):
		return refused(NotAllowed, "%v", out.Err)
	case out.Err != nil:
		return refused(Invalid, "%v", out.Err)
	case len(out.Effects) == 0:
		return answerUnchanged(nil) // nothing to remove: none are members, or all are leaving
	}
	s.dispatchEffects(b.Room, out.Effects, c.AcceptedAt)
	return success(&RemoveClientsResult{Proposed: []proto.URI{b.Room}})
}

// HubSenders returns the hub's external sender for each supported cipher
// suite; false until CmdHubKey has set the hub's secret.
func (s *State) HubSenders() ([]room.SuiteSender, bool) {
	if s.hubKeys == nil {
		return nil, false
	}
	return s.hubKeys.Senders(), true
}

// RequiredCapabilities returns what a KeyPackage must support to be added
// to a room hosted here (seed section 7.3: claims for it ask for this).
func (s *State) RequiredCapabilities(id proto.URI) (mls.RequiredCapabilities, bool) {
	rm, ok := s.rooms[id]
	if !ok {
		return mls.RequiredCapabilities{}, false
	}
	return rm.RequiredCapabilities(), true
}
