package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// The internal channel is HTTP/1.1 over the mux's mutually authenticated
// TLS connections (protocol byte 'I' on the Raft port). Nodes use it to
// forward writes and read-index requests to the leader and to ask each
// other for their state. Requests and answers are small JSON documents,
// except forwarded commands, which travel as raw bytes.
const (
	rpcApply      = "/cluster/v1/apply"
	rpcApplyBatch = "/cluster/v1/apply-batch"
	rpcReadIndex  = "/cluster/v1/read-index"
	rpcNodeInfo   = "/cluster/v1/node"
	rpcRemove     = "/cluster/v1/remove-server"
	rpcTransfer   = "/cluster/v1/transfer-leadership"

	// maxRPCBody bounds every answer; Config.MaxEntrySize bounds a
	// forwarded command.
	maxRPCBody = 64 << 20
)

// rpcError is an internal channel error answer.
type rpcError struct {
	Code       string `json:"code"`
	Message    string `json:"error"`
	LeaderID   string `json:"leader_id,omitempty"`
	LeaderAddr string `json:"leader_addr,omitempty"`
}

// Error codes of the internal channel; each maps back to one of this
// package's errors on the calling node.
const (
	codeNotLeader = "not_leader" // not applied: retry on the leader
	codeShutdown  = "shutdown"   // not applied: the node is stopping
	codeUnknown   = "unknown"    // the outcome is unknown
	codeInvalid   = "invalid"    // the request was malformed
	codeTooLarge  = "too_large"  // not applied: the command exceeds the entry limit
	codeFailed    = "failed"     // refused (not applied), see message
)

// encodeRPCError turns an error of this package into an answer.
func encodeRPCError(w http.ResponseWriter, err error) {
	e, status := rpcErrorOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(e)
}

// rpcErrorOf maps an error of this package to its answer and status.
func rpcErrorOf(err error) (rpcError, int) {
	e := rpcError{Message: err.Error()}
	status := http.StatusServiceUnavailable
	var nl *NotLeaderError
	switch {
	case errors.As(err, &nl):
		e.Code, e.LeaderID, e.LeaderAddr = codeNotLeader, nl.LeaderID, nl.LeaderAddr
	case errors.Is(err, ErrShutdown):
		e.Code = codeShutdown
	case ambiguous(err):
		e.Code, status = codeUnknown, http.StatusGatewayTimeout
	case errors.Is(err, ErrEntryTooLarge):
		e.Code, status = codeTooLarge, http.StatusRequestEntityTooLarge
	case errors.Is(err, errInvalidRPC):
		e.Code, status = codeInvalid, http.StatusBadRequest
	default:
		e.Code, status = codeFailed, http.StatusInternalServerError
	}
	return e, status
}

var errInvalidRPC = errors.New("invalid internal request")

// decode maps an answer back to this package's errors.
func (e *rpcError) decode(op string) error {
	switch e.Code {
	case codeNotLeader:
		return &NotLeaderError{LeaderID: e.LeaderID, LeaderAddr: e.LeaderAddr, cause: errors.New(e.Message)}
	case codeShutdown:
		return fmt.Errorf("cluster: %s: leader: %w", op, ErrShutdown)
	case codeUnknown:
		return fmt.Errorf("cluster: %s: leader: %w (%s)", op, ErrTimeout, e.Message)
	case codeTooLarge:
		return &EntryTooLargeError{Op: op + " at the leader: " + e.Message}
	default:
		return fmt.Errorf("cluster: %s: leader refused: %s", op, e.Message)
	}
}

// ambiguous reports whether err leaves an operation's outcome unknown.
func ambiguous(err error) bool {
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrLeadershipLost) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errTransport)
}

// errTransport marks an internal request that got no answer: it may or
// may not have been acted on.
var errTransport = errors.New("no answer from peer")

// rpcServer serves the internal channel.
type rpcServer struct {
	mux    *http.ServeMux
	server *http.Server
	log    *slog.Logger
}

func newRPCServer(log *slog.Logger) *rpcServer {
	m := http.NewServeMux()
	return &rpcServer{mux: m, log: log, server: &http.Server{
		Handler:           m,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}
}

func (s *rpcServer) serve(ln net.Listener) {
	if err := s.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		s.log.Error("internal channel stopped", "err", err)
	}
}

// rpcClient calls peers' internal channels.
type rpcClient struct {
	http *http.Client
}

func newRPCClient(m *mux) *rpcClient {
	t := &http.Transport{
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return m.dial(ctx, addr, protoRPC)
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     time.Minute,
	}
	return &rpcClient{http: &http.Client{Transport: t}}
}

func (c *rpcClient) close() { c.http.CloseIdleConnections() }

// call posts body (raw bytes if it is a []byte, JSON otherwise; nil for
// none) to a peer and decodes the answer into out (raw bytes if out is a
// *[]byte, JSON otherwise).
func (c *rpcClient) call(ctx context.Context, addr, path string, body, out any) error {
	var rd io.Reader
	method := http.MethodGet
	if body != nil {
		method = http.MethodPost
		if b, ok := body.([]byte); ok {
			rd = bytes.NewReader(b)
		} else {
			b, err := json.Marshal(body)
			if err != nil {
				return err
			}
			rd = bytes.NewReader(b)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, rd)
	if err != nil {
		return fmt.Errorf("cluster: %s: %w", path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return contextError(path, ctx)
		}
		return fmt.Errorf("cluster: %s at %s: %w: %w", path, addr, errTransport, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxRPCBody))
	if err != nil {
		return fmt.Errorf("cluster: %s at %s: %w: %w", path, addr, errTransport, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e rpcError
		if json.Unmarshal(data, &e) != nil || e.Code == "" {
			return fmt.Errorf("cluster: %s at %s: %w: status %d", path, addr, errTransport, resp.StatusCode)
		}
		return e.decode(path)
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = data
		return nil
	default:
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("cluster: %s at %s: bad answer: %w", path, addr, err)
		}
		return nil
	}
}

// handleJSON adapts a JSON request/answer function to the internal
// channel.
func handleJSON[In, Out any](fn func(ctx context.Context, in *In) (*Out, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		in := new(In)
		if r.Method == http.MethodPost {
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(in); err != nil && !errors.Is(err, io.EOF) {
				encodeRPCError(w, fmt.Errorf("%w: %v", errInvalidRPC, err))
				return
			}
		}
		out, err := fn(r.Context(), in)
		if err != nil {
			encodeRPCError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	}
}
