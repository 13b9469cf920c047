package report

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/mimihub/mimi-hub/jepsen/internal/history"
	"github.com/mimihub/mimi-hub/jepsen/internal/nemesis"
)

// Plot geometry.
const (
	plotW      = 1100
	marginL    = 70
	marginR    = 20
	panelH     = 220
	gap        = 50
	marginTop  = 40
	legendH    = 40
	maxDots    = 15000
	innerW     = plotW - marginL - marginR
	throughTop = marginTop
	latTop     = marginTop + panelH + gap
	plotH      = latTop + panelH + legendH + 30
)

func outcomeColor(o history.Outcome) string {
	switch o {
	case history.OK:
		return "#2b8a3e"
	case history.Fail:
		return "#e67700"
	}
	return "#c92a2a"
}

// faultKinds are the nemesis kinds the legend lists.
func faultKinds() []string {
	return []string{"kill", "pause", "partition", "loss", "delay", "membership", "snapshot"}
}

func faultColor(kind string) string {
	switch kind {
	case "kill":
		return "#fa5252"
	case "pause":
		return "#be4bdb"
	case "partition":
		return "#4c6ef5"
	case "loss":
		return "#15aabf"
	case "delay":
		return "#fab005"
	case "membership":
		return "#82c91e"
	case "snapshot":
		return "#fd7e14"
	}
	return "#868e96"
}

// WriteTimeline writes an SVG of throughput (completed operations per
// second by outcome) and latency (one dot per operation, log scale;
// unknown outcomes as crosses at the top) over time, with the fault
// windows shaded across both panels.
func WriteTimeline(w io.Writer, ops []history.Op, windows []nemesis.Window, end int64) error {
	if end <= 0 {
		end = 1
	}
	x := func(t int64) float64 { return marginL + float64(innerW)*float64(t)/float64(end) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", plotW, plotH)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">Throughput and latency over time (faults shaded)</text>`+"\n", marginL)

	// Fault windows, behind everything.
	for _, win := range windows {
		if win.Error != "" && win.End == win.Start {
			continue
		}
		e := win.End
		if e == 0 {
			e = end
		}
		col := faultColor(win.Kind)
		x0, x1 := x(win.Start), x(e)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" fill-opacity="0.15"><title>%s %s %s</title></rect>`+"\n",
			x0, throughTop, math.Max(x1-x0, 1), latTop+panelH-throughTop, col, esc(win.Kind), esc(strings.Join(win.Targets, ",")), esc(win.Detail+" "+win.Result))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="%s" font-size="10">%s</text>`+"\n", x0+2, throughTop+panelH+12, col, esc(win.Kind))
	}

	// Throughput: completions per second by outcome.
	secs := int(end/int64(time.Second)) + 1
	counts := map[history.Outcome][]int{history.OK: make([]int, secs), history.Fail: make([]int, secs), history.Unknown: make([]int, secs)}
	peak := 1
	for _, o := range ops {
		t := o.Return
		if o.Result == history.Unknown || t == 0 {
			t = o.Call
		}
		i := min(int(t/int64(time.Second)), secs-1)
		counts[o.Result][i]++
		peak = max(peak, counts[o.Result][i])
	}
	axes(&b, throughTop, fmt.Sprintf("ops/s (peak %d)", peak), end)
	for _, out := range []history.Outcome{history.OK, history.Fail, history.Unknown} {
		var pts []string
		for i, c := range counts[out] {
			px := x(int64(i)*int64(time.Second) + int64(time.Second)/2)
			py := float64(throughTop+panelH) - float64(panelH)*float64(c)/float64(peak)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, py))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", outcomeColor(out), strings.Join(pts, " "))
	}

	// Latency: log scale from 1ms to the slowest completion (at least 1s).
	maxLat := time.Second
	for _, o := range ops {
		if o.Result != history.Unknown && o.Return > 0 {
			maxLat = max(maxLat, o.Latency())
		}
	}
	lo, hi := math.Log10(float64(time.Millisecond)), math.Log10(float64(maxLat))
	y := func(d time.Duration) float64 {
		v := math.Log10(math.Max(float64(d), float64(time.Millisecond)))
		return float64(latTop+panelH) - float64(panelH)*(v-lo)/(hi-lo)
	}
	axes(&b, latTop, fmt.Sprintf("latency (log, 1ms..%v)", maxLat.Round(time.Millisecond)), end)
	for _, d := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond, time.Second, 10 * time.Second} {
		if d > maxLat {
			break
		}
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#dee2e6"/><text x="%d" y="%.1f" text-anchor="end">%v</text>`+"\n",
			marginL, plotW-marginR, y(d), y(d), marginL-4, y(d)+4, d)
	}
	step := max(1, len(ops)/maxDots)
	for i, o := range ops {
		if i%step != 0 {
			continue
		}
		if o.Result == history.Unknown || o.Return == 0 {
			px, py := x(o.Call), float64(latTop+4)
			fmt.Fprintf(&b, `<path d="M%.1f %.1fl4 4m0 -4l-4 4" stroke="%s"/>`+"\n", px-2, py-2, outcomeColor(history.Unknown))
			continue
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="1.5" fill="%s" fill-opacity="0.6"/>`+"\n", x(o.Call), y(o.Latency()), outcomeColor(o.Result))
	}

	// Legend.
	ly := latTop + panelH + 35
	lx := marginL
	for _, out := range []history.Outcome{history.OK, history.Fail, history.Unknown} {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", lx, ly-9, outcomeColor(out), lx+14, ly, out)
		lx += 80
	}
	for _, k := range faultKinds() {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s" fill-opacity="0.4"/><text x="%d" y="%d">%s</text>`+"\n", lx, ly-9, faultColor(k), lx+14, ly, k)
		lx += 90
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// axes draws a panel's frame, title and time ticks.
func axes(b *strings.Builder, top int, title string, end int64) {
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#495057"/>`+"\n", marginL, top, innerW, panelH)
	fmt.Fprintf(b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", marginL, top-6, esc(title))
	total := time.Duration(end)
	tick := time.Second
	for _, t := range []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute} {
		tick = t
		if total/t <= 12 {
			break
		}
	}
	for t := time.Duration(0); t <= total; t += tick {
		px := marginL + float64(innerW)*float64(t)/float64(end)
		fmt.Fprintf(b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#495057"/><text x="%.1f" y="%d" text-anchor="middle">%v</text>`+"\n",
			px, px, top+panelH, top+panelH+4, px, top+panelH+15, t)
	}
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
