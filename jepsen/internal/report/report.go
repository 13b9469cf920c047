package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/anishathalye/porcupine"

	"github.com/mimihub/mimi-hub/jepsen/internal/check"
	"github.com/mimihub/mimi-hub/jepsen/internal/history"
	"github.com/mimihub/mimi-hub/jepsen/internal/nemesis"
)

// Results is results.json.
type Results struct {
	Run       Run               `json:"run"`
	Valid     bool              `json:"valid"`
	Stats     []KindStats       `json:"stats"`
	Anomalies []check.Anomaly   `json:"anomalies"`
	Rooms     []check.RoomCheck `json:"rooms"`
	Faults    []nemesis.Window  `json:"faults"`
}

// Write writes every report file into dir (created if needed) and returns
// the summary text.
func Write(dir string, run Run, snap history.Snapshot, res check.Result, windows []nemesis.Window) (string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "linearizability"), 0o755); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	stats := Stats(res.Ops)
	var summary bytes.Buffer
	if err := WriteSummary(&summary, run, stats, res, windows); err != nil {
		return "", err
	}
	if windows == nil {
		windows = []nemesis.Window{}
	}
	results := Results{Run: run, Valid: res.Valid, Stats: stats, Anomalies: res.Anomalies, Rooms: res.Rooms, Faults: windows}
	resolved := snap
	resolved.Ops = res.Ops
	files := map[string]any{"results.json": results, "history.json": resolved}
	for name, v := range files {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return "", fmt.Errorf("report: %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644); err != nil {
			return "", fmt.Errorf("report: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.txt"), summary.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	var svg bytes.Buffer
	if err := WriteTimeline(&svg, res.Ops, windows, max(snap.End(), 1)); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "timeline.svg"), svg.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	for _, r := range res.Rooms {
		if r.Model.Init == nil {
			continue
		}
		f, err := os.Create(filepath.Join(dir, "linearizability", FileName(r.Room)+".html"))
		if err != nil {
			return "", fmt.Errorf("report: %w", err)
		}
		err = porcupine.Visualize(r.Model, r.Info, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("report: visualizing %s: %w", r.Room, err)
		}
	}
	return summary.String(), nil
}

// FileName turns a room URI into a file name: mimi://hub/r/x -> hub_r_x.
func FileName(room string) string {
	s := strings.TrimPrefix(room, "mimi://")
	s = regexp.MustCompile(`[^A-Za-z0-9._-]+`).ReplaceAllString(s, "_")
	if s == "" {
		return "room"
	}
	return s
}
