package main

import (
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"

	"github.com/mimihub/mimi-hub/internal/hub"
)

// On SIGHUP the daemon reads its configuration again (the -config file and
// the environment; the command line is the same) and applies, without a
// restart and without dropping connections:
//
//   - the provider certificate and key (-cert/-key, or the development
//     ones, issued again if their files were removed) and the peer CA;
//   - the cluster certificate, key and CA (-cluster-cert/-cluster-key/
//     -cluster-ca, or the development ones);
//   - the peer map (-peer) and the log level (-log-level).
//
// Anything else that changed (addresses, the domain, Raft timing...) is
// named in the log and takes effect at the next restart. A configuration
// that does not load, or material that does not verify, changes nothing.

// reloadable is what hub.Reload takes: the part of the daemon's
// configuration SIGHUP applies.
type reloadable interface {
	Reload(hub.Reload) error
}

// reloader re-reads the configuration and applies what can change.
type reloader struct {
	args    []string
	getenv  func(string) string
	level   *slog.LevelVar
	log     *slog.Logger
	hub     reloadable
	current config
}

// reload handles one SIGHUP.
func (r *reloader) reload() error {
	r.log.Info("reloading the configuration (SIGHUP)")
	cfg, err := loadConfig(r.args, r.getenv, io.Discard)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	// The admin token is not reloaded: keep the one the node runs with,
	// so that the comparison below does not report it.
	cfg.AdminToken, cfg.AdminTokenSet = r.current.AdminToken, r.current.AdminTokenSet
	var level slog.LevelVar
	if err := cfg.setLevel(&level); err != nil {
		return err
	}
	m, err := cfg.loadMaterial(r.log)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if err := r.hub.Reload(hub.Reload{Certificate: m.cert, PeerRoots: m.peerRoots, Peers: cfg.Peers, ClusterTLS: m.cluster}); err != nil {
		return err
	}
	r.level.Set(level.Level())
	if later := restartOnly(r.current, cfg); len(later) > 0 {
		r.log.Warn("these settings changed but take effect only at the next restart", "settings", later)
	}
	r.current = cfg
	r.log.Info("reloaded", "log_level", level.Level(), "peers", len(cfg.Peers))
	return nil
}

// restartOnly names the settings that differ between a and b other than
// the ones a reload applies (their JSON keys).
func restartOnly(a, b config) []string {
	var out []string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	t := va.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("json")
		switch name {
		case "peer", "log_level", "cert", "key", "peer_ca", "cluster_cert", "cluster_key", "cluster_ca", "-", "":
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
