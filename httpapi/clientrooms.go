package httpapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// roomPath returns the room /v1/rooms/{hub}/{room} names and whether it is
// hosted here (its hub is this provider).
func (c *clientAPI) roomPath(r *http.Request) (proto.URI, bool, error) {
	hub, err := domainVar(r, "hub")
	if err != nil {
		return "", false, err
	}
	uri, err := roomVar(r, "room", hub)
	if err != nil {
		return "", false, err
	}
	return uri, hub == c.domain, nil
}

// room: GET /v1/rooms/{hub}/{room}, a hosted room as its participants see
// it.
func (c *clientAPI) room(w http.ResponseWriter, r *http.Request, p *principal) error {
	id, local, err := c.roomPath(r)
	if err != nil {
		return err
	}
	if !local {
		return fail(http.StatusNotFound, "room %s is not hosted here; only its hub describes it", id)
	}
	// The answer lists every participant (up to 100,000): it costs the
	// client's byte budget, as a tree does.
	if err := responseBudget(r); err != nil {
		return err
	}
	type participant struct {
		User  string   `json:"user"`
		Roles []string `json:"roles"`
	}
	var out struct {
		Room         string        `json:"room"`
		Epoch        uint64        `json:"epoch"`
		Sequence     uint64        `json:"sequence"`
		Members      int           `json:"members"`
		Providers    []string      `json:"providers"`
		Participants []participant `json:"participants"`
		// TranscriptHash names the commit chain up to this epoch.
		TranscriptHash []byte `json:"transcript_hash"`
	}
	linearizable, err := readConsistency(r)
	if err != nil {
		return err
	}
	err = c.backend.Read(r.Context(), linearizable, func(s *fsm.State) error {
		info, ok := s.Room(id)
		if !ok {
			return fail(http.StatusNotFound, "room %s is not hosted here", id)
		}
		if !slices.ContainsFunc(info.Participants, func(pt room.Participant) bool { return pt.User == p.user }) {
			return fail(http.StatusForbidden, "%s is not a participant of %s", p.user, id)
		}
		out.Room, out.Epoch, out.Sequence, out.Members = string(info.ID), info.Epoch, info.Sequence, info.Members
		out.TranscriptHash = info.TranscriptHash
		out.Providers = append([]string{}, info.Providers...)
		out.Participants = []participant{}
		for _, pt := range info.Participants {
			roles := []string{}
			for _, role := range pt.Roles {
				roles = append(roles, role.String())
			}
			out.Participants = append(out.Participants, participant{User: string(pt.User), Roles: roles})
		}
		return nil
	})
	if err != nil {
		return err
	}
	chargeResponse(r, writeJSON(w, http.StatusOK, out))
	return nil
}

// updateResult is the JSON form of an UpdateRoomResponse.
type updateResult struct {
	Code        uint8  `json:"code"`
	CodeName    string `json:"code_name"`
	Description string `json:"description,omitempty"`
}

func toUpdateResult(resp *proto.UpdateRoomResponse) updateResult {
	return updateResult{Code: uint8(resp.Code), CodeName: resp.Code.String(), Description: resp.Description}
}

