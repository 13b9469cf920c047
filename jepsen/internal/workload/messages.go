package workload

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mimihub/mimi-hub/internal/pause"
	"github.com/mimihub/mimi-hub/jepsen/internal/history"
	"github.com/mimihub/mimi-hub/jepsen/internal/recorder"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Messages is the application message workload.
type Messages struct {
	Env *Env
	// FollowerDomain is the follower provider's domain; a user of it is
	// added to every room, so the hub fans out to it.
	FollowerDomain string
	// Rooms and Senders size it; zeros mean 2 rooms of 3 senders.
	Rooms, Senders int
	// PerSender bounds each sender's messages; zero means 20000.
	PerSender int
	// Every is the pause between a sender's messages; zero means 20ms.
	Every time.Duration

	rooms []*msgRoom
}

type msgRoom struct {
	*mlsRoom
	senders  []*member
	observer *identity
	// after is the last stream item the observer read (and acknowledged).
	after uint64
}

// Setup creates the rooms: a creator, senders, an observer (subscribed to
// the room's messages, to read the hub's order back) and one client of
// the follower provider.
func (w *Messages) Setup(ctx context.Context) error {
	positive(&w.Rooms, 2)
	positive(&w.Senders, 3)
	positive(&w.PerSender, 20_000)
	positive(&w.Every, 20*time.Millisecond)
	e := w.Env
	for i := range w.Rooms {
		var senders []*identity
		for j := range w.Senders {
			id, err := e.register(ctx, fmt.Sprintf("%s-msg%d-s%d", e.cfg.Prefix, i, j), "d")
			if err != nil {
				return err
			}
			senders = append(senders, id)
		}
		observer, err := e.register(ctx, fmt.Sprintf("%s-msg%d-obs", e.cfg.Prefix, i), "d")
		if err != nil {
			return err
		}
		follower, err := newIdentity(w.FollowerDomain, fmt.Sprintf("%s-msg%d-f", e.cfg.Prefix, i), "d")
		if err != nil {
			return err
		}
		r, err := e.createRoom(ctx, senders[0], fmt.Sprintf("%s-msg-%d", e.cfg.Prefix, i))
		if err != nil {
			return err
		}
		if err := e.add(ctx, r, append(append([]*identity{}, senders[1:]...), observer, follower)); err != nil {
			return err
		}
		if err := e.setupCall(ctx, "subscribe the observer", nil, func(ctx context.Context, ep Endpoint) error {
			api, err := e.api(observer.token, ep)
			if err != nil {
				return err
			}
			return api.Subscribe(ctx, r.uri)
		}); err != nil {
			return err
		}
		mr := &msgRoom{mlsRoom: r, observer: observer}
		for _, m := range r.members {
			if m.id != observer {
				mr.senders = append(mr.senders, m)
			}
		}
		w.rooms = append(w.rooms, mr)
	}
	return nil
}

// Run sends until ctx ends or every sender sent PerSender messages, while
// the observers read (and acknowledge) their streams every two seconds, so
// that their inboxes never overflow.
func (w *Messages) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, r := range w.rooms {
		for _, s := range r.senders {
			wg.Go(func() { w.sendLoop(ctx, r, s) })
		}
		wg.Go(func() {
			for range 1_000_000 {
				if !pause.For(ctx, 2*time.Second) {
					return
				}
				if err := w.observe(ctx, r); err != nil {
					w.Env.log.Debug("observer", "room", r.uri, "err", err)
				}
			}
		})
	}
	wg.Wait()
	return nil
}

func (w *Messages) sendLoop(ctx context.Context, r *msgRoom, s *member) {
	e := w.Env
	for i := range w.PerSender {
		if !pause.For(ctx, w.Every/2+time.Duration(e.intn(int(w.Every)))) {
			return
		}
		text := fmt.Sprintf("%s %s %d", r.uri, s.id.client, i)
		msg, err := s.group.Encrypt([]byte(text), room.SenderHint(s.id.client))
		if err != nil {
			e.log.Warn("encrypt", "err", err)
			return
		}
		enc, err := wire.Marshal(msg)
		if err != nil {
			return
		}
		key, err := newKey()
		if err != nil {
			return
		}
		op := e.cfg.History.Invoke(history.Op{Process: s.id.proc, Kind: history.KindSend, Room: string(r.uri), Sender: string(s.id.client), Digest: recorder.Digest(enc), As: string(s.id.client)})
		a := e.retryWrite(ctx, 3, key, func(ctx context.Context, ep Endpoint) (string, error) {
			api, err := e.api(s.id.token, ep)
			if err != nil {
				return "", err
			}
			resp, err := api.SendMessage(ctx, r.uri, msg)
			if err != nil {
				return "", err
			}
			return resp.Code.String(), nil
		})
		e.cfg.History.Complete(op, func(o *history.Op) {
			o.Result, o.Code, o.Node, o.Attempts = a.result, a.code, a.node, a.attempts
			if a.err != nil {
				o.Error = a.err.Error()
			}
		})
	}
}

// Observe reads each room's observer stream to its end and records the
// hub's order of the room's messages. Run it after the cluster healed.
func (w *Messages) Observe(ctx context.Context) error {
	var errs []error
	for _, r := range w.rooms {
		if err := w.observe(ctx, r); err != nil {
			errs = append(errs, fmt.Errorf("observing %s: %w", r.uri, err))
		}
	}
	return errors.Join(errs...)
}

// observe reads the observer's stream from where it stopped to its end,
// records the room's messages in hub order and acknowledges what it read.
func (w *Messages) observe(ctx context.Context, r *msgRoom) error {
	e := w.Env
	for range 10_000 {
		var page *client.StreamPage
		err := e.setupCall(ctx, "read the stream", nil, func(ctx context.Context, ep Endpoint) error {
			api, err := e.api(r.observer.token, ep)
			if err != nil {
				return err
			}
			page, err = api.Stream(ctx, client.StreamOptions{After: r.after, Limit: 1000})
			return err
		})
		if err != nil {
			return err
		}
		if page.Gap {
			return fmt.Errorf("the observer's stream has a gap after %d: items were dropped", r.after)
		}
		var seen []history.Observed
		for _, it := range page.Items {
			r.after = it.Seq
			if it.Kind != client.ItemMessage || it.Room != r.uri {
				continue
			}
			seen = append(seen, history.Observed{Room: string(r.uri), HubSeq: it.HubSeq, Message: recorder.Describe(it.Data)})
		}
		e.cfg.History.AddObserved(seen...)
		if len(page.Items) > 0 {
			after := r.after
			if err := e.setupCall(ctx, "acknowledge the stream", nil, func(ctx context.Context, ep Endpoint) error {
				api, err := e.api(r.observer.token, ep)
				if err != nil {
					return err
				}
				return api.Ack(ctx, after)
			}); err != nil {
				return err
			}
		}
		if len(page.Items) == 0 || r.after >= page.Last {
			return nil
		}
	}
	return errors.New("the stream did not end")
}

// RoomURIs returns the rooms' URIs.
func (w *Messages) RoomURIs() []proto.URI {
	var out []proto.URI
	for _, r := range w.rooms {
		out = append(out, r.uri)
	}
	return out
}
