package room

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// RecentMessageLimit is how many of the application messages accepted in
// the room's current epoch it remembers, to answer an exact replay.
const RecentMessageLimit = 256

// recentMessages remembers digests of the application messages the room
// accepted in its current epoch, the last RecentMessageLimit of them, so
// that one sent again byte for byte (a retry, or a member or peer
// replaying another's message) is answered as accepted and not fanned out
// a second time. Only the current epoch matters: the room refuses a
// message of any other. Each digest is the first 8 bytes of the encoding's
// SHA-256: a collision would answer a new message as a repeat, about once
// in 2^56 messages at the limit. Encoded with the room (state version 4).
type recentMessages struct {
	epoch uint64
	sums  []uint64 // a ring: the oldest at next once full
	next  int
}

// messageSum is the digest recentMessages keeps of an encoded message.
func messageSum(raw []byte) uint64 {
	s := sha256.Sum256(raw)
	return binary.BigEndian.Uint64(s[:8])
}

// has reports whether a message with digest sum was accepted in epoch.
func (m *recentMessages) has(epoch, sum uint64) bool {
	return m.epoch == epoch && slices.Contains(m.sums, sum)
}

// add remembers a message accepted in epoch, forgetting the previous
// epoch's and, at the limit, the oldest.
func (m *recentMessages) add(epoch, sum uint64) {
	if m.epoch != epoch {
		m.epoch, m.sums, m.next = epoch, nil, 0
	}
	if len(m.sums) < RecentMessageLimit {
		m.sums = append(m.sums, sum)
		return
	}
	m.sums[m.next] = sum
	m.next = (m.next + 1) % RecentMessageLimit
}

// clone copies m for a frozen room: add edits the ring in place.
func (m recentMessages) clone() recentMessages {
	m.sums = slices.Clone(m.sums)
	return m
}

func (m *recentMessages) encode(w *wire.Writer) {
	w.Uint64(m.epoch)
	w.Uint32(uint32(m.next))
	w.Vector(func(w *wire.Writer) {
		for _, s := range m.sums {
			w.Uint64(s)
		}
	})
}

func (m *recentMessages) decode(r *wire.Reader) {
	r.Uint64(&m.epoch)
	var next uint32
	r.Uint32(&next)
	r.VectorEach(func(r *wire.Reader) {
		var s uint64
		r.Uint64(&s)
		m.sums = append(m.sums, s)
	})
	// The ring position moves only once the ring is full.
	if len(m.sums) > RecentMessageLimit || next != 0 && (len(m.sums) < RecentMessageLimit || next >= RecentMessageLimit) {
		r.Failf("recent messages: %d digests, ring position %d", len(m.sums), next)
	}
	m.next = int(next)
}
