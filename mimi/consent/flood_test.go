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

// TestReceivedFloodKeepsOthers: the grants a requester received are
// bounded too (MaxGrantsPerRequester), and anyone may grant. Hostile
// accounts granting Alice many room scopes each must not keep her
// friends' grants out: a full table drops a grant of the target holding
// the most, if it holds more than the new target.
func TestReceivedFloodKeepsOthers(t *testing.T) {
	for seed := range uint64(5) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 4))
			b := testBook(t, true)
			limits := DefaultLimits()
			limits.MaxGrantsPerRequester, limits.MaxScopesPerPair = 200, 20
			must(t, b.SetLimits(limits))
			honest := map[proto.URI]bool{}
			for step := range 4 * limits.MaxGrantsPerRequester {
				var err error
				var target proto.URI
				if rng.IntN(30) == 0 {
					target = proto.UserURI(domB, fmt.Sprint("friend", step))
					honest[target] = true
					err = b.ApplyRemote(domB, entry(grant, alice, target, nil))
				} else {
					target = proto.UserURI(dom, fmt.Sprint("mallory", rng.IntN(15)))
					_, err = b.ApplyLocal(entry(grant, alice, target, in(proto.RoomURI("hub.example", fmt.Sprint("r", rng.IntN(limits.MaxScopesPerPair))))))
				}
				switch {
				case err == nil:
				case honest[target]:
					t.Fatalf("step %d: %s's grant refused: %v", step, target, err)
				default:
					wantErr(t, err, ErrLimit)
				}
			}
			got, err := b.Received(alice)
			must(t, err)
			if len(got) > limits.MaxGrantsPerRequester {
				t.Fatalf("%d grants received, the bound is %d", len(got), limits.MaxGrantsPerRequester)
			}
			kept := map[proto.URI]bool{}
			for _, e := range got {
				kept[e.Target] = true
			}
			for f := range honest {
				if !kept[f] {
					t.Errorf("%s's grant was pushed out by the flood", f)
				}
			}
		})
	}
}

// TestFloodRulesOff: with the flood rules off (a replica applying an
// entry logged before them), a full pending table refuses a newcomer, as
// it did; with them on, the newcomer displaces the largest requester.
func TestFloodRulesOff(t *testing.T) {
	for _, on := range []bool{false, true} {
		b := testBook(t, true)
		if !on {
			b.SetRulesLevel(1)
		}
		must(t, b.SetLimits(Limits{MaxPendingPerTarget: 1, MaxScopesPerPair: 2, MaxDecisionsPerTarget: 2,
			MaxGrantsPerRequester: 2, MaxRecordsPerPeer: 3, MaxKeyPackagesPerGrant: 1}))
		_, err := b.ApplyLocal(entry(request, bob, alice, in(room1)))
		must(t, err)
		err = b.ApplyRemote(domB, entry(request, carol, alice, nil))
		if on {
			must(t, err)
		} else {
			wantErr(t, err, ErrLimit)
		}
	}
}
