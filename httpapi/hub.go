package httpapi

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Hub-initiated proposals at the API: the hub's external sender for clients
// creating rooms (GET /v1/hub), the extension endpoint through which a
// provider asks a hub to remove its revoked clients (POST
// /removeClients/{roomId}), and the room's required capabilities on key
// material claims.

// Route names of the endpoints in this file.
const (
	RouteHub           = "client.hub"
	RouteRemoveClients = "mimi.removeClients"
)

// ensureHubKey makes sure the provider has its external-sender secret: if
// the state has none, it proposes a fresh random one (drawn here, outside
// the state machine). When two nodes race, the state machine keeps the
// first.
func ensureHubKey(ctx context.Context, b Backend) error {
	var have bool
	if err := b.Read(ctx, false, func(s *fsm.State) error { _, have = s.HubSenders(); return nil }); err != nil {
		return err
	}
	if have {
		return nil
	}
	secret := make([]byte, room.HubSecretSize)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("drawing the hub's secret: %w", err)
	}
	res, err := b.Apply(ctx, fsm.CmdHubKey, nil, "", &fsm.HubKeyBody{Secret: secret})
	if err != nil {
		return err
	}
	return resultErr(res)
}

// hubSenderJSON is the hub's external_senders extension for one suite.
type hubSenderJSON struct {
	CipherSuite uint16 `json:"cipher_suite"`
	// ExternalSenders is the TLS encoding of the external_senders
	// extension's body (a list holding only the hub), base64.
	ExternalSenders []byte `json:"external_senders"`
}

// hub: GET /v1/hub, the hub's external sender for each cipher suite. A
// room created here must list exactly it in its group's external_senders.
func (c *clientAPI) hub(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := ensureHubKey(r.Context(), c.backend); err != nil {
		return err
	}
	var senders []room.SuiteSender
	err := c.backend.Read(r.Context(), true, func(s *fsm.State) error {
		var ok bool
		if senders, ok = s.HubSenders(); !ok {
			return fail(http.StatusServiceUnavailable, "the hub's key is being set up; retry")
		}
		return nil
	})
	if err != nil {
		return err
	}
	out := struct {
		Domain  string          `json:"domain"`
		Senders []hubSenderJSON `json:"suites"`
	}{Domain: c.domain}
	for _, s := range senders {
		out.Senders = append(out.Senders, hubSenderJSON{CipherSuite: uint16(s.Suite), ExternalSenders: wire.MustMarshal(mls.ExternalSenders{s.Sender})})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// removeClients: POST /removeClients/{roomId} (DECISIONS.md item 27), from a
// provider for its own clients in a room hosted here; the hub removes them
// with its own Remove proposals. 204 when done (or nothing to do), 403 for
// another provider's client or a room that cannot take hub proposals, 404
// for a room not hosted here.
func (f *federation) removeClients(w http.ResponseWriter, r *http.Request, peer string) error {
	room, err := roomVar(r, "roomId", f.domain)
	if err != nil {
		return err
	}
	body, err := readBody(w, r, f.cfg.MaxBody)
	if err != nil {
		return err
	}
	var req proto.RemoveClientsRequest
	if err := decode(body, &req, f.cfg.MaxVector, "RemoveClientsRequest"); err != nil {
		return err
	}
	for _, c := range req.Clients {
		if d, err := c.Domain(); err != nil || d != peer {
			return fail(http.StatusForbidden, "%s may ask to remove only its own clients, not %q", peer, c)
		}
	}
	if _, err := f.apply(r, fsm.CmdRemoveClients, peer, &fsm.RemoveClientsBody{Room: room, Clients: req.Clients}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// requireRoomCapabilities adds what a room hosted here requires to a key
// material claim made for it (seed section 7.3; RFC 9420 section 13.4), so
// the target provider serves only KeyPackages that can be added, and burns
// none that cannot.
func requireRoomCapabilities(ctx context.Context, b Backend, req *proto.KeyMaterialRequest) error {
	return b.Read(ctx, false, func(s *fsm.State) error {
		rc, ok := s.RequiredCapabilities(req.Room)
		if !ok {
			return nil
		}
		have := &req.RequiredCapabilities
		have.Extensions = union(have.Extensions, rc.Extensions)
		have.Proposals = union(have.Proposals, rc.Proposals)
		have.Credentials = union(have.Credentials, rc.Credentials)
		return nil
	})
}

// union appends to a the values of b it lacks.
func union[T comparable](a, b []T) []T {
	for _, v := range b {
		found := false
		for _, x := range a {
			found = found || x == v
		}
		if !found {
			a = append(a, v)
		}
	}
	return a
}
