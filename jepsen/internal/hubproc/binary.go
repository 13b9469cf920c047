package hubproc

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// Binary is a built mimi-hub executable.
type Binary struct {
	Path  string
	Tags  []string
	flags map[string]bool
}

// Build compiles ./cmd/mimi-hub of the module in dir into out, with the
// given build tags, and inspects its flags.
func Build(ctx context.Context, dir, out string, tags []string) (*Binary, error) {
	args := []string{"build", "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	args = append(args, "./cmd/mimi-hub")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	b, err := Inspect(ctx, out)
	if err != nil {
		return nil, err
	}
	b.Tags = tags
	return b, nil
}

var flagLine = regexp.MustCompile(`(?m)^\s+-([a-z0-9][a-z0-9-]*)`)

// Inspect learns the flags of the binary at path from its -h output.
func Inspect(ctx context.Context, path string) (*Binary, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "-h")
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run() // -h exits 0 or 2 depending on the flag package's mode
	b := &Binary{Path: path, flags: map[string]bool{}}
	for _, m := range flagLine.FindAllStringSubmatch(out.String(), -1) {
		b.flags[m[1]] = true
	}
	if !b.flags["domain"] {
		return nil, fmt.Errorf("%s -h lists no -domain flag; is it mimi-hub?\n%s", path, out.String())
	}
	return b, nil
}

// Has reports whether the binary has a flag.
func (b *Binary) Has(flag string) bool { return b.flags[flag] }

// Clustered reports whether the binary runs multi-node clusters (it has
// -node-id, -join and -gossip-addr).
func (b *Binary) Clustered() bool { return b.Has("node-id") && b.Has("join") && b.Has("gossip-addr") }
