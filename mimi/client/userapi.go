package client

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Registration is the answer to Register.
type Registration struct {
	Client proto.URI
	User   proto.URI
	// Token is the bearer token, shown once.
	Token string
}

type jsonProfileField struct {
	Source string `json:"source"`
	Name   string `json:"name"`
	Value  string `json:"value"`
}

func profileToJSON(fields []proto.ProfileField) ([]jsonProfileField, error) {
	out := make([]jsonProfileField, 0, len(fields))
	for _, f := range fields {
		var src string
		switch f.Source {
		case proto.FieldVCardField:
			src = "vcard"
		case proto.FieldOIDCStdClaim:
			src = "oidc"
		default:
			return nil, fmt.Errorf("profile field %q: unknown source %d", f.Name, f.Source)
		}
		if !utf8.Valid(f.Value) {
			return nil, fmt.Errorf("profile field %q: the client API carries only UTF-8 values", f.Name)
		}
		out = append(out, jsonProfileField{Source: src, Name: f.Name, Value: string(f.Value)})
	}
	return out, nil
}

func profileFromJSON(fields []jsonProfileField) ([]proto.ProfileField, error) {
	out := make([]proto.ProfileField, 0, len(fields))
	for _, f := range fields {
		var src proto.FieldSource
		switch f.Source {
		case "vcard":
			src = proto.FieldVCardField
		case "oidc":
			src = proto.FieldOIDCStdClaim
		default:
			return nil, fmt.Errorf("profile field %q: unknown source %q", f.Name, f.Source)
		}
		out = append(out, proto.ProfileField{Source: src, Name: f.Name, Value: []byte(f.Value)})
	}
	return out, nil
}

// Register creates user with its first device and keeps the returned
// token for later calls (POST /v1/register); see RegisterWith. It needs
// no token. An existing user is refused (409): further devices are linked
// (RequestLink) or added with the password (AddDeviceWithPassword).
func (u *User) Register(ctx context.Context, user, device string, profile []proto.ProfileField) (*Registration, error) {
	return u.RegisterWith(ctx, user, device, RegisterOptions{Profile: profile})
}

// Identity is the answer to WhoAmI.
type Identity struct {
	Client proto.URI
	User   proto.URI
	Domain string
}

// WhoAmI returns the authenticated client (GET /v1/whoami).
func (u *User) WhoAmI(ctx context.Context) (*Identity, error) {
	var out struct {
		Client string `json:"client"`
		User   string `json:"user"`
		Domain string `json:"domain"`
	}
	if err := u.do(ctx, apiCall{op: "whoami", method: http.MethodGet, path: "/v1/whoami", out: &out}); err != nil {
		return nil, err
	}
	return &Identity{Client: proto.URI(out.Client), User: proto.URI(out.User), Domain: out.Domain}, nil
}

// encodeMessage returns an MLSMessage's TLS encoding.
func encodeMessage(m *mls.Message, what string) ([]byte, error) {
	if m == nil {
		return nil, fmt.Errorf("missing %s", what)
	}
	b, err := wire.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", what, err)
	}
	return b, nil
}

// decodeMessage decodes an MLSMessage of wire format want (0: any).
func (u *User) decodeMessage(b []byte, want mls.WireFormat, what string) (*mls.Message, error) {
	m := new(mls.Message)
	if err := wire.UnmarshalLimit(b, m, u.cfg.MaxVector); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if want != 0 && m.WireFormat != want {
		return nil, fmt.Errorf("%s is a %s, want %s", what, m.WireFormat, want)
	}
	return m, nil
}

// UploadKeyPackages stores KeyPackages of this client, sent as MLSMessages
// (POST /v1/keypackages). One may be marked last resort.
func (u *User) UploadKeyPackages(ctx context.Context, kps []*mls.KeyPackage) error {
	in := struct {
		KeyPackages [][]byte `json:"key_packages"`
	}{KeyPackages: [][]byte{}}
	for i, kp := range kps {
		if kp == nil {
			return fmt.Errorf("upload KeyPackages: KeyPackage %d is nil", i)
		}
		b, err := encodeMessage(mls.NewKeyPackageMessage(kp), "KeyPackage")
		if err != nil {
			return fmt.Errorf("upload KeyPackages: %w", err)
		}
		in.KeyPackages = append(in.KeyPackages, b)
	}
	return u.do(ctx, apiCall{op: "upload KeyPackages", method: http.MethodPost, path: "/v1/keypackages", body: in})
}

