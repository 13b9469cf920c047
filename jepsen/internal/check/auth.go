package check

import (
	"cmp"
	"maps"
	"slices"

	"github.com/mimihub/mimi-hub/jepsen/internal/history"
)

// unauthorized is the code of an answer that refused the token.
const unauthorized = "HTTP 401"

// Auth reports requests refused with 401 although the client's
// registration was acknowledged before they were sent: the node answered
// from a state that lacks an acknowledged write (tokens are never revoked
// in these workloads). One anomaly per client and node, with its
// operations.
func Auth(snap *history.Snapshot) []Anomaly {
	registered := map[string]int64{}
	for _, o := range snap.Ops {
		if o.Kind == history.KindRegister && o.Result == history.OK {
			registered[o.Client] = o.Return
		}
	}
	type key struct{ client, node string }
	stale := map[key][]int{}
	for _, o := range snap.Ops {
		if o.Code != unauthorized || o.As == "" {
			continue
		}
		if at, ok := registered[o.As]; ok && o.Call > at {
			k := key{o.As, o.Node}
			stale[k] = append(stale[k], o.ID)
		}
	}
	var anomalies []Anomaly
	for _, k := range slices.SortedFunc(maps.Keys(stale), func(a, b key) int {
		if c := cmp.Compare(a.client, b.client); c != 0 {
			return c
		}
		return cmp.Compare(a.node, b.node)
	}) {
		ids := stale[k]
		anomalies = append(anomalies, anomaly(StaleAuth, "", ids,
			"node %s refused the token of %s %d times after its registration was acknowledged", k.node, k.client, len(ids)))
	}
	return anomalies
}