// submit sends an updateRoom or provisionalMessage body to the room: to
// the room engine when hosted here, else to its hub. A hub's own refusal
// passes through. A relay that carries the client's Idempotency-Key
// carries a key derived from it (relayKey), so the hub applies a retried
// relay once. A hub that cannot have received the request yields
// hubUnresponsive; a relay whose outcome is unknown (the request may have
// reached the hub) answers 504, which tells the client to retry with the
// same Idempotency-Key.
//
// raw, when not nil, is body's encoding as the client sent it (decoded
// strictly, so it is what encoding body gives): it is not encoded again.
func (c *clientAPI) submit(w http.ResponseWriter, r *http.Request, p *principal, id proto.URI, local bool, t fsm.CommandType, body wire.Decoder, raw []byte,
	relay func(ctx context.Context) (*proto.UpdateRoomResponse, error)) error {
	var resp *proto.UpdateRoomResponse
	if local {
		enc := raw
		if enc == nil {
			var err error
			if enc, err = wire.Marshal(body.(wire.Encoder)); err != nil {
				return fail(http.StatusBadRequest, "%s: %v", t, err)
			}
		}
		res, err := c.apply(r, p, RouteName(r), t, &fsm.RoomBody{Room: id, Request: enc, Decoded: body})
		if err != nil {
			return err
		}
		resp = new(proto.UpdateRoomResponse)
		if err := wire.Unmarshal(res.Body, resp); err != nil {
			return fmt.Errorf("the room's response does not decode: %w", err)
		}
	} else {
		if p != nil {
			if err := c.confirm(r, p); err != nil { // a relay is no command the log checks
				return err
			}
		}
		ctx := r.Context()
		if p != nil {
			key, err := relayKey(r, string(p.client))
			if err != nil {
				return err
			}
			if key != "" {
				ctx = client.WithIdempotencyKey(ctx, key)
			}
		}
		var err error
		if resp, err = relay(ctx); err != nil {
			hub, _ := id.Domain()
			if s, ok := peerRefusal(err); ok {
				return &apiError{status: s, msg: fmt.Sprintf("the hub %s refused: %v", hub, err), cause: err}
			}
			if relayOutcomeUnknown(err) {
				return &apiError{status: http.StatusGatewayTimeout, msg: fmt.Sprintf("the hub %s did not answer and may have applied the request: retry with the same Idempotency-Key: %v", hub, err), cause: err}
			}
			c.log.DebugContext(r.Context(), "hub unresponsive", "room", id, "error", err)
			resp = &proto.UpdateRoomResponse{Code: proto.UpdateHubUnresponsive, Description: fmt.Sprintf("the hub %s did not answer: %v", hub, err)}
		}
	}
	writeJSON(w, http.StatusOK, toUpdateResult(resp))
	return nil
}

// relayKey derives the Idempotency-Key of a relayed write from the
// client's own key: the request id of the client's request (principal,
// route and key), so retries of one client request relay under one key
// and different clients or routes never share one. No client key, no
// relay key.
func relayKey(r *http.Request, principal string) (string, error) {
	id, err := requestID(r, principal, "relay "+RouteName(r))
	if err != nil || id == nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(id), nil
}

