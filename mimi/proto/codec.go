package proto

import (
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// codec is a pointer to a value with a TLS encoding.
type codec[T any] interface {
	*T
	wire.Encoder
	wire.Decoder
}

// writeList writes a vector of values.
func writeList[T any, P codec[T]](w *wire.Writer, list []T) {
	w.Vector(func(w *wire.Writer) {
		for i := range list {
			P(&list[i]).EncodeTLS(w)
		}
	})
}

// readList reads a vector of values.
func readList[T any, P codec[T]](r *wire.Reader, out *[]T) {
	var list []T
	r.VectorEach(func(r *wire.Reader) {
		var v T
		P(&v).DecodeTLS(r)
		list = append(list, v)
	})
	*out = list
}

// writeURIs writes IdentifierUri list<V>.
func writeURIs(w *wire.Writer, list []URI) {
	w.Vector(func(w *wire.Writer) {
		for _, u := range list {
			u.EncodeTLS(w)
		}
	})
}

func readURIs(r *wire.Reader, out *[]URI) {
	var list []URI
	r.VectorEach(func(r *wire.Reader) {
		var u URI
		u.DecodeTLS(r)
		list = append(list, u)
	})
	*out = list
}

// writeMessage writes an MLSMessage, which must not be nil.
func writeMessage(w *wire.Writer, m *mls.Message, what string) {
	if m == nil {
		w.Fail(fmt.Errorf("%s: missing MLSMessage", what))
		return
	}
	w.Encode(m)
}

// readMessage reads an MLSMessage and checks its wire format.
func readMessage(r *wire.Reader, want mls.WireFormat, what string) *mls.Message {
	m := new(mls.Message)
	r.Decode(m)
	if r.OK() && m.WireFormat != want {
		r.Failf("%s is a %s, want %s", what, m.WireFormat, want)
	}
	return m
}

func writeMessages(w *wire.Writer, list []*mls.Message, what string) {
	w.Vector(func(w *wire.Writer) {
		for _, m := range list {
			writeMessage(w, m, what)
		}
	})
}

func readMessages(r *wire.Reader, want mls.WireFormat, what string) []*mls.Message {
	var list []*mls.Message
	r.VectorEach(func(r *wire.Reader) {
		list = append(list, readMessage(r, want, what))
	})
	return list
}

// writeString writes a UTF-8 string as opaque<V> (the seed's "string").
func writeString(w *wire.Writer, s string) { w.Opaque([]byte(s)) }

func readString(r *wire.Reader, s *string) {
	var b []byte
	r.Opaque(&b)
	*s = string(b)
}

// readEnum reads a uint8 enum and fails on values valid does not accept.
func readEnum[T ~uint8](r *wire.Reader, p *T, what string, valid func(T) bool) {
	var v uint8
	r.Uint8(&v)
	*p = T(v)
	if r.OK() && !valid(*p) {
		r.Failf("unknown %s %d", what, v)
	}
}

// Decode decodes data into v strictly (no trailing bytes), bounding every
// vector by maxVector.
func Decode(data []byte, v wire.Decoder, maxVector int) error {
	return wire.UnmarshalLimit(data, v, maxVector)
}
