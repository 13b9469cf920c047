package mls

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/ed448"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// eachSuite runs f as a subtest for every supported suite.
func eachSuite(t *testing.T, f func(t *testing.T, s *Suite)) {
	for _, c := range SupportedCipherSuites() {
		t.Run(c.String(), func(t *testing.T) {
			s, err := c.Suite()
			if err != nil {
				t.Fatal(err)
			}
			f(t, s)
		})
	}
}

func TestCipherSuiteRegistry(t *testing.T) {
	if n := len(SupportedCipherSuites()); n != 7 {
		t.Fatalf("%d suites supported, RFC 9420 defines 7", n)
	}
	for _, c := range SupportedCipherSuites() {
		s, err := c.Suite()
		if err != nil || !c.Supported() || s.ID() != c {
			t.Fatalf("%s: Suite() = %v, %v; Supported %v", c, s, err, c.Supported())
		}
	}
	for _, c := range []CipherSuite{0x0000, 0x0008, 0x0a0a, 0xf001, 0xffff} {
		_, err := c.Suite()
		var unsupported *UnsupportedCipherSuiteError
		if !errors.As(err, &unsupported) || unsupported.Suite != c || c.Supported() {
			t.Fatalf("suite 0x%04x: %v, want an *UnsupportedCipherSuiteError", uint16(c), err)
		}
	}
}

// say has member from encrypt text and every other member decrypt it.
func (r *testRoom) say(from int, text string) {
	r.t.Helper()
	m, err := r.members[from].Encrypt([]byte(text), nil)
	if err != nil {
		r.t.Fatalf("leaf %d encrypt: %v", from, err)
	}
	for i, g := range r.members {
		if g == nil || i == from {
			continue
		}
		got, err := g.Process(transmit(r.t, m))
		if err != nil || string(got.ApplicationData) != text {
			r.t.Fatalf("leaf %d reading leaf %d: %q, %v", i, from, got.ApplicationData, err)
		}
	}
}

