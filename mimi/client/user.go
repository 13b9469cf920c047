package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mimihub/mimi-hub/internal/pause"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// Client API conventions (httpapi/openapi.yaml).
const (
	// HeaderIdempotencyKey makes a retried write return the first answer
	// instead of being applied twice.
	HeaderIdempotencyKey = "Idempotency-Key"
	// TokenPrefix starts every client API token.
	TokenPrefix = "mimi1"
	// maxIdempotencyKey is the longest key the API accepts.
	maxIdempotencyKey = 64
	// maxWait is the longest long-poll wait the API accepts.
	maxWait = 60 * time.Second
)

// Defaults of UserConfig's retry policy.
const (
	DefaultTries        = 3
	DefaultRetryBackoff = 250 * time.Millisecond
	DefaultMaxRetryWait = 30 * time.Second
)

// UserConfig configures a User client.
type UserConfig struct {
	// BaseURL is the provider's client API, e.g. https://localhost:8444.
	BaseURL string
	// HTTPClient sends the requests; when nil one is built with TLS.
	HTTPClient *http.Client
	// TLS is used when HTTPClient is nil (RootCAs: the roots the provider
	// is verified against; nil means the system roots).
	TLS *tls.Config
	// AllowHTTP permits an http:// BaseURL, which sends the bearer token in
	// the clear: for tests and local development only.
	AllowHTTP bool
	// Token is the bearer token; Register sets it.
	Token string
	// RegistrationKey is sent with Register, for providers that require
	// one (the Mimi-Registration-Key header).
	RegistrationKey string
	// Timeout bounds each attempt of a request (Stream adds its wait).
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// MaxResponse bounds an answer's body; zero means DefaultMaxResponse.
	MaxResponse int64
	// MaxVector bounds every vector when decoding MLS and MIMI objects in
	// answers; zero means DefaultMaxVector.
	MaxVector int
	// Tries is how many times a request is sent at most when it fails with
	// a connection error or 502, 503 or 504 (never on other answers). Zero
	// means DefaultTries; 1 disables retries.
	Tries int
	// RetryBackoff is the first wait between tries, doubled each time and
	// jittered; a Retry-After header replaces it. Zero means
	// DefaultRetryBackoff.
	RetryBackoff time.Duration
	// MaxRetryWait caps a wait between tries: a Retry-After asking for more
	// ends the retries. Zero means DefaultMaxRetryWait.
	MaxRetryWait time.Duration
	// Logger receives a debug line per request; nil discards.
	Logger *slog.Logger
	// Now is the clock for Retry-After dates; nil means time.Now.
	Now func() time.Time
	// Random is the source of idempotency keys; nil means crypto/rand.
	Random io.Reader
}

// User is a client of a provider's client API (httpapi/openapi.yaml): JSON
// over HTTPS, MLS and MIMI objects as standard base64 of their TLS
// encodings, a bearer token, and an Idempotency-Key on every write. Every
// write is sent with a fresh random key (or the one WithIdempotencyKey put
// in its context), reused when the request is retried after a connection
// error or a 502, 503 or 504, so a retry is never applied twice. It is
// safe for concurrent use.
type User struct {
	cfg  UserConfig
	base string
	hc   *http.Client
	log  *slog.Logger
	// sleep waits between tries; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error

	mu    sync.RWMutex
	token string
	// index is the highest Mimi-Index the provider answered: the
	// read-your-writes token every read carries (Mimi-Min-Index), so no
	// node answers from a state older than what this client saw.
	index atomic.Uint64
}

// Read-your-writes headers (httpapi/openapi.yaml).
const (
	HeaderIndex    = "Mimi-Index"
	HeaderMinIndex = "Mimi-Min-Index"
)

// Index returns the client's read-your-writes token: the latest state
// index the provider reported.
func (u *User) Index() uint64 { return u.index.Load() }

// noteIndex keeps the highest index an answer reported.
func (u *User) noteIndex(h http.Header) {
	v := h.Get(HeaderIndex)
	if v == "" {
		return
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return
	}
	for {
		cur := u.index.Load()
		if n <= cur || u.index.CompareAndSwap(cur, n) {
			return
		}
	}
}

