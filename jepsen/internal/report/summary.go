package report

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mimihub/mimi-hub/jepsen/internal/check"
	"github.com/mimihub/mimi-hub/jepsen/internal/history"
	"github.com/mimihub/mimi-hub/jepsen/internal/nemesis"
)

// Run describes the run for the report.
type Run struct {
	ID       string        `json:"id"`
	Workload string        `json:"workload"`
	Nemesis  string        `json:"nemesis"`
	Nodes    int           `json:"nodes"`
	Duration time.Duration `json:"duration"`
	// Unsafe is set when the product was built without the epoch check.
	Unsafe bool `json:"unsafe,omitempty"`
	// Seed is the random seed of the schedule and the workloads.
	Seed uint64 `json:"seed"`
	// Elapsed is the whole run's wall time, setup and checks included.
	Elapsed time.Duration `json:"elapsed"`
	// Notes are remarks of the runner (skipped steps, setup problems).
	Notes []string `json:"notes,omitempty"`
}

// KindStats counts one kind of operation.
type KindStats struct {
	Kind    history.Kind `json:"kind"`
	Total   int          `json:"total"`
	OK      int          `json:"ok"`
	Fail    int          `json:"fail"`
	Unknown int          `json:"unknown"`
	// Happened and NotHappened count unknown outcomes the checkers
	// resolved.
	Happened    int `json:"happened"`
	NotHappened int `json:"not_happened"`
	// P50 and P99 are latencies of completed operations (ok or fail).
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
	// Codes counts failure and unknown codes.
	Codes map[string]int `json:"codes,omitempty"`
}

// Stats computes per-kind statistics, in a fixed kind order.
func Stats(ops []history.Op) []KindStats {
	by := map[history.Kind]*KindStats{}
	lat := map[history.Kind][]time.Duration{}
	for _, o := range ops {
		s := by[o.Kind]
		if s == nil {
			s = &KindStats{Kind: o.Kind, Codes: map[string]int{}}
			by[o.Kind] = s
		}
		s.Total++
		switch o.Result {
		case history.OK:
			s.OK++
		case history.Fail:
			s.Fail++
			s.Codes[codeOf(o)]++
		default:
			s.Unknown++
			s.Codes[codeOf(o)]++
			switch o.Resolved {
			case check.ResolvedHappened:
				s.Happened++
			case check.ResolvedNotHappened:
				s.NotHappened++
			}
		}
		if o.Result != history.Unknown && o.Return > 0 {
			lat[o.Kind] = append(lat[o.Kind], o.Latency())
		}
	}
	order := []history.Kind{history.KindCommit, history.KindRead, history.KindSend, history.KindUpload, history.KindClaim, history.KindRegister}
	for k := range by {
		if !slices.Contains(order, k) {
			order = append(order, k)
		}
	}
	var out []KindStats
	for _, k := range order {
		s := by[k]
		if s == nil {
			continue
		}
		l := lat[k]
		slices.Sort(l)
		s.P50, s.P99 = percentile(l, 0.50), percentile(l, 0.99)
		if len(s.Codes) == 0 {
			s.Codes = nil
		}
		out = append(out, *s)
	}
	return out
}

func codeOf(o history.Op) string {
	if o.Code != "" {
		return o.Code
	}
	return string(o.Result)
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

// maxListed bounds the anomalies the summary lists.
const maxListed = 20

// WriteSummary writes the ten-second table.
func WriteSummary(w io.Writer, run Run, stats []KindStats, res check.Result, windows []nemesis.Window) error {
	var b strings.Builder
	verdict := "VALID: no anomaly found"
	if !res.Valid {
		verdict = fmt.Sprintf("INVALID: %d anomalies", len(res.Anomalies))
	}
	unsafe := ""
	if run.Unsafe {
		unsafe = "  build=UNSAFE (no epoch check)"
	}
	fmt.Fprintf(&b, "mimi-hub jepsen run %s  workload=%s nemesis=%s nodes=%d time=%v seed=%d%s\n", run.ID, run.Workload, run.Nemesis, run.Nodes, run.Duration, run.Seed, unsafe)
	fmt.Fprintf(&b, "%s\n\n", verdict)

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\ttotal\tok\tfail\tunknown\tresolved happened/not\tp50\tp99\t")
	for _, s := range stats {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d/%d\t%v\t%v\t\n", s.Kind, s.Total, s.OK, s.Fail, s.Unknown, s.Happened, s.NotHappened, round(s.P50), round(s.P99))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range stats {
		if len(s.Codes) == 0 {
			continue
		}
		var parts []string
		for _, c := range slices.SortedFunc(maps.Keys(s.Codes), func(a, b string) int { return cmp.Compare(s.Codes[b], s.Codes[a]) }) {
			parts = append(parts, fmt.Sprintf("%s %d", c, s.Codes[c]))
		}
		fmt.Fprintf(&b, "  %s not ok: %s\n", s.Kind, strings.Join(parts, ", "))
	}

	faults := map[string]int{}
	failed := 0
	for _, w := range windows {
		if w.Error != "" && w.Start == w.End {
			failed++
			continue
		}
		faults[w.Kind]++
	}
	var fparts []string
	for _, k := range slices.Sorted(maps.Keys(faults)) {
		fparts = append(fparts, fmt.Sprintf("%s %d", k, faults[k]))
	}
	fmt.Fprintf(&b, "\nfaults: %d injected", len(windows)-failed)
	if len(fparts) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(fparts, ", "))
	}
	if failed > 0 {
		fmt.Fprintf(&b, ", %d failed to inject", failed)
	}
	b.WriteString("\n")
	listed := 0
	for _, w := range windows {
		if w.Result == "" && w.Error == "" {
			continue
		}
		if listed == maxListed {
			b.WriteString("  ... more in results.json\n")
			break
		}
		listed++
		at := round(time.Duration(w.Start))
		if w.Error != "" {
			fmt.Fprintf(&b, "  %s at %v: error: %s\n", w.Kind, at, w.Error)
		}
		if w.Result != "" {
			fmt.Fprintf(&b, "  %s at %v: %s\n", w.Kind, at, w.Result)
		}
	}

	verdicts := map[string]int{}
	for _, r := range res.Rooms {
		verdicts[r.Verdict]++
	}
	fmt.Fprintf(&b, "linearizability: %d rooms: %d ok, %d illegal, %d timeout\n", len(res.Rooms), verdicts[check.VerdictOK], verdicts[check.VerdictIllegal], verdicts[check.VerdictTimeout])

	fmt.Fprintf(&b, "anomalies: %d\n", len(res.Anomalies))
	for i, a := range res.Anomalies {
		if i == maxListed {
			fmt.Fprintf(&b, "  ... %d more in results.json\n", len(res.Anomalies)-maxListed)
			break
		}
		fmt.Fprintf(&b, "  - %s\n", a)
	}
	for _, n := range run.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	fmt.Fprintf(&b, "elapsed: %v\n", round(run.Elapsed))
	_, err := io.WriteString(w, b.String())
	return err
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