// TestEverySuiteRoom runs a room's life in every suite: joins by Welcome
// and by external commit (from the hub's GroupInfo), commits with
// UpdatePaths from several members, an Update by reference, a removal,
// messages both ways, and saved and restored member and hub states. The hub
// follows every commit and agrees with every member (testRoom).
func TestEverySuiteRoom(t *testing.T) {
	eachSuite(t, func(t *testing.T, s *Suite) {
		r := newTestRoomSuite(t, s, 3)
		r.say(0, "hello from the creator")
		r.say(2, "hello from a joiner")
		r.commit(1, CommitOptions{ForcePath: true})

		up := must(r.members[2].ProposeUpdate())
		if _, err := r.hub.ProcessProposal(transmit(t, up), testNow, nil); err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{0, 1} {
			if _, err := r.members[i].Process(transmit(t, up)); err != nil {
				t.Fatal(err)
			}
		}
		r.commit(0, CommitOptions{IncludePending: true})
		r.say(2, "after my update")

		var gi GroupInfo
		if err := wire.Unmarshal(r.hub.GroupInfo(), &gi); err != nil {
			t.Fatal(err)
		}
		key := must(s.GenerateSigningKey())
		g, b, err := JoinExternal(&gi, wire.MustMarshal(r.hub.Tree()), key, ExternalJoinOptions{
			GroupOptions: testOptions(), Credential: BasicCredential([]byte("mimi://b.example/u/ext")),
			Commit: CommitOptions{GroupInfo: GroupInfoOptions{ExternalPub: true}},
		})
		if err != nil {
			t.Fatalf("external join: %v", err)
		}
		r.accept(b, g)
		r.say(3, "joined from outside")

		r.commit(3, CommitOptions{Proposals: []*Proposal{RemoveProposal(1)}})
		r.say(0, "leaf 1 has gone")

		exported := must(r.members[0].Export("interop", []byte("ctx"), 48))
		for _, i := range []int{2, 3} {
			if !bytes.Equal(must(r.members[i].Export("interop", []byte("ctx"), 48)), exported) {
				t.Fatalf("leaf %d exports another secret", i)
			}
		}

		// Saved states restore and go on.
		saved := wire.MustMarshal(r.members[2])
		restored, err := RestoreGroup(saved, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		r.members[2] = restored
		hub, err := RestoreFollower(wire.MustMarshal(r.hub), Config{})
		if err != nil {
			t.Fatal(err)
		}
		r.hub = hub
		r.commit(2, CommitOptions{ForcePath: true})
		r.say(2, "restored")
		if e := r.hub.Epoch(); e != 7 {
			t.Fatalf("hub at epoch %d, want 7", e)
		}
	})
}

// TestSuiteRefusesHostileKeys feeds every suite's public-key operations the
// keys and signatures an attacker controls: a KeyPackage's init key, a
// leaf's signature key, a GroupInfo's external_pub, a commit's kem_output.
// Each is refused with an error; nothing panics.
func TestSuiteRefusesHostileKeys(t *testing.T) {
	eachSuite(t, func(t *testing.T, s *Suite) {
		priv, pub := must2(s.GenerateHPKEKey())
		signer := must(s.GenerateSigningKey())
		sig := must(signer.SignWithLabel("label", []byte("content")))
		if err := s.VerifyWithLabel(signer.PublicKey(), "label", []byte("content"), sig); err != nil {
			t.Fatalf("a good signature: %v", err)
		}
		lowOrder := make([]byte, len(pub)) // the all-zero point or string
		flipped := func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 0x40; return b }
		for _, bad := range [][]byte{nil, pub[:len(pub)-1], append(bytes.Clone(pub), 0), lowOrder} {
			if _, err := s.EncryptWithLabel(bad, "l", nil, []byte("x")); err == nil {
				t.Errorf("EncryptWithLabel to a %d-byte hostile key succeeded", len(bad))
			}
			if _, _, err := s.ExportExternalInit(bad); err == nil {
				t.Errorf("ExportExternalInit to a %d-byte hostile key succeeded", len(bad))
			}
			if _, err := s.ImportExternalInit(priv, bad); err == nil {
				t.Errorf("ImportExternalInit of a %d-byte hostile kem_output succeeded", len(bad))
			}
		}
		if s.ValidHPKEPublicKey(pub[:len(pub)-1]) || !s.ValidHPKEPublicKey(pub) {
			t.Error("ValidHPKEPublicKey judges the key length wrongly")
		}
		ct := must(s.EncryptWithLabel(pub, "l", []byte("c"), []byte("secret")))
		for name, bad := range map[string]HPKECiphertext{
			"flipped ciphertext": {KEMOutput: ct.KEMOutput, Ciphertext: flipped(ct.Ciphertext)},
			"flipped kem_output": {KEMOutput: flipped(ct.KEMOutput), Ciphertext: ct.Ciphertext},
			"short kem_output":   {KEMOutput: ct.KEMOutput[1:], Ciphertext: ct.Ciphertext},
		} {
			if _, err := s.DecryptWithLabel(priv, "l", []byte("c"), bad); err == nil {
				t.Errorf("%s opened", name)
			}
		}
		if _, err := s.DecryptWithLabel(priv, "other label", []byte("c"), ct); err == nil {
			t.Error("a ciphertext opened under another label")
		}
		if _, err := s.DecryptWithLabel(priv[:len(priv)-1-len(priv)/2], "l", []byte("c"), ct); err == nil {
			t.Error("a truncated private key opened the ciphertext")
		}
		for name, c := range map[string]struct{ pub, sig []byte }{
			"flipped signature":  {signer.PublicKey(), flipped(sig)},
			"short signature":    {signer.PublicKey(), sig[:len(sig)-1]},
			"empty signature":    {signer.PublicKey(), nil},
			"short public key":   {signer.PublicKey()[1:], sig},
			"empty public key":   {nil, sig},
			"another public key": {must(s.GenerateSigningKey()).PublicKey(), sig},
		} {
			if err := s.VerifyWithLabel(c.pub, "label", []byte("content"), c.sig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("%s: %v, want ErrBadSignature", name, err)
			}
		}
		if err := s.VerifyWithLabel(signer.PublicKey(), "other", []byte("content"), sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("a signature verified under another label: %v", err)
		}
		raw := signer.Bytes()
		back := must(s.ParseSigningKey(raw))
		if !bytes.Equal(back.PublicKey(), signer.PublicKey()) {
			t.Error("a parsed private key has another public key")
		}
		for _, bad := range [][]byte{nil, append(bytes.Clone(raw), 1, 2)} {
			if _, err := s.ParseSigningKey(bad); err == nil {
				t.Errorf("ParseSigningKey accepted %d bytes", len(bad))
			}
		}
	})
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

// TestDeriveKeyPairAnyLength checks RFC 9180 DeriveKeyPair for inputs of
// every length MLS can hand it (it passes Nh-byte secrets; X448's Nsk is
// 56 while Nh is 64): deterministic, and a pair that works.
func TestDeriveKeyPairAnyLength(t *testing.T) {
	eachSuite(t, func(t *testing.T, s *Suite) {
		for _, n := range []int{0, 1, 32, 56, 64, 66, 300} {
			ikm := bytes.Repeat([]byte{byte(n)}, n)
			priv, pub, err := s.DeriveKeyPair(ikm)
			if err != nil {
				t.Fatalf("%d bytes: %v", n, err)
			}
			priv2, pub2 := must2(s.DeriveKeyPair(ikm))
			if !bytes.Equal(priv, priv2) || !bytes.Equal(pub, pub2) {
				t.Fatalf("%d bytes: DeriveKeyPair is not deterministic", n)
			}
			if !bytes.Equal(must(s.HPKEPublicKey(priv)), pub) {
				t.Fatalf("%d bytes: the private key's public key differs", n)
			}
			ct := must(s.EncryptWithLabel(pub, "l", nil, []byte("pt")))
			if pt, err := s.DecryptWithLabel(priv, "l", nil, ct); err != nil || string(pt) != "pt" {
				t.Fatalf("%d bytes: round trip %q, %v", n, pt, err)
			}
			kemOut, sent := must2(s.ExportExternalInit(pub))
			if got := must(s.ImportExternalInit(priv, kemOut)); !bytes.Equal(got, sent) || len(got) != s.HashLen() {
				t.Fatalf("%d bytes: external init secrets differ", n)
			}
		}
	})
}

// withSubjectKey returns der with its SubjectPublicKeyInfo replaced by spki,
// leaving the signature stale (checkCredential does not verify it: chains
// are the application's policy). crypto/x509 cannot issue Ed448
// certificates, so tests make them this way.
func withSubjectKey(t *testing.T, der, spki []byte) []byte {
	t.Helper()
	var cert struct {
		TBS    asn1.RawValue
		SigAlg asn1.RawValue
		Sig    asn1.RawValue
	}
	if _, err := asn1.Unmarshal(der, &cert); err != nil {
		t.Fatal(err)
	}
	var fields []byte
	rest := cert.TBS.Bytes
	for i := 0; len(rest) > 0; i++ {
		var f asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &f); err != nil {
			t.Fatal(err)
		}
		if i == 6 { // version, serial, signature, issuer, validity, subject, spki
			f.FullBytes = spki
		}
		fields = append(fields, f.FullBytes...)
	}
	cert.TBS = asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: fields}
	out, err := asn1.Marshal(cert)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCertificateKeysForEverySuite(t *testing.T) {
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "alice"},
		NotBefore: time.Unix(testNow, 0), NotAfter: time.Unix(testNow+86400, 0)}
	ed25519Cert := must(x509.CreateCertificate(rand.Reader, tmpl, tmpl, edPriv.Public(), edPriv))

	ed448Pub, _, _ := ed448.GenerateKey(rand.Reader)
	spki := func(oid asn1.ObjectIdentifier, key []byte) []byte {
		return must(asn1.Marshal(struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}{pkix.AlgorithmIdentifier{Algorithm: oid}, asn1.BitString{Bytes: key, BitLength: 8 * len(key)}}))
	}
	ed448Cert := withSubjectKey(t, ed25519Cert, spki(oidEd448(), ed448Pub))
	shortCert := withSubjectKey(t, ed25519Cert, spki(oidEd448(), ed448Pub[:56]))
	withParams := withSubjectKey(t, ed25519Cert, must(asn1.Marshal(struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}{pkix.AlgorithmIdentifier{Algorithm: oidEd448(), Parameters: asn1.NullRawValue}, asn1.BitString{Bytes: ed448Pub, BitLength: 8 * len(ed448Pub)}})))

	x448 := mustSuite(MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448)
	x25519 := mustSuite(MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519)
	p256 := mustSuite(MLS_128_DHKEMP256_AES128GCM_SHA256_P256)
	cases := []struct {
		name  string
		suite *Suite
		cert  []byte
		key   []byte
		ok    bool
	}{
		{"Ed448 certificate, Ed448 suite", x448, ed448Cert, ed448Pub, true},
		{"Ed448 certificate, another key", x448, ed448Cert, must(x448.GenerateSigningKey()).PublicKey(), false},
		{"Ed448 certificate, Ed25519 suite", x25519, ed448Cert, ed448Pub, false},
		{"Ed448 certificate, P-256 suite", p256, ed448Cert, ed448Pub, false},
		{"truncated Ed448 key", x448, shortCert, ed448Pub, false},
		{"Ed448 key with parameters", x448, withParams, ed448Pub, false},
		{"Ed25519 certificate, Ed25519 suite", x25519, ed25519Cert, edPriv.Public().(ed25519.PublicKey), true},
		{"Ed25519 certificate, Ed448 suite", x448, ed25519Cert, edPriv.Public().(ed25519.PublicKey), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cred := Credential{Type: CredentialX509, Certificates: [][]byte{c.cert}}
			err := checkCredential(c.suite, &cred, c.key)
			if (err == nil) != c.ok {
				t.Fatalf("checkCredential: %v, want ok=%v", err, c.ok)
			}
		})
	}
}

