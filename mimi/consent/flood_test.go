package consent

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/proto"
)

// TestPendingFloodKeepsOthers: a target's pending requests are bounded
// (MaxPendingPerTarget), and anyone may request. Ten hostile accounts
// with a hundred room scopes each used to fill Alice's table, and then
// nobody could ask her for consent: on a provider that requires consent
// she could not be reached. Now, when the table is full, a request
// displaces a request of the requester holding the most, if it holds
// more than the new requester (else it is refused); so honest requesters
// (one scope each) get in and stay, in any order of hostile and honest
// requests, and the bound holds.
func TestPendingFloodKeepsOthers(t *testing.T) {
	for seed := range uint64(5) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 3))
			b := testBook(t, true)
			limits := b.limits
			honest := map[proto.URI]bool{}
			for step := range 4 * limits.MaxPendingPerTarget {
				var requester proto.URI
				var room *proto.URI
				if rng.IntN(50) == 0 {
					requester = proto.UserURI(domB, fmt.Sprint("friend", step)) // one request for any room
					honest[requester] = true
				} else {
					requester = proto.UserURI(dom, fmt.Sprint("mallory", rng.IntN(12)))
					room = in(proto.RoomURI("hub.example", fmt.Sprint("r", rng.IntN(limits.MaxScopesPerPair))))
				}
				var err error
				if room == nil {
					err = b.ApplyRemote(domB, entry(request, requester, alice, room))
				} else {
					_, err = b.ApplyLocal(entry(request, requester, alice, room))
				}
				switch {
				case err == nil:
				case honest[requester]:
					t.Fatalf("step %d: %s's request refused: %v", step, requester, err)
				default: // a hostile requester that holds the most is refused
					wantErr(t, err, ErrLimit)
				}
			}
			pending, err := b.Pending(alice)
			must(t, err)
			if len(pending) > limits.MaxPendingPerTarget {
				t.Fatalf("%d pending requests, the bound is %d", len(pending), limits.MaxPendingPerTarget)
			}
			kept := map[proto.URI]bool{}
			for _, e := range pending {
				kept[e.Requester] = true
			}
			for r := range honest {
				if !kept[r] {
					t.Errorf("%s's request was pushed out by the flood", r)
				}
			}
		})
	}
}
