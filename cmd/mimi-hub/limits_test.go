package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/internal/hub"
)

// TestLimitOptions: the limits come from the file, the environment and
// flags like every option, and reach the node's configuration.
func TestLimitOptions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(file, []byte(`{"retention":"1h","room_log_bytes":1000,"log_bytes":5000,"inbox_items":7}`), 0o600)
	env := map[string]string{"MIMI_HUB_MAX_CONNS": "10", "MIMI_HUB_BODY_TIMEOUT": "3s"}
	c, err := loadConfig([]string{"-config", file, "-client-requests-per-second", "-1", "-peer-bytes-per-second", "1e6", "-max-raft-entry-bytes", "4096"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var h hub.Config
	c.limitsConfig.apply(&h)
	switch {
	case h.MaxConns != 10 || h.MaxConnsPerAddr != 0:
		t.Fatalf("connections: %d, %d", h.MaxConns, h.MaxConnsPerAddr)
	case h.Limits.ClientBudget.Requests != -1 || h.Limits.PeerBudget.Bytes != 1e6 || h.Limits.BodyTimeout != 3*time.Second:
		t.Fatalf("limits: %+v", h.Limits)
	case h.State.Retention.MaxAge != 3_600_000 || h.State.Retention.RoomBytes != 1000 || h.State.Retention.TotalBytes != 5000 || h.State.InboxLimit != 7:
		t.Fatalf("state bounds: %+v", h.State)
	case h.Raft.MaxEntrySize != 4096:
		t.Fatalf("entry size: %d", h.Raft.MaxEntrySize)
	}
	if _, err := loadConfig([]string{"-room-log-bytes", "lots"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Fatal("a malformed bound was accepted")
	}
}
