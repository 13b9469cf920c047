package systemtest

import "syscall"

// sysProcAttr makes a node die with the process that started it, so a test
// binary killed by its timeout leaves no nodes behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
