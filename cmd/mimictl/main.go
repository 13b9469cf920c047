package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitCode reports err on stderr and returns the process's exit status: 0
// for success and help, 2 for usage errors, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "mimictl:", err)
		if ue.hint != "" {
			fmt.Fprintln(stderr, ue.hint)
		}
		return 2
	default:
		fmt.Fprintln(stderr, "mimictl:", err)
		return 1
	}
}

// run executes one mimictl invocation and returns its exit status: args
// are the command line without the program name. Output goes to stdout,
// diagnostics and logs to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return exitCode(runErr(ctx, args, stdout, stderr), stderr)
}

// runErr executes one mimictl invocation. It returns flag.ErrHelp after
// printing help, a *usageError for bad arguments, and other errors for
// failures.
func runErr(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e := &env{stdout: stdout, stderr: stderr, getenv: os.Getenv}
	return e.dispatch(ctx, args)
}
