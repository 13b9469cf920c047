package fsm

import (
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// The password guard limits wrong passwords per user across the whole
// cluster. The per-node rate limits (httpapi.RateLimits) live in each
// node's memory, so a guesser that spreads its attempts over n nodes gets
// n times their budget; a password is the one secret here a user chooses,
// and so the one worth guessing online. Every wrong password is logged
// (CmdPasswordFailure), and the nodes refuse an attempt while the user's
// schedule says so: PasswordFailureBurst wrong passwords at once, then one
// every PasswordFailureInterval, whichever nodes they went to.
//
// The schedule is GCRA's theoretical arrival time, one number per user: a
// failure at t moves it to max(tat, t) + interval, never past t + burst ×
// interval, and an attempt at now is allowed while tat <= now + (burst-1)
// × interval. Attempts checked before the failures of concurrent ones are
// applied can slip past it; each node's own limiter bounds that slack.
const (
	// PasswordFailureInterval is the time (ms) that pays back one wrong
	// password.
	PasswordFailureInterval uint64 = 6 * 60 * 1000
	// PasswordFailureBurst is how many wrong passwords a user's schedule
	// takes at once.
	PasswordFailureBurst uint64 = 10
)

// PasswordFailureBody records a wrong password tried for User.
type PasswordFailureBody struct {
	User proto.URI
}

// EncodeTLS writes the body.
func (b *PasswordFailureBody) EncodeTLS(w *wire.Writer) { b.User.EncodeTLS(w) }

// DecodeTLS reads the body.
func (b *PasswordFailureBody) DecodeTLS(r *wire.Reader) { b.User.DecodeTLS(r) }

// checkPasswordFailure refuses a failure for a user that has no password
// to guess (so the guard holds no entry for users it does not protect).
func (s *State) checkPasswordFailure(b *PasswordFailureBody) *Result {
	if acc := s.acct.users[b.User]; acc == nil || len(acc.passwordHash) == 0 {
		return refused(NotFound, "user %s has no password", b.User)
	}
	return nil
}

// passwordFailure applies CmdPasswordFailure at time at (ms).
func (s *State) passwordFailure(b *PasswordFailureBody, at uint64) *Result {
	if r := s.checkPasswordFailure(b); r != nil {
		return r
	}
	tat := max(s.acct.failTAT[b.User], at) + PasswordFailureInterval
	s.acct.failTAT[b.User] = min(tat, at+PasswordFailureBurst*PasswordFailureInterval)
	return success(nil)
}

// passwordRetryAt is when (ms) user's schedule next allows an attempt; 0
// when it never refused one.
func (a *accounts) passwordRetryAt(user proto.URI) uint64 {
	const tolerance = (PasswordFailureBurst - 1) * PasswordFailureInterval
	if tat := a.failTAT[user]; tat > tolerance {
		return tat - tolerance
	}
	return 0
}

// prunePasswordFailures forgets the schedules that lie in the past (CmdPrune):
// one at or before now weighs nothing on any later attempt or failure,
// which all come at now or later. Every expired entry goes, so the map's
// order does not matter.
func (a *accounts) prunePasswordFailures(now uint64) {
	for u, tat := range a.failTAT {
		if tat <= now {
			delete(a.failTAT, u)
		}
	}
}

// passwordFailures lists the schedules that lie after now, by user, for
// the snapshot.
func (a *accounts) passwordFailures(now uint64) []userSchedule {
	var out []userSchedule
	for _, u := range sortedKeys(a.failTAT) {
		if tat := a.failTAT[u]; tat > now {
			out = append(out, userSchedule{u, tat})
		}
	}
	return out
}

// userSchedule is one user's password-failure schedule in a snapshot
// (recPasswordFailures): the users ascending, each once.
type userSchedule struct {
	user proto.URI
	tat  uint64
}

func encodeSchedules(w *wire.Writer, list []userSchedule) {
	w.Vector(func(w *wire.Writer) {
		for _, e := range list {
			e.user.EncodeTLS(w)
			w.Uint64(e.tat)
		}
	})
}

func (a *accounts) decodeSchedules(r *wire.Reader) {
	var last proto.URI
	r.VectorEach(func(r *wire.Reader) {
		var e userSchedule
		e.user.DecodeTLS(r)
		r.Uint64(&e.tat)
		if last != "" && e.user <= last {
			r.Failf("password failure schedules: %s after %s", e.user, last)
		}
		last = e.user
		a.failTAT[e.user] = e.tat
	})
}
