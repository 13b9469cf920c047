package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestAbuseReportSize: an abuse report is kept in the replicated state
// until reports displace it, and any participant of any room (a room of
// one's own will do) may file one, so the client API takes reports of at
// most MaxBody, as the federation endpoint does (a larger one could not
// be relayed to a mimi-hub hub anyway). Over it: 413, nothing kept.
func TestAbuseReportSize(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	mallory := e.register("mallory", "x")
	id := e.createRoom(mallory, "own")
	report := func(note string) []byte {
		return wire.MustMarshal(&proto.AbuseReport{ReportingUser: mallory.user, AllegedAbuser: "mimi://a.example/u/alice", GroupID: []byte(id),
			Reason: proto.AbuseSpam, Note: note})
	}
	want(t, e.apiDo(http.MethodPost, roomPath(id, "abuse"), mallory.token, map[string]any{"report": report("small")}), http.StatusAccepted, "a small report")
	big := report(strings.Repeat("x", int(DefaultMaxBody)))
	wantJSONError(t, e.apiDo(http.MethodPost, roomPath(id, "abuse"), mallory.token, map[string]any{"report": big}), http.StatusRequestEntityTooLarge, kindLimit, "a report over MaxBody")
	e.b.read(func(s *fsm.State) {
		if n := len(s.Reports()); n != 1 {
			t.Fatalf("%d reports kept, want the small one", n)
		}
	})
}
