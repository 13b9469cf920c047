package workload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/mimihub/mimi-hub/jepsen/internal/history"
	"github.com/mimihub/mimi-hub/mimi/client"
)

func TestClassify(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "x"}}
	read := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	tests := []struct {
		name string
		err  error
		out  history.Outcome
		code string
	}{
		{"refused by the API", &client.StatusError{Status: 409}, history.Fail, "HTTP 409"},
		{"unavailable", &client.StatusError{Status: 503}, history.Unknown, "HTTP 503"},
		{"connection not made", &client.TransportError{Err: fmt.Errorf("post: %w", dial)}, history.Fail, "connect"},
		{"connection lost", &client.TransportError{Err: read}, history.Unknown, "transport"},
		{"deadline", &client.TransportError{Err: context.DeadlineExceeded}, history.Unknown, "timeout"},
		{"anything else", errors.New("unreadable answer"), history.Unknown, "error"},
	}
	for _, tt := range tests {
		out, code := classify(tt.err)
		if out != tt.out || code != tt.code {
			t.Errorf("%s: classify = %s %q, want %s %q", tt.name, out, code, tt.out, tt.code)
		}
	}
	// A dial error after the request was written (net/http resent it on a
	// fresh connection) may hide an applied request.
	if out, code := classifyAttempt(&client.TransportError{Err: dial}, true); out != history.Unknown || code != "transport" {
		t.Errorf("dial error after writing: %s %q, want unknown", out, code)
	}
	if out, _ := classifyAttempt(&client.TransportError{Err: dial}, false); out != history.Fail {
		t.Errorf("dial error before writing: %s, want fail", out)
	}
}
