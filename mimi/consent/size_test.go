package consent

import (
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
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
