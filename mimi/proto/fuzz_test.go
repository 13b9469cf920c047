package proto

import (
	"bytes"
	"sort"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// decoders lists every decoder of untrusted bytes in this package, by the
// kind byte FuzzDecode selects it with.
var decoders = []func() value{
	func() value { return new(Directory) },
	func() value { return new(ConsentEntry) },
	func() value { return new(KeyMaterialRequest) },
	func() value { return new(KeyMaterialResponse) },
	func() value { return new(ParticipantListPatch) },
	func() value { return new(BasePolicy) },
	func() value { return new(UpdateRoomRequest) },
	func() value { return new(UpdateRoomResponse) },
	func() value { return new(FanoutBatch) },
	func() value { return new(GroupInfoRequest) },
	func() value { return new(GroupInfoResponse) },
	func() value { return new(AbuseReport) },
	func() value { return new(IdentifierRequest) },
	func() value { return new(IdentifierResponse) },
	func() value { return new(RemoveClientsRequest) },
	func() value { return new(WelcomeTreeRequest) },
}

// FuzzDecode feeds bytes to every decoder: none may panic, and whatever one
// accepts must re-encode to the same bytes. The seeds are the samples of
// proto_test.go, each under every kind.
func FuzzDecode(f *testing.F) {
	sm := samples(f)
	names := make([]string, 0, len(sm))
	for n := range sm {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v, _ := sm[n]()
		enc := wire.MustMarshal(v)
		for kind := range decoders {
			f.Add(uint8(kind), enc)
		}
	}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		v := decoders[int(kind)%len(decoders)]()
		if Decode(data, v, 1<<16) != nil {
			return
		}
		re, err := wire.Marshal(v)
		if err != nil {
			t.Fatalf("accepted %T does not re-encode: %v", v, err)
		}
		if !bytes.Equal(re, data) {
			t.Fatalf("%T re-encodes differently:\n in %x\nout %x", v, data, re)
		}
	})
}
