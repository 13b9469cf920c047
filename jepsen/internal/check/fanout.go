package check

import (
	"cmp"
	"maps"
	"slices"

	"github.com/mimihub/mimi-hub/jepsen/internal/history"
)

// Effective is one message as it took effect at the follower.
type Effective struct {
	Seq uint64
	history.Message
	// Delivery is the index of the delivery that carried it first.
	Delivery int
}

// EffectiveStream applies the follower provider's rule to a room's fanout
// deliveries, in the order they arrived: a message whose sequence number is
// not above the last one taken is a redelivery and is skipped. It returns
// the messages that took effect, in order, and anomalies: a redelivery
// whose message differs from the one that took effect under its number
// (conflicting), and a sequence number that jumps (a gap: the skipped
// numbers never take effect).
func EffectiveStream(room string, deliveries []history.Delivery) ([]Effective, []Anomaly) {
	var eff []Effective
	bySeq := map[uint64]string{}
	var last uint64
	var anomalies []Anomaly
	for di, d := range deliveries {
		if d.Room != room || d.Status/100 != 2 {
			continue
		}
		for i, m := range d.Messages {
			seq := d.FirstSeq + uint64(i)
			if seq <= last {
				if prev, ok := bySeq[seq]; ok && prev != m.Digest {
					anomalies = append(anomalies, anomaly(ConflictingFanout, room, nil,
						"sequence number %d was delivered as %s and again as %s (delivery %d)", seq, short(prev), short(m.Digest), di))
				}
				continue
			}
			if last > 0 && seq > last+1 {
				anomalies = append(anomalies, anomaly(MissingFanout, room, nil,
					"the follower's sequence jumps from %d to %d: messages %d..%d never take effect there", last, seq, last+1, seq-1))
			}
			eff = append(eff, Effective{Seq: seq, Message: m, Delivery: di})
			bySeq[seq] = m.Digest
			last = seq
		}
	}
	return eff, anomalies
}

// Fanout checks every room with application messages: each accepted
// message is in the hub's order (as a local observer read it) and took
// effect at the follower exactly once, the follower's order matches the
// hub's and real time, and no refused message was delivered. Unknown
// sends are resolved (Op.Resolved in ops, which it modifies): a message
// found in either order happened; one found in neither did not.
func Fanout(snap *history.Snapshot) []Anomaly {
	rooms := map[string][]int{}
	for i, o := range snap.Ops {
		if o.Kind == history.KindSend {
			rooms[o.Room] = append(rooms[o.Room], i)
		}
	}
	var anomalies []Anomaly
	for _, room := range slices.Sorted(maps.Keys(rooms)) {
		anomalies = append(anomalies, fanoutRoom(snap, room, rooms[room])...)
	}
	return anomalies
}

