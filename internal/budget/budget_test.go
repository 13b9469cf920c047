package budget

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time            { return c.t }
func (c *clock) advance(d time.Duration)   { c.t = c.t.Add(d) }
func newClock() *clock                     { return &clock{t: time.Unix(1_700_000_000, 0)} }
func seconds(d time.Duration) float64      { return d.Seconds() }
func near(a, b time.Duration) bool         { return a-b < time.Millisecond && b-a < time.Millisecond }
func (c *clock) String() string            { return c.t.String() }
func (t *Table) tokens(key string) float64 { return t.buckets[key].tokens }

func TestBurstThenRate(t *testing.T) {
	c := newClock()
	tb := New(Limit{Rate: 10, Burst: 5}, 0, c.now)
	for i := range 6 {
		if ok, _ := tb.Take("a", 1); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	// 5 saved, 6 taken: one in debt, a tenth of a second to pay.
	ok, wait := tb.Take("a", 1)
	if ok || !near(wait, 100*time.Millisecond) {
		t.Fatalf("in debt: ok %v, retry after %v; want refused, 100ms", ok, wait)
	}
	if ok, _ := tb.Take("b", 1); !ok {
		t.Fatal("another key shares the first key's bucket")
	}
	c.advance(100 * time.Millisecond)
	if ok, _ := tb.Take("a", 1); !ok {
		t.Fatal("refused after the debt was paid")
	}
}

func TestLargerThanBurst(t *testing.T) {
	c := newClock()
	tb := New(Limit{Rate: 1 << 20, Burst: 4 << 20}, 0, c.now)
	// One 16 MiB body passes, then the key waits 12 s.
	if ok, _ := tb.Take("peer", 16<<20); !ok {
		t.Fatal("a body larger than the burst was refused outright")
	}
	ok, wait := tb.Take("peer", 1)
	if ok || !near(wait, 12*time.Second) {
		t.Fatalf("ok %v, retry after %v; want refused, 12s", ok, wait)
	}
	tb.Charge("peer", 1<<20)
	if _, wait := tb.Take("peer", 1); !near(wait, 13*time.Second) {
		t.Fatalf("after a charge: retry after %v, want 13s", wait)
	}
}

// TestRateHolds: whatever the pattern of requests, what a key is granted
// over a period never exceeds the burst plus the rate times the period
// plus one request's size.
func TestRateHolds(t *testing.T) {
	for seed := range 20 {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 1))
			c := newClock()
			lim := Limit{Rate: 100, Burst: 50}
			tb := New(lim, 0, c.now)
			start, granted, largest := c.t, 0.0, 0.0
			for range 5000 {
				c.advance(time.Duration(rng.IntN(20)) * time.Millisecond)
				n := float64(1 + rng.IntN(30))
				if ok, _ := tb.Take("k", n); ok {
					granted += n
					largest = max(largest, n)
				}
			}
			if bound := lim.Burst + lim.Rate*seconds(c.t.Sub(start)) + largest; granted > bound {
				t.Fatalf("granted %.0f over %v, bound %.0f", granted, c.t.Sub(start), bound)
			}
		})
	}
}

func TestBoundedKeys(t *testing.T) {
	c := newClock()
	tb := New(Limit{Rate: 1, Burst: 10}, 100, c.now)
	for i := range 1000 {
		tb.Take(fmt.Sprint("k", i), 20) // every bucket ends in debt
	}
	if n := tb.Len(); n > 100 {
		t.Fatalf("%d buckets held, bound 100", n)
	}
	// A bucket in debt that was evicted starts full again: the bound is
	// on memory, not on the rate of a key that stays.
	tb.Take("stay", 20)
	for i := range 50 {
		tb.Take(fmt.Sprint("x", i), 1)
	}
	if _, ok := tb.buckets["stay"]; ok && tb.tokens("stay") > 0 {
		t.Fatal("a key in debt was given tokens")
	}
}

func TestUnlimited(t *testing.T) {
	var nilTable *Table
	if ok, _ := nilTable.Take("a", 1e9); !ok {
		t.Fatal("a nil table refused")
	}
	tb := New(Limit{}, 0, nil)
	for range 1000 {
		if ok, _ := tb.Take("a", 1e9); !ok {
			t.Fatal("a table without a rate refused")
		}
	}
}

// TestStrictKeepsSpentKeys: a strict table counts whole tokens, and a
// flood of new keys cannot make it forget a key that spent its budget
// (that would hand the spender a fresh one); it refuses the new keys
// instead, until buckets refilled.
func TestStrictKeepsSpentKeys(t *testing.T) {
	c := newClock()
	tb := NewStrict(Limit{Rate: 0.1, Burst: 2}, 3, c.now)
	for i := range 2 {
		if ok, _ := tb.Allow("victim"); !ok {
			t.Fatalf("attempt %d of the burst refused", i)
		}
	}
	if ok, wait := tb.Allow("victim"); ok || !near(wait, 10*time.Second) {
		t.Fatalf("a third attempt: %v, wait %s; want refused, 10s", ok, wait)
	}
	refused := 0
	for i := range 100 {
		if ok, _ := tb.Allow(fmt.Sprint("flood", i)); !ok {
			refused++
		}
	}
	if refused != 98 || tb.Len() != 3 {
		t.Fatalf("the flood: %d of 100 new keys refused, %d buckets; want 98 refused, 3 buckets", refused, tb.Len())
	}
	if ok, _ := tb.Allow("victim"); ok {
		t.Fatal("the spent key got a fresh budget during the flood")
	}
	// Once every bucket refilled (and a second passed since the last
	// look), new keys fit again.
	c.advance(time.Minute)
	if ok, _ := tb.Allow("late"); !ok {
		t.Fatal("a new key refused after the table refilled")
	}
}
