package keymaterial

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// ConsentFunc says whether requester may claim the key material of the
// local user target for room (nil when the claim names none). It returns
// UserSuccess, UserNoConsent or UserNoConsentForThisRoom; any other code
// counts as UserNoConsent. consent.Book.Check is one.
type ConsentFunc func(target, requester proto.URI, room *proto.URI) proto.KeyMaterialUserCode

// Claimed describes one KeyPackage a claim handed out.
type Claimed struct {
	Ref       []byte    // its KeyPackageRef, which the Welcome will name
	Client    proto.URI // the client it belongs to
	Requester proto.URI // the requesting user
	Room      proto.URI // the room of the claim; empty when none was named
	ExpiresAt uint64    // its leaf's not_after (Unix seconds)
}

// Claim answers a key material request at now. Every KeyPackage handed out
// is reported in Claimed and routed (RouteWelcome); regular ones are
// removed. An error means the request itself is malformed
// (ErrInvalidRequest) and nothing changed; everything about one user or
// client is a code in the response.
func (s *Store) Claim(req *proto.KeyMaterialRequest, consent ConsentFunc, now uint64) (*proto.KeyMaterialResponse, []Claimed, error) {
	if err := s.checkRequest(req, consent); err != nil {
		return nil, nil, fmt.Errorf("keymaterial: claim: %w", err)
	}
	var room *proto.URI
	if req.Room != "" {
		r := req.Room
		room = &r
	}
	resp := &proto.KeyMaterialResponse{Protocol: req.Protocol}
	var claimed []Claimed
	for _, target := range req.TargetUsers {
		u := proto.UserKeyMaterial{Status: proto.UserIncompatibleProtocol, User: target}
		if req.Protocol == proto.MLS10 {
			u.Status, u.Clients = s.claimUser(req, target, room, consent, now, &claimed)
		}
		resp.Users = append(resp.Users, u)
	}
	return resp, claimed, nil
}

// checkRequest checks what the whole claim depends on.
func (s *Store) checkRequest(req *proto.KeyMaterialRequest, consent ConsentFunc) error {
	if req == nil || consent == nil {
		return fmt.Errorf("%w: missing request or consent function", ErrInvalidRequest)
	}
	if id, err := req.RequestingUser.Parse(); err != nil || id.Kind != proto.KindUser {
		return fmt.Errorf("%w: requesting user %q is not a user identifier", ErrInvalidRequest, req.RequestingUser)
	}
	if req.Room != "" {
		if id, err := req.Room.Parse(); err != nil || id.Kind != proto.KindRoom {
			return fmt.Errorf("%w: room %q is not a room identifier", ErrInvalidRequest, req.Room)
		}
	}
	if n := len(req.TargetUsers); n == 0 || n > s.limits.MaxTargetsPerClaim {
		return fmt.Errorf("%w: %d target users, want 1..%d", ErrInvalidRequest, n, s.limits.MaxTargetsPerClaim)
	}
	seen := make(map[proto.URI]bool, len(req.TargetUsers))
	for _, t := range req.TargetUsers {
		if seen[t] {
			return fmt.Errorf("%w: target user %q appears twice", ErrInvalidRequest, t)
		}
		seen[t] = true
	}
	return nil
}

// claimUser claims one KeyPackage for each client of target.
func (s *Store) claimUser(req *proto.KeyMaterialRequest, target proto.URI, room *proto.URI, consent ConsentFunc, now uint64, claimed *[]Claimed) (proto.KeyMaterialUserCode, []proto.ClientKeyMaterial) {
	id, err := target.Parse()
	if err != nil || id.Kind != proto.KindUser || id.Domain != s.domain || s.users[target] == nil {
		return proto.UserUnknown, nil
	}
	usr := s.users[target]
	if usr.deleted {
		return proto.UserDeleted, nil
	}
	switch code := consent(target, req.RequestingUser, room); code {
	case proto.UserSuccess:
	case proto.UserNoConsentForThisRoom:
		return code, nil
	default:
		return proto.UserNoConsent, nil
	}
	var clients []proto.ClientKeyMaterial
	succeeded := 0
	for _, c := range slices.Sorted(maps.Keys(usr.clients)) {
		ckm, e := s.claimClient(req, c, usr.clients[c], now)
		if ckm.Status == proto.ClientSuccess {
			succeeded++
			notAfter := e.kp.LeafNode.Lifetime.NotAfter
			rt := route{client: c, notAfter: notAfter, room: req.Room}
			if s.storedLastResort(e.ref) || s.rules < routesByRoom {
				rt.room = "" // handed out to every claim (or before the rule): any room
			}
			s.routes[string(e.ref)] = rt
			*claimed = append(*claimed, Claimed{Ref: append([]byte(nil), e.ref...), Client: c,
				Requester: req.RequestingUser, Room: req.Room, ExpiresAt: notAfter})
		}
		clients = append(clients, ckm)
	}
	switch {
	case succeeded > 0 && succeeded == len(clients):
		return proto.UserSuccess, clients
	case succeeded > 0:
		return proto.UserPartialSuccess, clients
	}
	return proto.UserNoCompatibleMaterial, clients
}

