package pause

import (
	"context"
	"time"
)

// For waits d, or until ctx ends. It reports whether the whole d passed
// (false: ctx ended first, and the caller should stop).
func For(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
