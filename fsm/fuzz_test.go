package fsm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// fuzzScenario builds a provider with a local user, a hosted room and a
// few commands; it returns the log and the final snapshot, as seeds.
func fuzzScenario(tb testing.TB) (log [][]byte, snapshot []byte) {
	n := newNode(tb, "a.example")
	alice := newMember(tb, proto.ClientURI("a.example", "alice", "phone"))
	n.register(alice.uri, "t")
	n.apply(CmdUploadKeyPackages, nil, "", &UploadBody{Client: alice.uri, KeyPackages: []*mls.Message{mls.NewKeyPackageMessage(alice.keyPackage(tb, n.now/1000).KeyPackage)}})
	room := proto.RoomURI("a.example", "r1")
	n.createRoom(alice, room)
	n.apply(CmdConsent, []byte("c1"), "b.example", &ConsentBody{Entry: proto.ConsentEntry{Operation: proto.ConsentRequest,
		Requester: proto.UserURI("b.example", "bob"), Target: proto.UserURI("a.example", "alice")}})
	n.apply(CmdPrune, nil, "", nil)
	// The hub's key, a room that lists the hub, fanout without sequence
	// numbers, and a revocation that reaches both.
	n.apply(CmdHubKey, nil, "", &HubKeyBody{Secret: bytes.Repeat([]byte{9}, 32)})
	n.createHubRoom(alice, proto.RoomURI("a.example", "r2"))
	remote := proto.RoomURI("b.example", "x")
	n.apply(CmdSubscribe, nil, "", &SubscribeBody{Client: alice.uri, Room: remote, Subscribe: true})
	app, _ := alice.group.Encrypt([]byte("x"), nil)
	n.apply(CmdFanout, nil, "b.example", &FanoutBody{Room: remote, Batch: proto.FanoutBatch{{Message: app, Timestamp: n.now}}})
	n.apply(CmdRemoveClients, nil, "", &RemoveClientsBody{Clients: []proto.URI{alice.uri}})
	// Accounts: a user with a password, a device linked, a link waiting,
	// an invite, a device invitation redeemed and one open, a suspension.
	n.apply(CmdCreateUser, nil, "", &CreateUserBody{Client: proto.ClientURI("a.example", "carol", "x"), TokenHash: tokenHash("c"), PasswordHash: []byte("$argon2id$v=19$m=64,t=1,p=1$c2FsdA$a2V5")})
	n.apply(CmdRequestLink, nil, "", &RequestLinkBody{LinkID: bytes.Repeat([]byte{1}, 16), Client: proto.ClientURI("a.example", "carol", "y"), CodeHash: tokenHash("code"), TokenHash: tokenHash("y")})
	n.apply(CmdApproveLink, nil, "", &ApproveLinkBody{Approver: proto.ClientURI("a.example", "carol", "x"), CodeHash: tokenHash("code")})
	n.apply(CmdRequestLink, nil, "", &RequestLinkBody{LinkID: bytes.Repeat([]byte{2}, 16), Client: proto.ClientURI("a.example", "carol", "z"), CodeHash: tokenHash("code2"), TokenHash: tokenHash("z")})
	n.apply(CmdAddDevice, nil, "", &AddDeviceBody{Client: proto.ClientURI("a.example", "carol", "w"), TokenHash: tokenHash("w"), CredentialGen: 1})
	n.apply(CmdMintInvite, nil, "", &MintInviteBody{CodeHash: tokenHash("invite"), ExpiresAt: n.now + 60_000})
	n.apply(CmdPasswordFailure, nil, "", &PasswordFailureBody{User: proto.UserURI("a.example", "carol")})
	n.apply(CmdInviteDevice, nil, "", &InviteDeviceBody{InviteID: bytes.Repeat([]byte{3}, 16), Inviter: proto.ClientURI("a.example", "carol", "x"), CodeHash: tokenHash("dev1")})
	n.apply(CmdRedeemInvite, nil, "", &RedeemInviteBody{Client: proto.ClientURI("a.example", "carol", "v"), CodeHash: tokenHash("dev1"), TokenHash: tokenHash("v")})
	n.apply(CmdInviteDevice, nil, "", &InviteDeviceBody{InviteID: bytes.Repeat([]byte{4}, 16), Inviter: proto.ClientURI("a.example", "carol", "x"), CodeHash: tokenHash("dev2")})
	n.apply(CmdSuspendUser, nil, "", &SuspendUserBody{User: proto.UserURI("a.example", "carol"), Suspend: true})
	n.apply(CmdRevokeDevice, nil, "", &RevokeDeviceBody{Client: proto.ClientURI("a.example", "carol", "w")})
	// Throughput: a command with a credential and a pre-verification
	// record (format 2), a batch, delivery records for several peers.
	n.applyProposal(&Proposal{Type: CmdAck, Body: &AckBody{Client: alice.uri, UpTo: 1}, Auth: &ClientToken{Client: alice.uri, TokenHash: tokenHash("t")}},
		&mls.Verified{Epoch: 1, TranscriptHash: bytes.Repeat([]byte{3}, 32), Signatures: [][]byte{bytes.Repeat([]byte{4}, 32)}})
	ack, _ := NewCommand(CmdAck, []byte("a1"), "", &AckBody{Client: alice.uri, UpTo: 2})
	sub, _ := NewCommand(CmdSubscribe, nil, "", &SubscribeBody{Client: alice.uri, Room: remote, Subscribe: false})
	batch, _ := NewBatch([][]byte{ack, sub}, n.now+1000)
	n.now += 1000
	n.log = append(n.log, batch)
	n.f.Apply(&raft.Log{Type: raft.LogCommand, Data: batch})
	n.apply(CmdDeliveredMany, nil, "", &DeliveredManyBody{Marks: []DeliveredBody{{Domain: "b.example", UpTo: 1}, {Domain: "c.example", UpTo: 3}}})
	// The outbox numbered state-wide (format 5), then more records.
	n.apply(CmdOutboxIDs, nil, "", nil)
	n.apply(CmdDelivered, nil, "", &DeliveredBody{Domain: "b.example", UpTo: 2})
	// Replicated bounds (a record of their own in the snapshot).
	n.apply(CmdSetBounds, nil, "", &BoundsBody{Bounds: (Config{}).withDefaults().Bounds})
	return n.log, n.state()
}

