package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// clientAPI serves the provider's own clients (openapi.yaml).
type clientAPI struct {
	cfg     Config
	backend Backend
	peers   Peers
	domain  string
	log     *slog.Logger
	// limits rate-limits the account endpoints (ratelimit.go).
	limits *rateLimiters
	// passwords hashes and verifies account passwords (password.go).
	passwords *passwordHasher
	meter     *meter // per-client budgets
	// polls bounds each client's waiting long polls (streampolls.go).
	polls *streamPolls
	// timer starts the stream's wait; tests replace it.
	timer func(time.Duration) (<-chan time.Time, func() bool)
}

// principal is the authenticated client.
type principal struct {
	client proto.URI
	user   proto.URI
	// tokenHash is the SHA-256 of the client's token. confirmed says the
	// token was found valid on a linearizable read; until then (routes
	// that only write, checked on this node's state) every command the
	// request proposes carries the token, and Apply refuses it once the
	// device is revoked (authenticateWrite).
	tokenHash []byte
	confirmed bool
}

// clientHandler handles a request of an authenticated client (nil for
// /v1/register).
type clientHandler func(w http.ResponseWriter, r *http.Request, p *principal) error

// Client API route names, for Config.Middleware (RouteName).
const (
	RouteRegister          = "client.register"
	RouteWhoami            = "client.whoami"
	RouteUploadKeyPackages = "client.uploadKeyPackages"
	RouteCountKeyPackages  = "client.countKeyPackages"
	RouteKeyMaterial       = "client.keyMaterial"
	RouteCreateRoom        = "client.createRoom"
	RouteRoom              = "client.room"
	RouteCommit            = "client.commit"
	RouteProposals         = "client.proposals"
	RouteMessages          = "client.messages"
	RouteGroupInfo         = "client.groupInfo"
	RouteSubscribe         = "client.subscribe"
	RouteUnsubscribe       = "client.unsubscribe"
	RouteAbuse             = "client.abuse"
	RouteConsent           = "client.consent"
	RouteConsentLists      = "client.consentLists"
	RouteIdentifiers       = "client.identifiers"
	RouteStream            = "client.stream"
	RouteAck               = "client.ack"
	RouteRequestLink       = "client.requestLink"
	RouteApproveLink       = "client.approveLink"
	RouteInviteDevice      = "client.inviteDevice"
	RouteRedeemInvite      = "client.redeemInvite"
	RouteInvitations       = "client.invitations"
	RouteCancelInvite      = "client.cancelInvite"
	RouteAddDevice         = "client.addDevice"
	RouteDevices           = "client.devices"
	RouteRevokeDevice      = "client.revokeDevice"
	RouteSetPassword       = "client.setPassword"
)

// publicRoutes need no token: they create users and devices.
var publicRoutes = map[string]bool{RouteRegister: true, RouteRequestLink: true, RouteAddDevice: true, RouteRedeemInvite: true}

// NewClientAPI returns the router of the client API (openapi.yaml beside
// this file): JSON, bearer tokens, errors as {"error", "kind"}. Requests
// about rooms hosted elsewhere are relayed to their hub through peers (nil:
// every relay fails as unreachable).
func NewClientAPI(cfg Config, backend Backend, peers Peers) http.Handler {
	c := newClientAPI(cfg, backend, peers)
	return c.cfg.withDeadlines(c.router())
}

func newClientAPI(cfg Config, backend Backend, peers Peers) *clientAPI {
	domain := backend.Domain()
	c := &clientAPI{cfg: cfg.withDefaults(domain), backend: backend, peers: orNoPeers(peers), domain: domain}
	c.log = c.cfg.Logger
	c.limits = newRateLimiters(c.cfg.RateLimits, time.Now)
	c.passwords = newPasswordHasher(c.cfg.PasswordParams, c.cfg.PasswordConcurrency)
	c.meter = newMeter(c.cfg.ClientBudget, 0)
	c.polls = newStreamPolls(c.cfg.MaxStreamPolls)
	c.timer = func(d time.Duration) (<-chan time.Time, func() bool) {
		t := time.NewTimer(d)
		return t.C, t.Stop
	}
	return c
}

