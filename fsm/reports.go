package fsm

import (
	"slices"

	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// keptReport is an abuse report the hub keeps, with its size: its
// encoding, the same on every replica however it got the report.
type keptReport struct {
	room.Report
	size int64
}

// restoreReport adds a report read from a snapshot, as kept.
func (s *State) restoreReport(rep room.Report) {
	k := keptReport{Report: rep, size: int64(len(wire.MustMarshal(rep.Body)))}
	s.reports.push(k)
	s.reportBytes += k.size
}

// keepReport adds an accepted report, then, while the table holds more
// than ReportLimit reports or maxReportBytes, drops the oldest report of
// the reporting user who holds the most bytes (then the most reports,
// then the oldest one). Any participant of any room may file reports, so
// dropping the oldest of all would let one user flush everyone else's;
// this way a flood displaces the flooder's own reports first.
func (s *State) keepReport(rep room.Report) {
	s.restoreReport(rep)
	if !s.auditRules() { // the oldest report goes, whoever made it
		for len(s.reports.items) > s.cfg.ReportLimit {
			s.reportBytes -= s.reports.items[0].size
			s.reports.drop(1)
		}
		return
	}
	for len(s.reports.items) > s.cfg.ReportLimit || s.reportBytes > maxReportBytes {
		i := s.largestReporterOldest()
		s.reportBytes -= s.reports.items[i].size
		if i == 0 {
			s.reports.drop(1)
		} else { // a new array: a snapshot being written may hold the old one
			s.reports.items = slices.Concat(s.reports.items[:i], s.reports.items[i+1:])
		}
	}
}

// largestReporterOldest returns the index of the oldest report of the
// reporting user holding the most report bytes (ties: the most reports,
// then the user whose oldest report is oldest).
func (s *State) largestReporterOldest() int {
	type holding struct {
		bytes  int64
		count  int
		oldest int
	}
	by := map[proto.URI]*holding{}
	for i := range s.reports.items {
		rep := &s.reports.items[i]
		h := by[rep.Body.ReportingUser]
		if h == nil {
			h = &holding{oldest: i}
			by[rep.Body.ReportingUser] = h
		}
		h.bytes += rep.size
		h.count++
	}
	var best *holding
	for _, h := range by {
		if best == nil || h.bytes > best.bytes || h.bytes == best.bytes && (h.count > best.count || h.count == best.count && h.oldest < best.oldest) {
			best = h
		}
	}
	return best.oldest
}
