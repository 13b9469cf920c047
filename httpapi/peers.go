package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// Peers is what the API needs of the outbound MIMI client
// (*client.Federation satisfies it; tests use a fake): the requests this provider relays
// for its clients to other rooms' hubs, and the claims a hub relays for its
// rooms. Rooms name their hub (mimi://{hub}/r/{id}); the client finds the
// hub's endpoints through its directory.
type Peers interface {
	// UpdateRoom sends updateRoom to the room's hub.
	UpdateRoom(ctx context.Context, room proto.URI, req *proto.UpdateRoomRequest) (*proto.UpdateRoomResponse, error)
	// ProvisionalMessage sends an application message to the room's hub.
	ProvisionalMessage(ctx context.Context, room proto.URI, msg *mls.Message) (*proto.UpdateRoomResponse, error)
	// ClaimKeyMaterial posts a claim on targetDomain's users to
	// /claimKeymaterial/{targetDomain} at provider via: the target itself,
	// or the hub of the room the claim names, which relays it.
	ClaimKeyMaterial(ctx context.Context, via, targetDomain string, req *proto.KeyMaterialRequest) (*proto.KeyMaterialResponse, error)
	// ClaimGroupInfo asks the room's hub for its GroupInfo.
	ClaimGroupInfo(ctx context.Context, room proto.URI, req *proto.GroupInfoRequest) (*proto.GroupInfoResponse, error)
	// ReportAbuse sends an abuse report to the room's hub.
	ReportAbuse(ctx context.Context, room proto.URI, report *proto.AbuseReport) error
	// IdentifierQuery asks domain about its users.
	IdentifierQuery(ctx context.Context, domain string, req *proto.IdentifierRequest) (*proto.IdentifierResponse, error)
	// WelcomeTree asks the room's hub for the tree a Welcome's recipient
	// needs: a body to stream to the client, and its length (-1 unknown).
	WelcomeTree(ctx context.Context, room proto.URI, req *proto.WelcomeTreeRequest) (io.ReadCloser, int64, error)
}

// The real outbound client satisfies Peers.
var _ Peers = (*client.Federation)(nil)

// peerRefusal returns the status of a peer's 4xx refusal (a
// *client.StatusError): a relay passes it on to the client. Any other
// failure means the peer is unreachable (hubUnresponsive or 502). A peer's
// 401 (it did not accept this provider's certificate) becomes 502: to the
// client, 401 means its own token was refused, and this is not its fault.
func peerRefusal(err error) (int, bool) {
	var se *client.StatusError
	if errors.As(err, &se) && se.Status >= 400 && se.Status < 500 {
		if se.Status == http.StatusUnauthorized {
			return http.StatusBadGateway, true
		}
		return se.Status, true
	}
	return 0, false
}

// errNoPeers is the failure of every relay when no outbound client is
// configured.
var errNoPeers = errors.New("this provider has no outbound MIMI client configured")

// noPeers stands in for a nil Peers: every relay fails as unreachable.
type noPeers struct{}

func (noPeers) UpdateRoom(context.Context, proto.URI, *proto.UpdateRoomRequest) (*proto.UpdateRoomResponse, error) {
	return nil, errNoPeers
}

func (noPeers) ProvisionalMessage(context.Context, proto.URI, *mls.Message) (*proto.UpdateRoomResponse, error) {
	return nil, errNoPeers
}

func (noPeers) ClaimKeyMaterial(context.Context, string, string, *proto.KeyMaterialRequest) (*proto.KeyMaterialResponse, error) {
	return nil, errNoPeers
}

func (noPeers) ClaimGroupInfo(context.Context, proto.URI, *proto.GroupInfoRequest) (*proto.GroupInfoResponse, error) {
	return nil, errNoPeers
}

func (noPeers) ReportAbuse(context.Context, proto.URI, *proto.AbuseReport) error { return errNoPeers }

func (noPeers) WelcomeTree(context.Context, proto.URI, *proto.WelcomeTreeRequest) (io.ReadCloser, int64, error) {
	return nil, 0, errNoPeers
}

func (noPeers) IdentifierQuery(context.Context, string, *proto.IdentifierRequest) (*proto.IdentifierResponse, error) {
	return nil, errNoPeers
}

// orNoPeers returns p, or noPeers when p is nil.
func orNoPeers(p Peers) Peers {
	if p == nil {
		return noPeers{}
	}
	return p
}
