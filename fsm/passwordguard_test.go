package fsm

import (
	"math/rand/v2"
	"testing"
)

// retryAt reads the user's password schedule as a node checks it.
func (n *node) retryAt(f *FSM, user string) uint64 {
	n.t.Helper()
	var at uint64
	_ = f.Read(func(s *State) error {
		cred, ok := s.UserCredential(usr(user))
		if !ok {
			n.t.Fatalf("no user %s", user)
		}
		at = cred.PasswordRetryAt
		return nil
	})
	return at
}

// TestPasswordGuardModel drives the guard the way a guesser spread over
// any number of nodes would: at random times it tries a password whenever
// the replicated schedule allows one, and every try is wrong. Whatever the
// timing, the tries in any window of length L number at most
// PasswordFailureBurst + L / PasswordFailureInterval; a refusal names a
// retry time within one interval, and a try at that time is allowed; a
// quiet user gets a whole burst again. Snapshots, restores and prunes in
// between change none of it.
func TestPasswordGuardModel(t *testing.T) {
	const T, B = PasswordFailureInterval, PasswordFailureBurst
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 32))
		n := newNode(t, acctDomain)
		n.createUser("alice", "phone")
		n.ok(n.apply(CmdSetPassword, nil, "", &SetPasswordBody{User: usr("alice"), PasswordHash: []byte("$argon2id$hash")}), "password")
		var tries []uint64
		refusals := 0
		for step := range 400 {
			// Mostly bursts a second apart, sometimes a pause of up to
			// two intervals; apply adds its own second.
			if rng.IntN(5) == 0 {
				n.now += rng.Uint64N(2 * T)
			}
			now := n.now + 1000
			switch retry := n.retryAt(n.f, "alice"); {
			case now >= retry:
				n.ok(n.apply(CmdPasswordFailure, nil, "", &PasswordFailureBody{User: usr("alice")}), "a wrong password")
				tries = append(tries, n.now)
			default:
				refusals++
				if retry > now+T {
					t.Fatalf("seed %d step %d: retry at %d, more than an interval after %d", seed, step, retry, now)
				}
				n.now = retry - 1000 // the next try comes at exactly the retry time
			}
			switch rng.IntN(40) {
			case 0:
				n.f = roundTrip(t, n.f, n.cfg)
			case 1:
				n.apply(CmdPrune, nil, "", nil)
			}
		}
		for i := range tries {
			for j := i; j < len(tries); j++ {
				if in, allowed := uint64(j-i+1), B+(tries[j]-tries[i])/T; in > allowed {
					t.Fatalf("seed %d: %d tries between %d and %d ms; the guard allows %d", seed, in, tries[i], tries[j], allowed)
				}
			}
		}
		if refusals == 0 {
			t.Fatalf("seed %d: no try was ever refused", seed)
		}
		// A user left alone for a burst's worth of intervals has a
		// whole burst again.
		n.now += B * T
		for i := range B {
			if now := n.now + 1000; n.retryAt(n.f, "alice") > now {
				t.Fatalf("seed %d: after a quiet period, try %d of a burst refused", seed, i+1)
			}
			n.ok(n.apply(CmdPasswordFailure, nil, "", &PasswordFailureBody{User: usr("alice")}), "a wrong password")
		}
		if n.retryAt(n.f, "alice") <= n.now+1000 {
			t.Fatalf("seed %d: a try past the burst is allowed", seed)
		}
		replay(t, n)
	}
}

// TestPasswordGuardRefusals: a failure for a user without a password, for
// nobody, or from a peer is refused and changes nothing, before Raft too;
// racing failures lock for at most one interval; the guard forgets a
// schedule once it lies in the past.
func TestPasswordGuardRefusals(t *testing.T) {
	n := newNode(t, acctDomain)
	n.createUser("alice", "phone")
	n.createUser("bob", "phone")
	n.ok(n.apply(CmdSetPassword, nil, "", &SetPasswordBody{User: usr("alice"), PasswordHash: []byte("$argon2id$hash")}), "password")
	for _, c := range []accountCase{
		{"a user without a password", CmdPasswordFailure, "", &PasswordFailureBody{User: usr("bob")}, NotFound},
		{"nobody", CmdPasswordFailure, "", &PasswordFailureBody{User: usr("nobody")}, NotFound},
		{"a peer", CmdPasswordFailure, "b.example", &PasswordFailureBody{User: usr("alice")}, NotAllowed},
	} {
		t.Run(c.name, func(t *testing.T) {
			_ = n.f.Read(func(s *State) error {
				if r := s.Admit(c.t, nil, c.peer, c.body); r == nil || r.Kind != c.kind {
					t.Fatalf("admitted: %v, want %s before Raft", r, c.kind)
				}
				return nil
			})
			n.refused(n.state(), n.apply(c.t, nil, c.peer, c.body), c.kind, c.name)
		})
	}
	n.ok(n.apply(CmdPasswordFailure, nil, "", &PasswordFailureBody{User: usr("alice")}), "a wrong password")
	schedules := func() int {
		var k int
		_ = n.f.Read(func(s *State) error { k = len(s.acct.failTAT); return nil })
		return k
	}
	n.apply(CmdPrune, nil, "", nil)
	if schedules() != 1 {
		t.Fatal("a prune forgot a schedule that lies ahead")
	}
	// Failures checked on several nodes at once all land: the schedule
	// still refuses for at most one interval after the last.
	for range 3 * PasswordFailureBurst {
		n.ok(n.apply(CmdPasswordFailure, nil, "", &PasswordFailureBody{User: usr("alice")}), "a racing wrong password")
	}
	if retry := n.retryAt(n.f, "alice"); retry > n.now+PasswordFailureInterval {
		t.Fatalf("after racing failures the retry is %d ms away, more than an interval", retry-n.now)
	}
	n.now += PasswordFailureBurst * PasswordFailureInterval
	n.apply(CmdPrune, nil, "", nil)
	if schedules() != 0 {
		t.Fatal("a prune kept a schedule in the past")
	}
	replay(t, n)
}