// FuzzApply feeds arbitrary log entries (commands from the cluster's log,
// hence from other nodes) to a provider with some state: Apply must never
// panic, and whatever it does must survive a snapshot round trip.
func FuzzApply(f *testing.F) {
	log, _ := fuzzScenario(f)
	for _, e := range log {
		f.Add(e)
	}
	f.Fuzz(func(t *testing.T, entry []byte) {
		fsm, err := New(Config{Domain: "a.example"})
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range log {
			fsm.Apply(&raft.Log{Type: raft.LogCommand, Index: uint64(i + 1), Data: e})
		}
		switch r := fsm.Apply(&raft.Log{Type: raft.LogCommand, Index: uint64(len(log) + 1), Data: entry}).(type) {
		case *Result:
		case *BatchResult:
			for _, res := range r.Results {
				if res == nil {
					t.Fatal("a batch answered a nil result")
				}
			}
		default:
			t.Fatalf("Apply returned %T", r)
		}
		snap, err := fsm.Encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeState(fsm.cfg, bytes.NewReader(snap))
		if err != nil {
			t.Fatalf("the state's own snapshot does not restore: %v", err)
		}
		if b := mustEncode(t, again); !bytes.Equal(b, snap) {
			t.Fatal("a restored snapshot encodes differently")
		}
	})
}

// FuzzRestore feeds arbitrary snapshots (a backup file, a snapshot sent by
// the leader) to Restore: it must fail cleanly or restore a state that
// encodes back to the same bytes. Besides the seeds added here,
// testdata/fuzz/FuzzRestore keeps outbox states of format 4 (one
// numbering per queue, empty queues kept) and format 5 (state-wide ids,
// drops of forgotten queues), which TestFuzzRestoreSeeds keeps restoring,
// and inputs the fuzzer found (bad-*), which must be refused.
func FuzzRestore(f *testing.F) {
	_, snap := fuzzScenario(f)
	f.Add(snap)
	f.Add([]byte{stateVersion})
	f.Add(fanoutState(f).state()) // payloads shared by several peers' items
	if old, err := os.ReadFile("testdata/snapshot-v3-fanout.bin"); err == nil {
		f.Add(old)
	}
	f.Add(v1Snapshot(f, proto.ClientURI("a.example", "bob", "d"), proto.RoomURI("b.example", "r")))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeState(Config{Domain: "a.example"}, bytes.NewReader(data))
		if err != nil {
			return
		}
		b := mustEncode(t, s)
		s2, err := decodeState(Config{Domain: "a.example"}, bytes.NewReader(b))
		if err != nil {
			t.Fatalf("a restored state's encoding does not restore: %v", err)
		}
		if !bytes.Equal(mustEncode(t, s2), b) {
			t.Fatal("restore is not stable")
		}
	})
}

func mustEncode(t *testing.T, s *State) []byte {
	t.Helper()
	v, err := s.capture()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := v.persist(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestFuzzRestoreSeeds: every file seed of FuzzRestore named for a format
// (v5-*) is a snapshot that restores, so fuzzing starts from valid states
// of each format, and every one named bad-* (an input the fuzzer found)
// is refused.
func TestFuzzRestoreSeeds(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzRestore", "*"))
	if err != nil {
		t.Fatal(err)
	}
	formats := map[byte]bool{}
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		quoted, ok := strings.CutPrefix(strings.TrimSpace(string(raw)), "go test fuzz v1\n[]byte(")
		if !ok || !strings.HasSuffix(quoted, ")") {
			t.Fatalf("%s: not a one-value corpus file", name)
		}
		data, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, err = decodeState(Config{Domain: "a.example"}, strings.NewReader(data))
		switch base := filepath.Base(name); {
		case strings.HasPrefix(base, "bad-"):
			if err == nil {
				t.Errorf("%s restored", name)
			}
		case err != nil:
			t.Errorf("%s: %v", name, err)
		default:
			if base[:2] != fmt.Sprintf("v%d", data[0]) {
				t.Errorf("%s holds format %d", name, data[0])
			}
			formats[data[0]] = true
		}
	}
	if !formats[stateVersion] || !formats[stateVersionV4] {
		t.Fatalf("the seeds hold formats %v; want %d and %d", formats, stateVersion, stateVersionV4)
	}
}
