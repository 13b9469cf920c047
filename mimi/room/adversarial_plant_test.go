//go:build mimi_plant

package room

import "testing"

// TestAdversarialCatchesPlants proves the adversarial test's checkers: with
// one rule of the room switched off (a mimi_plant build only), random
// sequences must find a violation, which is shrunk and printed.
//
//	go test -tags mimi_plant ./mimi/room -run TestAdversarialCatchesPlants -v
func TestAdversarialCatchesPlants(t *testing.T) {
	for _, c := range []struct {
		name  string
		plant plant
	}{
		{"a lingering client removes anyone (hole C)", plantLingeringRemoves},
		{"Adds in commits are not authorized (hole D)", plantAddUnchecked},
		{"conflicting departures are queued (hole B)", plantQueueConflicts},
		{"banned users' clients send", plantBannedSends},
	} {
		t.Run(c.name, func(t *testing.T) {
			const maxSequences = 400
			for seed := uint64(1); seed <= maxSequences; seed++ {
				if v := playSequence(t, seed, nil, *advSteps, c.plant, &advStats{}); v != nil {
					t.Logf("caught after %d sequences:\n%s", seed, reproduce(t, seed, v, c.plant))
					return
				}
			}
			t.Fatalf("%d sequences did not notice the planted violation", maxSequences)
		})
	}
}