// NewUser checks cfg and returns a client.
func NewUser(cfg UserConfig) (*User, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("client API: base URL: %w", err)
	}
	switch {
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("client API: base URL %q is not a URL of a host", cfg.BaseURL)
	case u.Scheme == "https":
	case u.Scheme == "http" && cfg.AllowHTTP:
	default:
		return nil, fmt.Errorf("client API: base URL %q is not https (set AllowHTTP for plain HTTP)", cfg.BaseURL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxResponse <= 0 {
		cfg.MaxResponse = DefaultMaxResponse
	}
	if cfg.MaxVector <= 0 {
		cfg.MaxVector = DefaultMaxVector
	}
	if cfg.Tries <= 0 {
		cfg.Tries = DefaultTries
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	if cfg.MaxRetryWait <= 0 {
		cfg.MaxRetryWait = DefaultMaxRetryWait
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Random == nil {
		cfg.Random = crand.Reader
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: newTransport(cfg.TLS)}
	}
	return &User{
		cfg: cfg, base: strings.TrimRight(cfg.BaseURL, "/"), hc: hc, log: log.With("component", "mimi-user-client"),
		sleep: sleepContext, token: cfg.Token,
	}, nil
}

func sleepContext(ctx context.Context, d time.Duration) error {
	if !pause.For(ctx, d) {
		return ctx.Err()
	}
	return nil
}

// Token returns the bearer token ("" before Register).
func (u *User) Token() string {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return u.token
}

// SetToken sets the bearer token.
func (u *User) SetToken(token string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.token = token
}

// Client returns the client URI the token names.
func (u *User) Client() (proto.URI, error) { return TokenClient(u.Token()) }

// TokenClient returns the client URI a token names. Tokens have the form
// mimi1.<base64url(client URI)>.<base64url(secret)>; padding is optional.
func TokenClient(token string) (proto.URI, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != TokenPrefix {
		return "", errors.New("not a mimi1 token")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", fmt.Errorf("token: client URI: %w", err)
	}
	if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[2], "=")); err != nil || parts[2] == "" {
		return "", errors.New("token: invalid secret")
	}
	c := proto.URI(raw)
	if id, err := c.Parse(); err != nil || id.Kind != proto.KindClient {
		return "", fmt.Errorf("token: %q is not a client URI", raw)
	}
	return c, nil
}

// idempotencyKeyCtx carries a caller's idempotency key.
type idempotencyKeyCtx struct{}

// WithIdempotencyKey makes the client API write sent with ctx use key as
// its Idempotency-Key (at most 64 bytes) instead of a fresh random one:
// sending the same write again with the same key returns the first answer
// within the server's window (ten minutes) instead of applying it twice.
// Federation requests sent with ctx carry the key too (mimi-hub honours it
// as an extension of the federation protocol), which is how a provider
// relaying its client's write to a hub makes the relay idempotent.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idempotencyKeyCtx{}, key)
}

// IdempotencyKey returns the key WithIdempotencyKey put in ctx ("" if
// none).
func IdempotencyKey(ctx context.Context) string {
	key, _ := ctx.Value(idempotencyKeyCtx{}).(string)
	return key
}

