package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/mimihub/mimi-hub/internal/pause"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// Accounts and devices (httpapi/openapi.yaml "Devices"): a user's first
// device registers the user (Register, optionally with a password); every
// further device is invited by an existing one (InviteDevice on the old
// device, RedeemInvite on the new: the way to add a device), linked from
// one (RequestLink on the new device, ApproveLink on the old; an anonymous
// flood of link requests can block it) or added with the password
// (AddDeviceWithPassword).

// tokenSecret draws the secret part of a new device's token, so a retry
// after a lost answer (same Idempotency-Key, same body) ends with the
// token the provider stored.
func (u *User) tokenSecret(op string) ([]byte, error) {
	secret := make([]byte, 32)
	if _, err := io.ReadFull(u.cfg.Random, secret); err != nil {
		return nil, fmt.Errorf("%s: token secret: %w", op, err)
	}
	return secret, nil
}

// adopt checks a new device's answer and keeps its token.
func (u *User) adopt(op string, client, user, token string) (*Registration, error) {
	c, err := TokenClient(token)
	if err != nil {
		return nil, fmt.Errorf("%s: the answer's token: %w", op, err)
	}
	if c != proto.URI(client) {
		return nil, fmt.Errorf("%s: the token names %s, the answer %s", op, c, client)
	}
	u.SetToken(token)
	return &Registration{Client: proto.URI(client), User: proto.URI(user), Token: token}, nil
}

// RegisterOptions are the optional parts of RegisterWith.
type RegisterOptions struct {
	Profile []proto.ProfileField
	// Password lets the account add devices without an existing one.
	Password string
	// Invite is the invite code a provider with the invite policy needs.
	Invite string
}

// RegisterWith creates user with its first device (POST /v1/register) and
// keeps the token. An existing user is a 409 StatusError: link the device
// instead.
func (u *User) RegisterWith(ctx context.Context, user, device string, opts RegisterOptions) (*Registration, error) {
	prof, err := profileToJSON(opts.Profile)
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	secret, err := u.tokenSecret("register")
	if err != nil {
		return nil, err
	}
	in := struct {
		User        string             `json:"user"`
		Device      string             `json:"device"`
		Profile     []jsonProfileField `json:"profile,omitempty"`
		TokenSecret []byte             `json:"token_secret"`
		Password    string             `json:"password,omitempty"`
		Invite      string             `json:"invite,omitempty"`
	}{user, device, prof, secret, opts.Password, opts.Invite}
	var header http.Header
	if u.cfg.RegistrationKey != "" {
		header = http.Header{"Mimi-Registration-Key": {u.cfg.RegistrationKey}}
	}
	var out struct {
		Client string `json:"client"`
		User   string `json:"user"`
		Token  string `json:"token"`
	}
	if err := u.do(ctx, apiCall{op: "register", method: http.MethodPost, path: "/v1/register", body: in, out: &out, noAuth: true, header: header}); err != nil {
		return nil, err
	}
	return u.adopt("register", out.Client, out.User, out.Token)
}

// LinkRequest is a new device waiting for approval.
type LinkRequest struct {
	Client proto.URI
	User   proto.URI
	// Code is what the user types on an existing device (XXXX-XXXX).
	Code string
	// Expires is when the request lapses unapproved.
	Expires time.Time
	token   string
}

