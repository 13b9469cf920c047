package report

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/jepsen/internal/check"
	"github.com/mimihub/mimi-hub/jepsen/internal/history"
	"github.com/mimihub/mimi-hub/jepsen/internal/nemesis"
)

const room = "mimi://hub.example/r/race-1"

func sampleHistory(fork bool) history.Snapshot {
	ms := int64(time.Millisecond)
	s := history.Snapshot{
		Ops: []history.Op{
			{ID: 0, Kind: history.KindCommit, Room: room, Call: 10 * ms, Return: 30 * ms, Result: history.OK, Epoch: 1, Parent: "p", Hash: "a"},
			{ID: 1, Process: 1, Kind: history.KindCommit, Room: room, Call: 12 * ms, Return: 40 * ms, Result: history.Fail, Code: check.WrongEpoch, Epoch: 1, Parent: "p", Hash: "b"},
			{ID: 2, Process: 2, Kind: history.KindRead, Room: room, Call: 1100 * ms, Return: 1150 * ms, Result: history.OK, Epoch: 2, Hash: "a"},
			{ID: 3, Process: 1, Kind: history.KindCommit, Room: room, Call: 1200 * ms, Result: history.Unknown, Code: "timeout", Epoch: 2, Parent: "a", Hash: "c"},
			{ID: 4, Process: 3, Kind: history.KindClaim, Call: 2000 * ms, Return: 2010 * ms, Result: history.OK, User: "u", KeyPackageRefs: []string{"k1"}},
		},
		Chains:   []history.Chain{{Room: room, Links: []history.Link{{Epoch: 1, Hash: "p"}, {Epoch: 2, Hash: "a"}}}},
		Finals:   []history.Final{{Node: "n1", Room: room, Epoch: 2, Hash: "a"}},
		Uploaded: []history.Uploaded{{User: "u", Client: "c", Ref: "k1"}},
	}
	if fork {
		s.Ops[1].Result, s.Ops[1].Code = history.OK, ""
	}
	return s
}

func TestWriteReport(t *testing.T) {
	windows := []nemesis.Window{
		{Kind: "partition", Targets: []string{"n1"}, Detail: "isolated n1 | [n2 n3]", Start: int64(500 * time.Millisecond), End: int64(1500 * time.Millisecond)},
		{Kind: "kill", Error: "no such node", Start: int64(time.Second), End: int64(time.Second)},
	}
	tests := []struct {
		name      string
		fork      bool
		wantValid bool
		wantText  []string
	}{
		{"valid", false, true, []string{"VALID", "anomalies: 0", "commit", "partition 1", "1 failed to inject"}},
		{"forked", true, false, []string{"INVALID", "forked-epoch", "not-linearizable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			snap := sampleHistory(tt.fork)
			res := check.Run(snap, check.Options{})
			summary, err := Write(dir, Run{ID: "abc123", Workload: "all", Nemesis: "partition", Nodes: 3, Duration: 2 * time.Second}, snap, res, windows)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.wantText {
				if !strings.Contains(summary, w) {
					t.Errorf("summary lacks %q:\n%s", w, summary)
				}
			}
			var results Results
			b, err := os.ReadFile(filepath.Join(dir, "results.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &results); err != nil {
				t.Fatal(err)
			}
			if results.Valid != tt.wantValid || len(results.Faults) != 2 || len(results.Stats) != 3 {
				t.Errorf("results.json: valid %v, %d faults, %d stats", results.Valid, len(results.Faults), len(results.Stats))
			}
			svg, err := os.Open(filepath.Join(dir, "timeline.svg"))
			if err != nil {
				t.Fatal(err)
			}
			defer svg.Close()
			dec := xml.NewDecoder(svg)
			elements := 0
			for {
				tok, err := dec.Token()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("timeline.svg is not well-formed XML: %v", err)
				}
				if _, ok := tok.(xml.StartElement); ok {
					elements++
				}
			}
			if elements < 10 {
				t.Errorf("timeline.svg has %d elements", elements)
			}
			html, err := os.ReadFile(filepath.Join(dir, "linearizability", FileName(room)+".html"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(html), "<html") {
				t.Errorf("the visualization is not HTML")
			}
		})
	}
}

func TestStatsCountsOutcomes(t *testing.T) {
	res := check.Run(sampleHistory(false), check.Options{})
	stats := Stats(res.Ops)
	if stats[0].Kind != history.KindCommit || stats[0].Total != 3 || stats[0].OK != 1 || stats[0].Fail != 1 || stats[0].Unknown != 1 {
		t.Errorf("commit stats %+v", stats[0])
	}
	if stats[0].NotHappened != 1 {
		t.Errorf("the unknown commit on a room that stayed at its epoch should resolve as not happened: %+v", stats[0])
	}
	if FileName(room) != "hub.example_r_race-1" {
		t.Errorf("FileName(%q) = %q", room, FileName(room))
	}
}
