package fsm

import (
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// CommandType says what a command does.
type CommandType uint8

// Command types. Values are part of the log format: never renumber.
const (
	CmdRegister          CommandType = 1  // a local user's client registers
	CmdUploadKeyPackages CommandType = 2  // a local client uploads KeyPackages
	CmdCreateRoom        CommandType = 3  // a local client creates a room hosted here
	CmdUpdateRoom        CommandType = 4  // updateRoom for a hosted room
	CmdProvisional       CommandType = 5  // provisionalMessage for a hosted room
	CmdReportAbuse       CommandType = 6  // reportAbuse for a hosted room
	CmdRouteKeyPackages  CommandType = 7  // KeyPackages claimed through this hub for a room
	CmdClaimKeyMaterial  CommandType = 8  // a claim on local users' KeyPackages
	CmdConsent           CommandType = 9  // a consent operation, local or from a peer
	CmdFanout            CommandType = 10 // fanout received from a room's hub
	CmdDelivered         CommandType = 11 // outbox items delivered to a peer
	CmdAck               CommandType = 12 // a client read its stream up to a point
	CmdSubscribe         CommandType = 13 // a local client joins or leaves a room's stream
	CmdPrune             CommandType = 14 // drop expired KeyPackages and routes
	CmdHubKey            CommandType = 15 // set the hub's external-sender secret, once
	CmdRemoveClients     CommandType = 16 // remove clients from rooms with the hub's own proposals
	CmdSetBounds         CommandType = 17 // set the state bounds every node applies the log with (bounds.go)
	CmdOutboxIDs         CommandType = 31 // number outbox items state-wide and forget empty queues from here on (outbox.go)

	// Accounts (accounts.go): 20-39.
	CmdCreateUser   CommandType = 20 // a new local user with its first device
	CmdAddDevice    CommandType = 21 // a device added with the account's password
	CmdRequestLink  CommandType = 22 // a new device asks an existing one for approval
	CmdApproveLink  CommandType = 23 // an existing device approves a link request
	CmdSetPassword  CommandType = 24 // set or change the account's password
	CmdRevokeDevice CommandType = 25 // a device is revoked by its user or an operator
	CmdSuspendUser  CommandType = 26 // an operator suspends or reinstates a user
	CmdMintInvite   CommandType = 27 // an operator mints a single-use invite code
	CmdInviteDevice CommandType = 28 // an existing device invites a new device of its user
	CmdRedeemInvite CommandType = 29 // a new device redeems its user's device invitation
	CmdCancelInvite CommandType = 30 // a device cancels an open device invitation of its user
	// 31 is CmdOutboxIDs, above.
	CmdPasswordFailure CommandType = 32 // a wrong password was tried for a user (passwordguard.go)
	CmdLogLevel        CommandType = 33 // apply the rules of a higher log level from here on (levels.go)

	// Throughput (proposal.go): 40-49.
	CmdBatch         CommandType = 40 // several commands in one entry, applied in order
	CmdDeliveredMany CommandType = 41 // outbox items delivered, for several peers at once
)

// LogLevel numbers the command set this release applies, for rolling
// upgrades: a node advertises it (cluster gossip), and a leader proposes a
// command that changes how every later entry is applied only once every
// server of the Raft configuration advertises the level that brought it
// (LogLevelOutboxIDs): a node of an older release refuses a command it
// does not know and would go on applying the log by the old rules, its
// state drifting from the others'. Releases before levels advertise none
// (0); level 1 brought CmdOutboxIDs (31) and CmdPasswordFailure (32);
// level 2 brought CmdLogLevel (33) and the rules it turns on
// (rulesHostileInputs, levels.go).
const LogLevel = 2

// LogLevelOutboxIDs is the level every server must advertise before a
// leader proposes CmdOutboxIDs.
const LogLevelOutboxIDs = 1

// LogLevel says which command set this FSM applies (the package's
// LogLevel), for the cluster to advertise (cluster.LogLeveled).
func (f *FSM) LogLevel() int { return LogLevel }

func (t CommandType) String() string {
	names := [...]string{"", "register", "uploadKeyPackages", "createRoom", "updateRoom", "provisionalMessage", "reportAbuse",
		"routeKeyPackages", "claimKeyMaterial", "consent", "fanout", "delivered", "ack", "subscribe", "prune", "hubKey", "removeClients", "setBounds"}
	if int(t) < len(names) && t > 0 {
		return names[t]
	}
	if n, ok := accountCommandNames[t]; ok {
		return n
	}
	switch t {
	case CmdBatch:
		return "batch"
	case CmdDeliveredMany:
		return "deliveredMany"
	case CmdOutboxIDs:
		return "outboxIDs"
	case CmdLogLevel:
		return "logLevel"
	}
	return fmt.Sprintf("command(%d)", uint8(t))
}

// Envelope formats. Version 2 adds the client's credential and the
// proposer's pre-verification; a command with neither is written in
// version 1, which every release decodes.
const (
	commandVersion1 = 1
	commandVersion2 = 2
)

// Command is one entry of the Raft log.
type Command struct {
	Type CommandType
	// RequestID, when set, makes the command idempotent: a command whose
	// id was applied recently returns the first result again, unapplied.
	RequestID []byte
	// AcceptedAt is the leader's acceptance time, in milliseconds since the
	// Unix epoch: the FSM's only clock.
	AcceptedAt uint64
	// Peer is the authenticated provider the request came from; empty for
	// requests of local clients and of the server itself.
	Peer string
	// Body is the encoding of the type's body struct.
	Body []byte
	// Auth is the credential of the local client the command acts for,
	// when the proposing node did not confirm it on a linearizable read:
	// Apply refuses the command (Unauthenticated) unless the token is
	// still the client's and its user is not suspended (version 2).
	Auth *ClientToken
	// Verified is the proposing node's verification of the body's
	// signatures against the room state it names (version 2): Apply
	// skips the checks it covers only while the room is at exactly that
	// state (mimi/mls.Verified; DESIGN.md, "Signatures verified before
	// Apply").
	Verified *mls.Verified
}

// EncodeTLS writes the command.
func (c *Command) EncodeTLS(w *wire.Writer) {
	v2 := c.Auth != nil || c.Verified != nil
	if v2 {
		w.Uint8(commandVersion2)
	} else {
		w.Uint8(commandVersion1)
	}
	w.Uint8(uint8(c.Type))
	w.Opaque(c.RequestID)
	w.Uint64(c.AcceptedAt)
	w.Opaque([]byte(c.Peer))
	w.Opaque(c.Body)
	if v2 {
		w.Optional(c.Auth != nil, func(w *wire.Writer) { c.Auth.EncodeTLS(w) })
		w.Optional(c.Verified != nil, func(w *wire.Writer) { c.Verified.EncodeTLS(w) })
	}
}

// DecodeTLS reads the command (version 1 or 2).
func (c *Command) DecodeTLS(r *wire.Reader) {
	var v, t uint8
	r.Uint8(&v)
	if r.OK() && v != commandVersion1 && v != commandVersion2 {
		r.Failf("command format %d, want %d or %d", v, commandVersion1, commandVersion2)
	}
	r.Uint8(&t)
	c.Type = CommandType(t)
	r.Opaque(&c.RequestID)
	r.Uint64(&c.AcceptedAt)
	var peer []byte
	r.Opaque(&peer)
	c.Peer = string(peer)
	r.Opaque(&c.Body)
	c.Auth, c.Verified = nil, nil
	if v == commandVersion2 {
		r.Optional(func(r *wire.Reader) {
			c.Auth = new(ClientToken)
			c.Auth.DecodeTLS(r)
		})
		r.Optional(func(r *wire.Reader) {
			c.Verified = new(mls.Verified)
			c.Verified.DecodeTLS(r)
		})
		if r.OK() && c.Auth == nil && c.Verified == nil {
			r.Failf("a version 2 command with neither credential nor verification")
		}
	}
}

// NewCommand encodes body into a command of type t.
func NewCommand(t CommandType, requestID []byte, peer string, body wire.Encoder) ([]byte, error) {
	return (&Proposal{Type: t, RequestID: requestID, Peer: peer, Body: body}).Command(nil)
}

// RegisterBody registers a client of a local user; the user is created on
// its first client. Legacy: the API proposes CmdCreateUser, CmdRequestLink
// and CmdAddDevice instead, which need the user's proof for a second
// device; CmdRegister entries already in logs still apply as before.
type RegisterBody struct {
	Client proto.URI
	// TokenHash is the SHA-256 of the client's bearer token; the token
	// itself never enters the log.
	TokenHash []byte
	// Profile is what identifier queries may find of the user; it replaces
	// the user's profile when given.
	Profile []proto.ProfileField
}

// EncodeTLS writes the body.
func (b *RegisterBody) EncodeTLS(w *wire.Writer) {
	b.Client.EncodeTLS(w)
	w.Opaque(b.TokenHash)
	w.Vector(func(w *wire.Writer) {
		for i := range b.Profile {
			b.Profile[i].EncodeTLS(w)
		}
	})
}

// DecodeTLS reads the body.
func (b *RegisterBody) DecodeTLS(r *wire.Reader) {
	b.Client.DecodeTLS(r)
	r.Opaque(&b.TokenHash)
	b.Profile = nil
	r.VectorEach(func(r *wire.Reader) {
		var f proto.ProfileField
		f.DecodeTLS(r)
		b.Profile = append(b.Profile, f)
	})
}

// UploadBody uploads KeyPackages (MLSMessages) of a local client.
type UploadBody struct {
	Client      proto.URI
	KeyPackages []*mls.Message
}

// EncodeTLS writes the body.
func (b *UploadBody) EncodeTLS(w *wire.Writer) {
	b.Client.EncodeTLS(w)
	w.Vector(func(w *wire.Writer) {
		for _, m := range b.KeyPackages {
			w.Encode(m)
		}
	})
}

// DecodeTLS reads the body.
func (b *UploadBody) DecodeTLS(r *wire.Reader) {
	b.Client.DecodeTLS(r)
	b.KeyPackages = nil
	r.VectorEach(func(r *wire.Reader) {
		m := new(mls.Message)
		m.DecodeTLS(r)
		if r.OK() && m.WireFormat != mls.WireKeyPackage {
			r.Failf("an upload holds a %s, not a KeyPackage", m.WireFormat)
		}
		b.KeyPackages = append(b.KeyPackages, m)
	})
}

// CreateRoomBody creates a room hosted here for a local client.
type CreateRoomBody struct {
	Room      proto.URI
	Client    proto.URI // the creating client, whose user becomes owner
	GroupInfo *mls.Message
	Tree      []byte
}

// EncodeTLS writes the body.
func (b *CreateRoomBody) EncodeTLS(w *wire.Writer) {
	b.Room.EncodeTLS(w)
	b.Client.EncodeTLS(w)
	if b.GroupInfo == nil {
		w.Fail(fmt.Errorf("createRoom without a GroupInfo"))
		return
	}
	w.Encode(b.GroupInfo)
	w.Opaque(b.Tree)
}

// DecodeTLS reads the body.
func (b *CreateRoomBody) DecodeTLS(r *wire.Reader) {
	b.Room.DecodeTLS(r)
	b.Client.DecodeTLS(r)
	b.GroupInfo = new(mls.Message)
	r.Decode(b.GroupInfo)
	if r.OK() && b.GroupInfo.WireFormat != mls.WireGroupInfo {
		r.Failf("createRoom carries a %s, not a GroupInfo", b.GroupInfo.WireFormat)
	}
	r.Opaque(&b.Tree)
}

// RoomBody addresses a hosted room with a MIMI request body: an
// UpdateRoomRequest, an MLSMessage (provisional message) or an AbuseReport.
type RoomBody struct {
	Room    proto.URI
	Request []byte
	// Decoded, when the caller has it, is Request decoded: a
	// *proto.UpdateRoomRequest, *mls.Message or *proto.AbuseReport as the
	// command type says. Admit and Precheck use it instead of decoding
	// Request again; it is not encoded, and Apply decodes Request.
	Decoded wire.Decoder
}

// EncodeTLS writes the body.
func (b *RoomBody) EncodeTLS(w *wire.Writer) {
	b.Room.EncodeTLS(w)
	w.Opaque(b.Request)
}

// DecodeTLS reads the body.
func (b *RoomBody) DecodeTLS(r *wire.Reader) {
	b.Room.DecodeTLS(r)
	r.Opaque(&b.Request)
}

// RouteBody records where KeyPackages claimed for a room came from.
type RouteBody struct {
	Room   proto.URI
	Routes []room.Route
}

// EncodeTLS writes the body.
func (b *RouteBody) EncodeTLS(w *wire.Writer) {
	b.Room.EncodeTLS(w)
	w.Vector(func(w *wire.Writer) {
		for _, rt := range b.Routes {
			w.Opaque(rt.Ref)
			w.Opaque([]byte(rt.Domain))
		}
	})
}

// DecodeTLS reads the body.
func (b *RouteBody) DecodeTLS(r *wire.Reader) {
	b.Room.DecodeTLS(r)
	b.Routes = nil
	r.VectorEach(func(r *wire.Reader) {
		var ref, d []byte
		r.Opaque(&ref)
		r.Opaque(&d)
		b.Routes = append(b.Routes, room.Route{Ref: ref, Domain: string(d)})
	})
}

// ClaimBody claims local users' KeyPackages. The command's Peer is the
// requesting provider (empty for a local requester).
type ClaimBody struct {
	Request proto.KeyMaterialRequest
}

// EncodeTLS writes the body.
func (b *ClaimBody) EncodeTLS(w *wire.Writer) { b.Request.EncodeTLS(w) }

// DecodeTLS reads the body.
func (b *ClaimBody) DecodeTLS(r *wire.Reader) { b.Request.DecodeTLS(r) }

// ConsentBody is a consent operation: a local user's when the command has
// no Peer, else one arriving from Peer.
type ConsentBody struct {
	Entry proto.ConsentEntry
}

// EncodeTLS writes the body.
func (b *ConsentBody) EncodeTLS(w *wire.Writer) { b.Entry.EncodeTLS(w) }

// DecodeTLS reads the body.
func (b *ConsentBody) DecodeTLS(r *wire.Reader) { b.Entry.DecodeTLS(r) }

// FanoutBody is a /fanout request from a room's hub (the command's Peer).
type FanoutBody struct {
	Room proto.URI
	// FirstSeq is the hub's number of the first message (Mimi-Sequence);
	// 0 for a hub that numbers nothing (the seed's fanout): its messages
	// are taken in arrival order, duplicates recognized by digest.
	FirstSeq uint64
	Batch    proto.FanoutBatch
	// Exclude lists local clients the hub says must not receive the batch.
	Exclude []proto.URI
}

// EncodeTLS writes the body.
func (b *FanoutBody) EncodeTLS(w *wire.Writer) {
	b.Room.EncodeTLS(w)
	w.Uint64(b.FirstSeq)
	w.Vector(func(w *wire.Writer) { b.Batch.EncodeTLS(w) })
	writeURIs(w, b.Exclude)
}

// DecodeTLS reads the body.
func (b *FanoutBody) DecodeTLS(r *wire.Reader) {
	b.Room.DecodeTLS(r)
	r.Uint64(&b.FirstSeq)
	r.Vector(func(r *wire.Reader) { b.Batch.DecodeTLS(r) })
	b.Exclude = readURIs(r)
}

// DeliveredBody says the outbox items for Domain up to UpTo were delivered.
type DeliveredBody struct {
	Domain string
	UpTo   uint64
}

// EncodeTLS writes the body.
func (b *DeliveredBody) EncodeTLS(w *wire.Writer) {
	w.Opaque([]byte(b.Domain))
	w.Uint64(b.UpTo)
}

// DecodeTLS reads the body.
func (b *DeliveredBody) DecodeTLS(r *wire.Reader) {
	var d []byte
	r.Opaque(&d)
	b.Domain = string(d)
	r.Uint64(&b.UpTo)
}

// AckBody says Client has read its stream up to UpTo.
type AckBody struct {
	Client proto.URI
	UpTo   uint64
}

// EncodeTLS writes the body.
func (b *AckBody) EncodeTLS(w *wire.Writer) {
	b.Client.EncodeTLS(w)
	w.Uint64(b.UpTo)
}

// DecodeTLS reads the body.
func (b *AckBody) DecodeTLS(r *wire.Reader) {
	b.Client.DecodeTLS(r)
	r.Uint64(&b.UpTo)
}

// SubscribeBody makes Client receive (or stop receiving) Room's messages.
type SubscribeBody struct {
	Client    proto.URI
	Room      proto.URI
	Subscribe bool
}

// EncodeTLS writes the body.
func (b *SubscribeBody) EncodeTLS(w *wire.Writer) {
	b.Client.EncodeTLS(w)
	b.Room.EncodeTLS(w)
	w.Bool(b.Subscribe)
}

// DecodeTLS reads the body.
func (b *SubscribeBody) DecodeTLS(r *wire.Reader) {
	b.Client.DecodeTLS(r)
	b.Room.DecodeTLS(r)
	r.Bool(&b.Subscribe)
}

func writeURIs(w *wire.Writer, list []proto.URI) {
	w.Vector(func(w *wire.Writer) {
		for _, u := range list {
			u.EncodeTLS(w)
		}
	})
}

func readURIs(r *wire.Reader) []proto.URI {
	var out []proto.URI
	r.VectorEach(func(r *wire.Reader) {
		var u proto.URI
		u.DecodeTLS(r)
		out = append(out, u)
	})
	return out
}