// RequestLink asks to add device to the existing user (POST
// /v1/devices/link). Show the code to the user, then WaitLinked.
func (u *User) RequestLink(ctx context.Context, user, device string) (*LinkRequest, error) {
	secret, err := u.tokenSecret("link")
	if err != nil {
		return nil, err
	}
	in := struct {
		User        string `json:"user"`
		Device      string `json:"device"`
		TokenSecret []byte `json:"token_secret"`
	}{user, device, secret}
	var out struct {
		Client    string `json:"client"`
		User      string `json:"user"`
		Token     string `json:"token"`
		Code      string `json:"code"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := u.do(ctx, apiCall{op: "link", method: http.MethodPost, path: "/v1/devices/link", body: in, out: &out, noAuth: true}); err != nil {
		return nil, err
	}
	if c, err := TokenClient(out.Token); err != nil || c != proto.URI(out.Client) {
		return nil, fmt.Errorf("link: the answer's token does not name %s", out.Client)
	}
	return &LinkRequest{Client: proto.URI(out.Client), User: proto.URI(out.User), Code: out.Code,
		Expires: u.cfg.Now().Add(time.Duration(out.ExpiresIn) * time.Second), token: out.Token}, nil
}

// ErrLinkExpired is WaitLinked's error when the request lapsed unapproved.
var ErrLinkExpired = errors.New("the link request expired without approval")

// WaitLinked waits until an existing device approved req, checking every
// interval, then keeps the new device's token.
func (u *User) WaitLinked(ctx context.Context, req *LinkRequest, interval time.Duration) (*Registration, error) {
	probe, err := NewUser(UserConfig{BaseURL: u.cfg.BaseURL, HTTPClient: u.hc, AllowHTTP: u.cfg.AllowHTTP, Token: req.token, Timeout: u.cfg.Timeout, Tries: 1, Logger: u.cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	for {
		id, err := probe.WhoAmI(ctx)
		if err == nil && id.Client == req.Client {
			u.SetToken(req.token)
			return &Registration{Client: req.Client, User: req.User, Token: req.token}, nil
		}
		var se *StatusError
		if err != nil && !(errors.As(err, &se) && se.Status == http.StatusUnauthorized) && !retryableCall(err) {
			return nil, fmt.Errorf("link: waiting for approval: %w", err)
		}
		if u.cfg.Now().After(req.Expires) {
			return nil, fmt.Errorf("link %s: %w", req.Client, ErrLinkExpired)
		}
		if !pause.For(ctx, interval) {
			return nil, fmt.Errorf("link: waiting for approval: %w", ctx.Err())
		}
	}
}

// DeviceInvitation is an invitation this device made for a new device of
// its user.
type DeviceInvitation struct {
	User proto.URI
	// ID names the invitation, to cancel it (CancelInvitation).
	ID string
	// Code is what the user types on the new device (XXXX-XXXX-XXXX);
	// empty in the list of open invitations (Invitations).
	Code string
	// Inviter is the device that made it (in the list only).
	Inviter proto.URI
	// Expires is when the invitation lapses unused.
	Expires time.Time
}

// InviteDevice makes, as this device, a single-use invitation for a new
// device of the same user (POST /v1/devices/invite). Show the code to the
// user, who types it on the new device (RedeemInvite).
func (u *User) InviteDevice(ctx context.Context) (*DeviceInvitation, error) {
	var out struct {
		User      string `json:"user"`
		ID        string `json:"id"`
		Code      string `json:"code"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := u.do(ctx, apiCall{op: "invite device", method: http.MethodPost, path: "/v1/devices/invite", out: &out}); err != nil {
		return nil, err
	}
	return &DeviceInvitation{User: proto.URI(out.User), ID: out.ID, Code: out.Code, Expires: u.cfg.Now().Add(time.Duration(out.ExpiresIn) * time.Second)}, nil
}

// Invitations lists the user's open device invitations, oldest first
// (GET /v1/devices/invitations); their codes are not shown again.
func (u *User) Invitations(ctx context.Context) ([]DeviceInvitation, error) {
	var out struct {
		Invitations []struct {
			ID        string    `json:"id"`
			Inviter   string    `json:"inviter"`
			ExpiresAt time.Time `json:"expires_at"`
		} `json:"invitations"`
	}
	if err := u.do(ctx, apiCall{op: "invitations", method: http.MethodGet, path: "/v1/devices/invitations", out: &out}); err != nil {
		return nil, err
	}
	var user proto.URI
	if c, err := u.Client(); err == nil {
		user, _ = c.UserOf()
	}
	var invs []DeviceInvitation
	for _, in := range out.Invitations {
		invs = append(invs, DeviceInvitation{User: user, ID: in.ID, Inviter: proto.URI(in.Inviter), Expires: in.ExpiresAt})
	}
	return invs, nil
}

// CancelInvitation cancels one of the user's open device invitations by
// its id (DELETE /v1/devices/invitations/{id}); one that is not open is a
// 404 StatusError.
func (u *User) CancelInvitation(ctx context.Context, id string) error {
	return u.do(ctx, apiCall{op: "cancel invitation", method: http.MethodDelete, path: "/v1/devices/invitations/" + url.PathEscape(id)})
}

// RedeemInvite adds device to the existing user with the code of an
// invitation one of the user's devices made (POST /v1/devices/redeem) and
// keeps its token. A code that matches no open invitation is a 404
// StatusError.
func (u *User) RedeemInvite(ctx context.Context, user, device, code string) (*Registration, error) {
	return u.addDevice(ctx, "redeem", "/v1/devices/redeem", newDeviceBody{User: user, Device: device, Code: code})
}

// newDeviceBody is the body of the requests that add a device to an
// existing user with a proof (an invitation's code or the password).
type newDeviceBody struct {
	User        string `json:"user"`
	Device      string `json:"device"`
	Code        string `json:"code,omitempty"`
	Password    string `json:"password,omitempty"`
	TokenSecret []byte `json:"token_secret"`
}

// addDevice sends in, with a fresh token secret, to path and keeps the new
// device's token.
func (u *User) addDevice(ctx context.Context, op, path string, in newDeviceBody) (*Registration, error) {
	var err error
	if in.TokenSecret, err = u.tokenSecret(op); err != nil {
		return nil, err
	}
	var out struct {
		Client string `json:"client"`
		User   string `json:"user"`
		Token  string `json:"token"`
	}
	if err := u.do(ctx, apiCall{op: op, method: http.MethodPost, path: path, body: in, out: &out, noAuth: true}); err != nil {
		return nil, err
	}
	return u.adopt(op, out.Client, out.User, out.Token)
}

// ApproveLink approves, as this device, the link code a new device of the
// same user shows (POST /v1/devices/approve). It returns the new device.
func (u *User) ApproveLink(ctx context.Context, code string) (proto.URI, error) {
	var out struct {
		Client string `json:"client"`
	}
	if err := u.do(ctx, apiCall{op: "approve", method: http.MethodPost, path: "/v1/devices/approve", body: map[string]string{"code": code}, out: &out}); err != nil {
		return "", err
	}
	return proto.URI(out.Client), nil
}

// AddDeviceWithPassword adds device to the existing user with the
// account's password (POST /v1/devices) and keeps its token.
func (u *User) AddDeviceWithPassword(ctx context.Context, user, device, password string) (*Registration, error) {
	return u.addDevice(ctx, "add device", "/v1/devices", newDeviceBody{User: user, Device: device, Password: password})
}

// Device is one of the user's devices.
type Device struct {
	Client proto.URI
	// AddedAt is zero for devices registered before accounts existed.
	AddedAt time.Time
	// How: "registered" (the first), "invited", "linked", "password" or
	// "legacy".
	How string
	// Current is the device making the request.
	Current bool
}

// PendingDevice is a device waiting for approval.
type PendingDevice struct {
	Client    proto.URI
	ExpiresAt time.Time
}

// Devices lists the user's devices and the link requests waiting (GET
// /v1/devices).
func (u *User) Devices(ctx context.Context) ([]Device, []PendingDevice, error) {
	var out struct {
		Devices []struct {
			Client  string     `json:"client"`
			AddedAt *time.Time `json:"added_at"`
			How     string     `json:"how"`
			Current bool       `json:"current"`
		} `json:"devices"`
		Pending []struct {
			Client    string    `json:"client"`
			ExpiresAt time.Time `json:"expires_at"`
		} `json:"pending"`
	}
	if err := u.do(ctx, apiCall{op: "devices", method: http.MethodGet, path: "/v1/devices", out: &out}); err != nil {
		return nil, nil, err
	}
	var ds []Device
	for _, d := range out.Devices {
		dev := Device{Client: proto.URI(d.Client), How: d.How, Current: d.Current}
		if d.AddedAt != nil {
			dev.AddedAt = *d.AddedAt
		}
		ds = append(ds, dev)
	}
	var ps []PendingDevice
	for _, p := range out.Pending {
		ps = append(ps, PendingDevice{Client: proto.URI(p.Client), ExpiresAt: p.ExpiresAt})
	}
	return ds, ps, nil
}

// RevokeDevice revokes one of the user's devices by name (DELETE
// /v1/devices/{device}); its token stops working at once.
func (u *User) RevokeDevice(ctx context.Context, device string) error {
	return u.do(ctx, apiCall{op: "revoke", method: http.MethodDelete, path: "/v1/devices/" + url.PathEscape(device)})
}

// SetPassword sets the account's password; current is required when one
// is set (PUT /v1/account/password).
func (u *User) SetPassword(ctx context.Context, password, current string) error {
	in := struct {
		Password string `json:"password"`
		Current  string `json:"current_password,omitempty"`
	}{password, current}
	return u.do(ctx, apiCall{op: "set password", method: http.MethodPut, path: "/v1/account/password", body: in})
}
