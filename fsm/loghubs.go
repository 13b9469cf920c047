package fsm

import "container/heap"

// The provider-wide cap on room logs (Retention.TotalBytes) trims the hub
// whose rooms hold the most bytes first, its oldest message first. Oldest
// first across all rooms would let one hub that floods rooms local clients
// follow (a hostile peer's public rooms, or rooms it welcomed them into)
// push out every other room's unread messages; this way a hub holding
// less than the one holding the most loses nothing to the cap.

// hubLogs is the non-empty room logs of one hub's rooms.
type hubLogs struct {
	hub       string
	bytes     int64                  // its logs' bytes, as last placed
	streams   indexHeap[*roomStream] // oldest entry first
	heapIndex int                    // position in logIndex.hubs
}

// logIndex orders the non-empty room logs for the cap: by hub, most bytes
// first (then by domain: no ties, so every replica trims the same), and
// within a hub by oldest entry. Derived state, rebuilt on restore.
//
// Before level 2 (levels.go) every log is in one group, so the cap drops
// the oldest message of any room, as entries logged then were applied.
type logIndex struct {
	byHub map[string]*hubLogs
	hubs  indexHeap[*hubLogs]
	// perHub groups the logs by hub (level 2 on); else one group.
	perHub bool
}

// groupOf is the group st's log is ordered in.
func (x *logIndex) groupOf(st *roomStream) string {
	if x.perHub {
		return st.hub
	}
	return ""
}

func newLogIndex() logIndex {
	return logIndex{
		byHub: map[string]*hubLogs{},
		hubs: indexHeap[*hubLogs]{
			less: func(a, b *hubLogs) bool { return a.bytes > b.bytes || a.bytes == b.bytes && a.hub < b.hub },
			pos:  func(g *hubLogs) *int { return &g.heapIndex },
			in:   func(g *hubLogs) bool { return g.streams.Len() > 0 },
		},
	}
}

// place puts st where it belongs after its log changed; every change of a
// log is placed before the cap is applied.
func (x *logIndex) place(st *roomStream) {
	hub := x.groupOf(st)
	g := x.byHub[hub]
	if g == nil {
		if len(st.log.q.items) == 0 {
			return
		}
		g = &hubLogs{hub: hub, streams: newLogHeap(), heapIndex: -1}
		x.byHub[hub] = g
	}
	g.bytes += st.log.bytes - st.placed
	st.placed = st.log.bytes
	g.streams.reposition(st)
	x.hubs.reposition(g)
	if g.streams.Len() == 0 {
		delete(x.byHub, hub)
	}
}

// Len is the number of hubs with a non-empty log.
func (x *logIndex) Len() int { return x.hubs.Len() }

// top returns the oldest log of the hub holding the most; x must not be
// empty.
func (x *logIndex) top() *roomStream { return x.hubs.top().streams.top() }

// hold takes the hub holding the most out of the order, so that the next
// one is trimmed; unhold puts it back. x must not be empty.
func (x *logIndex) hold() *hubLogs {
	g := x.hubs.top()
	heap.Remove(&x.hubs, 0)
	return g
}

func (x *logIndex) unhold(g *hubLogs) { x.hubs.reposition(g) }

// rebuild places every stream of all afresh.
func (x *logIndex) rebuild(all []*roomStream) {
	perHub := x.perHub
	*x = newLogIndex()
	x.perHub = perHub
	for _, st := range all {
		st.heapIndex, st.placed = -1, 0
		x.place(st)
	}
}
