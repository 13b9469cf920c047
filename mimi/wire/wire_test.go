package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVarintRoundTrip(t *testing.T) {
	cases := []struct {
		n   uint64
		hex string
	}{
		{0, "00"},
		{37, "25"},
		{63, "3f"},
		{64, "4040"},
		{15293, "7bbd"},
		{16383, "7fff"},
		{16384, "80004000"},
		{494878333, "9d7f3e7d"},
		{MaxVarint, "bfffffff"},
	}
	for _, c := range cases {
		var w Writer
		w.Varint(c.n)
		got, err := w.Bytes()
		if err != nil {
			t.Fatalf("encode %d: %v", c.n, err)
		}
		if hex.EncodeToString(got) != c.hex {
			t.Errorf("encode %d = %x, want %s", c.n, got, c.hex)
		}
		r := NewReader(mustHex(t, c.hex))
		if n := r.Varint(); n != c.n || r.Finish() != nil {
			t.Errorf("decode %s = %d (%v), want %d", c.hex, n, r.Err(), c.n)
		}
	}
}

func TestVarintRejects(t *testing.T) {
	cases := []struct {
		name, hex, reason string
	}{
		{"reserved prefix", "c0000000", "reserved 0b11 prefix"},
		{"non-minimal 2-byte", "4025", "not minimally encoded"},
		{"non-minimal 4-byte", "80000025", "not minimally encoded"},
		{"non-minimal 4-byte for 2-byte value", "80003fff", "not minimally encoded"},
		{"truncated 2-byte", "40", "truncated"},
		{"truncated 4-byte", "800040", "truncated"},
		{"empty", "", "truncated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(mustHex(t, c.hex))
			r.Varint()
			err := r.Err()
			var de *DecodeError
			if !errors.As(err, &de) || !strings.Contains(de.Reason, c.reason) {
				t.Fatalf("got %v, want a DecodeError containing %q", err, c.reason)
			}
		})
	}
	var w Writer
	w.Varint(MaxVarint + 1)
	if _, err := w.Bytes(); err == nil {
		t.Fatal("encoding a length above MaxVarint succeeded")
	}
}

// sample is a struct exercising every reader and writer primitive.
type sample struct {
	a    uint8
	b    uint16
	c    uint32
	d    uint64
	fix  []byte
	op   []byte
	list []uint16
	opt  *uint32
}

func (s *sample) EncodeTLS(w *Writer) {
	w.Uint8(s.a)
	w.Uint16(s.b)
	w.Uint32(s.c)
	w.Uint64(s.d)
	w.Raw(s.fix)
	w.Opaque(s.op)
	w.Vector(func(w *Writer) {
		for _, v := range s.list {
			w.Uint16(v)
		}
	})
	w.Optional(s.opt != nil, func(w *Writer) { w.Uint32(*s.opt) })
}

func (s *sample) DecodeTLS(r *Reader) {
	r.Uint8(&s.a)
	r.Uint16(&s.b)
	r.Uint32(&s.c)
	r.Uint64(&s.d)
	r.Fixed(&s.fix, 4)
	r.Opaque(&s.op)
	s.list = nil
	r.VectorEach(func(r *Reader) {
		var v uint16
		r.Uint16(&v)
		s.list = append(s.list, v)
	})
	s.opt = nil
	r.Optional(func(r *Reader) {
		s.opt = new(uint32)
		r.Uint32(s.opt)
	})
}

func TestStructRoundTrip(t *testing.T) {
	seven := uint32(7)
	in := sample{a: 1, b: 2, c: 3, d: 4, fix: []byte("abcd"), op: bytes.Repeat([]byte{9}, 100), list: []uint16{5, 6}, opt: &seven}
	enc := MustMarshal(&in)
	// 1+2+4+8 ints, 4 fixed, 2+100 opaque, 1+4 list, 1+4 optional.
	if len(enc) != 131 {
		t.Fatalf("encoding is %d bytes, want 131", len(enc))
	}
	var out sample
	if err := Unmarshal(enc, &out); err != nil {
		t.Fatal(err)
	}
	if re := MustMarshal(&out); !bytes.Equal(re, enc) {
		t.Fatalf("re-encoding differs:\n%x\n%x", re, enc)
	}
	if out.opt == nil || *out.opt != 7 || len(out.list) != 2 || len(out.op) != 100 {
		t.Fatalf("decoded %+v", out)
	}
}

func TestStrictDecoding(t *testing.T) {
	valid := MustMarshal(&sample{fix: []byte("abcd"), list: []uint16{1}})
	cases := []struct {
		name   string
		input  []byte
		limit  int
		reason string
	}{
		{"trailing byte", append(append([]byte{}, valid...), 0), DefaultMaxVector, "trailing"},
		{"truncated", valid[:len(valid)-1], DefaultMaxVector, "truncated"},
		{"bad presence octet", append(append([]byte{}, valid[:len(valid)-1]...), 2), DefaultMaxVector, "presence octet"},
		{"odd vector", replaceVector(valid, []byte{3, 0, 1, 0}), DefaultMaxVector, "truncated uint16"},
		{"vector over limit", valid, 1, "exceeds the limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s sample
			err := UnmarshalLimit(c.input, &s, c.limit)
			if err == nil || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("got %v, want error containing %q", err, c.reason)
			}
		})
	}
}

// replaceVector swaps the list vector (after 15 int bytes, 4 fixed bytes and
// an empty opaque) of an encoded sample for raw.
func replaceVector(enc []byte, raw []byte) []byte {
	prefix := enc[:15+4+1]
	out := append([]byte{}, prefix...)
	out = append(out, raw...)
	return append(out, 0)
}

func TestNestedVectorHeaderWidening(t *testing.T) {
	for _, n := range []int{0, 1, 62, 63, 64, 16381, 16382, 16383, 16384, 70000} {
		var w Writer
		w.Vector(func(w *Writer) {
			w.Vector(func(w *Writer) { w.Raw(bytes.Repeat([]byte{0xab}, n)) })
		})
		enc, err := w.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		r := NewReader(enc)
		var inner []byte
		r.Vector(func(r *Reader) { r.Opaque(&inner) })
		if err := r.Finish(); err != nil || len(inner) != n {
			t.Fatalf("n=%d: decoded %d bytes, err %v", n, len(inner), err)
		}
	}
}

func TestCaptureAndOffsets(t *testing.T) {
	enc := MustMarshal(&sample{fix: []byte("wxyz"), op: []byte("hello")})
	r := NewReader(enc)
	var s sample
	raw := r.Capture(func(r *Reader) { s.DecodeTLS(r) })
	if !bytes.Equal(raw, enc) || r.Offset() != len(enc) {
		t.Fatalf("captured %x at offset %d", raw, r.Offset())
	}
	r = NewReader([]byte{0x05, 1, 2})
	var op []byte
	r.Opaque(&op)
	var de *DecodeError
	if !errors.As(r.Err(), &de) || de.Offset != 0 {
		t.Fatalf("overrun error %v, want offset 0", r.Err())
	}
}
