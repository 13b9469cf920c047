package mls

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestCommitCheck: the checks a node makes before a commit is applied
// cover the commit's signature, its path's leaf, its GroupInfo and an
// added KeyPackage (two checks); applying with the record gives the
// outcome applying without it gives; a record skips exactly the checks it
// lists, at exactly the state it names.
func TestCommitCheck(t *testing.T) {
	r := newTestRoom(t, 3)
	c := newTestClient(t, r.suite, "joiner")
	b, err := r.members[1].Commit(CommitOptions{Proposals: []*Proposal{AddProposal(c.kp.KeyPackage)}, GroupInfo: GroupInfoOptions{ExternalPub: true}})
	if err != nil {
		t.Fatal(err)
	}
	cm, gi := transmit(t, b.Commit), transmit(t, b.GroupInfo).GroupInfo
	check := r.hub.PrepareCommitCheck(cm, gi)
	if check == nil || check.Epoch() != r.hub.Epoch() {
		t.Fatalf("no checks taken for a member's commit: %+v", check)
	}
	v, err := check.Run()
	if err != nil {
		t.Fatal(err)
	}
	want := 4 // the commit, its GroupInfo, the KeyPackage and its leaf
	if cm.Public.Content.Commit.Path != nil {
		want++ // the path's leaf
	}
	if len(v.Signatures) != want || v.Epoch != r.hub.Epoch() {
		t.Fatalf("the record lists %d checks at epoch %d, want %d at %d", len(v.Signatures), v.Epoch, want, r.hub.Epoch())
	}
	// The record survives its encoding, and the decoder keeps its bounds.
	var back Verified
	if err := wire.Unmarshal(wire.MustMarshal(v), &back); err != nil || !bytes.Equal(wire.MustMarshal(&back), wire.MustMarshal(v)) {
		t.Fatalf("record round trip: %v", err)
	}
	short := *v
	short.Signatures = [][]byte{{1, 2, 3}}
	if err := wire.Unmarshal(wire.MustMarshal(&short), new(Verified)); err == nil {
		t.Fatal("a digest of 3 bytes decoded")
	}

	// With and without the record, two hubs end in the same state.
	twin := copyFollower(t, r.hub)
	if _, err := r.hub.ProcessCommitVerified(cm, gi, testNow, v, nil); err != nil {
		t.Fatalf("with the record: %v", err)
	}
	if _, err := twin.ProcessCommit(cm, gi, testNow, nil); err != nil {
		t.Fatalf("without: %v", err)
	}
	if !bytes.Equal(wire.MustMarshal(r.hub), wire.MustMarshal(twin)) {
		t.Fatal("the record changed the outcome")
	}

	// A record skips only what it lists: one that vouches for a bad
	// GroupInfo signature (a node that lied) is believed at its state...
	r2 := newTestRoom(t, 3)
	b2, err := r2.members[1].Commit(CommitOptions{ForcePath: true, GroupInfo: GroupInfoOptions{ExternalPub: true}})
	if err != nil {
		t.Fatal(err)
	}
	cm2 := transmit(t, b2.Commit)
	bad := transmit(t, b2.GroupInfo).GroupInfo
	bad.Signature[3] ^= 1
	lie, err := r2.hub.PrepareCommitCheck(cm2, bad).Run()
	if err != nil {
		t.Fatal(err)
	}
	if len(lie.Signatures) != 2 {
		t.Fatalf("the bad GroupInfo signature was recorded as checked: %d checks", len(lie.Signatures))
	}
	tbs, _ := wire.Marshal(wire.EncoderFunc(bad.encodeContent))
	msg, _ := labeled("GroupInfoTBS", tbs)
	leaf := cm2.Public.Content.Commit.Path.LeafNode.SignatureKey
	lie.Signatures = append(lie.Signatures, signatureDigest(leaf, msg, bad.Signature))
	// ...but not at another epoch or transcript hash, nor when the
	// entry was made for other bytes.
	for _, tc := range []struct {
		name string
		v    *Verified
	}{
		{"no record", nil},
		{"a record of the previous epoch", &Verified{Epoch: lie.Epoch - 1, TranscriptHash: lie.TranscriptHash, Signatures: lie.Signatures}},
		{"a record of another history", &Verified{Epoch: lie.Epoch, TranscriptHash: bytes.Repeat([]byte{9}, len(lie.TranscriptHash)), Signatures: lie.Signatures}},
		{"a bare record", &Verified{Epoch: lie.Epoch, TranscriptHash: lie.TranscriptHash}},
		{"a record of the honest GroupInfo", func() *Verified {
			v, err := r2.hub.PrepareCommitCheck(cm2, transmit(t, b2.GroupInfo).GroupInfo).Run()
			if err != nil {
				t.Fatal(err)
			}
			return v
		}()},
	} {
		if _, err := copyFollower(t, r2.hub).ProcessCommitVerified(cm2, bad, testNow, tc.v, nil); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: %v, want ErrSignature", tc.name, err)
		}
	}
	if _, err := copyFollower(t, r2.hub).ProcessCommitVerified(cm2, bad, testNow, lie, nil); err != nil {
		t.Fatalf("a record lists the GroupInfo check, and the check was still made: %v", err)
	}

	// The commit's own bad signature fails the checks at once, as
	// ProcessCommit would; a stale commit has no checks to take.
	forged := transmit(t, b2.Commit)
	forged.Public.Auth.Signature[0] ^= 1
	_, runErr := r2.hub.PrepareCommitCheck(forged, transmit(t, b2.GroupInfo).GroupInfo).Run()
	_, applyErr := copyFollower(t, r2.hub).ProcessCommit(forged, transmit(t, b2.GroupInfo).GroupInfo, testNow, nil)
	if !errors.Is(runErr, ErrSignature) || runErr.Error() != applyErr.Error() {
		t.Fatalf("a forged commit signature: checks %v, apply %v", runErr, applyErr)
	}
	r2.accept(b2, r2.members[1])
	if check := r2.hub.PrepareCommitCheck(cm2, bad); check != nil {
		t.Fatal("checks taken for a commit of a past epoch")
	}
}

// copyFollower returns an independent copy of f.
func copyFollower(t *testing.T, f *Follower) *Follower {
	t.Helper()
	c, err := RestoreFollower(wire.MustMarshal(f), Config{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
