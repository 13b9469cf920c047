//go:build !unix

package devca

import "os"

// lockFile is a no-op where advisory locks are not available: start the
// first provider of a shared folder alone.
func lockFile(*os.File) error { return nil }
