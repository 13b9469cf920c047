package httpapi

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// claimKeyMaterial: POST /claimKeymaterial/{domain}. A claim on this
// provider's users is applied here; a claim on another provider's users is
// relayed when it names a room hosted here and comes from a provider with
// member clients in it, for one of its participating users (seed section
// 7.3: claims for a room go through its hub, so the hub can route the
// Welcome).
func (f *federation) claimKeyMaterial(w http.ResponseWriter, r *http.Request, peer string) error {
	domain, err := domainVar(r, "domain")
	if err != nil {
		return err
	}
	body, err := readBody(w, r, f.cfg.MaxBody)
	if err != nil {
		return err
	}
	if len(body) == 0 {
		return fail(http.StatusBadRequest, "KeyMaterialRequest: empty body")
	}
	switch p := proto.Protocol(body[0]); p {
	case 0:
		return fail(http.StatusBadRequest, "KeyMaterialRequest: protocol 0 is reserved")
	case proto.MLS10:
	default:
		return f.claimOtherProtocol(w, r, peer, domain, body)
	}
	var req proto.KeyMaterialRequest
	if err := decode(body, &req, f.cfg.MaxVector, "KeyMaterialRequest"); err != nil {
		return err
	}
	if err := targetsAt(req.TargetUsers, domain); err != nil {
		return err
	}
	if domain == f.domain {
		res, err := f.apply(r, fsm.CmdClaimKeyMaterial, peer, &fsm.ClaimBody{Request: req})
		if err != nil {
			return err
		}
		writeRawMIMI(w, http.StatusOK, res.Body)
		return nil
	}
	if err := f.authorizeRelay(r, peer, domain, req.RequestingUser, req.Room); err != nil {
		return err
	}
	if err := requireRoomCapabilities(r.Context(), f.backend, &req); err != nil {
		return err
	}
	resp, err := f.peers.ClaimKeyMaterial(r.Context(), domain, domain, &req)
	if err != nil {
		return relayFailure(err, domain)
	}
	if err := recordRoutes(r, f.backend, "peer:"+peer, req.Room, domain, &req, resp); err != nil {
		return err
	}
	return writeMIMI(w, http.StatusOK, resp)
}

// targetsAt checks every target user is a user of domain (the path's).
func targetsAt(targets []proto.URI, domain string) error {
	if len(targets) == 0 {
		return fail(http.StatusBadRequest, "KeyMaterialRequest: no target users")
	}
	for _, t := range targets {
		id, err := t.Parse()
		if err != nil || id.Kind != proto.KindUser {
			return fail(http.StatusBadRequest, "KeyMaterialRequest: target %q is not a user URI", t)
		}
		if id.Domain != domain {
			return fail(http.StatusBadRequest, "KeyMaterialRequest: target %s is not a user of %s, the domain in the path", t, domain)
		}
	}
	return nil
}

// authorizeRelay checks that this hub may relay peer's claim on domain's
// users: the claim names a room hosted here, peer has member clients in
// it, and the requesting user is peer's and a participant who is not
// banned.
func (f *federation) authorizeRelay(r *http.Request, peer, domain string, requester, roomID proto.URI) error {
	if roomID == "" {
		return fail(http.StatusNotFound, "this provider is %s, not %s, and the claim names no room it hosts", f.domain, domain)
	}
	id, err := roomID.Parse()
	if err != nil || id.Kind != proto.KindRoom {
		return fail(http.StatusBadRequest, "KeyMaterialRequest: room %q is not a room URI", roomID)
	}
	if id.Domain != f.domain {
		return fail(http.StatusNotFound, "this provider is %s, not %s, and does not host %s", f.domain, domain, roomID)
	}
	if d, err := requester.Domain(); err != nil || d != peer {
		return fail(http.StatusForbidden, "%s may not claim on behalf of %q", peer, requester)
	}
	return f.backend.Read(r.Context(), true, func(s *fsm.State) error {
		p, listed, providers, ok := s.RoomParticipant(roomID, requester)
		if !ok {
			return fail(http.StatusNotFound, "room %s is not hosted here", roomID)
		}
		if !slices.Contains(providers, peer) {
			return fail(http.StatusForbidden, "%s has no member clients in %s; only they may claim through its hub", peer, roomID)
		}
		if !listed || p.Banned() {
			return fail(http.StatusForbidden, "%s is not a participant of %s", requester, roomID)
		}
		return nil
	})
}

// maxClaimedClients bounds the clients one user of another provider may
// have in a relayed claim's answer (keymaterial's MaxClientsPerUser).
const maxClaimedClients = 100

