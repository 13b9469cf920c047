// Package connlimit bounds the connections a listener holds, so that no
// crowd of clients, slow or idle, can take every file descriptor of a
// node: at most Max connections at once (Accept waits for one to close,
// leaving new ones in the kernel's backlog) and at most PerAddr from one
// source address (more are closed as soon as they are accepted). Its
// Accept also outlives transient failures, file descriptor exhaustion
// above all (EMFILE, ENFILE): it backs off, retries, and logs once per
// episode, so the listener serves again as soon as descriptors are free.
package connlimit

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/mimihub/mimi-hub/internal/pause"
)

// Config bounds a listener.
type Config struct {
	// Name names the listener in logs.
	Name string
	// Max bounds the connections held at once (0: no bound).
	Max int
	// PerAddr bounds the connections held at once from one source IP
	// address (0: no bound).
	PerAddr int
	// Refused, when set, is called for every connection closed at once
	// because its address holds PerAddr connections.
	Refused func()
	// Logger receives the accept failures (default slog.Default()).
	Logger *slog.Logger
}

// Backoff bounds of Accept after a transient failure, and how often a
// listener that keeps failing logs it.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
	logEvery   = time.Minute
)

// Listener is a bounded net.Listener.
type Listener struct {
	inner net.Listener
	cfg   Config
	slots chan struct{} // one token per connection held; nil without Max

	mu     sync.Mutex
	byAddr map[string]int

	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	// Accept's failure reports (only Accept touches them).
	lastReport time.Time // when a failure was last logged
	unreported int       // failures since
	reported   bool      // a failure was logged since the last success
}

// Listen bounds ln.
func Listen(ln net.Listener, cfg Config) *Listener {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &Listener{inner: ln, cfg: cfg, byAddr: map[string]int{}}
	if cfg.Max > 0 {
		l.slots = make(chan struct{}, cfg.Max)
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// Accept waits for a free slot and a connection from an address under its
// bound. It returns an error only when the listener is closed or fails
// for good.
func (l *Listener) Accept() (net.Conn, error) {
	backoff, failing := minBackoff, false
	for {
		if l.slots != nil {
			select {
			case l.slots <- struct{}{}:
			case <-l.ctx.Done():
				return nil, net.ErrClosed
			}
		}
		c, err := l.inner.Accept()
		if err != nil {
			l.freeSlot()
			if l.ctx.Err() != nil || !Transient(err) {
				return nil, err
			}
			l.failed(err)
			failing = true
			if !pause.For(l.ctx, backoff) {
				return nil, net.ErrClosed
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		if failing {
			l.recovered()
			backoff, failing = minBackoff, false
		}
		addr := hostOf(c.RemoteAddr())
		if !l.take(addr) {
			c.Close()
			l.freeSlot()
			if l.cfg.Refused != nil {
				l.cfg.Refused()
			}
			continue
		}
		return &Conn{Conn: c, l: l, addr: addr}, nil
	}
}

// failed logs a transient failure: at once, then at most once a minute
// however the listener flaps between failing and accepting.
func (l *Listener) failed(err error) {
	l.unreported++
	if now := time.Now(); now.Sub(l.lastReport) >= logEvery {
		l.cfg.Logger.Error("accepting connections failed; retrying with backoff", "listener", l.cfg.Name, "failures", l.unreported, "err", err)
		l.lastReport, l.unreported, l.reported = now, 0, true
	}
}

// recovered logs the first success after a logged failure.
func (l *Listener) recovered() {
	if l.reported {
		l.cfg.Logger.Info("accepting connections again", "listener", l.cfg.Name)
		l.reported = false
	}
}

// Transient reports whether an Accept error is worth retrying: descriptor
// or buffer exhaustion, an aborted handshake, a timeout.
func Transient(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EAGAIN, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (l *Listener) take(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.PerAddr > 0 && l.byAddr[addr] >= l.cfg.PerAddr {
		return false
	}
	l.byAddr[addr]++
	return true
}

func (l *Listener) release(addr string) {
	l.mu.Lock()
	if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
		delete(l.byAddr, addr)
	}
	l.mu.Unlock()
	l.freeSlot()
}

func (l *Listener) freeSlot() {
	if l.slots != nil {
		<-l.slots
	}
}

// Open returns the connections held now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.byAddr {
		n += c
	}
	return n
}

// Max returns the bound on connections held at once (0: no bound).
func (l *Listener) Max() int { return l.cfg.Max }

// Close stops accepting; connections already accepted stay open.
func (l *Listener) Close() error {
	l.cancel()
	return l.inner.Close()
}

// Addr returns the listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Conn is an accepted connection: it holds its slot until Close or
// Release.
type Conn struct {
	net.Conn
	l    *Listener
	addr string
	once sync.Once
}

// Release gives the connection's slot back while it stays open: the
// listener no longer counts it (a connection that proved it is trusted).
func (c *Conn) Release() { c.once.Do(func() { c.l.release(c.addr) }) }

// Close closes the connection and frees its slot.
func (c *Conn) Close() error {
	c.Release()
	return c.Conn.Close()
}

func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
