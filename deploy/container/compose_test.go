package container

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/internal/freeport"
	"github.com/mimihub/mimi-hub/internal/pause"
	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/mimi/client"
)

// Bounds of the drill. Every wait ends; every loop writes a bounded number
// of times.
const (
	drillTimeout   = 10 * time.Minute
	readyTimeout   = 3 * time.Minute // image start, elections, the first leader
	writesPerPhase = 10
	maxDuringKill  = 200
	adminToken     = "compose-drill-token"
	domain         = "a.example"
)

// drill is one compose project: the image, the project's name, the
// published ports and the clients of each node.
type drill struct {
	t       *testing.T
	ctx     context.Context
	dir     string // deploy/container
	project string
	image   string
	env     []string
	client  map[string]int // node -> published client API port
	ops     map[string]int // node -> published operations port
	roots   *x509.CertPool

	mu    sync.Mutex
	acked map[string]string // user -> token, for every acknowledged registration
}

// TestComposeDrill builds the image (build.sh), starts compose.yaml's
// three nodes with podman-compose, registers users through the leader,
// kills the leader's container (SIGKILL) while a writer goes on through a
// follower, registers more through the other follower, and checks that
// every acknowledged registration is readable on every surviving node;
// then it starts the killed container again, which must catch up and
// serve them too. It also checks what the image promises: a numeric
// non-root user, a health check that is the binary itself.
func TestComposeDrill(t *testing.T) {
	testutil.RequireTools(t, ".ci/run installs them: apt-get install podman podman-compose runc", "podman", "podman-compose")
	if testing.Short() {
		t.Skip("-short: builds an image and runs three containers")
	}
	ctx, cancel := context.WithTimeout(t.Context(), drillTimeout)
	defer cancel()
	d := newDrill(t, ctx)
	d.build()
	d.up()

	nodes := []string{"n1", "n2", "n3"}
	for _, n := range nodes {
		d.waitReady(n)
	}
	d.checkImage()
	st := d.status("n1")
	leader := st.LeaderID
	var followers []string
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	t.Logf("leader %s, followers %v", leader, followers)
	for _, s := range st.Servers {
		if s.RaftAddr != s.ID+":8446" || s.Suffrage != "voter" {
			t.Errorf("server %+v: want a voter at its service name", s)
		}
	}

	// Phase 1: writes through the leader.
	d.writeN(leader, "before", writesPerPhase)

	// A writer through the first follower spans the kill.
	stop := make(chan struct{})
	during := make(chan int, 1)
	go func() { during <- d.writeUntil(followers[0], "during", stop) }()
	pause.For(ctx, 300*time.Millisecond)
	killed := time.Now()
	d.podman("kill", "--signal", "KILL", d.container(leader))
	t.Logf("killed %s's container", leader)

	// Phase 2: writes through the other follower, once a new leader took over.
	d.writeN(followers[1], "after", writesPerPhase)
	t.Logf("%d writes through %s acknowledged %v after the kill", writesPerPhase, followers[1], time.Since(killed).Round(time.Millisecond))
	close(stop)
	t.Logf("%d writes through %s acknowledged while the leader died", <-during, followers[0])
	if st := d.status(followers[1]); st.LeaderID == leader || st.LeaderID == "" {
		t.Fatalf("after the kill the leader is %q", st.LeaderID)
	}

	// Nothing acknowledged is lost, on either survivor.
	for _, n := range followers {
		d.verifyAll(n)
	}

	// The killed container comes back (perhaps at another IP: the Raft
	// configuration holds its name) and catches up.
	d.podman("start", d.container(leader))
	d.waitReady(leader)
	d.verifyAll(leader)
	for _, n := range nodes {
		if out, err := d.podmanErr("healthcheck", "run", d.container(n)); err != nil {
			t.Errorf("health check of %s: %v: %s", n, err, out)
		}
	}
	d.mu.Lock()
	t.Logf("%d acknowledged writes, 0 lost", len(d.acked))
	d.mu.Unlock()
}

