package mls

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// ownCommit has member leaf commit with a path and hold the epoch its
// commit ended, as a client that merges its commit on the hub's
// acceptance does; it reports whether the epoch is held.
func (r *testRoom) ownCommit(leaf int) (uint64, bool) {
	r.t.Helper()
	ended := r.members[leaf].Epoch()
	r.forceUpdate(leaf)
	return ended, r.members[leaf].HoldEpoch(ended)
}

// withPastEpochs puts member leaf back in its place restored with
// PastEpochs n.
func (r *testRoom) withPastEpochs(leaf, n int) *Group {
	r.t.Helper()
	opts := testOptions()
	opts.PastEpochs = n
	g, err := RestoreGroup(saveGroup(r.t, r.members[leaf]), opts)
	if err != nil {
		r.t.Fatal(err)
	}
	r.members[leaf] = g
	return g
}

// keptEpochs lists the past epochs g keeps, oldest first.
func keptEpochs(g *Group) []uint64 {
	var out []uint64
	for _, p := range g.past {
		out = append(out, p.epoch)
	}
	return out
}

// TestHeldEpochs has leaf 0 commit k times, holding each epoch it ends,
// while leaf 1 sends a message in every epoch before each commit; leaf 0
// then reads them all. Every message of an epoch at most MaxPastEpochs
// epochs old decrypts, as a message of its own epoch; older ones are
// refused with ErrEpochNotRetained. Releasing the held epochs then leaves
// only the last PastEpochs. Half of the cases save and restore leaf 0 in
// the middle.
func TestHeldEpochs(t *testing.T) {
	for _, k := range []int{0, 1, 2, 3, 5, 17, MaxPastEpochs, MaxPastEpochs + 1, MaxPastEpochs + 6} {
		for _, pastEpochs := range []int{0, 1, 5} {
			t.Run(fmt.Sprintf("%d commits, PastEpochs %d", k, pastEpochs), func(t *testing.T) {
				r := newTestRoom(t, 2)
				g := r.withPastEpochs(0, pastEpochs)
				sender := leafOf(t, r.members[1], 1)
				first := g.Epoch()
				late := map[uint64]*Message{}
				for i := range k {
					late[g.Epoch()] = r.send(1, fmt.Sprintf("epoch %d", g.Epoch()))
					if _, held := r.ownCommit(0); !held {
						t.Fatalf("commit %d: the epoch it ended is not held", i)
					}
					g = r.members[0]
					if i == k/2 && k%2 == 1 {
						g = r.withPastEpochs(0, pastEpochs)
					}
				}
				cur := g.Epoch()
				wantHeld := []uint64{}
				for e := first; e < cur; e++ {
					if cur-e <= MaxPastEpochs {
						wantHeld = append(wantHeld, e)
					}
				}
				if got := g.HeldEpochs(); !slices.Equal(got, wantHeld) && (len(got) != 0 || len(wantHeld) != 0) {
					t.Fatalf("holds %v, want %v", got, wantHeld)
				}
				if n := len(g.past); n > MaxPastEpochs {
					t.Fatalf("keeps %d past epochs, more than %d", n, MaxPastEpochs)
				}
				for _, e := range slices.Sorted(maps.Keys(late)) {
					if cur-e <= MaxPastEpochs {
						receiveLate(t, g, late[e], fmt.Sprintf("epoch %d", e), e, 1, sender)
						continue
					}
					if _, err := g.Process(late[e]); !errors.Is(err, ErrEpochNotRetained) || !errors.Is(err, ErrWrongEpoch) {
						t.Fatalf("a message of epoch %d at epoch %d, older than the cap: %v, want ErrEpochNotRetained", e, cur, err)
					}
				}

				// The stream passed the commits: only PastEpochs remain.
				g.ReleaseEpochs(cur)
				opts := testOptions()
				opts.PastEpochs = pastEpochs
				window := min(opts.pastEpochs(), int(cur))
				if len(g.HeldEpochs()) != 0 || len(g.past) != window || g.past[0].epoch != cur-uint64(window) {
					t.Fatalf("after the release: holds %v and keeps %v, want the last %d", g.HeldEpochs(), keptEpochs(g), window)
				}
				restoreGroup(t, saveGroup(t, g), opts)
			})
		}
	}
}

// TestHeldEpochsOnlyOwnCommits checks that nothing another member sends
// makes a member hold an epoch: after other members' commits, a late
// message older than PastEpochs is refused as before, and holding asks
// for a kept epoch.
func TestHeldEpochsOnlyOwnCommits(t *testing.T) {
	r := newTestRoom(t, 3)
	g := r.members[0]
	e := g.Epoch()
	late := r.send(1, "before three commits of others")
	for i := range 3 {
		r.forceUpdate(1 + i%2)
		if held := g.HeldEpochs(); len(held) != 0 {
			t.Fatalf("another member's commit made leaf 0 hold %v", held)
		}
	}
	if _, err := g.Process(late); !errors.Is(err, ErrEpochNotRetained) {
		t.Fatalf("a message three epochs old: %v, want ErrEpochNotRetained", err)
	}
	for _, epoch := range []uint64{e, g.Epoch(), g.Epoch() + 1} {
		if g.HoldEpoch(epoch) {
			t.Fatalf("held epoch %d at epoch %d, which it does not keep", epoch, g.Epoch())
		}
	}
	// A member keeping no past epoch holds nothing either.
	g = r.withPastEpochs(0, NoPastEpochs)
	if ended, held := r.ownCommit(0); held || len(g.past) != 0 {
		t.Fatalf("with NoPastEpochs, held epoch %d: %v, keeps %v", ended, held, keptEpochs(g))
	}
	// A removed member forgets what it held.
	h := r.members[2]
	if ended, held := r.ownCommit(2); !held {
		t.Fatalf("leaf 2 cannot hold epoch %d", ended)
	}
	r.commit(0, CommitOptions{Proposals: []*Proposal{RemoveProposal(2)}})
	if !h.Removed() || len(h.HeldEpochs()) != 0 || len(h.past) != 0 {
		t.Fatalf("the removed member holds %v and keeps %v", h.HeldEpochs(), keptEpochs(h))
	}
}

