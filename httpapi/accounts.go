package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"golang.org/x/text/secure/precis"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Registration policies (Config.Registration): who may create a new user.
// Adding a device to an existing user never depends on it: that needs an
// existing device's invitation or approval, or the account's password.
const (
	RegistrationOpen   = "open"   // anyone (rate-limited per source address)
	RegistrationKey    = "key"    // holders of Config.RegistrationKey
	RegistrationInvite = "invite" // holders of a single-use invite code an operator minted
	RegistrationClosed = "closed" // nobody: an operator-run provider
)

// registrationPolicy is the effective policy: the key policy when a key is
// set and no policy is named.
func (c Config) registrationPolicy() string {
	switch {
	case c.Registration != "":
		return c.Registration
	case c.RegistrationKey != "":
		return RegistrationKey
	}
	return RegistrationOpen
}

// canonicalName maps a user or device name as typed to its canonical form:
// PRECIS UsernameCaseMapped (RFC 8265: width mapping, case folding, NFC),
// then the subset fsm.CanonicalUserName allows. Anything else (other
// scripts, look-alike characters, spaces) is refused.
func canonicalName(what, name string) (string, error) {
	s, err := precis.UsernameCaseMapped.String(name)
	if err != nil || !fsm.CanonicalUserName(s) {
		return "", fail(http.StatusBadRequest, "%s %q: want 1 to %d characters of a-z, 0-9, '.', '_' and '-' (case is folded), starting with a letter or digit", what, name, fsm.MaxUserName)
	}
	return s, nil
}

