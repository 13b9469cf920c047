package fsm

import (
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

var accountCommandNames = map[CommandType]string{
	CmdCreateUser: "createUser", CmdAddDevice: "addDevice", CmdRequestLink: "requestLink", CmdApproveLink: "approveLink",
	CmdSetPassword: "setPassword", CmdRevokeDevice: "revokeDevice", CmdSuspendUser: "suspendUser", CmdMintInvite: "mintInvite",
	CmdInviteDevice: "inviteDevice", CmdRedeemInvite: "redeemInvite", CmdCancelInvite: "cancelInvite",
	CmdPasswordFailure: "passwordFailure",
}

// CreateUserBody creates a local user with its first device. The user must
// not exist, nor one whose name looks like it.
type CreateUserBody struct {
	Client proto.URI
	// TokenHash is the SHA-256 of the device's bearer token.
	TokenHash []byte
	Profile   []proto.ProfileField
	// PasswordHash, optional, is the account's password hash as the node
	// encoded it (argon2id); the password never enters the log.
	PasswordHash []byte
	// InviteHash, when set, is the SHA-256 of the invite code the
	// registration spends.
	InviteHash []byte
}

// EncodeTLS writes the body.
func (b *CreateUserBody) EncodeTLS(w *wire.Writer) {
	b.Client.EncodeTLS(w)
	w.Opaque(b.TokenHash)
	w.Vector(func(w *wire.Writer) {
		for i := range b.Profile {
			b.Profile[i].EncodeTLS(w)
		}
	})
	w.Opaque(b.PasswordHash)
	w.Opaque(b.InviteHash)
}

// DecodeTLS reads the body.
func (b *CreateUserBody) DecodeTLS(r *wire.Reader) {
	b.Client.DecodeTLS(r)
	r.Opaque(&b.TokenHash)
	b.Profile = nil
	r.VectorEach(func(r *wire.Reader) {
		var f proto.ProfileField
		f.DecodeTLS(r)
		b.Profile = append(b.Profile, f)
	})
	r.Opaque(&b.PasswordHash)
	r.Opaque(&b.InviteHash)
}

// AddDeviceBody adds a device to an existing user whose password the
// proposing node checked against credential generation CredentialGen.
type AddDeviceBody struct {
	Client        proto.URI
	TokenHash     []byte
	CredentialGen uint64
}

// EncodeTLS writes the body.
func (b *AddDeviceBody) EncodeTLS(w *wire.Writer) {
	b.Client.EncodeTLS(w)
	w.Opaque(b.TokenHash)
	w.Uint64(b.CredentialGen)
}

// DecodeTLS reads the body.
func (b *AddDeviceBody) DecodeTLS(r *wire.Reader) {
	b.Client.DecodeTLS(r)
	r.Opaque(&b.TokenHash)
	r.Uint64(&b.CredentialGen)
}

// RequestLinkBody is a new device asking to join an existing user. The
// node draws LinkID and the short code (whose SHA-256 is CodeHash) outside
// Apply; the device shows the code, an existing device approves it.
type RequestLinkBody struct {
	LinkID    []byte
	Client    proto.URI
	CodeHash  []byte
	TokenHash []byte
}

// EncodeTLS writes the body.
func (b *RequestLinkBody) EncodeTLS(w *wire.Writer) {
	w.Opaque(b.LinkID)
	b.Client.EncodeTLS(w)
	w.Opaque(b.CodeHash)
	w.Opaque(b.TokenHash)
}

// DecodeTLS reads the body.
func (b *RequestLinkBody) DecodeTLS(r *wire.Reader) {
	r.Opaque(&b.LinkID)
	b.Client.DecodeTLS(r)
	r.Opaque(&b.CodeHash)
	r.Opaque(&b.TokenHash)
}

// ApproveLinkBody approves the link request of Approver's user whose code
// hashes to CodeHash. Its result's body is the new device's URI.
type ApproveLinkBody struct {
	Approver proto.URI
	CodeHash []byte
}

// EncodeTLS writes the body.
func (b *ApproveLinkBody) EncodeTLS(w *wire.Writer) {
	b.Approver.EncodeTLS(w)
	w.Opaque(b.CodeHash)
}

// DecodeTLS reads the body.
func (b *ApproveLinkBody) DecodeTLS(r *wire.Reader) {
	b.Approver.DecodeTLS(r)
	r.Opaque(&b.CodeHash)
}

// SetPasswordBody sets User's password hash. CredentialGen is the
// generation the node saw (0 when there was no password): a change in
// between refuses the command.
type SetPasswordBody struct {
	User          proto.URI
	PasswordHash  []byte
	CredentialGen uint64
}

// EncodeTLS writes the body.
func (b *SetPasswordBody) EncodeTLS(w *wire.Writer) {
	b.User.EncodeTLS(w)
	w.Opaque(b.PasswordHash)
	w.Uint64(b.CredentialGen)
}

// DecodeTLS reads the body.
func (b *SetPasswordBody) DecodeTLS(r *wire.Reader) {
	b.User.DecodeTLS(r)
	r.Opaque(&b.PasswordHash)
	r.Uint64(&b.CredentialGen)
}

// RevokeDeviceBody revokes Client. By is the revoking device (of the same
// user), or empty for an operator.
type RevokeDeviceBody struct {
	Client proto.URI
	By     proto.URI
}

// EncodeTLS writes the body.
func (b *RevokeDeviceBody) EncodeTLS(w *wire.Writer) {
	b.Client.EncodeTLS(w)
	b.By.EncodeTLS(w)
}

// DecodeTLS reads the body.
func (b *RevokeDeviceBody) DecodeTLS(r *wire.Reader) {
	b.Client.DecodeTLS(r)
	b.By.DecodeTLS(r)
}

// SuspendUserBody suspends (or reinstates) a local user: a suspended
// user's tokens authenticate nothing and it gains no devices.
type SuspendUserBody struct {
	User    proto.URI
	Suspend bool
}

// EncodeTLS writes the body.
func (b *SuspendUserBody) EncodeTLS(w *wire.Writer) {
	b.User.EncodeTLS(w)
	w.Bool(b.Suspend)
}

// DecodeTLS reads the body.
func (b *SuspendUserBody) DecodeTLS(r *wire.Reader) {
	b.User.DecodeTLS(r)
	r.Bool(&b.Suspend)
}

// MintInviteBody stores a single-use invite code (its SHA-256) valid until
// ExpiresAt (ms).
type MintInviteBody struct {
	CodeHash  []byte
	ExpiresAt uint64
}

// EncodeTLS writes the body.
func (b *MintInviteBody) EncodeTLS(w *wire.Writer) {
	w.Opaque(b.CodeHash)
	w.Uint64(b.ExpiresAt)
}

// DecodeTLS reads the body.
func (b *MintInviteBody) DecodeTLS(r *wire.Reader) {
	r.Opaque(&b.CodeHash)
	r.Uint64(&b.ExpiresAt)
}

// InviteDeviceBody is an existing device (Inviter) inviting a new device of
// its user. The node draws InviteID and the short code (whose SHA-256 is
// CodeHash) outside Apply and shows the code to the user, who types it on
// the new device (RedeemInviteBody).
type InviteDeviceBody struct {
	InviteID []byte
	Inviter  proto.URI
	CodeHash []byte
}

// EncodeTLS writes the body.
func (b *InviteDeviceBody) EncodeTLS(w *wire.Writer) {
	w.Opaque(b.InviteID)
	b.Inviter.EncodeTLS(w)
	w.Opaque(b.CodeHash)
}

// DecodeTLS reads the body.
func (b *InviteDeviceBody) DecodeTLS(r *wire.Reader) {
	r.Opaque(&b.InviteID)
	b.Inviter.DecodeTLS(r)
	r.Opaque(&b.CodeHash)
}

// CancelInviteBody cancels the open device invitation InviteID of the
// user of Canceller, one of its devices (CmdCancelInvite).
type CancelInviteBody struct {
	Canceller proto.URI
	InviteID  []byte
}

// EncodeTLS writes the body.
func (b *CancelInviteBody) EncodeTLS(w *wire.Writer) {
	b.Canceller.EncodeTLS(w)
	w.Opaque(b.InviteID)
}

// DecodeTLS reads the body.
func (b *CancelInviteBody) DecodeTLS(r *wire.Reader) {
	b.Canceller.DecodeTLS(r)
	r.Opaque(&b.InviteID)
}

// RedeemInviteBody adds Client to its user with the device invitation
// whose code hashes to CodeHash, spending it. TokenHash is the SHA-256 of
// the new device's bearer token.
type RedeemInviteBody struct {
	Client    proto.URI
	CodeHash  []byte
	TokenHash []byte
}

// EncodeTLS writes the body.
func (b *RedeemInviteBody) EncodeTLS(w *wire.Writer) {
	b.Client.EncodeTLS(w)
	w.Opaque(b.CodeHash)
	w.Opaque(b.TokenHash)
}

// DecodeTLS reads the body.
func (b *RedeemInviteBody) DecodeTLS(r *wire.Reader) {
	b.Client.DecodeTLS(r)
	r.Opaque(&b.CodeHash)
	r.Opaque(&b.TokenHash)
}
