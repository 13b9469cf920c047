package proto

import "github.com/mimihub/mimi-hub/mimi/wire"

// RemoveClients names the extension primitive below. Its value is outside
// the seed's MimiPrimitive range, and directories never list it.
const RemoveClients Primitive = 200

// RemoveClientsPath is the path of an extension endpoint (not in the seed,
// DECISIONS.md item 27): a provider asks a room's hub to remove some of its
// own clients from the room with the hub's own Remove proposals (when it
// revoked their devices). It is not listed in the directory, whose
// primitive enum the seed closes; peers reach it under their base URL.
const RemoveClientsPath = "/removeClients/{roomId}"

// RemoveClientsRequest is the body of POST /removeClients/{roomId}: clients
// of the requesting provider (and only of it) to take out of the room.
type RemoveClientsRequest struct {
	Clients []URI
}

// EncodeTLS writes the request.
func (q *RemoveClientsRequest) EncodeTLS(w *wire.Writer) { writeURIs(w, q.Clients) }

// DecodeTLS reads the request.
func (q *RemoveClientsRequest) DecodeTLS(r *wire.Reader) { readURIs(r, &q.Clients) }
