//go:build !unix

package main

import (
	"context"
	"io"
)

// lockProfile does not lock on this platform: run one mimictl per profile
// at a time.
func lockProfile(ctx context.Context, dir string, stderr io.Writer) (func(), error) {
	return func() {}, nil
}
