package workload

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/mimihub/mimi-hub/jepsen/internal/history"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// identity is a client with its MLS signature key: a registered client of
// the provider under test (token set) or a client of another provider
// (the follower's; no token).
type identity struct {
	user   proto.URI
	client proto.URI
	token  string
	signer *mls.SigningKey
	suite  *mls.Suite
	proc   int
}

func suite() (*mls.Suite, error) { return client.DefaultSuite.Suite() }

func newIdentity(domain, user, device string) (*identity, error) {
	s, err := suite()
	if err != nil {
		return nil, err
	}
	signer, err := s.GenerateSigningKey()
	if err != nil {
		return nil, fmt.Errorf("signature key: %w", err)
	}
	return &identity{user: proto.UserURI(domain, user), client: proto.ClientURI(domain, user, device), signer: signer, suite: s}, nil
}

// workloadPassword is every workload user's password.
const workloadPassword = "jepsen workload"

// register registers a client of the provider under test.
func (e *Env) register(ctx context.Context, user, device string) (*identity, error) {
	return e.registerAvoiding(ctx, user, device, nil)
}

// registerAvoiding registers a client through nodes not in avoid.
func (e *Env) registerAvoiding(ctx context.Context, user, device string, avoid []string) (*identity, error) {
	id, err := newIdentity(e.cfg.Domain, user, device)
	if err != nil {
		return nil, err
	}
	id.proc = e.nextProcess()
	h := e.cfg.History
	op := h.Invoke(history.Op{Process: id.proc, Kind: history.KindRegister, Client: string(id.client), User: string(id.user)})
	var node string
	attempts := 0
	// Every attempt sends the same token secret under the same key, so a
	// retry after a lost answer ends with the token the provider stored.
	var secret [32]byte
	if _, err := crand.Read(secret[:]); err != nil {
		return nil, err
	}
	err = e.setupCall(ctx, "register "+user, avoid, func(ctx context.Context, ep Endpoint) error {
		attempts++
		node = ep.Node
		api, err := client.NewUser(client.UserConfig{BaseURL: ep.URL, HTTPClient: e.hc, Timeout: e.cfg.Timeout, Tries: 1,
			Random: bytes.NewReader(secret[:])})
		if err != nil {
			return err
		}
		// A user's first client registers it; further clients are added
		// with its password (a provider refuses a second registration).
		reg, err := api.RegisterWith(ctx, user, device, client.RegisterOptions{Password: workloadPassword})
		var se *client.StatusError
		if errors.As(err, &se) && se.Status == http.StatusConflict {
			api, err = client.NewUser(client.UserConfig{BaseURL: ep.URL, HTTPClient: e.hc, Timeout: e.cfg.Timeout, Tries: 1,
				Random: bytes.NewReader(secret[:])})
			if err != nil {
				return err
			}
			reg, err = api.AddDeviceWithPassword(ctx, user, device, workloadPassword)
		}
		if err != nil {
			return err
		}
		id.token = reg.Token
		return nil
	})
	h.Complete(op, func(o *history.Op) {
		o.Node, o.Attempts = node, attempts
		if err != nil {
			o.Result, o.Code = classify(err)
			o.Error = err.Error()
			return
		}
		o.Result = history.OK
	})
	if err != nil {
		return nil, err
	}
	return id, nil
}

func groupOptions() mls.GroupOptions {
	return mls.GroupOptions{Config: room.MLSConfig(client.DefaultMaxVector)}
}

func lifetime() mls.Lifetime {
	now := time.Now()
	return mls.Lifetime{NotBefore: uint64(now.Add(-time.Hour).Unix()), NotAfter: uint64(now.Add(30 * 24 * time.Hour).Unix())}
}

// keyPackage makes a KeyPackage of id.
func (id *identity) keyPackage(lastResort bool) (*mls.KeyPackageBundle, string, error) {
	b, err := mls.NewKeyPackage(id.suite, id.signer, mls.KeyPackageOptions{
		Credential: mls.BasicCredential([]byte(id.client)), Capabilities: client.Capabilities(), Lifetime: lifetime(), LastResort: lastResort,
	})
	if err != nil {
		return nil, "", fmt.Errorf("KeyPackage of %s: %w", id.client, err)
	}
	ref, err := b.KeyPackage.Ref()
	if err != nil {
		return nil, "", err
	}
	return b, hex.EncodeToString(ref), nil
}

// member is an identity's MLS state in one room.
type member struct {
	id    *identity
	group *mls.Group
}

// mlsRoom is a room and the local MLS state of its members.
type mlsRoom struct {
	uri     proto.URI
	members []*member // members[0] created the room
}

// transcriptHash returns the confirmed transcript hash of the epoch a
// commit bundle's GroupInfo describes (hex).
func transcriptHash(gi *mls.Message) (string, error) {
	if gi == nil || gi.GroupInfo == nil {
		return "", fmt.Errorf("the commit has no GroupInfo")
	}
	return hex.EncodeToString(gi.GroupInfo.GroupContext.ConfirmedTranscriptHash), nil
}

