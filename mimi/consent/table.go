package consent

import (
	"cmp"
	"maps"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/proto"
)

// anyRoom is the scope key of records about any room; room records use the
// room's URI, which is never empty.
const anyRoom proto.URI = ""

// scopeOf returns the scope key of an optional room.
func scopeOf(room *proto.URI) proto.URI {
	if room == nil {
		return anyRoom
	}
	return *room
}

// roomOf returns the optional room of a scope key.
func roomOf(scope proto.URI) *proto.URI {
	if scope == anyRoom {
		return nil
	}
	return &scope
}

// table holds records by (owner, other, scope): owner is the local user the
// record belongs to, other the user on the other side, scope anyRoom or a
// room URI. It keeps the number of records per owner and per remote domain
// of other, so bounds are checked without scanning.
type table[V any] struct {
	domain string // the book's domain: others of this domain are not peers
	rows   map[proto.URI]map[proto.URI]map[proto.URI]V
	counts map[proto.URI]int // records per owner
	peers  map[string]int    // records per remote domain of other
	// size, when set, weighs a record's value; bytes sums the weights
	// per remote domain of other, and weights per other, so bounds on
	// them are checked without scanning.
	size    func(V) int64
	bytes   map[string]int64
	weights map[proto.URI]int64
}

func newTable[V any](domain string) table[V] {
	return table[V]{
		domain:  domain,
		rows:    make(map[proto.URI]map[proto.URI]map[proto.URI]V),
		counts:  make(map[proto.URI]int),
		peers:   make(map[string]int),
		bytes:   make(map[string]int64),
		weights: make(map[proto.URI]int64),
	}
}

// newWeighedTable returns a table that weighs each record's value with
// size, per other and per other's remote domain.
func newWeighedTable[V any](domain string, size func(V) int64) table[V] {
	t := newTable[V](domain)
	t.size = size
	return t
}

// weigh adds delta times the weight of v to other's and to other's
// remote domain's.
func (t *table[V]) weigh(other proto.URI, v V, delta int64) {
	if t.size == nil {
		return
	}
	w := delta * t.size(v)
	if t.weights[other] += w; t.weights[other] == 0 {
		delete(t.weights, other)
	}
	if p := t.peerOf(other); p != "" {
		if t.bytes[p] += w; t.bytes[p] == 0 {
			delete(t.bytes, p)
		}
	}
}

// record is one table row, flattened.
type record[V any] struct {
	owner, other, scope proto.URI
	value               V
}

// compareKeys orders records by owner, other and scope (anyRoom first).
func compareKeys(a1, a2, a3, b1, b2, b3 proto.URI) int {
	return cmp.Or(cmp.Compare(a1, b1), cmp.Compare(a2, b2), cmp.Compare(a3, b3))
}

// peerOf returns the domain a record about other is counted against, or ""
// for local users. URIs in a table have been parsed already.
func (t *table[V]) peerOf(other proto.URI) string {
	d, _ := other.Domain()
	if d == t.domain {
		return ""
	}
	return d
}

// pair returns the records of (owner, other) by scope; callers must not
// modify it.
func (t *table[V]) pair(owner, other proto.URI) map[proto.URI]V {
	return t.rows[owner][other]
}

// get returns one record.
func (t *table[V]) get(owner, other, scope proto.URI) (V, bool) {
	v, ok := t.rows[owner][other][scope]
	return v, ok
}

// adjust changes the counters of owner and other's domain by delta.
func (t *table[V]) adjust(owner, other proto.URI, delta int) {
	if delta == 0 {
		return
	}
	if t.counts[owner] += delta; t.counts[owner] == 0 {
		delete(t.counts, owner)
	}
	if p := t.peerOf(other); p != "" {
		if t.peers[p] += delta; t.peers[p] == 0 {
			delete(t.peers, p)
		}
	}
}

// put sets one record.
func (t *table[V]) put(owner, other, scope proto.URI, v V) {
	byOther := t.rows[owner]
	if byOther == nil {
		byOther = make(map[proto.URI]map[proto.URI]V)
		t.rows[owner] = byOther
	}
	byScope := byOther[other]
	if byScope == nil {
		byScope = make(map[proto.URI]V)
		byOther[other] = byScope
	}
	if old, ok := byScope[scope]; !ok {
		t.adjust(owner, other, 1)
	} else {
		t.weigh(other, old, -1)
	}
	t.weigh(other, v, 1)
	byScope[scope] = v
}

// del removes one record, if present.
func (t *table[V]) del(owner, other, scope proto.URI) {
	byScope := t.rows[owner][other]
	old, ok := byScope[scope]
	if !ok {
		return
	}
	t.weigh(other, old, -1)
	delete(byScope, scope)
	t.adjust(owner, other, -1)
	if len(byScope) == 0 {
		t.dropPair(owner, other)
	}
}

// delPair removes every record of (owner, other).
func (t *table[V]) delPair(owner, other proto.URI) {
	if n := len(t.rows[owner][other]); n > 0 {
		for _, v := range t.rows[owner][other] {
			t.weigh(other, v, -1)
		}
		t.adjust(owner, other, -n)
		t.dropPair(owner, other)
	}
}

func (t *table[V]) dropPair(owner, other proto.URI) {
	delete(t.rows[owner], other)
	if len(t.rows[owner]) == 0 {
		delete(t.rows, owner)
	}
}

// displaceable returns the other holding the most records of owner (ties:
// the smallest URI, so every replica picks the same), if it holds more
// than newcomer; else "". A full table makes room for newcomer by
// dropping one of its records (dropOne), so a few others with many
// scopes each cannot keep everyone else out.
func (t *table[V]) displaceable(owner, newcomer proto.URI) proto.URI {
	var best proto.URI
	for o, byScope := range t.rows[owner] {
		if n, m := len(byScope), len(t.rows[owner][best]); best == "" || n > m || n == m && o < best {
			best = o
		}
	}
	if best == "" || len(t.rows[owner][best]) <= len(t.rows[owner][newcomer]) {
		return ""
	}
	return best
}

// dropOne removes the record of (owner, other) with the largest scope
// ("": nothing).
func (t *table[V]) dropOne(owner, other proto.URI) {
	if other == "" {
		return
	}
	scopes := slices.Sorted(maps.Keys(t.rows[owner][other]))
	if len(scopes) > 0 {
		t.del(owner, other, scopes[len(scopes)-1])
	}
}

// delUser removes every record whose owner or other is user. Only deletions
// happen while ranging over maps, so their order cannot show.
func (t *table[V]) delUser(user proto.URI) {
	for other := range t.rows[user] {
		t.delPair(user, other)
	}
	for owner := range t.rows {
		t.delPair(owner, user)
	}
}

// owned returns the records of owner sorted by other and scope.
func (t *table[V]) owned(owner proto.URI) []record[V] {
	var out []record[V]
	for other, byScope := range t.rows[owner] {
		for scope, v := range byScope {
			out = append(out, record[V]{owner, other, scope, v})
		}
	}
	sortRecords(out)
	return out
}

// all returns every record sorted by owner, other and scope.
func (t *table[V]) all() []record[V] {
	var out []record[V]
	for owner := range t.rows {
		for other, byScope := range t.rows[owner] {
			for scope, v := range byScope {
				out = append(out, record[V]{owner, other, scope, v})
			}
		}
	}
	sortRecords(out)
	return out
}

func sortRecords[V any](list []record[V]) {
	slices.SortFunc(list, func(a, b record[V]) int {
		return compareKeys(a.owner, a.other, a.scope, b.owner, b.other, b.scope)
	})
}