func newDrill(t *testing.T, ctx context.Context) *drill {
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	suffix := strconv.FormatUint(rand.Uint64()%1e9, 36)
	d := &drill{t: t, ctx: ctx, dir: dir, project: "mimidrill" + suffix, image: "localhost/mimi-hub:drill-" + suffix,
		client: map[string]int{}, ops: map[string]int{}, acked: map[string]string{}}
	d.env = append(os.Environ(), "MIMI_HUB_IMAGE="+d.image, "MIMI_HUB_ADMIN_TOKEN="+adminToken, "MIMI_HUB_DOMAIN="+domain)
	if os.Getenv("CONTAINERS_CONF") == "" {
		// The settings this repository's hosts need (containers.conf says why).
		d.env = append(d.env, "CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"))
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		for _, m := range []map[string]int{d.client, d.ops} {
			port, err := freeport.Get("127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			m[n] = port
		}
		up := strings.ToUpper(n)
		d.env = append(d.env, fmt.Sprintf("MIMI_%s_CLIENT_PORT=%d", up, d.client[n]), fmt.Sprintf("MIMI_%s_OPS_PORT=%d", up, d.ops[n]))
	}
	return d
}

func (d *drill) container(node string) string { return d.project + "_" + node + "_1" }

// run runs a command with the drill's environment, bounded by the drill.
func (d *drill) run(name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(d.ctx, name, args...)
	cmd.Env = d.env
	cmd.Dir = d.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out, nil
}

func (d *drill) podmanErr(args ...string) ([]byte, error) { return d.run("podman", args...) }

