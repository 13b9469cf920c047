package proto

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// splitParse is Parse as it was before it stopped allocating: the parts
// split with strings.Split (TestParseMatchesSplit holds Parse to it).
func splitParse(u URI) (Identifier, bool) {
	rest, ok := strings.CutPrefix(string(u), "mimi://")
	if !ok {
		return Identifier{}, false
	}
	id, err := identify(u, strings.Split(rest, "/"))
	return id, err == nil
}

// splitValidDomain is validDomain as it was before it stopped
// allocating: the labels split with strings.Split, each checked alike.
func splitValidDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if !validLabel(label) {
			return false
		}
	}
	return true
}

// randomURI builds identifiers from the pieces Parse branches on, so that
// most are near misses of a valid one: empty, long and hyphenated labels,
// extra or missing segments, and characters just outside each alphabet.
func randomURI(rng *rand.Rand) URI {
	pieces := []string{"a", "b9", "-", ".", "/", "u", "d", "r", "A", "_", "~", " ", "é", "x-y", "..", "//",
		strings.Repeat("l", 63), strings.Repeat("l", 64), strings.Repeat("c", 255), strings.Repeat("c", 256)}
	var b strings.Builder
	if rng.IntN(8) > 0 {
		b.WriteString("mimi://")
	}
	for range rng.IntN(12) {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return URI(b.String())
}

// randomSegment is a domain or path segment, valid more often than not.
func randomSegment(rng *rand.Rand) string {
	pieces := []string{"a", "b9", "x-y", "a.b", "z", "A", "_", "~", "-", ".", "", " ", "/", strings.Repeat("l", 63), strings.Repeat("c", 255)}
	var b strings.Builder
	for range 1 + rng.IntN(3) {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return b.String()
}

// TestParseMatchesSplit holds the allocation-free Parse and validDomain to
// the split-based ones on random near-valid identifiers and domains, and
// UserOf's shortcut for users to the URI it builds for clients.
func TestParseMatchesSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	valid := 0
	for i := range 200000 {
		u := randomURI(rng)
		if i%3 == 0 { // a valid shape with random components
			shapes := []string{"mimi://%/u/%", "mimi://%/u/%/d/%", "mimi://%/r/%", "mimi://%/u/%/d/%/%"}
			s := shapes[rng.IntN(len(shapes))]
			for strings.Contains(s, "%") {
				s = strings.Replace(s, "%", randomSegment(rng), 1)
			}
			u = URI(s)
		}
		if dom := randomSegment(rng); validDomain(dom) != splitValidDomain(dom) {
			t.Fatalf("validDomain(%q) = %v; split-based %v", dom, validDomain(dom), splitValidDomain(dom))
		}
		want, wantOK := splitParse(u)
		got, err := u.Parse()
		if (err == nil) != wantOK || got != want {
			t.Fatalf("%q: Parse = %+v, %v; split-based = %+v, %v", u, got, err, want, wantOK)
		}
		if !wantOK {
			continue
		}
		valid++
		if got.URI() != u {
			t.Fatalf("%q formats back as %q", u, got.URI())
		}
		user, err := u.UserOf()
		switch got.Kind {
		case KindUser, KindClient:
			if err != nil || user != UserURI(got.Domain, got.User) {
				t.Fatalf("%q: UserOf = %q, %v", u, user, err)
			}
		default:
			if err == nil {
				t.Fatalf("room %q has a user %q", u, user)
			}
		}
	}
	if valid < 1000 {
		t.Fatalf("only %d of the random identifiers were valid: the generator misses the accepting paths", valid)
	}
}

// BenchmarkParse is the cost of parsing a client URI, which every request
// does several times.
func BenchmarkParse(b *testing.B) {
	u := ClientURI("provider-a.example", "alice", "phone-1")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := u.UserOf(); err != nil {
			b.Fatal(err)
		}
	}
}
