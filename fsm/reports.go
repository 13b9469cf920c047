package fsm

import (
	"slices"

	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
)

// maxReportBytes bounds the abuse reports kept by the size of their
// bodies, as Config.ReportLimit bounds their number: a report may be as
// large as a request (1 MiB), and 10,000 of them would keep 10 GB.
const maxReportBytes = 64 << 20

// keepReport stores an abuse report. Past ReportLimit or maxReportBytes
// the reporting provider whose reports weigh the most (the greatest
// domain among equals), and within it the reporting user whose reports
// weigh the most (the greatest URI among equals), loses its oldest, never
// the report just stored: a peer sending reports at its request budget
// cannot push out the reports of other providers' users, nor a user
// flooding from any provider those of others.
//
// Before level 2 (levels.go) only the number was bounded, oldest first.
func (s *State) keepReport(rep room.Report) {
	s.reports.push(rep)
	if !s.rulesAt(rulesHostileInputs) {
		s.reports.drop(len(s.reports.items) - s.cfg.ReportLimit)
		return
	}
	total := s.reportBytes()
	for len(s.reports.items) > 1 && (len(s.reports.items) > s.cfg.ReportLimit || total > maxReportBytes) {
		dropped, ok := s.dropReport(s.heaviestReporter())
		if !ok {
			return
		}
		total -= dropped
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

// heaviestReporter returns the reporting user whose kept reports, but
// for the newest report, weigh the most among those of the provider whose
// kept reports weigh the most.
func (s *State) heaviestReporter() proto.URI {
	items := s.reports.items[:len(s.reports.items)-1]
	perDomain := map[string]int64{}
	for i := range items {
		perDomain[reporterOf(&items[i])] += reportWeight(&items[i])
	}
	domain := heaviest(perDomain)
	perUser := map[proto.URI]int64{}
	for i := range items {
		if reporterOf(&items[i]) == domain {
			perUser[items[i].Body.ReportingUser] += reportWeight(&items[i])
		}
	}
	return heaviest(perUser)
}

// heaviest returns the key with the greatest weight, the greatest key
// among equals: the order the map is ranged in cannot show.
func heaviest[K ~string](weights map[K]int64) K {
	var top K
	var most int64 = -1
	for k, n := range weights {
		if n > most || n == most && k > top {
			top, most = k, n
		}
	}
	return top
}

// dropReport drops the oldest report of user (never the newest report)
// and returns its weight, or false when user has none. The list is
// copied, never edited in place: a snapshot may hold it.
func (s *State) dropReport(user proto.URI) (int64, bool) {
	items := s.reports.items
	i := slices.IndexFunc(items[:len(items)-1], func(r room.Report) bool { return r.Body.ReportingUser == user })
	if i < 0 {
		return 0, false
	}
	w := reportWeight(&items[i])
	if i == 0 {
		s.reports.drop(1)
	} else {
		s.reports.items, s.reports.dropped = slices.Concat(items[:i], items[i+1:]), 0
	}
	return w, true
}
