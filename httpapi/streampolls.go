package httpapi

import (
	"sync"

	"github.com/mimihub/mimi-hub/mimi/proto"
)

// DefaultMaxStreamPolls is Config.MaxStreamPolls's default.
const DefaultMaxStreamPolls = 4

// streamPolls tracks each client's long polls waiting on this node, so
// that one client holds at most max of them: each holds a connection and
// reads the state again on every applied command. A new poll beyond the
// bound ends the client's oldest (it answers what it has), so a client
// that reconnects while its old connection is still open is never
// refused. The table holds only clients with a poll waiting, so the
// connections bound it.
type streamPolls struct {
	max     int
	mu      sync.Mutex
	waiting map[proto.URI][]chan struct{} // oldest first; closed: end now
}

func newStreamPolls(max int) *streamPolls {
	return &streamPolls{max: max, waiting: map[proto.URI][]chan struct{}{}}
}

// wait registers a waiting poll of client, ending its oldest beyond the
// bound. The poll waits until end is closed, and calls done when it
// stops waiting.
func (p *streamPolls) wait(client proto.URI) (end <-chan struct{}, done func()) {
	ch := make(chan struct{})
	p.mu.Lock()
	defer p.mu.Unlock()
	polls := append(p.waiting[client], ch)
	for len(polls) > p.max {
		close(polls[0])
		polls = polls[1:]
	}
	p.waiting[client] = polls
	return ch, func() { p.remove(client, ch) }
}

// remove forgets a poll that stopped waiting (a no-op for one ended by a
// newer poll).
func (p *streamPolls) remove(client proto.URI, ch chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	polls := p.waiting[client]
	for i, c := range polls {
		if c == ch {
			polls = append(polls[:i:i], polls[i+1:]...)
			break
		}
	}
	if len(polls) == 0 {
		delete(p.waiting, client)
	} else {
		p.waiting[client] = polls
	}
}
