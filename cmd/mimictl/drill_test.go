package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDrill runs mimictl drill against an in-process 3-node provider
// with a leadership transfer, a step-down and a pause: the report lists
// every disruption with the time to the first accepted write through each
// node, the paused node's window, and no acknowledged write lost; -html
// writes the timeline and -json the same report.
func TestDrill(t *testing.T) {
	c, caFile := startTestCluster(t, "drill.example", 3, "t0ken")
	var servers, ops []string
	for _, n := range c.Nodes {
		servers, ops = append(servers, n.ClientURL), append(ops, n.OpsURL)
	}
	html := filepath.Join(t.TempDir(), "drill.html")
	args := []string{"drill", "-server", strings.Join(servers, ","), "-ops", strings.Join(ops, ","), "-ca", caFile, "-admin-token", "t0ken",
		"-duration", "9s", "-interval", "100ms", "-every", "2s", "-disrupt", "transfer,step-down,pause:1500ms", "-html", html}
	code, out, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("drill: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	t.Logf("drill report:\n%s", out)
	for _, want := range []string{"disruptions (time to the first accepted write", "unavailability windows", "errors by kind:",
		"latency of accepted writes: during disruptions", "0 acknowledged writes lost"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	var disruptions []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "  +") {
			disruptions = append(disruptions, line)
		}
	}
	if len(disruptions) != 4 {
		t.Fatalf("%d disruption lines, want 4 (at 2, 4, 6 and 8s):\n%s", len(disruptions), strings.Join(disruptions, "\n"))
	}
	for i, want := range []string{"transfer", "step-down", "pause:1.5s", "transfer"} {
		if !strings.Contains(disruptions[i], want) || strings.Contains(disruptions[i], "failed") {
			t.Errorf("disruption %d: %q, want a successful %s", i+1, disruptions[i], want)
		}
		for _, n := range []string{"n1 ", "n2 ", "n3 "} {
			if !strings.Contains(disruptions[i], n) || strings.Contains(disruptions[i], n+"none") {
				t.Errorf("disruption %d: %q lacks the first accepted write through %s", i+1, disruptions[i], n)
			}
		}
	}
	// The paused node (n1, the first pause's target) answered 503 for
	// 1.5s: its writes failed or waited, a window.
	if !regexpLine(out, `^  n1 +\+[0-9.]+s to \+[0-9.]+s: `) {
		t.Errorf("no window for the paused node n1:\n%s", out)
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", `class="mark"`, "step-down", "0 acknowledged writes lost"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the HTML timeline lacks %q", want)
		}
	}

	// -json: the same report, machine-readable; no disruption this time.
	code, out, errOut = runCLI(t, "-json", "drill", "-server", strings.Join(servers, ","), "-ca", caFile, "-duration", "2s")
	if code != 0 {
		t.Fatalf("drill -json: exit %d\n%s\n%s", code, out, errOut)
	}
	var rep drillReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("drill -json: %v\n%s", err, out)
	}
	if rep.Lost != 0 || rep.Acknowledged == 0 || len(rep.Nodes) != 3 || len(rep.Disruptions) != 0 || rep.Nodes[0].Missing != 0 {
		t.Errorf("drill -json: lost %d of %d acknowledged, %d nodes, %d disruptions, missing %d", rep.Lost, rep.Acknowledged, len(rep.Nodes), len(rep.Disruptions), rep.Nodes[0].Missing)
	}
}

// regexpLine reports whether a line of s matches the pattern.
func regexpLine(s, pattern string) bool {
	return slices.ContainsFunc(strings.Split(s, "\n"), func(l string) bool { return regexp.MustCompile(pattern).MatchString(l) })
}

