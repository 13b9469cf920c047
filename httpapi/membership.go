package httpapi

import (
	"bytes"
	"net/http"
	"slices"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// confirmMembership checks, before a client follows a room hosted
// elsewhere, that it is in the room: it already follows it (it was
// welcomed, or joined by external commit through this provider, which
// subscribes it while the join is in flight), or the room's hub confirms
// it. The hub is asked with claimGroupInfo for the client (seed section
// 7.7): it answers participants with the group's ratchet tree, in which
// the client must have a leaf. Nothing else is trusted: a client that is
// not a member would receive the room's fanout meant for the members of
// this provider.
func (c *clientAPI) confirmMembership(r *http.Request, p *principal, id proto.URI) error {
	var following bool
	if err := c.backend.Read(r.Context(), true, func(s *fsm.State) error {
		following = slices.Contains(s.Subscribers(id), p.client)
		return nil
	}); err != nil {
		return err
	}
	if following {
		return nil
	}
	// The hub's answer (the GroupInfo and the whole tree) costs the client
	// what fetching it itself would: otherwise a client asking again and
	// again would spend this provider's budget at the hub for everyone.
	if err := responseBudget(r); err != nil {
		return err
	}
	hub, _ := id.Domain()
	resp, err := c.peers.ClaimGroupInfo(r.Context(), id, &proto.GroupInfoRequest{Credential: mls.BasicCredential([]byte(p.client))})
	if err != nil {
		return relayFailure(err, hub)
	}
	chargeResponse(r, len(resp.RatchetTree.Tree))
	if resp.GroupInfo != nil {
		chargeResponse(r, len(wire.MustMarshal(resp.GroupInfo)))
	}
	if resp.Status != proto.GroupInfoSuccess || resp.GroupInfo == nil || resp.GroupInfo.GroupInfo == nil {
		return fail(http.StatusForbidden, "%s is not a member of %s: its hub answered %s", p.client, id, resp.Status)
	}
	if resp.RatchetTree.Representation != proto.TreeFull {
		return fail(http.StatusForbidden, "the hub %s did not show the members of %s, so membership of %s cannot be confirmed", hub, id, p.client)
	}
	suite, err := resp.GroupInfo.GroupInfo.GroupContext.CipherSuite.Suite()
	if err != nil {
		return fail(http.StatusBadGateway, "the hub %s answered with %v", hub, err)
	}
	tree, err := mls.DecodeTree(suite, resp.RatchetTree.Tree, c.cfg.MaxVector)
	if err != nil {
		return fail(http.StatusBadGateway, "the hub %s answered with a ratchet tree that does not decode: %v", hub, err)
	}
	for _, leaf := range tree.Members() {
		if leaf.Credential.Type == mls.CredentialBasic && bytes.Equal(leaf.Credential.Identity, []byte(p.client)) {
			return nil
		}
	}
	return fail(http.StatusForbidden, "%s is not a member of %s (its hub lists no leaf for it)", p.client, id)
}
