package fsm

// auditRules reports whether the rules of the client API audit apply to
// the entry being applied: consent notices fill an inbox only to half
// (notifyConsent), a full report table displaces the largest reporter's
// and holds maxReportBytes (keepReport), uploaded KeyPackages are at most
// proto.MaxKeyPackageSize (keymaterial), and the consent book's bounds
// against floods (SetFloodRules). They change how commands already in a
// log apply, so once this branch meets the rules levels (fsm/levels.go on
// main) this is s.rulesAt(the level that brings them): entries logged
// before it replay by the rules they were logged under. Until then every
// entry applies them.
func (s *State) auditRules() bool { return true }

// setAuditRules makes the key material and the consent book apply the
// entry by auditRules.
func (s *State) setAuditRules() {
	on := s.auditRules()
	s.keys.SetKeyPackageSizeBound(on)
	s.consent.SetFloodRules(on)
}