func (c *clientAPI) router() *mux.Router {
	jsonStatus := func(status int, msg string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSONError(c.log, w, r, fail(status, "%s", msg))
		})
	}
	r := newRouter(&c.cfg, jsonStatus(http.StatusNotFound, "no such endpoint"), jsonStatus(http.StatusMethodNotAllowed, "method not allowed"))
	t := c.cfg.RequestTimeout
	routes := []struct {
		method, path, name string
		h                  clientHandler
		timeout            time.Duration
	}{ // the busiest first: mux tries the routes in order
		{http.MethodPost, "/v1/rooms/{hub}/{room}/messages", RouteMessages, c.message, t},
		{http.MethodPost, "/v1/rooms/{hub}/{room}/commit", RouteCommit, c.commit, t},
		{http.MethodGet, "/v1/stream", RouteStream, c.stream, t + c.cfg.MaxStreamWait},
		{http.MethodPost, "/v1/stream/ack", RouteAck, c.ack, t},
		{http.MethodPost, "/v1/register", RouteRegister, c.register, t},
		{http.MethodGet, "/v1/whoami", RouteWhoami, c.whoami, t},
		{http.MethodPost, "/v1/keypackages", RouteUploadKeyPackages, c.uploadKeyPackages, t},
		{http.MethodGet, "/v1/keypackages", RouteCountKeyPackages, c.countKeyPackages, t},
		{http.MethodPost, "/v1/keymaterial", RouteKeyMaterial, c.claimKeyMaterial, t},
		{http.MethodPost, "/v1/rooms", RouteCreateRoom, c.createRoom, t},
		{http.MethodGet, "/v1/hub", RouteHub, c.hub, t},
		{http.MethodGet, "/v1/rooms/{hub}/{room}", RouteRoom, c.room, t},
		{http.MethodPost, "/v1/rooms/{hub}/{room}/proposals", RouteProposals, c.proposals, t},
		{http.MethodPost, "/v1/rooms/{hub}/{room}/groupinfo", RouteGroupInfo, c.groupInfo, t},
		{http.MethodGet, "/v1/rooms/{hub}/{room}/tree", RouteWelcomeTree, c.welcomeTree, t},
		{http.MethodPut, "/v1/rooms/{hub}/{room}/subscription", RouteSubscribe, c.subscription(true), t},
		{http.MethodDelete, "/v1/rooms/{hub}/{room}/subscription", RouteUnsubscribe, c.subscription(false), t},
		{http.MethodPost, "/v1/rooms/{hub}/{room}/abuse", RouteAbuse, c.abuse, t},
		{http.MethodPost, "/v1/consent", RouteConsent, c.consent, t},
		{http.MethodGet, "/v1/consent", RouteConsentLists, c.consentLists, t},
		{http.MethodPost, "/v1/identifiers", RouteIdentifiers, c.identifiers, t},
		{http.MethodPost, "/v1/devices/link", RouteRequestLink, c.requestLink, t},
		{http.MethodPost, "/v1/devices/approve", RouteApproveLink, c.approveLink, t},
		{http.MethodPost, "/v1/devices/invite", RouteInviteDevice, c.inviteDevice, t},
		{http.MethodGet, "/v1/devices/invitations", RouteInvitations, c.invitations, t},
		{http.MethodDelete, "/v1/devices/invitations/{id}", RouteCancelInvite, c.cancelInvite, t},
		{http.MethodPost, "/v1/devices/redeem", RouteRedeemInvite, c.redeemInvite, t},
		{http.MethodPost, "/v1/devices", RouteAddDevice, c.addDevice, t},
		{http.MethodGet, "/v1/devices", RouteDevices, c.devices, t},
		{http.MethodDelete, "/v1/devices/{device}", RouteRevokeDevice, c.revokeDevice, t},
		{http.MethodPut, "/v1/account/password", RouteSetPassword, c.setPassword, t},
	}
	for _, rt := range routes {
		auth := authLinearizable
		switch {
		case publicRoutes[rt.name]:
			auth = authNone
		case writeOnlyRoutes[rt.name]:
			auth = authInLog
		}
		r.Path(rt.path).Methods(rt.method).Name(rt.name).Handler(c.wrap(rt.h, auth, rt.timeout))
	}
	return r
}

