package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/internal/hub"
)

// fakeHub records reloads.
type fakeHub struct {
	got []hub.Reload
	err error
}

func (f *fakeHub) Reload(r hub.Reload) error {
	if f.err != nil {
		return f.err
	}
	f.got = append(f.got, r)
	return nil
}

// TestReloader reloads a node configured by a file: a new log level, peer
// map and (development) certificate are applied; settings that need a
// restart are named; a broken file or a refused reload changes nothing.
func TestReloader(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.json")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"domain": "a.example", "data": "` + filepath.Join(dir, "data") + `", "log_level": "info", "peer": {"b.example": "127.0.0.1:9443"}}`)
	args := []string{"-config", file}
	noEnv := func(string) string { return "" }
	cfg, err := loadConfig(args, noEnv, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	level := new(slog.LevelVar)
	log, err := cfg.logger(&logs, level)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.loadMaterial(log); err != nil {
		t.Fatal(err)
	}
	fh := &fakeHub{}
	r := &reloader{args: args, getenv: noEnv, level: level, log: log, hub: fh, current: cfg}
	oldSerial := certSerial(t, filepath.Join(dir, "data", "dev-cert.pem"))

	// A new level, another peer, a different address, and the dev
	// certificate removed: issued again.
	write(`{"domain": "a.example", "data": "` + filepath.Join(dir, "data") + `", "log_level": "debug", "ops_addr": "127.0.0.1:9999", "peer": {"c.example": "127.0.0.1:9543"}}`)
	os.Remove(filepath.Join(dir, "data", "dev-cert.pem"))
	if err := r.reload(); err != nil {
		t.Fatal(err)
	}
	if level.Level() != slog.LevelDebug {
		t.Errorf("level %v after the reload, want debug", level.Level())
	}
	if len(fh.got) != 1 || fh.got[0].Peers["c.example"] != "127.0.0.1:9543" || len(fh.got[0].Peers) != 1 || fh.got[0].ClusterTLS == nil {
		t.Fatalf("hub got %+v", fh.got)
	}
	if leaf, _ := x509.ParseCertificate(fh.got[0].Certificate.Certificate[0]); leaf == nil || leaf.SerialNumber.String() == oldSerial {
		t.Errorf("the reload kept the removed certificate (serial %s)", oldSerial)
	}
	if !strings.Contains(logs.String(), "take effect only at the next restart") || !strings.Contains(logs.String(), "ops_addr") {
		t.Errorf("the log does not name ops_addr as needing a restart:\n%s", logs.String())
	}
	if later := restartOnly(cfg, r.current); !slices.Equal(later, []string{"ops_addr"}) {
		t.Errorf("restartOnly = %v", later)
	}

	// A broken file changes nothing.
	write(`{"domain": `)
	if err := r.reload(); err == nil {
		t.Fatal("a broken configuration file reloaded")
	}
	write(`{"domain": "a.example", "data": "` + filepath.Join(dir, "data") + `", "log_level": "loud"}`)
	if err := r.reload(); err == nil || level.Level() != slog.LevelDebug || len(fh.got) != 1 {
		t.Fatalf("an unknown log level: %v, level %v, %d reloads", err, level.Level(), len(fh.got))
	}
	// A refused reload keeps the level too.
	write(`{"domain": "a.example", "data": "` + filepath.Join(dir, "data") + `", "log_level": "error"}`)
	fh.err = errors.New("refused")
	if err := r.reload(); err == nil || level.Level() != slog.LevelDebug {
		t.Fatalf("a refused reload: %v, level %v", err, level.Level())
	}
}

func certSerial(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s holds no PEM", file)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}
