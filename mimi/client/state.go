package client

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// memberStateVersion is the format of Member.Save.
const memberStateVersion = 1

// Save returns the member's whole state: its client URI and token, its
// signature key, the KeyPackages it keeps, each room's MLS group (see
// mls.Group.EncodeTLS; it includes the keys of the past epochs the group
// keeps for late messages, and which of them it holds until its stream
// passes this member's commits) with the digests of its messages not yet
// echoed, and its stream cursor. It is secret material: store it encrypted or in a
// protected file, and save again after every call that changes the member
// (any flow, and Sync): restoring an old state would reuse message keys.
//
// Save fails with ErrUnresolved while a write's outcome is unknown (call
// Resolve). It marks the state as durable: later Syncs acknowledge the
// stream up to the cursor saved here.
func (m *Member) Save() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range slices.Sorted(maps.Keys(m.rooms)) {
		if m.rooms[r].pending != nil {
			return nil, fmt.Errorf("save member: %s: %w (call Resolve)", r, ErrUnresolved)
		}
	}
	w := wire.NewWriter(nil)
	w.Uint8(memberStateVersion)
	w.Uint16(uint16(m.suite.ID()))
	w.Opaque([]byte(m.client))
	w.Opaque([]byte(m.api.Token()))
	w.Opaque(m.signer.Bytes())
	w.Uint64(m.cursor)
	w.Vector(func(w *wire.Writer) {
		for _, k := range slices.Sorted(maps.Keys(m.keyPackages)) {
			b := m.keyPackages[k]
			w.Encode(b.KeyPackage)
			w.Opaque(b.InitKey)
			w.Opaque(b.EncryptionKey)
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, r := range slices.Sorted(maps.Keys(m.rooms)) {
			mr := m.rooms[r]
			w.Opaque([]byte(r))
			w.Vector(func(w *wire.Writer) { mr.group.EncodeTLS(w) })
			w.Vector(func(w *wire.Writer) {
				for _, d := range slices.Sorted(maps.Keys(mr.sent)) {
					w.Opaque([]byte(d))
				}
			})
		}
	})
	state, err := w.Bytes()
	if err != nil {
		return nil, fmt.Errorf("save member: %w", err)
	}
	m.saved, m.savedCursor = true, m.cursor
	return state, nil
}

// LoadMember restores a Member from Save's output. api must have no token
// (it gets the saved one) or a token for the same client. cfg supplies what
// is not state; its Suite is ignored (the saved one applies), and its
// PastEpochs applies to the restored groups (they drop kept epochs beyond
// it that they do not hold). States saved before groups kept or held past
// epochs load, keeping or holding none yet.
func LoadMember(api *User, state []byte, cfg MemberConfig) (*Member, error) {
	if api == nil {
		return nil, errors.New("load member: no client API")
	}
	cfg.defaults()
	r := wire.NewReader(state)
	r.SetMaxVector(cfg.MaxVector)
	var version uint8
	r.Uint8(&version)
	if r.OK() && version != memberStateVersion {
		return nil, fmt.Errorf("load member: state version %d, want %d", version, memberStateVersion)
	}
	var suite uint16
	var client, token, signer []byte
	r.Uint16(&suite)
	r.Opaque(&client)
	r.Opaque(&token)
	r.Opaque(&signer)
	var cursor uint64
	r.Uint64(&cursor)
	var bundles []*mls.KeyPackageBundle
	r.VectorEach(func(r *wire.Reader) {
		b := &mls.KeyPackageBundle{KeyPackage: new(mls.KeyPackage)}
		r.Decode(b.KeyPackage)
		r.Opaque(&b.InitKey)
		r.Opaque(&b.EncryptionKey)
		b.InitKey, b.EncryptionKey = bytes.Clone(b.InitKey), bytes.Clone(b.EncryptionKey)
		bundles = append(bundles, b)
	})
	type savedRoom struct {
		room  proto.URI
		group []byte
		sent  []string
	}
	var rooms []savedRoom
	r.VectorEach(func(r *wire.Reader) {
		var sr savedRoom
		var id []byte
		r.Opaque(&id)
		sr.room = proto.URI(id)
		r.Vector(func(r *wire.Reader) { sr.group = bytes.Clone(r.Rest()) })
		r.VectorEach(func(r *wire.Reader) {
			var d []byte
			r.Opaque(&d)
			sr.sent = append(sr.sent, string(d))
		})
		rooms = append(rooms, sr)
	})
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("load member: %w", err)
	}

	switch cur := api.Token(); {
	case cur == "":
		api.SetToken(string(token))
	case cur != string(token):
		if c, err := TokenClient(cur); err != nil || c != proto.URI(client) {
			return nil, fmt.Errorf("load member: the client API's token is not for %s", client)
		}
	}
	cfg.Suite = mls.CipherSuite(suite)
	m, err := newMember(api, cfg)
	if err != nil {
		return nil, fmt.Errorf("load member: %w", err)
	}
	if m.client != proto.URI(client) {
		return nil, fmt.Errorf("load member: the state is for %s, the token for %s", client, m.client)
	}
	if m.signer, err = m.suite.ParseSigningKey(signer); err != nil {
		return nil, fmt.Errorf("load member: signature key: %w", err)
	}
	for _, b := range bundles {
		b.SignatureKey = m.signer
		ref, err := b.KeyPackage.Ref()
		if err != nil {
			return nil, fmt.Errorf("load member: KeyPackage: %w", err)
		}
		m.keyPackages[hex.EncodeToString(ref)] = b
	}
	for _, sr := range rooms {
		g, err := mls.RestoreGroup(sr.group, m.groupOptions())
		if err != nil {
			return nil, fmt.Errorf("load member: room %s: %w", sr.room, err)
		}
		if !bytes.Equal(g.GroupID(), []byte(sr.room)) {
			return nil, fmt.Errorf("load member: room %s holds group %q", sr.room, g.GroupID())
		}
		mr := newMemberRoom(g)
		for _, d := range sr.sent {
			mr.markSent(d)
		}
		m.rooms[sr.room] = mr
	}
	m.cursor, m.saved, m.savedCursor = cursor, true, cursor
	return m, nil
}