// existingUser finds the local user a name designates: its canonical form,
// or, for users registered before names were canonicalised, exactly the
// name given.
func (c *clientAPI) existingUser(r *http.Request, name string) (proto.URI, error) {
	var candidates []proto.URI
	if s, err := canonicalName("user", name); err == nil {
		candidates = append(candidates, proto.UserURI(c.domain, s))
	}
	if raw := proto.UserURI(c.domain, name); len(candidates) == 0 || raw != candidates[0] {
		if _, err := raw.Parse(); err == nil {
			candidates = append(candidates, raw)
		}
	}
	var found proto.URI
	err := c.backend.Read(r.Context(), true, func(s *fsm.State) error {
		for _, u := range candidates {
			if _, ok := s.UserCredential(u); ok {
				found = u
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if found == "" {
		return "", fail(http.StatusNotFound, "no user %q here", name)
	}
	return found, nil
}

// deviceToken returns a new device's token from the secret the client
// chose (so a retry after a lost answer ends with the stored token), or a
// fresh one.
func deviceToken(client proto.URI, secret []byte) (string, []byte, error) {
	if secret != nil && len(secret) != tokenSecretSize {
		return "", nil, fail(http.StatusBadRequest, "token_secret must be %d bytes, not %d", tokenSecretSize, len(secret))
	}
	token, hash := newToken(client, secret)
	return token, hash, nil
}

// registerRequest is /v1/register's body.
type registerRequest struct {
	User    string         `json:"user"`
	Device  string         `json:"device"`
	Profile []profileField `json:"profile,omitempty"`
	// TokenSecret, when given, is the secret part of the token: a client
	// that picks it can retry a registration whose answer it lost and
	// still hold the token the provider stored.
	TokenSecret []byte `json:"token_secret,omitempty"`
	// Password, optional, lets the account add devices without an
	// existing one.
	Password string `json:"password,omitempty"`
	// Invite is the invite code under the invite policy.
	Invite string `json:"invite,omitempty"`
}

// register: POST /v1/register creates a new user with its first device
// under the registration policy. An existing user is 409: its devices are
// added by linking or with the password.
func (c *clientAPI) register(w http.ResponseWriter, r *http.Request, _ *principal) error {
	policy := c.cfg.registrationPolicy()
	switch policy {
	case RegistrationClosed:
		return fail(http.StatusForbidden, "registration is closed on this provider; ask its operator")
	case RegistrationKey:
		key := r.Header.Get("Mimi-Registration-Key")
		if subtle.ConstantTimeCompare([]byte(key), []byte(c.cfg.RegistrationKey)) != 1 {
			return fail(http.StatusForbidden, "registration needs a valid Mimi-Registration-Key header")
		}
	}
	if err := spend("registrations from this address", limitKey{c.limits.registerIP, sourceAddr(r)}); err != nil {
		return err
	}
	var in registerRequest
	if err := readJSON(w, r, c.cfg.MaxBody, &in); err != nil {
		return err
	}
	user, err := canonicalName("user", in.User)
	if err != nil {
		return err
	}
	device, err := canonicalName("device", in.Device)
	if err != nil {
		return err
	}
	client := proto.ClientURI(c.domain, user, device)
	profile, err := fieldsFromJSON(in.Profile)
	if err != nil {
		return err
	}
	body := &fsm.CreateUserBody{Client: client, Profile: profile}
	if policy == RegistrationInvite {
		if in.Invite == "" {
			return fail(http.StatusForbidden, "registration on this provider needs an invite code")
		}
		h := sha256.Sum256([]byte(normalizeCode(in.Invite)))
		body.InviteHash = h[:]
	}
	token, hash, err := deviceToken(client, in.TokenSecret)
	if err != nil {
		return err
	}
	body.TokenHash = hash
	// A retried registration answers like the first instead of 409.
	id, err := newDeviceRequestID(r, "register", client, in.TokenSecret)
	if err != nil {
		return err
	}
	// Refused before any hashing: a taken name costs no argon2 run. (A
	// retry with an Idempotency-Key goes on: the first answer comes back.)
	if id == nil {
		if err := c.backend.Read(r.Context(), false, func(s *fsm.State) error {
			if u, taken := s.UserNameTaken(user); taken {
				return userTaken(proto.UserURI(c.domain, user), u)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if in.Password != "" {
		if err := checkPassword(in.Password); err != nil {
			return err
		}
		if body.PasswordHash, err = c.passwords.hash(r.Context(), in.Password); err != nil {
			return err
		}
	}
	res, err := c.backend.Apply(r.Context(), fsm.CmdCreateUser, id, "", body)
	if err != nil {
		return err
	}
	if err := resultErr(res); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]string{"client": string(client), "user": string(proto.UserURI(c.domain, user)), "token": token})
	return nil
}

// newDeviceRequestID is the request id of a request that adds client
// (op: register, redeem, add device): with an Idempotency-Key and a chosen
// token secret (so that the retry's token is the stored one), a retry
// after a lost answer answers like the first. Without either, nil.
func newDeviceRequestID(r *http.Request, op string, client proto.URI, tokenSecret []byte) ([]byte, error) {
	if tokenSecret == nil {
		return nil, nil
	}
	return requestID(r, op+" "+string(client), RouteName(r))
}

// userTaken is the answer to a registration whose name is taken.
func userTaken(want, existing proto.URI) error {
	if want == existing {
		return fail(http.StatusConflict, "user %s exists; add a device with an invitation from one of its devices, by linking, or with the account's password", want)
	}
	return fail(http.StatusConflict, "user %s looks like the existing user %s; choose another name", want, existing)
}

// Link codes: what a new device shows and an existing one types. Eight
// characters of an alphabet without look-alikes (no 0/O, 1/I/L, U),
// shown as XXXX-XXXX; about 39 bits, and only the user's own devices can
// approve one, so guessing gains nothing. A device invitation's code goes
// the other way (an existing device shows it, the new one types it) and
// anyone may try one, so it is longer: 12 characters, XXXX-XXXX-XXXX,
// about 59 bits, tried at DefaultRedeemRate per source address.
const (
	codeAlphabet    = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
	linkCodeLen     = 8
	deviceInviteLen = 12
	inviteLen       = 20
)

// newCode returns n random characters of codeAlphabet, in groups of four.
func newCode(n int) string {
	var b strings.Builder
	buf := make([]byte, 1)
	for i := 0; i < n; {
		_, _ = rand.Read(buf) // never fails (crypto/rand)
		if int(buf[0]) >= 256-256%len(codeAlphabet) {
			continue // rejection sampling keeps the draw uniform
		}
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(codeAlphabet[int(buf[0])%len(codeAlphabet)])
		i++
	}
	return b.String()
}

// normalizeCode uppercases a typed code and drops separators and spaces.
func normalizeCode(code string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ':
			return -1
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, code)
}

func codeHash(code string) []byte {
	h := sha256.Sum256([]byte("mimi-hub code\x00" + normalizeCode(code)))
	return h[:]
}

// NewInviteCode returns a fresh invite code and the hash an operator's
// CmdMintInvite stores (the code itself never enters the log).
func NewInviteCode() (code string, hash []byte) {
	code = newCode(inviteLen)
	h := sha256.Sum256([]byte(normalizeCode(code)))
	return code, h[:]
}

// newDeviceRequest is the body of the requests that add a device to an
// existing user.
type newDeviceRequest struct {
	User        string `json:"user"`
	Device      string `json:"device"`
	TokenSecret []byte `json:"token_secret,omitempty"`
	Password    string `json:"password,omitempty"`
}

// newDevice is a checked newDeviceRequest.
type newDevice struct {
	newDeviceRequest
	user, client proto.URI
	token        string
	hash         []byte
}

// readNewDevice reads a request for a further device of an existing user,
// spending a token of the source address's budget (before anything else)
// and of the account's (once the user is known) in ip and account.
func (c *clientAPI) readNewDevice(w http.ResponseWriter, r *http.Request, what string, ip, account *limiter) (*newDevice, error) {
	if err := spend(what+" from this address", limitKey{ip, sourceAddr(r)}); err != nil {
		return nil, err
	}
	nd := &newDevice{}
	if err := readJSON(w, r, c.cfg.MaxBody, &nd.newDeviceRequest); err != nil {
		return nil, err
	}
	if len(nd.Password) > MaxPassword {
		return nil, fail(http.StatusBadRequest, "password: at most %d bytes", MaxPassword)
	}
	device, err := canonicalName("device", nd.Device)
	if err != nil {
		return nil, err
	}
	if nd.user, err = c.existingUser(r, nd.User); err != nil {
		return nil, err
	}
	if err := spend(what+" for "+string(nd.user), limitKey{account, string(nd.user)}); err != nil {
		return nil, err
	}
	uid, _ := nd.user.Parse()
	nd.client = proto.ClientURI(c.domain, uid.User, device)
	if nd.token, nd.hash, err = deviceToken(nd.client, nd.TokenSecret); err != nil {
		return nil, err
	}
	return nd, nil
}

// requestLink: POST /v1/devices/link. A new device of an existing user asks
// to be linked: it gets the token it will use and a code to show; the
// token works once one of the user's devices approves the code.
func (c *clientAPI) requestLink(w http.ResponseWriter, r *http.Request, _ *principal) error {
	nd, err := c.readNewDevice(w, r, "device link requests", c.limits.linkIP, c.limits.linkUser)
	if err != nil {
		return err
	}
	if nd.Password != "" {
		return fail(http.StatusBadRequest, "a link request carries no password (POST /v1/devices adds a device with it)")
	}
	client, user, token, hash := nd.client, nd.user, nd.token, nd.hash
	linkID := make([]byte, 16)
	_, _ = rand.Read(linkID)
	code := newCode(linkCodeLen)
	res, err := c.backend.Apply(r.Context(), fsm.CmdRequestLink, nil, "", &fsm.RequestLinkBody{LinkID: linkID, Client: client, CodeHash: codeHash(code), TokenHash: hash})
	if err != nil {
		return err
	}
	if err := resultErr(res); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]any{
		"client": string(client), "user": string(user), "token": token, "code": code, "expires_in": fsm.LinkTTL / 1000,
	})
	return nil
}

// approveLink: POST /v1/devices/approve, an existing device approves the
// code a new device of its user shows.
func (c *clientAPI) approveLink(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := spend("link approvals", limitKey{c.limits.approveUser, string(p.user)}); err != nil {
		return err
	}
	var in struct {
		Code string `json:"code"`
	}
	if err := readJSON(w, r, c.cfg.MaxBody, &in); err != nil {
		return err
	}
	if n := len(normalizeCode(in.Code)); n != linkCodeLen {
		return fail(http.StatusBadRequest, "code: %d characters, want %d (XXXX-XXXX)", n, linkCodeLen)
	}
	res, err := c.apply(r, p, RouteApproveLink, fsm.CmdApproveLink, &fsm.ApproveLinkBody{Approver: p.client, CodeHash: codeHash(in.Code)})
	if err != nil {
		return err
	}
	var added proto.URI
	if err := wire.Unmarshal(res.Body, &added); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"client": string(added)})
	return nil
}

// inviteDevice: POST /v1/devices/invite, an existing device invites a new
// device of its user: the answer's code, typed on the new device
// (redeemInvite), adds it. Only the user's devices make invitations, so
// nobody else can use up its MaxDeviceInvitesPerUser.
func (c *clientAPI) inviteDevice(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := spend("device approvals and invitations", limitKey{c.limits.approveUser, string(p.user)}); err != nil {
		return err
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	code := newCode(deviceInviteLen)
	// No request id: a retry draws a new code rather than answer the
	// first one's success with a code nobody stored. A code made again
	// from the request (under a secret of the replicated state) would let
	// whoever reads a backup redeem the open invitations; the state keeps
	// only the code's hash. The extra invitation a retry leaves is listed
	// and cancelled like any other (GET, DELETE /v1/devices/invitations).
	if _, err := c.apply(r, p, "", fsm.CmdInviteDevice, &fsm.InviteDeviceBody{InviteID: id, Inviter: p.client, CodeHash: codeHash(code)}); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"user": string(p.user), "id": hex.EncodeToString(id), "code": code, "expires_in": fsm.LinkTTL / 1000})
	return nil
}

