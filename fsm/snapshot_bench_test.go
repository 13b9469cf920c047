package fsm

import (
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/mimihub/mimi-hub/mimi/proto"
)

// BenchmarkSnapshot compares the two halves of a snapshot of a provider
// with many clients following rooms with full logs: the capture, which
// holds the FSM lock (and so Apply), against the encoding, which runs
// after it. The lock used to cover the whole encoding, key material
// included: encode plus the key material part of capture-after-keys-changed
// is the baseline.
//
//	go test ./fsm -run '^$' -bench Snapshot -benchtime 20x
func BenchmarkSnapshot(b *testing.B) {
	for _, clients := range []int{1000, 10_000} {
		n := &node{t: b, now: t0, fast: true}
		n.cfg = Config{Domain: "b.example"}
		var err error
		if n.f, err = New(n.cfg); err != nil {
			b.Fatal(err)
		}
		const rooms = 100
		for i := range clients {
			c := proto.ClientURI("b.example", fmt.Sprintf("u%d", i), "d")
			n.register(c, "t")
			n.apply(CmdSubscribe, nil, "", &SubscribeBody{Client: c, Room: proto.RoomURI("a.example", fmt.Sprintf("r%d", i%rooms)), Subscribe: true})
		}
		for i := range rooms * 100 {
			r := proto.RoomURI("a.example", fmt.Sprintf("r%d", i%rooms))
			batch := proto.FanoutBatch{{Message: appMessage(r, make([]byte, 200)), Timestamp: n.now}}
			n.apply(CmdFanout, nil, "a.example", &FanoutBody{Room: r, FirstSeq: uint64(i/rooms + 1), Batch: batch})
		}
		b.Run(fmt.Sprintf("clients=%d/capture", clients), func(b *testing.B) {
			for b.Loop() {
				if _, err := n.f.Snapshot(); err != nil {
					b.Fatal(err)
				}
			}
		})
		// After a command that changed the key material (a registration,
		// an upload, a claim), the capture encodes it again.
		b.Run(fmt.Sprintf("clients=%d/capture-after-keys-changed", clients), func(b *testing.B) {
			for b.Loop() {
				_ = n.f.Read(func(s *State) error { s.keysEnc, s.consentEnc = nil, nil; return nil })
				if _, err := n.f.Snapshot(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("clients=%d/encode", clients), func(b *testing.B) {
			snap, err := n.f.Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			var size int64
			for b.Loop() {
				sink := &countSink{}
				if err := snap.Persist(sink); err != nil {
					b.Fatal(err)
				}
				size = sink.n
			}
			b.ReportMetric(float64(size), "bytes")
		})
	}
}

// countSink is a snapshot sink that counts what it is given.
type countSink struct{ n int64 }

func (s *countSink) Write(p []byte) (int, error) { s.n += int64(len(p)); return len(p), nil }
func (s *countSink) Close() error                { return nil }
func (s *countSink) Cancel() error               { return nil }
func (s *countSink) ID() string                  { return "count" }

var (
	_ raft.SnapshotSink = (*countSink)(nil)
	_ io.Writer         = (*countSink)(nil)
)
