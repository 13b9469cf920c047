package keymaterial

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestKeyPackageSizeBound: a client's KeyPackages are replicated state
// bounded in number (MaxKeyPackagesPerClient) and, through this bound, in
// bytes: without it one upload body (16 MiB) could be one KeyPackage, and
// a thousand of them 16 GiB for one device. KeyPackages with extensions
// of random sizes around the bound: those whose encoding is within
// proto.MaxKeyPackageSize are stored, the others refused and nothing
// stored.
func TestKeyPackageSizeBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	s := newTestStore(t)
	const extType = mls.ExtensionType(0xF0F0)
	stored, refused := 0, 0
	for range 12 {
		pad := proto.MaxKeyPackageSize - 2048 + rng.IntN(4096)
		kp := newKP(t, alicePhone, func(c *kpConfig) {
			c.opts.Extensions = mls.Extensions{{Type: extType, Data: make([]byte, pad)}}
			c.opts.Capabilities.Extensions = []mls.ExtensionType{extType}
		})
		size := len(wire.MustMarshal(kp))
		before, _ := s.Count(alicePhone)
		err := s.Upload(alicePhone, []*mls.KeyPackage{kp}, testNow)
		if size <= proto.MaxKeyPackageSize {
			must(t, err)
			stored++
			continue
		}
		if !errors.Is(err, ErrInvalidKeyPackage) {
			t.Fatalf("a KeyPackage of %d bytes: %v, want ErrInvalidKeyPackage", size, err)
		}
		if after, _ := s.Count(alicePhone); after.KeyPackages != before.KeyPackages {
			t.Fatalf("a refused upload stored something: %+v, was %+v", after, before)
		}
		refused++
	}
	if stored == 0 || refused == 0 {
		t.Fatalf("%d stored, %d refused: the sizes do not cover both sides", stored, refused)
	}
}

// TestKeyPackageSizeBoundOff: with the bound off (a replica applying an
// entry logged before it), a large KeyPackage is stored as it was then.
func TestKeyPackageSizeBoundOff(t *testing.T) {
	s := newTestStore(t)
	s.SetRulesLevel(1)
	kp := newKP(t, alicePhone, func(c *kpConfig) {
		c.opts.Extensions = mls.Extensions{{Type: 0xF0F0, Data: make([]byte, 2*proto.MaxKeyPackageSize)}}
		c.opts.Capabilities.Extensions = []mls.ExtensionType{0xF0F0}
	})
	must(t, s.Upload(alicePhone, []*mls.KeyPackage{kp}, testNow))
}
