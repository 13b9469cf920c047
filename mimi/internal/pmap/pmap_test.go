package pmap

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// check verifies the AVL invariants and the sizes of every subtree.
func check[K interface{ ~int | ~string }, V any](t *testing.T, n *node[K, V]) (h int8, s int32) {
	t.Helper()
	if n == nil {
		return 0, 0
	}
	hl, sl := check(t, n.left)
	hr, sr := check(t, n.right)
	if n.left != nil && n.left.key >= n.key || n.right != nil && n.right.key <= n.key {
		t.Fatalf("node %v out of order", n.key)
	}
	if hl-hr > 1 || hr-hl > 1 {
		t.Fatalf("node %v unbalanced: %d vs %d", n.key, hl, hr)
	}
	if n.height != max(hl, hr)+1 || n.size != sl+sr+1 {
		t.Fatalf("node %v: height %d size %d, want %d %d", n.key, n.height, n.size, max(hl, hr)+1, sl+sr+1)
	}
	return n.height, n.size
}

// TestModel plays random sets and deletes against a Go map, keeping every
// earlier version and checking it never changes (persistence).
func TestModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var m Map[int, int]
	model := map[int]int{}
	type version struct {
		m     Map[int, int]
		model map[int]int
	}
	var versions []version
	for step := range 20000 {
		k := rng.IntN(2000)
		if rng.IntN(3) == 0 {
			m = m.Delete(k)
			delete(model, k)
		} else {
			m = m.Set(k, step)
			model[k] = step
		}
		if step%997 == 0 {
			versions = append(versions, version{m, maps.Clone(model)})
		}
	}
	versions = append(versions, version{m, model})
	for i, v := range versions {
		check(t, v.m.root)
		if v.m.Len() != len(v.model) {
			t.Fatalf("version %d: len %d, want %d", i, v.m.Len(), len(v.model))
		}
		var keys []int
		for k, val := range v.m.All() {
			keys = append(keys, k)
			if v.model[k] != val {
				t.Fatalf("version %d: %d = %d, want %d", i, k, val, v.model[k])
			}
		}
		if !slices.Equal(keys, slices.Sorted(maps.Keys(v.model))) {
			t.Fatalf("version %d: keys out of order or missing", i)
		}
		for k := range 2000 {
			got, ok := v.m.Get(k)
			want, wok := v.model[k]
			if ok != wok || got != want {
				t.Fatalf("version %d: Get(%d) = %d %v, want %d %v", i, k, got, ok, want, wok)
			}
		}
		from := i * 97 % 2000
		var after []int
		for k := range v.m.After(from) {
			after = append(after, k)
		}
		var wantAfter []int
		for _, k := range slices.Sorted(maps.Keys(v.model)) {
			if k > from {
				wantAfter = append(wantAfter, k)
			}
		}
		if !slices.Equal(after, wantAfter) {
			t.Fatalf("version %d: After(%d) = %v, want %v", i, from, after, wantAfter)
		}
		if k, _, ok := v.m.Max(); ok != (len(v.model) > 0) || ok && k != slices.Max(slices.Collect(maps.Keys(v.model))) {
			t.Fatalf("version %d: Max = %d %v", i, k, ok)
		}
		if k, _, ok := v.m.Min(); ok != (len(v.model) > 0) || ok && k != slices.Min(slices.Collect(maps.Keys(v.model))) {
			t.Fatalf("version %d: Min = %d %v", i, k, ok)
		}
	}
}

// TestAllStopsEarly: a range loop that breaks stops the walk.
func TestAllStopsEarly(t *testing.T) {
	var m Map[string, bool]
	for _, k := range []string{"d", "b", "a", "c", "e"} {
		m = m.Set(k, true)
	}
	var seen []string
	for k := range m.All() {
		seen = append(seen, k)
		if k == "c" {
			break
		}
	}
	if !slices.Equal(seen, []string{"a", "b", "c"}) {
		t.Fatalf("seen %v", seen)
	}
	if m.Delete("zz") != m {
		t.Fatal("deleting an absent key made a new map")
	}
}

// BenchmarkSet measures an insert into a map of 100,000 entries, the size
// of the largest rooms' participant lists.
func BenchmarkSet(b *testing.B) {
	var m Map[int, int]
	for i := range 100_000 {
		m = m.Set(i*2, i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		_ = m.Set(i%200_000|1, i)
	}
}
