package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/internal/pause"
)

// Process is a program a test started (a real mimi-hub, for instance):
// its combined output and its exit.
type Process struct {
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{}
	err  error // the exit, once done is closed
}

// StartProcess starts cmd with its output captured. At the end of the
// test a process still running gets SIGTERM, then SIGKILL after 45 s;
// the output goes to the test's log if the test failed.
func StartProcess(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(45 * time.Second):
				cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", cmd.Path, p.Output())
		}
	})
	return p
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output is everything the process wrote so far.
func (p *Process) Output() string { return p.out.String() }

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Wait waits at most timeout for the process to exit and returns its
// exit error; it fails if the process still runs.
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s still runs after %v", p.cmd.Path, timeout)
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// errExited ends WaitHTTP when the process it waits for is gone.
var errExited = errors.New("the process exited")

// WaitHTTP polls url with GET, sending header if given, until it answers
// 200; it fails after timeout, when ctx ends, or at once when exited (if
// not nil) is closed.
func WaitHTTP(ctx context.Context, url string, header http.Header, timeout time.Duration, exited <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-exited:
			return fmt.Errorf("GET %s: %w (last: %s)", url, errExited, last)
		default:
		}
		if time.Now().After(deadline) || !pause.For(ctx, 200*time.Millisecond) {
			return fmt.Errorf("GET %s: no 200 within %v (last: %s)", url, timeout, last)
		}
	}
}

// lockedBuffer is a bytes.Buffer a process writes while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
