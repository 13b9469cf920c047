package hub_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// The abuse suite attacks real listeners of in-process providers the way
// issue 13 measured: bodies that never arrive, oversized and refused
// bodies, fanout floods, a client over its budget; TestAbuseFDExhaustion
// (abuse_fd_test.go) exhausts a node's file descriptors. Every attack must
// leave the node serving and, where it was refused, no trace in Raft.

// lastIndex is the index of the last entry of a node's Raft log.
func lastIndex(t *testing.T, p *testutil.Provider) uint64 {
	t.Helper()
	return p.Hub(t).Store().Node().Stats().LastLogIndex
}

// dialFrom opens a TLS connection to addr from the local address from
// (127.0.0.x), or fails with the handshake's error.
func dialFrom(from, addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// clientFrom returns an HTTP client of the provider's client API whose
// connections come from the local address from.
func clientFrom(p *testutil.Provider, from string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: testutil.Wait, Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: p.ClientTLS()}}
}

// register registers user/device through c and returns the token.
func register(t *testing.T, c *http.Client, p *testutil.Provider, user string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"user": user, "device": "d"})
	resp, err := c.Post(p.ClientURL()+"/v1/register", "application/json", bytes.NewReader(body))
	must(t, err, "register "+user)
	defer resp.Body.Close()
	var out struct{ Token string }
	if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&out) != nil {
		t.Fatalf("register %s: HTTP %d", user, resp.StatusCode)
	}
	return out.Token
}

