package systemtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections to one of a provider's nodes, like the
// load balancer in front of a provider: each connection goes to the next
// address of backends() (round robin) that accepts it. TLS passes through
// untouched, so peers still authenticate the provider itself.
type Proxy struct {
	ln       net.Listener
	backends func() []string

	mu    sync.Mutex
	next  int
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// StartProxy listens on addr (host:port; port 0 picks one).
func StartProxy(addr string, backends func() []string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("systemtest: proxy: %w", err)
	}
	p := &Proxy{ln: ln, backends: backends, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the proxy's listen address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops listening and closes every forwarded connection.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.forward(c)
		}()
	}
}

func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
	return true
}

// dial connects to the next backend that accepts.
func (p *Proxy) dial() (net.Conn, error) {
	addrs := p.backends()
	if len(addrs) == 0 {
		return nil, errors.New("no backend")
	}
	p.mu.Lock()
	start := p.next
	p.next++
	p.mu.Unlock()
	var errs []error
	for i := range addrs {
		a := addrs[(start+i)%len(addrs)]
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func (p *Proxy) forward(c net.Conn) {
	p.track(c, true)
	defer func() {
		c.Close()
		p.track(c, false)
	}()
	b, err := p.dial()
	if err != nil {
		return
	}
	p.track(b, true)
	defer func() {
		b.Close()
		p.track(b, false)
	}()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		// Half-close so the other direction can finish, then let the
		// deferred closes end both.
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(b, c)
	go pipe(c, b)
	<-done
	<-done
}