// KeyPackageCount is the answer to KeyPackageCount.
type KeyPackageCount struct {
	// Count is the number of stored KeyPackages.
	Count int
	// LastResortSuites lists the suites with a last-resort KeyPackage.
	LastResortSuites []mls.CipherSuite
}

// KeyPackageCount counts this client's stored KeyPackages (GET
// /v1/keypackages).
func (u *User) KeyPackageCount(ctx context.Context) (*KeyPackageCount, error) {
	var out struct {
		KeyPackages      int      `json:"key_packages"`
		LastResortSuites []uint16 `json:"last_resort_suites"`
	}
	if err := u.do(ctx, apiCall{op: "count KeyPackages", method: http.MethodGet, path: "/v1/keypackages", out: &out}); err != nil {
		return nil, err
	}
	res := &KeyPackageCount{Count: out.KeyPackages}
	for _, s := range out.LastResortSuites {
		res.LastResortSuites = append(res.LastResortSuites, mls.CipherSuite(s))
	}
	return res, nil
}

// ClaimRequest asks for KeyPackages of users.
type ClaimRequest struct {
	// Users are the user URIs whose clients' KeyPackages are wanted.
	Users []proto.URI
	// Room, when set, is the room the KeyPackages are for: the claim then
	// goes through the room's hub, so that its Welcome can be routed.
	Room proto.URI
	// CipherSuites are the acceptable suites (empty: any).
	CipherSuites []mls.CipherSuite
	// LastResortAllowed accepts last-resort KeyPackages.
	LastResortAllowed bool
}

