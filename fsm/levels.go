package fsm

import "github.com/mimihub/mimi-hub/mimi/wire"

// Rules that change how existing commands apply.
//
// A replica restores its own latest snapshot and replays the log after
// it, and replicas take snapshots at different indexes; during a rolling
// upgrade, nodes of two releases apply the same entries. A release that
// changed how an entry already in the log applies (a bound, a refusal)
// would make replicas disagree about that entry: by release, and, after
// the upgrade, by where each one's snapshot was taken. So such a rule
// applies only from a log entry on: CmdLogLevel raises the state's rules
// level, every replica at the same index, and a rule brought by level n
// applies only while the state is at n or above (rulesAt). The leader
// proposes the entry once every server of the Raft configuration
// advertises a LogLevel of n (cluster RunMaintenance), since a node of an
// older release would refuse the command and go on by the old rules. The
// room engine follows the state's level (room.Room.SetRulesLevel).

// rulesHostileInputs is the level that brought the bounds and refusals
// against hostile peers, users and members of this release (the rules
// that check rulesAt(rulesHostileInputs)).
const rulesHostileInputs = 2

// LogLevelBody raises the rules level of the state (CmdLogLevel).
type LogLevelBody struct {
	Level uint8
}

// EncodeTLS writes the body.
func (b *LogLevelBody) EncodeTLS(w *wire.Writer) { w.Uint8(b.Level) }

// DecodeTLS reads the body.
func (b *LogLevelBody) DecodeTLS(r *wire.Reader) { r.Uint8(&b.Level) }

// raiseLevel applies CmdLogLevel: the rules of every level up to b.Level
// apply from this entry on. A level this release does not know is
// refused; one at or below the state's changes nothing.
func (s *State) raiseLevel(b *LogLevelBody) *Result {
	if r := s.checkLevel(b); r != nil {
		return r
	}
	s.setRules(int(b.Level))
	s.rebuildLogIndex()
	return success(nil)
}

// setRules makes the state, and the parts of it that keep rules of their
// own (the consent book, the key material store, the room-log order),
// apply the rules of level l. Rooms get it before each request
// (applyRoom). The room-log order is rebuilt by the caller.
func (s *State) setRules(l int) {
	s.rules = l
	s.consent.SetRulesLevel(l)
	s.keys.SetRulesLevel(l)
	s.logs.perHub = s.rulesAt(rulesHostileInputs)
}

// checkLevel answers a CmdLogLevel that changes nothing or that this
// release cannot apply.
func (s *State) checkLevel(b *LogLevelBody) *Result {
	switch {
	case int(b.Level) > LogLevel:
		return refused(Invalid, "log level %d is above this release's %d", b.Level, LogLevel)
	case int(b.Level) <= s.rules:
		return answerUnchanged(nil)
	}
	return nil
}

// RulesLevel is the log level whose rules the state applies entries with
// (CmdLogLevel; 0 before the first): the leader proposes the command
// until it is LogLevel.
func (s *State) RulesLevel() int { return s.rules }

// rulesAt reports whether the rules of level apply.
func (s *State) rulesAt(level int) bool { return s.rules >= level }
