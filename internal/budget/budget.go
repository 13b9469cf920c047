// Package budget meters what each client or peer may send: a table of
// token buckets, one per key, bounded in size. A bucket refills at Rate
// tokens a second up to Burst; a request may take more tokens than the
// bucket holds (a body larger than the burst), leaving it in debt, and is
// refused only while the bucket is in debt, with the time until it is
// not. The table forgets full buckets first when it is full: a full
// bucket and a new one are the same.
//
// A strict table (NewStrict) guards credentials: password attempts, link
// codes, registrations. It counts whole tokens (Allow: one if the bucket
// holds one, no debt) and, when full, forgets only buckets that refilled
// completely, at most once a second, refusing new keys while there are
// none: forgetting a key with spent tokens would give whoever spent them a
// fresh budget, and a flood of new keys must not buy that.
package budget

import (
	"sync"
	"time"
)

// Limit is one budget: Rate tokens a second, at most Burst saved. A zero
// Rate means no limit.
type Limit struct {
	Rate  float64
	Burst float64
}

// Table is a table of buckets for one Limit; safe for concurrent use.
type Table struct {
	limit   Limit
	maxKeys int
	now     func() time.Time
	strict  bool

	mu      sync.Mutex
	buckets map[string]*bucket
	// swept is when a full strict table last looked for buckets to
	// forget: at most once a second, so that a flood of new keys cannot
	// make every request scan the table.
	swept time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// DefaultMaxKeys bounds a table's buckets.
const DefaultMaxKeys = 100_000

// New returns a table for limit holding at most maxKeys buckets
// (DefaultMaxKeys if 0). now is the clock (time.Now if nil).
func New(limit Limit, maxKeys int, now func() time.Time) *Table {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	if now == nil {
		now = time.Now
	}
	return &Table{limit: limit, maxKeys: maxKeys, now: now, buckets: map[string]*bucket{}}
}

// NewStrict returns a strict table (see the package comment) for limit,
// holding at most maxKeys buckets (DefaultMaxKeys if 0).
func NewStrict(limit Limit, maxKeys int, now func() time.Time) *Table {
	t := New(limit, maxKeys, now)
	t.strict = true
	return t
}

// Allow takes one whole token from key's bucket if it holds one; otherwise
// it takes nothing and returns false and how long until the bucket holds
// one (for a new key refused by a full strict table: one token's time).
func (t *Table) Allow(key string) (ok bool, retryAfter time.Duration) {
	if t == nil || t.limit.Rate <= 0 {
		return true, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.refill(key, t.now())
	if b == nil {
		return false, t.tokenTime(1)
	}
	if b.tokens < 1 {
		return false, t.tokenTime(1 - b.tokens)
	}
	b.tokens--
	return true, 0
}

// tokenTime is how long the bucket takes to earn n tokens.
func (t *Table) tokenTime(n float64) time.Duration {
	return time.Duration(n / t.limit.Rate * float64(time.Second))
}

// Take takes n tokens from key's bucket. While the bucket is in debt it
// takes nothing and returns false and how long until the bucket is out of
// debt.
func (t *Table) Take(key string, n float64) (ok bool, retryAfter time.Duration) {
	if t == nil || t.limit.Rate <= 0 {
		return true, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.refill(key, t.now())
	if b == nil {
		return false, t.tokenTime(n)
	}
	if b.tokens < 0 {
		return false, t.tokenTime(-b.tokens)
	}
	b.tokens -= n
	return true, 0
}

// Charge takes n tokens from key's bucket whatever it holds: what a
// request turned out to cost beyond what it took.
func (t *Table) Charge(key string, n float64) {
	if t == nil || t.limit.Rate <= 0 || n == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if b := t.refill(key, t.now()); b != nil {
		b.tokens -= n
	}
}

// refill returns key's bucket with what it earned since it was last used,
// or nil when key is new and a full strict table has no room for it.
func (t *Table) refill(key string, now time.Time) *bucket {
	b := t.buckets[key]
	if b == nil {
		if len(t.buckets) >= t.maxKeys {
			t.evict(now)
		}
		if len(t.buckets) >= t.maxKeys {
			return nil
		}
		b = &bucket{tokens: t.limit.Burst, at: now}
		t.buckets[key] = b
		return b
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(t.limit.Burst, b.tokens+d.Seconds()*t.limit.Rate)
		b.at = now
	}
	return b
}

// evict forgets the full buckets, and if none is full, a tenth of the
// table (map order: whichever). A strict table forgets only full buckets,
// and looks at most once a second.
func (t *Table) evict(now time.Time) {
	if t.strict {
		if now.Sub(t.swept) < time.Second {
			return
		}
		t.swept = now
	}
	for k, b := range t.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*t.limit.Rate >= t.limit.Burst {
			delete(t.buckets, k)
		}
	}
	if t.strict {
		return
	}
	for k := range t.buckets {
		if len(t.buckets) < t.maxKeys*9/10 {
			return
		}
		delete(t.buckets, k)
	}
}

// Len returns the buckets held.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.buckets)
}
