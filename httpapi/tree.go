package httpapi

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Route names of the tree fetches (DECISIONS.md item 5).
const (
	RouteWelcomeTree    = "client.welcomeTree"
	RouteFedWelcomeTree = "mimi.welcomeTree"
)

// welcomeTreeError maps the room's answers about a Welcome's tree to
// statuses: 404 unknown, 403 not the recipient, 410 no longer kept.
func welcomeTreeError(err error) error {
	switch {
	case errors.Is(err, room.ErrUnknownWelcome):
		return &apiError{status: http.StatusNotFound, msg: err.Error(), cause: err}
	case errors.Is(err, room.ErrNotAllowed):
		return &apiError{status: http.StatusForbidden, msg: err.Error(), cause: err}
	case errors.Is(err, room.ErrTreeGone):
		return &apiError{status: http.StatusGone, msg: err.Error(), cause: err}
	}
	return err
}

// readWelcomeTree captures, under a linearizable read (the Welcome may
// have been accepted an instant ago), the tree a Welcome's recipient
// needs. The view is encoded after the read, outside the state's lock.
func readWelcomeTree(r *http.Request, b Backend, id proto.URI, from string, client proto.URI, ref []byte) (*mls.TreeView, error) {
	var view *mls.TreeView
	err := b.Read(r.Context(), true, func(s *fsm.State) error {
		var err error
		view, err = s.WelcomeTree(id, from, client, ref)
		return err
	})
	if err != nil {
		return nil, welcomeTreeError(err)
	}
	return view, nil
}

// writeTree streams a tree's wire form as application/mimi. A write that
// fails midway aborts the response, so the reader sees a broken transfer,
// never a short tree.
func writeTree(w http.ResponseWriter, r *http.Request, view *mls.TreeView) {
	h := w.Header()
	h.Set("Content-Type", mimiContentType)
	h.Set("Content-Length", strconv.Itoa(view.EncodedLen()))
	w.WriteHeader(http.StatusOK)
	if _, err := view.WriteTo(w); err != nil {
		panic(http.ErrAbortHandler)
	}
	chargeResponse(r, view.EncodedLen())
}

// welcomeTree: GET /v1/rooms/{hub}/{room}/tree?keypackage=REF, the ratchet
// tree a Welcome to the authenticated client needs when it came without
// one (byReference). REF is the base64url KeyPackageRef the Welcome names.
// For a room hosted elsewhere the hub's answer is relayed as it arrives,
// never held whole.
func (c *clientAPI) welcomeTree(w http.ResponseWriter, r *http.Request, p *principal) error {
	id, local, err := c.roomPath(r)
	if err != nil {
		return err
	}
	if err := responseBudget(r); err != nil {
		return err
	}
	ref, err := base64.RawURLEncoding.DecodeString(r.URL.Query().Get("keypackage"))
	if err != nil || len(ref) == 0 || len(ref) > 64 {
		return fail(http.StatusBadRequest, "keypackage must be the Welcome's KeyPackageRef in unpadded base64url (1 to 64 bytes)")
	}
	if local {
		view, err := readWelcomeTree(r, c.backend, id, c.domain, p.client, ref)
		if err != nil {
			return err
		}
		writeTree(w, r, view)
		return nil
	}
	hub, _ := id.Domain()
	body, n, err := c.peers.WelcomeTree(r.Context(), id, &proto.WelcomeTreeRequest{Client: p.client, KeyPackageRef: ref})
	if err != nil {
		return relayFailure(err, hub)
	}
	defer body.Close()
	h := w.Header()
	h.Set("Content-Type", mimiContentType)
	if n >= 0 {
		h.Set("Content-Length", strconv.FormatInt(n, 10))
	}
	w.WriteHeader(http.StatusOK)
	copied, err := io.Copy(w, body)
	if err != nil {
		c.log.DebugContext(r.Context(), "relaying a Welcome's tree failed", "room", id, "hub", hub, "error", err)
		panic(http.ErrAbortHandler)
	}
	chargeResponse(r, int(copied))
	return nil
}