// claimClient picks a KeyPackage of one client. On success it returns the
// entry handed out, already removed from the pool if it is a regular one.
func (s *Store) claimClient(req *proto.KeyMaterialRequest, c proto.URI, cl *client, now uint64) (proto.ClientKeyMaterial, *entry) {
	s.pruneClient(cl, now)
	fits := func(e *entry) bool {
		return e.kp.LeafNode.Lifetime.Contains(now) &&
			(len(req.AcceptableSuites) == 0 || slices.Contains(req.AcceptableSuites, e.kp.CipherSuite)) &&
			req.RequiredCapabilities.SatisfiedBy(&e.kp.LeafNode.Capabilities) == nil
	}
	out := proto.ClientKeyMaterial{Client: c}
	if i := slices.IndexFunc(cl.regular, fits); i >= 0 {
		e := cl.regular[i]
		cl.regular = slices.Delete(cl.regular, i, i+1)
		delete(s.index, string(e.ref))
		s.spent[string(e.ref)] = e.kp.LeafNode.Lifetime.NotAfter
		out.Status, out.KeyPackage = proto.ClientSuccess, mls.NewKeyPackageMessage(e.kp)
		return out, e
	}
	if e := lastResortFor(cl, req.AcceptableSuites, fits); e != nil {
		if !req.LastResortAllowed {
			out.Status = proto.ClientOnlyLastResort
			return out, nil
		}
		// The stored entry stays; hand out a copy that shares no memory
		// with it.
		cp, err := decodeEntry(bytes.Clone(e.enc))
		if err != nil {
			panic(fmt.Sprintf("keymaterial: stored KeyPackage no longer decodes: %v", err))
		}
		out.Status, out.KeyPackage = proto.ClientSuccess, mls.NewKeyPackageMessage(cp.kp)
		return out, e
	}
	newest := newestUsable(cl, now)
	if newest == nil {
		out.Status = proto.ClientKeyMaterialExhausted
		return out, nil
	}
	caps := cloneCapabilities(&newest.kp.LeafNode.Capabilities)
	out.Status, out.Capabilities = proto.ClientNothingCompatible, &caps
	return out, nil
}

// lastResortFor returns the client's first last-resort KeyPackage that fits,
// trying suites in the request's order (ascending when it lists none).
func lastResortFor(cl *client, acceptable []mls.CipherSuite, fits func(*entry) bool) *entry {
	order := acceptable
	if len(order) == 0 {
		order = slices.Sorted(maps.Keys(cl.lastResort))
	}
	for _, suite := range order {
		if e := cl.lastResort[suite]; e != nil && fits(e) {
			return e
		}
	}
	return nil
}

// newestUsable returns the client's newest regular KeyPackage whose
// lifetime contains now, else its usable last-resort KeyPackage of the
// lowest suite, else nil.
func newestUsable(cl *client, now uint64) *entry {
	for _, e := range slices.Backward(cl.regular) {
		if e.kp.LeafNode.Lifetime.Contains(now) {
			return e
		}
	}
	for _, suite := range slices.Sorted(maps.Keys(cl.lastResort)) {
		if e := cl.lastResort[suite]; e.kp.LeafNode.Lifetime.Contains(now) {
			return e
		}
	}
	return nil
}

func cloneCapabilities(c *mls.Capabilities) mls.Capabilities {
	return mls.Capabilities{
		Versions:     slices.Clone(c.Versions),
		CipherSuites: slices.Clone(c.CipherSuites),
		Extensions:   slices.Clone(c.Extensions),
		Proposals:    slices.Clone(c.Proposals),
		Credentials:  slices.Clone(c.Credentials),
	}
}
