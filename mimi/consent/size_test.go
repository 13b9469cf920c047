package consent

import (
	"fmt"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestGrantKeyPackageSize: a grant's KeyPackages are kept for the
// requester, so each is bounded like an uploaded one
// (proto.MaxKeyPackageSize); a grant carrying a larger one is refused and
// nothing is kept.
func TestGrantKeyPackageSize(t *testing.T) {
	big := kpMessage(t, proto.ClientURI(domB, "carol", "phone"))
	big.KeyPackage.Extensions = mls.Extensions{{Type: 0xF0F0, Data: make([]byte, proto.MaxKeyPackageSize)}}
	b := testBook(t, true)
	wantErr(t, b.ApplyRemote(domB, entry(grant, alice, carol, in(room1), big)), ErrInvalidEntry)
	if got, err := b.Received(alice); err != nil || len(got) != 0 {
		t.Fatalf("a refused grant was kept: %v %v", got, err)
	}
	must(t, b.ApplyRemote(domB, entry(grant, alice, carol, in(room1), kpMessage(t, proto.ClientURI(domB, "carol", "laptop")))))
}

// TestGrantBytesPerTarget: a local user's grants to local requesters keep
// their KeyPackages, and the requesters need not exist, so without a
// bound on what one target keeps a hostile user could store its
// decisions' worth (10,000) of 1 MiB grants. The KeyPackages one target's
// grants keep are at most MaxGrantBytesPerTarget together: Mallory's
// grants past it are refused (ErrLimit) and change nothing; a grant that
// replaces others is counted without them; Alice's grants are not
// affected.
func TestGrantBytesPerTarget(t *testing.T) {
	mallory := proto.UserURI(dom, "mallory")
	var kps []*mls.Message
	for i := range 100 {
		kps = append(kps, kpMessage(t, proto.ClientURI(dom, "mallory", fmt.Sprint("d", i))))
	}
	per := 0
	for _, m := range kps {
		per += len(wire.MustMarshal(m.KeyPackage))
	}
	b := testBook(t, true)
	limit := MaxGrantBytesPerTarget
	kept := 0
	for i := 0; ; i++ {
		requester := proto.UserURI(dom, fmt.Sprint("fake", i))
		_, err := b.ApplyLocal(entry(grant, requester, mallory, nil, kps...))
		if err != nil {
			wantErr(t, err, ErrLimit)
			if (kept+1)*per <= limit {
				t.Fatalf("grant %d refused with %d of %d bytes kept: %v", i, kept*per, limit, err)
			}
			if got, _ := b.Received(requester); len(got) != 0 {
				t.Fatal("a refused grant was kept")
			}
			// Replacing a grant with one of the same size still fits.
			_, err := b.ApplyLocal(entry(grant, proto.UserURI(dom, "fake0"), mallory, nil, kps...))
			must(t, err)
			break
		}
		if kept++; kept*per > limit {
			t.Fatalf("%d bytes of KeyPackages kept for one target's grants, the bound is %d", kept*per, limit)
		}
	}
	_, err := b.ApplyLocal(entry(grant, bob, alice, nil, kpMessage(t, proto.ClientURI(dom, "alice", "phone"))))
	must(t, err)
}
