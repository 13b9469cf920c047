package httpapi

import (
	"mime"
	"net/http"
	"strings"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// The client API takes the big MLS objects of a room in two forms: JSON
// with base64 fields, and, with Content-Type application/mimi, the same
// TLS encodings the federation uses (an UpdateRoomRequest for a commit or
// proposals, an MLSMessage for a message), read once into a buffer of the
// announced size and decoded in place: no base64, no second copy. A
// client that accepts application/mimi gets claimGroupInfo's answer the
// same way, its tree written piece by piece.

// isMIMIBody reports whether the request's body is application/mimi.
func isMIMIBody(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == mimiContentType
}

// acceptsMIMI reports whether the client asked for application/mimi
// answers.
func acceptsMIMI(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == mimiContentType {
			return true
		}
	}
	return false
}

// roomBodyLimit bounds a commit's or proposals' body for a room of
// members member clients (see Config.RoomBodyPerMember).
func (c *Config) roomBodyLimit(members int) int64 {
	return min(c.MaxLargeRoomBody, c.MaxRoomBody+int64(members)*c.RoomBodyPerMember)
}

// hostedRoomBodyLimit is roomBodyLimit for room id as this node sees it
// now (a stale read: a room grows by at most one commit between the read
// and the apply); MaxRoomBody for a room hosted elsewhere or unknown,
// whose hub applies its own limit.
func hostedRoomBodyLimit(r *http.Request, cfg *Config, b Backend, id proto.URI, local bool) int64 {
	if !local {
		return cfg.MaxRoomBody
	}
	members := 0
	_ = b.Read(r.Context(), false, func(s *fsm.State) error {
		members, _ = s.RoomMembers(id)
		return nil
	})
	return cfg.roomBodyLimit(members)
}

// readUpdateRoom reads a binary updateRoom body (commit or proposals) of
// at most limit bytes. It returns the body too: decoded strictly, it is
// the request's encoding, which the room's command stores as it came.
func (c *clientAPI) readUpdateRoom(w http.ResponseWriter, r *http.Request, limit int64) (*proto.UpdateRoomRequest, []byte, error) {
	body, err := readBody(w, r, limit)
	if err != nil {
		return nil, nil, err
	}
	req := new(proto.UpdateRoomRequest)
	if err := decode(body, req, c.cfg.MaxVector, "UpdateRoomRequest"); err != nil {
		return nil, nil, err
	}
	return req, body, nil
}
