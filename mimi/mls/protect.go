package mls

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// newAEAD returns the suite's AEAD keyed with key.
func (s *Suite) newAEAD(key []byte) (cipher.AEAD, error) {
	if s.chacha {
		return chacha20poly1305.New(key)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func (s *Suite) seal(key, nonce, aad, plaintext []byte) ([]byte, error) {
	a, err := s.newAEAD(key)
	if err != nil {
		return nil, err
	}
	return a.Seal(nil, nonce, plaintext, aad), nil
}

func (s *Suite) open(key, nonce, aad, ciphertext []byte) ([]byte, error) {
	a, err := s.newAEAD(key)
	if err != nil {
		return nil, err
	}
	return a.Open(nil, nonce, ciphertext, aad)
}

// membershipTag computes MAC(membership_key, AuthenticatedContentTBM) (RFC
// 9420 section 6.2).
func membershipTag(s *Suite, membershipKey []byte, ac *AuthenticatedContent, groupContext []byte) ([]byte, error) {
	tbs, err := framedContentTBS(ac.WireFormat, &ac.Content, groupContext)
	if err != nil {
		return nil, err
	}
	var w wire.Writer
	w.Raw(tbs)
	ac.Auth.encode(&w, ac.Content.ContentType)
	tbm, err := w.Bytes()
	if err != nil {
		return nil, err
	}
	return s.MAC(membershipKey, tbm), nil
}

// senderDataKeys derives the key and nonce that protect a PrivateMessage's
// sender data from a sample of its ciphertext (RFC 9420 section 6.3.2).
func senderDataKeys(s *Suite, senderDataSecret, ciphertext []byte) (key, nonce []byte, err error) {
	sample := ciphertext
	if len(sample) > s.nh {
		sample = sample[:s.nh]
	}
	if key, err = s.ExpandWithLabel(senderDataSecret, "key", sample, s.nk); err != nil {
		return nil, nil, err
	}
	nonce, err = s.ExpandWithLabel(senderDataSecret, "nonce", sample, s.nn)
	return key, nonce, err
}

func privateContentAAD(m *PrivateMessage) []byte {
	var w wire.Writer
	w.Opaque(m.GroupID)
	w.Uint64(m.Epoch)
	w.Uint8(uint8(m.ContentType))
	w.Opaque(m.AuthenticatedData)
	b, _ := w.Bytes()
	return b
}

func senderDataAAD(m *PrivateMessage) []byte {
	var w wire.Writer
	w.Opaque(m.GroupID)
	w.Uint64(m.Epoch)
	w.Uint8(uint8(m.ContentType))
	b, _ := w.Bytes()
	return b
}

// messageKeys are an epoch's secrets for protecting and unprotecting
// messages.
type messageKeys struct {
	suite      *Suite
	epoch      uint64
	senderData []byte
	tree       *secretTree
	membership []byte
}

// encryptPrivate seals ac (wire format private_message) from sender leaf l
// into a PrivateMessage with padding zero bytes of padding.
func (k *messageKeys) encryptPrivate(ac *AuthenticatedContent, l LeafIndex, padding int, random io.Reader) (*PrivateMessage, error) {
	s := k.suite
	c := &ac.Content
	r, err := k.tree.ratchet(l, ratchetKindFor(c.ContentType))
	if err != nil {
		return nil, err
	}
	gen, kn, err := r.step()
	if err != nil {
		return nil, err
	}
	guard, err := randomBytes(random, 4)
	if err != nil {
		return nil, err
	}
	var w wire.Writer
	c.encodeBody(&w)
	ac.Auth.encode(&w, c.ContentType)
	w.Raw(make([]byte, padding))
	plaintext, err := w.Bytes()
	if err != nil {
		return nil, err
	}
	pm := &PrivateMessage{GroupID: c.GroupID, Epoch: c.Epoch, ContentType: c.ContentType, AuthenticatedData: c.AuthenticatedData}
	nonce := applyGuard(kn.nonce, guard)
	if pm.Ciphertext, err = s.seal(kn.key, nonce, privateContentAAD(pm), plaintext); err != nil {
		return nil, err
	}
	var sd wire.Writer
	sd.Uint32(uint32(l))
	sd.Uint32(gen)
	sd.Raw(guard)
	senderData, _ := sd.Bytes()
	sdKey, sdNonce, err := senderDataKeys(s, k.senderData, pm.Ciphertext)
	if err != nil {
		return nil, err
	}
	if pm.EncryptedSenderData, err = s.seal(sdKey, sdNonce, senderDataAAD(pm), senderData); err != nil {
		return nil, err
	}
	return pm, nil
}

func applyGuard(nonce, guard []byte) []byte {
	out := append([]byte(nil), nonce...)
	for i := range guard {
		out[i] ^= guard[i]
	}
	return out
}

// decryptPrivate opens a PrivateMessage into its AuthenticatedContent. The
// signature is the caller's to verify.
func (k *messageKeys) decryptPrivate(pm *PrivateMessage) (*AuthenticatedContent, error) {
	ac, _, err := k.decryptPrivateKeys(pm)
	return ac, err
}

// decryptPrivateKeys is decryptPrivate that also returns the content key and
// nonce it used, which open this one message and nothing else.
func (k *messageKeys) decryptPrivateKeys(pm *PrivateMessage) (*AuthenticatedContent, keyAndNonce, error) {
	s := k.suite
	var none keyAndNonce
	sdKey, sdNonce, err := senderDataKeys(s, k.senderData, pm.Ciphertext)
	if err != nil {
		return nil, none, err
	}
	senderData, err := s.open(sdKey, sdNonce, senderDataAAD(pm), pm.EncryptedSenderData)
	if err != nil {
		return nil, none, fmt.Errorf("sender data does not decrypt: %w", err)
	}
	var leaf, gen uint32
	var guard []byte
	r := wire.NewReader(senderData)
	r.Uint32(&leaf)
	r.Uint32(&gen)
	r.Fixed(&guard, 4)
	if err := r.Finish(); err != nil {
		return nil, none, fmt.Errorf("sender data: %w", err)
	}
	ratchet, err := k.tree.ratchet(LeafIndex(leaf), ratchetKindFor(pm.ContentType))
	if err != nil {
		return nil, none, err
	}
	kn, err := ratchet.get(gen)
	if err != nil {
		return nil, none, fmt.Errorf("leaf %d: %w", leaf, err)
	}
	used := keyAndNonce{kn.key, applyGuard(kn.nonce, guard)}
	plaintext, err := s.open(used.key, used.nonce, privateContentAAD(pm), pm.Ciphertext)
	if err != nil {
		return nil, none, fmt.Errorf("content does not decrypt: %w", err)
	}
	ac := &AuthenticatedContent{
		WireFormat: WirePrivateMessage,
		Content: FramedContent{
			GroupID: pm.GroupID, Epoch: pm.Epoch, Sender: MemberSender(LeafIndex(leaf)),
			AuthenticatedData: pm.AuthenticatedData, ContentType: pm.ContentType,
		},
	}
	pr := wire.NewReader(plaintext)
	ac.Content.decodeBody(pr)
	ac.Auth.decode(pr, pm.ContentType)
	for _, b := range pr.Rest() {
		if b != 0 {
			return nil, none, fmt.Errorf("padding holds a non-zero byte")
		}
	}
	if err := pr.Err(); err != nil {
		return nil, none, fmt.Errorf("decrypted content: %w", err)
	}
	return ac, used, nil
}