// TestAbuseSlowBodies: clients that send a request's headers and a
// Content-Length but never the body are answered 408 and disconnected
// after the body deadline, on the client API, the federation endpoints
// and the operations listener; an address opening more connections than
// its bound has the extra ones closed at once; meanwhile a client from
// another address registers and is served, and Raft logs nothing for the
// attack.
func TestAbuseSlowBodies(t *testing.T) {
	const perAddr = 20
	nw := testutil.StartNetwork(t, testutil.Options{Configure: func(cfg *hub.Config) {
		cfg.Limits.BodyTimeout = time.Second
		cfg.MaxConnsPerAddr = perAddr
	}}, domainA)
	a := nw.Provider(domainA)
	before := lastIndex(t, a)
	certB := nw.Issue(domainB)
	targets := []struct {
		name, addr, request string
		tls                 *tls.Config
	}{
		{"client API", a.Config.ClientAddr, "POST /v1/register HTTP/1.1\r\nHost: a.example\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", a.ClientTLS()},
		{"federation", a.Config.FederationAddr, "POST /fanout/r HTTP/1.1\r\nHost: a.example\r\nMimi-Sequence: 1\r\nContent-Length: 1000\r\n\r\n",
			&tls.Config{RootCAs: nw.CA.Pool(), ServerName: domainA, Certificates: []tls.Certificate{certB}}},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			var held []*tls.Conn
			refused := 0
			for range 2 * perAddr {
				c, err := dialFrom("127.0.0.1", tg.addr, tg.tls)
				if err != nil {
					refused++ // closed at accept: the handshake fails
					continue
				}
				defer c.Close()
				if _, err := io.WriteString(c, tg.request); err != nil {
					refused++
					continue
				}
				held = append(held, c)
			}
			if len(held) > perAddr || refused < perAddr {
				t.Fatalf("one address held %d connections (%d refused); the bound is %d", len(held), refused, perAddr)
			}
			// Another address is served while the attack holds its slots.
			hc := clientFrom(a, "127.0.0.2")
			token := register(t, hc, a, "legit-"+strings.ReplaceAll(tg.name, " ", "-"))
			req, _ := http.NewRequest(http.MethodGet, a.ClientURL()+"/v1/whoami", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("a client from another address: %v %v", resp, err)
			}
			// Every held connection is answered 408 and closed by the
			// server, long before the test's own deadline.
			var wg sync.WaitGroup
			errs := make(chan error, len(held))
			for _, c := range held {
				wg.Go(func() {
					c.SetReadDeadline(time.Now().Add(testutil.Wait))
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					if err != nil {
						errs <- fmt.Errorf("no answer: %w", err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusRequestTimeout {
						errs <- fmt.Errorf("HTTP %d, want 408", resp.StatusCode)
						return
					}
					if _, err := c.Read(make([]byte, 1)); err == nil {
						errs <- fmt.Errorf("the connection stayed open after the 408")
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		})
	}

	t.Run("operations listener", func(t *testing.T) {
		c, err := net.Dial("tcp", a.Config.OpsAddr)
		must(t, err, "dial ops")
		defer c.Close()
		io.WriteString(c, "POST /v1/cluster/join HTTP/1.1\r\nHost: ops\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(testutil.Wait))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer to a body that never came: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("HTTP %d to a body that never came", resp.StatusCode)
		}
	})

	// Two registrations by the legitimate clients; nothing else.
	if after := lastIndex(t, a); after != before+2 {
		t.Fatalf("the log grew from %d to %d; want exactly the 2 registrations", before, after)
	}
}

// fedPost posts body to a federation path of p's network as peer cert.
func fedPost(t *testing.T, nw *testutil.Network, cert *tls.Certificate, path string, header http.Header, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(opCtx(t), http.MethodPost, "https://"+domainA+path, bytes.NewReader(body))
	must(t, err, "request")
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := nw.PeerClient(cert).Do(req)
	must(t, err, "POST "+path)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// apiPost posts a JSON body to the client API with a token.
func apiPost(t *testing.T, p *testutil.Provider, hc *http.Client, token, path string, body any) *http.Response {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(opCtx(t), http.MethodPost, p.ClientURL()+path, bytes.NewReader(b))
	must(t, err, "request")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	must(t, err, "POST "+path)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// privateMessage is an application message of room id carrying n bytes,
// naming sender: well formed for a hub, which cannot decrypt it.
func privateMessage(id, sender proto.URI, n int) []byte {
	return wire.MustMarshal(&mls.Message{Version: mls.MLS10, WireFormat: mls.WirePrivateMessage, Private: &mls.PrivateMessage{GroupID: []byte(id), Epoch: 1,
		ContentType: mls.ContentApplication, AuthenticatedData: []byte(sender), EncryptedSenderData: []byte("s"), Ciphertext: make([]byte, n)}})
}

// TestAbuseRefusedBodies: oversized bodies (413) and requests the state
// refuses at once (a room that does not exist, a sender who is not a
// member, fanout nobody here follows, a message for another epoch) are
// answered without a single Raft entry, through the client API and the
// federation endpoints alike.
func TestAbuseRefusedBodies(t *testing.T) {
	nw := testutil.StartNetwork(t, testutil.Options{}, domainA)
	a := nw.Provider(domainA)
	alice := newParty(t, a, "alice", "phone", nil)
	roomID, err := alice.m.CreateRoom(opCtx(t), "r", proto.DefaultPolicy())
	must(t, err, "create room")
	hc := clientFrom(a, "127.0.0.1")
	token := register(t, hc, a, "mallory")
	mallory := proto.ClientURI(domainA, "mallory", "d")
	certB := nw.Issue(domainB)
	roomPath := func(room proto.URI, op string) string {
		id, _ := room.Parse()
		return "/v1/rooms/" + id.Domain + "/" + id.Room + "/" + op
	}
	nowhere := proto.RoomURI(domainA, "nowhere")
	seq := func(n int) http.Header { return http.Header{"Mimi-Sequence": {strconv.Itoa(n)}} }
	fanout := func(room proto.URI, n int) []byte {
		return wire.MustMarshal(&proto.FanoutBatch{{Message: must1(mls.DecodeMessage(privateMessage(room, "", n))), Timestamp: 1}})
	}
	stale := commitOf(t, capture(t, alice.m, func(m *client.Member) error { return m.CommitPending(opCtx(t), roomID) }))
	must(t, alice.m.CommitPending(opCtx(t), roomID), "Alice moves the room to its next epoch")
	before := lastIndex(t, a)
	cases := []struct {
		name string
		do   func() *http.Response
		want int
	}{
		{"an 8 MiB client message to a room that does not exist", func() *http.Response {
			return apiPost(t, a, hc, token, roomPath(nowhere, "messages"), map[string][]byte{"message": privateMessage(nowhere, mallory, 8<<20)})
		}, http.StatusRequestEntityTooLarge},
		{"a 512 KiB client message to a room that does not exist", func() *http.Response {
			return apiPost(t, a, hc, token, roomPath(nowhere, "messages"), map[string][]byte{"message": privateMessage(nowhere, mallory, 512<<10)})
		}, http.StatusNotFound},
		{"a message from a client who is not a member", func() *http.Response {
			return apiPost(t, a, hc, token, roomPath(roomID, "messages"), map[string][]byte{"message": privateMessage(roomID, mallory, 512<<10)})
		}, http.StatusOK}, // answered notAllowed (the seed's code), not logged
		{"a 16 MiB federation message", func() *http.Response {
			return fedPost(t, nw, &certB, "/provisionalMessage/r", http.Header{"Expect": {"100-continue"}}, privateMessage(roomID, proto.ClientURI(domainB, "b", "d"), 16<<20))
		}, http.StatusRequestEntityTooLarge},
		{"a federation message to a room that does not exist", func() *http.Response {
			return fedPost(t, nw, &certB, "/provisionalMessage/nowhere", nil, privateMessage(nowhere, proto.ClientURI(domainB, "b", "d"), 100))
		}, http.StatusNotFound},
		{"a commit to a room that does not exist", func() *http.Response {
			return fedPost(t, nw, &certB, "/updateRoom/nowhere", nil, stale)
		}, http.StatusNotFound},
		{"a commit for a past epoch", func() *http.Response {
			return fedPost(t, nw, &certB, "/updateRoom/r", nil, stale)
		}, http.StatusOK}, // answered wrongEpoch, not logged
		{"17 MiB of fanout", func() *http.Response {
			// With Expect: 100-continue the refusal comes before the body
			// is sent, as it would for a careful peer; a careless one is
			// cut off while sending.
			h := seq(1)
			h.Set("Expect", "100-continue")
			return fedPost(t, nw, &certB, "/fanout/far", h, make([]byte, 17<<20))
		}, http.StatusRequestEntityTooLarge},
		{"fanout for a room nobody here follows", func() *http.Response {
			return fedPost(t, nw, &certB, "/fanout/far", seq(1), fanout(proto.RoomURI(domainB, "far"), 1<<20))
		}, http.StatusNoContent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if resp := c.do(); resp.StatusCode != c.want {
				t.Fatalf("HTTP %d, want %d", resp.StatusCode, c.want)
			}
			if after := lastIndex(t, a); after != before {
				t.Fatalf("the log grew from %d to %d", before, after)
			}
		})
	}
	// The room still works.
	must(t, alice.m.Send(opCtx(t), roomID, []byte("still here")), "Alice sends")
}

func must1[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestAbuseFanoutFlood: a hub floods a room local clients follow with
// fanout. Its budget for the room runs out (429 with Retry-After), the
// room's log stays within its retention bound whatever arrives, the
// reader is told of the gap and reads on; fanout for rooms nobody follows
// leaves nothing.
func TestAbuseFanoutFlood(t *testing.T) {
	const roomBytes = 1 << 20
	nw := testutil.StartNetwork(t, testutil.Options{Configure: func(cfg *hub.Config) {
		cfg.State.Retention.RoomBytes = roomBytes
		cfg.Limits.RoomFanout = 2 << 20 // bursts of 16 MiB
	}}, domainA)
	a := nw.Provider(domainA)
	bob := newParty(t, a, "bob", "laptop", nil)
	far := proto.RoomURI(domainB, "far")
	// Bob follows a room of b.example, which is not running here (the
	// client API would ask that hub to confirm Bob's membership): his
	// provider subscribes him directly.
	res, err := a.Hub(t).Store().Apply(opCtx(t), fsm.CmdSubscribe, nil, "", &fsm.SubscribeBody{Client: must1(bob.m.API().Client()), Room: far, Subscribe: true})
	if err != nil || res.Kind != fsm.OK {
		t.Fatalf("Bob follows a room of b.example: %v %v", err, res.Err())
	}
	certB := nw.Issue(domainB)
	// The flood asks "Expect: 100-continue", as a careful hub does: a
	// refused batch is then never sent. Without it the provider closes
	// the connection without reading the body (the test's client asks for
	// Connection: close, and net/http drains nothing then), and a sender
	// still writing may see a reset instead of the 429 (under load, it
	// did).
	batch := wire.MustMarshal(&proto.FanoutBatch{{Message: must1(mls.DecodeMessage(privateMessage(far, "", 192<<10))), Timestamp: 1}})
	flood := func(path string, seq int) *http.Response {
		return fedPost(t, nw, &certB, path, http.Header{"Mimi-Sequence": {strconv.Itoa(seq)}, "Expect": {"100-continue"}}, batch)
	}
	accepted, limited := 0, 0
	var retryAfter string
	for i := range 200 {
		resp := flood("/fanout/far", accepted+1)
		switch resp.StatusCode {
		case http.StatusNoContent:
			accepted++
		case http.StatusTooManyRequests:
			limited++
			retryAfter = resp.Header.Get("Retry-After")
		default:
			t.Fatalf("fanout %d: HTTP %d", i, resp.StatusCode)
		}
		if limited > 5 {
			break
		}
	}
	if accepted == 0 || limited == 0 || retryAfter == "" {
		t.Fatalf("%d batches accepted, %d refused (Retry-After %q): the room's budget did not stop the flood", accepted, limited, retryAfter)
	}
	var counts fsm.Counts
	a.Read(t, func(s *fsm.State) { counts = s.Counts() })
	if counts.LogBytes > roomBytes+300<<10 {
		t.Fatalf("%d batches of 192 KiB left %d bytes in the room's log; retention keeps %d", accepted, counts.LogBytes, roomBytes)
	}
	page, err := bob.m.API().Stream(opCtx(t), client.StreamOptions{Limit: 1000})
	must(t, err, "Bob reads")
	if !page.Gap || len(page.Items) == 0 || len(page.Items) >= accepted {
		t.Fatalf("Bob reads %d of %d messages, gap %v; want the newest and a gap", len(page.Items), accepted, page.Gap)
	}
	// A flood of fanout for rooms nobody follows stores nothing.
	before := lastIndex(t, a)
	for i := range 20 {
		resp := flood(fmt.Sprintf("/fanout/nobody-%d", i), 1)
		if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("fanout for an unfollowed room: HTTP %d", resp.StatusCode)
		}
	}
	if lastIndex(t, a) != before {
		t.Fatal("fanout for rooms nobody follows was logged")
	}
}

// TestAbuseClientBudget: a client that sends faster than its budget is
// refused with 429 and a Retry-After, and comes back once it waited;
// another client is not affected.
func TestAbuseClientBudget(t *testing.T) {
	nw := testutil.StartNetwork(t, testutil.Options{Configure: func(cfg *hub.Config) {
		cfg.Limits.ClientBudget.Requests = 20 // bursts of 40
	}}, domainA)
	a := nw.Provider(domainA)
	hc := clientFrom(a, "127.0.0.1")
	greedy, other := register(t, hc, a, "greedy"), register(t, hc, a, "other")
	whoami := func(token string) *http.Response {
		req, _ := http.NewRequestWithContext(opCtx(t), http.MethodGet, a.ClientURL()+"/v1/whoami", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		must(t, err, "whoami")
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	var refused *http.Response
	for range 200 {
		if resp := whoami(greedy); resp.StatusCode == http.StatusTooManyRequests {
			refused = resp
			break
		}
	}
	if refused == nil {
		t.Fatal("200 requests at once were all served: no budget")
	}
	wait, err := strconv.Atoi(refused.Header.Get("Retry-After"))
	if err != nil || wait < 1 {
		t.Fatalf("429 with Retry-After %q", refused.Header.Get("Retry-After"))
	}
	if resp := whoami(other); resp.StatusCode != http.StatusOK {
		t.Fatalf("another client: HTTP %d", resp.StatusCode)
	}
	time.Sleep(time.Duration(wait) * time.Second)
	if resp := whoami(greedy); resp.StatusCode != http.StatusOK {
		t.Fatalf("after waiting Retry-After: HTTP %d", resp.StatusCode)
	}
}
