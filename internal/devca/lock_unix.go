//go:build unix

package devca

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock, released when f is closed.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
}
