package nemesis

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
)

// Grudge says, for each node, the nodes it cannot exchange packets with.
// It is symmetric.
type Grudge map[string][]string

// Components returns the grudge that splits nodes into the given sides:
// every node refuses every node outside its own side.
func Components(sides ...[]string) Grudge {
	g := Grudge{}
	for i, side := range sides {
		for _, n := range side {
			for j, other := range sides {
				if i != j {
					g[n] = append(g[n], other...)
				}
			}
		}
	}
	g.normalize()
	return g
}

func (g Grudge) normalize() {
	for n, v := range g {
		slices.Sort(v)
		g[n] = slices.Compact(v)
		if len(g[n]) == 0 {
			delete(g, n)
		}
	}
}

// String renders the grudge as "a-x,y; b-z".
func (g Grudge) String() string {
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(g)) {
		parts = append(parts, n+"-"+strings.Join(g[n], ","))
	}
	return strings.Join(parts, "; ")
}

// MajorityMinority splits shuffled nodes into a minority (the first
// floor(n/2)) and a majority.
func MajorityMinority(nodes []string, r *rand.Rand) (Grudge, string) {
	s := shuffled(nodes, r)
	k := len(s) / 2
	minority, majority := s[:k], s[k:]
	return Components(minority, majority), fmt.Sprintf("minority %v | majority %v", minority, majority)
}

// IsolateNode cuts one node (the leader, for the isolated-leader split)
// off from all others.
func IsolateNode(nodes []string, alone string) (Grudge, string) {
	rest := slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return n == alone })
	return Components([]string{alone}, rest), fmt.Sprintf("isolated %s | %v", alone, rest)
}

// Bridge splits shuffled nodes into two halves that cannot talk to each
// other but both talk to one middle node (Jepsen's bridge): with 5 nodes,
// {a b} - c - {d e}. Each half alone is a minority; the middle node makes
// either one a majority.
func Bridge(nodes []string, r *rand.Rand) (Grudge, string) {
	s := shuffled(nodes, r)
	if len(s) < 3 {
		return MajorityMinority(nodes, r)
	}
	k := (len(s) - 1) / 2
	left, middle, right := s[:k], s[k], s[k+1:]
	g := Grudge{}
	for _, a := range left {
		g[a] = append(g[a], right...)
	}
	for _, b := range right {
		g[b] = append(g[b], left...)
	}
	g.normalize()
	return g, fmt.Sprintf("bridge %v - %s - %v", left, middle, right)
}

func shuffled(nodes []string, r *rand.Rand) []string {
	s := slices.Clone(nodes)
	slices.Sort(s)
	r.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s
}

// Minority picks a random non-empty minority of nodes (at most
// (n-1)/2, at least one).
func Minority(nodes []string, r *rand.Rand) []string {
	s := shuffled(nodes, r)
	k := max(1, 1+r.IntN(max(1, (len(s)-1)/2)))
	return s[:min(k, len(s))]
}
