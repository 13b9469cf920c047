package consent

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// TestPendingSharedAmongPeers: a hostile peer's users fill Alice's pending
// requests, and keep asking. A user of a provider holding fewer of
// Alice's requests than the one holding the most still gets its request
// in (the top domain gives one up), so no provider can keep the others
// from asking; only a domain already holding as many as any other is
// refused, and the bound holds throughout.
func TestPendingSharedAmongPeers(t *testing.T) {
	const limit = 8
	domains := []string{domB, domC, "x.example"}
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 3))
			b := testBook(t, true)
			l := DefaultLimits()
			l.MaxPendingPerTarget = limit
			must(t, b.SetLimits(l))
			for i := range 400 {
				// x.example (the hostile one) sends most of the requests.
				d := domains[min(rng.IntN(5), 2)]
				requester := proto.UserURI(d, fmt.Sprint("u", i))
				var held map[string]int
				pend, err := b.Pending(alice)
				must(t, err)
				held = map[string]int{}
				most := 0
				for _, e := range pend {
					rd, _ := e.Requester.Domain()
					held[rd]++
					most = max(most, held[rd])
				}
				err = b.ApplyRemote(d, entry(request, requester, alice, nil))
				switch {
				case err == nil:
				case errors.Is(err, ErrLimit) && len(pend) == limit && held[d] >= most:
				default:
					t.Fatalf("request %d from %s (holding %d of %d, the most %d): %v", i, d, held[d], len(pend), most, err)
				}
				if pend, _ := b.Pending(alice); len(pend) > limit {
					t.Fatalf("%d pending requests, at most %d", len(pend), limit)
				}
			}
		})
	}
}

// TestApplyRemoteNews: only what the local user has not heard of is news,
// so a peer repeating requests or grants cannot notify again and again.
func TestApplyRemoteNews(t *testing.T) {
	b := testBook(t, true)
	kp := kpMessage(t, proto.ClientURI(domB, "carol", "phone"))
	steps := []struct {
		from string
		e    proto.ConsentEntry
		news bool
	}{
		{domB, entry(request, carol, alice, nil), true},
		{domB, entry(request, carol, alice, nil), false},
		{domB, entry(request, carol, alice, in(room1)), true},
		{domB, entry(cancel, carol, alice, nil), false},
		{domB, entry(request, carol, alice, nil), true},
		{domB, entry(grant, alice, carol, in(room1)), true},
		{domB, entry(grant, alice, carol, in(room1), kp), false},
		{domB, entry(grant, alice, carol, nil), true},
		{domB, entry(grant, alice, carol, nil), false},
		{domB, entry(revoke, alice, carol, nil), false},
		{domB, entry(grant, alice, carol, nil), true},
	}
	for i, s := range steps {
		news, err := b.ApplyRemoteNews(s.from, s.e)
		must(t, err)
		if news != s.news {
			t.Fatalf("step %d, %s: news %v, want %v", i, s.e.Operation, news, s.news)
		}
	}
	// A request refused by the target's revoke is dropped, and is no news.
	if _, err := b.ApplyLocal(entry(revoke, dave, alice, nil)); err != nil {
		t.Fatal(err)
	}
	if news, err := b.ApplyRemoteNews(domC, entry(request, dave, alice, nil)); err != nil || news {
		t.Fatalf("a request after a revoke: news %v, %v", news, err)
	}
}

// TestGrantBytesPerPeer: a hostile peer sends our user Alice unsolicited
// grants from ever new users of its own, each with a KeyPackage near the
// size bound. The KeyPackages the book keeps from one
// provider are at most maxGrantBytesPerPeer (ErrLimit beyond, the book
// unchanged), where 100,000 records of a megabyte each used to be kept;
// another provider's grants are not affected, and a peer's bytes come
// back when its grants go.
func TestGrantBytesPerPeer(t *testing.T) {
	b := testBook(t, true)
	const size = 48 << 10 // under proto.MaxKeyPackageSize with the rest
	kp := func(d, user string) *mls.Message {
		return kpMessageWith(t, proto.ClientURI(d, user, "d"), mls.Extensions{{Type: 0xF0AA, Data: make([]byte, size)}})
	}
	accepted := 0
	var refused error
	for i := range 2*maxGrantBytesPerPeer/size + 1 {
		err := b.ApplyRemote("x.example", entry(grant, alice, proto.UserURI("x.example", fmt.Sprint("m", i)), nil, kp("x.example", fmt.Sprint("m", i))))
		if err != nil {
			refused = err
			break
		}
		accepted++
	}
	if !errors.Is(refused, ErrLimit) || accepted*size > maxGrantBytesPerPeer {
		t.Fatalf("%d grants of %d bytes accepted from one peer (at most %d bytes), then %v", accepted, size, maxGrantBytesPerPeer, refused)
	}
	must(t, b.ApplyRemote(domC, entry(grant, alice, dave, nil, kp(domC, "dave"))))
	// Revoking frees the peer's share.
	must(t, b.ApplyRemote("x.example", entry(revoke, alice, proto.UserURI("x.example", "m0"), nil)))
	must(t, b.ApplyRemote("x.example", entry(grant, alice, proto.UserURI("x.example", "again"), nil, kp("x.example", "again"))))
}