// BenchmarkSuite measures each suite's public-key operations side by side:
// what a member pays per signature and per HPKE encryption (a commit's
// UpdatePath makes one per copath node), and what a hub pays per
// verification.
func BenchmarkSuite(b *testing.B) {
	for _, c := range SupportedCipherSuites() {
		s := mustSuite(c)
		signer := must(s.GenerateSigningKey())
		content := bytes.Repeat([]byte{7}, 256)
		sig := must(signer.SignWithLabel("FramedContentTBS", content))
		priv, pub := must2(s.GenerateHPKEKey())
		ct := must(s.EncryptWithLabel(pub, "UpdatePathNode", content, content[:64]))
		name := fmt.Sprintf("suite=%d", uint16(c))
		b.Run(name+"/sign", func(b *testing.B) {
			for b.Loop() {
				must(signer.SignWithLabel("FramedContentTBS", content))
			}
		})
		b.Run(name+"/verify", func(b *testing.B) {
			for b.Loop() {
				if err := s.VerifyWithLabel(signer.PublicKey(), "FramedContentTBS", content, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/hpke-seal", func(b *testing.B) {
			for b.Loop() {
				must(s.EncryptWithLabel(pub, "UpdatePathNode", content, content[:64]))
			}
		})
		b.Run(name+"/hpke-open", func(b *testing.B) {
			for b.Loop() {
				must(s.DecryptWithLabel(priv, "UpdatePathNode", content, ct))
			}
		})
		b.Run(name+"/derive-key-pair", func(b *testing.B) {
			for b.Loop() {
				must2(s.DeriveKeyPair(content[:s.HashLen()]))
			}
		})
	}
}
