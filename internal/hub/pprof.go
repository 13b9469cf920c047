package hub

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"strconv"
)

// maxProfileSeconds bounds the CPU profile and execution trace a request
// may ask for (?seconds=N): the handler holds its connection that long.
const maxProfileSeconds = 60

// registerPprof serves Go's profiles (net/http/pprof) under /debug/pprof/
// behind the admin token. They reveal the process's internals (command
// line, stacks, heap contents' types) and cost CPU while they run.
func (h *Hub) registerPprof(mux *http.ServeMux, g *opsGuard) {
	checked := func(f http.HandlerFunc) http.Handler {
		return g.wrap(routeChecks{token: true}, boundedSeconds(f))
	}
	mux.Handle("GET /debug/pprof/", checked(pprof.Index))
	mux.Handle("GET /debug/pprof/cmdline", checked(pprof.Cmdline))
	mux.Handle("GET /debug/pprof/profile", checked(pprof.Profile))
	mux.Handle("GET /debug/pprof/symbol", checked(pprof.Symbol))
	mux.Handle("GET /debug/pprof/trace", checked(pprof.Trace))
}

// boundedSeconds refuses a ?seconds= above maxProfileSeconds.
func boundedSeconds(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if v := r.URL.Query().Get("seconds"); v != "" {
			if n, err := strconv.ParseFloat(v, 64); err != nil || n < 0 || n > maxProfileSeconds {
				opsError(w, http.StatusBadRequest, fmt.Sprintf("seconds: want 0 to %d", maxProfileSeconds))
				return
			}
		}
		next(w, r)
	}
}
