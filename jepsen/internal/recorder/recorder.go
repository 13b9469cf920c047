package recorder

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mimihub/mimi-hub/jepsen/internal/history"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// MaxBody bounds a fanout request's body.
const MaxBody = 16 << 20

// Config configures the recorder.
type Config struct {
	// Hub is the domain of the provider whose fanout is expected.
	Hub string
	// Certificate names the recorder's domain; Roots verify the hub.
	Certificate tls.Certificate
	Roots       *x509.CertPool
	// History receives a Delivery per request.
	History *history.History
	Logger  *slog.Logger
}

// Recorder is a running follower provider.
type Recorder struct {
	cfg Config
	srv *http.Server
	log *slog.Logger

	mu       sync.Mutex // serializes recording: arrival order is effect order
	count    int
	messages int
	done     chan struct{}
}

// Serve starts serving on ln (listening inside the recorder's namespace).
func Serve(ln net.Listener, cfg Config) *Recorder {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Recorder{cfg: cfg, log: cfg.Logger.With("component", "recorder"), done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /fanout/{roomId}", r.fanout)
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		http.Error(w, "the recorder serves /fanout only", http.StatusNotFound)
	})
	r.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cfg.Certificate}, ClientCAs: cfg.Roots,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		},
		ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(r.done)
		if err := r.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("recorder stopped", "err", err)
		}
	}()
	return r
}

// Counts returns the requests and messages recorded so far.
func (r *Recorder) Counts() (requests, messages int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count, r.messages
}

// Close stops the server.
func (r *Recorder) Close(ctx context.Context) error {
	err := r.srv.Shutdown(ctx)
	<-r.done
	return err
}

func (r *Recorder) fanout(w http.ResponseWriter, req *http.Request) {
	status, msg, d := r.handle(req)
	r.mu.Lock()
	d.At = r.cfg.History.Now()
	d.Status = status
	r.count++
	r.messages += len(d.Messages)
	if d.Room != "" {
		r.cfg.History.AddDelivery(d)
	}
	r.mu.Unlock()
	if status/100 != 2 {
		r.log.Warn("fanout refused", "status", status, "reason", msg)
		http.Error(w, msg, status)
		return
	}
	w.WriteHeader(status)
}

// handle checks and decodes a fanout request.
func (r *Recorder) handle(req *http.Request) (int, string, history.Delivery) {
	var d history.Delivery
	if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
		return http.StatusUnauthorized, "no client certificate", d
	}
	if err := req.TLS.PeerCertificates[0].VerifyHostname(r.cfg.Hub); err != nil {
		return http.StatusForbidden, fmt.Sprintf("only %s fans out here: %v", r.cfg.Hub, err), d
	}
	d.From = r.cfg.Hub
	uri := proto.RoomURI(r.cfg.Hub, req.PathValue("roomId"))
	if id, err := uri.Parse(); err != nil || id.Kind != proto.KindRoom {
		return http.StatusBadRequest, fmt.Sprintf("%q is not a room id", req.PathValue("roomId")), d
	}
	d.Room = string(uri)
	seq, err := strconv.ParseUint(req.Header.Get(client.HeaderSequence), 10, 64)
	if err != nil || seq == 0 {
		return http.StatusBadRequest, "Mimi-Sequence is missing or not a number from 1", d
	}
	d.FirstSeq = seq
	body, err := io.ReadAll(io.LimitReader(req.Body, MaxBody+1))
	if err != nil {
		return http.StatusBadRequest, "reading the body: " + err.Error(), d
	}
	if len(body) > MaxBody {
		return http.StatusRequestEntityTooLarge, "body too large", d
	}
	var batch proto.FanoutBatch
	if err := proto.Decode(body, &batch, client.DefaultMaxVector); err != nil {
		return http.StatusBadRequest, "fanout body: " + err.Error(), d
	}
	for i := range batch {
		enc, err := wire.Marshal(batch[i].Message)
		if err != nil {
			return http.StatusBadRequest, "re-encoding a message: " + err.Error(), d
		}
		d.Messages = append(d.Messages, Describe(enc))
	}
	return http.StatusNoContent, "", d
}

// Digest is the hex SHA-256 of an MLSMessage's encoding: how histories
// name messages.
func Digest(b []byte) string {
	d := sha256.Sum256(b)
	return hex.EncodeToString(d[:])
}

// MessageKind names what an MLSMessage carries: "application", "commit",
// "proposal", "welcome" or "other".
func MessageKind(m *mls.Message) string {
	switch m.WireFormat {
	case mls.WirePrivateMessage:
		return "application" // MIMI rooms send handshakes in public
	case mls.WireWelcome:
		return "welcome"
	case mls.WirePublicMessage:
		if m.Public != nil {
			switch m.Public.Content.ContentType {
			case mls.ContentCommit:
				return "commit"
			case mls.ContentProposal:
				return "proposal"
			}
		}
	}
	return "other"
}

// Describe decodes an MLSMessage's encoding into a history.Message.
func Describe(b []byte) history.Message {
	m := new(mls.Message)
	kind := "other"
	if err := wire.UnmarshalLimit(b, m, client.DefaultMaxVector); err == nil {
		kind = MessageKind(m)
	}
	return history.Message{Digest: Digest(b), Kind: kind}
}
