package fsm

import (
	"slices"

	"github.com/mimihub/mimi-hub/mimi/room"
)

// maxReportBytes bounds the abuse reports kept by the size of their
// bodies, as Config.ReportLimit bounds their number: a report may be as
// large as a request (1 MiB), and 10,000 of them would keep 10 GB.
const maxReportBytes = 64 << 20

// keepReport stores an abuse report. Past ReportLimit or maxReportBytes
// the reporting provider whose reports weigh the most loses its oldest
// (the greatest domain among equals), never the report just stored: a
// peer sending reports at its request budget cannot push out the reports
// of other providers' users, nor those of this provider's own.
//
// Before level 2 (levels.go) only the number was bounded, oldest first.
func (s *State) keepReport(rep room.Report) {
	s.reports.push(rep)
	if !s.rulesAt(rulesHostileInputs) {
		s.reports.drop(len(s.reports.items) - s.cfg.ReportLimit)
		return
	}
	for len(s.reports.items) > 1 && (len(s.reports.items) > s.cfg.ReportLimit || s.reportBytes() > maxReportBytes) {
		s.dropReport(s.heaviestReporter())
	}
}

// reportBytes sums the kept reports' sizes.
func (s *State) reportBytes() int64 {
	var n int64
	for i := range s.reports.items {
		n += reportWeight(&s.reports.items[i])
	}
	return n
}

func reportWeight(r *room.Report) int64 { return int64(r.Size) + 64 }

func reporterOf(r *room.Report) string {
	d, _ := r.Body.ReportingUser.Domain()
	return d
}

// heaviestReporter returns the provider whose kept reports, but for the
// newest report, weigh the most.
func (s *State) heaviestReporter() string {
	items := s.reports.items
	per := map[string]int64{}
	for i := range items[:len(items)-1] {
		per[reporterOf(&items[i])] += reportWeight(&items[i])
	}
	var top string
	var most int64 = -1
	for d, n := range per {
		if n > most || n == most && d > top {
			top, most = d, n
		}
	}
	return top
}

// dropReport drops the oldest report of domain's users (never the newest
// report). The list is copied, never edited in place: a snapshot may hold
// it.
func (s *State) dropReport(domain string) {
	items := s.reports.items
	i := slices.IndexFunc(items[:len(items)-1], func(r room.Report) bool { return reporterOf(&r) == domain })
	switch {
	case i < 0:
		return
	case i == 0:
		s.reports.drop(1)
	default:
		s.reports.items, s.reports.dropped = slices.Concat(items[:i], items[i+1:]), 0
	}
}
