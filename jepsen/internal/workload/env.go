package workload

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mimihub/mimi-hub/internal/pause"
	"github.com/mimihub/mimi-hub/jepsen/internal/history"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// Endpoint is a node's client API.
type Endpoint struct {
	Node string
	URL  string
}

// Config is what every workload needs.
type Config struct {
	// Domain is the provider's domain.
	Domain string
	// Endpoints returns the nodes' client APIs (the current members).
	Endpoints func() []Endpoint
	// Roots verify the nodes' certificates (which name Domain).
	Roots *x509.CertPool
	// History records the operations.
	History *history.History
	// Timeout bounds one request; zero means 5s.
	Timeout time.Duration
	// Prefix makes user and room names unique to the run.
	Prefix string
	// Seed seeds the workloads' choices.
	Seed   uint64
	Logger *slog.Logger
}

// Env is the shared machinery of the workloads.
type Env struct {
	cfg  Config
	hc   *http.Client
	log  *slog.Logger
	proc atomic.Int64

	mu   sync.Mutex
	rand *rand.Rand
	apis map[string]*client.User // by token + "\x00" + URL
}

// NewEnv returns an Env.
func NewEnv(cfg Config) *Env {
	positive(&cfg.Timeout, 5*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: cfg.Roots, ServerName: cfg.Domain, MinVersion: tls.VersionTLS12}
	t.MaxIdleConnsPerHost = 64
	t.ResponseHeaderTimeout = cfg.Timeout
	return &Env{cfg: cfg, hc: &http.Client{Transport: t}, log: cfg.Logger, rand: rand.New(rand.NewPCG(cfg.Seed, 0x6a65)), apis: map[string]*client.User{}}
}

// Close closes idle connections.
func (e *Env) Close() { e.hc.CloseIdleConnections() }

// History returns the history operations are recorded in.
func (e *Env) History() *history.History { return e.cfg.History }

// nextProcess numbers a logical client for the history.
func (e *Env) nextProcess() int { return int(e.proc.Add(1) - 1) }

// intn returns a random number in [0, n).
func (e *Env) intn(n int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rand.IntN(n)
}

// pick returns a random endpoint, not one of avoid.
func (e *Env) pick(avoid ...string) (Endpoint, error) {
	eps := slices.DeleteFunc(e.cfg.Endpoints(), func(ep Endpoint) bool { return slices.Contains(avoid, ep.Node) })
	if len(eps) == 0 {
		return Endpoint{}, errors.New("no node to talk to")
	}
	return eps[e.intn(len(eps))], nil
}

// api returns a client API client for token at ep, with no automatic
// retries (the workloads retry themselves, recording every attempt).
func (e *Env) api(token string, ep Endpoint) (*client.User, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := token + "\x00" + ep.URL
	if u := e.apis[k]; u != nil {
		return u, nil
	}
	u, err := client.NewUser(client.UserConfig{BaseURL: ep.URL, HTTPClient: e.hc, Token: token, Timeout: e.cfg.Timeout, Tries: 1})
	if err != nil {
		return nil, err
	}
	e.apis[k] = u
	return u, nil
}

// newKey returns a fresh idempotency key.
func newKey() (string, error) {
	var b [18]byte
	if _, err := crand.Read(b[:]); err != nil {
		return "", fmt.Errorf("idempotency key: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// traced returns a context whose HTTP requests report, in the returned
// flag, whether any of their bytes were written. net/http sends a request
// carrying an Idempotency-Key again on a fresh connection when a reused
// one breaks, so a request can be applied by a node and still end with a
// dial error (the second connection refused): only a request never
// written failed for sure.
func traced(ctx context.Context) (context.Context, *atomic.Bool) {
	wrote := new(atomic.Bool)
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
	}), wrote
}

// classifyAttempt is classify for a request traced with traced: a
// connection failure after the request was written is unknown.
func classifyAttempt(err error, wrote bool) (history.Outcome, string) {
	out, code := classify(err)
	if out == history.Fail && code == "connect" && wrote {
		return history.Unknown, "transport"
	}
	return out, code
}

// classify turns a client error into an outcome: 4xx refusals and
// connections that could not be made failed; everything else (5xx, no
// answer, an unreadable answer) is unknown. A dial error means nothing was
// sent only if the request was never written (see traced).
func classify(err error) (history.Outcome, string) {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return history.Fail, "connect"
	}
	var se *client.StatusError
	if errors.As(err, &se) {
		code := fmt.Sprintf("HTTP %d", se.Status)
		if se.Status >= 500 {
			return history.Unknown, code
		}
		return history.Fail, code
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout") || strings.Contains(err.Error(), "timeout") {
		return history.Unknown, "timeout"
	}
	var te *client.TransportError
	if errors.As(err, &te) {
		return history.Unknown, "transport"
	}
	return history.Unknown, "error"
}

// attempt is the result of one logical write.
type attempt struct {
	result   history.Outcome
	code     string
	err      error
	node     string
	attempts int
}

// retryWrite runs send with one idempotency key through random nodes
// until it gets an answer (accepted or refused) or maxTries attempts had
// no answer. send returns the update code name on an answer. Once an
// attempt's outcome was unknown, only an answer decides the operation: a
// later attempt that could not connect, or a refusal such as a 401 from a
// node that is behind, says nothing about the earlier attempt, so the
// operation stays unknown. An attempt, once sent, runs to its answer or
// its timeout even when ctx ends (so ending the run makes no outcome
// unknown); ctx ending stops further attempts.
func (e *Env) retryWrite(ctx context.Context, maxTries int, key string, send func(ctx context.Context, ep Endpoint) (string, error)) attempt {
	var a attempt
	backoff := 100 * time.Millisecond
	rctx := client.WithIdempotencyKey(context.WithoutCancel(ctx), key)
	unknown := false
	for a.attempts < maxTries && (a.attempts == 0 || ctx.Err() == nil) {
		ep, err := e.pick()
		if err != nil {
			break
		}
		a.attempts++
		a.node = ep.Node
		tctx, wrote := traced(rctx)
		code, err := send(tctx, ep)
		if err == nil {
			a.result, a.code, a.err = history.Fail, code, nil
			if code == proto.UpdateSuccess.String() {
				a.result = history.OK
			}
			return a
		}
		a.result, a.code = classifyAttempt(err, wrote.Load())
		a.err = err
		if a.result == history.Fail && !unknown {
			return a
		}
		unknown = true
		if a.attempts >= maxTries || !pause.For(ctx, backoff/2+time.Duration(e.intn(int(backoff/2)))) {
			break
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	if a.attempts == 0 {
		a.code = "no node"
	}
	a.result = history.Unknown
	return a
}

// setupCall retries a setup request through random nodes (but those in
// avoid) until it succeeds, up to a minute (setup runs before any fault).
func (e *Env) setupCall(ctx context.Context, what string, avoid []string, fn func(ctx context.Context, ep Endpoint) error) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	key, err := newKey()
	if err != nil {
		return err
	}
	var last error
	for try := 0; try < 30; try++ {
		ep, err := e.pick(avoid...)
		if err != nil {
			return err
		}
		last = fn(client.WithIdempotencyKey(ctx, key), ep)
		if last == nil {
			return nil
		}
		if out, _ := classify(last); out == history.Fail {
			return fmt.Errorf("%s: %w", what, last)
		}
		if !pause.For(ctx, 500*time.Millisecond) {
			break
		}
	}
	return fmt.Errorf("%s: %w", what, last)
}

// positive sets *v to def unless it is positive: the zero value of an
// option means "the default".
func positive[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
