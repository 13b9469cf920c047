package cluster

import (
	"slices"
	"testing"
	"time"
)

// TestStateMismatches: the members still in the cluster whose state
// digest differs are named; failed and departed members, members that
// advertise none, and this node are not.
func TestStateMismatches(t *testing.T) {
	g := &gossip{meta: nodeMeta{StateDigest: "aaaa"}, now: time.Now, members: map[string]*member{}}
	for id, m := range map[string]struct {
		digest string
		status MemberStatus
	}{
		"self": {"aaaa", StatusAlive}, "same": {"aaaa", StatusAlive}, "other": {"bbbb", StatusAlive},
		"suspect": {"bbbb", StatusSuspect}, "failed": {"bbbb", StatusFailed}, "left": {"bbbb", StatusLeft},
		"silent": {"", StatusAlive},
	} {
		g.members[id] = &member{ID: id, Status: m.status, Since: time.Now(), Meta: nodeMeta{StateDigest: m.digest}}
	}
	if got, want := g.stateMismatches("self"), []string{"other", "suspect"}; !slices.Equal(got, want) {
		t.Errorf("mismatches %v, want %v", got, want)
	}
	g.meta.StateDigest = ""
	if got := g.stateMismatches("self"); got != nil {
		t.Errorf("a node that advertises no digest names %v", got)
	}
}