// NewIdempotencyKey returns a random key for WithIdempotencyKey, read from
// the client's Random source.
func (u *User) NewIdempotencyKey() (string, error) {
	var b [18]byte
	if _, err := io.ReadFull(u.cfg.Random, b[:]); err != nil {
		return "", fmt.Errorf("idempotency key: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// apiCall describes one client API request.
type apiCall struct {
	op     string
	method string
	path   string // escaped
	query  url.Values
	body   any // JSON; nil for none
	out    any // JSON answer; nil when none is expected
	noAuth bool
	// header holds extra request headers.
	header http.Header
	// extraTimeout lengthens the attempt timeout (long polls).
	extraTimeout time.Duration
	// mimiBody, when set, is the request body, sent as application/mimi
	// (the TLS encoding of a big MLS object) instead of JSON.
	mimiBody []byte
	// mimiOut, when set, receives an application/mimi answer whole
	// (bounded by MaxResponse) instead of out's JSON.
	mimiOut *[]byte
}

// do sends c, retrying as UserConfig says.
func (u *User) do(ctx context.Context, c apiCall) error {
	body := c.mimiBody
	if c.body != nil {
		var err error
		if body, err = json.Marshal(c.body); err != nil {
			return fmt.Errorf("%s: encoding the request: %w", c.op, err)
		}
	}
	var key string
	if c.method != http.MethodGet {
		key = IdempotencyKey(ctx)
		if key == "" {
			var err error
			if key, err = u.NewIdempotencyKey(); err != nil {
				return fmt.Errorf("%s: %w", c.op, err)
			}
		}
		if len(key) > maxIdempotencyKey {
			return fmt.Errorf("%s: idempotency key longer than %d bytes", c.op, maxIdempotencyKey)
		}
	}
	backoff := u.cfg.RetryBackoff
	for try := 1; ; try++ {
		err := u.once(ctx, c, body, key)
		if err == nil {
			return nil
		}
		if try >= u.cfg.Tries || !retryableCall(err) || ctx.Err() != nil {
			return fmt.Errorf("%s: %w", c.op, err)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if ra := RetryAfter(err); ra > 0 {
			wait = ra
		}
		if wait > u.cfg.MaxRetryWait {
			return fmt.Errorf("%s: %w", c.op, err)
		}
		u.log.DebugContext(ctx, "client API retry", "op", c.op, "try", try, "wait", wait, "err", err)
		if err := u.sleep(ctx, wait); err != nil {
			return fmt.Errorf("%s: %w (while waiting to retry after: %w)", c.op, err, ctx.Err())
		}
		backoff = min(2*backoff, u.cfg.MaxRetryWait)
	}
}

// retryableCall reports whether a client API attempt is worth repeating:
// connection failures and 502, 503, 504; never another answer.
func retryableCall(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		switch se.Status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return IsRetryable(err)
}

// once sends one attempt.
func (u *User) once(ctx context.Context, c apiCall, body []byte, key string) error {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout+c.extraTimeout)
	defer cancel()
	target := u.base + c.path
	if len(c.query) > 0 {
		target += "?" + c.query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, target, rd)
	if err != nil {
		return err
	}
	switch {
	case c.mimiBody != nil:
		req.Header.Set("Content-Type", ContentTypeMIMI)
	case body != nil:
		req.Header.Set("Content-Type", "application/json")
	}
	if c.mimiOut != nil {
		req.Header.Set("Accept", ContentTypeMIMI)
	} else {
		req.Header.Set("Accept", "application/json")
	}
	if idx := u.index.Load(); idx > 0 && c.method == http.MethodGet {
		req.Header.Set(HeaderMinIndex, strconv.FormatUint(idx, 10))
	}
	if key != "" {
		req.Header.Set(HeaderIdempotencyKey, key)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	if !c.noAuth {
		tok := u.Token()
		if tok == "" {
			return errors.New("no token: register first or set one")
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	start := time.Now()
	resp, err := u.hc.Do(req)
	if err != nil {
		u.log.DebugContext(ctx, "client API request failed", "op", c.op, "method", c.method, "path", c.path, "err", err)
		return &TransportError{Method: c.method, URL: c.path, Err: err}
	}
	defer resp.Body.Close()
	u.noteIndex(resp.Header)
	u.log.DebugContext(ctx, "client API request", "op", c.op, "method", c.method, "path", c.path, "status", resp.StatusCode, "duration", time.Since(start))
	if resp.StatusCode/100 != 2 {
		return statusError(resp, u.cfg.Now())
	}
	if c.out == nil && c.mimiOut == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	if err := u.decodeAnswer(resp, c.out, c.mimiOut); err != nil {
		var te *TransportError
		if errors.As(err, &te) {
			te.Method, te.URL = c.method, c.path
			return te
		}
		return &badAnswerError{err}
	}
	return nil
}

// decodeAnswer reads a 2xx JSON answer into out, or an application/mimi
// answer into mimiOut.
func (u *User) decodeAnswer(resp *http.Response, out any, mimiOut *[]byte) error {
	if resp.StatusCode == http.StatusNoContent {
		return fmt.Errorf("HTTP %d without the expected body", resp.StatusCode)
	}
	want := "application/json"
	if mimiOut != nil {
		want = ContentTypeMIMI
	}
	if err := checkContentType(resp.Header.Get("Content-Type"), want); err != nil {
		return err
	}
	if resp.ContentLength > u.cfg.MaxResponse {
		return fmt.Errorf("%w: %d bytes announced, the limit is %d", ErrResponseTooLarge, resp.ContentLength, u.cfg.MaxResponse)
	}
	data, err := readBody(resp.Body, u.cfg.MaxResponse)
	if err != nil {
		if errors.Is(err, ErrResponseTooLarge) {
			return err
		}
		return &TransportError{Err: fmt.Errorf("reading the answer: %w", err)}
	}
	if mimiOut != nil {
		*mimiOut = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding the answer: %w", err)
	}
	return nil
}

// badAnswerError is a 2xx answer that could not be read: the server acted
// on the request, but what it answered is lost.
type badAnswerError struct{ err error }

func (e *badAnswerError) Error() string { return "unreadable answer: " + e.err.Error() }

func (e *badAnswerError) Unwrap() error { return e.err }

// roomPath returns /v1/rooms/{hub}/{room}.
func roomPath(room proto.URI) (string, error) {
	hub, id, err := roomParts(room)
	if err != nil {
		return "", err
	}
	return "/v1/rooms/" + url.PathEscape(hub) + "/" + url.PathEscape(id), nil
}
