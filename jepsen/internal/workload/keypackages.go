package workload

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mimihub/mimi-hub/internal/pause"
	"github.com/mimihub/mimi-hub/jepsen/internal/history"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// KeyPackages is the KeyPackage claim workload.
type KeyPackages struct {
	Env *Env
	// Targets users with Clients clients each upload KeyPackages; Claimers
	// claim them. Zeros mean 3 users of 2 clients and 6 claimers.
	Targets, Clients, Claimers int
	// Batch is the KeyPackages per upload and Budget the most one client
	// uploads in the run; zeros mean 10 and 2000.
	Batch, Budget int
	// LastResortEvery makes every n-th claim accept last-resort
	// KeyPackages; zero means 5.
	LastResortEvery int

	targets  []*identity // clients of target users
	users    []proto.URI
	claimers []*identity
	uploaded map[proto.URI]int
	mu       sync.Mutex
}

// Setup registers the target clients (each uploads a first batch and a
// last-resort KeyPackage) and the claimers.
func (w *KeyPackages) Setup(ctx context.Context) error {
	positive(&w.Targets, 3)
	positive(&w.Clients, 2)
	positive(&w.Claimers, 6)
	positive(&w.Batch, 10)
	positive(&w.Budget, 2000)
	positive(&w.LastResortEvery, 5)
	w.uploaded = map[proto.URI]int{}
	e := w.Env
	for i := range w.Targets {
		user := fmt.Sprintf("%s-kp%d", e.cfg.Prefix, i)
		for j := range w.Clients {
			id, err := e.register(ctx, user, fmt.Sprintf("d%d", j))
			if err != nil {
				return err
			}
			w.targets = append(w.targets, id)
			if err := w.upload(ctx, id, true); err != nil {
				return err
			}
		}
		w.users = append(w.users, proto.UserURI(e.cfg.Domain, user))
	}
	for i := range w.Claimers {
		id, err := e.register(ctx, fmt.Sprintf("%s-claimer%d", e.cfg.Prefix, i), "d")
		if err != nil {
			return err
		}
		w.claimers = append(w.claimers, id)
	}
	return nil
}

// upload uploads a batch of id's KeyPackages (plus a last-resort one when
// lastResort is set), recording them as uploaded before sending: an
// upload with an unknown outcome may have stored them.
func (w *KeyPackages) upload(ctx context.Context, id *identity, lastResort bool) error {
	e := w.Env
	n := w.Batch
	if lastResort {
		n++
	}
	var kps []*mls.KeyPackage
	var refs []string
	var up []history.Uploaded
	for i := range n {
		last := lastResort && i == n-1
		b, ref, err := id.keyPackage(last)
		if err != nil {
			return err
		}
		kps = append(kps, b.KeyPackage)
		refs = append(refs, ref)
		up = append(up, history.Uploaded{User: string(id.user), Client: string(id.client), Ref: ref, LastResort: last})
	}
	e.cfg.History.AddUploaded(up...)
	w.mu.Lock()
	w.uploaded[id.client] += n
	w.mu.Unlock()
	key, err := newKey()
	if err != nil {
		return err
	}
	op := e.cfg.History.Invoke(history.Op{Process: id.proc, Kind: history.KindUpload, User: string(id.user), Client: string(id.client), KeyPackageRefs: refs, As: string(id.client)})
	a := e.retryWrite(ctx, 3, key, func(ctx context.Context, ep Endpoint) (string, error) {
		api, err := e.api(id.token, ep)
		if err != nil {
			return "", err
		}
		if err := api.UploadKeyPackages(ctx, kps); err != nil {
			return "", err
		}
		return proto.UpdateSuccess.String(), nil
	})
	e.cfg.History.Complete(op, func(o *history.Op) {
		o.Result, o.Code, o.Node, o.Attempts = a.result, a.code, a.node, a.attempts
		if a.err != nil {
			o.Error = a.err.Error()
		}
	})
	return nil
}

// Run claims and uploads until ctx ends.
func (w *KeyPackages) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, c := range w.claimers {
		wg.Go(func() { w.claimLoop(ctx, c) })
	}
	for _, t := range w.targets {
		wg.Go(func() { w.uploadLoop(ctx, t) })
	}
	wg.Wait()
	return nil
}

