package mls

import (
	"fmt"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// BenchmarkFollowerFrozen compares what a snapshot holds the state
// machine's lock for: Frozen (a copy of the node pointers) against
// encoding the whole follower, which snapshots did under the lock before
// (the baseline), in steady-state groups.
//
//	go test ./mimi/mls -run '^$' -bench FollowerFrozen -benchtime 20x
func BenchmarkFollowerFrozen(b *testing.B) {
	for _, n := range []int{1000, 10_000, 100_000} {
		g := newSteadyGroup(b, n, false)
		hub, err := NewFollower(g.groupInfo(b), wire.MustMarshal(g.tree), Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("members=%d/frozen", n), func(b *testing.B) {
			for b.Loop() {
				hub.Frozen()
			}
		})
		b.Run(fmt.Sprintf("members=%d/encode", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := wire.Marshal(hub); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
