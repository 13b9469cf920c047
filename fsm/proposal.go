package fsm

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Proposal is a command as the API hands it to the cluster: what to do,
// for which peer, and the credential of the client it acts for.
type Proposal struct {
	Type CommandType
	// RequestID makes the command idempotent (see Command); the cluster
	// draws one when it is empty.
	RequestID []byte
	// Peer is the authenticated provider of a federation request; empty
	// for the provider's own clients and for the server itself.
	Peer string
	// Body is the type's body.
	Body wire.Encoder
	// Auth, when set, is the credential of the client the command acts
	// for, not yet confirmed on a linearizable read: Admit and Apply
	// refuse the command once the token was revoked (see Command.Auth).
	Auth *ClientToken
}

// Command encodes the proposal as a command (unstamped), with the
// proposer's pre-verification when there is one.
func (p *Proposal) Command(verified *mls.Verified) ([]byte, error) {
	var b []byte
	if p.Body != nil {
		var err error
		if b, err = wire.Marshal(p.Body); err != nil {
			return nil, fmt.Errorf("encode %s body: %w", p.Type, err)
		}
	}
	return wire.Marshal(&Command{Type: p.Type, RequestID: p.RequestID, Peer: p.Peer, Body: b, Auth: p.Auth, Verified: verified})
}

// ClientToken is a local client's bearer token as a command carries it:
// the client and the SHA-256 of its token (never the token).
type ClientToken struct {
	Client    proto.URI
	TokenHash []byte
}

// EncodeTLS writes the credential.
func (c *ClientToken) EncodeTLS(w *wire.Writer) {
	c.Client.EncodeTLS(w)
	w.Opaque(c.TokenHash)
}

// DecodeTLS reads the credential.
func (c *ClientToken) DecodeTLS(r *wire.Reader) {
	c.Client.DecodeTLS(r)
	r.Opaque(&c.TokenHash)
}

// checkCredential refuses a command whose credential is no longer valid:
// the device was revoked (it has no record, or another token), or its
// user is suspended. It is the same test as Authenticate, made in log
// order, so a command committed after a revocation is refused on every
// replica.
func (s *State) checkCredential(c *ClientToken) *Result {
	if c == nil {
		return nil
	}
	rec, ok := s.clients[c.Client]
	user, _ := c.Client.UserOf()
	if !ok || subtle.ConstantTimeCompare(rec.tokenHash, c.TokenHash) != 1 || s.acct.suspended(user) {
		return refused(Unauthenticated, "the token of %s is not valid (unknown, revoked, or its user is suspended)", c.Client)
	}
	return nil
}

// Stamp returns a copy of an encoded command with its acceptance time set.
// The leader calls it just before proposing, so every replica sees the
// same time. cmd itself is not modified: Raft may still hold it.
func Stamp(cmd []byte, acceptedAt uint64) ([]byte, error) {
	off, err := acceptedAtOffset(cmd)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(cmd)
	binary.BigEndian.PutUint64(out[off:], acceptedAt)
	return out, nil
}

// acceptedAtOffset finds AcceptedAt in an encoded command, checking the
// whole command decodes.
func acceptedAtOffset(cmd []byte) (int, error) {
	var c Command
	if err := wire.Unmarshal(cmd, &c); err != nil {
		return 0, err
	}
	r := wire.NewReader(cmd)
	var v, t uint8
	var id []byte
	r.Uint8(&v)
	r.Uint8(&t)
	r.Opaque(&id)
	return r.Offset(), r.Err()
}

// maxBatch bounds the commands of one batch entry.
const maxBatch = 1024

// BatchBody is a CmdBatch: encoded commands, unstamped, applied in order
// as if each were an entry of its own stamped with the batch's time. The
// leader batches what arrives while earlier entries are still in flight,
// so one entry (one log write, one replication, one FSM call) carries many
// commands.
type BatchBody struct {
	Commands [][]byte
}

// EncodeTLS writes the batch.
func (b *BatchBody) EncodeTLS(w *wire.Writer) {
	w.Vector(func(w *wire.Writer) {
		for _, c := range b.Commands {
			w.Opaque(c)
		}
	})
}

// DecodeTLS reads the batch.
func (b *BatchBody) DecodeTLS(r *wire.Reader) {
	b.Commands = nil
	r.VectorEach(func(r *wire.Reader) {
		var c []byte
		r.Opaque(&c)
		if r.OK() && len(b.Commands) == maxBatch {
			r.Failf("a batch of more than %d commands", maxBatch)
		}
		b.Commands = append(b.Commands, c)
	})
}