// head returns the room's epoch and transcript hash as its first member
// sees it.
func (r *mlsRoom) head() (uint64, string) {
	g := r.members[0].group
	return g.Epoch(), hex.EncodeToString(g.GroupContext().ConfirmedTranscriptHash)
}

// createRoom creates a room hosted by the provider, with creator as its
// only member.
func (e *Env) createRoom(ctx context.Context, creator *identity, roomID string) (*mlsRoom, error) {
	uri := proto.RoomURI(e.cfg.Domain, roomID)
	policy := proto.DefaultPolicy()
	opts := groupOptions()
	// The room lists the hub as its external sender (GET /v1/hub).
	var hub *client.HubInfo
	err := e.setupCall(ctx, "hub", nil, func(ctx context.Context, ep Endpoint) error {
		api, err := e.api(creator.token, ep)
		if err != nil {
			return err
		}
		hub, err = api.Hub(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	senders := hub.ExternalSenders[creator.suite.ID()]
	g, err := mls.CreateGroup(creator.suite, creator.signer, mls.CreateOptions{
		GroupOptions: opts, GroupID: []byte(uri), Extensions: mls.Extensions{policy.Extension(), {Type: mls.ExtExternalSenders, Data: senders}},
		Credential: mls.BasicCredential([]byte(creator.client)), Capabilities: client.Capabilities(), Lifetime: lifetime(),
	})
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", uri, err)
	}
	gi, err := g.GroupInfo(mls.GroupInfoOptions{ExternalPub: true})
	if err != nil {
		return nil, err
	}
	tree, err := wire.Marshal(g.Tree())
	if err != nil {
		return nil, err
	}
	err = e.setupCall(ctx, "create room "+roomID, nil, func(ctx context.Context, ep Endpoint) error {
		api, err := e.api(creator.token, ep)
		if err != nil {
			return err
		}
		got, err := api.CreateRoom(ctx, roomID, gi, tree)
		if err == nil && got != uri {
			return fmt.Errorf("created %s, not %s", got, uri)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &mlsRoom{uri: uri, members: []*member{{id: creator, group: g}}}, nil
}

// add adds joiners to the room in one commit by its creator: a
// ParticipantListPatch adding their users and the Adds of KeyPackages made
// here. Local joiners (with a token) join from the Welcome; the others
// (the follower's clients) are only added.
func (e *Env) add(ctx context.Context, r *mlsRoom, joiners []*identity) error {
	adder := r.members[0]
	patch := &proto.ParticipantListPatch{}
	proposals := []*mls.Proposal{nil}
	bundles := make([]*mls.KeyPackageBundle, len(joiners))
	seen := map[proto.URI]bool{}
	for i, j := range joiners {
		if !seen[j.user] {
			patch.AddUsers = append(patch.AddUsers, proto.UserRoles{User: j.user, Roles: []proto.Role{proto.RoleRegularUser}})
			seen[j.user] = true
		}
		b, _, err := j.keyPackage(false)
		if err != nil {
			return err
		}
		bundles[i] = b
		proposals = append(proposals, mls.AddProposal(b.KeyPackage))
	}
	proposals[0] = patch.Proposal()
	cb, err := adder.group.Commit(mls.CommitOptions{Proposals: proposals, IncludePending: true, WelcomeRatchetTree: true, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
	if err != nil {
		return fmt.Errorf("add to %s: %w", r.uri, err)
	}
	bundle := &client.CommitBundle{Commit: cb.Commit, Welcome: cb.Welcome, GroupInfo: cb.GroupInfo}
	err = e.setupCall(ctx, "add to "+string(r.uri), nil, func(ctx context.Context, ep Endpoint) error {
		api, err := e.api(adder.id.token, ep)
		if err != nil {
			return err
		}
		resp, err := api.Commit(ctx, r.uri, bundle)
		if err == nil && resp.Code != proto.UpdateSuccess {
			return fmt.Errorf("refused: %s %s", resp.Code, resp.Description)
		}
		return err
	})
	if err != nil {
		adder.group.DiscardPendingCommit()
		return err
	}
	adder.group.MergePendingCommit()
	for _, m := range r.members[1:] {
		if _, err := m.group.Process(cb.Commit); err != nil {
			return fmt.Errorf("%s processing the add: %w", m.id.client, err)
		}
	}
	for i, j := range joiners {
		if j.token == "" {
			continue
		}
		g, err := mls.JoinFromWelcome(cb.Welcome.Welcome, bundles[i], nil, groupOptions())
		if err != nil {
			return fmt.Errorf("%s joining %s: %w", j.client, r.uri, err)
		}
		r.members = append(r.members, &member{id: j, group: g})
	}
	return nil
}
