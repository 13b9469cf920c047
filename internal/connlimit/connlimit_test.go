package connlimit

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dialFrom connects to addr from the local IP from.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// acceptAll accepts until the listener closes and hands the connections
// over.
func acceptAll(l *Listener) <-chan net.Conn {
	out := make(chan net.Conn, 64)
	go func() {
		defer close(out)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			out <- c
		}
	}()
	return out
}

func next(t *testing.T, ch <-chan net.Conn, want bool) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		if !want {
			t.Fatal("a connection was accepted past the bound")
		}
		return c
	case <-time.After(300 * time.Millisecond):
		if want {
			t.Fatal("no connection accepted")
		}
		return nil
	}
}

// closedByPeer reports whether the server closed c.
func closedByPeer(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

func TestPerAddrAndMax(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	var mu sync.Mutex
	l := Listen(ln, Config{Name: "test", Max: 3, PerAddr: 2, Refused: func() { mu.Lock(); refused++; mu.Unlock() }})
	defer l.Close()
	accepted := acceptAll(l)
	addr := ln.Addr().String()

	a1, a2 := dialFrom(t, "127.0.0.1", addr), dialFrom(t, "127.0.0.1", addr)
	s1, _ := next(t, accepted, true), next(t, accepted, true)
	// A third connection from the same address is closed at once.
	a3 := dialFrom(t, "127.0.0.1", addr)
	if !closedByPeer(t, a3) {
		t.Fatal("a connection over the per-address bound stayed open")
	}
	next(t, accepted, false)
	// Another address still gets in, up to Max.
	dialFrom(t, "127.0.0.2", addr)
	next(t, accepted, true)
	if l.Open() != 3 {
		t.Fatalf("%d open, want 3", l.Open())
	}
	// At Max, a new connection waits in the backlog until one closes.
	dialFrom(t, "127.0.0.3", addr)
	next(t, accepted, false)
	s1.Close()
	next(t, accepted, true)
	_, _ = a1, a2 // held open to the end
	mu.Lock()
	defer mu.Unlock()
	if refused != 1 {
		t.Fatalf("%d refusals counted, want 1", refused)
	}
}

func TestRelease(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Listen(ln, Config{Max: 1})
	defer l.Close()
	accepted := acceptAll(l)
	dialFrom(t, "127.0.0.1", ln.Addr().String())
	c := next(t, accepted, true)
	dialFrom(t, "127.0.0.1", ln.Addr().String())
	next(t, accepted, false)
	c.(*Conn).Release()
	next(t, accepted, true)
	c.Close() // closing after Release frees nothing twice
	if l.Open() != 1 {
		t.Fatalf("%d open, want 1", l.Open())
	}
}

// flaky fails its first Accepts with an error, then accepts from inner.
type flaky struct {
	net.Listener
	mu    sync.Mutex
	fails int
	err   error
}

func (f *flaky) Accept() (net.Conn, error) {
	f.mu.Lock()
	if f.fails > 0 {
		f.fails--
		f.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: &osSyscallError{f.err}}
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

type osSyscallError struct{ err error }

func (e *osSyscallError) Error() string { return "accept4: " + e.err.Error() }
func (e *osSyscallError) Unwrap() error { return e.err }

// TestTransientErrors: descriptor exhaustion makes Accept back off and
// retry, logging once, instead of failing; other errors fail it.
func TestTransientErrors(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE} {
		t.Run(errno.Error(), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			l := Listen(&flaky{Listener: ln, fails: 5, err: errno}, Config{Name: "test", Max: 4, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			defer l.Close()
			accepted := acceptAll(l)
			dialFrom(t, "127.0.0.1", ln.Addr().String())
			next(t, accepted, true)
			if n := strings.Count(logs.String(), "accepting connections failed"); n != 1 {
				t.Fatalf("logged the failure %d times, want once:\n%s", n, logs.String())
			}
			if !strings.Contains(logs.String(), "accepting connections again") || l.Open() != 1 {
				t.Fatalf("recovery not logged or slots leaked (%d open):\n%s", l.Open(), logs.String())
			}
		})
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	l := Listen(&flaky{Listener: ln, fails: 1, err: syscall.EINVAL}, Config{})
	defer l.Close()
	if _, err := l.Accept(); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("a permanent error: %v", err)
	}
	l.Close()
	if _, err := l.Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
}
