package hub

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/httpapi"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Operator endpoints for accounts, on the operations listener behind the
// admin token (registered by opsHandler):
//
//	POST /v1/users/suspend   OpsSuspendRequest -> OpsSuspendRequest: the user's tokens stop working on every node, or work again
//	POST /v1/users/revoke    OpsRevokeRequest -> OpsRevokeAnswer: one device loses its token and KeyPackages, and leaves its rooms
//	GET  /v1/users/devices   ?user=NAME|URI -> OpsDevices
//	POST /v1/invites         OpsInviteRequest -> OpsInvite: a single-use invite code for registration policy "invite"
//
// Errors as the other /v1/ endpoints: 400, 404 for an unknown user or
// device, 429 at a table's bound, 503/504 as cluster operations.

// OpsSuspendRequest is the body of POST /v1/users/suspend.
type OpsSuspendRequest struct {
	// User is a local user's name or URI.
	User string `json:"user"`
	// Suspend false reinstates the user.
	Suspend bool `json:"suspend"`
}

// OpsRevokeRequest is the body of POST /v1/users/revoke.
type OpsRevokeRequest struct {
	// Client is the device's URI (mimi://DOMAIN/u/USER/d/DEVICE).
	Client string `json:"client"`
}

// OpsRevokeAnswer answers POST /v1/users/revoke: the device, and the rooms
// it leaves (fsm.RemoveClientsResult): hosted here with the hub's Remove
// queued, hosted here but unable to take hub proposals (created before the
// hub had keys), and hosted elsewhere, whose hub was asked.
type OpsRevokeAnswer struct {
	Client   string   `json:"client"`
	Proposed []string `json:"proposed"`
	Unable   []string `json:"unable"`
	Asked    []string `json:"asked"`
}

// OpsDevices answers GET /v1/users/devices.
type OpsDevices struct {
	User      string      `json:"user"`
	Suspended bool        `json:"suspended"`
	Devices   []OpsDevice `json:"devices"`
}

// OpsDevice is one device of OpsDevices.
type OpsDevice struct {
	Client  string     `json:"client"`
	AddedAt *time.Time `json:"added_at,omitempty"`
	How     string     `json:"how"`
}

// OpsInviteRequest is the body of POST /v1/invites.
type OpsInviteRequest struct {
	// TTLSeconds is the code's lifetime (default 7 days, at most 30).
	TTLSeconds int64 `json:"ttl_seconds"`
}

// OpsInvite answers POST /v1/invites: the code is shown once; only its
// hash is stored.
type OpsInvite struct {
	Code      string    `json:"code"`
	ExpiresAt time.Time `json:"expires_at"`
}

// defaultInviteTTL is an invite code's lifetime when none is asked.
const defaultInviteTTL = 7 * 24 * time.Hour

// userOps registers the account endpoints with admin.
func (h *Hub) userOps(admin func(method, path string, f http.HandlerFunc)) {
	admin(http.MethodPost, "/v1/users/suspend", h.opsSuspend)
	admin(http.MethodPost, "/v1/users/revoke", h.opsRevoke)
	admin(http.MethodGet, "/v1/users/devices", h.opsDevices)
	admin(http.MethodPost, "/v1/invites", h.opsInvite)
}

// localUser reads a user name or URI of this provider.
func (h *Hub) localUser(s string) (proto.URI, error) {
	u := proto.URI(s)
	if !strings.HasPrefix(s, "mimi://") {
		u = proto.UserURI(h.cfg.Domain, s)
	}
	id, err := u.Parse()
	if err != nil || id.Kind != proto.KindUser || id.Domain != h.cfg.Domain {
		return "", fmt.Errorf("%q is not a user of %s", s, h.cfg.Domain)
	}
	return u, nil
}

// opsApply proposes an account command and answers its refusal.
func (h *Hub) opsApply(w http.ResponseWriter, r *http.Request, op string, t fsm.CommandType, body wire.Encoder) (*fsm.Result, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), clusterOpTimeout)
	defer cancel()
	res, err := h.store.Apply(ctx, t, nil, "", body)
	if err != nil {
		h.clusterError(w, r, op, err, http.StatusInternalServerError)
		return nil, false
	}
	if err := res.Err(); err != nil {
		status := http.StatusBadRequest
		switch res.Kind {
		case fsm.NotFound:
			status = http.StatusNotFound
		case fsm.Conflict, fsm.NotAllowed:
			status = http.StatusConflict
		case fsm.Limit:
			status = http.StatusTooManyRequests
		}
		opsError(w, status, op+": "+res.Message)
		return nil, false
	}
	return res, true
}

