package proto

import (
	"fmt"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Code points mimi-hub gives the seed's MLS objects, from RFC 9420's private
// use range (see DECISIONS.md).
const (
	// ProposalParticipantListPatch carries a ParticipantListPatch as a
	// custom proposal body (one opaque<V>).
	ProposalParticipantListPatch mls.ProposalType = 0xF001
	// ExtBasePolicy carries the room's BasePolicy in the GroupContext.
	ExtBasePolicy mls.ExtensionType = 0xF002
)

// Role is a participant's role (seed section 7.4). Lower values rank higher.
type Role uint8

// Roles.
const (
	RoleSystem      Role = 1
	RoleOwner       Role = 2
	RoleAdmin       Role = 3
	RoleRegularUser Role = 4
	RoleVisitor     Role = 5
	RoleBanned      Role = 6
)

func (r Role) String() string {
	return [...]string{"reserved", "system", "owner", "admin", "regular_user", "visitor", "banned", "unknown"}[min(int(r), 7)]
}

func validRole(r Role) bool { return r >= RoleSystem && r <= RoleBanned }

func writeRoles(w *wire.Writer, roles []Role) {
	w.Vector(func(w *wire.Writer) {
		for _, r := range roles {
			w.Uint8(uint8(r))
		}
	})
}

func readRoles(r *wire.Reader, out *[]Role) {
	var roles []Role
	r.VectorEach(func(r *wire.Reader) {
		var role Role
		readEnum(r, &role, "role", validRole)
		roles = append(roles, role)
	})
	*out = roles
}

// UserRoles gives a user its roles.
type UserRoles struct {
	User  URI
	Roles []Role
}

// EncodeTLS writes the entry.
func (u *UserRoles) EncodeTLS(w *wire.Writer) {
	u.User.EncodeTLS(w)
	writeRoles(w, u.Roles)
}

// DecodeTLS reads the entry.
func (u *UserRoles) DecodeTLS(r *wire.Reader) {
	u.User.DecodeTLS(r)
	readRoles(r, &u.Roles)
}

// ParticipantListPatch changes the participant list (seed section 7.4).
type ParticipantListPatch struct {
	AddUsers    []UserRoles
	UpdateUsers []UserRoles
	RemoveUsers []URI
}

// EncodeTLS writes the patch.
func (p *ParticipantListPatch) EncodeTLS(w *wire.Writer) {
	writeList(w, p.AddUsers)
	writeList(w, p.UpdateUsers)
	writeURIs(w, p.RemoveUsers)
}

// DecodeTLS reads the patch.
func (p *ParticipantListPatch) DecodeTLS(r *wire.Reader) {
	readList(r, &p.AddUsers)
	readList(r, &p.UpdateUsers)
	readURIs(r, &p.RemoveUsers)
}

// Proposal wraps the patch as an MLS proposal.
func (p *ParticipantListPatch) Proposal() *mls.Proposal {
	return mls.CustomProposal(ProposalParticipantListPatch, wire.MustMarshal(p))
}

// PatchOf decodes the patch an MLS proposal carries; ok is false for other
// proposal types.
func PatchOf(p *mls.Proposal, maxVector int) (patch *ParticipantListPatch, ok bool, err error) {
	if p.Type != ProposalParticipantListPatch {
		return nil, false, nil
	}
	patch = new(ParticipantListPatch)
	if err := Decode(p.Body, patch, maxVector); err != nil {
		return nil, true, fmt.Errorf("ParticipantListPatch: %w", err)
	}
	return patch, true, nil
}

// JoinRule says who may become a participant without being added.
type JoinRule uint8

// Join rules.
const (
	// MembersOnly: users join only when a participant with the right adds
	// them.
	MembersOnly JoinRule = 1
	// Open: any user may join by external commit and becomes a regular
	// user.
	Open JoinRule = 2
)

// BasePolicy is the room's base policy (seed section 6.2), carried whole in
// the ExtBasePolicy GroupContext extension and changed only whole, by a
// GroupContextExtensions proposal.
type BasePolicy struct {
	JoinRule JoinRule
	// MultipleClients allows a user more than one client in the group.
	MultipleClients bool
	// The roles allowed each action. A participant may act if any of its
	// roles is listed; banned participants never act.
	AddUsers     []Role
	RemoveUsers  []Role
	ChangeRoles  []Role
	Ban          []Role
	Send         []Role
	ChangePolicy []Role
}

// DefaultPolicy is the policy of the seed's example room: members only,
// several clients per user, owners and admins add and remove users and
// change roles and bans, every non-visitor sends, owners change the policy.
func DefaultPolicy() BasePolicy {
	staff := []Role{RoleSystem, RoleOwner, RoleAdmin}
	return BasePolicy{
		JoinRule:        MembersOnly,
		MultipleClients: true,
		AddUsers:        staff,
		RemoveUsers:     staff,
		ChangeRoles:     staff,
		Ban:             staff,
		Send:            []Role{RoleSystem, RoleOwner, RoleAdmin, RoleRegularUser},
		ChangePolicy:    []Role{RoleSystem, RoleOwner},
	}
}

// EncodeTLS writes the policy.
func (p *BasePolicy) EncodeTLS(w *wire.Writer) {
	w.Uint8(uint8(p.JoinRule))
	w.Bool(p.MultipleClients)
	for _, roles := range [][]Role{p.AddUsers, p.RemoveUsers, p.ChangeRoles, p.Ban, p.Send, p.ChangePolicy} {
		writeRoles(w, roles)
	}
}

// DecodeTLS reads the policy.
func (p *BasePolicy) DecodeTLS(r *wire.Reader) {
	readEnum(r, &p.JoinRule, "join rule", func(j JoinRule) bool { return j == MembersOnly || j == Open })
	r.Bool(&p.MultipleClients)
	for _, roles := range []*[]Role{&p.AddUsers, &p.RemoveUsers, &p.ChangeRoles, &p.Ban, &p.Send, &p.ChangePolicy} {
		readRoles(r, roles)
	}
}

// Extension returns the policy as its GroupContext extension.
func (p *BasePolicy) Extension() mls.Extension {
	return mls.Extension{Type: ExtBasePolicy, Data: wire.MustMarshal(p)}
}

// PolicyOf decodes the base policy among GroupContext extensions.
func PolicyOf(ext mls.Extensions) (*BasePolicy, error) {
	data, ok := ext.Find(ExtBasePolicy)
	if !ok {
		return nil, fmt.Errorf("the group context has no base policy extension (0x%04x)", uint16(ExtBasePolicy))
	}
	p := new(BasePolicy)
	if err := wire.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("base policy: %w", err)
	}
	return p, nil
}