// How a route authenticates its client.
type authMode uint8

const (
	authNone         authMode = iota // public: creates users and devices
	authLinearizable                 // the token is checked on a linearizable read
	authInLog                        // checked on this node's state, and by Apply in log order
)

// writeOnlyRoutes answer with nothing but what the commands they propose
// answer (for rooms hosted here), so the log itself can confirm their
// client's token: the request is checked on this node's state at once,
// and each command carries the token, which Admit (on a linearizable
// read) and Apply (in log order) refuse once revoked. A revocation
// committed before the command is therefore never missed, with no read
// index round per request. What such a handler does besides proposing
// (relaying to another hub) first confirms the token linearizably
// (clientAPI.confirm).
var writeOnlyRoutes = map[string]bool{
	RouteUploadKeyPackages: true, RouteCommit: true, RouteProposals: true, RouteMessages: true,
	RouteSubscribe: true, RouteUnsubscribe: true, RouteAck: true,
}

// Read-your-writes tokens (DESIGN.md): every answer carries the index of
// the state it reflects, and a read that brings a token is served from a
// state at least that recent.
const (
	HeaderIndex    = "Mimi-Index"
	HeaderMinIndex = "Mimi-Min-Index"
)

// indexWriter sets Mimi-Index on the answer: the index of the entry the
// request's write was applied in, or of this node's state, whichever is
// later.
type indexWriter struct {
	http.ResponseWriter
	backend Backend
	index   uint64 // the request's write, if any
	wrote   bool
}

func (w *indexWriter) WriteHeader(status int) {
	if !w.wrote {
		w.wrote = true
		if status < 300 {
			w.Header().Set(HeaderIndex, strconv.FormatUint(max(w.index, w.backend.AppliedIndex()), 10))
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *indexWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *indexWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// indexKey carries the request's indexWriter in its context.
type indexKey struct{}

// noteIndex records the index a request's write was applied in.
func noteIndex(r *http.Request, index uint64) {
	if w, ok := r.Context().Value(indexKey{}).(*indexWriter); ok {
		w.index = max(w.index, index)
	}
}

// minIndex reads a request's read-your-writes token (0 without one).
func minIndex(r *http.Request) (uint64, error) {
	v := r.Header.Get(HeaderMinIndex)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fail(http.StatusBadRequest, "%s: %q is not an index", HeaderMinIndex, v)
	}
	return n, nil
}

// wrap authenticates the client (unless public), meters it, bounds the
// request's time, makes a read wait for the client's read-your-writes
// token, and answers errors.
func (c *clientAPI) wrap(h clientHandler, auth authMode, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		r, cancel := c.cfg.route(rw, r, timeout)
		defer cancel()
		w := &indexWriter{ResponseWriter: rw, backend: c.backend}
		r = r.WithContext(context.WithValue(r.Context(), indexKey{}, w))
		var p *principal
		if auth != authNone {
			var err error
			if p, err = c.authenticate(r, auth == authInLog); err != nil {
				writeJSONError(c.log, w, r, err)
				return
			}
			ctx, err := c.meter.admit(r, string(p.client))
			if err != nil {
				writeJSONError(c.log, w, r, err)
				return
			}
			r = r.WithContext(ctx)
		}
		if r.Method == http.MethodGet {
			idx, err := minIndex(r)
			if err == nil && idx > 0 {
				err = c.backend.WaitApplied(r.Context(), idx)
			}
			if err != nil {
				writeJSONError(c.log, w, r, err)
				return
			}
		}
		if err := h(w, r, p); err != nil {
			writeJSONError(c.log, w, r, err)
		}
	})
}

