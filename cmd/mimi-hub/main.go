// Command mimi-hub runs a MIMI provider: the hub of the rooms it hosts and
// a follower provider for rooms hosted elsewhere, with its state in Raft.
//
// With no arguments it runs a single-node provider for "localhost": the MIMI
// federation endpoints on 127.0.0.1:8443 (mutual TLS), the client API on
// 127.0.0.1:8444, /healthz and /readyz on 127.0.0.1:8445 and Raft on
// 127.0.0.1:8446, with its data in ./mimi-hub-data and a development CA and
// certificate made there on first start. `mimi-hub -h` lists the flags;
// every flag can also come from a JSON file (-config) or a MIMI_HUB_*
// environment variable. SIGTERM and SIGINT stop it cleanly: servers drain,
// then Raft snapshots and closes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mimihub/mimi-hub/internal/hub"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "mimi-hub:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg, err := loadConfig(args, os.Getenv)
	if err != nil {
		return err
	}
	log, err := cfg.logger()
	if err != nil {
		return err
	}
	cert, roots, err := cfg.certificates(log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	h, err := hub.Start(startCtx, hub.Config{
		Domain:          cfg.Domain,
		DataDir:         cfg.DataDir,
		FederationAddr:  cfg.FederationAddr,
		ClientAddr:      cfg.ClientAddr,
		OpsAddr:         cfg.OpsAddr,
		RaftAddr:        cfg.RaftAddr,
		PublicURL:       cfg.PublicURL,
		Certificate:     cert,
		PeerRoots:       roots,
		Peers:           cfg.Peers,
		AssetHosts:      cfg.AssetHosts,
		RegistrationKey: cfg.RegistrationKey,
		RequireConsent:  cfg.RequireConsent,
		Logger:          log,
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("stopping")
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelClose()
	return h.Close(closeCtx)
}
