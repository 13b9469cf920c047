package httpapi

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/mimihub/mimi-hub/internal/budget"
)

// Budget meters what one client or peer sends to one node: Requests a
// second (bursts of two seconds' worth) and body Bytes a second (bursts of
// eight seconds' worth). Zero fields take the defaults; negative ones mean
// no limit. A cluster of N nodes lets a sender that spreads its requests
// over them send N times as much.
type Budget struct {
	Requests float64
	Bytes    float64
}

// Default budgets and limits.
const (
	DefaultClientRequests = 100
	DefaultClientBytes    = 4 << 20
	DefaultPeerRequests   = 1000
	DefaultPeerBytes      = 32 << 20
	DefaultRoomFanout     = 4 << 20
	DefaultMaxMessageBody = 1 << 20
	DefaultBodyTimeout    = 10 * time.Second
	DefaultBodyMinRate    = 64 << 10

	requestBurstSeconds = 2
	byteBurstSeconds    = 8
	// deadlineSlack is what a connection's deadlines allow beyond a
	// request's own time, to answer it.
	deadlineSlack = 5 * time.Second
)

func (b Budget) withDefaults(requests, bytes float64) Budget {
	if b.Requests == 0 {
		b.Requests = requests
	}
	if b.Bytes == 0 {
		b.Bytes = bytes
	}
	return b
}

func limitOf(rate, burstSeconds float64) budget.Limit {
	if rate < 0 {
		return budget.Limit{}
	}
	return budget.Limit{Rate: rate, Burst: rate * burstSeconds}
}

// meter holds one router's budgets: requests and bytes per sender, and
// for fanout bytes per sender and room.
type meter struct {
	requests, bytes, rooms *budget.Table
}

func newMeter(b Budget, room float64) *meter {
	m := &meter{
		requests: budget.New(limitOf(b.Requests, requestBurstSeconds), 0, nil),
		bytes:    budget.New(limitOf(b.Bytes, byteBurstSeconds), 0, nil),
	}
	if room != 0 {
		m.rooms = budget.New(limitOf(room, byteBurstSeconds), 0, nil)
	}
	return m
}

// overBudget is a request refused by a budget: 429 with Retry-After.
func overBudget(who, what string, wait time.Duration) *apiError {
	e := fail(http.StatusTooManyRequests, "%s is over its %s budget on this node; retry after %s", who, what, wait.Round(time.Millisecond))
	e.retryAfter = wait
	return e
}

// bytesKey carries the sender's byte budget into readBody, which takes a
// body's declared length from it before reading (a body over its limit is
// refused without costing anything) and charges what an undeclared body
// turned out to be.
type bytesKey struct{}

// senderBytes is a sender's byte budget.
type senderBytes struct {
	table  *budget.Table
	sender string
}

// responseBudget refuses a request for a large answer (a ratchet tree, a
// GroupInfo with its tree) while the requester's byte budget is in debt,
// which chargeResponse puts it in.
func responseBudget(r *http.Request) error {
	if budget, metered := r.Context().Value(bytesKey{}).(senderBytes); metered {
		if ok, wait := budget.table.Take(budget.sender, 0); !ok {
			return overBudget(budget.sender, "byte", wait)
		}
	}
	return nil
}

// chargeResponse takes n bytes of a large answer (a ratchet tree, a
// GroupInfo with its tree) from the requester's byte budget once it was
// written: a client or peer that fetches a room's tree again and again
// runs into debt and gets 429 until its budget refills, as if it had sent
// those bytes.
func chargeResponse(r *http.Request, n int) {
	if budget, metered := r.Context().Value(bytesKey{}).(senderBytes); metered {
		budget.table.Charge(budget.sender, float64(n))
	}
}

// admit takes one request from sender's budget and returns the request's
// context, which carries the sender's byte budget to readBody.
func (m *meter) admit(r *http.Request, sender string) (context.Context, error) {
	if ok, wait := m.requests.Take(sender, 1); !ok {
		return nil, overBudget(sender, "request", wait)
	}
	return context.WithValue(r.Context(), bytesKey{}, senderBytes{m.bytes, sender}), nil
}

// admitRoom takes n bytes from a sender's budget for one room.
func (m *meter) admitRoom(sender, room string, n int) error {
	if ok, wait := m.rooms.Take(sender+" "+room, float64(n)); !ok {
		return overBudget(sender, "fanout budget for "+room+" and its", wait)
	}
	return nil
}

