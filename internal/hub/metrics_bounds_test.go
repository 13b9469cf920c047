package hub_test

import (
	"testing"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
)

// TestMetricsBounds checks the gauges the capacity alerts divide by: the
// configured -log-bytes, -outbox-total-bytes and -max-conns, defaults
// filled in, and no
// connection bound at all for a listener without one (a ratio with no
// denominator never fires).
func TestMetricsBounds(t *testing.T) {
	servers := []string{"federation", "client", "ops"}
	for _, tc := range []struct {
		name      string
		maxConns  int
		logBytes  int64
		outbox    int64
		wantConns float64 // 0: no series
		wantLog   float64
		wantOut   float64
	}{
		{name: "defaults", wantConns: hub.DefaultMaxConns, wantLog: fsm.DefaultTotalLogBytes, wantOut: fsm.DefaultOutboxTotalBytes},
		{name: "configured", maxConns: 64, logBytes: 3 << 20, outbox: 5 << 20, wantConns: 64, wantLog: 3 << 20, wantOut: 5 << 20},
		{name: "unbounded connections", maxConns: -1, logBytes: 1 << 30, wantLog: 1 << 30, wantOut: fsm.DefaultOutboxTotalBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.StartCluster(t, testutil.ClusterOptions{Configure: func(i int, cfg *hub.Config) {
				cfg.MaxConns = tc.maxConns
				cfg.State.Retention.TotalBytes = tc.logBytes
				cfg.State.OutboxTotalBytes = tc.outbox
			}}, 1)
			m := scrape(t, c.Nodes[0])
			if got := mustValue(t, m, "mimi_fanout_queue_bytes_limit", nil); got != tc.wantOut {
				t.Errorf("mimi_fanout_queue_bytes_limit = %v, want %v", got, tc.wantOut)
			}
			if got := mustValue(t, m, "mimi_stream_log_bytes_limit", nil); got != tc.wantLog {
				t.Errorf("mimi_stream_log_bytes_limit = %v, want %v", got, tc.wantLog)
			}
			for _, server := range servers {
				labels := map[string]string{"server": server}
				got, ok := value(t, m, "mimi_http_connections_limit", labels)
				switch {
				case tc.wantConns == 0 && ok:
					t.Errorf("%s: mimi_http_connections_limit = %v without a bound, want no series", server, got)
				case tc.wantConns != 0 && got != tc.wantConns:
					t.Errorf("%s: mimi_http_connections_limit = %v (present %v), want %v", server, got, ok, tc.wantConns)
				}
				// The gauge it bounds is there either way.
				mustValue(t, m, "mimi_http_connections", labels)
			}
		})
	}
}
