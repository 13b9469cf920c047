package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// claimKeyMaterial: POST /v1/keymaterial. Users are grouped by domain, one
// claim per domain, answered in the order the users were listed:
//
//   - a room hosted here: local users' KeyPackages are claimed here (the
//     state machine routes their Welcome), other domains' from their
//     provider, and the room records which provider served each;
//   - a room hosted elsewhere: every claim goes through its hub, which
//     relays it and routes the Welcome (seed section 7.3);
//   - no room: local users here, others from their provider.
//
// If a provider does not answer, the request fails (502) and KeyPackages
// already claimed from other domains are spent.
func (c *clientAPI) claimKeyMaterial(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in struct {
		Users             []string `json:"users"`
		Room              string   `json:"room"`
		CipherSuites      []uint16 `json:"cipher_suites"`
		LastResortAllowed bool     `json:"last_resort_allowed"`
	}
	if err := readJSON(w, r, c.cfg.MaxBody, &in); err != nil {
		return err
	}
	if len(in.Users) == 0 {
		return fail(http.StatusBadRequest, "users is empty")
	}
	var (
		domains []string
		groups  = map[string][]proto.URI{}
		seen    = map[proto.URI]bool{}
	)
	for _, u := range in.Users {
		uri := proto.URI(u)
		id, err := uri.Parse()
		if err != nil || id.Kind != proto.KindUser {
			return fail(http.StatusBadRequest, "users: %q is not a user URI", u)
		}
		if seen[uri] {
			return fail(http.StatusBadRequest, "users: %s is listed twice", u)
		}
		seen[uri] = true
		if groups[id.Domain] == nil {
			domains = append(domains, id.Domain)
		}
		groups[id.Domain] = append(groups[id.Domain], uri)
	}
	roomID, hub := proto.URI(in.Room), ""
	if roomID != "" {
		id, err := roomID.Parse()
		if err != nil || id.Kind != proto.KindRoom {
			return fail(http.StatusBadRequest, "room: %q is not a room URI", in.Room)
		}
		hub = id.Domain
	}
	if hub == c.domain {
		var hosted bool
		if err := c.backend.Read(r.Context(), true, func(s *fsm.State) error { hosted = s.Hosts(roomID); return nil }); err != nil {
			return err
		}
		if !hosted {
			return fail(http.StatusNotFound, "room %s is not hosted here", roomID)
		}
	}
	var suites []mls.CipherSuite
	for _, s := range in.CipherSuites {
		suites = append(suites, mls.CipherSuite(s))
	}
	type clientOut struct {
		Client     string `json:"client"`
		Status     string `json:"status"`
		KeyPackage []byte `json:"key_package,omitempty"`
	}
	type userOut struct {
		User    string      `json:"user"`
		Status  string      `json:"status"`
		Clients []clientOut `json:"clients"`
	}
	out := struct {
		Users []userOut `json:"users"`
	}{Users: []userOut{}}
	for _, d := range domains {
		req := &proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: p.user, TargetUsers: groups[d], Room: roomID,
			AcceptableSuites: suites, LastResortAllowed: in.LastResortAllowed}
		if err := requireRoomCapabilities(r.Context(), c.backend, req); err != nil { // a room hosted here
			return err
		}
		var resp *proto.KeyMaterialResponse
		var err error
		switch {
		case d == c.domain && (hub == "" || hub == c.domain):
			resp, err = c.claimLocal(r, p, req)
		case hub == c.domain:
			if resp, err = c.peers.ClaimKeyMaterial(r.Context(), d, d, req); err != nil {
				return relayFailure(err, d)
			}
			err = recordRoutes(r, c.backend, string(p.client), roomID, d, req, resp)
		case hub != "":
			if resp, err = c.peers.ClaimKeyMaterial(r.Context(), hub, d, req); err != nil {
				return relayFailure(err, hub)
			}
		default:
			if resp, err = c.peers.ClaimKeyMaterial(r.Context(), d, d, req); err != nil {
				return relayFailure(err, d)
			}
		}
		if err != nil {
			return err
		}
		for _, u := range resp.Users {
			uo := userOut{User: string(u.User), Status: u.Status.String(), Clients: []clientOut{}}
			for _, cl := range u.Clients {
				co := clientOut{Client: string(cl.Client), Status: cl.Status.String()}
				if cl.KeyPackage != nil {
					if co.KeyPackage, err = wire.Marshal(cl.KeyPackage); err != nil {
						return fmt.Errorf("encode KeyPackage: %w", err)
					}
				}
				uo.Clients = append(uo.Clients, co)
			}
			out.Users = append(out.Users, uo)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// claimLocal claims local users' KeyPackages.
func (c *clientAPI) claimLocal(r *http.Request, p *principal, req *proto.KeyMaterialRequest) (*proto.KeyMaterialResponse, error) {
	res, err := c.apply(r, p, RouteKeyMaterial+" local", fsm.CmdClaimKeyMaterial, &fsm.ClaimBody{Request: *req})
	if err != nil {
		return nil, err
	}
	resp := new(proto.KeyMaterialResponse)
	if err := wire.Unmarshal(res.Body, resp); err != nil {
		return nil, fmt.Errorf("the claim's response does not decode: %w", err)
	}
	return resp, nil
}

// consentJSON is a ConsentEntry in JSON.
type consentJSON struct {
	Operation   string   `json:"operation"`
	Requester   string   `json:"requester"`
	Target      string   `json:"target"`
	Room        string   `json:"room,omitempty"`
	KeyPackages [][]byte `json:"key_packages,omitempty"`
}

// consentOp parses a consent operation's name.
func consentOp(name string) (proto.ConsentOperation, bool) {
	for _, op := range []proto.ConsentOperation{proto.ConsentCancel, proto.ConsentRequest, proto.ConsentGrant, proto.ConsentRevoke} {
		if op.String() == name {
			return op, true
		}
	}
	return 0, false
}

func consentToJSON(e *proto.ConsentEntry) (consentJSON, error) {
	out := consentJSON{Operation: e.Operation.String(), Requester: string(e.Requester), Target: string(e.Target)}
	if e.Room != nil {
		out.Room = string(*e.Room)
	}
	for _, kp := range e.KeyPackages {
		b, err := wire.Marshal(kp)
		if err != nil {
			return out, fmt.Errorf("encode consent KeyPackage: %w", err)
		}
		out.KeyPackages = append(out.KeyPackages, b)
	}
	return out, nil
}

// consent: POST /v1/consent, an operation of the authenticated client's
// user: it requests and cancels as requester, grants and revokes as
// target.
func (c *clientAPI) consent(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in consentJSON
	if err := readJSON(w, r, c.cfg.MaxBody, &in); err != nil {
		return err
	}
	op, ok := consentOp(in.Operation)
	if !ok {
		return fail(http.StatusBadRequest, "operation %q is not request, grant, revoke or cancel", in.Operation)
	}
	e := proto.ConsentEntry{Operation: op, Requester: proto.URI(in.Requester), Target: proto.URI(in.Target)}
	for _, f := range []struct {
		what string
		uri  proto.URI
	}{{"requester", e.Requester}, {"target", e.Target}} {
		if id, err := f.uri.Parse(); err != nil || id.Kind != proto.KindUser {
			return fail(http.StatusBadRequest, "%s: %q is not a user URI", f.what, f.uri)
		}
	}
	actor := e.Requester
	if op == proto.ConsentGrant || op == proto.ConsentRevoke {
		actor = e.Target
	}
	if actor != p.user {
		return fail(http.StatusForbidden, "a %s is made by %s, and this client's user is %s", op, actor, p.user)
	}
	if in.Room != "" {
		room := proto.URI(in.Room)
		if id, err := room.Parse(); err != nil || id.Kind != proto.KindRoom {
			return fail(http.StatusBadRequest, "room: %q is not a room URI", in.Room)
		}
		e.Room = &room
	}
	if len(in.KeyPackages) > 0 && op != proto.ConsentGrant {
		return fail(http.StatusBadRequest, "key_packages come only with a grant")
	}
	for i, b := range in.KeyPackages {
		m, err := c.decodeMessage(b, mls.WireKeyPackage, fmt.Sprintf("key_packages[%d]", i))
		if err != nil {
			return err
		}
		e.KeyPackages = append(e.KeyPackages, m)
	}
	if _, err := c.apply(r, p, RouteConsent, fsm.CmdConsent, &fsm.ConsentBody{Entry: e}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// consentLists: GET /v1/consent.
func (c *clientAPI) consentLists(w http.ResponseWriter, r *http.Request, p *principal) error {
	out := struct {
		Pending  []consentJSON `json:"pending"`
		Received []consentJSON `json:"received"`
		Given    []consentJSON `json:"given"`
	}{}
	linearizable, err := readConsistency(r)
	if err != nil {
		return err
	}
	err = c.backend.Read(r.Context(), linearizable, func(s *fsm.State) error {
		for _, l := range []struct {
			get func(proto.URI) ([]proto.ConsentEntry, error)
			out *[]consentJSON
		}{{s.ConsentPending, &out.Pending}, {s.ConsentReceived, &out.Received}, {s.ConsentGiven, &out.Given}} {
			entries, err := l.get(p.user)
			if err != nil {
				return err
			}
			*l.out = []consentJSON{}
			for i := range entries {
				j, err := consentToJSON(&entries[i])
				if err != nil {
					return err
				}
				*l.out = append(*l.out, j)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// searchType parses a search type's name (the seed's enum names).
func searchType(name string) (proto.SearchIdentifierType, bool) {
	names := []string{"handle", "nick", "email", "phone", "partialName", "wholeProfile", "oidcStdClaim", "vcardField"}
	for i, n := range names {
		if n == name {
			return proto.SearchHandle + proto.SearchIdentifierType(i), true
		}
	}
	return 0, false
}

// identifiers: POST /v1/identifiers (identifierQuery), here or relayed to
// the domain's provider.
func (c *clientAPI) identifiers(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := spend("identifier queries by this account", limitKey{c.limits.searchUser, string(p.user)}); err != nil {
		return err
	}
	// The answer (another provider's: up to the federation client's
	// limit) costs the client's byte budget, as a tree does.
	if err := responseBudget(r); err != nil {
		return err
	}
	var in struct {
		Domain string `json:"domain"`
		Type   string `json:"type"`
		Value  string `json:"value"`
		Field  string `json:"field"`
	}
	if err := readJSON(w, r, c.cfg.MaxBody, &in); err != nil {
		return err
	}
	if !validDomain(in.Domain) {
		return fail(http.StatusBadRequest, "domain: %q is not a provider domain", in.Domain)
	}
	t, ok := searchType(in.Type)
	if !ok {
		return fail(http.StatusBadRequest, "type %q is not a search type", in.Type)
	}
	req := &proto.IdentifierRequest{Type: t, Value: in.Value, Field: in.Field}
	var resp *proto.IdentifierResponse
	if in.Domain == c.domain {
		var enc []byte
		err := c.backend.Read(r.Context(), false, func(s *fsm.State) error {
			var err error
			enc, err = wire.Marshal(s.IdentifierQuery(req))
			return err
		})
		if err != nil {
			return err
		}
		resp = new(proto.IdentifierResponse)
		if err := wire.Unmarshal(enc, resp); err != nil {
			return fmt.Errorf("the query's response does not decode: %w", err)
		}
	} else {
		var err error
		if resp, err = c.peers.IdentifierQuery(r.Context(), in.Domain, req); err != nil {
			return relayFailure(err, in.Domain)
		}
	}
	type profile struct {
		URI    string         `json:"uri"`
		Fields []profileField `json:"fields"`
	}
	out := struct {
		Code     string    `json:"code"`
		URIs     []string  `json:"uris"`
		Profiles []profile `json:"profiles"`
	}{Code: resp.Code.String(), URIs: []string{}, Profiles: []profile{}}
	for _, u := range resp.URIs {
		out.URIs = append(out.URIs, string(u))
	}
	for _, pr := range resp.Profiles {
		out.Profiles = append(out.Profiles, profile{URI: string(pr.URI), Fields: fieldsToJSON(pr.Fields)})
	}
	chargeResponse(r, writeJSON(w, http.StatusOK, out))
	return nil
}

// Stream limits.
const (
	defaultStreamLimit = 100
	maxStreamLimit     = 1000
)

// streamItem is a stream item in JSON.
type streamItem struct {
	Seq    uint64 `json:"seq"`
	Kind   string `json:"kind"`
	Room   string `json:"room,omitempty"`
	HubSeq uint64 `json:"hub_seq,omitempty"`
	At     uint64 `json:"at"`
	Data   []byte `json:"data"`
}

func itemKind(k fsm.ItemKind) string {
	switch k {
	case fsm.ItemMessage:
		return "message"
	case fsm.ItemWelcome:
		return "welcome"
	case fsm.ItemConsent:
		return "consent"
	case fsm.ItemRoomTerminal:
		return "room_terminal"
	}
	return fmt.Sprintf("kind_%d", uint8(k))
}

// queryUint reads an optional unsigned query parameter.
func queryUint(r *http.Request, name string, def uint64) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fail(http.StatusBadRequest, "query %s=%q is not a non-negative integer", name, v)
	}
	return n, nil
}

// stream: GET /v1/stream, a long poll: items after `after`, waiting up to
// `wait` seconds for the first one.
func (c *clientAPI) stream(w http.ResponseWriter, r *http.Request, p *principal) error {
	after, err := queryUint(r, "after", 0)
	if err != nil {
		return err
	}
	waitSecs, err := queryUint(r, "wait", 0)
	if err != nil {
		return err
	}
	limit, err := queryUint(r, "limit", defaultStreamLimit)
	if err != nil {
		return err
	}
	if limit == 0 || limit > maxStreamLimit {
		return fail(http.StatusBadRequest, "query limit=%d is not between 1 and %d", limit, maxStreamLimit)
	}
	wait := min(time.Duration(min(waitSecs, 3600))*time.Second, c.cfg.MaxStreamWait)
	var (
		items   []fsm.Item
		gap     bool
		last    uint64
		timeout <-chan time.Time
		ended   <-chan struct{} // a newer poll of this client took our place
		expired = wait == 0
	)
	for {
		changed := c.backend.Changed() // before reading, so no change is missed
		err := c.backend.Read(r.Context(), false, func(s *fsm.State) error {
			// A poll may wait a minute: a device revoked or a user
			// suspended meanwhile gets nothing that came after.
			if !s.Authenticate(p.client, p.tokenHash) {
				return invalidToken()
			}
			var ok bool
			if items, gap, last, ok = s.Stream(p.client, after, int(limit)); !ok {
				return fail(http.StatusNotFound, "no client %s", p.client)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(items) > 0 || expired {
			break
		}
		if timeout == nil {
			var done func()
			ended, done = c.polls.wait(p.client)
			defer done()
			var stop func() bool
			timeout, stop = c.timer(wait)
			defer stop()
		}
		select {
		case <-changed:
		case <-timeout:
			expired = true
		case <-ended:
			expired = true
		case <-c.cfg.Draining:
			expired = true
		case <-r.Context().Done():
			return r.Context().Err()
		}
	}
	out := struct {
		Items []streamItem `json:"items"`
		Gap   bool         `json:"gap"`
		Last  uint64       `json:"last"`
	}{Items: make([]streamItem, 0, len(items)), Gap: gap, Last: last}
	for _, it := range items {
		out.Items = append(out.Items, streamItem{Seq: it.Seq, Kind: itemKind(it.Kind), Room: string(it.Room), HubSeq: it.HubSeq, At: it.At, Data: it.Data})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// ack: POST /v1/stream/ack.
func (c *clientAPI) ack(w http.ResponseWriter, r *http.Request, p *principal) error {
	var in struct {
		Seq *uint64 `json:"seq"`
	}
	if err := readJSON(w, r, c.cfg.MaxBody, &in); err != nil {
		return err
	}
	if in.Seq == nil {
		return fail(http.StatusBadRequest, "seq is required")
	}
	if _, err := c.apply(r, p, RouteAck, fsm.CmdAck, &fsm.AckBody{Client: p.client, UpTo: *in.Seq}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