// relayOutcomeUnknown reports whether a failed relay may have reached the
// hub: its answer was a 5xx, or the connection failed after it was made
// (reset, EOF, timeout). A failure to connect (dial, TLS handshake) or to
// build the request means the hub never saw it.
func relayOutcomeUnknown(err error) bool {
	var se *client.StatusError
	if errors.As(err, &se) {
		return se.Status >= 500
	}
	var te *client.TransportError
	if !errors.As(err, &te) {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	var (
		cve   *tls.CertificateVerificationError
		alert tls.AlertError
		rhe   tls.RecordHeaderError
	)
	return !errors.As(err, &cve) && !errors.As(err, &alert) && !errors.As(err, &rhe)
}

// checkGroup checks a handshake or application message is for the room.
func checkGroup(groupID []byte, id proto.URI, what string) error {
	if !bytes.Equal(groupID, []byte(id)) {
		return fail(http.StatusBadRequest, "%s is for group %q, not the room %s", what, groupID, id)
	}
	return nil
}

// checkJoiner checks that a client joining by itself (external commit or
// external Add proposal) joins as itself: the hub can only check the
// joiner belongs to this provider, so this provider checks which client.
func checkJoiner(pm *mls.PublicMessage, client proto.URI, what string) error {
	var cred *mls.Credential
	switch pm.Content.Sender.Type {
	case mls.SenderMember:
		return nil
	case mls.SenderNewMemberCommit:
		if pm.Content.Commit == nil || pm.Content.Commit.Path == nil {
			return fail(http.StatusBadRequest, "%s: an external commit needs an UpdatePath", what)
		}
		cred = &pm.Content.Commit.Path.LeafNode.Credential
	case mls.SenderNewMemberProposal:
		if pm.Content.Proposal == nil || pm.Content.Proposal.KeyPackage == nil {
			return fail(http.StatusBadRequest, "%s: a new member's proposal must be an Add", what)
		}
		cred = &pm.Content.Proposal.KeyPackage.LeafNode.Credential
	default:
		return fail(http.StatusForbidden, "%s: a client cannot send as a %s", what, pm.Content.Sender.Type)
	}
	if cred.Type != mls.CredentialBasic || !bytes.Equal(cred.Identity, []byte(client)) {
		return fail(http.StatusForbidden, "%s: a joining client must use a basic credential naming itself, %s", what, client)
	}
	return nil
}

// commit: POST /v1/rooms/{hub}/{room}/commit (updateRoom with a commit),
// as JSON or as an application/mimi UpdateRoomRequest (binary.go). For a
// room hosted here a full tree is checked and dropped before the log
// (byReference).
func (c *clientAPI) commit(w http.ResponseWriter, r *http.Request, p *principal) error {
	id, local, err := c.roomPath(r)
	if err != nil {
		return err
	}
	limit := hostedRoomBodyLimit(r, &c.cfg, c.backend, id, local)
	var req *proto.UpdateRoomRequest
	var raw []byte // the binary body as it came, stored without encoding it again
	if isMIMIBody(r) {
		if req, raw, err = c.readUpdateRoom(w, r, limit); err != nil {
			return err
		}
		if !req.IsCommit() {
			return fail(http.StatusBadRequest, "commit carries a %s, not a commit", req.Message.Public.Content.ContentType)
		}
	} else if req, err = c.jsonCommit(w, r, limit); err != nil {
		return err
	}
	m := req.Message
	if err := checkGroup(m.Public.Content.GroupID, id, "commit"); err != nil {
		return err
	}
	if err := checkJoiner(m.Public, p.client, "commit"); err != nil {
		return err
	}
	if local {
		full := req.RatchetTree.Representation == proto.TreeFull
		if refusal := byReference(req, c.cfg.MaxVector); refusal != nil {
			writeJSON(w, http.StatusOK, toUpdateResult(refusal))
			return nil
		}
		if full && req.RatchetTree.Representation != proto.TreeFull {
			raw = nil // byReference replaced the tree: the body is no longer req's encoding
		}
	}
	relay := func(ctx context.Context) (*proto.UpdateRoomResponse, error) {
		return c.peers.UpdateRoom(ctx, id, req)
	}
	if !local && m.Public.Content.Sender.Type == mls.SenderNewMemberCommit {
		// An external joiner follows the room from before the hub accepts
		// its commit, so no message accepted right after it is missed; a
		// refused join stops following again. (For hosted rooms the FSM
		// subscribes the joiner in the same command.)
		relay = c.followWhileJoining(r, p, id, relay)
	}
	return c.submit(w, r, p, id, local, fsm.CmdUpdateRoom, req, raw, relay)
}

// jsonCommit reads a commit's JSON body (base64 fields), whose binary
// content may be up to limit bytes.
func (c *clientAPI) jsonCommit(w http.ResponseWriter, r *http.Request, limit int64) (*proto.UpdateRoomRequest, error) {
	var in struct {
		Commit      []byte `json:"commit"`
		Welcome     []byte `json:"welcome"`
		GroupInfo   []byte `json:"group_info"`
		RatchetTree []byte `json:"ratchet_tree"`
	}
	if err := readJSON(w, r, jsonLimit(limit), &in); err != nil {
		return nil, err
	}
	m, err := c.decodeMessage(in.Commit, mls.WirePublicMessage, "commit")
	if err != nil {
		return nil, err
	}
	if m.Public.Content.ContentType != mls.ContentCommit {
		return nil, fail(http.StatusBadRequest, "commit carries a %s, not a commit", m.Public.Content.ContentType)
	}
	req := &proto.UpdateRoomRequest{Message: m, RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeByReference}}
	if len(in.Welcome) > 0 {
		if req.Welcome, err = c.decodeMessage(in.Welcome, mls.WireWelcome, "welcome"); err != nil {
			return nil, err
		}
	}
	if req.GroupInfo, err = c.decodeMessage(in.GroupInfo, mls.WireGroupInfo, "group_info"); err != nil {
		return nil, err
	}
	if len(in.RatchetTree) > 0 {
		req.RatchetTree = proto.RatchetTreeOption{Representation: proto.TreeFull, Tree: in.RatchetTree}
		// The tree is taken as encoded; check its framing as a peer would.
		if err := decode(wire.MustMarshal(&req.RatchetTree), new(proto.RatchetTreeOption), c.cfg.MaxVector, "ratchet_tree"); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// followWhileJoining subscribes p's client to a remote room around the relay
// of its external commit, keeping the subscription only if the hub accepts.
func (c *clientAPI) followWhileJoining(r *http.Request, p *principal, id proto.URI,
	relay func(ctx context.Context) (*proto.UpdateRoomResponse, error)) func(ctx context.Context) (*proto.UpdateRoomResponse, error) {
	return func(ctx context.Context) (*proto.UpdateRoomResponse, error) {
		if _, err := c.apply(r, p, RouteName(r)+"/follow", fsm.CmdSubscribe, &fsm.SubscribeBody{Client: p.client, Room: id, Subscribe: true}); err != nil {
			return nil, err
		}
		resp, err := relay(ctx)
		if err != nil || resp.Code != proto.UpdateSuccess {
			if _, uerr := c.apply(r, p, RouteName(r)+"/unfollow", fsm.CmdSubscribe, &fsm.SubscribeBody{Client: p.client, Room: id, Subscribe: false}); uerr != nil {
				c.log.WarnContext(ctx, "unsubscribing a refused joiner", "room", id, "client", p.client, "error", uerr)
			}
		}
		return resp, err
	}
}

// proposals: POST /v1/rooms/{hub}/{room}/proposals (updateRoom with
// proposals), as JSON or as an application/mimi UpdateRoomRequest.
func (c *clientAPI) proposals(w http.ResponseWriter, r *http.Request, p *principal) error {
	id, local, err := c.roomPath(r)
	if err != nil {
		return err
	}
	limit := hostedRoomBodyLimit(r, &c.cfg, c.backend, id, local)
	var msgs []*mls.Message
	var raw []byte // the binary body as it came
	if isMIMIBody(r) {
		var req *proto.UpdateRoomRequest
		if req, raw, err = c.readUpdateRoom(w, r, limit); err != nil {
			return err
		}
		if req.IsCommit() {
			return fail(http.StatusBadRequest, "proposals carries a commit, not proposals")
		}
		msgs = append([]*mls.Message{req.Message}, req.MoreProposals...)
	} else {
		var in struct {
			Proposals [][]byte `json:"proposals"`
		}
		if err := readJSON(w, r, jsonLimit(limit), &in); err != nil {
			return err
		}
		if len(in.Proposals) == 0 {
			return fail(http.StatusBadRequest, "proposals is empty")
		}
		for i, b := range in.Proposals {
			m, err := c.decodeMessage(b, mls.WirePublicMessage, fmt.Sprintf("proposals[%d]", i))
			if err != nil {
				return err
			}
			msgs = append(msgs, m)
		}
	}
	for i, m := range msgs {
		what := fmt.Sprintf("proposals[%d]", i)
		if m.Public.Content.ContentType != mls.ContentProposal {
			return fail(http.StatusBadRequest, "%s carries a %s, not a proposal", what, m.Public.Content.ContentType)
		}
		if err := checkGroup(m.Public.Content.GroupID, id, what); err != nil {
			return err
		}
		if err := checkJoiner(m.Public, p.client, what); err != nil {
			return err
		}
	}
	req := &proto.UpdateRoomRequest{Message: msgs[0], MoreProposals: msgs[1:]}
	return c.submit(w, r, p, id, local, fsm.CmdUpdateRoom, req, raw, func(ctx context.Context) (*proto.UpdateRoomResponse, error) {
		return c.peers.UpdateRoom(ctx, id, req)
	})
}

// message: POST /v1/rooms/{hub}/{room}/messages (provisionalMessage). The
// message's authenticated_data must name the sending client, which is what
// the hub authorizes (DECISIONS.md item 21), so this provider checks it is
// the authenticated one.
func (c *clientAPI) message(w http.ResponseWriter, r *http.Request, p *principal) error {
	id, local, err := c.roomPath(r)
	if err != nil {
		return err
	}
	var data []byte
	if isMIMIBody(r) {
		if data, err = readBody(w, r, c.cfg.MaxMessageBody); err != nil {
			return err
		}
	} else {
		var in struct {
			Message []byte `json:"message"`
		}
		if err := readJSON(w, r, c.messageJSONLimit(), &in); err != nil {
			return err
		}
		data = in.Message
	}
	m, err := c.decodeMessage(data, mls.WirePrivateMessage, "message")
	if err != nil {
		return err
	}
	if m.Private.ContentType != mls.ContentApplication {
		return fail(http.StatusBadRequest, "message carries a %s, not an application message", m.Private.ContentType)
	}
	if err := checkGroup(m.Private.GroupID, id, "message"); err != nil {
		return err
	}
	if !bytes.Equal(m.Private.AuthenticatedData, room.SenderHint(p.client)) {
		return fail(http.StatusForbidden, "the message's authenticated_data must be the sending client's URI, %s", p.client)
	}
	return c.submit(w, r, p, id, local, fsm.CmdProvisional, m, data, func(ctx context.Context) (*proto.UpdateRoomResponse, error) {
		return c.peers.ProvisionalMessage(ctx, id, m)
	})
}

// groupInfo: POST /v1/rooms/{hub}/{room}/groupinfo (claimGroupInfo) for
// the authenticated client.
func (c *clientAPI) groupInfo(w http.ResponseWriter, r *http.Request, p *principal) error {
	id, local, err := c.roomPath(r)
	if err != nil {
		return err
	}
	var in struct {
		SignatureKey []byte `json:"signature_key"`
	}
	if err := readJSON(w, r, c.cfg.MaxBody, &in); err != nil {
		return err
	}
	if len(in.SignatureKey) == 0 {
		return fail(http.StatusBadRequest, "signature_key is required")
	}
	if err := responseBudget(r); err != nil {
		return err
	}
	req := &proto.GroupInfoRequest{SignatureKey: in.SignatureKey, Credential: mls.BasicCredential([]byte(p.client))}
	var resp *proto.GroupInfoResponse
	if local {
		// The read captures the tree; it is encoded below, outside the
		// state's lock.
		if resp, err = readGroupInfo(r, c.backend, id, c.domain, req); err != nil {
			return err
		}
	} else {
		hub, _ := id.Domain()
		if resp, err = c.peers.ClaimGroupInfo(r.Context(), id, req); err != nil {
			return relayFailure(err, hub)
		}
	}
	if acceptsMIMI(r) {
		return writeGroupInfo(w, r, resp)
	}
	out := struct {
		Status           string   `json:"status"`
		GroupInfo        []byte   `json:"group_info,omitempty"`
		RatchetTree      []byte   `json:"ratchet_tree,omitempty"`
		PendingProposals [][]byte `json:"pending_proposals,omitempty"`
	}{Status: resp.Status.String()}
	if resp.Status == proto.GroupInfoSuccess {
		if out.GroupInfo, err = wire.Marshal(resp.GroupInfo); err != nil {
			return fmt.Errorf("encode GroupInfo: %w", err)
		}
		out.RatchetTree = resp.RatchetTree.Bytes()
		out.PendingProposals = [][]byte{}
		for _, m := range resp.PendingProposals {
			b, err := wire.Marshal(m)
			if err != nil {
				return fmt.Errorf("encode pending proposal: %w", err)
			}
			out.PendingProposals = append(out.PendingProposals, b)
		}
	}
	writeJSON(w, http.StatusOK, out)
	chargeResponse(r, len(out.GroupInfo)+len(out.RatchetTree))
	return nil
}

// subscription: PUT and DELETE /v1/rooms/{hub}/{room}/subscription.
func (c *clientAPI) subscription(subscribe bool) clientHandler {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		id, local, err := c.roomPath(r)
		if err != nil {
			return err
		}
		if subscribe && !local {
			if err := c.confirm(r, p); err != nil { // the hub is asked before anything is proposed
				return err
			}
			if err := c.confirmMembership(r, p, id); err != nil {
				return err
			}
		}
		if _, err := c.apply(r, p, RouteName(r), fsm.CmdSubscribe, &fsm.SubscribeBody{Client: p.client, Room: id, Subscribe: subscribe}); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

// abuse: POST /v1/rooms/{hub}/{room}/abuse (reportAbuse), reported by the
// authenticated client's user.
func (c *clientAPI) abuse(w http.ResponseWriter, r *http.Request, p *principal) error {
	id, local, err := c.roomPath(r)
	if err != nil {
		return err
	}
	var in struct {
		Report []byte `json:"report"`
	}
	// MaxBody, as the federation's reportAbuse: reports are kept in the
	// state, and a larger one could not be relayed to a mimi-hub hub.
	if err := readJSON(w, r, jsonLimit(c.cfg.MaxBody), &in); err != nil {
		return err
	}
	if len(in.Report) == 0 {
		return fail(http.StatusBadRequest, "report is required")
	}
	if int64(len(in.Report)) > c.cfg.MaxBody {
		return fail(http.StatusRequestEntityTooLarge, "report: %d bytes, at most %d", len(in.Report), c.cfg.MaxBody)
	}
	var rep proto.AbuseReport
	if err := decode(in.Report, &rep, c.cfg.MaxVector, "report"); err != nil {
		return err
	}
	if rep.ReportingUser != p.user {
		return fail(http.StatusForbidden, "the reporting user must be %s", p.user)
	}
	if local {
		if _, err := c.apply(r, p, RouteAbuse, fsm.CmdReportAbuse, &fsm.RoomBody{Room: id, Request: in.Report}); err != nil {
			return err
		}
	} else {
		hub, _ := id.Domain()
		if err := c.peers.ReportAbuse(r.Context(), id, &rep); err != nil {
			return relayFailure(err, hub)
		}
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}