// nameOf finds the code whose String is name among codes 0..last.
func nameOf[T ~uint8](name string, last T, what string) (T, error) {
	for c := T(0); c <= last; c++ {
		if fmt.Sprint(c) == name {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown %s %q", what, name)
}

// ClaimKeyMaterial claims KeyPackages of users (POST /v1/keymaterial). The
// answer is the seed's KeyMaterialResponse: per user and client, a status
// and, on success, the KeyPackage.
func (u *User) ClaimKeyMaterial(ctx context.Context, req ClaimRequest) (*proto.KeyMaterialResponse, error) {
	in := struct {
		Users             []string `json:"users"`
		Room              string   `json:"room,omitempty"`
		CipherSuites      []uint16 `json:"cipher_suites,omitempty"`
		LastResortAllowed bool     `json:"last_resort_allowed,omitempty"`
	}{Users: []string{}, Room: string(req.Room), LastResortAllowed: req.LastResortAllowed}
	for _, us := range req.Users {
		in.Users = append(in.Users, string(us))
	}
	for _, s := range req.CipherSuites {
		in.CipherSuites = append(in.CipherSuites, uint16(s))
	}
	var out struct {
		Users []struct {
			User    string `json:"user"`
			Status  string `json:"status"`
			Clients []struct {
				Client     string `json:"client"`
				Status     string `json:"status"`
				KeyPackage []byte `json:"key_package"`
			} `json:"clients"`
		} `json:"users"`
	}
	if err := u.do(ctx, apiCall{op: "claim key material", method: http.MethodPost, path: "/v1/keymaterial", body: in, out: &out}); err != nil {
		return nil, err
	}
	res := &proto.KeyMaterialResponse{Protocol: proto.MLS10}
	for _, us := range out.Users {
		code, err := nameOf(us.Status, proto.UserDeleted, "key material user status")
		if err != nil {
			return nil, fmt.Errorf("claim key material: %s: %w", us.User, err)
		}
		ukm := proto.UserKeyMaterial{Status: code, User: proto.URI(us.User)}
		for _, c := range us.Clients {
			cc, err := nameOf(c.Status, proto.ClientNothingCompatible, "key material client status")
			if err != nil {
				return nil, fmt.Errorf("claim key material: %s: %w", c.Client, err)
			}
			ckm := proto.ClientKeyMaterial{Status: cc, Client: proto.URI(c.Client)}
			if cc == proto.ClientSuccess {
				if ckm.KeyPackage, err = u.decodeMessage(c.KeyPackage, mls.WireKeyPackage, "KeyPackage of "+c.Client); err != nil {
					return nil, fmt.Errorf("claim key material: %w", err)
				}
			}
			ukm.Clients = append(ukm.Clients, ckm)
		}
		res.Users = append(res.Users, ukm)
	}
	return res, nil
}

// CreateRoom creates a room hosted by this provider, with id roomID, from
// the creator's new MLS group: its GroupInfo (group id = room URI, base
// policy extension, external_pub) and ratchet tree in wire form (POST
// /v1/rooms). It returns the room URI.
func (u *User) CreateRoom(ctx context.Context, roomID string, groupInfo *mls.Message, ratchetTree []byte) (proto.URI, error) {
	gi, err := encodeMessage(groupInfo, "GroupInfo")
	if err != nil {
		return "", fmt.Errorf("create room: %w", err)
	}
	if groupInfo.WireFormat != mls.WireGroupInfo {
		return "", fmt.Errorf("create room: the GroupInfo is a %s", groupInfo.WireFormat)
	}
	in := struct {
		Room        string `json:"room"`
		GroupInfo   []byte `json:"group_info"`
		RatchetTree []byte `json:"ratchet_tree"`
	}{roomID, gi, ratchetTree}
	var out struct {
		Room string `json:"room"`
	}
	if err := u.do(ctx, apiCall{op: "create room " + roomID, method: http.MethodPost, path: "/v1/rooms", body: in, out: &out}); err != nil {
		return "", err
	}
	return proto.URI(out.Room), nil
}

// HubInfo is the provider's identity as the hub of its rooms (GET /v1/hub).
type HubInfo struct {
	Domain string
	// ExternalSenders holds, for each cipher suite, the body of the
	// external_senders extension (RFC 9420 section 12.1.8.1) listing the
	// hub: a room created with this provider must carry exactly it, so
	// the hub can send its own proposals (DECISIONS.md item 27).
	ExternalSenders map[mls.CipherSuite][]byte
}

// Hub returns the provider's hub identity (GET /v1/hub).
func (u *User) Hub(ctx context.Context) (*HubInfo, error) {
	var out struct {
		Domain string `json:"domain"`
		Suites []struct {
			CipherSuite     uint16 `json:"cipher_suite"`
			ExternalSenders []byte `json:"external_senders"`
		} `json:"suites"`
	}
	if err := u.do(ctx, apiCall{op: "hub", method: http.MethodGet, path: "/v1/hub", out: &out}); err != nil {
		return nil, err
	}
	info := &HubInfo{Domain: out.Domain, ExternalSenders: map[mls.CipherSuite][]byte{}}
	for _, s := range out.Suites {
		var es mls.ExternalSenders
		if err := proto.Decode(s.ExternalSenders, &es, u.cfg.MaxVector); err != nil || len(es) == 0 {
			return nil, &badAnswerError{fmt.Errorf("hub: the external senders of suite %d do not decode: %v", s.CipherSuite, err)}
		}
		info.ExternalSenders[mls.CipherSuite(s.CipherSuite)] = s.ExternalSenders
	}
	return info, nil
}

// RoomInfo is a hosted room's state.
type RoomInfo struct {
	Room     proto.URI
	Epoch    uint64
	Sequence uint64
	// Members is the number of member clients.
	Members      int
	Providers    []string
	Participants []proto.UserRoles
	// TranscriptHash is the confirmed transcript hash of the epoch: equal
	// epochs with equal hashes have the same commit history.
	TranscriptHash []byte
}

// roleByName maps a role's name (proto.Role.String) back to the role.
func roleByName(name string) (proto.Role, error) {
	for r := proto.RoleSystem; r <= proto.RoleBanned; r++ {
		if r.String() == name {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q", name)
}

// Room returns the state of a room (GET /v1/rooms/{hub}/{room}): a
// linearizable read, as of the moment the request arrives.
func (u *User) Room(ctx context.Context, room proto.URI) (*RoomInfo, error) {
	return u.room(ctx, room, nil)
}

// LocalRoom returns the room as the answering node holds it now
// (?consistency=stale), without confirming with the cluster's leader: it
// may lag, and it answers while the node is cut off. For comparing the
// copies of a cluster's nodes, not for deciding what to commit next.
func (u *User) LocalRoom(ctx context.Context, room proto.URI) (*RoomInfo, error) {
	return u.room(ctx, room, url.Values{"consistency": {"stale"}})
}

func (u *User) room(ctx context.Context, room proto.URI, query url.Values) (*RoomInfo, error) {
	p, err := roomPath(room)
	if err != nil {
		return nil, fmt.Errorf("room: %w", err)
	}
	var out struct {
		Room         string   `json:"room"`
		Epoch        uint64   `json:"epoch"`
		Sequence     uint64   `json:"sequence"`
		Members      int      `json:"members"`
		Providers    []string `json:"providers"`
		Participants []struct {
			User  string   `json:"user"`
			Roles []string `json:"roles"`
		} `json:"participants"`
		TranscriptHash []byte `json:"transcript_hash"`
	}
	if err := u.do(ctx, apiCall{op: "room " + string(room), method: http.MethodGet, path: p, query: query, out: &out}); err != nil {
		return nil, err
	}
	info := &RoomInfo{Room: proto.URI(out.Room), Epoch: out.Epoch, Sequence: out.Sequence, Members: out.Members, Providers: out.Providers, TranscriptHash: out.TranscriptHash}
	for _, pt := range out.Participants {
		ur := proto.UserRoles{User: proto.URI(pt.User)}
		for _, name := range pt.Roles {
			r, err := roleByName(name)
			if err != nil {
				return nil, fmt.Errorf("room %s: participant %s: %w", room, pt.User, err)
			}
			ur.Roles = append(ur.Roles, r)
		}
		info.Participants = append(info.Participants, ur)
	}
	return info, nil
}

// jsonUpdateResult is the UpdateResult schema.
type jsonUpdateResult struct {
	Code        *int   `json:"code"`
	CodeName    string `json:"code_name"`
	Description string `json:"description"`
}

func (r *jsonUpdateResult) response() (*proto.UpdateRoomResponse, error) {
	if r.Code == nil || *r.Code < 0 || *r.Code > int(proto.UpdateInvalidProposal) {
		return nil, fmt.Errorf("the answer's update code is missing or unknown (%q)", r.CodeName)
	}
	return &proto.UpdateRoomResponse{Code: proto.UpdateResponseCode(*r.Code), Description: r.Description}, nil
}

// CommitBundle is what a commit submission carries.
type CommitBundle struct {
	// Commit is the commit, an MLSMessage of wire format
	// mls_public_message.
	Commit *mls.Message
	// Welcome is set when the commit adds clients.
	Welcome *mls.Message
	// GroupInfo is the GroupInfo of the new epoch, with external_pub.
	GroupInfo *mls.Message
	// RatchetTree is the new epoch's ratchet tree in wire form; nil sends
	// it byReference (the hub derives it).
	RatchetTree []byte
}

// updateRoom posts to a room's updateRoom-like path and returns its
// UpdateResult: in is the JSON body, or mimi an application/mimi one.
func (u *User) updateRoom(ctx context.Context, op string, room proto.URI, suffix string, in any, mimi []byte) (*proto.UpdateRoomResponse, error) {
	p, err := roomPath(room)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var out jsonUpdateResult
	if err := u.do(ctx, apiCall{op: op + " " + string(room), method: http.MethodPost, path: p + suffix, body: in, mimiBody: mimi, out: &out}); err != nil {
		return nil, err
	}
	resp, err := out.response()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, room, &badAnswerError{err})
	}
	return resp, nil
}

// Commit submits a commit bundle to the room's hub (POST
// /v1/rooms/{hub}/{room}/commit), as an application/mimi
// UpdateRoomRequest: no base64, and the provider decodes it in place. A
// refusal is the returned response's code, not an error.
func (u *User) Commit(ctx context.Context, room proto.URI, b *CommitBundle) (*proto.UpdateRoomResponse, error) {
	if b == nil {
		return nil, errors.New("commit: no bundle")
	}
	req := &proto.UpdateRoomRequest{Message: b.Commit, Welcome: b.Welcome, GroupInfo: b.GroupInfo,
		RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeByReference}}
	if b.RatchetTree != nil {
		req.RatchetTree = proto.RatchetTreeOption{Representation: proto.TreeFull, Tree: b.RatchetTree}
	}
	if b.Commit == nil || b.Commit.Public == nil || b.Commit.Public.Content.ContentType != mls.ContentCommit {
		return nil, errors.New("commit: the bundle's message is not a commit PublicMessage")
	}
	body, err := wire.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return u.updateRoom(ctx, "commit", room, "/commit", nil, body)
}

// WelcomeTree fetches the ratchet tree a Welcome to this client needs when
// it came without one (GET /v1/rooms/{hub}/{room}/tree, byReference): the
// tree of the Welcome's epoch in wire form. ref is the KeyPackageRef the
// Welcome names for this client.
func (u *User) WelcomeTree(ctx context.Context, room proto.URI, ref []byte) ([]byte, error) {
	p, err := roomPath(room)
	if err != nil {
		return nil, fmt.Errorf("welcome tree: %w", err)
	}
	var tree []byte
	q := url.Values{"keypackage": {base64.RawURLEncoding.EncodeToString(ref)}}
	if err := u.do(ctx, apiCall{op: "fetch the Welcome's tree of " + string(room), method: http.MethodGet, path: p + "/tree", query: q, mimiOut: &tree}); err != nil {
		return nil, err
	}
	return tree, nil
}

// Propose submits proposals (PublicMessages) to the room's hub in one
// updateRoom request (POST /v1/rooms/{hub}/{room}/proposals).
func (u *User) Propose(ctx context.Context, room proto.URI, proposals []*mls.Message) (*proto.UpdateRoomResponse, error) {
	if len(proposals) == 0 {
		return nil, errors.New("propose: no proposals")
	}
	in := struct {
		Proposals [][]byte `json:"proposals"`
	}{}
	for _, m := range proposals {
		b, err := encodeMessage(m, "proposal")
		if err != nil {
			return nil, fmt.Errorf("propose: %w", err)
		}
		in.Proposals = append(in.Proposals, b)
	}
	return u.updateRoom(ctx, "propose", room, "/proposals", in, nil)
}

// SendMessage submits an application message (a PrivateMessage whose
// authenticated_data is room.SenderHint of the sender) to the room's hub
// (POST /v1/rooms/{hub}/{room}/messages, provisionalMessage).
func (u *User) SendMessage(ctx context.Context, room proto.URI, m *mls.Message) (*proto.UpdateRoomResponse, error) {
	b, err := encodeMessage(m, "message")
	if err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	// The binary body is the MLSMessage itself: no base64, no JSON.
	return u.updateRoom(ctx, "send", room, "/messages", nil, b)
}

// ClaimGroupInfo claims the room's GroupInfo to join by external commit
// with signatureKey (POST /v1/rooms/{hub}/{room}/groupinfo). On success the
// response carries the GroupInfo, the ratchet tree (TreeFull, when the
// server sent one) and the pending proposals the external commit must
// cover; otherwise only its status.
func (u *User) ClaimGroupInfo(ctx context.Context, room proto.URI, signatureKey []byte) (*proto.GroupInfoResponse, error) {
	p, err := roomPath(room)
	if err != nil {
		return nil, fmt.Errorf("claim GroupInfo: %w", err)
	}
	in := struct {
		SignatureKey []byte `json:"signature_key"`
	}{signatureKey}
	var out struct {
		Status           string   `json:"status"`
		GroupInfo        []byte   `json:"group_info"`
		RatchetTree      []byte   `json:"ratchet_tree"`
		PendingProposals [][]byte `json:"pending_proposals"`
	}
	op := "claim GroupInfo of " + string(room)
	if err := u.do(ctx, apiCall{op: op, method: http.MethodPost, path: p + "/groupinfo", body: in, out: &out}); err != nil {
		return nil, err
	}
	var resp proto.GroupInfoResponse
	switch out.Status {
	case "success":
		resp.Status = proto.GroupInfoSuccess
	case "notAuthorized":
		resp.Status = proto.GroupInfoNotAuthorized
	case "noSuchRoom":
		resp.Status = proto.GroupInfoNoSuchRoom
	default:
		return nil, fmt.Errorf("%s: unknown status %q", op, out.Status)
	}
	if resp.Status != proto.GroupInfoSuccess {
		return &resp, nil
	}
	if resp.GroupInfo, err = u.decodeMessage(out.GroupInfo, mls.WireGroupInfo, "GroupInfo"); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if out.RatchetTree != nil {
		resp.RatchetTree = proto.RatchetTreeOption{Representation: proto.TreeFull, Tree: out.RatchetTree}
	}
	for i, b := range out.PendingProposals {
		m, err := u.decodeMessage(b, mls.WirePublicMessage, "pending proposal "+strconv.Itoa(i))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		resp.PendingProposals = append(resp.PendingProposals, m)
	}
	return &resp, nil
}

// Subscribe makes this client's stream receive the room's messages (PUT
// /v1/rooms/{hub}/{room}/subscription), after joining by external commit.
func (u *User) Subscribe(ctx context.Context, room proto.URI) error {
	return u.subscription(ctx, room, http.MethodPut, "subscribe to")
}

// Unsubscribe stops the room's messages (DELETE
// /v1/rooms/{hub}/{room}/subscription).
func (u *User) Unsubscribe(ctx context.Context, room proto.URI) error {
	return u.subscription(ctx, room, http.MethodDelete, "unsubscribe from")
}

func (u *User) subscription(ctx context.Context, room proto.URI, method, op string) error {
	p, err := roomPath(room)
	if err != nil {
		return fmt.Errorf("%s room: %w", op, err)
	}
	return u.do(ctx, apiCall{op: op + " " + string(room), method: method, path: p + "/subscription"})
}

// ReportAbuse sends an abuse report to the room's hub (POST
// /v1/rooms/{hub}/{room}/abuse).
func (u *User) ReportAbuse(ctx context.Context, room proto.URI, r *proto.AbuseReport) error {
	p, err := roomPath(room)
	if err != nil {
		return fmt.Errorf("report abuse: %w", err)
	}
	b, err := wire.Marshal(r)
	if err != nil {
		return fmt.Errorf("report abuse: encoding the report: %w", err)
	}
	in := struct {
		Report []byte `json:"report"`
	}{b}
	return u.do(ctx, apiCall{op: "report abuse in " + string(room), method: http.MethodPost, path: p + "/abuse", body: in})
}

// jsonConsent is the ConsentEntry schema.
type jsonConsent struct {
	Operation   string   `json:"operation"`
	Requester   string   `json:"requester"`
	Target      string   `json:"target"`
	Room        string   `json:"room,omitempty"`
	KeyPackages [][]byte `json:"key_packages,omitempty"`
}

func consentToJSON(e *proto.ConsentEntry) (*jsonConsent, error) {
	j := &jsonConsent{Requester: string(e.Requester), Target: string(e.Target)}
	switch e.Operation {
	case proto.ConsentCancel, proto.ConsentRequest, proto.ConsentGrant, proto.ConsentRevoke:
		j.Operation = e.Operation.String()
	default:
		return nil, fmt.Errorf("unknown consent operation %d", e.Operation)
	}
	if e.Room != nil {
		if *e.Room == "" {
			return nil, errors.New("consent entry: empty room URI")
		}
		j.Room = string(*e.Room)
	}
	if len(e.KeyPackages) > 0 && e.Operation != proto.ConsentGrant {
		return nil, errors.New("consent entry: only a grant carries KeyPackages")
	}
	for _, kp := range e.KeyPackages {
		b, err := encodeMessage(kp, "consent KeyPackage")
		if err != nil {
			return nil, err
		}
		j.KeyPackages = append(j.KeyPackages, b)
	}
	return j, nil
}

func (u *User) consentFromJSON(j *jsonConsent) (*proto.ConsentEntry, error) {
	e := &proto.ConsentEntry{Requester: proto.URI(j.Requester), Target: proto.URI(j.Target)}
	switch j.Operation {
	case "cancel":
		e.Operation = proto.ConsentCancel
	case "request":
		e.Operation = proto.ConsentRequest
	case "grant":
		e.Operation = proto.ConsentGrant
	case "revoke":
		e.Operation = proto.ConsentRevoke
	default:
		return nil, fmt.Errorf("unknown consent operation %q", j.Operation)
	}
	if j.Room != "" {
		r := proto.URI(j.Room)
		e.Room = &r
	}
	for i, b := range j.KeyPackages {
		m, err := u.decodeMessage(b, mls.WireKeyPackage, "consent KeyPackage "+strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		e.KeyPackages = append(e.KeyPackages, m)
	}
	return e, nil
}

// Consent makes a consent operation as this client's user (POST
// /v1/consent): request or cancel (this user is the requester), grant or
// revoke (this user is the target).
func (u *User) Consent(ctx context.Context, e *proto.ConsentEntry) error {
	if e == nil {
		return errors.New("consent: no entry")
	}
	j, err := consentToJSON(e)
	if err != nil {
		return fmt.Errorf("consent: %w", err)
	}
	return u.do(ctx, apiCall{op: "consent " + j.Operation, method: http.MethodPost, path: "/v1/consent", body: j})
}

// ConsentLists is the answer to ConsentList.
type ConsentLists struct {
	// Pending are requests addressed to this user awaiting a decision.
	Pending []proto.ConsentEntry
	// Received are grants this user received.
	Received []proto.ConsentEntry
	// Given are the decisions this user made.
	Given []proto.ConsentEntry
}

// ConsentList returns the consent requests addressed to this user, the
// grants received and the decisions given (GET /v1/consent).
func (u *User) ConsentList(ctx context.Context) (*ConsentLists, error) {
	var out struct {
		Pending  []jsonConsent `json:"pending"`
		Received []jsonConsent `json:"received"`
		Given    []jsonConsent `json:"given"`
	}
	if err := u.do(ctx, apiCall{op: "consent list", method: http.MethodGet, path: "/v1/consent", out: &out}); err != nil {
		return nil, err
	}
	res := &ConsentLists{}
	for _, l := range []struct {
		in  []jsonConsent
		out *[]proto.ConsentEntry
	}{{out.Pending, &res.Pending}, {out.Received, &res.Received}, {out.Given, &res.Given}} {
		for i := range l.in {
			e, err := u.consentFromJSON(&l.in[i])
			if err != nil {
				return nil, fmt.Errorf("consent list: %w", err)
			}
			*l.out = append(*l.out, *e)
		}
	}
	return res, nil
}

// searchTypeName names SearchIdentifierType values as the client API does.
func searchTypeName(t proto.SearchIdentifierType) (string, bool) {
	switch t {
	case proto.SearchHandle:
		return "handle", true
	case proto.SearchNick:
		return "nick", true
	case proto.SearchEmail:
		return "email", true
	case proto.SearchPhone:
		return "phone", true
	case proto.SearchPartialName:
		return "partialName", true
	case proto.SearchWholeProfile:
		return "wholeProfile", true
	case proto.SearchOIDCStdClaim:
		return "oidcStdClaim", true
	case proto.SearchVCardField:
		return "vcardField", true
	}
	return "", false
}

// Identifiers looks users up at domain, here or at another provider (POST
// /v1/identifiers, identifierQuery).
func (u *User) Identifiers(ctx context.Context, domain string, q *proto.IdentifierRequest) (*proto.IdentifierResponse, error) {
	if q == nil {
		return nil, errors.New("identifiers: no query")
	}
	name, ok := searchTypeName(q.Type)
	if !ok {
		return nil, fmt.Errorf("identifiers: unknown search type %d", q.Type)
	}
	in := struct {
		Domain string `json:"domain"`
		Type   string `json:"type"`
		Value  string `json:"value"`
		Field  string `json:"field,omitempty"`
	}{domain, name, q.Value, q.Field}
	var out struct {
		Code     string   `json:"code"`
		URIs     []string `json:"uris"`
		Profiles []struct {
			URI    string             `json:"uri"`
			Fields []jsonProfileField `json:"fields"`
		} `json:"profiles"`
	}
	if err := u.do(ctx, apiCall{op: "identifiers at " + domain, method: http.MethodPost, path: "/v1/identifiers", body: in, out: &out}); err != nil {
		return nil, err
	}
	code, err := nameOf(out.Code, proto.QueryUnsupportedField, "identifier query code")
	if err != nil {
		return nil, fmt.Errorf("identifiers at %s: %w", domain, err)
	}
	res := &proto.IdentifierResponse{Code: code}
	for _, s := range out.URIs {
		res.URIs = append(res.URIs, proto.URI(s))
	}
	for _, p := range out.Profiles {
		fields, err := profileFromJSON(p.Fields)
		if err != nil {
			return nil, fmt.Errorf("identifiers at %s: %s: %w", domain, p.URI, err)
		}
		res.Profiles = append(res.Profiles, proto.UserProfile{URI: proto.URI(p.URI), Fields: fields})
	}
	return res, nil
}

// ItemKind says what a stream item carries.
type ItemKind string

// Stream item kinds. Others may appear in later versions of the API;
// callers skip what they do not know.
const (
	// ItemMessage is an MLSMessage of a room: commit, proposal or
	// application message.
	ItemMessage ItemKind = "message"
	// ItemWelcome is a Welcome addressed to this client.
	ItemWelcome ItemKind = "welcome"
	// ItemConsent is a ConsentEntry for this client's user.
	ItemConsent ItemKind = "consent"
)

// StreamItem is one entry of this client's stream.
type StreamItem struct {
	// Seq is the item's position in the stream.
	Seq  uint64
	Kind ItemKind
	// Room is the room URI (messages, Welcomes, room-scoped consent).
	Room proto.URI
	// HubSeq is the message's number in the room's hub order.
	HubSeq uint64
	// At is the hub's acceptance time; zero when absent.
	At time.Time
	// Data is the MLSMessage, or the ConsentEntry for consent items.
	Data []byte

	maxVector int
}

// MLSMessage decodes a message or Welcome item's MLSMessage.
func (it *StreamItem) MLSMessage() (*mls.Message, error) {
	if it.Kind != ItemMessage && it.Kind != ItemWelcome {
		return nil, fmt.Errorf("stream item %d is a %s, not an MLS message", it.Seq, it.Kind)
	}
	m := new(mls.Message)
	if err := wire.UnmarshalLimit(it.Data, m, it.limit()); err != nil {
		return nil, fmt.Errorf("stream item %d: %w", it.Seq, err)
	}
	if (it.Kind == ItemWelcome) != (m.WireFormat == mls.WireWelcome) {
		return nil, fmt.Errorf("stream item %d: a %s item holds a %s", it.Seq, it.Kind, m.WireFormat)
	}
	return m, nil
}

// ConsentEntry decodes a consent item's ConsentEntry.
func (it *StreamItem) ConsentEntry() (*proto.ConsentEntry, error) {
	if it.Kind != ItemConsent {
		return nil, fmt.Errorf("stream item %d is a %s, not a consent entry", it.Seq, it.Kind)
	}
	e := new(proto.ConsentEntry)
	if err := proto.Decode(it.Data, e, it.limit()); err != nil {
		return nil, fmt.Errorf("stream item %d: %w", it.Seq, err)
	}
	return e, nil
}

func (it *StreamItem) limit() int {
	if it.maxVector > 0 {
		return it.maxVector
	}
	return DefaultMaxVector
}

// StreamOptions selects stream items.
type StreamOptions struct {
	// After is the last seq already read (0 for the start).
	After uint64
	// Wait is how long the server may wait for an item (whole seconds, at
	// most 60); zero answers at once.
	Wait time.Duration
	// Limit is the most items wanted (0: the server's default of 100; at
	// most 1000).
	Limit int
}

// StreamPage is the answer to Stream.
type StreamPage struct {
	Items []StreamItem
	// Gap reports that items after After were dropped before being read.
	Gap bool
	// Last is the stream's last seq.
	Last uint64
}

// Stream reads this client's ordered stream (GET /v1/stream), waiting up
// to o.Wait for an item (long poll).
func (u *User) Stream(ctx context.Context, o StreamOptions) (*StreamPage, error) {
	q := url.Values{}
	q.Set("after", strconv.FormatUint(o.After, 10))
	wait := min(max(o.Wait, 0), maxWait)
	if wait > 0 {
		q.Set("wait", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	var out struct {
		Items []struct {
			Seq    uint64 `json:"seq"`
			Kind   string `json:"kind"`
			Room   string `json:"room"`
			HubSeq uint64 `json:"hub_seq"`
			At     int64  `json:"at"`
			Data   []byte `json:"data"`
		} `json:"items"`
		Gap  bool   `json:"gap"`
		Last uint64 `json:"last"`
	}
	if err := u.do(ctx, apiCall{op: "stream", method: http.MethodGet, path: "/v1/stream", query: q, out: &out, extraTimeout: wait}); err != nil {
		return nil, err
	}
	page := &StreamPage{Gap: out.Gap, Last: out.Last}
	prev := o.After
	for _, it := range out.Items {
		if it.Seq <= prev {
			return nil, fmt.Errorf("stream: item %d after item %d: the stream is not in order", it.Seq, prev)
		}
		prev = it.Seq
		si := StreamItem{Seq: it.Seq, Kind: ItemKind(it.Kind), Room: proto.URI(it.Room), HubSeq: it.HubSeq, Data: it.Data, maxVector: u.cfg.MaxVector}
		if it.At > 0 {
			si.At = time.UnixMilli(it.At)
		}
		page.Items = append(page.Items, si)
	}
	return page, nil
}

// Ack drops the stream's items up to seq (POST /v1/stream/ack).
func (u *User) Ack(ctx context.Context, seq uint64) error {
	in := struct {
		Seq uint64 `json:"seq"`
	}{seq}
	return u.do(ctx, apiCall{op: "ack " + strconv.FormatUint(seq, 10), method: http.MethodPost, path: "/v1/stream/ack", body: in})
}
