package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
)

var (
	errTooManyRedirects   = errors.New("too many redirects")
	errRedirectNotAllowed = errors.New("redirect to a host that is not an allowed asset host")
)

// apiError is a request's failure as the API answers it.
type apiError struct {
	status int
	msg    string
	cause  error // logged for 5xx
	// retryAfter, for 429, is when the sender may try again.
	retryAfter time.Duration
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.status, e.msg) }

// fail makes an apiError.
func fail(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// Client API error kinds (openapi.yaml).
const (
	kindInvalid     = "invalid"
	kindNotAllowed  = "not_allowed"
	kindNotFound    = "not_found"
	kindConflict    = "conflict"
	kindLimit       = "limit"
	kindUnavailable = "unavailable"
	kindInternal    = "internal"
)

// kindOfStatus names a status for the client API's error body.
func kindOfStatus(status int) string {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return kindNotAllowed
	case http.StatusNotFound, http.StatusGone:
		return kindNotFound
	case http.StatusConflict:
		return kindConflict
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return kindLimit
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return kindUnavailable
	}
	if status >= 400 && status < 500 {
		return kindInvalid
	}
	return kindInternal
}

// statusOfKind maps a refused command to its status.
func statusOfKind(k fsm.ErrorKind) int {
	switch k {
	case fsm.Invalid:
		return http.StatusBadRequest
	case fsm.NotAllowed:
		return http.StatusForbidden
	case fsm.NotFound:
		return http.StatusNotFound
	case fsm.Conflict:
		return http.StatusConflict
	case fsm.Limit:
		return http.StatusTooManyRequests
	case fsm.Unauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

// classify turns any error of a handler into the answer: refusals by the
// state machine by kind, a cluster without leader 503, deadlines 504,
// oversized bodies 413, anything else 500.
func classify(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var fe *fsm.Error
	if errors.As(err, &fe) {
		return &apiError{status: statusOfKind(fe.Kind), msg: fe.Message, cause: err}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fail(http.StatusRequestEntityTooLarge, "the body exceeds %d bytes", mbe.Limit)
	}
	var tl TooLarge
	if errors.As(err, &tl) && tl.TooLarge() {
		return &apiError{status: http.StatusRequestEntityTooLarge, msg: err.Error(), cause: err}
	}
	var un Unavailable
	if errors.As(err, &un) && un.Unavailable() {
		msg := "the cluster cannot serve this right now (no leader); retry"
		var r interface{ Reason() string }
		if errors.As(err, &r) && r.Reason() != "" {
			msg = r.Reason()
		}
		return &apiError{status: http.StatusServiceUnavailable, msg: msg, cause: err}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &apiError{status: http.StatusGatewayTimeout, msg: "the request timed out", cause: err}
	}
	if errors.Is(err, context.Canceled) {
		return &apiError{status: http.StatusGatewayTimeout, msg: "the request was canceled", cause: err}
	}
	return &apiError{status: http.StatusInternalServerError, msg: "internal error", cause: err}
}

// resultErr returns a command's refusal as an error.
func resultErr(res *fsm.Result) error {
	if res == nil {
		return errors.New("the backend returned no result")
	}
	return res.Err()
}

// logFailure logs a failed request: internal errors at error level, the
// rest at debug.
func logFailure(log *slog.Logger, r *http.Request, e *apiError) {
	level := slog.LevelDebug
	if e.status >= 500 && e.status != http.StatusServiceUnavailable && e.status != http.StatusGatewayTimeout && e.status != http.StatusBadGateway {
		level = slog.LevelError
	}
	attrs := []any{"route", RouteName(r), "status", e.status, "error", e.msg}
	if e.cause != nil {
		attrs = append(attrs, "cause", e.cause.Error())
	}
	log.Log(r.Context(), level, "request failed", attrs...)
}

// writeTextError answers a federation request's failure in text/plain.
func writeTextError(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	e := classify(err)
	logFailure(log, r, e)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	setRetryAfter(h, e)
	if e.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `TLS-client-certificate`)
	}
	w.WriteHeader(e.status)
	fmt.Fprintln(w, e.msg)
}

// setRetryAfter tells a sender refused for now when to come back: a
// cluster without leader in a second, a budget when it has refilled.
func setRetryAfter(h http.Header, e *apiError) {
	switch {
	case e.status == http.StatusServiceUnavailable:
		h.Set("Retry-After", "1")
	case e.status == http.StatusTooManyRequests && e.retryAfter > 0:
		h.Set("Retry-After", retryAfterHeader(e.retryAfter))
	}
}

// errorBody is the client API's error object.
type errorBody struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

// writeJSONError answers a client API request's failure.
func writeJSONError(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	e := classify(err)
	logFailure(log, r, e)
	setRetryAfter(w.Header(), e)
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mimi-hub"`)
	}
	writeJSON(w, e.status, errorBody{Error: e.msg, Kind: kindOfStatus(e.status)})
}

// writeJSON writes v as the JSON response and returns its size.
func writeJSON(w http.ResponseWriter, status int, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal error: encoding the response","kind":"internal"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	n, _ := w.Write(append(b, '\n'))
	return n
}
