package httpapi

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestStreamPollsPerClient: one client (one token) cannot hold more than
// MaxStreamPolls long polls waiting on a node. Each waiting poll holds a
// connection and is woken, and reads the state again, on every applied
// command, so an unbounded number would let one device take the
// listener's connections and multiply the cost of every write. A new
// poll beyond the bound ends the client's oldest waiting one (it answers
// what it has, empty), so a client whose old connection is half-open is
// never refused; another client's polls are never ended.
func TestStreamPollsPerClient(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 5))
			e := newEnv(t, "a.example", nil)
			alice, mallory := e.register("alice", "phone"), e.register("mallory", "x")
			ft := installFakeTimer(e) // never fires
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			bound := e.api.cfg.MaxStreamPolls

			aliceDone := streamAsync(e, ctx, alice, "wait=60")
			waitFor(t, ft.waits, "alice's poll to wait")
			n := bound + 1 + rng.IntN(3*bound)
			var polls []<-chan *httptest.ResponseRecorder
			for i := range n {
				polls = append(polls, streamAsync(e, ctx, mallory, "wait=60"))
				waitFor(t, ft.waits, fmt.Sprintf("mallory's poll %d to wait", i))
			}
			// The oldest n-bound answered, empty; the newest bound still wait.
			for i, done := range polls[:n-bound] {
				select {
				case rec := <-done:
					want(t, rec, http.StatusOK, fmt.Sprint("ended poll ", i))
					if st := decodeJSON[streamOut](t, rec); len(st.Items) != 0 {
						t.Fatalf("ended poll %d: %+v", i, st)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("mallory holds %d polls waiting, want at most %d: poll %d still waits", n-i, bound, i)
				}
			}
			for i, done := range polls[n-bound:] {
				select {
				case rec := <-done:
					t.Fatalf("mallory's poll %d of %d answered (%d), though only %d are newer", n-bound+i, n, rec.Code, bound-1-i)
				default:
				}
			}
			select {
			case rec := <-aliceDone:
				t.Fatalf("mallory's polls ended alice's (%d %s)", rec.Code, rec.Body.String())
			default:
			}
		})
	}
}
