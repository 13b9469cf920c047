package check

import (
	"maps"
	"slices"

	"github.com/mimihub/mimi-hub/jepsen/internal/history"
)

// KeyPackages reports KeyPackages handed out by more than one claim (a
// last-resort KeyPackage may be, and is skipped) and KeyPackages handed out
// that no client uploaded.
func KeyPackages(snap *history.Snapshot) []Anomaly {
	uploaded := map[string]history.Uploaded{}
	for _, u := range snap.Uploaded {
		uploaded[u.Ref] = u
	}
	claims := map[string][]int{}
	var anomalies []Anomaly
	for _, o := range snap.Ops {
		if o.Kind != history.KindClaim || o.Result != history.OK {
			continue
		}
		for _, ref := range o.KeyPackageRefs {
			u, ok := uploaded[ref]
			if !ok {
				anomalies = append(anomalies, anomaly(UnknownKeyPackage, "", []int{o.ID},
					"claim for %s got KeyPackage %s, which no client uploaded", o.User, short(ref)))
				continue
			}
			if u.LastResort || o.LastResort {
				continue
			}
			claims[ref] = append(claims[ref], o.ID)
		}
	}
	for _, ref := range slices.Sorted(maps.Keys(claims)) {
		ids := claims[ref]
		if len(ids) > 1 {
			u := uploaded[ref]
			anomalies = append(anomalies, anomaly(DuplicateKeyPackage, "", ids,
				"KeyPackage %s of %s was handed out %d times", short(ref), u.Client, len(ids)))
		}
	}
	return anomalies
}
