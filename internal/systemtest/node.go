package systemtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/internal/hub"
)

// ModulePath is the import path of cmd/mimi-hub, which Build compiles.
const ModulePath = "github.com/mimihub/mimi-hub/cmd/mimi-hub"

// Build compiles cmd/mimi-hub into dir and returns the binary's path; race
// builds it with the race detector. It needs the go command and must run
// inside the module (tests do). The binary records the VCS revision when
// the go command can (-buildvcs=auto: in a clone, not in a git worktree).
func Build(ctx context.Context, dir string, race bool) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("systemtest: build mimi-hub: %w", err)
	}
	out := filepath.Join(dir, "mimi-hub")
	args := []string{"build", "-buildvcs=auto", "-o", out}
	if race {
		args = append(args, "-race")
	}
	args = append(args, ModulePath)
	cmd := exec.CommandContext(ctx, goBin, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("systemtest: go %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
}

// Node is one mimi-hub process of a provider: its addresses and data
// folder (fixed, so a restart reuses them) and, while it runs, the process.
// Its methods are safe for concurrent use.
type Node struct {
	// ID is the node's -node-id.
	ID string
	// IP is the loopback address every listener of the node binds.
	IP string
	// FederationAddr, ClientAddr, OpsAddr, RaftAddr and GossipAddr are
	// the listeners' host:port.
	FederationAddr, ClientAddr, OpsAddr, RaftAddr, GossipAddr string
	// DataDir is the node's -data folder.
	DataDir string
	// LogFile receives the process's stdout and stderr, every start
	// appended after a marker line.
	LogFile string

	bin  string
	args []string
	env  []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the running process exited
	exitErr error         // the process's exit, once done is closed
	paused  bool
	starts  int
}

// Args returns the node's command-line arguments.
func (n *Node) Args() []string { return append([]string(nil), n.args...) }

// Start starts the node's process (again, after it exited). It returns
// once the process runs, without waiting for it to serve.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("systemtest: %s is running", n.ID)
	}
	logf, err := os.OpenFile(n.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("systemtest: %s: log file: %w", n.ID, err)
	}
	n.starts++
	fmt.Fprintf(logf, "=== systemtest: start %d of %s at %s: %s %s\n", n.starts, n.ID, time.Now().Format(time.RFC3339Nano), n.bin, strings.Join(n.args, " "))
	cmd := exec.Command(n.bin, n.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), n.env...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("systemtest: start %s: %w", n.ID, err)
	}
	done := make(chan struct{})
	n.cmd, n.done, n.paused = cmd, done, false
	go func() {
		err := cmd.Wait()
		logf.Close()
		n.mu.Lock()
		n.exitErr = err
		n.cmd = nil
		n.paused = false
		n.mu.Unlock()
		close(done)
	}()
	return nil
}

// Pid returns the running process's id (0 when it does not run).
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Running reports whether the process runs (paused or not).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Paused reports whether the process is frozen by Pause.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

// Serving reports whether the process runs and is not paused.
func (n *Node) Serving() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil && !n.paused
}

func (n *Node) signal(sig syscall.Signal) (chan struct{}, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return nil, fmt.Errorf("systemtest: %s is not running", n.ID)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return nil, fmt.Errorf("systemtest: signal %v to %s: %w", sig, n.ID, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		n.paused = true
	case syscall.SIGCONT:
		n.paused = false
	}
	return n.done, nil
}

// Kill sends SIGKILL (kill -9) and waits until the process is gone.
func (n *Node) Kill() error {
	done, err := n.signal(syscall.SIGKILL)
	if err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("systemtest: %s survived SIGKILL for 30s", n.ID)
	}
}

// Terminate sends SIGTERM (a graceful stop: the servers drain, a leader
// hands leadership over, Raft snapshots) and waits until the process
// exits, at most until ctx ends (then it kills it). It returns an error if
// the process did not exit with status 0.
func (n *Node) Terminate(ctx context.Context) error {
	done, err := n.signal(syscall.SIGTERM)
	if err != nil {
		return err
	}
	select {
	case <-done:
	case <-ctx.Done():
		n.Kill()
		return fmt.Errorf("systemtest: %s did not exit after SIGTERM: %w", n.ID, ctx.Err())
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.exitErr != nil {
		return fmt.Errorf("systemtest: %s exited after SIGTERM: %w", n.ID, n.exitErr)
	}
	return nil
}

// Pause freezes the process (SIGSTOP): its sockets stay open, the kernel
// still accepts connections for it, and it answers nothing.
func (n *Node) Pause() error {
	_, err := n.signal(syscall.SIGSTOP)
	return err
}

// Reload asks the process to reload its configuration (SIGHUP).
func (n *Node) Reload() error {
	_, err := n.signal(syscall.SIGHUP)
	return err
}

// Resume thaws a paused process (SIGCONT).
func (n *Node) Resume() error {
	_, err := n.signal(syscall.SIGCONT)
	return err
}

// Exited returns a channel closed when the current process exits (nil
// when none runs).
func (n *Node) Exited() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return nil
	}
	return n.done
}

