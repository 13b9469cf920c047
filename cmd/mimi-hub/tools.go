package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/mimihub/mimi-hub/internal/buildinfo"
)

// healthcheckTimeout bounds `mimi-hub healthcheck`: a container runtime
// runs it every few seconds and must get an answer before the next.
const healthcheckTimeout = 5 * time.Second

// runTool runs the invocations that are not the daemon: `-version` and
// `healthcheck`. It reports whether args named one of them.
func runTool(args []string, getenv func(string) string, stdout, stderr io.Writer) (bool, error) {
	if len(args) > 0 && args[0] == "healthcheck" {
		return true, healthcheck(args[1:], getenv, stdout, stderr)
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-version" || a == "--version" || a == "-version=true" || a == "--version=true" {
			fmt.Fprintln(stdout, buildinfo.Read().Line("mimi-hub"))
			return true, nil
		}
	}
	return false, nil
}

// healthcheck asks the node configured by args and the environment (the
// daemon's own flags, -config file and MIMI_HUB_* variables) whether it is
// ready: GET /readyz on its operations listener. It is what a container
// image built FROM scratch, without a shell or curl, runs as its health
// check. A wildcard listen address is probed on loopback.
func healthcheck(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(args, getenv, stderr)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	target, err := probeAddr(cfg.OpsAddr)
	if err != nil {
		return fmt.Errorf("healthcheck: ops address: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), healthcheckTimeout)
	defer cancel()
	url := "http://" + target + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s: %s: %s", url, resp.Status, msg)
	}
	fmt.Fprintln(stdout, msg)
	return nil
}

// probeAddr turns a listen address into one to connect to: an unspecified
// host (":8445", "0.0.0.0:8445", "[::]:8445") becomes loopback.
func probeAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	switch ip := net.ParseIP(host); {
	case host == "":
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return net.JoinHostPort(host, port), nil
}
