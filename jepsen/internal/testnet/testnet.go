package testnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Subnet is the test network's subnet.
func Subnet() netip.Prefix { return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, 0, 0}), 24) }

// Gateway is the root namespace's address on the test network.
func Gateway() netip.Addr { return netip.AddrFrom4([4]byte{10, 77, 0, 1}) }

// HostAddr returns the address of host i (from 0): 10.77.0.(10+i).
func HostAddr(i int) netip.Addr {
	b := Subnet().Addr().As4()
	b[3] = byte(10 + i)
	return netip.AddrFrom4(b)
}

// MaxHosts bounds the hosts of one network (addresses .10 to .250).
const MaxHosts = 240

// DefaultStateDir is where runs record what they created.
const DefaultStateDir = "/run/mimi-jepsen"

// namePrefix starts every name a run creates.
const namePrefix = "mj"

var (
	runIDPattern = regexp.MustCompile(`^[0-9a-f]{6}$`)
	// namePattern matches the namespaces and root links of any run:
	// mj<run>sw (switch), mj<run>h<i> (host), mj<run>g (root veth).
	namePattern = regexp.MustCompile(`^mj([0-9a-f]{6})(sw|h[0-9]+|g)$`)
)

// NewRunID returns a random run id.
func NewRunID() (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("run id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Names derives the names of a run's objects.
type Names struct{ RunID string }

// Switch is the namespace holding the bridge.
func (n Names) Switch() string { return namePrefix + n.RunID + "sw" }

// Host is host i's namespace.
func (n Names) Host(i int) string { return namePrefix + n.RunID + "h" + strconv.Itoa(i) }

// RootLink is the root namespace's end of the gateway veth.
func (n Names) RootLink() string { return namePrefix + n.RunID + "g" }

// RunOf returns the run id of a name a run created, or false.
func RunOf(name string) (string, bool) {
	m := namePattern.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// Runner runs a command and returns its combined output.
type Runner func(ctx context.Context, name string, args ...string) ([]byte, error)

// Exec runs commands with os/exec; a failure's error carries the output.
func Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Config describes a network to create.
type Config struct {
	// RunID names the run; empty means a random one.
	RunID string
	// Hosts is the number of host namespaces.
	Hosts int
	// StateDir holds the state files; empty means DefaultStateDir.
	StateDir string
	// Run runs ip; nil means Exec.
	Run    Runner
	Logger *slog.Logger
	// Lock, when set, is the network lock the caller already holds
	// (WaitLock); Create then takes it over instead of waiting for it.
	Lock *Lock
}

// Host is one host namespace.
type Host struct {
	// Index numbers hosts from 0.
	Index int
	// Namespace is the network namespace's name (for ip netns exec).
	Namespace string
	// Addr is the host's address.
	Addr netip.Addr
}

// Network is a created test network.
type Network struct {
	RunID string
	Hosts []Host
	names Names
	state *State
	run   Runner
	log   *slog.Logger
	lock  *Lock
}

// Create builds a network of cfg.Hosts hosts. It takes the machine-wide
// network lock (waiting while another run holds it, until ctx ends; or the
// one cfg.Lock holds), removes
// what crashed runs left behind, and fails if something else holds the test
// subnet. On failure it removes what it created. Close releases the lock.
func Create(ctx context.Context, cfg Config) (*Network, error) {
	if cfg.Hosts < 1 || cfg.Hosts > MaxHosts {
		return nil, fmt.Errorf("testnet: %d hosts; want 1 to %d", cfg.Hosts, MaxHosts)
	}
	if cfg.Run == nil {
		cfg.Run = Exec
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.RunID == "" {
		id, err := NewRunID()
		if err != nil {
			return nil, err
		}
		cfg.RunID = id
	}
	if !runIDPattern.MatchString(cfg.RunID) {
		return nil, fmt.Errorf("testnet: run id %q is not six hex digits", cfg.RunID)
	}
	lock := cfg.Lock
	if lock == nil {
		var err error
		if lock, err = WaitLock(ctx, cfg.StateDir, cfg.Logger); err != nil {
			return nil, err
		}
	}
	ok := false
	defer func() {
		if !ok {
			_ = lock.Unlock()
		}
	}()
	// Holding the lock, whatever another run left is a leftover.
	if err := Cleanup(ctx, CleanupConfig{StateDir: cfg.StateDir, Run: cfg.Run, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	if other, err := subnetUser(ctx, cfg.Run); err != nil {
		return nil, err
	} else if other != "" {
		return nil, fmt.Errorf("testnet: %s already has an address in %s; another test network is up (go run ./jepsen -cleanup removes a dead run's)", other, Subnet())
	}
	names := Names{RunID: cfg.RunID}
	st, err := newState(cfg.StateDir, cfg.RunID)
	if err != nil {
		return nil, err
	}
	n := &Network{RunID: cfg.RunID, names: names, state: st, run: cfg.Run, log: cfg.Logger.With("run", cfg.RunID), lock: lock}
	ok = true
	if err := n.build(ctx, cfg.Hosts); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		return nil, errors.Join(fmt.Errorf("testnet: %w", err), n.Close(cctx))
	}
	n.log.Info("test network up", "hosts", cfg.Hosts, "gateway", Gateway(), "switch", names.Switch())
	return n, nil
}

// subnetUser returns an interface of the root namespace with an address
// in Subnet, or "".
func subnetUser(ctx context.Context, run Runner) (string, error) {
	out, err := run(ctx, "ip", "-o", "-4", "addr", "show")
	if err != nil {
		return "", fmt.Errorf("testnet: listing addresses: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "inet" {
				continue
			}
			if p, err := netip.ParsePrefix(f[i+1]); err == nil && Subnet().Contains(p.Addr()) {
				return strings.TrimSuffix(f[1], ":"), nil
			}
		}
	}
	return "", nil
}

func (n *Network) ip(ctx context.Context, args ...string) error {
	_, err := n.run(ctx, "ip", args...)
	return err
}

func (n *Network) build(ctx context.Context, hosts int) error {
	sw := n.names.Switch()
	if err := n.addNamespace(ctx, sw); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"-n", sw, "link", "set", "lo", "up"},
		{"-n", sw, "link", "add", "br0", "type", "bridge"},
		{"-n", sw, "link", "set", "br0", "up"},
	} {
		if err := n.ip(ctx, args...); err != nil {
			return err
		}
	}
	root := n.names.RootLink()
	if err := n.state.add(func(s *stateData) { s.Links = append(s.Links, root) }); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"link", "add", root, "type", "veth", "peer", "name", "gw", "netns", sw},
		{"-n", sw, "link", "set", "gw", "master", "br0", "up"},
		{"addr", "add", netip.PrefixFrom(Gateway(), Subnet().Bits()).String(), "dev", root},
		{"link", "set", root, "up"},
	} {
		if err := n.ip(ctx, args...); err != nil {
			return err
		}
	}
	for i := range hosts {
		h := Host{Index: i, Namespace: n.names.Host(i), Addr: HostAddr(i)}
		if err := n.addNamespace(ctx, h.Namespace); err != nil {
			return err
		}
		port := "h" + strconv.Itoa(i)
		for _, args := range [][]string{
			{"-n", h.Namespace, "link", "set", "lo", "up"},
			{"-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.Namespace},
			{"-n", sw, "link", "set", port, "master", "br0", "up"},
			{"-n", h.Namespace, "addr", "add", netip.PrefixFrom(h.Addr, Subnet().Bits()).String(), "dev", "eth0"},
			{"-n", h.Namespace, "link", "set", "eth0", "up"},
		} {
			if err := n.ip(ctx, args...); err != nil {
				return err
			}
		}
		n.Hosts = append(n.Hosts, h)
	}
	return nil
}

func (n *Network) addNamespace(ctx context.Context, name string) error {
	// Recorded first: a failure half way still gets cleaned up.
	if err := n.state.add(func(s *stateData) { s.Namespaces = append(s.Namespaces, name) }); err != nil {
		return err
	}
	return n.ip(ctx, "netns", "add", name)
}

// Close kills the processes left in the run's namespaces, deletes the
// namespaces and links, and removes the state file.
func (n *Network) Close(ctx context.Context) error {
	data, err := n.state.read()
	if err != nil {
		return err
	}
	if err := teardown(ctx, n.run, n.log, data); err != nil {
		return err
	}
	n.log.Info("test network removed")
	return errors.Join(n.state.remove(), n.lock.Unlock())
}

// teardown removes what a state file lists.
func teardown(ctx context.Context, run Runner, log *slog.Logger, s stateData) error {
	var errs []error
	// Hosts first, so no process keeps a namespace's veth busy.
	for i := len(s.Namespaces) - 1; i >= 0; i-- {
		ns := s.Namespaces[i]
		if !namespaceExists(ns) {
			continue
		}
		if err := killNamespace(ctx, run, log, ns); err != nil {
			errs = append(errs, err)
		}
		if _, err := run(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range s.Links {
		if !linkExists(l) {
			continue
		}
		if _, err := run(ctx, "ip", "link", "del", l); err != nil && linkExists(l) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killNamespace kills (SIGKILL) the processes in namespace ns, by pid, and
// waits briefly for them to go.
func killNamespace(ctx context.Context, run Runner, log *slog.Logger, ns string) error {
	for try := 0; try < 50; try++ {
		out, err := run(ctx, "ip", "netns", "pids", ns)
		if err != nil {
			return fmt.Errorf("processes in %s: %w", ns, err)
		}
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			pid, err := strconv.Atoi(p)
			if err != nil || pid <= 1 || pid == os.Getpid() {
				continue
			}
			if try == 0 {
				log.Debug("killing a process left in a test namespace", "namespace", ns, "pid", pid)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("processes in %s did not exit", ns)
}

func namespaceExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// Command returns a command that runs name inside host h's namespace.
func (h Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Namespace, name}, args...)...)
}

// Switch returns the switch namespace's name.
func (n *Network) Switch() string { return n.names.Switch() }
