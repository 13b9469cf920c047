package keymaterial

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// testNow is the fixed time of every test (Unix seconds).
const testNow uint64 = 1_700_000_000

const (
	suiteA = mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	suiteB = mls.MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519
	dom    = "a.example"
)

var (
	alice       = proto.UserURI(dom, "alice")
	alicePhone  = proto.ClientURI(dom, "alice", "phone")
	aliceLaptop = proto.ClientURI(dom, "alice", "laptop")
	bob         = proto.UserURI(dom, "bob")
	bobPhone    = proto.ClientURI(dom, "bob", "phone")
	carol       = proto.UserURI("b.example", "carol") // the requester
	room1       = proto.RoomURI("hub.example", "room1")
	room2       = proto.RoomURI("other.example", "room2")
)

type kpConfig struct {
	suite mls.CipherSuite
	opts  mls.KeyPackageOptions
}

type kpOption func(*kpConfig)

func withSuite(s mls.CipherSuite) kpOption { return func(c *kpConfig) { c.suite = s } }

func withLastResort() kpOption { return func(c *kpConfig) { c.opts.LastResort = true } }

func withLifetime(notBefore, notAfter uint64) kpOption {
	return func(c *kpConfig) { c.opts.Lifetime = mls.Lifetime{NotBefore: notBefore, NotAfter: notAfter} }
}

func withProposals(p ...mls.ProposalType) kpOption {
	return func(c *kpConfig) { c.opts.Capabilities.Proposals = p }
}

func withIdentity(id string) kpOption {
	return func(c *kpConfig) { c.opts.Credential = mls.BasicCredential([]byte(id)) }
}

// newKP returns a fresh KeyPackage of client, valid from an hour before
// testNow to a day after, in suiteA, unless options say otherwise.
func newKP(t testing.TB, client proto.URI, options ...kpOption) *mls.KeyPackage {
	t.Helper()
	cfg := kpConfig{suite: suiteA, opts: mls.KeyPackageOptions{
		Credential: mls.BasicCredential([]byte(client)),
		Lifetime:   mls.Lifetime{NotBefore: testNow - 3600, NotAfter: testNow + 86400},
	}}
	for _, o := range options {
		o(&cfg)
	}
	s, err := cfg.suite.Suite()
	if err != nil {
		t.Fatal(err)
	}
	key, err := s.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := mls.NewKeyPackage(s, key, cfg.opts)
	if err != nil {
		t.Fatal(err)
	}
	return b.KeyPackage
}

func refOf(t testing.TB, kp *mls.KeyPackage) []byte {
	t.Helper()
	r, err := kp.Ref()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// allow is a consent function that always consents.
func allow(proto.URI, proto.URI, *proto.URI) proto.KeyMaterialUserCode { return proto.UserSuccess }

// newTestStore returns a store with alice (phone, laptop) and bob (phone).
func newTestStore(t testing.TB) *Store {
	t.Helper()
	s, err := NewStore(dom)
	if err != nil {
		t.Fatal(err)
	}
	must(t, s.AddUser(alice))
	must(t, s.AddUser(bob))
	must(t, s.AddClient(alicePhone))
	must(t, s.AddClient(aliceLaptop))
	must(t, s.AddClient(bobPhone))
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

func upload(t testing.TB, s *Store, client proto.URI, kps ...*mls.KeyPackage) {
	t.Helper()
	must(t, s.Upload(client, kps, testNow))
}

// request returns an mls10 claim by carol for targets.
func request(targets ...proto.URI) *proto.KeyMaterialRequest {
	return &proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: carol, TargetUsers: targets}
}

func claim(t testing.TB, s *Store, req *proto.KeyMaterialRequest, now uint64) (*proto.KeyMaterialResponse, []Claimed) {
	t.Helper()
	resp, claimed, err := s.Claim(req, allow, now)
	if err != nil {
		t.Fatal(err)
	}
	// Every response must survive the wire.
	enc, err := wire.Marshal(resp)
	if err != nil {
		t.Fatalf("response does not encode: %v", err)
	}
	var back proto.KeyMaterialResponse
	if err := proto.Decode(enc, &back, 1<<20); err != nil && resp.Protocol == proto.MLS10 {
		t.Fatalf("response does not decode: %v", err)
	}
	return resp, claimed
}

func snapshot(t testing.TB, s *Store) []byte {
	t.Helper()
	b, err := wire.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// handedOut returns the KeyPackage of a successful client result.
func handedOut(t testing.TB, c proto.ClientKeyMaterial) *mls.KeyPackage {
	t.Helper()
	if c.Status != proto.ClientSuccess || c.KeyPackage == nil || c.KeyPackage.KeyPackage == nil {
		t.Fatalf("client %s: status %s, want success with a KeyPackage", c.Client, c.Status)
	}
	return c.KeyPackage.KeyPackage
}

func sameKP(t testing.TB, got, want *mls.KeyPackage) {
	t.Helper()
	if !bytes.Equal(refOf(t, got), refOf(t, want)) {
		t.Fatalf("handed out KeyPackage %x, want %x", refOf(t, got), refOf(t, want))
	}
}
