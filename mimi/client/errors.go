package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/mimihub/mimi-hub/mimi/proto"
)

// ErrorKind classifies a client API error (the "kind" of its JSON error
// body). Federation peers do not send one.
type ErrorKind string

// Error kinds of the client API.
const (
	KindInvalid     ErrorKind = "invalid"
	KindNotAllowed  ErrorKind = "not_allowed"
	KindNotFound    ErrorKind = "not_found"
	KindConflict    ErrorKind = "conflict"
	KindLimit       ErrorKind = "limit"
	KindUnavailable ErrorKind = "unavailable"
	KindInternal    ErrorKind = "internal"
)

// StatusError is a non-2xx HTTP answer.
type StatusError struct {
	// Status is the HTTP status code.
	Status int
	// Message is the server's explanation: the "error" field of a JSON
	// error body, or the start of a text body.
	Message string
	// Kind is the client API's error kind; empty when the server sent none.
	Kind ErrorKind
	// RetryAfter is the wait the Retry-After header asked for; zero when
	// absent or unparsable.
	RetryAfter time.Duration
}

// Error implements error.
func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d", e.Status)
	if t := http.StatusText(e.Status); t != "" {
		b.WriteString(" " + t)
	}
	if e.Kind != "" {
		fmt.Fprintf(&b, " (%s)", e.Kind)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// TransportError reports a request that got no HTTP answer: the connection
// failed, timed out, or broke while the answer was read. Whether the server
// acted on the request is unknown.
type TransportError struct {
	Method string
	URL    string
	Err    error
}

// Error implements error.
func (e *TransportError) Error() string {
	return fmt.Sprintf("%s %s: %v", e.Method, e.URL, e.Err)
}

// Unwrap returns the underlying error.
func (e *TransportError) Unwrap() error { return e.Err }

// retryable reports whether trying again may succeed: not when the caller
// canceled, and not when TLS refused the peer or us (a certificate or an
// alert), which a retry cannot change.
func (e *TransportError) retryable() bool {
	if errors.Is(e.Err, context.Canceled) {
		return false
	}
	var (
		alert    tls.AlertError
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
	)
	// A TLS alert from the peer comes as a net.OpError whose Op is "remote
	// error" (tls.AlertError is used only with QUIC).
	var op *net.OpError
	if errors.As(e.Err, &op) && op.Op == "remote error" {
		return false
	}
	switch {
	case errors.As(e.Err, &alert), errors.As(e.Err, &verify), errors.As(e.Err, &unknown),
		errors.As(e.Err, &invalid), errors.As(e.Err, &hostname):
		return false
	}
	return true
}

// ErrResponseTooLarge reports an answer longer than the configured limit.
var ErrResponseTooLarge = errors.New("response too large")

// IsRetryable reports whether a failed request may succeed if sent again:
// network failures and timeouts (but not TLS verification failures or
// cancellation by the caller), 5xx answers other than 501 and 505, and 429.
// A retry of a non-idempotent request may apply it twice; the client API
// avoids that with Idempotency-Key, the MIMI endpoints by their own rules
// (a repeated commit meets wrongEpoch, fanout receivers drop duplicates).
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		switch {
		case se.Status == http.StatusTooManyRequests:
			return true
		case se.Status == http.StatusNotImplemented, se.Status == http.StatusHTTPVersionNotSupported:
			return false
		}
		return se.Status >= 500 && se.Status <= 599
	}
	var te *TransportError
	if errors.As(err, &te) {
		return te.retryable()
	}
	return false
}

// RetryAfter returns the wait a failed request's Retry-After header asked
// for, or zero.
func RetryAfter(err error) time.Duration {
	var se *StatusError
	if errors.As(err, &se) {
		return se.RetryAfter
	}
	return 0
}

// IsKind reports whether err is a client API answer of the given kind.
func IsKind(err error, kind ErrorKind) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Kind == kind
}

// maxRetryAfter caps a parsed Retry-After, so that absurd values cannot
// overflow a time.Duration.
const maxRetryAfter = 24 * time.Hour

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date
// (RFC 9110 section 10.2.3), relative to now. Unparsable and past values
// give zero.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		if n > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	return min(max(t.Sub(now), 0), maxRetryAfter)
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 4 << 10

// statusError builds the error for a non-2xx answer, reading a bounded part
// of its body.
func statusError(resp *http.Response, now time.Time) *StatusError {
	e := &StatusError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), now)}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var j struct {
		Error string `json:"error"`
		Kind  string `json:"kind"`
	}
	if json.Unmarshal(body, &j) == nil && j.Error != "" {
		e.Message, e.Kind = printable(j.Error), ErrorKind(printable(j.Kind))
		return e
	}
	e.Message = printable(string(body))
	return e
}

// printable trims s and replaces control characters, so that an error
// message from a peer cannot forge log lines.
func printable(s string) string {
	s = strings.TrimSpace(s)
	const maxLen = 512
	if len(s) > maxLen {
		s = s[:maxLen] + "..."
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return '?'
		}
		return r
	}, s)
}

// readBody reads an answer of at most limit bytes.
func readBody(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrResponseTooLarge, limit)
	}
	return b, nil
}

// limitedBody is a streamed answer that fails once it passes its limit.
type limitedBody struct {
	r      io.ReadCloser
	left   int64
	limit  int64
	cancel context.CancelFunc
}

// Read reads up to the limit and fails past it.
func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// Probe for one more byte: exactly limit bytes is fine.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%w: more than %d bytes", ErrResponseTooLarge, l.limit)
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// Close closes the body and releases its request.
func (l *limitedBody) Close() error {
	err := l.r.Close()
	l.cancel()
	return err
}

// RefusedError is a 200 answer to updateRoom or provisionalMessage whose
// code is not success, returned by Member's flows (Federation and User
// return the UpdateRoomResponse itself: a refusal is a normal answer
// there).
type RefusedError struct {
	Op          string
	Room        proto.URI
	Code        proto.UpdateResponseCode
	Description string
}

// Error implements error.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s in %s refused: %s: %s", e.Op, e.Room, e.Code, e.Description)
}
