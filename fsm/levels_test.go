package fsm

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/room"
)

// TestLogLevel: a state applies the rules of no level until CmdLogLevel
// raises it, once; a level above this release's is refused before the log
// and in Apply, a repeat is answered unchanged before the log, and a
// snapshot carries the level (a record only once raised) and refuses a
// level this release does not know.
func TestLogLevel(t *testing.T) {
	if room.RulesLevel > LogLevel {
		t.Fatalf("the room engine's newest rules (%d) are above the log level (%d)", room.RulesLevel, LogLevel)
	}
	cfg := Config{Domain: "a.example"}
	s, err := newState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.RulesLevel() != 0 || s.rulesAt(rulesHostileInputs) {
		t.Fatalf("a new state applies the rules of level %d", s.RulesLevel())
	}
	fresh := mustEncode(t, s)
	admit := func(l uint8) *Result {
		return s.AdmitProposal(&Proposal{Type: CmdLogLevel, Body: &LogLevelBody{Level: l}})
	}
	if r := admit(LogLevel + 1); r == nil || r.Kind != Invalid {
		t.Fatalf("a level above this release's, before the log: %v", r)
	}
	if r := s.raiseLevel(&LogLevelBody{Level: LogLevel + 1}); r.Kind != Invalid || s.RulesLevel() != 0 {
		t.Fatalf("a level above this release's, in Apply: %v, level %d", r, s.RulesLevel())
	}
	if r := admit(LogLevel); r != nil {
		t.Fatalf("raising to this release's level is answered before the log: %v", r)
	}
	if r := s.AdmitProposal(&Proposal{Type: CmdLogLevel, Peer: "b.example", Body: &LogLevelBody{Level: LogLevel}}); r == nil || r.Kind != NotAllowed {
		t.Fatalf("a peer raising the level: %v", r)
	}
	if r := s.raiseLevel(&LogLevelBody{Level: LogLevel}); r.Kind != OK || !s.rulesAt(rulesHostileInputs) {
		t.Fatalf("raise: %v, level %d", r, s.RulesLevel())
	}
	for _, l := range []uint8{1, LogLevel} {
		if r := admit(l); r == nil || r.Kind != OK || !r.unchanged {
			t.Fatalf("raising to %d at level %d, before the log: %v", l, LogLevel, r)
		}
	}

	raised := mustEncode(t, s)
	if bytes.Equal(fresh, raised) {
		t.Fatal("the snapshot does not carry the level")
	}
	r, err := decodeState(cfg, bytes.NewReader(raised))
	if err != nil || r.RulesLevel() != LogLevel || !bytes.Equal(mustEncode(t, r), raised) {
		t.Fatalf("restored: level %d, %v", r.RulesLevel(), err)
	}
	if r, err := decodeState(cfg, bytes.NewReader(fresh)); err != nil || r.RulesLevel() != 0 {
		t.Fatalf("restored before the first raise: %v", err)
	}
	// The record (tag, 4-byte length, level) is the last before the end
	// record (tag 0, length 0): a level this release does not know cannot
	// be restored.
	i := len(raised) - 6
	if raised[i-5] != recLevel || raised[i] != LogLevel {
		t.Fatalf("the level record does not end the snapshot: % x", raised[len(raised)-8:])
	}
	for _, l := range []byte{0, LogLevel + 1} {
		bad := bytes.Clone(raised)
		bad[i] = l
		if _, err := decodeState(cfg, bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "log level") {
			t.Fatalf("a snapshot at level %d: %v", l, err)
		}
	}
}