// invitations: GET /v1/devices/invitations, the user's open device
// invitations (never their codes, which only the inviting device saw).
func (c *clientAPI) invitations(w http.ResponseWriter, r *http.Request, p *principal) error {
	type invitationJSON struct {
		ID        string    `json:"id"`
		Inviter   string    `json:"inviter"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	out := struct {
		Invitations []invitationJSON `json:"invitations"`
	}{Invitations: []invitationJSON{}}
	err := c.backend.Read(r.Context(), true, func(s *fsm.State) error {
		// Open by the state's clock, as Apply decides (like the devices
		// waiting for approval).
		for _, inv := range s.DeviceInvitations(p.user, s.LastAcceptedAt()) {
			out.Invitations = append(out.Invitations, invitationJSON{ID: hex.EncodeToString(inv.ID), Inviter: string(inv.Inviter), ExpiresAt: time.UnixMilli(int64(inv.ExpiresAt)).UTC()})
		}
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// cancelInvite: DELETE /v1/devices/invitations/{id}, any device of the
// user cancels an open invitation of the user (204); one that is not
// open, or not the user's, is one 404.
func (c *clientAPI) cancelInvite(w http.ResponseWriter, r *http.Request, p *principal) error {
	v, err := pathVar(r, "id")
	if err != nil {
		return err
	}
	id, err := hex.DecodeString(v)
	if err != nil || len(id) < 16 || len(id) > 64 {
		return fail(http.StatusBadRequest, "invitation id: want the 32 to 128 hex digits /v1/devices/invite answered")
	}
	res, err := c.apply(r, p, RouteCancelInvite, fsm.CmdCancelInvite, &fsm.CancelInviteBody{Canceller: p.client, InviteID: id})
	if err != nil {
		return err
	}
	if err := resultErr(res); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// redeemRequest is /v1/devices/redeem's body.
type redeemRequest struct {
	User        string `json:"user"`
	Device      string `json:"device"`
	Code        string `json:"code"`
	TokenSecret []byte `json:"token_secret,omitempty"`
}

// redeemInvite: POST /v1/devices/redeem, a new device redeems an
// invitation of its user (anonymously: the code is the proof) and is
// added at once. Whatever matches no open invitation (an unknown user
// too) is one 404, answered before Raft (fsm.State.Admit); guesses are
// bounded per source address only.
func (c *clientAPI) redeemInvite(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := spend("device invitation redemptions from this address", limitKey{c.limits.redeemIP, sourceAddr(r)}); err != nil {
		return err
	}
	var in redeemRequest
	if err := readJSON(w, r, c.cfg.MaxBody, &in); err != nil {
		return err
	}
	if n := len(normalizeCode(in.Code)); n != deviceInviteLen {
		return fail(http.StatusBadRequest, "code: %d characters, want %d (XXXX-XXXX-XXXX)", n, deviceInviteLen)
	}
	device, err := canonicalName("device", in.Device)
	if err != nil {
		return err
	}
	user, err := c.existingUser(r, in.User)
	var ae *apiError
	if errors.As(err, &ae) && ae.status == http.StatusNotFound {
		return fail(http.StatusNotFound, "%s", fsm.NoInvitation)
	} else if err != nil {
		return err
	}
	uid, _ := user.Parse()
	client := proto.ClientURI(c.domain, uid.User, device)
	token, hash, err := deviceToken(client, in.TokenSecret)
	if err != nil {
		return err
	}
	id, err := newDeviceRequestID(r, "redeem", client, in.TokenSecret)
	if err != nil {
		return err
	}
	res, err := c.backend.Apply(r.Context(), fsm.CmdRedeemInvite, id, "", &fsm.RedeemInviteBody{Client: client, CodeHash: codeHash(in.Code), TokenHash: hash})
	if err != nil {
		return err
	}
	if err := resultErr(res); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]string{"client": string(client), "user": string(user), "token": token, "how": DeviceHow(fsm.DeviceInvited)})
	return nil
}

// addDevice: POST /v1/devices, a device added with the account's password.
func (c *clientAPI) addDevice(w http.ResponseWriter, r *http.Request, _ *principal) error {
	nd, err := c.readNewDevice(w, r, "password attempts", c.limits.passwordIP, c.limits.passwordUser)
	if err != nil {
		return err
	}
	if nd.Password == "" {
		return fail(http.StatusBadRequest, "password is required")
	}
	client, user, token, hash := nd.client, nd.user, nd.token, nd.hash
	cred, err := c.credential(r, user)
	if err != nil {
		return err
	}
	if len(cred.PasswordHash) == 0 {
		return fail(http.StatusForbidden, "%s has no password; link the device from an existing one", user)
	}
	if err := c.verifyPassword(r, user, cred, nd.Password, "password"); err != nil {
		return err
	}
	id, err := newDeviceRequestID(r, "add device", client, nd.TokenSecret)
	if err != nil {
		return err
	}
	res, err := c.backend.Apply(r.Context(), fsm.CmdAddDevice, id, "", &fsm.AddDeviceBody{Client: client, TokenHash: hash, CredentialGen: cred.Generation})
	if err != nil {
		return err
	}
	if err := resultErr(res); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]string{"client": string(client), "user": string(user), "token": token})
	return nil
}

// credential reads a user's credential linearizably (a password changed a
// moment ago on another node counts).
func (c *clientAPI) credential(r *http.Request, user proto.URI) (fsm.Credential, error) {
	var cred fsm.Credential
	err := c.backend.Read(r.Context(), true, func(s *fsm.State) error {
		var ok bool
		if cred, ok = s.UserCredential(user); !ok {
			return fail(http.StatusNotFound, "no user %s", user)
		}
		return nil
	})
	if err == nil && cred.Suspended {
		err = fail(http.StatusForbidden, "user %s is suspended", user)
	}
	return cred, err
}

// verifyPassword checks a password against the user's stored hash under
// the cluster-wide password guard (fsm/passwordguard.go): an attempt the
// user's schedule does not allow yet is refused (429, before any hashing),
// and a wrong password is logged (CmdPasswordFailure) before it is
// answered (403), so that no node lets more guesses through than the
// schedule, whichever nodes they go to. A wrong password that could not
// be logged is answered with why it could not, not as wrong.
func (c *clientAPI) verifyPassword(r *http.Request, user proto.URI, cred fsm.Credential, password, what string) error {
	if wait := time.UnixMilli(int64(cred.PasswordRetryAt)).Sub(c.cfg.Now()); cred.PasswordRetryAt > 0 && wait > 0 {
		return limited("wrong passwords for "+string(user), wait)
	}
	if ok, err := c.passwords.verify(r.Context(), cred.PasswordHash, password); err != nil || ok {
		return err
	}
	// Logged even if the client goes away now: a guesser that hangs up
	// once the hash is checked must not keep its wrong guess off the
	// schedule (the backend's own deadline still bounds the wait).
	res, err := c.backend.Apply(context.WithoutCancel(r.Context()), fsm.CmdPasswordFailure, nil, "", &fsm.PasswordFailureBody{User: user})
	if err != nil {
		return err
	}
	if err := resultErr(res); err != nil {
		return err
	}
	return fail(http.StatusForbidden, "wrong %s for %s", what, user)
}

// setPassword: PUT /v1/account/password. Changing an existing password
// needs the current one.
func (c *clientAPI) setPassword(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := spend("password attempts for "+string(p.user), limitKey{c.limits.passwordUser, string(p.user)}); err != nil {
		return err
	}
	var in struct {
		Password string `json:"password"`
		Current  string `json:"current_password,omitempty"`
	}
	if err := readJSON(w, r, c.cfg.MaxBody, &in); err != nil {
		return err
	}
	if err := checkPassword(in.Password); err != nil {
		return err
	}
	cred, err := c.credential(r, p.user)
	if err != nil {
		return err
	}
	if len(cred.PasswordHash) > 0 {
		if in.Current == "" {
			return fail(http.StatusForbidden, "current_password is required to change the password")
		}
		if err := c.verifyPassword(r, p.user, cred, in.Current, "current_password"); err != nil {
			return err
		}
	}
	hash, err := c.passwords.hash(r.Context(), in.Password)
	if err != nil {
		return err
	}
	if _, err := c.apply(r, p, RouteSetPassword, fsm.CmdSetPassword, &fsm.SetPasswordBody{User: p.user, PasswordHash: hash, CredentialGen: cred.Generation}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deviceJSON is a device in the device list.
type deviceJSON struct {
	Client  string     `json:"client"`
	AddedAt *time.Time `json:"added_at,omitempty"`
	How     string     `json:"how"`
	Current bool       `json:"current"`
}

// DeviceHow names how a device was added (fsm.Device.How).
func DeviceHow(h uint8) string {
	switch h {
	case fsm.DeviceFirst:
		return "registered"
	case fsm.DeviceLinked:
		return "linked"
	case fsm.DevicePassword:
		return "password"
	case fsm.DeviceInvited:
		return "invited"
	}
	return "legacy"
}

// devices: GET /v1/devices, the user's devices and the link requests
// waiting for approval.
func (c *clientAPI) devices(w http.ResponseWriter, r *http.Request, p *principal) error {
	type pendingJSON struct {
		Client    string    `json:"client"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	out := struct {
		Devices []deviceJSON  `json:"devices"`
		Pending []pendingJSON `json:"pending"`
	}{Devices: []deviceJSON{}, Pending: []pendingJSON{}}
	err := c.backend.Read(r.Context(), true, func(s *fsm.State) error {
		ds, _ := s.Devices(p.user)
		for _, d := range ds {
			dj := deviceJSON{Client: string(d.Client), How: DeviceHow(d.How), Current: d.Client == p.client}
			if d.AddedAt > 0 {
				t := time.UnixMilli(int64(d.AddedAt)).UTC()
				dj.AddedAt = &t
			}
			out.Devices = append(out.Devices, dj)
		}
		for _, l := range s.PendingLinks(p.user) {
			out.Pending = append(out.Pending, pendingJSON{Client: string(l.Client), ExpiresAt: time.UnixMilli(int64(l.ExpiresAt)).UTC()})
		}
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// revokeDevice: DELETE /v1/devices/{device}, a device of the user (this one
// included) loses its token at once on every node.
func (c *clientAPI) revokeDevice(w http.ResponseWriter, r *http.Request, p *principal) error {
	name, err := pathVar(r, "device")
	if err != nil {
		return err
	}
	uid, _ := p.user.Parse()
	target := proto.ClientURI(c.domain, uid.User, name)
	if _, err := target.Parse(); err != nil {
		return fail(http.StatusBadRequest, "path {device}: %q is not a device name", name)
	}
	if _, err := c.apply(r, p, RouteRevokeDevice, fsm.CmdRevokeDevice, &fsm.RevokeDeviceBody{Client: target, By: p.client}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
