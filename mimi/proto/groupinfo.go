package proto

import (
	"fmt"
	"io"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// GroupInfoRequest is the body of /claimGroupInfo (seed section 7.7): the
// credential and key of the client that wants to join.
type GroupInfoRequest struct {
	SignatureKey []byte
	Credential   mls.Credential
}

// EncodeTLS writes the request.
func (g *GroupInfoRequest) EncodeTLS(w *wire.Writer) {
	w.Opaque(g.SignatureKey)
	w.Encode(&g.Credential)
}

// DecodeTLS reads the request.
func (g *GroupInfoRequest) DecodeTLS(r *wire.Reader) {
	r.Opaque(&g.SignatureKey)
	r.Decode(&g.Credential)
}

// GroupInfoCode is the outcome of claimGroupInfo. The seed uses it without
// defining it; these are draft-ietf-mimi-protocol-06's values.
type GroupInfoCode uint8

// Group info codes.
const (
	GroupInfoSuccess       GroupInfoCode = 1
	GroupInfoNotAuthorized GroupInfoCode = 2
	GroupInfoNoSuchRoom    GroupInfoCode = 3
)

func (c GroupInfoCode) String() string {
	return [...]string{"reserved", "success", "notAuthorized", "noSuchRoom", "unknown"}[min(int(c), 4)]
}

// GroupInfoResponse answers claimGroupInfo. On success it carries the
// current GroupInfo, the tree, and the pending proposals of the epoch an
// external commit must cover (SelfRemoves, draft-ietf-mls-extensions); on
// failure only the code.
type GroupInfoResponse struct {
	Status           GroupInfoCode
	GroupInfo        *mls.Message // mls_group_info
	RatchetTree      RatchetTreeOption
	PendingProposals []*mls.Message // mls_public_message
}

// EncodeTLS writes the response.
func (g *GroupInfoResponse) EncodeTLS(w *wire.Writer) {
	w.Uint8(uint8(g.Status))
	if g.Status != GroupInfoSuccess {
		return
	}
	writeMessage(w, g.GroupInfo, "GroupInfo")
	w.Encode(&g.RatchetTree)
	writeMessages(w, g.PendingProposals, "pending proposal")
}

// DecodeTLS reads the response.
func (g *GroupInfoResponse) DecodeTLS(r *wire.Reader) {
	*g = GroupInfoResponse{}
	readEnum(r, &g.Status, "group info code", func(c GroupInfoCode) bool { return c >= GroupInfoSuccess && c <= GroupInfoNoSuchRoom })
	if !r.OK() || g.Status != GroupInfoSuccess {
		return
	}
	g.GroupInfo = readMessage(r, mls.WireGroupInfo, "GroupInfo")
	r.Decode(&g.RatchetTree)
	g.PendingProposals = readMessages(r, mls.WirePublicMessage, "pending proposal")
}

// split encodes the response around a full tree given as a View: the
// bytes before the tree, and after. ok is false when there is no such
// tree.
func (g *GroupInfoResponse) split() (head, tail []byte, ok bool, err error) {
	if g.Status != GroupInfoSuccess || g.RatchetTree.Representation != TreeFull || g.RatchetTree.Tree != nil || g.RatchetTree.View == nil {
		return nil, nil, false, nil
	}
	var h wire.Writer
	h.Uint8(uint8(g.Status))
	writeMessage(&h, g.GroupInfo, "GroupInfo")
	h.Uint8(uint8(TreeFull))
	if head, err = h.Bytes(); err != nil {
		return nil, nil, false, fmt.Errorf("encode GroupInfoResponse: %w", err)
	}
	var t wire.Writer
	writeMessages(&t, g.PendingProposals, "pending proposal")
	if tail, err = t.Bytes(); err != nil {
		return nil, nil, false, fmt.Errorf("encode GroupInfoResponse: %w", err)
	}
	return head, tail, true, nil
}

// EncodedLen returns the length of the response's encoding.
func (g *GroupInfoResponse) EncodedLen() (int, error) {
	head, tail, ok, err := g.split()
	if err != nil {
		return 0, err
	}
	if ok {
		return len(head) + g.RatchetTree.View.EncodedLen() + len(tail), nil
	}
	b, err := wire.Marshal(g)
	return len(b), err
}

// WriteTo writes the response's encoding to w; a full tree given as a
// View is written piece by piece, never built whole.
func (g *GroupInfoResponse) WriteTo(w io.Writer) (int64, error) {
	head, tail, ok, err := g.split()
	if err != nil {
		return 0, err
	}
	if !ok {
		b, err := wire.Marshal(g)
		if err != nil {
			return 0, err
		}
		n, err := w.Write(b)
		return int64(n), err
	}
	var total int64
	for _, part := range []io.WriterTo{bytesWriterTo(head), g.RatchetTree.View, bytesWriterTo(tail)} {
		n, err := part.WriteTo(w)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

type bytesWriterTo []byte

func (b bytesWriterTo) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(b)
	return int64(n), err
}
