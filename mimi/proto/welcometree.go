package proto

import "github.com/mimihub/mimi-hub/mimi/wire"

// WelcomeTree names the extension primitive below; like RemoveClients it
// is outside the seed's MimiPrimitive range and never in a directory.
const WelcomeTree Primitive = 201

// WelcomeTreePath is the path of an extension endpoint (DECISIONS.md item
// 5): the provider of a Welcome's recipient fetches, from the room's hub,
// the ratchet tree of the epoch the Welcome joins, when the Welcome came
// without it (byReference). The answer is the tree in RFC 9420 wire form
// (optional<Node> ratchet_tree<V>) as application/mimi; 404 when the hub
// knows no such Welcome, 403 when it is not for the named client of the
// requesting provider, 410 when the hub no longer keeps that epoch's tree.
const WelcomeTreePath = "/welcomeTree/{roomId}"

// WelcomeTreeRequest is the body of POST /welcomeTree/{roomId}: the
// recipient (a client of the requesting provider, which vouches for it)
// and the KeyPackageRef its Welcome names.
type WelcomeTreeRequest struct {
	Client        URI
	KeyPackageRef []byte
}

// EncodeTLS writes the request.
func (q *WelcomeTreeRequest) EncodeTLS(w *wire.Writer) {
	q.Client.EncodeTLS(w)
	w.Opaque(q.KeyPackageRef)
}

// DecodeTLS reads the request.
func (q *WelcomeTreeRequest) DecodeTLS(r *wire.Reader) {
	q.Client.DecodeTLS(r)
	r.Opaque(&q.KeyPackageRef)
}