// Bearer tokens: mimi1.<base64url(client URI)>.<base64url(32 random bytes)>.
const tokenPrefix = "mimi1"

// newToken returns a fresh token for client and its SHA-256.
func newToken(client proto.URI, secret []byte) (string, []byte) {
	if secret == nil {
		secret = make([]byte, tokenSecretSize)
		_, _ = rand.Read(secret) // never fails (crypto/rand)
	}
	token := tokenPrefix + "." + base64.RawURLEncoding.EncodeToString([]byte(client)) + "." + base64.RawURLEncoding.EncodeToString(secret)
	h := sha256.Sum256([]byte(token))
	return token, h[:]
}

// parseToken returns the client a token claims to be.
func parseToken(token string) (proto.URI, error) {
	prefix, rest, _ := strings.Cut(token, ".")
	clientPart, secretPart, ok := strings.Cut(rest, ".")
	if prefix != tokenPrefix || !ok || strings.Contains(secretPart, ".") {
		return "", errors.New("not a mimi1 token")
	}
	uri, err := base64.RawURLEncoding.DecodeString(clientPart)
	if err != nil {
		return "", errors.New("the token's client part is not base64url")
	}
	if secret, err := base64.RawURLEncoding.DecodeString(secretPart); err != nil || len(secret) != 32 {
		return "", errors.New("the token's secret is not 32 base64url bytes")
	}
	client := proto.URI(uri)
	if id, err := client.Parse(); err != nil || id.Kind != proto.KindClient {
		return "", errors.New("the token does not name a client")
	}
	return client, nil
}

// authenticate checks the bearer token with a linearizable read: the
// token must be valid in a state that holds every write acknowledged
// before the request came, so a device revoked (or a user suspended)
// through any node is refused at once on every node, even one that has not
// applied the revocation yet (it waits until it has).
//
// With inLog (writeOnlyRoutes) a token valid in this node's state is
// taken at once, unconfirmed: the commands the request proposes carry it
// and are refused in log order if it was revoked (see writeOnlyRoutes).
// A token this node does not know (yet) is checked linearizably.
func (c *clientAPI) authenticate(r *http.Request, inLog bool) (*principal, error) {
	auth := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, fail(http.StatusUnauthorized, "an Authorization: Bearer token is required")
	}
	client, err := parseToken(strings.TrimSpace(token))
	if err != nil {
		return nil, fail(http.StatusUnauthorized, "invalid token: %v", err)
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	user, _ := client.UserOf()
	p := &principal{client: client, user: user, tokenHash: sum[:]}
	if inLog {
		var valid bool
		_ = c.backend.Read(r.Context(), false, func(s *fsm.State) error {
			valid = s.Authenticate(client, sum[:])
			return nil
		})
		if valid {
			return p, nil
		}
	}
	if err := c.confirm(r, p); err != nil {
		return nil, err
	}
	return p, nil
}

// invalidToken is the answer to a token the state does not accept.
func invalidToken() error {
	return fail(http.StatusUnauthorized, "invalid token (unknown, revoked, or its user is suspended)")
}

// confirm checks p's token on a linearizable read, once per request.
func (c *clientAPI) confirm(r *http.Request, p *principal) error {
	if p.confirmed {
		return nil
	}
	var valid bool
	if err := c.backend.Read(r.Context(), true, func(s *fsm.State) error {
		valid = s.Authenticate(p.client, p.tokenHash)
		return nil
	}); err != nil {
		return err
	}
	if !valid {
		return invalidToken()
	}
	p.confirmed = true
	return nil
}

// readJSON decodes a JSON body strictly: no unknown fields, one value.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body, err := readBody(w, r, limit)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fail(http.StatusBadRequest, "JSON body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fail(http.StatusBadRequest, "JSON body: data after the object")
	}
	return nil
}

