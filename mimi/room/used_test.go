package room

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestUsedKeyPackagesSweep: the sweep forgets every expired KeyPackage
// within a pass over the set, keeps every live one, wraps around, and
// never checks more than asked.
func TestUsedKeyPackagesSweep(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var u usedKeyPackages
	notAfter := map[string]uint64{}
	for i := range 500 {
		ref := fmt.Sprintf("ref%04d", rng.IntN(10000))
		if _, dup := notAfter[ref]; dup {
			continue
		}
		notAfter[ref] = uint64(100 + i)
		u.add([]byte(ref), notAfter[ref])
	}
	const now = 350
	before := u.byRef.Len()
	u.expire(now, 0)
	if u.byRef.Len() != before {
		t.Fatal("a sweep of nothing forgot entries")
	}
	for range (before + 6) / 7 { // one pass, 7 entries a commit
		u.expire(now, 7)
	}
	for ref, na := range notAfter {
		if has := u.has([]byte(ref)); has != (na >= now) {
			t.Fatalf("%s (not after %d) kept %v at %d", ref, na, has, now)
		}
	}
	// A sweep asking for more than the set holds checks each once.
	u.expire(1<<62, 1<<20)
	if u.byRef.Len() != 0 {
		t.Fatalf("%d entries survive a sweep of everything expired", u.byRef.Len())
	}
}