// welcomeTree: POST /welcomeTree/{roomId} (an extension, DECISIONS.md item
// 5), the provider of a Welcome's recipient fetching the tree of the
// Welcome's epoch. The peer vouches for its client; the room checks the
// Welcome went to that client of that peer.
func (f *federation) welcomeTree(w http.ResponseWriter, r *http.Request, peer string) error {
	var req proto.WelcomeTreeRequest
	id, err := f.hostedRoomRequest(w, r, &req, "WelcomeTreeRequest")
	if err != nil {
		return err
	}
	if d, err := req.Client.Domain(); err != nil || d != peer {
		return fail(http.StatusForbidden, "%s may fetch trees only for its own clients, not %q", peer, req.Client)
	}
	if err := responseBudget(r); err != nil {
		return err
	}
	view, err := readWelcomeTree(r, f.backend, id, peer, req.Client, req.KeyPackageRef)
	if err != nil {
		return err
	}
	writeTree(w, r, view)
	return nil
}

// byReference checks a commit's full tree at the edge and drops it: the
// tree must hash to the tree_hash of the GroupInfo the committer signed
// (which the room checks against the tree it computes), so the tree is
// the new epoch's and need not enter the log nor be compared by every
// replica, which costs O(members). A tree that is not the new epoch's is
// refused as the room would refuse it (invalidProposal); the answer is
// then non-nil and nothing is applied.
func byReference(req *proto.UpdateRoomRequest, maxVector int) *proto.UpdateRoomResponse {
	if !req.IsCommit() || req.RatchetTree.Representation != proto.TreeFull || req.GroupInfo == nil || req.GroupInfo.GroupInfo == nil {
		return nil // nothing to check here; the room answers the rest
	}
	gc := &req.GroupInfo.GroupInfo.GroupContext
	h, err := mls.RatchetTreeHash(gc.CipherSuite, req.RatchetTree.Tree, maxVector)
	switch {
	case err != nil:
		return &proto.UpdateRoomResponse{Code: proto.UpdateInvalidProposal, Description: fmt.Sprintf("the ratchet tree sent does not decode: %v", err)}
	case !bytes.Equal(h, gc.TreeHash):
		return &proto.UpdateRoomResponse{Code: proto.UpdateInvalidProposal, Description: "the ratchet tree sent differs from the tree the commit produces (its tree hash is not the GroupInfo's)"}
	}
	req.RatchetTree = proto.RatchetTreeOption{Representation: proto.TreeByReference}
	return nil
}

// readGroupInfo answers claimGroupInfo for a hosted room from a
// linearizable read; the tree in the answer is a captured view, encoded
// only by writeGroupInfo, outside the state's lock.
func readGroupInfo(r *http.Request, b Backend, id proto.URI, from string, req *proto.GroupInfoRequest) (*proto.GroupInfoResponse, error) {
	var resp *proto.GroupInfoResponse
	err := b.Read(r.Context(), true, func(s *fsm.State) error {
		var ok bool
		if resp, ok = s.GroupInfo(id, from, req); !ok {
			resp = &proto.GroupInfoResponse{Status: proto.GroupInfoNoSuchRoom}
		}
		return nil
	})
	return resp, err
}

// writeGroupInfo writes a GroupInfoResponse as application/mimi, its
// tree piece by piece.
func writeGroupInfo(w http.ResponseWriter, r *http.Request, resp *proto.GroupInfoResponse) error {
	n, err := resp.EncodedLen()
	if err != nil {
		return fmt.Errorf("encode GroupInfo response: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", mimiContentType)
	h.Set("Content-Length", strconv.Itoa(n))
	w.WriteHeader(http.StatusOK)
	if _, err := resp.WriteTo(w); err != nil {
		panic(http.ErrAbortHandler)
	}
	chargeResponse(r, n)
	return nil
}

// hostedRoomRequest reads the room a federation path names (hosted here)
// and decodes a small body (MaxBody) into v.
func (f *federation) hostedRoomRequest(w http.ResponseWriter, r *http.Request, v wire.Decoder, what string) (proto.URI, error) {
	id, err := roomVar(r, "roomId", f.domain)
	if err != nil {
		return "", err
	}
	body, err := readBody(w, r, f.cfg.MaxBody)
	if err != nil {
		return "", err
	}
	return id, decode(body, v, f.cfg.MaxVector, what)
}