// roomJSONLimit bounds JSON bodies carrying room-sized MLS objects in
// base64; messageJSONLimit those carrying an application message.
func (c *clientAPI) roomJSONLimit() int64    { return jsonLimit(c.cfg.MaxRoomBody) }
func (c *clientAPI) messageJSONLimit() int64 { return jsonLimit(c.cfg.MaxMessageBody) }

// jsonLimit is the JSON body limit for binary content of up to binary
// bytes carried in base64.
func jsonLimit(binary int64) int64 { return binary/3*4 + 64<<10 }

// apply proposes a local command for p (nil p or an empty op: no
// idempotency, for commands whose retry must not answer like the first),
// with p's token when it is not confirmed yet (authenticate).
func (c *clientAPI) apply(r *http.Request, p *principal, op string, t fsm.CommandType, body wire.Encoder) (*fsm.Result, error) {
	prop := &fsm.Proposal{Type: t, Body: body}
	if p != nil {
		var err error
		if op != "" {
			if prop.RequestID, err = requestID(r, string(p.client), op); err != nil {
				return nil, err
			}
		}
		if !p.confirmed {
			prop.Auth = &fsm.ClientToken{Client: p.client, TokenHash: p.tokenHash}
		}
	}
	res, err := c.backend.Propose(r.Context(), prop)
	if err != nil {
		return nil, err
	}
	noteIndex(r, res.Index)
	return res, resultErr(res)
}

// decodeMessage decodes a base64-carried MLSMessage of wire format want.
func (c *clientAPI) decodeMessage(data []byte, want mls.WireFormat, what string) (*mls.Message, error) {
	if len(data) == 0 {
		return nil, fail(http.StatusBadRequest, "%s is required", what)
	}
	if want == mls.WireKeyPackage && len(data) > proto.MaxKeyPackageSize+4 { // the MLSMessage header: version, wire format
		return nil, fail(http.StatusRequestEntityTooLarge, "%s: %d bytes, a KeyPackage is at most %d", what, len(data), proto.MaxKeyPackageSize)
	}
	m := new(mls.Message)
	if err := decode(data, m, c.cfg.MaxVector, what); err != nil {
		return nil, err
	}
	if m.WireFormat != want {
		return nil, fail(http.StatusBadRequest, "%s is a %s, want %s", what, m.WireFormat, want)
	}
	return m, nil
}

// tokenSecretSize is the size of a token's secret part.
const tokenSecretSize = 32

// Bounds of a user's profile (registration): replicated state kept while
// the user exists and returned whole by identifier queries.
const (
	MaxProfileFields = 32
	MaxProfileName   = 64
	MaxProfileValue  = 1 << 10
	MaxProfileBytes  = 4 << 10 // names and values together
)

type profileField struct {
	Source string `json:"source"`
	Name   string `json:"name"`
	Value  string `json:"value"`
}

func fieldsFromJSON(in []profileField) ([]proto.ProfileField, error) {
	if len(in) > MaxProfileFields {
		return nil, fail(http.StatusBadRequest, "profile: %d fields, at most %d", len(in), MaxProfileFields)
	}
	var out []proto.ProfileField
	total := 0
	for i, f := range in {
		if len(f.Name) > MaxProfileName || len(f.Value) > MaxProfileValue {
			return nil, fail(http.StatusBadRequest, "profile[%d]: a name is at most %d bytes and a value at most %d", i, MaxProfileName, MaxProfileValue)
		}
		if total += len(f.Name) + len(f.Value); total > MaxProfileBytes {
			return nil, fail(http.StatusBadRequest, "profile: over %d bytes of names and values", MaxProfileBytes)
		}
		var src proto.FieldSource
		switch f.Source {
		case "vcard":
			src = proto.FieldVCardField
		case "oidc":
			src = proto.FieldOIDCStdClaim
		default:
			return nil, fail(http.StatusBadRequest, "profile[%d]: source %q is neither vcard nor oidc", i, f.Source)
		}
		if f.Name == "" {
			return nil, fail(http.StatusBadRequest, "profile[%d]: the field has no name", i)
		}
		out = append(out, proto.ProfileField{Source: src, Name: f.Name, Value: []byte(f.Value)})
	}
	return out, nil
}