// checkClaimAnswer checks that another provider's answer to a claim for a
// room hosted here holds only what was claimed: each target user at most
// once, and its own clients, each once, at most maxClaimedClients. Every
// KeyPackage in it becomes a route in the room's replicated state, and the
// provider answering may be the peer that asked for the relay.
func checkClaimAnswer(req *proto.KeyMaterialRequest, resp *proto.KeyMaterialResponse, domain string) error {
	users := map[proto.URI]bool{}
	for _, u := range resp.Users {
		if !slices.Contains(req.TargetUsers, u.User) || users[u.User] {
			return fail(http.StatusBadGateway, "%s answered the claim for %q, not claimed or twice", domain, u.User)
		}
		users[u.User] = true
		if len(u.Clients) > maxClaimedClients {
			return fail(http.StatusBadGateway, "%s answered with %d clients of %s; at most %d are taken", domain, len(u.Clients), u.User, maxClaimedClients)
		}
		clients := map[proto.URI]bool{}
		for _, c := range u.Clients {
			if owner, err := c.Client.UserOf(); err != nil || owner != u.User || clients[c.Client] {
				return fail(http.StatusBadGateway, "%s answered with client %q for %s: not its client, or twice", domain, c.Client, u.User)
			}
			clients[c.Client] = true
		}
	}
	return nil
}

// recordRoutes tells the room which provider served each KeyPackage of a
// relayed claim, so its Welcome goes there.
func recordRoutes(r *http.Request, b Backend, principal string, roomID proto.URI, domain string, req *proto.KeyMaterialRequest, resp *proto.KeyMaterialResponse) error {
	if err := checkClaimAnswer(req, resp, domain); err != nil {
		return err
	}
	var routes []room.Route
	for _, u := range resp.Users {
		for _, c := range u.Clients {
			if c.Status != proto.ClientSuccess || c.KeyPackage == nil || c.KeyPackage.KeyPackage == nil {
				continue
			}
			ref, err := c.KeyPackage.KeyPackage.Ref()
			if err != nil {
				return fail(http.StatusBadGateway, "%s returned a KeyPackage for %s without a reference: %v", domain, c.Client, err)
			}
			routes = append(routes, room.Route{Ref: ref, Domain: domain})
		}
	}
	if len(routes) == 0 {
		return nil
	}
	id, err := requestID(r, principal, RouteName(r)+" route "+domain)
	if err != nil {
		return err
	}
	res, err := b.Apply(r.Context(), fsm.CmdRouteKeyPackages, id, "", &fsm.RouteBody{Room: roomID, Routes: routes})
	if err != nil {
		return err
	}
	return resultErr(res)
}

// relayFailure is the answer when another provider did not answer a
// relayed request: its own 4xx refusal passes through, anything else is a
// bad gateway.
func relayFailure(err error, domain string) error {
	if s, ok := peerRefusal(err); ok {
		return &apiError{status: s, msg: fmt.Sprintf("%s refused: %v", domain, err), cause: err}
	}
	return &apiError{status: http.StatusBadGateway, msg: fmt.Sprintf("%s did not answer: %v", domain, err), cause: err}
}

// claimOtherProtocol answers a claim in a protocol other than MLS 1.0,
// which proto cannot decode past the fields every protocol shares
// (protocol, requesting user, target users, room). Every target gets
// incompatibleProtocol, in a response that echoes the request's protocol
// and lists no clients, so its encoding needs no protocol-specific part.
// The same authorization applies as for MLS claims; nothing is relayed,
// since every room here is MLS 1.0.
func (f *federation) claimOtherProtocol(w http.ResponseWriter, r *http.Request, peer, domain string, body []byte) error {
	var (
		p                uint8
		requester, rm    proto.URI
		targets          []proto.URI
		rd               = wire.NewReader(body)
		maxTargetsListed = 1000
	)
	rd.SetMaxVector(f.cfg.MaxVector)
	rd.Uint8(&p)
	requester.DecodeTLS(rd)
	rd.VectorEach(func(r *wire.Reader) {
		var u proto.URI
		u.DecodeTLS(r)
		targets = append(targets, u)
	})
	rm.DecodeTLS(rd)
	if err := rd.Err(); err != nil {
		return fail(http.StatusBadRequest, "KeyMaterialRequest (protocol %d): %v", p, err)
	}
	if len(targets) > maxTargetsListed {
		return fail(http.StatusBadRequest, "KeyMaterialRequest (protocol %d): %d target users; at most %d", p, len(targets), maxTargetsListed)
	}
	if err := targetsAt(targets, domain); err != nil {
		return err
	}
	if domain == f.domain {
		hub, _ := rm.Domain()
		if d, err := requester.Domain(); (err != nil || d != peer) && (rm == "" || hub != peer) {
			return fail(http.StatusForbidden, "%s may not claim on behalf of %q", peer, requester)
		}
	} else if err := f.authorizeRelay(r, peer, domain, requester, rm); err != nil {
		return err
	}
	resp := &proto.KeyMaterialResponse{Protocol: proto.Protocol(p)}
	for _, t := range targets {
		resp.Users = append(resp.Users, proto.UserKeyMaterial{Status: proto.UserIncompatibleProtocol, User: t})
	}
	return writeMIMI(w, http.StatusOK, resp)
}
