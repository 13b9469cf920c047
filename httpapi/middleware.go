package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/mux"
)

// RouteName returns the name of the route a request matched, e.g.
// "mimi.updateRoom" or "client.stream"; "" outside a matched route. Metrics
// middleware (Config.Middleware) labels requests with it.
func RouteName(r *http.Request) string {
	if rt := mux.CurrentRoute(r); rt != nil {
		return rt.GetName()
	}
	return ""
}

// newRouter returns a router that matches on the escaped path (so a
// percent-encoded URL stays one path segment), wraps every matched route
// with the configured middleware and request logging, and answers
// unmatched paths with notFound and wrong methods with notAllowed. Routes
// must be declared Path(...).Methods(...): mux v1.8.1 forgets a method
// mismatch when a later route's method matcher, run first, matches.
func newRouter(cfg *Config, notFound, notAllowed http.Handler) *mux.Router {
	r := mux.NewRouter()
	r.UseEncodedPath()
	r.NotFoundHandler = notFound
	r.MethodNotAllowedHandler = notAllowed
	for _, mw := range cfg.Middleware {
		r.Use(mux.MiddlewareFunc(mw))
	}
	r.Use(logRequests(cfg.Logger))
	return r
}

// logRequests logs each request at debug level.
func logRequests(log *slog.Logger) mux.MiddlewareFunc {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !log.Enabled(r.Context(), slog.LevelDebug) {
				next.ServeHTTP(w, r)
				return
			}
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			log.DebugContext(r.Context(), "request", "route", RouteName(r), "method", r.Method, "path", r.URL.EscapedPath(),
				"status", sw.status, "bytes", sw.bytes, "duration", time.Since(start))
		})
	}
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush forwards to the underlying writer when it can flush.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
