package httpapi

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/fsm"
)

// TestProfileBounds: a registration's profile is replicated state kept for
// as long as the user exists, and is returned whole by every identifier
// query that finds the user, so an anonymous registrant must not store a
// body-sized one (about 1 MiB, every 10 s per address). Random profiles
// around the bounds: those within them register (201), the others are
// refused (400) before Raft and create no user.
func TestProfileBounds(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	rng := rand.New(rand.NewPCG(3, 9))
	size := func(n int) int { // mostly small, sometimes past the bound
		if rng.IntN(4) == 0 {
			return rng.IntN(2 * n)
		}
		return rng.IntN(n / 2)
	}
	accepted, refused := 0, 0
	for i := range 120 {
		var fields []map[string]string
		total, ok := 0, true
		n := size(2 * MaxProfileFields)
		for range n {
			name := strings.Repeat("N", 1+size(MaxProfileName))
			value := strings.Repeat("v", size(MaxProfileValue))
			fields = append(fields, map[string]string{"source": "vcard", "name": name, "value": value})
			total += len(name) + len(value)
			ok = ok && len(name) <= MaxProfileName && len(value) <= MaxProfileValue
		}
		ok = ok && n <= MaxProfileFields && total <= MaxProfileBytes
		var users int
		e.b.read(func(s *fsm.State) { users = s.Counts().Users })
		rec := e.apiDo(http.MethodPost, "/v1/register", "", map[string]any{"user": fmt.Sprint("u", i), "device": "d", "profile": fields})
		if ok {
			want(t, rec, http.StatusCreated, fmt.Sprintf("a profile of %d fields, %d bytes", n, total))
			accepted++
			continue
		}
		wantJSONError(t, rec, http.StatusBadRequest, kindInvalid, fmt.Sprintf("a profile of %d fields, %d bytes", n, total))
		e.b.read(func(s *fsm.State) {
			if s.Counts().Users != users {
				t.Fatalf("a refused profile created a user")
			}
		})
		refused++
	}
	if accepted < 10 || refused < 10 {
		t.Fatalf("%d accepted, %d refused: the cases do not cover both sides", accepted, refused)
	}
}
