package systemd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/internal/systemtest"
	"github.com/mimihub/mimi-hub/internal/testutil"
)

// unit is the [Service] section of mimi-hub.service: every key with its
// values in order.
type unit map[string][]string

func readUnit(t *testing.T) unit {
	t.Helper()
	f, err := os.Open("mimi-hub.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("unit line %q", line)
			}
			u[k] = append(u[k], v)
		}
	}
	return u
}

// one returns the single value of key.
func (u unit) one(t *testing.T, key string) string {
	t.Helper()
	if len(u[key]) != 1 {
		t.Fatalf("unit: %s has %d values, want 1", key, len(u[key]))
	}
	return u[key][0]
}

// buildHub builds mimi-hub into dir.
func buildHub(t *testing.T, dir string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	bin, err := systemtest.Build(ctx, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestUnitVerifies runs systemd's own check of the unit (pointing
// ExecStart at a built binary, which it requires to exist): any warning,
// such as a misspelt key systemd would ignore, fails.
func TestUnitVerifies(t *testing.T) {
	testutil.RequireTools(t, ".ci/run installs it: apt-get install systemd", "systemd-analyze")
	b, err := os.ReadFile("mimi-hub.service")
	if err != nil {
		t.Fatal(err)
	}
	exec0 := strings.Fields(readUnit(t).one(t, "ExecStart"))[0]
	file := filepath.Join(t.TempDir(), "mimi-hub.service")
	if err := os.WriteFile(file, bytes.ReplaceAll(b, []byte(exec0), []byte(buildHub(t, t.TempDir()))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", file).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSysusersCreatesTheUnitsUser: the sysusers file declares the user and
// group the unit runs as (systemd-sysusers --dry-run on an empty root).
func TestSysusersCreatesTheUnitsUser(t *testing.T) {
	testutil.RequireTools(t, ".ci/run installs it: apt-get install systemd", "systemd-sysusers")
	u := readUnit(t)
	name, group := u.one(t, "User"), u.one(t, "Group")
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	file, err := filepath.Abs("mimi-hub.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-sysusers", "--dry-run", "--root="+root, file).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	for _, want := range []string{fmt.Sprintf("Creating group '%s'", group), fmt.Sprintf("Creating user '%s'", name)} {
		if !strings.Contains(string(out), want) {
			t.Errorf("systemd-sysusers would not do %q:\n%s", want, out)
		}
	}
	if home := "/var/lib/" + u.one(t, "StateDirectory"); !strings.Contains(readFile(t, "mimi-hub.sysusers"), home) {
		t.Errorf("the user's home is not the unit's state directory %s", home)
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var capName = regexp.MustCompile(`^CAP_[A-Z_]+$`)

// privileges turns the unit's User, AmbientCapabilities,
// CapabilityBoundingSet and NoNewPrivileges into setpriv(1) options: what
// systemd does to the process before it runs ExecStart. withAmbient false
// drops the ambient capabilities, as the unit did before.
func privileges(t *testing.T, u unit, uid, gid int, withAmbient bool) []string {
	t.Helper()
	caps := func(key string) []string {
		var out []string
		for _, v := range u[key] {
			for _, c := range strings.Fields(v) {
				if !capName.MatchString(c) {
					t.Fatalf("%s: %q is not a capability", key, c)
				}
				out = append(out, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
		}
		return out
	}
	args := []string{fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", gid), "--clear-groups"}
	if amb := caps("AmbientCapabilities"); withAmbient && len(amb) > 0 {
		list := strings.Join(amb, ",")
		args = append(args, "--inh-caps="+list, "--ambient-caps="+list)
	}
	if bound := caps("CapabilityBoundingSet"); len(bound) > 0 {
		args = append(args, "--bounding-set=-all,"+strings.Join(bound, ","))
	}
	if v := u["NoNewPrivileges"]; len(v) == 1 && v[0] == "true" {
		args = append(args, "--no-new-privs")
	}
	return args
}

// freeUID returns a uid and gid no account uses, standing in for the
// unit's system user (the test does not create accounts on the machine).
func freeUID(t *testing.T) int {
	t.Helper()
	for range 100 {
		id := 60000 + rand.IntN(5000)
		_, uerr := user.LookupId(strconv.Itoa(id))
		_, gerr := user.LookupGroupId(strconv.Itoa(id))
		if uerr != nil && gerr != nil {
			return id
		}
	}
	t.Fatal("no free uid")
	return 0
}

// TestUnitStartsAsItsUser runs the unit's ExecStart the way systemd would
// (setpriv: its user, its ambient and bounding capabilities, no new
// privileges) with deploy/config/node1.json moved onto a loopback address
// but keeping its ports, among them federation on 443. The node must come
// up ready, hold only CAP_NET_BIND_SERVICE, and stop cleanly on SIGTERM
// within TimeoutStopSec. The same run without the ambient capability must
// fail with "bind: permission denied", as the unit did before: the test
// would catch that mistake.
//
// What this cannot show without a running systemd: the sandboxing
// directives (ProtectSystem, PrivateTmp, ...) and StateDirectory, which the
// test stands in for with a data folder owned by the user.
func TestUnitStartsAsItsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root to change user and capabilities, and CI is set: failing rather than skipping")
		}
		t.Skip("needs root to change user and capabilities")
	}
	testutil.RequireTools(t, "util-linux, on every Debian system", "setpriv")
	if testing.Short() {
		t.Skip("-short: builds and runs mimi-hub")
	}
	u := readUnit(t)
	execStart := strings.Fields(u.one(t, "ExecStart"))
	if len(execStart) != 3 || execStart[1] != "-config" {
		t.Fatalf("ExecStart %q: want BINARY -config FILE", execStart)
	}
	uid := freeUID(t)
	stop, _ := time.ParseDuration(u.one(t, "TimeoutStopSec") + "s")

	// A folder the user can reach: the binary, the configuration, the data.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := buildHub(t, dir)
	ip := freeLoopback(t)
	cfg := nodeConfig(t, filepath.Join("..", "config", "node1.json"), ip, filepath.Join(dir, "data"), uid)
	cfgFile := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgFile, cfg.raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, port, _ := net.SplitHostPort(cfg.federation); port != "443" {
		t.Fatalf("node1.json serves federation on %s: the test is about a port below 1024", cfg.federation)
	}

	run := func(withAmbient bool) *testutil.Process {
		args := append(privileges(t, u, uid, uid, withAmbient), "--", bin, "-config", cfgFile)
		return testutil.StartProcess(t, exec.Command("setpriv", args...))
	}

	// As the unit was: no ambient capability.
	p := run(false)
	if err := p.Wait(time.Minute); err == nil || !strings.Contains(p.Output(), "bind: permission denied") {
		t.Fatalf("without the ambient capability: %v, want bind: permission denied:\n%s", err, p.Output())
	}

	// As the unit is.
	p = run(true)
	if err := testutil.WaitHTTP(t.Context(), "http://"+cfg.ops+"/readyz", nil, time.Minute, p.Exited()); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", cfg.federation, 2*time.Second); err != nil {
		t.Errorf("federation on %s: %v", cfg.federation, err)
	} else {
		c.Close()
	}
	status := procStatus(t, p.Pid())
	if status["Uid"][0] != strconv.Itoa(uid) || status["Gid"][0] != strconv.Itoa(uid) {
		t.Errorf("runs as uid %v gid %v, want %d", status["Uid"], status["Gid"], uid)
	}
	const netBindService = "0000000000000400" // bit 10
	for _, k := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
		if got := status[k][0]; got != netBindService {
			t.Errorf("%s = %s, want only CAP_NET_BIND_SERVICE (%s)", k, got, netBindService)
		}
	}
	if status["NoNewPrivs"][0] != "1" {
		t.Errorf("NoNewPrivs = %v", status["NoNewPrivs"])
	}
	p.Signal(syscall.SIGTERM)
	if err := p.Wait(stop); err != nil {
		t.Errorf("after SIGTERM, within TimeoutStopSec: %v", err)
	}
}

// procStatus reads /proc/PID/status into key -> fields.
func procStatus(t *testing.T, pid int) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.Fields(v)
		}
	}
	for _, k := range []string{"Uid", "Gid", "CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs"} {
		if len(out[k]) == 0 {
			t.Fatalf("/proc/%d/status has no %s", pid, k)
		}
	}
	return out
}

// freeLoopback picks a loopback address whose port 443 is free (Linux
// routes all of 127.0.0.0/8 to lo).
func freeLoopback(t *testing.T) string {
	t.Helper()
	for range 50 {
		ip := fmt.Sprintf("127.0.%d.%d", 100+rand.IntN(100), 1+rand.IntN(250))
		ln, err := net.Listen("tcp", ip+":443")
		if err == nil {
			ln.Close()
			return ip
		}
	}
	t.Fatal("no loopback address with port 443 free")
	return ""
}

// testConfig is an example configuration moved onto one loopback address.
type testConfig struct {
	raw             []byte
	federation, ops string
}

// nodeConfig rewrites an example configuration for this machine: every
// listener on ip with the example's port, data in dataDir (made and owned
// by uid, as StateDirectory would be), development certificates instead
// of the files under /etc/mimi-hub, and a single node instead of a join.
func nodeConfig(t *testing.T, file, ip, dataDir string, uid int) testConfig {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal([]byte(readFile(t, file)), &c); err != nil {
		t.Fatal(err)
	}
	out := testConfig{}
	for _, k := range []string{"federation_addr", "client_addr", "ops_addr", "raft_addr", "gossip_addr"} {
		_, port, err := net.SplitHostPort(fmt.Sprint(c[k]))
		if err != nil {
			t.Fatalf("%s: %s: %v", file, k, err)
		}
		c[k] = net.JoinHostPort(ip, port)
	}
	out.federation, out.ops = c["federation_addr"].(string), c["ops_addr"].(string)
	for _, k := range []string{"join", "gossip_key_file", "cert", "key", "peer_ca", "cluster_cert", "cluster_key", "cluster_ca", "public_url"} {
		delete(c, k)
	}
	c["bootstrap_expect"] = 1
	c["data"] = dataDir
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dataDir, uid, uid); err != nil {
		t.Fatal(err)
	}
	raw, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out.raw = raw
	return out
}
