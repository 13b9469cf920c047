// Package mlsvectors finds and loads the MLS working group's test vectors
// for tests, and carries their hex byte strings (Hex). The folder is
// $MLS_TEST_VECTORS, or ../shared/mls-test-vectors relative to the
// repository root. When MLS_TEST_VECTORS is set (CI sets it) a missing folder
// fails the test; otherwise tests skip and say why.
package mlsvectors

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Hex is a byte string that JSON carries as lowercase hex.
type Hex []byte

// MarshalJSON encodes lowercase hex; nil encodes as null.
func (h Hex) MarshalJSON() ([]byte, error) {
	if h == nil {
		return []byte("null"), nil
	}
	return json.Marshal(hex.EncodeToString(h))
}

// UnmarshalJSON decodes a hex string; null decodes to nil.
func (h *Hex) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*h = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*h = d
	return nil
}

// Dir returns the vectors folder, failing or skipping t as the package doc
// says when it is missing.
func Dir(t testing.TB) string {
	t.Helper()
	if env := os.Getenv("MLS_TEST_VECTORS"); env != "" {
		dir, err := filepath.Abs(env)
		if err != nil {
			t.Fatalf("MLS_TEST_VECTORS=%q: %v", env, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "tree-math.json")); err != nil {
			t.Fatalf("MLS_TEST_VECTORS=%q is set but holds no vectors: %v", env, err)
		}
		return dir
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("find repository root: %v", err)
	}
	dir := filepath.Join(root, "..", "shared", "mls-test-vectors")
	if _, err := os.Stat(filepath.Join(dir, "tree-math.json")); err != nil {
		t.Skipf("MLS test vectors not found at %s and MLS_TEST_VECTORS is unset; CI sets it and fails without them", dir)
	}
	return dir
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Load decodes the vector file name (e.g. "tree-math.json") into v.
func Load(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(t), name))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
}

// Tally counts, per vector file and cipher suite, the vectors run, and
// reports them in one line per file. Every suite of RFC 9420 is supported,
// so a vector whose suite is not is a test failure, never a skip.
type Tally struct {
	mu    sync.Mutex
	files map[string]map[uint16]int // file -> suite (0: suite-less) -> vectors run
}

// Ran counts one vector of file, for suite (0 when the vector has none), as
// run.
func (c *Tally) Ran(file string, suite uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files == nil {
		c.files = map[string]map[uint16]int{}
	}
	if c.files[file] == nil {
		c.files[file] = map[uint16]int{}
	}
	c.files[file][suite]++
}

// Report returns one line per file: "vectors: FILE ran N (suite 1: a, suite
// 2: b, ...)", the per-suite part only for files whose vectors name a suite.
func (c *Tally) Report() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.files))
	for n := range c.files {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		bySuite := c.files[n]
		suites := make([]int, 0, len(bySuite))
		total := 0
		for s, k := range bySuite {
			suites = append(suites, int(s))
			total += k
		}
		sort.Ints(suites)
		var parts []string
		for _, s := range suites {
			if s != 0 {
				parts = append(parts, fmt.Sprintf("suite %d: %d", s, bySuite[uint16(s)]))
			}
		}
		fmt.Fprintf(&b, "vectors: %-38s ran %4d", n, total)
		if len(parts) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
		}
		b.WriteString("\n")
	}
	return b.String()
}
