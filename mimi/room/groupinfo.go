package room

import (
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// ClaimGroupInfo is a claimGroupInfo request (seed section 7.7) from
// provider From for one of its clients, which wants to join by external
// commit. It changes nothing.
type ClaimGroupInfo struct {
	From string
	Body *proto.GroupInfoRequest
}

func (q *ClaimGroupInfo) apply(r *Room, _ uint64) Outcome {
	deny := Outcome{GroupInfo: &proto.GroupInfoResponse{Status: proto.GroupInfoNotAuthorized}}
	if q.Body == nil {
		return deny
	}
	leaf := mls.LeafNode{Credential: q.Body.Credential}
	m, err := memberOf(&leaf)
	if err != nil || m.domain != q.From {
		return deny
	}
	// Participants' new clients may join (seed section 6.7); anyone not
	// banned may join an open room.
	p := r.participants.get(m.user)
	if (p == nil && r.Policy().JoinRule != proto.Open) || (p != nil && p.Banned()) {
		return deny
	}
	var gi mls.GroupInfo
	if err := wire.Unmarshal(r.group.GroupInfo(), &gi); err != nil {
		panic("room: stored GroupInfo does not decode: " + err.Error())
	}
	resp := &proto.GroupInfoResponse{
		Status:    proto.GroupInfoSuccess,
		GroupInfo: mls.NewGroupInfoMessage(&gi),
		// Captured, not encoded: the caller writes it outside the state's
		// lock (GroupInfoResponse.WriteTo).
		RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeFull, View: r.group.Tree().View()},
	}
	// An external commit must cover the queued SelfRemoves
	// (draft-ietf-mls-extensions): exactly what the joiner gets. It can
	// cover nothing else; the hub carries the rest of the queue over.
	for _, enc := range r.group.PendingMessages() {
		pm, err := mls.DecodeMessage(enc)
		if err == nil && pm.Public.Content.Proposal.Type == mls.ProposalSelfRemove {
			resp.PendingProposals = append(resp.PendingProposals, pm)
		}
	}
	return Outcome{GroupInfo: resp}
}