// bodyDeadline is how long a body of n declared bytes may take to arrive:
// BodyTimeout, and a second more per BodyMinRate bytes.
func (c *Config) bodyDeadline(n int64) time.Duration {
	d := c.BodyTimeout
	if n > 0 {
		d += time.Duration(float64(n) / float64(c.BodyMinRate) * float64(time.Second))
	}
	return d
}

// withDeadlines bounds every request's connection: its body (and what a
// handler leaves unread of it, which the server reads afterwards) must
// arrive within BodyTimeout, and its answer must be written within
// RequestTimeout. Routes extend them for their own time (route).
func (c *Config) withDeadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		now := time.Now()
		_ = rc.SetReadDeadline(now.Add(c.BodyTimeout))
		_ = rc.SetWriteDeadline(now.Add(c.RequestTimeout + deadlineSlack))
		next.ServeHTTP(w, r)
	})
}

// route bounds a matched route's request to timeout and sets the
// connection's deadlines for it: its body must arrive within the body
// deadline for its declared length (or, undeclared, for MaxRoomBody),
// and the answer within timeout. A request without a body gets timeout for
// reading too: the server watches the connection while the handler runs
// (and cancels the request when reading it fails) once the body is read,
// which readBody extends the same way.
func (c *Config) route(w http.ResponseWriter, r *http.Request, timeout time.Duration) (*http.Request, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	rc := http.NewResponseController(w)
	now := time.Now()
	end := now.Add(timeout + deadlineSlack)
	_ = rc.SetWriteDeadline(end)
	switch {
	case r.ContentLength == 0:
		_ = rc.SetReadDeadline(end)
	case r.ContentLength > 0:
		_ = rc.SetReadDeadline(now.Add(c.bodyDeadline(r.ContentLength)))
	default:
		_ = rc.SetReadDeadline(now.Add(c.bodyDeadline(c.MaxRoomBody)))
	}
	return r.WithContext(ctx), cancel
}

// retryAfterHeader formats a Retry-After in whole seconds, at least 1.
func retryAfterHeader(d time.Duration) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10)
}

// readBody reads a request body of at most limit bytes (413 beyond) within
// the deadline route set (408 after it), then gives the connection the
// request's own time.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, fail(http.StatusRequestEntityTooLarge, "the body is %d bytes; at most %d are accepted", r.ContentLength, limit)
	}
	budget, metered := r.Context().Value(bytesKey{}).(senderBytes)
	if metered && r.ContentLength > 0 {
		if ok, wait := budget.table.Take(budget.sender, float64(r.ContentLength)); !ok {
			return nil, overBudget(budget.sender, "byte", wait)
		}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		// The read deadline stays as it is: the server reads what is
		// left of a body before it answers, and must give up at once.
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, fail(http.StatusRequestEntityTooLarge, "the body exceeds %d bytes", limit)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, fail(http.StatusRequestTimeout, "the body did not arrive in time (%d bytes declared)", r.ContentLength)
		}
		return nil, fail(http.StatusBadRequest, "reading the body: %v", err)
	}
	if dl, ok := r.Context().Deadline(); ok {
		_ = http.NewResponseController(w).SetReadDeadline(dl.Add(deadlineSlack))
	}
	if metered && r.ContentLength < 0 {
		budget.table.Charge(budget.sender, float64(len(b)))
	}
	return b, nil
}

// LimitBodies bounds the arrival of every request body for a handler that
// does not use this package's routers (the operations listener): a body
// must arrive within timeout plus a second per minRate bytes declared
// (an undeclared one within timeout). Once the body is read, or at once
// for a request without one, the connection has no read deadline again,
// so a handler that runs long after reading (a restore) is not cut short.
func LimitBodies(next http.Handler, timeout time.Duration, minRate int64) http.Handler {
	cfg := &Config{BodyTimeout: timeout, BodyMinRate: minRate}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.ContentLength == 0 {
			_ = rc.SetReadDeadline(time.Time{})
			next.ServeHTTP(w, r)
			return
		}
		_ = rc.SetReadDeadline(time.Now().Add(cfg.bodyDeadline(max(r.ContentLength, 0))))
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody clears the connection's read deadline when its body has
// been read to its end.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.done { // a failed body keeps its deadline
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