func (w *KeyPackages) uploadLoop(ctx context.Context, id *identity) {
	for range w.Budget / w.Batch {
		if !pause.For(ctx, 500*time.Millisecond+time.Duration(w.Env.intn(1000))*time.Millisecond) {
			return
		}
		w.mu.Lock()
		over := w.uploaded[id.client]+w.Batch > w.Budget
		w.mu.Unlock()
		if over {
			return
		}
		if err := w.upload(ctx, id, false); err != nil {
			w.Env.log.Warn("KeyPackage upload", "client", id.client, "err", err)
		}
	}
}

func (w *KeyPackages) claimLoop(ctx context.Context, id *identity) {
	e := w.Env
	for i := range 1_000_000 {
		if !pause.For(ctx, time.Duration(50+e.intn(100))*time.Millisecond) {
			return
		}
		user := w.users[e.intn(len(w.users))]
		lastResort := i%w.LastResortEvery == 0
		w.claim(ctx, id, user, lastResort)
	}
}

// claim claims user's KeyPackages once through a random node. A claim is
// not retried: a retry could hand out a second KeyPackage legitimately.
func (w *KeyPackages) claim(ctx context.Context, id *identity, user proto.URI, lastResort bool) {
	e := w.Env
	ep, err := e.pick()
	if err != nil {
		return
	}
	api, err := e.api(id.token, ep)
	if err != nil {
		return
	}
	op := e.cfg.History.Invoke(history.Op{Process: id.proc, Kind: history.KindClaim, User: string(user), Node: ep.Node, Attempts: 1, As: string(id.client)})
	// A claim, once sent, runs to its answer even when the run ends.
	tctx, wrote := traced(context.WithoutCancel(ctx))
	resp, err := api.ClaimKeyMaterial(tctx, client.ClaimRequest{Users: []proto.URI{user}, LastResortAllowed: lastResort})
	e.cfg.History.Complete(op, func(o *history.Op) {
		if err != nil {
			o.Result, o.Code = classifyAttempt(err, wrote.Load())
			o.Error = err.Error()
			return
		}
		var refs []string
		var errs []error
		status := "noKeyPackages"
		for _, u := range resp.Users {
			status = u.Status.String()
			for _, c := range u.Clients {
				if c.Status != proto.ClientSuccess || c.KeyPackage == nil || c.KeyPackage.KeyPackage == nil {
					continue
				}
				ref, err := c.KeyPackage.KeyPackage.Ref()
				if err != nil {
					errs = append(errs, err)
					continue
				}
				refs = append(refs, hex.EncodeToString(ref))
				if c.KeyPackage.KeyPackage.IsLastResort() {
					o.LastResort = true
				}
			}
		}
		o.KeyPackageRefs = refs
		o.Code = status
		switch {
		case len(refs) > 0:
			o.Result = history.OK
		case len(errs) > 0:
			o.Result, o.Error = history.Unknown, errors.Join(errs...).Error()
		default:
			o.Result = history.Fail
		}
	})
}

// Load makes n writes (single-KeyPackage uploads of a dedicated client,
// eight at a time) through the nodes but those in avoid, for the snapshot
// nemesis; they are not part of the history.
func (e *Env) Load(ctx context.Context, n int, avoid []string) error {
	id, err := e.registerAvoiding(ctx, fmt.Sprintf("%s-loader-%d", e.cfg.Prefix, e.nextProcess()), "d", avoid)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures int
	next := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for range next {
				b, _, err := id.keyPackage(false)
				if err == nil {
					err = e.setupCall(ctx, "load", avoid, func(ctx context.Context, ep Endpoint) error {
						api, err := e.api(id.token, ep)
						if err != nil {
							return err
						}
						return api.UploadKeyPackages(ctx, []*mls.KeyPackage{b.KeyPackage})
					})
				}
				if err != nil {
					mu.Lock()
					failures++
					mu.Unlock()
				}
			}
		})
	}
	for range n {
		select {
		case next <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
	if failures > n/2 {
		return fmt.Errorf("%d of %d load writes failed", failures, n)
	}
	return ctx.Err()
}
