package testnet

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread switched into host h's network namespace.
// Sockets fn creates belong to that namespace for their whole life, so a
// listener or a netlink socket made in fn keeps working after Do returns.
func (h Host) Do(fn func() error) error { return InNamespace(h.Namespace, fn) }

// InNamespace runs fn on an OS thread switched into the named network
// namespace (/run/netns/name), then switches the thread back. If switching
// back fails, the thread stays locked, so the runtime retires it.
func InNamespace(name string, fn func() error) error {
	target, err := os.Open("/run/netns/" + name)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("namespace of this thread: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering namespace %s: %w", name, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		return errors.Join(ferr, fmt.Errorf("leaving namespace %s: %w", name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}
