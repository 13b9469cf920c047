package testnet

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestNames(t *testing.T) {
	n := Names{RunID: "0a1b2c"}
	tests := []struct {
		name   string
		run    string
		member bool
	}{
		{n.Switch(), "0a1b2c", true},
		{n.Host(0), "0a1b2c", true},
		{n.Host(12), "0a1b2c", true},
		{n.RootLink(), "0a1b2c", true},
		{"mj0a1b2cx", "", false},
		{"mjZZZZZZsw", "", false},
		{"eth0", "", false},
	}
	for _, tt := range tests {
		run, ok := RunOf(tt.name)
		if ok != tt.member || run != tt.run {
			t.Errorf("RunOf(%q) = %q, %v; want %q, %v", tt.name, run, ok, tt.run, tt.member)
		}
		if ok && len(tt.name) > 15 {
			t.Errorf("%q is longer than an interface name may be", tt.name)
		}
	}
	if got := HostAddr(3).String(); got != "10.77.0.13" {
		t.Errorf("HostAddr(3) = %s", got)
	}
}

// fakeIP answers "ip netns list" with names and records every command.
type fakeIP struct {
	namespaces string
	calls      [][]string
}

func (f *fakeIP) run(_ context.Context, name string, args ...string) ([]byte, error) {
	f.calls = append(f.calls, append([]string{name}, args...))
	if len(args) >= 2 && args[0] == "netns" && args[1] == "list" {
		return []byte(f.namespaces), nil
	}
	return nil, nil
}

func TestCleanupRemovesDeadRunsOnly(t *testing.T) {
	dir := t.TempDir()
	write := func(d stateData) {
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, d.RunID+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A dead run: a pid that cannot exist. A live one: this process.
	write(stateData{RunID: "dead01", PID: 1 << 30, Namespaces: []string{"mjdead01sw"}})
	write(stateData{RunID: "a11ce0", PID: os.Getpid(), Exe: exe, Namespaces: []string{"mja11ce0sw"}})
	f := &fakeIP{namespaces: "mjdead01sw\nmjdead01h0 (id: 3)\nmjbeef00h1\nother\n"}
	runs, err := Scan(context.Background(), CleanupConfig{StateDir: dir, Run: f.run})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Leftover{}
	for _, l := range runs {
		got[l.RunID] = l
	}
	if l := got["dead01"]; l.Alive || len(l.Namespaces) != 2 {
		t.Errorf("dead run = %+v; want not alive with 2 namespaces", l)
	}
	if l := got["a11ce0"]; !l.Alive {
		t.Errorf("live run = %+v; want alive", l)
	}
	if l, ok := got["beef00"]; !ok || l.Alive || l.PID != 0 {
		t.Errorf("run known only by name = %+v, %v", l, ok)
	}
	if err := Cleanup(context.Background(), CleanupConfig{StateDir: dir, Run: f.run}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "dead01.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dead run's state file survived cleanup: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a11ce0.json")); err != nil {
		t.Errorf("the live run's state file was removed: %v", err)
	}
}

func TestNetworkConnectsHostsAndCleansUp(t *testing.T) {
	RequireHost(t, "ip")
	lock := LockForTest(t) // waits its turn; the budget starts after
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := Create(ctx, Config{Hosts: 2, Lock: lock})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = n.Close(context.Background())
		}
	}()
	var ln net.Listener
	if err := n.Hosts[0].Do(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(n.Hosts[0].Addr.String(), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("x"))
			c.Close()
		}
	}()
	dial := func(from string) {
		t.Helper()
		var c net.Conn
		do := func() error {
			var err error
			c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			return err
		}
		var err error
		if from == "" {
			err = do()
		} else {
			err = InNamespace(from, do)
		}
		if err != nil {
			t.Fatalf("dial from %q: %v", from, err)
		}
		defer c.Close()
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil || b[0] != 'x' {
			t.Fatalf("read from %q: %q, %v", from, b, err)
		}
	}
	dial(n.Hosts[1].Namespace) // host to host
	dial("")                   // root namespace through the gateway
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	closed = true
	for _, h := range n.Hosts {
		if namespaceExists(h.Namespace) {
			t.Errorf("namespace %s survived Close", h.Namespace)
		}
	}
	if linkExists(n.names.RootLink()) {
		t.Errorf("link %s survived Close", n.names.RootLink())
	}
	if _, err := os.Stat(n.state.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state file survived Close: %v", err)
	}
}

func TestCleanupAfterACrash(t *testing.T) {
	RequireHost(t, "ip")
	lock := LockForTest(t) // waits its turn; the budget starts after
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := Create(ctx, Config{Hosts: 1, Lock: lock})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.Background()) // releases the lock
	// A process left running in a namespace, as after a crash.
	sleeper := n.Hosts[0].Command(ctx, "sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = sleeper.Wait(); close(done) }()
	// Pretend the run died: its state file names a dead process.
	if err := n.state.add(func(s *stateData) { s.PID = 1 << 30 }); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(ctx, CleanupConfig{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("the process in the namespace survived cleanup")
	}
	if namespaceExists(n.Hosts[0].Namespace) || namespaceExists(n.Switch()) {
		t.Error("namespaces survived cleanup")
	}
}
