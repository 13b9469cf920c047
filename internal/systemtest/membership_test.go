package systemtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/mimi/client"
)

// removeAfter is the tests' -dead-node-remove-after: short, so that the
// removal rules are seen at work within seconds.
const removeAfter = 2 * time.Second

// TestReplaceDeadNode kills a follower of a 3-node hub with SIGKILL, then
// brings in a new node (a new -node-id, -bootstrap-expect 0, -join).
//
// It proves the membership rules of the design: a failed voter is not
// removed while its removal would leave fewer voters than the cluster was
// bootstrapped with, even long after -dead-node-remove-after; the new node
// joins as a non-voter, is promoted once caught up, and only then is the
// dead node removed, so the cluster never has fewer than three voters; the
// cluster serves writes throughout; the new node serves linearizable reads
// of everything written before it came.
func TestReplaceDeadNode(t *testing.T) {
	w := newWorld(t, worldOptions{nodes: 3, flags: []string{"-dead-node-remove-after", removeAfter.String()}})
	ctx := w.ctx()
	leader, err := w.a.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var victim *Node
	for _, n := range w.a.Nodes() {
		if n != leader {
			victim = n
		}
	}
	reg := newRegistrar(t, w)
	reg.register(ctx, 5)

	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	t.Logf("killed follower %s", victim.ID)
	reg.register(ctx, 5) // two voters of three are a quorum

	// The dead voter stays: removing it would leave two voters, fewer
	// than the three the cluster was bootstrapped with.
	view := newMembershipView(t, w)
	failedSince := time.Time{}
	for failedSince.IsZero() || time.Since(failedSince) < 3*removeAfter {
		if time.Since(killedAt) > wait {
			t.Fatalf("gossip never reported %s failed", victim.ID)
		}
		if st := view.observe(ctx); st != nil {
			s, ok := st.server(victim.ID)
			if !ok || s.Suffrage != "voter" {
				t.Fatalf("%s was removed from the Raft configuration, leaving %v: below the bootstrap size", victim.ID, st.voters)
			}
			if s.Gossip == cluster.StatusFailed && failedSince.IsZero() {
				failedSince = time.Now()
				t.Logf("gossip reports %s failed %v after the kill", victim.ID, failedSince.Sub(killedAt).Round(time.Millisecond))
			}
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The replacement joins, is promoted, and the dead node goes.
	n4, err := w.a.AddNode("n4")
	if err != nil {
		t.Fatal(err)
	}
	if err := n4.Start(); err != nil {
		t.Fatal(err)
	}
	startedAt := time.Now()
	stop := make(chan struct{})
	var writes atomic.Int64
	go func() { // writes go on during the change
		for {
			select {
			case <-stop:
				return
			default:
			}
			if reg.registerOne(ctx) == nil {
				writes.Add(1)
			}
		}
	}()
	for {
		if time.Since(startedAt) > wait {
			close(stop)
			t.Fatalf("the membership change did not complete; observed: %s", view.history())
		}
		if st := view.observe(ctx); st != nil {
			_, victimIn := st.server(victim.ID)
			s4, n4In := st.server("n4")
			if !victimIn && n4In && s4.Suffrage == "voter" {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	t.Logf("n4 promoted and %s removed %v after n4 started, %d writes meanwhile; observed: %s", victim.ID, time.Since(startedAt).Round(time.Millisecond), writes.Load(), view.history())
	if writes.Load() == 0 {
		t.Error("no write succeeded during the membership change")
	}
	view.checkOrder(victim.ID, "n4")
	for _, msg := range []string{"adding a node as non-voter", "promoting a caught-up non-voter"} {
		if countAllWith(w.a, msg, "id=n4") == 0 {
			t.Errorf("no leader logged %q for n4", msg)
		}
	}
	if countAllWith(w.a, "removing a server", "id="+victim.ID) == 0 {
		t.Errorf("no leader logged the removal of %s", victim.ID)
	}

	// n4 serves linearizable reads of everything written so far.
	reg.register(ctx, 3)
	reg.checkOn(ctx, n4)
}

// registrar registers throwaway clients (each registration is one Raft
// write) and remembers their tokens.
type registrar struct {
	t      *testing.T
	w      *world
	n      atomic.Int64
	tokens []string
}

func newRegistrar(t *testing.T, w *world) *registrar { return &registrar{t: t, w: w} }

// registerOne registers one client through any serving node.
func (r *registrar) registerOne(ctx context.Context) error {
	u := r.w.user(r.w.a, nil)
	i := r.n.Add(1)
	_, err := u.Register(ctx, fmt.Sprintf("user%d", i), "d", nil)
	return err
}

// register registers n clients, failing the test on any error, and keeps
// their tokens.
func (r *registrar) register(ctx context.Context, n int) {
	r.t.Helper()
	for range n {
		u := r.w.user(r.w.a, nil)
		i := r.n.Add(1)
		if _, err := u.Register(ctx, fmt.Sprintf("user%d", i), "d", nil); err != nil {
			r.t.Fatalf("register user%d: %v", i, err)
		}
		r.tokens = append(r.tokens, u.Token())
	}
}

// checkOn asks node n, and only it, who each kept token's client is: the
// client API authenticates against n's state, confirming a miss with a
// linearizable read, so every client registered before must be known.
func (r *registrar) checkOn(ctx context.Context, n *Node) {
	r.t.Helper()
	for _, tok := range r.tokens {
		id, err := r.w.pinnedUser(r.w.a, n, tok).WhoAmI(ctx)
		if err != nil {
			r.t.Fatalf("%s does not know a client registered earlier: %v", n.ID, err)
		}
		want, _ := client.TokenClient(tok)
		if id.Client != want {
			r.t.Fatalf("%s says the token is %s's, want %s", n.ID, id.Client, want)
		}
	}
}

// membershipView polls the leader's GET /v1/cluster/status and keeps the
// sequence of Raft configurations seen.
type membershipView struct {
	t      *testing.T
	w      *world
	seen   []string // distinct configurations, in order, e.g. "n1,n2,n3|n4"
	states []*config
}

// config is one observed Raft configuration.
type config struct {
	voters, nonvoters []string
	servers           []cluster.ServerStatus
}

func (c *config) server(id string) (cluster.ServerStatus, bool) {
	i := slices.IndexFunc(c.servers, func(s cluster.ServerStatus) bool { return s.ID == id })
	if i < 0 || c.servers[i].Suffrage == "none" {
		return cluster.ServerStatus{}, false
	}
	return c.servers[i], true
}

func (c *config) String() string {
	return strings.Join(c.voters, ",") + "|" + strings.Join(c.nonvoters, ",")
}

func newMembershipView(t *testing.T, w *world) *membershipView {
	return &membershipView{t: t, w: w}
}

// observe reads the configuration from the leader (nil when there is
// none right now).
func (v *membershipView) observe(ctx context.Context) *config {
	leader, _, err := v.w.a.Leader(ctx)
	if err != nil {
		return nil
	}
	st, err := leader.ClusterStatus(ctx)
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		v.t.Fatalf("%s has no /v1/cluster/status: %v", leader.ID, err)
	}
	if err != nil {
		return nil
	}
	c := &config{servers: st.Servers}
	for _, s := range st.Servers {
		switch s.Suffrage {
		case "voter":
			c.voters = append(c.voters, s.ID)
		case "nonvoter":
			c.nonvoters = append(c.nonvoters, s.ID)
		}
	}
	slices.Sort(c.voters)
	slices.Sort(c.nonvoters)
	if len(c.voters) < 3 {
		v.t.Errorf("the Raft configuration has %d voters (%s): below the bootstrap size of 3", len(c.voters), c)
	}
	if s := c.String(); len(v.seen) == 0 || v.seen[len(v.seen)-1] != s {
		v.seen = append(v.seen, s)
		v.states = append(v.states, c)
	}
	return c
}

func (v *membershipView) history() string {
	return strings.Join(v.seen, " -> ")
}

// checkOrder checks that the new node came in as a non-voter, and that
// the dead node left the configuration only after the new one was a voter.
func (v *membershipView) checkOrder(dead, added string) {
	for _, c := range v.states {
		if s, ok := c.server(added); ok {
			if s.Suffrage != "nonvoter" {
				v.t.Errorf("%s came in as a %s: %s", added, s.Suffrage, v.history())
			}
			break
		}
	}
	for _, c := range v.states {
		if _, in := c.server(dead); in {
			continue
		}
		if s, ok := c.server(added); !ok || s.Suffrage != "voter" {
			v.t.Errorf("%s was removed before %s was a voter: %s", dead, added, v.history())
		}
		return
	}
}

// countAllWith counts log lines holding both a and b over every node.
func countAllWith(p *Provider, a, b string) int {
	c := 0
	for _, n := range p.Nodes() {
		s, err := n.Log()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(s, "\n") {
			if strings.Contains(line, a) && strings.Contains(line, b) {
				c++
			}
		}
	}
	return c
}