func (h *Hub) opsSuspend(w http.ResponseWriter, r *http.Request) {
	var in OpsSuspendRequest
	if !decodeOps(w, r, &in, false) {
		return
	}
	u, err := h.localUser(in.User)
	if err != nil {
		opsError(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, ok := h.opsApply(w, r, "suspend", fsm.CmdSuspendUser, &fsm.SuspendUserBody{User: u, Suspend: in.Suspend}); ok {
		h.cfg.Logger.WarnContext(r.Context(), "operator suspended a user", "user", u, "suspend", in.Suspend)
		writeJSON(w, OpsSuspendRequest{User: string(u), Suspend: in.Suspend})
	}
}

func (h *Hub) opsRevoke(w http.ResponseWriter, r *http.Request) {
	var in OpsRevokeRequest
	if !decodeOps(w, r, &in, false) {
		return
	}
	c := proto.URI(in.Client)
	if id, err := c.Parse(); err != nil || id.Kind != proto.KindClient || id.Domain != h.cfg.Domain {
		opsError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a device of %s", in.Client, h.cfg.Domain))
		return
	}
	res, ok := h.opsApply(w, r, "revoke", fsm.CmdRevokeDevice, &fsm.RevokeDeviceBody{Client: c})
	if !ok {
		return
	}
	h.cfg.Logger.WarnContext(r.Context(), "operator revoked a device", "client", c)
	var rooms fsm.RemoveClientsResult
	if err := wire.Unmarshal(res.Body, &rooms); err != nil {
		opsError(w, http.StatusInternalServerError, "revoke: the answer does not decode: "+err.Error())
		return
	}
	strs := func(us []proto.URI) []string {
		out := make([]string, 0, len(us))
		for _, u := range us {
			out = append(out, string(u))
		}
		return out
	}
	writeJSON(w, OpsRevokeAnswer{Client: string(c), Proposed: strs(rooms.Proposed), Unable: strs(rooms.Unable), Asked: strs(rooms.Asked)})
}

func (h *Hub) opsDevices(w http.ResponseWriter, r *http.Request) {
	u, err := h.localUser(r.URL.Query().Get("user"))
	if err != nil {
		opsError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), clusterOpTimeout)
	defer cancel()
	out := OpsDevices{User: string(u), Devices: []OpsDevice{}}
	found := false
	err = h.store.Read(ctx, true, func(s *fsm.State) error {
		ds, ok := s.Devices(u)
		found = ok
		out.Suspended = s.Suspended(u)
		for _, d := range ds {
			od := OpsDevice{Client: string(d.Client), How: httpapi.DeviceHow(d.How)}
			if d.AddedAt > 0 {
				od.AddedAt = msTime(d.AddedAt)
			}
			out.Devices = append(out.Devices, od)
		}
		return nil
	})
	if err != nil {
		h.clusterError(w, r, "devices", err, http.StatusInternalServerError)
		return
	}
	if !found {
		opsError(w, http.StatusNotFound, "no user "+string(u))
		return
	}
	writeJSON(w, out)
}

func (h *Hub) opsInvite(w http.ResponseWriter, r *http.Request) {
	var in OpsInviteRequest
	if !decodeOps(w, r, &in, true) {
		return
	}
	ttl := defaultInviteTTL
	if in.TTLSeconds != 0 {
		ttl = time.Duration(in.TTLSeconds) * time.Second
	}
	if ttl <= 0 || ttl.Milliseconds() > fsm.MaxInviteTTL {
		opsError(w, http.StatusBadRequest, fmt.Sprintf("ttl_seconds must be from 1 to %d", fsm.MaxInviteTTL/1000))
		return
	}
	code, hash := httpapi.NewInviteCode()
	// The expiry is stamped here, outside Apply, from this node's clock;
	// the FSM checks it against the leader's.
	expires := time.Now().Add(ttl)
	if _, ok := h.opsApply(w, r, "invite", fsm.CmdMintInvite, &fsm.MintInviteBody{CodeHash: hash, ExpiresAt: uint64(expires.UnixMilli())}); ok {
		writeJSON(w, OpsInvite{Code: code, ExpiresAt: expires.UTC()})
	}
}

// checkRegistration checks the registration policy's name.
func checkRegistration(policy, key string) error {
	switch policy {
	case "", httpapi.RegistrationOpen, httpapi.RegistrationInvite, httpapi.RegistrationClosed:
		return nil
	case httpapi.RegistrationKey:
		if key == "" {
			return fmt.Errorf("hub: registration policy %q needs a registration key", policy)
		}
		return nil
	}
	return fmt.Errorf("hub: registration policy %q: want open, key, invite or closed", policy)
}
