package main

import (
	"fmt"
	"html/template"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// printDrillReport writes the drill's report as text.
func printDrillReport(e *env, r *drillReport) error {
	w := e.stdout
	fmt.Fprintf(w, "drill %s: %d nodes, %s, one write per %s through each (room %s)\n\n", r.Run, len(r.Nodes), r.Duration.Round(time.Millisecond), r.Interval, r.Room)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSERVER\tWRITES\tACCEPTED\tFAILED\tP50\tP99\tMAX\tREADS\tREAD ERRORS\tMISSING")
	for i, n := range r.Nodes {
		missing := fmt.Sprint(n.Missing)
		if n.Missing < 0 {
			missing = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t%d\t%s\n", r.nodeName(i), n.Server, n.Writes, n.Accepted, n.Failed,
			roundDuration(n.P50), roundDuration(n.P99), roundDuration(n.Max), n.Reads, n.ReadErrs, missing)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Disruptions) > 0 {
		fmt.Fprintln(w, "\ndisruptions (time to the first accepted write through each node after it):")
		for _, d := range r.Disruptions {
			var parts []string
			for i, fa := range d.FirstAccepted {
				v := "none"
				if fa != nil {
					v = roundDuration(*fa).String()
				}
				parts = append(parts, r.nodeName(i)+" "+v)
			}
			result := d.Result
			if d.Error != "" {
				result = "failed: " + d.Error
			}
			fmt.Fprintf(w, "  +%-7s %-12s asked %-4s %s (took %s): %s\n", fmtOffset(d.At), d.Action, d.Target, result, roundDuration(d.Took), strings.Join(parts, ", "))
		}
	}
	fmt.Fprintln(w, "\nunavailability windows (writes or reads through a node failing or slower than -slow, until a write is accepted):")
	if len(r.Windows) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, win := range r.Windows {
		end := "+" + fmtOffset(win.End)
		if win.Open {
			end = "the end (no write accepted since)"
		}
		fmt.Fprintf(w, "  %-4s +%s to %s: %s, %d failed, %d slow%s\n", r.nodeName(win.Node), fmtOffset(win.Start), end,
			roundDuration(win.End-win.Start), win.Failed, win.Slow, kinds(win.Errors))
	}
	fmt.Fprintf(w, "\nerrors by kind:%s\n", orNone(kinds(r.Errors)))
	fmt.Fprintf(w, "latency of accepted writes: during disruptions and windows p50 %s p99 %s max %s (%d writes); outside them p50 %s p99 %s max %s (%d writes)\n",
		roundDuration(r.During.P50), roundDuration(r.During.P99), roundDuration(r.During.Max), r.During.Writes,
		roundDuration(r.Outside.P50), roundDuration(r.Outside.P99), roundDuration(r.Outside.Max), r.Outside.Writes)
	for i, n := range r.Nodes {
		if n.ReadNote != "" {
			fmt.Fprintf(w, "note: %s %s\n", r.nodeName(i), n.ReadNote)
		}
	}
	if r.Unacknowledged > 0 {
		fmt.Fprintf(w, "note: %d writes reported as failed were applied after all (their outcome was unknown to the client)\n", r.Unacknowledged)
	}
	if r.Duplicates > 0 {
		fmt.Fprintf(w, "WARNING: %d messages were read more than once by one probe\n", r.Duplicates)
	}
	fmt.Fprintf(w, "\n%d acknowledged writes, every one checked through every node that could read\n", r.Acknowledged)
	if len(r.LostWrites) > 0 {
		fmt.Fprintf(w, "lost: %s\n", strings.Join(r.LostWrites[:min(len(r.LostWrites), 20)], ", "))
	}
	_, err := fmt.Fprintf(w, "%d acknowledged writes lost\n", r.Lost)
	return err
}

// kinds writes error counts as " (kind n, kind n)", most frequent first.
func kinds(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func orNone(s string) string {
	if s == "" {
		return " none"
	}
	return " " + strings.Trim(s, " ()")
}

// Timeline geometry of the HTML report.
const (
	svgWidth   = 1100
	svgLeft    = 70
	svgLane    = 40
	svgTop     = 30
	svgRadius  = 3
	svgMaxDots = 20000 // beyond, writes are sampled evenly
)

// svgDot is one write on the timeline.
type svgDot struct {
	X, Y  float64
	Class string
	Title string
}

// svgRect is a window or a disruption's recovery on the timeline.
type svgRect struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

// svgMark is a disruption on the timeline.
type svgMark struct {
	X     float64
	Label string
	Title string
}

// svgRow is a node's row of the timeline.
type svgRow struct {
	Label string
	Y     float64
}

// drillPage is the HTML report's data.
type drillPage struct {
	R      *drillReport
	Text   string
	Width  int
	Height int
	Left   int
	Lanes  []svgRow
	Dots   []svgDot
	Rects  []svgRect
	Marks  []svgMark
	Ticks  []svgMark
	Radius int
	AxisY  int
}

var drillPageTemplate = template.Must(template.New("drill").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mimi-hub drill {{.R.Run}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d2330; }
pre { background: #f5f6f8; padding: 1rem; overflow-x: auto; }
svg { background: #fff; border: 1px solid #d7dbe3; }
.ok { fill: #1f7a3d; } .slow { fill: #d08a00; } .failed { fill: #c62828; }
.window { fill: #c62828; fill-opacity: .15; } .recovery { fill: #1d5fbf; fill-opacity: .08; }
.mark { stroke: #1d5fbf; stroke-width: 1.5; stroke-dasharray: 4 3; }
.lane { stroke: #e4e7ed; } text { font-size: 12px; fill: #1d2330; } .tick { fill: #5b6475; font-size: 11px; }
</style></head><body>
<h1>Drill {{.R.Run}}</h1>
<p>Started {{.R.Started.Format "2006-01-02 15:04:05 MST"}}; each dot is a probe write through a node (green accepted, amber slower than the threshold, red failed; hover for details); red bands are unavailability windows, blue dashed lines disruptions and blue bands the time until every node accepted a write again.</p>
<svg xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" role="img" aria-label="drill timeline">
{{range .Lanes}}<line class="lane" x1="{{$.Left}}" x2="{{$.Width}}" y1="{{.Y}}" y2="{{.Y}}"/><text x="4" y="{{.Y}}" dy="4">{{.Label}}</text>
{{end}}{{range .Rects}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>
{{end}}{{range .Marks}}<line class="mark" x1="{{.X}}" x2="{{.X}}" y1="14" y2="{{$.AxisY}}"><title>{{.Title}}</title></line><text x="{{.X}}" y="12" text-anchor="middle">{{.Label}}</text>
{{end}}{{range .Dots}}<circle class="{{.Class}}" cx="{{.X}}" cy="{{.Y}}" r="{{$.Radius}}"><title>{{.Title}}</title></circle>
{{end}}{{range .Ticks}}<text class="tick" x="{{.X}}" y="{{$.AxisY}}" dy="14" text-anchor="middle">{{.Label}}</text>
{{end}}</svg>
<h2>Report</h2>
<pre>{{.Text}}</pre>
</body></html>
`))

// writeDrillHTML writes the report with an SVG timeline (inline, no
// external assets).
func writeDrillHTML(r *drillReport, file string) error {
	var text strings.Builder
	if err := printDrillReport(&env{stdout: &text}, r); err != nil {
		return err
	}
	total := max(r.Duration, time.Second)
	x := func(d time.Duration) float64 {
		return float64(svgLeft) + float64(svgWidth-svgLeft-10)*float64(d)/float64(total)
	}
	laneY := func(node int) float64 { return float64(svgTop + svgLane*node + svgLane/2) }
	p := drillPage{R: r, Text: text.String(), Width: svgWidth, Left: svgLeft, Radius: svgRadius,
		Height: svgTop + svgLane*len(r.Nodes) + 30, AxisY: svgTop + svgLane*len(r.Nodes)}
	for i := range r.Nodes {
		p.Lanes = append(p.Lanes, svgRow{Label: r.nodeName(i), Y: laneY(i)})
	}
	step := max(1, len(r.Writes)/svgMaxDots)
	for i := 0; i < len(r.Writes); i += step {
		w := r.Writes[i]
		d := svgDot{X: x(w.Start), Y: laneY(w.Node), Class: "ok",
			Title: fmt.Sprintf("%s write #%d at +%s: %s", r.nodeName(w.Node), w.Seq, fmtOffset(w.Start), roundDuration(w.Took))}
		if w.Read {
			// Reads show only when they failed or were slow, below the
			// writes.
			if w.ok() && w.Took < r.Slow {
				continue
			}
			d.Y += svgLane / 4
			d.Title = fmt.Sprintf("%s read at +%s: %s", r.nodeName(w.Node), fmtOffset(w.Start), roundDuration(w.Took))
		}
		switch {
		case !w.ok():
			d.Class, d.Title = "failed", d.Title+": "+w.Error
		case w.Took >= r.Slow:
			d.Class = "slow"
		}
		p.Dots = append(p.Dots, d)
	}
	for _, win := range r.Windows {
		p.Rects = append(p.Rects, svgRect{X: x(win.Start), Y: laneY(win.Node) - svgLane/2 + 2, W: max(x(win.End)-x(win.Start), 2), H: svgLane - 4,
			Class: "window", Title: fmt.Sprintf("%s unavailable %s from +%s%s", r.nodeName(win.Node), roundDuration(win.End-win.Start), fmtOffset(win.Start), kinds(win.Errors))})
	}
	for _, d := range r.Disruptions {
		var last time.Duration
		for _, fa := range d.FirstAccepted {
			if fa != nil {
				last = max(last, *fa)
			}
		}
		p.Marks = append(p.Marks, svgMark{X: x(d.At), Label: d.Action, Title: fmt.Sprintf("+%s %s %s: %s", fmtOffset(d.At), d.Action, d.Target, firstNonEmpty(d.Error, d.Result))})
		p.Rects = append(p.Rects, svgRect{X: x(d.At), Y: svgTop, W: max(x(d.At+last)-x(d.At), 1), H: float64(svgLane * len(r.Nodes)),
			Class: "recovery", Title: fmt.Sprintf("every node accepted a write %s after %s", roundDuration(last), d.Action)})
	}
	tick := max(time.Second, (total / 10).Round(time.Second))
	for t := time.Duration(0); t <= total; t += tick {
		p.Ticks = append(p.Ticks, svgMark{X: x(t), Label: fmtOffset(t)})
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := drillPageTemplate.Execute(f, p); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
