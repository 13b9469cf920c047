package nemesis

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/mimihub/mimi-hub/internal/pause"
)

// Schedule runs nemeses one at a time: a quiet spell, a fault for a while,
// heal, and so on until its context ends or MaxFaults were injected.
type Schedule struct {
	Nemeses []Nemesis
	// Quiet is the pause between faults; Fault how long each lasts.
	Quiet, Fault time.Duration
	// MaxFaults bounds the faults injected; zero means 1000.
	MaxFaults int
	// HealTimeout bounds each heal; zero means two minutes.
	HealTimeout time.Duration
	Rand        *rand.Rand
	Log         *Log
	Logger      *slog.Logger
}

// Run injects faults until ctx ends, then heals whatever is in force and
// returns. Failing to inject is logged and recorded, and the schedule goes
// on; failing to heal is returned (the cluster may not recover).
func (s *Schedule) Run(ctx context.Context) error {
	if len(s.Nemeses) == 0 {
		<-ctx.Done()
		return nil
	}
	maxFaults, healTimeout := s.MaxFaults, s.HealTimeout
	if maxFaults <= 0 {
		maxFaults = 1000
	}
	if healTimeout <= 0 {
		healTimeout = 2 * time.Minute
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var healErrs []error
	for range maxFaults {
		if !pause.For(ctx, s.Quiet) {
			break
		}
		n := s.Nemeses[s.Rand.IntN(len(s.Nemeses))]
		// A fault, once begun, is injected completely even if the run
		// ends meanwhile; it is healed right after.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healTimeout)
		f, err := n.Start(sctx)
		cancel()
		var w int
		if err != nil {
			log.Warn("nemesis failed to start", "kind", n.Kind(), "err", err)
			s.Log.Failed(n.Kind(), err)
			w = -1
		} else {
			log.Info("fault injected", "kind", n.Kind(), "targets", f.Targets, "detail", f.Detail)
			w = s.Log.Begin(n.Kind(), f)
			pause.For(ctx, s.Fault)
		}
		// Heal even after a failed start: part of it may be in force.
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healTimeout)
		herr := n.Stop(hctx)
		cancel()
		if w >= 0 {
			result := ""
			if r, ok := n.(Reporter); ok {
				result = r.Result()
			}
			s.Log.End(w, herr, result)
		}
		if herr != nil {
			log.Error("nemesis failed to heal", "kind", n.Kind(), "err", herr)
			healErrs = append(healErrs, herr)
		} else if w >= 0 {
			log.Info("fault healed", "kind", n.Kind())
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(healErrs...)
}
