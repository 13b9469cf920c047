package room

import (
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// member is the client at one leaf of the room's group.
type member struct {
	client proto.URI
	user   proto.URI
	domain string
}

// memberOf reads the client a leaf node names: its basic credential's
// identity must be a client URI (DECISIONS.md item 8).
func memberOf(leaf *mls.LeafNode) (member, error) { return memberOfCredential(&leaf.Credential) }

func memberOfCredential(c *mls.Credential) (member, error) {
	if c.Type != mls.CredentialBasic {
		return member{}, fmt.Errorf("credential type 0x%04x: rooms need basic credentials naming a client URI", uint16(c.Type))
	}
	uri := proto.URI(c.Identity)
	id, err := uri.Parse()
	if err != nil {
		return member{}, fmt.Errorf("credential identity: %w", err)
	}
	if id.Kind != proto.KindClient {
		return member{}, fmt.Errorf("credential identity %s is not a client URI", uri)
	}
	// The user and domain are substrings of the client URI
	// (mimi://domain/u/user/d/device, DECISIONS.md item 7): a member costs
	// one string, which matters in rooms of 100,000.
	m := member{client: uri, user: proto.UserURI(id.Domain, id.User), domain: id.Domain}
	if strings.HasPrefix(string(uri), string(m.user)) {
		m.user = uri[:len(m.user)]
	}
	if i := strings.Index(string(uri), id.Domain); i >= 0 {
		m.domain = string(uri[i : i+len(id.Domain)])
	}
	return m, nil
}

// memberIndex maps the group's leaves to clients, users and providers, and
// counts clients per user and per provider, so that policy checks and fanout
// need no scan of the tree. It is derived state: restore rebuilds it.
type memberIndex struct {
	byLeaf   []member                  // by leaf index; a blank leaf has the zero member
	count    int                       // non-blank entries of byLeaf
	byUser   map[proto.URI][]proto.URI // sorted clients
	byDomain map[string]int
	byClient map[proto.URI]mls.LeafIndex
}

func newMemberIndex() memberIndex {
	return memberIndex{byUser: map[proto.URI][]proto.URI{}, byDomain: map[string]int{}, byClient: map[proto.URI]mls.LeafIndex{}}
}

// get returns the member at leaf l.
func (x *memberIndex) get(l mls.LeafIndex) (member, bool) {
	if int(l) >= len(x.byLeaf) || x.byLeaf[l].client == "" {
		return member{}, false
	}
	return x.byLeaf[l], true
}

// at returns the member at leaf l, or the zero member.
func (x *memberIndex) at(l mls.LeafIndex) member {
	m, _ := x.get(l)
	return m
}

// all yields the members in leaf order.
func (x *memberIndex) all() iter.Seq2[mls.LeafIndex, member] {
	return func(yield func(mls.LeafIndex, member) bool) {
		for l, m := range x.byLeaf {
			if m.client != "" && !yield(mls.LeafIndex(l), m) {
				return
			}
		}
	}
}

// indexTree builds the index of a tree, refusing leaves that do not name a
// client or name one twice.
func indexTree(t *mls.Tree) (memberIndex, error) {
	idx := newMemberIndex()
	for l, cred := range t.MemberCredentials() {
		m, err := memberOfCredential(&cred)
		if err != nil {
			return memberIndex{}, fmt.Errorf("leaf %d: %w", l, err)
		}
		if err := idx.add(l, m); err != nil {
			return memberIndex{}, err
		}
	}
	return idx, nil
}

func (x *memberIndex) add(l mls.LeafIndex, m member) error {
	if other, dup := x.byClient[m.client]; dup {
		return fmt.Errorf("client %s is at leaves %d and %d", m.client, other, l)
	}
	if int(l) >= len(x.byLeaf) {
		x.byLeaf = append(x.byLeaf, make([]member, int(l)+1-len(x.byLeaf))...)
	}
	x.byLeaf[l] = m
	x.count++
	x.byClient[m.client] = l
	cs := x.byUser[m.user]
	i, _ := slices.BinarySearch(cs, m.client)
	x.byUser[m.user] = slices.Insert(cs, i, m.client)
	x.byDomain[m.domain]++
	return nil
}

func (x *memberIndex) remove(l mls.LeafIndex) {
	m, ok := x.get(l)
	if !ok {
		return
	}
	x.byLeaf[l] = member{}
	x.count--
	delete(x.byClient, m.client)
	cs := x.byUser[m.user]
	if i, ok := slices.BinarySearch(cs, m.client); ok {
		cs = slices.Delete(cs, i, i+1)
	}
	if len(cs) == 0 {
		delete(x.byUser, m.user)
	} else {
		x.byUser[m.user] = cs
	}
	if x.byDomain[m.domain]--; x.byDomain[m.domain] == 0 {
		delete(x.byDomain, m.domain)
	}
}

// domains returns the providers with member clients, sorted.
func (x *memberIndex) domains() []string {
	out := make([]string, 0, len(x.byDomain))
	for d := range x.byDomain {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// clientsOf returns the member clients of user, sorted.
func (x *memberIndex) clientsOf(user proto.URI) []proto.URI { return x.byUser[user] }