// TestHeldEpochsModel plays random sequences of own commits (holding the
// epoch each ends), other members' commits (after which the stream has
// passed every epoch before theirs: the member releases them), releases,
// saves and restores, and late messages, against a model of which epochs
// are kept: an epoch that ended is kept while it is among the last
// PastEpochs or at or after the oldest held epoch, never once more than
// MaxPastEpochs old, and a held epoch is such a kept epoch.
//
// Odd seeds play a long lag first: only this member commits for 150 steps,
// past the cap on held epochs.
func TestHeldEpochsModel(t *testing.T) {
	for seed := range uint64(8) {
		pastEpochs := []int{0, 0, 1, 1, 3, NoPastEpochs, 5, MaxPastEpochs}[seed]
		lag := seed%2 == 1
		t.Run(fmt.Sprintf("seed %d, PastEpochs %d, lag %v", seed, pastEpochs, lag), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0xe90c5))
			opts := testOptions()
			opts.PastEpochs = pastEpochs
			window := opts.pastEpochs()
			r := newTestRoom(t, 3)
			g := r.withPastEpochs(0, pastEpochs)
			kept := map[uint64]bool{}
			if window > 0 {
				for e := range g.Epoch() {
					kept[e] = g.Epoch()-e <= uint64(window)
				}
			}
			held := []uint64{}
			late := map[uint64][]*Message{}
			var sent int
			capped := false // a held epoch was dropped for its age
			// trim is the model's trimPast.
			trim := func() {
				cur := g.Epoch()
				held = slices.DeleteFunc(held, func(e uint64) bool {
					capped = capped || cur-e > MaxPastEpochs
					return window == 0 || cur-e > MaxPastEpochs
				})
				for e := range kept {
					if !(cur-e <= uint64(window) || len(held) > 0 && e >= held[0]) || cur-e > MaxPastEpochs {
						delete(kept, e)
					}
				}
			}
			release := func(before uint64) {
				g.ReleaseEpochs(before)
				held = slices.DeleteFunc(held, func(e uint64) bool { return e < before })
				trim()
			}
			for step := range 260 {
				op := rng.IntN(20)
				if lag && step < 150 && op >= 9 && op < 12 {
					op = 0
				}
				switch {
				case op < 9: // an own commit, held
					ended, ok := r.ownCommit(0)
					if ok != (window > 0) {
						t.Fatalf("step %d: holding epoch %d: %v", step, ended, ok)
					}
					if window > 0 {
						kept[ended] = true
						held = append(held, ended)
					}
					trim()
				case op < 11: // another member's commit: the stream passed what came before
					sentIn := g.Epoch()
					r.forceUpdate(2)
					if window > 0 {
						kept[sentIn] = true
					}
					trim()
					release(sentIn)
				case op < 12:
					release(g.Epoch() - uint64(rng.IntN(int(min(g.Epoch(), 70))+1)))
				case op < 13:
					g = r.withPastEpochs(0, pastEpochs)
				case op < 17:
					sent++
					late[g.Epoch()] = append(late[g.Epoch()], r.send(1, fmt.Sprintf("message %d", sent)))
				default: // a late message arrives
					epochs := slices.Sorted(maps.Keys(late))
					if len(epochs) == 0 {
						continue
					}
					e := epochs[rng.IntN(len(epochs))]
					m := late[e][0]
					if late[e] = late[e][1:]; len(late[e]) == 0 {
						delete(late, e)
					}
					if e == g.Epoch() || kept[e] {
						got, err := g.Process(m)
						if err != nil || got.Epoch != e {
							t.Fatalf("step %d: a message of kept epoch %d at epoch %d: %v", step, e, g.Epoch(), err)
						}
					} else if _, err := g.Process(m); !errors.Is(err, ErrEpochNotRetained) {
						t.Fatalf("step %d: a message of epoch %d, not kept at epoch %d: %v, want ErrEpochNotRetained", step, e, g.Epoch(), err)
					}
				}
				if got := g.HeldEpochs(); !slices.Equal(got, held) && (len(got) != 0 || len(held) != 0) {
					t.Fatalf("step %d at epoch %d: holds %v, the model %v", step, g.Epoch(), got, held)
				}
				if got, want := keptEpochs(g), slices.Sorted(maps.Keys(kept)); !slices.Equal(got, want) {
					t.Fatalf("step %d at epoch %d: keeps %v, the model %v (held %v)", step, g.Epoch(), got, want, held)
				}
			}
			if lag && window > 0 && !capped {
				t.Fatalf("the lag reached epoch %d only: it never tested the cap", g.Epoch())
			}
		})
	}
}