// Allows reports whether a participant with roles may act where allowed is
// the policy's list for the action.
func Allows(allowed, roles []Role) bool {
	if slices.Contains(roles, RoleBanned) {
		return false
	}
	for _, r := range roles {
		if slices.Contains(allowed, r) {
			return true
		}
	}
	return false
}

// RatchetTreeRepresentation says how an updateRoom or GroupInfo response
// conveys the ratchet tree.
type RatchetTreeRepresentation uint8

// Representations. mimi-hub sends full and accepts full and byReference
// (the hub derives the tree itself, and a Welcome's recipient fetches it:
// DECISIONS.md 5); the others have no defined syntax.
const (
	TreeFull        RatchetTreeRepresentation = 1
	TreeCompressed  RatchetTreeRepresentation = 2
	TreeDelta       RatchetTreeRepresentation = 3
	TreePatch       RatchetTreeRepresentation = 4
	TreeByReference RatchetTreeRepresentation = 5
)

// RatchetTreeOption carries a ratchet tree.
type RatchetTreeOption struct {
	Representation RatchetTreeRepresentation
	// Tree is the ratchet tree in RFC 9420 wire form (optional<Node>
	// ratchet_tree<V>) for TreeFull.
	Tree []byte
	// View, when Tree is nil, is a captured tree to send as TreeFull:
	// a server writes it piece by piece (GroupInfoResponse.WriteTo)
	// instead of building its encoding. Decoding never sets it.
	View *mls.TreeView
}

// Bytes returns a full tree's wire form (from Tree, else View), or nil.
func (o *RatchetTreeOption) Bytes() []byte {
	switch {
	case o.Representation != TreeFull:
		return nil
	case o.Tree != nil:
		return o.Tree
	case o.View != nil:
		return o.View.Bytes()
	}
	return nil
}

// EncodeTLS writes the option.
func (o *RatchetTreeOption) EncodeTLS(w *wire.Writer) {
	w.Uint8(uint8(o.Representation))
	if o.Representation == TreeFull {
		tree := o.Bytes()
		if tree == nil {
			w.Fail(fmt.Errorf("a full RatchetTreeOption without a tree"))
			return
		}
		w.Raw(tree)
	}
}

// DecodeTLS reads the option. A full tree is kept encoded; its vector
// framing is checked here and its contents by whoever uses it.
func (o *RatchetTreeOption) DecodeTLS(r *wire.Reader) {
	readEnum(r, &o.Representation, "ratchet tree representation", func(t RatchetTreeRepresentation) bool { return t >= TreeFull && t <= TreeByReference })
	o.Tree, o.View = nil, nil
	if o.Representation == TreeFull {
		o.Tree = r.Capture(func(r *wire.Reader) { r.Vector(func(r *wire.Reader) { r.Rest() }) })
	}
}

