package testnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stateData is a state file: what a run created.
type stateData struct {
	RunID string `json:"run_id"`
	PID   int    `json:"pid"`
	// Exe is the executable of the process, to tell a reused pid apart.
	Exe        string    `json:"exe"`
	Started    time.Time `json:"started"`
	Namespaces []string  `json:"namespaces"`
	Links      []string  `json:"links"`
}

// State is a run's state file, rewritten (atomically) on every change.
type State struct {
	path string
	mu   sync.Mutex
	data stateData
}

func newState(dir, runID string) (*State, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testnet: state directory: %w", err)
	}
	exe, _ := os.Executable()
	s := &State{path: filepath.Join(dir, runID+".json"), data: stateData{RunID: runID, PID: os.Getpid(), Exe: exe, Started: time.Now()}}
	if _, err := os.Stat(s.path); err == nil {
		return nil, fmt.Errorf("testnet: %s exists: run id %s is taken", s.path, runID)
	}
	return s, s.write()
}

func (s *State) add(fn func(*stateData)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.data)
	return s.write()
}

func (s *State) write() error {
	b, err := json.MarshalIndent(s.data, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("testnet: state file: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("testnet: state file: %w", err)
	}
	return nil
}

func (s *State) read() (stateData, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.data
	d.Namespaces = slices.Clone(d.Namespaces)
	d.Links = slices.Clone(d.Links)
	return d, nil
}

func (s *State) remove() error {
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("testnet: state file: %w", err)
	}
	return nil
}

// alive reports whether the run's process still runs: pid exists and
// runs the executable that wrote the state file (so a reused pid does not
// keep a dead run's leftovers alive).
func alive(pid int, exe string) bool {
	if pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return true
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	got, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return err == nil && (exe == "" || strings.TrimSuffix(got, " (deleted)") == exe)
}

// CleanupConfig configures Cleanup.
type CleanupConfig struct {
	// StateDir holds the state files; empty means DefaultStateDir.
	StateDir string
	// Run runs ip; nil means Exec.
	Run    Runner
	Logger *slog.Logger
}

// Leftover is a run found by Scan.
type Leftover struct {
	RunID string
	// PID is the run's process (0 when only names were found).
	PID int
	// Alive reports whether that process still runs.
	Alive      bool
	Namespaces []string
	Links      []string
}

// Scan lists the runs that have a state file or objects named like a run's.
func Scan(ctx context.Context, cfg CleanupConfig) ([]Leftover, error) {
	cfg = cfg.withDefaults()
	runs := map[string]*Leftover{}
	get := func(id string) *Leftover {
		if runs[id] == nil {
			runs[id] = &Leftover{RunID: id}
		}
		return runs[id]
	}
	files, err := filepath.Glob(filepath.Join(cfg.StateDir, "*.json"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("testnet: %w", err)
		}
		var d stateData
		if err := json.Unmarshal(b, &d); err != nil || !runIDPattern.MatchString(d.RunID) {
			cfg.Logger.Warn("ignoring an unreadable state file", "file", f, "err", err)
			continue
		}
		l := get(d.RunID)
		l.PID, l.Alive = d.PID, alive(d.PID, d.Exe)
		l.Namespaces = append(l.Namespaces, d.Namespaces...)
		l.Links = append(l.Links, d.Links...)
	}
	out, err := cfg.Run(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, fmt.Errorf("testnet: listing namespaces: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if id, ok := RunOf(f[0]); ok && !slices.Contains(get(id).Namespaces, f[0]) {
			get(id).Namespaces = append(get(id).Namespaces, f[0])
		}
	}
	links, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return nil, fmt.Errorf("testnet: listing links: %w", err)
	}
	for _, e := range links {
		if id, ok := RunOf(e.Name()); ok && !slices.Contains(get(id).Links, e.Name()) {
			get(id).Links = append(get(id).Links, e.Name())
		}
	}
	var list []Leftover
	for _, l := range runs {
		// Switch before hosts in the list; teardown walks it backwards.
		slices.SortStableFunc(l.Namespaces, func(a, b string) int {
			return boolInt(!strings.HasSuffix(a, "sw")) - boolInt(!strings.HasSuffix(b, "sw"))
		})
		list = append(list, *l)
	}
	slices.SortFunc(list, func(a, b Leftover) int { return strings.Compare(a.RunID, b.RunID) })
	return list, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (c CleanupConfig) withDefaults() CleanupConfig {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Run == nil {
		c.Run = Exec
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Cleanup removes what dead runs left: their processes, namespaces, links
// and state files. Runs whose process is alive are left alone (and
// logged). Call it holding the network lock (TryLock), or from Create.
func Cleanup(ctx context.Context, cfg CleanupConfig) error {
	cfg = cfg.withDefaults()
	runs, err := Scan(ctx, cfg)
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range runs {
		if l.Alive {
			cfg.Logger.Info("leaving a live run alone", "run", l.RunID, "pid", l.PID)
			continue
		}
		cfg.Logger.Info("removing a dead run's leftovers", "run", l.RunID, "pid", l.PID, "namespaces", l.Namespaces, "links", l.Links)
		if err := teardown(ctx, cfg.Run, cfg.Logger, stateData{Namespaces: l.Namespaces, Links: l.Links}); err != nil {
			errs = append(errs, fmt.Errorf("run %s: %w", l.RunID, err))
			continue
		}
		if err := os.Remove(filepath.Join(cfg.StateDir, l.RunID+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