// opsClient is the HTTP client of the operations listeners: short
// timeouts, so a frozen node costs a second, not a test.
var opsClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// getJSON fetches an operations endpoint of the node into out.
func (n *Node) getJSON(ctx context.Context, path string, out any) error {
	body, err := n.get(ctx, path, 1<<20)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("systemtest: %s: GET %s: %w", n.ID, path, err)
	}
	return nil
}

// Goroutines returns the stacks of every goroutine of the node (pprof's
// debug=2 text), at most 4 MiB: what a test that found a request hanging
// logs before it fails.
func (n *Node) Goroutines(ctx context.Context) (string, error) {
	body, err := n.get(ctx, "/debug/pprof/goroutine?debug=2", 4<<20)
	return string(body), err
}

// CPUProfile profiles the node's CPU for d (whole seconds, at least one,
// at most the ops listener's 60) and writes the profile to file.
func (n *Node) CPUProfile(ctx context.Context, d time.Duration, file string) error {
	secs := min(max(int(d/time.Second), 1), 60)
	long := &http.Client{Timeout: time.Duration(secs)*time.Second + 30*time.Second, Transport: opsClient.Transport}
	body, err := n.fetch(ctx, long, "/debug/pprof/profile?seconds="+strconv.Itoa(secs), 64<<20)
	if err != nil {
		return err
	}
	return os.WriteFile(file, body, 0o644)
}

// get fetches an operations endpoint of the node, at most limit bytes.
func (n *Node) get(ctx context.Context, path string, limit int64) ([]byte, error) {
	return n.fetch(ctx, opsClient, path, limit)
}

// fetch is get with the HTTP client c.
func (n *Node) fetch(ctx context.Context, c *http.Client, path string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.OpsAddr+path, nil)
	if err != nil {
		return nil, err
	}
	// The node generated its admin token in its data folder on first
	// start; read it as mimictl does on the node's host.
	token, err := hub.ReadAdminToken(filepath.Join(n.DataDir, hub.AdminTokenFile))
	if err != nil {
		return nil, fmt.Errorf("systemtest: %s: %w", n.ID, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("systemtest: %s: GET %s: %w", n.ID, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("systemtest: %s: GET %s: %w", n.ID, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{Node: n.ID, Path: path, Code: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	return body, nil
}

// StatusError is a non-200 answer of an operations endpoint.
type StatusError struct {
	Node, Path string
	Code       int
	Body       string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("systemtest: %s: GET %s: %d %s", e.Node, e.Path, e.Code, e.Body)
}

// Status returns the node's own view (GET /v1/status on the operations
// listener): Raft state, indexes, counts.
func (n *Node) Status(ctx context.Context) (*hub.OpsStatus, error) {
	var st hub.OpsStatus
	if err := n.getJSON(ctx, "/v1/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// ClusterStatus returns the cluster as the node sees it (GET
// /v1/cluster/status: the Raft configuration with each server's suffrage,
// gossip's view, each node's report). It fails with a *StatusError of code
// 404 on a build without that endpoint.
func (n *Node) ClusterStatus(ctx context.Context) (*cluster.ClusterStatus, error) {
	var st cluster.ClusterStatus
	if err := n.getJSON(ctx, "/v1/cluster/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Ready reports whether the node's /readyz answers 200 (it knows a leader).
func (n *Node) Ready(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.OpsAddr+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := opsClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Log returns the node's log file.
func (n *Node) Log() (string, error) {
	b, err := os.ReadFile(n.LogFile)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return string(b), err
}

// LogTail returns the last lines of the node's log.
func (n *Node) LogTail(lines int) string {
	s, err := n.Log()
	if err != nil {
		return err.Error()
	}
	all := collapseRepeats(strings.Split(strings.TrimRight(s, "\n"), "\n"))
	if len(all) > lines {
		all = append([]string{fmt.Sprintf("[... %d earlier lines in %s]", len(all)-lines, n.LogFile)}, all[len(all)-lines:]...)
	}
	return strings.Join(all, "\n")
}

// collapseRepeats replaces runs of lines that differ only in their
// timestamp (a leader failing to reach a dead peer every 100ms) by the
// first one and a count.
func collapseRepeats(lines []string) []string {
	var out []string
	key := func(l string) string {
		if strings.HasPrefix(l, "time=") {
			if _, rest, ok := strings.Cut(l, " "); ok {
				return rest
			}
		}
		return l
	}
	for i := 0; i < len(lines); {
		j := i + 1
		for j < len(lines) && key(lines[j]) == key(lines[i]) {
			j++
		}
		out = append(out, lines[i])
		if j-i > 1 {
			out = append(out, fmt.Sprintf("[... repeated %d more times until %s]", j-i-1, strings.TrimPrefix(strings.SplitN(lines[j-1], " ", 2)[0], "time=")))
		}
		i = j
	}
	return out
}

// LogCount counts the log lines holding substr.
func (n *Node) LogCount(substr string) int {
	f, err := os.Open(n.LogFile)
	if err != nil {
		return 0
	}
	defer f.Close()
	c := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(substr)) {
			c++
		}
	}
	return c
}

// RaceMarker is the line the race detector prints for each data race.
const RaceMarker = "WARNING: DATA RACE"
