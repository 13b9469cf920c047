package mls

import (
	"bytes"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// The seed corpora in testdata/fuzz come from the MLS working group's
// vectors (go run ./internal/tools/fuzzcorpus regenerates them). Each target
// checks that a decoder never panics and that whatever it accepts re-encodes
// to the same bytes.

// fuzzMaxVector bounds vectors as a hub bounds request bodies.
const fuzzMaxVector = 1 << 20

func checkRoundTrip(t *testing.T, data []byte, v interface {
	wire.Encoder
	wire.Decoder
}) bool {
	if err := wire.UnmarshalLimit(data, v, fuzzMaxVector); err != nil {
		return false
	}
	re, err := wire.Marshal(v)
	if err != nil {
		t.Fatalf("accepted input does not re-encode: %v", err)
	}
	if !bytes.Equal(re, data) {
		t.Fatalf("re-encoding differs from the accepted input:\n in %x\nout %x", data, re)
	}
	return true
}

func FuzzMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, new(Message))
	})
}

func FuzzKeyPackage(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var kp KeyPackage
		if checkRoundTrip(t, data, &kp) {
			_ = kp.Validate(testNow)
			_, _ = kp.Ref()
			_ = kp.IsLastResort()
		}
	})
}

func FuzzGroupInfo(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var gi GroupInfo
		if checkRoundTrip(t, data, &gi) {
			// A GroupInfo carrying its tree is enough to start following.
			_, _ = NewFollower(&gi, nil, Config{MaxVector: fuzzMaxVector})
		}
	})
}

func FuzzWelcome(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data, new(Welcome))
	})
}

func FuzzRatchetTree(f *testing.F) {
	s, err := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tree, err := DecodeTree(s, data, fuzzMaxVector)
		if err != nil {
			return
		}
		if re := wire.MustMarshal(tree); !bytes.Equal(re, data) {
			t.Fatalf("re-encoding differs from the accepted tree")
		}
		_ = tree.Hash()
		_ = tree.Validate([]byte("group"), nil)
	})
}

// FuzzFollower feeds arbitrary messages to a hub following a real
// three-member group: nothing may panic, and a rejected message must leave
// the hub exactly as it was.
func FuzzFollower(f *testing.F) {
	r := newTestRoom(f, 3)
	b, err := r.members[1].Commit(CommitOptions{Proposals: []*Proposal{RemoveProposal(2)}, GroupInfo: GroupInfoOptions{ExternalPub: true}})
	if err != nil {
		f.Fatal(err)
	}
	p, err := r.members[2].ProposeUpdate()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(wire.MustMarshal(b.Commit), wire.MustMarshal(b.GroupInfo.GroupInfo))
	f.Add(wire.MustMarshal(p), []byte{})
	state := wire.MustMarshal(r.hub)
	f.Fuzz(func(t *testing.T, msg, groupInfo []byte) {
		hub, err := RestoreFollower(state, Config{})
		if err != nil {
			t.Fatal(err)
		}
		m, err := DecodeMessage(msg)
		if err != nil {
			return
		}
		var gi *GroupInfo
		if len(groupInfo) > 0 {
			gi = new(GroupInfo)
			if wire.Unmarshal(groupInfo, gi) != nil {
				return
			}
		}
		if m.Public != nil && m.Public.Content.ContentType == ContentProposal {
			_, err = hub.ProcessProposal(m, testNow, nil)
		} else {
			_, err = hub.ProcessCommit(m, gi, testNow, nil)
		}
		if err != nil && !bytes.Equal(wire.MustMarshal(hub), state) {
			t.Fatalf("a rejected message (%v) changed the hub", err)
		}
	})
}