func (d *drill) podman(args ...string) []byte {
	d.t.Helper()
	out, err := d.podmanErr(args...)
	if err != nil {
		d.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// build runs build.sh, as an operator would, and removes the image at the
// end.
func (d *drill) build() {
	d.t.Helper()
	start := time.Now()
	if out, err := d.run("./build.sh", d.image); err != nil {
		d.t.Fatalf("%v\n%s", err, out)
	}
	d.t.Logf("built %s in %v", d.image, time.Since(start).Round(time.Millisecond))
	d.t.Cleanup(func() { d.cleanupRun("podman", "rmi", "--force", d.image) })
}

// up starts the project and registers its teardown (containers, volumes,
// network), which also runs when the test fails, after the nodes' logs.
func (d *drill) up() {
	d.t.Helper()
	d.t.Cleanup(func() {
		if d.t.Failed() {
			for _, n := range []string{"n1", "n2", "n3"} {
				out, _ := exec.Command("podman", "logs", "--tail", "40", d.container(n)).CombinedOutput()
				d.t.Logf("logs of %s:\n%s", n, out)
			}
		}
		d.cleanupRun("podman-compose", "-p", d.project, "-f", "compose.yaml", "down", "-v")
		d.cleanupRun("podman", "network", "rm", "--force", d.project+"_default")
	})
	if out, err := d.run("podman-compose", "-p", d.project, "-f", "compose.yaml", "up", "-d"); err != nil {
		d.t.Fatalf("%v\n%s", err, out)
	}
}

// cleanupRun runs a teardown command with its own deadline (the drill's
// context may have ended) and reports a failure without stopping the
// other teardown steps.
func (d *drill) cleanupRun(name string, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env, cmd.Dir = d.env, d.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		d.t.Errorf("teardown: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

var opsClient = &http.Client{Timeout: 3 * time.Second}

// opsGet GETs an operations endpoint of node.
func (d *drill) opsGet(node, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(d.ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", d.ops[node], path), nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := opsClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}

// waitReady waits until node's /readyz answers 200.
func (d *drill) waitReady(node string) {
	d.t.Helper()
	if err := testutil.WaitHTTP(d.ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", d.ops[node]), nil, readyTimeout, nil); err != nil {
		d.t.Fatalf("%s: %v", node, err)
	}
}

func (d *drill) status(node string) cluster.ClusterStatus {
	d.t.Helper()
	code, body, err := d.opsGet(node, "/v1/cluster/status")
	if err != nil || code != http.StatusOK {
		d.t.Fatalf("cluster status from %s: %d %s %v", node, code, body, err)
	}
	var st cluster.ClusterStatus
	if err := json.Unmarshal(body, &st); err != nil {
		d.t.Fatal(err)
	}
	return st
}

// checkImage: the image runs as a numeric non-root user and checks its
// own health; the containers' processes really run as that user.
func (d *drill) checkImage() {
	d.t.Helper()
	cfg := strings.TrimSpace(string(d.podman("image", "inspect", "--format", "{{.Config.User}} {{json .Config.Healthcheck.Test}}", d.image)))
	if cfg != `65532:65532 ["CMD","/mimi-hub","healthcheck"]` {
		d.t.Errorf("image user and health check: %s", cfg)
	}
	pid := strings.TrimSpace(string(d.podman("inspect", "--format", "{{.State.Pid}}", d.container("n1"))))
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		d.t.Fatalf("the container's process: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" && f[1] != "65532" {
			d.t.Errorf("the container's process runs as uid %s, want 65532", f[1])
		}
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if out, err := d.podmanErr("healthcheck", "run", d.container(n)); err != nil {
			d.t.Errorf("health check of ready %s: %v: %s", n, err, out)
		}
	}
}

// caPool reads the development CA the first node made in the shared
// volume (podman cp works on an image without a shell).
func (d *drill) caPool() *x509.CertPool {
	d.t.Helper()
	if d.roots == nil {
		file := filepath.Join(d.t.TempDir(), "dev-ca.pem")
		d.podman("cp", d.container("n1")+":/ca/dev-ca.pem", file)
		pem, err := os.ReadFile(file)
		if err != nil {
			d.t.Fatal(err)
		}
		d.roots = x509.NewCertPool()
		if !d.roots.AppendCertsFromPEM(pem) {
			d.t.Fatalf("no certificate in %s", file)
		}
	}
	return d.roots
}

func (d *drill) user(node, token string) *client.User {
	d.t.Helper()
	u, err := client.NewUser(client.UserConfig{
		BaseURL: fmt.Sprintf("https://127.0.0.1:%d", d.client[node]),
		TLS:     &tls.Config{RootCAs: d.caPool()},
		Token:   token,
		Timeout: 15 * time.Second,
		Tries:   5,
	})
	if err != nil {
		d.t.Fatal(err)
	}
	return u
}

// register registers a new user through node; an acknowledged
// registration is recorded.
func (d *drill) register(node, name string) error {
	u := d.user(node, "")
	reg, err := u.Register(d.ctx, name, "phone", nil)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.acked[name] = reg.Token
	d.mu.Unlock()
	return nil
}

// writeN registers n users through node, each retried until acknowledged
// (bounded by the drill).
func (d *drill) writeN(node, phase string, n int) {
	d.t.Helper()
	for i := range n {
		name := fmt.Sprintf("%s-%s-%d", phase, node, i)
		for {
			err := d.register(node, name)
			if err == nil {
				break
			}
			if !pause.For(d.ctx, 200*time.Millisecond) {
				d.t.Fatalf("register %s through %s: %v (last error %v)", name, node, d.ctx.Err(), err)
			}
		}
	}
}

// writeUntil registers users through node until stop is closed (at most
// maxDuringKill attempts) and returns how many were acknowledged. Failures
// are expected while the leader is gone; they are simply not counted.
func (d *drill) writeUntil(node string, phase string, stop <-chan struct{}) int {
	acked := 0
	for i := range maxDuringKill {
		select {
		case <-stop:
			return acked
		default:
		}
		if err := d.register(node, fmt.Sprintf("%s-%s-%d", phase, node, i)); err == nil {
			acked++
		} else if !pause.For(d.ctx, 100*time.Millisecond) {
			return acked
		}
	}
	return acked
}

// verifyAll checks every acknowledged registration through node: its
// token authenticates as the user it was issued to.
func (d *drill) verifyAll(node string) {
	d.t.Helper()
	d.mu.Lock()
	acked := make(map[string]string, len(d.acked))
	for k, v := range d.acked {
		acked[k] = v
	}
	d.mu.Unlock()
	names := make([]string, 0, len(acked))
	for name := range acked {
		names = append(names, name)
	}
	slices.Sort(names)
	var lost []string
	for _, name := range names {
		id, err := d.user(node, acked[name]).WhoAmI(d.ctx)
		var apiErr *client.StatusError
		switch {
		case err == nil && strings.HasSuffix(string(id.User), "/u/"+name):
		case err == nil:
			d.t.Errorf("%s: the token of %s authenticates as %s", node, name, id.User)
		case errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized:
			lost = append(lost, name)
		default:
			d.t.Fatalf("%s: whoami of %s: %v", node, name, err)
		}
	}
	if len(lost) > 0 {
		d.t.Fatalf("%s: %d of %d acknowledged registrations lost: %v", node, len(lost), len(names), lost)
	}
	d.t.Logf("%s serves all %d acknowledged registrations", node, len(names))
}
