package fsm

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestReportFloodKeepsOthers: abuse reports are what operators act on, and
// any participant of any room (a room of one's own will do) may file
// them. A flood by one user must not push other users' reports out of the
// bounded table, nor grow it past its bytes. Alice and Carol each report
// Mallory; Mallory then files reports of random sizes, well past the
// table's bounds: theirs stay, the table keeps to ReportLimit reports and
// maxReportBytes.
func TestReportFloodKeepsOthers(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 11))
			cfg := Config{Domain: "a.example", ReportLimit: 20}
			n := newNodeWith(t, cfg)
			n.fast = true
			mallory := proto.UserURI("a.example", "mallory")
			report := func(m *member, roomID proto.URI, note string) {
				t.Helper()
				user, _ := m.uri.UserOf()
				rep := &proto.AbuseReport{ReportingUser: user, AllegedAbuser: mallory, GroupID: []byte(roomID), Reason: proto.AbuseSpam, Note: note}
				n.ok(n.apply(CmdReportAbuse, nil, "", &RoomBody{Room: roomID, Request: wire.MustMarshal(rep)}), "report by "+string(user))
			}
			var honest []*member
			for _, name := range []string{"alice", "carol"} {
				m := newMember(t, proto.ClientURI("a.example", name, "phone"))
				n.register(m.uri, name)
				roomID := proto.RoomURI("a.example", name+"s-room")
				n.createRoom(m, roomID)
				report(m, roomID, "spam from mallory")
				honest = append(honest, m)
			}
			evil := newMember(t, proto.ClientURI("a.example", "mallory", "x"))
			n.register(evil.uri, "mallory")
			evilRoom := proto.RoomURI("a.example", "mallorys-room")
			n.createRoom(evil, evilRoom)
			for range 3 * cfg.ReportLimit {
				size := rng.IntN(64)
				if rng.IntN(4) == 0 {
					size = rng.IntN(3 * maxReportBytes / cfg.ReportLimit)
				}
				report(evil, evilRoom, strings.Repeat("x", size))
			}
			_ = n.f.Read(func(s *State) error {
				reps := s.Reports()
				if len(reps) > cfg.ReportLimit {
					t.Errorf("%d reports kept, the limit is %d", len(reps), cfg.ReportLimit)
				}
				total := 0
				by := map[proto.URI]int{}
				for _, r := range reps {
					total += len(wire.MustMarshal(r.Body))
					by[r.Body.ReportingUser]++
				}
				if total > maxReportBytes {
					t.Errorf("%d bytes of reports kept, the bound is %d", total, maxReportBytes)
				}
				for _, m := range honest {
					if u, _ := m.uri.UserOf(); by[u] != 1 {
						t.Errorf("%s's report is gone after Mallory's flood (%d of Mallory's kept)", u, by[mallory])
					}
				}
				return nil
			})
		})
	}
}