func fieldsToJSON(in []proto.ProfileField) []profileField {
	out := make([]profileField, 0, len(in))
	for _, f := range in {
		src := "vcard"
		if f.Source == proto.FieldOIDCStdClaim {
			src = "oidc"
		}
		out = append(out, profileField{Source: src, Name: f.Name, Value: string(f.Value)})
	}
	return out
}

// whoami: GET /v1/whoami.
func (c *clientAPI) whoami(w http.ResponseWriter, _ *http.Request, p *principal) error {
	writeJSON(w, http.StatusOK, map[string]string{"client": string(p.client), "user": string(p.user), "domain": c.domain})
	return nil
}

// uploadKeyPackages: POST /v1/keypackages.
func (c *clientAPI) uploadKeyPackages(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in struct {
		KeyPackages [][]byte `json:"key_packages"`
	}
	if err := readJSON(w, r, c.roomJSONLimit(), &in); err != nil {
		return err
	}
	if len(in.KeyPackages) == 0 {
		return fail(http.StatusBadRequest, "key_packages is empty")
	}
	body := &fsm.UploadBody{Client: p.client}
	for i, b := range in.KeyPackages {
		m, err := c.decodeMessage(b, mls.WireKeyPackage, fmt.Sprintf("key_packages[%d]", i))
		if err != nil {
			return err
		}
		body.KeyPackages = append(body.KeyPackages, m)
	}
	if _, err := c.apply(r, p, RouteUploadKeyPackages, fsm.CmdUploadKeyPackages, body); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// countKeyPackages: GET /v1/keypackages.
func (c *clientAPI) countKeyPackages(w http.ResponseWriter, r *http.Request, p *principal) error {
	out := struct {
		KeyPackages int      `json:"key_packages"`
		LastResort  []uint16 `json:"last_resort_suites"`
	}{LastResort: []uint16{}}
	linearizable, err := readConsistency(r)
	if err != nil {
		return err
	}
	err = c.backend.Read(r.Context(), linearizable, func(s *fsm.State) error {
		n, err := s.KeyPackages(p.client)
		if err != nil {
			return fail(http.StatusNotFound, "%v", err)
		}
		out.KeyPackages = n.KeyPackages
		for _, suite := range n.LastResort {
			out.LastResort = append(out.LastResort, uint16(suite))
		}
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// createRoom: POST /v1/rooms, a room hosted here.
func (c *clientAPI) createRoom(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in struct {
		Room        string `json:"room"`
		GroupInfo   []byte `json:"group_info"`
		RatchetTree []byte `json:"ratchet_tree"`
	}
	if err := readJSON(w, r, c.roomJSONLimit(), &in); err != nil {
		return err
	}
	room := proto.RoomURI(c.domain, in.Room)
	if _, err := room.Parse(); err != nil {
		return fail(http.StatusBadRequest, "room must be 1 to 255 characters of [A-Za-z0-9._~-]")
	}
	gi, err := c.decodeMessage(in.GroupInfo, mls.WireGroupInfo, "group_info")
	if err != nil {
		return err
	}
	if len(in.RatchetTree) == 0 {
		return fail(http.StatusBadRequest, "ratchet_tree is required")
	}
	if err := ensureHubKey(r.Context(), c.backend); err != nil { // the room must list the hub (GET /v1/hub)
		return err
	}
	if _, err := c.apply(r, p, RouteCreateRoom, fsm.CmdCreateRoom, &fsm.CreateRoomBody{Room: room, Client: p.client, GroupInfo: gi, Tree: in.RatchetTree}); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]string{"room": string(room)})
	return nil
}
