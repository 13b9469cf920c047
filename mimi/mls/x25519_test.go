package mls

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"math/big"
	"testing"
)

// x25519Pair is the suite's circl-backed scheme and crypto/hpke alone.
func x25519Pair(t *testing.T, c CipherSuite) (fast x25519HPKE, std stdHPKE) {
	t.Helper()
	fast, ok := mustSuite(c).hpke.(x25519HPKE)
	if !ok {
		t.Fatalf("%s does not use x25519HPKE", c)
	}
	std = fast.stdHPKE
	std.loadPrivate = nil
	return fast, std
}

// TestX25519KeysMatchCryptoHPKE holds the X25519 key pairs made with circl
// to crypto/hpke's, byte for byte: derived from random secrets of many
// lengths, generated, and the public key of random (unclamped) private
// keys; a wrong-length private key is refused by both.
func TestX25519KeysMatchCryptoHPKE(t *testing.T) {
	for _, c := range []CipherSuite{MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519} {
		fast, std := x25519Pair(t, c)
		for i := range 2000 {
			ikm := make([]byte, i%97)
			_, _ = rand.Read(ikm)
			priv, pub := must2(fast.deriveKeyPair(ikm))
			wantPriv, wantPub := must2(std.deriveKeyPair(ikm))
			if !bytes.Equal(priv, wantPriv) || !bytes.Equal(pub, wantPub) {
				t.Fatalf("DeriveKeyPair(%x) = %x, %x; crypto/hpke %x, %x", ikm, priv, pub, wantPriv, wantPub)
			}
			raw := make([]byte, 32)
			_, _ = rand.Read(raw)
			if got, want := must(fast.publicKey(raw)), must(std.publicKey(raw)); !bytes.Equal(got, want) {
				t.Fatalf("public key of %x = %x; crypto/hpke %x", raw, got, want)
			}
			gp, gpub := must2(fast.generate())
			if want := must(std.publicKey(gp)); !bytes.Equal(gpub, want) {
				t.Fatalf("generated %x with public key %x; crypto/hpke says %x", gp, gpub, want)
			}
			if gp[0]&7 != 0 || gp[31]&0xc0 != 0x40 {
				t.Fatalf("generated private key %x is not clamped as RFC 9180 serializes it", gp)
			}
		}
		for _, n := range []int{0, 31, 33} {
			_, errFast := fast.publicKey(make([]byte, n))
			_, errStd := std.publicKey(make([]byte, n))
			_, errOpen := fast.open(make([]byte, n), make([]byte, 32), nil, make([]byte, 32))
			if errFast == nil || errStd == nil || errOpen == nil {
				t.Fatalf("a %d-byte private key: %v, %v, crypto/hpke %v; want all refused", n, errFast, errOpen, errStd)
			}
		}
	}
}

// TestX25519DecryptionMatchesCryptoHPKE decrypts with circl's arithmetic
// what crypto/hpke encrypted and exported, and the reverse, under keys
// both serialize; a tampered ciphertext fails in both.
func TestX25519DecryptionMatchesCryptoHPKE(t *testing.T) {
	for _, c := range []CipherSuite{MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519} {
		fast, std := x25519Pair(t, c)
		for i := range 300 {
			priv, pub := must2(std.generate())
			if i%2 == 1 {
				priv, pub = must2(fast.generate())
			}
			info, pt := []byte{byte(i)}, bytes.Repeat([]byte{byte(i)}, i)
			enc, ct := must2(std.seal(pub, info, pt))
			for name, h := range map[string]hpkeScheme{"circl": fast, "crypto/hpke": std} {
				if got, err := h.open(priv, enc, info, ct); err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("%s opens %x: %x, %v", name, ct, got, err)
				}
				bad := bytes.Clone(ct)
				bad[0] ^= 1
				if _, err := h.open(priv, enc, info, bad); err == nil {
					t.Fatalf("%s opens a tampered ciphertext", name)
				}
			}
			kemOut, secret := must2(std.exportSender(pub, info, 32))
			if got := must(fast.exportReceiver(priv, kemOut, info, 32)); !bytes.Equal(got, secret) {
				t.Fatalf("exported %x, circl imports %x", secret, got)
			}
		}
	}
}

// TestX25519SharedMatchesCryptoECDH compares the shared secrets of circl's
// ECDH with crypto/ecdh's for random peer keys, every point of small order
// and non-canonical encodings (u >= p, the top bit set): the same secret,
// or a refusal from both, exactly for the points of small order.
func TestX25519SharedMatchesCryptoECDH(t *testing.T) {
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	le := func(n *big.Int) []byte {
		b := make([]byte, 32)
		n.FillBytes(b)
		for i, j := 0, 31; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		return b
	}
	order8a, _ := new(big.Int).SetString("325606250916557431795983626356110631294008115727848805560023387167927233504", 10)
	order8b, _ := new(big.Int).SetString("39382357235489614581723060781553021112529911719440698176882885853963445705823", 10)
	small := []*big.Int{big.NewInt(0), big.NewInt(1), order8a, order8b, new(big.Int).Sub(p, big.NewInt(1))}
	// lowOrder is RFC 7748's rule: the top bit ignored, u taken mod p, a
	// point whose X25519 with any clamped scalar is all zeros.
	lowOrder := func(b []byte) bool {
		r := bytes.Clone(b)
		r[31] &= 0x7f
		for i, j := 0, 31; i < j; i, j = i+1, j-1 {
			r[i], r[j] = r[j], r[i]
		}
		u := new(big.Int).Mod(new(big.Int).SetBytes(r), p)
		for _, s := range small {
			if u.Cmp(s) == 0 {
				return true
			}
		}
		return false
	}
	var peers [][]byte
	for _, u := range small {
		peers = append(peers, le(u))
		if nc := new(big.Int).Add(u, p); nc.BitLen() <= 256 { // non-canonical
			peers = append(peers, le(nc))
		}
	}
	for _, b := range append([][]byte(nil), peers...) {
		top := bytes.Clone(b)
		top[31] |= 0x80
		peers = append(peers, top)
	}
	for range 500 {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		peers = append(peers, b)
	}
	refused := 0
	for i, peer := range peers {
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		priv, pub, err := x25519KeyPair(raw)
		if err != nil {
			t.Fatal(err)
		}
		stdKey, err := ecdh.X25519().NewPrivateKey(priv[:])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(stdKey.PublicKey().Bytes(), pub[:]) {
			t.Fatalf("public key %x, crypto/ecdh %x", pub, stdKey.PublicKey().Bytes())
		}
		remote, err := ecdh.X25519().NewPublicKey(peer)
		if err != nil {
			t.Fatal(err)
		}
		want, wantErr := stdKey.ECDH(remote)
		got, err := (&x25519Key{priv: priv}).ECDH(remote)
		if (err == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("peer %d %x: circl %x, %v; crypto/ecdh %x, %v", i, peer, got, err, want, wantErr)
		}
		if (err != nil) != lowOrder(peer) {
			t.Fatalf("peer %d %x: refused %v, but is of low order: %v", i, peer, err != nil, lowOrder(peer))
		}
		if err != nil {
			refused++
		}
	}
	if refused < 10 {
		t.Fatalf("only %d peer keys refused: the small-order encodings are missing", refused)
	}
}
