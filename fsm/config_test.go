package fsm

import "testing"

// TestConfigDigest: the digest is the same for a default left zero and
// for the default written out, and changes with every field Apply reads.
func TestConfigDigest(t *testing.T) {
	base := Config{Domain: "a.example"}
	explicit := Config{Domain: "a.example", MaxVector: defaultMaxVector, Bounds: Bounds{InboxLimit: DefaultInboxLimit, InboxBytes: DefaultInboxBytes,
		Retention:        Retention{MaxAge: DefaultRetentionAge, RoomEntries: DefaultRoomEntries, RoomBytes: DefaultRoomBytes, TotalBytes: DefaultTotalLogBytes},
		MaxSubscriptions: DefaultMaxSubscriptions, OutboxLimit: DefaultOutboxLimit, OutboxBytes: DefaultOutboxBytes, OutboxTotalBytes: DefaultOutboxTotalBytes},
		ReportLimit: defaultReportLimit, DedupWindow: defaultDedupWindow}
	if base.Digest() != explicit.Digest() {
		t.Fatal("the digest differs between defaults left zero and written out")
	}
	seen := map[string]string{base.Digest(): "defaults"}
	for name, change := range map[string]func(*Config){
		"Domain":                func(c *Config) { c.Domain = "b.example" },
		"RequireConsent":        func(c *Config) { c.RequireConsent = true },
		"MaxVector":             func(c *Config) { c.MaxVector = 1 << 20 },
		"InboxLimit":            func(c *Config) { c.InboxLimit = 7 },
		"InboxBytes":            func(c *Config) { c.InboxBytes = 7 },
		"Retention.MaxAge":      func(c *Config) { c.Retention.MaxAge = 7 },
		"Retention.RoomEntries": func(c *Config) { c.Retention.RoomEntries = 7 },
		"Retention.RoomBytes":   func(c *Config) { c.Retention.RoomBytes = 7 },
		"Retention.TotalBytes":  func(c *Config) { c.Retention.TotalBytes = 7 },
		"MaxSubscriptions":      func(c *Config) { c.MaxSubscriptions = 7 },
		"OutboxLimit":           func(c *Config) { c.OutboxLimit = 7 },
		"OutboxBytes":           func(c *Config) { c.OutboxBytes = 7 },
		"OutboxTotalBytes":      func(c *Config) { c.OutboxTotalBytes = 7 },
		"ReportLimit":           func(c *Config) { c.ReportLimit = 7 },
		"DedupWindow":           func(c *Config) { c.DedupWindow = 7 },
	} {
		c := base
		change(&c)
		d := c.Digest()
		if prev, ok := seen[d]; ok {
			t.Errorf("changing %s gives the digest of %s", name, prev)
		}
		seen[d] = name
	}
}