// TestDrillAnalysis checks the report's arithmetic on made-up writes:
// windows open at the first failed or slow write and close at the end of
// the next accepted one; the first accepted write after a disruption is
// one started after it; losses are acknowledged writes a probe that read
// to the end did not see.
func TestDrillAnalysis(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	w := func(node, seq, start, took int, kind string) drillWrite {
		dw := drillWrite{Node: node, Seq: seq, Start: ms(start), Took: ms(took), Kind: kind}
		if kind != "" {
			dw.Error = kind
		}
		return dw
	}
	r := &drillReport{Nodes: make([]drillNode, 2), Errors: map[string]int{}, Duration: ms(5000),
		Disruptions: []drillDisruption{{At: ms(1000), Action: "transfer"}},
		Writes: []drillWrite{
			w(0, 1, 0, 10, ""), w(0, 2, 900, 20, ""), w(0, 3, 1000, 1500, ""), w(0, 4, 2600, 10, ""),
			w(1, 1, 0, 10, ""), w(1, 2, 950, 100, "HTTP 503"), w(1, 3, 1100, 100, "timeout"), w(1, 4, 1300, 30, ""), w(1, 5, 4000, 10, "HTTP 503"),
		}}
	o := &drillOptions{slow: time.Second}
	probes := []*probe{
		{node: 0, writes: true, readAll: true, seen: map[string]int{"1 1": 1, "1 4": 2}},
		{node: 1, writes: true, readAll: true, seen: map[string]int{"0 1": 1, "0 2": 1, "0 3": 1, "1 9": 1}},
	}
	r.analyze(o, probes)
	want := []drillWindow{
		{Node: 1, Start: ms(950), End: ms(1330), Failed: 2, Errors: map[string]int{"HTTP 503": 1, "timeout": 1}},
		{Node: 0, Start: ms(1000), End: ms(2500), Slow: 1, Errors: map[string]int{}},
		{Node: 1, Start: ms(4000), End: ms(5000), Open: true, Failed: 1, Errors: map[string]int{"HTTP 503": 1}},
	}
	if len(r.Windows) != len(want) {
		t.Fatalf("windows %+v, want %+v", r.Windows, want)
	}
	for i := range want {
		g := r.Windows[i]
		if g.Node != want[i].Node || g.Start != want[i].Start || g.End != want[i].End || g.Open != want[i].Open || g.Failed != want[i].Failed || g.Slow != want[i].Slow || len(g.Errors) != len(want[i].Errors) {
			t.Errorf("window %d: %+v, want %+v", i, g, want[i])
		}
	}
	fa := r.Disruptions[0].FirstAccepted
	if fa[0] == nil || *fa[0] != ms(1500) || fa[1] == nil || *fa[1] != ms(330) {
		t.Errorf("first accepted after the transfer: %v %v, want 1.5s and 330ms", fa[0], fa[1])
	}
	// Node 0 acknowledged 4 writes; probe 1 saw three: "0 4" is lost. Node
	// 1 acknowledged 2 (1 and 4); probe 0 saw both, one twice.
	if r.Acknowledged != 6 || r.Lost != 1 || !slices.Equal(r.LostWrites, []string{"n1 #4"}) || r.Duplicates != 1 || r.Unacknowledged != 1 {
		t.Errorf("acknowledged %d, lost %d %v, duplicates %d, unacknowledged %d", r.Acknowledged, r.Lost, r.LostWrites, r.Duplicates, r.Unacknowledged)
	}
	if r.Errors["HTTP 503"] != 2 || r.Errors["timeout"] != 1 {
		t.Errorf("errors %v", r.Errors)
	}
	if r.Outside.Writes+r.During.Writes != 6 || r.During.Writes == 0 {
		t.Errorf("during %+v, outside %+v", r.During, r.Outside)
	}
}

func TestParseActions(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []drillAction
		err  string
	}{
		{in: "transfer", want: []drillAction{{Kind: "transfer"}}},
		{in: "transfer, step-down,pause:5s", want: []drillAction{{Kind: "transfer"}, {Kind: "step-down"}, {Kind: "pause", For: 5 * time.Second}}},
		{in: "pause", err: "pause:DURATION"},
		{in: "pause:11m", err: "up to"},
		{in: "pause:-1s", err: "pause:DURATION"},
		{in: "transfer:n2", err: "takes no argument"},
		{in: "kill", err: "unknown disruption"},
	} {
		got, err := parseActions(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q: %v %v, want %v", tc.in, got, err, tc.want)
		}
	}
}
