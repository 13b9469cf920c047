package check

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/mimihub/mimi-hub/jepsen/internal/history"
)

// How an unknown outcome was resolved (history.Op.Resolved).
const (
	ResolvedHappened    = "happened"
	ResolvedNotHappened = "not-happened"
)

// FinalStates returns each room's final state as the nodes agree on it,
// and an anomaly per room whose nodes disagree (then the most common state
// is returned, the higher epoch on a tie). Nodes that could not answer are
// ignored.
func FinalStates(finals []history.Final) (map[string]RoomState, []Anomaly) {
	byRoom := map[string]map[RoomState][]string{}
	for _, f := range finals {
		if f.Error != "" {
			continue
		}
		m := byRoom[f.Room]
		if m == nil {
			m = map[RoomState][]string{}
			byRoom[f.Room] = m
		}
		s := RoomState{Epoch: f.Epoch, Hash: f.Hash}
		m[s] = append(m[s], f.Node)
	}
	out := map[string]RoomState{}
	var anomalies []Anomaly
	for _, room := range slices.Sorted(maps.Keys(byRoom)) {
		m := byRoom[room]
		states := slices.SortedFunc(maps.Keys(m), func(a, b RoomState) int {
			if c := cmp.Compare(len(m[b]), len(m[a])); c != 0 {
				return c
			}
			if c := cmp.Compare(b.Epoch, a.Epoch); c != 0 {
				return c
			}
			return cmp.Compare(a.Hash, b.Hash)
		})
		out[room] = states[0]
		if len(states) > 1 {
			desc := ""
			for i, s := range states {
				if i > 0 {
					desc += "; "
				}
				desc += fmt.Sprintf("%v on %v", s, m[s])
			}
			anomalies = append(anomalies, anomaly(NodesDiverge, room, nil, "nodes report different final states after healing: %s", desc))
		}
	}
	return out, anomalies
}

// confirmedChain is a room's commit chain as far as the final state
// confirms it: epoch -> hash.
type confirmedChain struct {
	links map[uint64]string
	// final is the room's final state; known is false when no node
	// reported one.
	final RoomState
	known bool
}

// confirm matches a followed chain against the final state: links beyond
// the final epoch are dropped (they were lost), a final state one epoch
// past the chain is explained by an operation built on the chain's head,
// and a final state that matches neither is an anomaly.
func confirm(c *history.Chain, final RoomState, known bool, ops []history.Op) (confirmedChain, []Anomaly) {
	cc := confirmedChain{links: map[uint64]string{}, final: final, known: known}
	for _, l := range c.Links {
		if _, dup := cc.links[l.Epoch]; !dup {
			cc.links[l.Epoch] = l.Hash
		}
	}
	if !known || len(c.Links) == 0 {
		return cc, nil
	}
	head := c.Head()
	switch {
	case final.Epoch < head.Epoch:
		for e := range cc.links {
			if e > final.Epoch {
				delete(cc.links, e)
			}
		}
	case final.Epoch == head.Epoch+1:
		i := slices.IndexFunc(ops, func(o history.Op) bool {
			return o.Kind == history.KindCommit && o.Epoch == head.Epoch && o.Parent == head.Hash && o.Hash == final.Hash
		})
		if i < 0 {
			return cc, []Anomaly{anomaly(FinalStateMismatch, c.Room, nil,
				"the final state %v is one epoch past the chain the clients followed (head %v), but no commit built on that head produces it", final, RoomState(head))}
		}
		cc.links[final.Epoch] = final.Hash
	case final.Epoch > head.Epoch+1:
		if c.Abandoned != "" {
			return cc, nil
		}
		return cc, []Anomaly{anomaly(FinalStateMismatch, c.Room, nil,
			"the final state %v is %d epochs past the chain the clients followed (head %v)", final, final.Epoch-head.Epoch, RoomState(head))}
	}
	if h, ok := cc.links[final.Epoch]; ok && h != final.Hash {
		return cc, []Anomaly{anomaly(FinalStateMismatch, c.Room, nil,
			"the final state %v differs from the chain the clients followed at that epoch (%s): the room's history diverged from what was acknowledged", final, short(h))}
	}
	return cc, nil
}

// Commits resolves unknown commits from the final state (setting
// Op.Resolved in ops, which it modifies) and reports forks, lost
// acknowledged commits, refused commits that took effect, nodes that
// disagree and final states that match no chain.
func Commits(snap *history.Snapshot) []Anomaly {
	finals, anomalies := FinalStates(snap.Finals)
	byRoom := map[string][]int{}
	for i, o := range snap.Ops {
		if o.Kind == history.KindCommit {
			byRoom[o.Room] = append(byRoom[o.Room], i)
		}
	}
	for ci := range snap.Chains {
		c := &snap.Chains[ci]
		idx := byRoom[c.Room]
		ops := make([]history.Op, len(idx))
		for i, j := range idx {
			ops[i] = snap.Ops[j]
		}
		final, known := finals[c.Room]
		cc, as := confirm(c, final, known, ops)
		anomalies = append(anomalies, as...)

		// Forks: two different accepted commits for one epoch.
		accepted := map[uint64]map[string][]int{}
		for _, o := range ops {
			if o.Result != history.OK {
				continue
			}
			if accepted[o.Epoch] == nil {
				accepted[o.Epoch] = map[string][]int{}
			}
			accepted[o.Epoch][o.Hash] = append(accepted[o.Epoch][o.Hash], o.ID)
		}
		forked := map[uint64]bool{}
		for _, e := range slices.Sorted(maps.Keys(accepted)) {
			if len(accepted[e]) < 2 {
				continue
			}
			forked[e] = true
			var ids []int
			for _, h := range slices.Sorted(maps.Keys(accepted[e])) {
				ids = append(ids, accepted[e][h]...)
			}
			slices.Sort(ids)
			anomalies = append(anomalies, anomaly(ForkedEpoch, c.Room, ids,
				"%d different commits were accepted for epoch %d", len(accepted[e]), e))
		}

		if !cc.known {
			continue
		}
		for _, j := range idx {
			o := &snap.Ops[j]
			next, have := cc.links[o.Epoch+1]
			switch o.Result {
			case history.OK:
				if forked[o.Epoch] || (have && next == o.Hash) {
					continue
				}
				anomalies = append(anomalies, anomaly(LostCommit, c.Room, []int{o.ID},
					"the commit accepted for epoch %d (producing %s) is not in the final state %v", o.Epoch, short(o.Hash), cc.final))
			case history.Unknown:
				switch {
				case have && next == o.Hash:
					o.Resolved = ResolvedHappened
				case have:
					o.Resolved = ResolvedNotHappened
				case cc.final.Epoch == o.Epoch && cc.final.Hash == o.Parent:
					o.Resolved = ResolvedNotHappened
				}
			case history.Fail:
				if have && next == o.Hash {
					anomalies = append(anomalies, anomaly(RefusedCommitApplied, c.Room, []int{o.ID},
						"the commit refused (%s) for epoch %d is in the final state", o.Code, o.Epoch))
				}
			}
		}
	}
	return anomalies
}