// UpdateRoomRequest is the body of /updateRoom (seed section 7.4): a commit
// with its Welcome, GroupInfo and tree, or proposals.
type UpdateRoomRequest struct {
	// Message is an MLSMessage of wire format mls_public_message holding a
	// commit or a proposal.
	Message *mls.Message
	// For a commit:
	Welcome     *mls.Message // optional
	GroupInfo   *mls.Message
	RatchetTree RatchetTreeOption
	// For a proposal:
	MoreProposals []*mls.Message
}

// IsCommit reports whether the request carries a commit.
func (u *UpdateRoomRequest) IsCommit() bool {
	return u.Message != nil && u.Message.Public != nil && u.Message.Public.Content.ContentType == mls.ContentCommit
}

// EncodeTLS writes the request.
func (u *UpdateRoomRequest) EncodeTLS(w *wire.Writer) {
	writeMessage(w, u.Message, "updateRoom message")
	if u.IsCommit() {
		w.Optional(u.Welcome != nil, func(w *wire.Writer) { writeMessage(w, u.Welcome, "Welcome") })
		writeMessage(w, u.GroupInfo, "GroupInfo")
		w.Encode(&u.RatchetTree)
		return
	}
	writeMessages(w, u.MoreProposals, "proposal")
}

// DecodeTLS reads the request.
func (u *UpdateRoomRequest) DecodeTLS(r *wire.Reader) {
	*u = UpdateRoomRequest{}
	u.Message = readMessage(r, mls.WirePublicMessage, "updateRoom message")
	if !r.OK() {
		return
	}
	switch u.Message.Public.Content.ContentType {
	case mls.ContentCommit:
		r.Optional(func(r *wire.Reader) { u.Welcome = readMessage(r, mls.WireWelcome, "Welcome") })
		u.GroupInfo = readMessage(r, mls.WireGroupInfo, "GroupInfo")
		r.Decode(&u.RatchetTree)
	case mls.ContentProposal:
		u.MoreProposals = readMessages(r, mls.WirePublicMessage, "proposal")
	default:
		r.Failf("updateRoom carries a %s, not a commit or proposal", u.Message.Public.Content.ContentType)
	}
}

// UpdateResponseCode is the outcome of updateRoom and provisionalMessage.
type UpdateResponseCode uint8

// Response codes.
const (
	UpdateSuccess         UpdateResponseCode = 0
	UpdateWrongEpoch      UpdateResponseCode = 1
	UpdateNotAllowed      UpdateResponseCode = 2
	UpdateHubUnresponsive UpdateResponseCode = 3
	UpdateInvalidProposal UpdateResponseCode = 4
)

func (c UpdateResponseCode) String() string {
	return [...]string{"success", "wrongEpoch", "notAllowed", "hubUnresponsive", "invalidProposal", "unknown"}[min(int(c), 5)]
}

// UpdateRoomResponse answers updateRoom (and provisionalMessage).
type UpdateRoomResponse struct {
	Code        UpdateResponseCode
	Description string
}

// EncodeTLS writes the response.
func (u *UpdateRoomResponse) EncodeTLS(w *wire.Writer) {
	w.Uint8(uint8(u.Code))
	writeString(w, u.Description)
}

// DecodeTLS reads the response.
func (u *UpdateRoomResponse) DecodeTLS(r *wire.Reader) {
	readEnum(r, &u.Code, "update response code", func(c UpdateResponseCode) bool { return c <= UpdateInvalidProposal })
	readString(r, &u.Description)
}

// FanoutMessage is one message the hub fans out (seed section 7.6).
type FanoutMessage struct {
	Message *mls.Message
	// Timestamp is the hub's acceptance time in milliseconds since the Unix
	// epoch.
	Timestamp uint64
}

// EncodeTLS writes the fanout message.
func (f *FanoutMessage) EncodeTLS(w *wire.Writer) {
	writeMessage(w, f.Message, "fanout message")
	w.Uint64(f.Timestamp)
}

// DecodeTLS reads the fanout message.
func (f *FanoutMessage) DecodeTLS(r *wire.Reader) {
	f.Message = new(mls.Message)
	r.Decode(f.Message)
	if r.OK() {
		switch f.Message.WireFormat {
		case mls.WirePublicMessage, mls.WirePrivateMessage, mls.WireWelcome:
		default:
			r.Failf("a fanout message cannot be a %s", f.Message.WireFormat)
		}
	}
	r.Uint64(&f.Timestamp)
}

// FanoutBatch is a /fanout body: one or more concatenated FanoutMessages.
type FanoutBatch []FanoutMessage

// EncodeTLS writes the messages back to back.
func (b FanoutBatch) EncodeTLS(w *wire.Writer) {
	for i := range b {
		w.Encode(&b[i])
	}
}

// DecodeTLS reads messages until the input ends; there must be at least one.
func (b *FanoutBatch) DecodeTLS(r *wire.Reader) {
	*b = nil
	for r.OK() && (len(*b) == 0 || !r.Empty()) {
		var f FanoutMessage
		f.DecodeTLS(r)
		*b = append(*b, f)
	}
}