func fanoutRoom(snap *history.Snapshot, room string, idx []int) []Anomaly {
	eff, anomalies := EffectiveStream(room, snap.Deliveries)
	effSeqs := map[string][]uint64{}
	for _, e := range eff {
		effSeqs[e.Digest] = append(effSeqs[e.Digest], e.Seq)
	}
	for _, d := range slices.Sorted(maps.Keys(effSeqs)) {
		if seqs := effSeqs[d]; len(seqs) > 1 {
			anomalies = append(anomalies, anomaly(DuplicateFanout, room, nil,
				"message %s took effect %d times at the follower, at sequence numbers %v", short(d), len(seqs), seqs))
		}
	}

	// The hub's order, as the local observer read it.
	hubSeq := map[string]uint64{}
	hubAt := map[uint64]string{}
	var hubMax uint64
	for _, o := range snap.Observed {
		if o.Room != room {
			continue
		}
		if _, dup := hubSeq[o.Digest]; !dup {
			hubSeq[o.Digest] = o.HubSeq
		}
		hubAt[o.HubSeq] = o.Digest
		hubMax = max(hubMax, o.HubSeq)
	}
	haveHub := len(hubAt) > 0
	var effFirst, effLast uint64
	if len(eff) > 0 {
		effFirst, effLast = eff[0].Seq, eff[len(eff)-1].Seq
	}
	if haveHub {
		for _, e := range eff {
			if d, ok := hubAt[e.Seq]; ok && d != e.Digest {
				anomalies = append(anomalies, anomaly(ReorderedFanout, room, nil,
					"the follower took %s (%s) as message %d, the hub's order has %s there", short(e.Digest), e.Kind, e.Seq, short(d)))
			}
		}
		if len(eff) > 0 && hubMax > effLast {
			anomalies = append(anomalies, anomaly(MissingFanout, room, nil,
				"the hub's order goes up to message %d, the follower stopped at %d", hubMax, effLast))
		}
	}

	seqOf := func(digest string) (uint64, bool) {
		if s, ok := hubSeq[digest]; ok {
			return s, true
		}
		if s, ok := effSeqs[digest]; ok {
			return s[0], true
		}
		return 0, false
	}
	var ordered []history.Op // accepted (or happened) sends with a position
	for _, i := range idx {
		o := &snap.Ops[i]
		_, inHub := hubSeq[o.Digest]
		_, inEff := effSeqs[o.Digest]
		switch o.Result {
		case history.OK:
			if haveHub && !inHub {
				anomalies = append(anomalies, anomaly(LostMessage, room, []int{o.ID},
					"the accepted message %s from %s is not in the hub's order", short(o.Digest), o.Sender))
			}
			// A message ordered before the follower's first one was sent
			// before the follower joined.
			if s, ok := hubSeq[o.Digest]; !inEff && !(ok && len(eff) > 0 && s < effFirst) {
				anomalies = append(anomalies, anomaly(MissingFanout, room, []int{o.ID},
					"the accepted message %s from %s never took effect at the follower", short(o.Digest), o.Sender))
			}
		case history.Unknown:
			switch {
			case inHub || inEff:
				o.Resolved = ResolvedHappened
			case haveHub || len(eff) > 0:
				o.Resolved = ResolvedNotHappened
			}
		case history.Fail:
			if inHub || inEff {
				anomalies = append(anomalies, anomaly(RefusedMessageDelivered, room, []int{o.ID},
					"the refused message %s (%s) was delivered", short(o.Digest), o.Code))
			}
		}
		if _, ok := seqOf(o.Digest); ok && (o.Result == history.OK || o.Resolved == ResolvedHappened) {
			ordered = append(ordered, *o)
		}
	}
	return append(anomalies, realTimeOrder(room, ordered, seqOf)...)
}

// realTimeOrder reports pairs of sends where A was acknowledged before B
// was sent, yet B has the lower position: an order no hub may produce.
// One anomaly per late send, naming the earliest-acknowledged offender.
func realTimeOrder(room string, ops []history.Op, seqOf func(string) (uint64, bool)) []Anomaly {
	byReturn := slices.Clone(ops)
	byReturn = slices.DeleteFunc(byReturn, func(o history.Op) bool { return o.Result != history.OK })
	slices.SortFunc(byReturn, func(a, b history.Op) int { return cmp.Compare(a.Return, b.Return) })
	byCall := slices.Clone(ops)
	slices.SortFunc(byCall, func(a, b history.Op) int { return cmp.Compare(a.Call, b.Call) })
	var anomalies []Anomaly
	j := 0
	var maxSeq uint64
	maxOp, maxDigest := -1, ""
	for _, b := range byCall {
		for j < len(byReturn) && byReturn[j].Return < b.Call {
			if s, _ := seqOf(byReturn[j].Digest); maxOp < 0 || s > maxSeq {
				maxSeq, maxOp, maxDigest = s, byReturn[j].ID, byReturn[j].Digest
			}
			j++
		}
		sb, _ := seqOf(b.Digest)
		if maxOp >= 0 && sb < maxSeq {
			anomalies = append(anomalies, anomaly(ReorderedFanout, room, []int{maxOp, b.ID},
				"message %s (op %d) was accepted before message %s (op %d) was sent, yet comes later in hub order (%d > %d)",
				short(maxDigest), maxOp, short(b.Digest), b.ID, maxSeq, sb))
		}
	}
	return anomalies
}