// NewBatch returns a stamped CmdBatch entry of encoded commands, each as
// NewCommand or Proposal.Command made it.
func NewBatch(cmds [][]byte, acceptedAt uint64) ([]byte, error) {
	if len(cmds) == 0 || len(cmds) > maxBatch {
		return nil, fmt.Errorf("a batch of %d commands; 1 to %d", len(cmds), maxBatch)
	}
	body, err := wire.Marshal(&BatchBody{Commands: cmds})
	if err != nil {
		return nil, err
	}
	return wire.Marshal(&Command{Type: CmdBatch, AcceptedAt: acceptedAt, Body: body})
}

// MaxBatch is how many commands one CmdBatch holds at most.
func MaxBatch() int { return maxBatch }

// BatchResult is what FSM.Apply returns for a CmdBatch: each command's
// result, in order.
type BatchResult struct {
	Results []*Result
}

// applyBatch applies a batch's commands in order.
func (s *State) applyBatch(c *Command) (*BatchResult, *Result) {
	if c.Peer != "" || len(c.RequestID) > 0 || c.Auth != nil || c.Verified != nil {
		return nil, refused(Invalid, "a batch carries nothing but its commands")
	}
	b, r := body[BatchBody](c, s.maxVector())
	if r != nil {
		return nil, r
	}
	out := &BatchResult{Results: make([]*Result, len(b.Commands))}
	for i, enc := range b.Commands {
		var sub Command
		if err := wire.Unmarshal(enc, &sub); err != nil {
			out.Results[i] = refused(Invalid, "command %d of a batch: %v", i, err)
			continue
		}
		if sub.Type == CmdBatch {
			out.Results[i] = refused(Invalid, "a batch inside a batch")
			continue
		}
		sub.AcceptedAt = c.AcceptedAt
		out.Results[i] = s.apply(&sub)
	}
	return out, nil
}

// DeliveredManyBody records delivery progress for several peers in one
// entry: for each, the outbox items up to UpTo were delivered.
type DeliveredManyBody struct {
	Marks []DeliveredBody
}

// maxDeliveredMarks bounds the peers of one DeliveredManyBody.
const maxDeliveredMarks = 65536

// EncodeTLS writes the marks.
func (b *DeliveredManyBody) EncodeTLS(w *wire.Writer) {
	w.Vector(func(w *wire.Writer) {
		for i := range b.Marks {
			b.Marks[i].EncodeTLS(w)
		}
	})
}

// DecodeTLS reads the marks.
func (b *DeliveredManyBody) DecodeTLS(r *wire.Reader) {
	b.Marks = nil
	r.VectorEach(func(r *wire.Reader) {
		var m DeliveredBody
		m.DecodeTLS(r)
		if r.OK() && len(b.Marks) == maxDeliveredMarks {
			r.Failf("more than %d delivery marks", maxDeliveredMarks)
		}
		b.Marks = append(b.Marks, m)
	})
}

// deliveredMany drops the outbox items the marks cover. A mark for a peer
// with nothing queued, or behind what is queued, changes nothing (item ids
// are never reused, so it was meant for items already gone); when no mark
// changes anything the command is answered as unchanged.
func (s *State) deliveredMany(b *DeliveredManyBody) *Result {
	changed := false
	for _, m := range b.Marks {
		if s.deliveredTo(m.Domain, m.UpTo) > 0 {
			changed = true
		}
	}
	if !changed {
		return answerUnchanged(nil)
	}
	return success(nil)
}

// ProposalOf decodes an encoded command (as Proposal.Command made it) back
// into a proposal, its body decoded for the types Admit decides on, and
// returns the command's pre-verification too. Call it under FSM.Read: it
// decodes with the state's bounds.
func (s *State) ProposalOf(cmd []byte) (*Proposal, *mls.Verified, error) {
	var c Command
	if err := wire.Unmarshal(cmd, &c); err != nil {
		return nil, nil, err
	}
	p := &Proposal{Type: c.Type, RequestID: c.RequestID, Peer: c.Peer, Auth: c.Auth}
	var r *Result
	switch c.Type {
	case CmdUpdateRoom, CmdProvisional, CmdReportAbuse:
		p.Body, r = body[RoomBody](&c, s.maxVector())
	case CmdFanout:
		p.Body, r = body[FanoutBody](&c, s.maxVector())
	case CmdAck:
		p.Body, r = body[AckBody](&c, s.maxVector())
	case CmdSubscribe:
		p.Body, r = body[SubscribeBody](&c, s.maxVector())
	case CmdUploadKeyPackages:
		p.Body, r = body[UploadBody](&c, s.maxVector())
	case CmdCreateRoom:
		p.Body, r = body[CreateRoomBody](&c, s.maxVector())
	case CmdRegister:
		p.Body, r = body[RegisterBody](&c, s.maxVector())
	default:
		p.Body = rawBody(c.Body)
	}
	if r != nil {
		return nil, nil, r.Err()
	}
	return p, c.Verified, nil
}

// rawBody is a body kept as it was encoded.
type rawBody []byte

// EncodeTLS writes the body as it came.
func (b rawBody) EncodeTLS(w *wire.Writer) { w.Raw(b) }
