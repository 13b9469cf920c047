//go:build linux

package hub_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/internal/testutil"
)

// The file descriptor test runs a node in a child process (this test
// binary again), whose descriptor limit it lowers once the node runs.
const (
	fdChildEnv = "MIMI_ABUSE_FD_CHILD" // the folder the child writes its credentials into
	fdReady    = "FD-CHILD-READY "
	// fdHeadroom is how many descriptors the child may open beyond those
	// it holds when it lowers its limit.
	fdHeadroom = 64
)

// fdChild describes the child's node to the parent.
type fdChild struct {
	Client, Federation, Ops, Raft string
	Limit                         uint64
}

// TestAbuseFDExhaustionChild is the node of TestAbuseFDExhaustion, in a
// process of its own; it skips unless that test started it.
func TestAbuseFDExhaustionChild(t *testing.T) {
	dir := os.Getenv(fdChildEnv)
	if dir == "" {
		t.Skip("the child process of TestAbuseFDExhaustion: it runs when that test starts it")
	}
	c := testutil.StartCluster(t, testutil.ClusterOptions{}, 1)
	n := c.Nodes[0]
	// What the parent needs to talk to every listener: the provider's
	// CA, and a node certificate of the cluster CA for the Raft port.
	must(t, os.WriteFile(filepath.Join(dir, "ca.pem"), c.CA.PEM, 0o600), "write CA")
	must(t, os.WriteFile(filepath.Join(dir, "cluster-ca.pem"), c.ClusterCA.PEM, 0o600), "write cluster CA")
	nodeCert, err := c.ClusterCA.Issue("parent.node.test")
	must(t, err, "issue")
	must(t, devca.WriteCert(nodeCert, filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem")), "write node certificate")

	fds, err := os.ReadDir("/proc/self/fd")
	must(t, err, "count descriptors")
	limit := uint64(len(fds) + fdHeadroom)
	must(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: limit, Max: limit}), "lower the descriptor limit")
	desc, _ := json.Marshal(fdChild{Client: n.Config.ClientAddr, Federation: n.Config.FederationAddr, Ops: n.Config.OpsAddr, Raft: n.Config.RaftAddr, Limit: limit})
	fmt.Println(fdReady + string(desc))
	// Serve until the parent closes stdin.
	io.Copy(io.Discard, os.Stdin)
}

// TestAbuseFDExhaustion: a crowd of idle connections exhausts a node's
// file descriptors (its limit lowered to what it holds plus 64): its
// listeners fail to accept (EMFILE), log it once and retry. When the crowd
// leaves, every listener serves again without a restart: the client API,
// the federation endpoints, the operations listener and the Raft port
// (its internal channel answers a node), and a write commits.
func TestAbuseFDExhaustion(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^TestAbuseFDExhaustionChild$", "-test.v", "-test.timeout", "4m")
	cmd.Env = append(os.Environ(), fdChildEnv+"="+dir, "MLS_TEST_VECTORS="+os.Getenv("MLS_TEST_VECTORS"))
	stdin, err := cmd.StdinPipe()
	must(t, err, "stdin")
	stdout, err := cmd.StdoutPipe()
	must(t, err, "stdout")
	cmd.Stderr = cmd.Stdout
	must(t, cmd.Start(), "start the child")
	defer func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("the child: %v", err)
		}
	}()

	// The child's output: its address line, then its logs, watched for
	// the listeners' accept failures.
	ready := make(chan fdChild, 1)
	var mu sync.Mutex
	var failing []string
	var lines []string
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			lines = append(lines, line)
			if strings.Contains(line, "accepting connections failed") {
				failing = append(failing, line)
			}
			mu.Unlock()
			if rest, ok := strings.CutPrefix(line, fdReady); ok {
				var c fdChild
				if json.Unmarshal([]byte(rest), &c) == nil {
					ready <- c
				}
			}
		}
	}()
	var child fdChild
	select {
	case child = <-ready:
	case <-ctx.Done():
		mu.Lock()
		t.Fatalf("the child did not start:\n%s", strings.Join(lines, "\n"))
	}

	roots := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	roots.AppendCertsFromPEM(caPEM)
	clusterRoots := x509.NewCertPool()
	clusterPEM, _ := os.ReadFile(filepath.Join(dir, "cluster-ca.pem"))
	clusterRoots.AppendCertsFromPEM(clusterPEM)
	nodeCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem"))
	must(t, err, "load the node certificate")

	// The crowd: idle connections to every listener, from four addresses
	// (the per-address bound is not what this test is about).
	var crowd []net.Conn
	defer func() {
		for _, c := range crowd {
			c.Close()
		}
	}()
	for _, addr := range []string{child.Client, child.Federation, child.Ops, child.Raft} {
		for i := range 4 * int(child.Limit) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i%4))}, Timeout: 2 * time.Second}
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				break // the backlog is full
			}
			crowd = append(crowd, c)
		}
	}
	t.Logf("%d idle connections against a limit of %d descriptors", len(crowd), child.Limit)
	waitFor(t, "the child's listeners to run out of descriptors", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(failing) > 0
	})
	for _, c := range crowd {
		c.Close()
	}
	crowd = nil

	// Every listener serves again.
	fed := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "a.example"}}}
	raft := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		d := tls.Dialer{Config: &tls.Config{RootCAs: clusterRoots, ServerName: "n1.node.test", Certificates: []tls.Certificate{nodeCert}}}
		c, err := d.DialContext(ctx, "tcp", child.Raft)
		if err != nil {
			return nil, err
		}
		if _, err := c.Write([]byte{'I', 0}); err != nil { // the internal channel, no cluster id
			c.Close()
			return nil, err
		}
		return c, nil
	}}}
	ops := &http.Client{Timeout: 5 * time.Second}
	for _, check := range []struct {
		what   string
		client *http.Client
		url    string
		want   int
	}{
		{"the client API", fed, "https://" + child.Client + "/v1/whoami", http.StatusUnauthorized},
		{"the federation endpoints", fed, "https://" + child.Federation + "/.well-known/mimi-protocol-directory", http.StatusOK},
		{"the operations listener", ops, "http://" + child.Ops + "/healthz", http.StatusOK},
		{"the Raft port's internal channel", raft, "https://n1/cluster/v1/node", http.StatusOK},
	} {
		waitFor(t, check.what+" to serve again", func() bool {
			resp, err := check.client.Get(check.url)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == check.want
		})
	}
	// And a write commits.
	resp, err := fed.Post("https://"+child.Client+"/v1/register", "application/json", strings.NewReader(`{"user":"after","device":"d"}`))
	must(t, err, "register after the attack")
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register after the attack: HTTP %d", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("accept failures logged:\n%s", strings.Join(failing, "\n"))
	perListener := map[string]int{}
	for _, l := range failing {
		_, after, _ := strings.Cut(l, "listener=")
		name, _, _ := strings.Cut(after, " ")
		if perListener[name]++; perListener[name] > 1 {
			t.Errorf("listener %s logged its failures %d times; at most once a minute", name, perListener[name])
		}
	}
}
