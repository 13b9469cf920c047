package fsm

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/proto"
)

// TestIdentifierQueryBounded: a name search of one letter matches most of
// a provider's users; the answer, with every match's whole profile, must
// not grow with the provider. Up to MaxIdentifierMatches matches are
// listed (sorted); more are answered ambiguous with none, as an exact
// search matching several users is (refine the query).
func TestIdentifierQueryBounded(t *testing.T) {
	n := newNode(t, "a.example")
	n.fast = true
	for i := range MaxIdentifierMatches + 5 {
		name := fmt.Sprintf("member%03d", i)
		n.ok(n.apply(CmdRegister, nil, "", &RegisterBody{Client: proto.ClientURI("a.example", name, "p"), TokenHash: tokenHash(name),
			Profile: []proto.ProfileField{{Source: proto.FieldVCardField, Name: "FN", Value: []byte("Member " + name)}}}), name)
	}
	cases := []struct {
		typ   proto.SearchIdentifierType
		value string
		code  proto.IdentifierQueryCode
		n     int
	}{
		{proto.SearchPartialName, "member", proto.QueryAmbiguous, 0},
		{proto.SearchWholeProfile, "e", proto.QueryAmbiguous, 0},
		{proto.SearchPartialName, "member0", proto.QuerySuccess, 100}, // member000..member099
		{proto.SearchPartialName, "member10", proto.QuerySuccess, 5},
		{proto.SearchHandle, "member042", proto.QuerySuccess, 1},
	}
	for _, c := range cases {
		_ = n.f.Read(func(s *State) error {
			resp := s.IdentifierQuery(&proto.IdentifierRequest{Type: c.typ, Value: c.value})
			if resp.Code != c.code || len(resp.URIs) != c.n || len(resp.Profiles) != c.n {
				t.Errorf("%d %q: %s with %d results, want %s with %d", c.typ, c.value, resp.Code, len(resp.URIs), c.code, c.n)
			}
			for i := 1; i < len(resp.URIs); i++ {
				if resp.URIs[i-1] >= resp.URIs[i] {
					t.Errorf("%q: results out of order at %d", c.value, i)
				}
			}
			return nil
		})
	}
}

// BenchmarkIdentifierQuery: a handle search among 20,000 users, beside
// the sort of every user name each query did before (the baseline).
func BenchmarkIdentifierQuery(b *testing.B) {
	n := newNode(b, "a.example")
	n.fast = true
	for i := range 20_000 {
		name := fmt.Sprintf("user%05d", i)
		n.ok(n.apply(CmdRegister, nil, "", &RegisterBody{Client: proto.ClientURI("a.example", name, "p"), TokenHash: tokenHash(name),
			Profile: []proto.ProfileField{{Source: proto.FieldVCardField, Name: "FN", Value: []byte("User " + name)}}}), name)
	}
	b.Run("handle", func(b *testing.B) {
		_ = n.f.Read(func(s *State) error {
			for b.Loop() {
				if r := s.IdentifierQuery(&proto.IdentifierRequest{Type: proto.SearchHandle, Value: "user12345"}); r.Code != proto.QuerySuccess {
					b.Fatal(r.Code)
				}
			}
			return nil
		})
	})
	b.Run("wholeProfile", func(b *testing.B) {
		_ = n.f.Read(func(s *State) error {
			for b.Loop() {
				if r := s.IdentifierQuery(&proto.IdentifierRequest{Type: proto.SearchWholeProfile, Value: "nobody"}); r.Code != proto.QueryNotFound {
					b.Fatal(r.Code)
				}
			}
			return nil
		})
	})
	b.Run("baseline-sort-all-users", func(b *testing.B) {
		_ = n.f.Read(func(s *State) error {
			for b.Loop() {
				_ = sortedKeys(s.users)
			}
			return nil
		})
	})
}

// TestContainsFold: the ASCII fast path answers as lowercasing does.
func TestContainsFold(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "A", "b", "B", "z", "Z", "@", "[", "`", "{", "é", "É", "K", "k"}
	word := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	for range 20_000 {
		v, sub := word(rng.IntN(8)), strings.ToLower(word(rng.IntN(3)))
		if got, want := containsFold([]byte(v), []byte(sub)), strings.Contains(strings.ToLower(v), sub); got != want {
			t.Fatalf("containsFold(%q, %q) = %v, want %v", v, sub, got, want)
		}
	}
}
