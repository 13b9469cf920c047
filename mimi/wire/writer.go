package wire

import "fmt"

// Encoder is implemented by every struct that has a TLS encoding.
type Encoder interface {
	// EncodeTLS appends the value's encoding to w.
	EncodeTLS(w *Writer)
}

// Writer appends TLS encodings to a buffer. The zero value is ready to use.
// The first error (a vector too long for its header) sticks; later calls do
// nothing, and Bytes reports it.
type Writer struct {
	buf []byte
	err error
}

// NewWriter returns a Writer that appends to buf.
func NewWriter(buf []byte) *Writer { return &Writer{buf: buf} }

// Marshal returns the encoding of v.
func Marshal(v Encoder) ([]byte, error) {
	var w Writer
	v.EncodeTLS(&w)
	return w.Bytes()
}

// MustMarshal returns the encoding of v and panics if it cannot be encoded.
// Use it only for values whose size the caller controls.
func MustMarshal(v Encoder) []byte {
	b, err := Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Bytes returns the encoded bytes, or the first error met while encoding.
func (w *Writer) Bytes() ([]byte, error) {
	if w.err != nil {
		return nil, w.err
	}
	if w.buf == nil {
		return []byte{}, nil
	}
	return w.buf, nil
}

// Err returns the first error met while encoding.
func (w *Writer) Err() error { return w.err }

// Len returns the number of bytes written so far.
func (w *Writer) Len() int { return len(w.buf) }

// Fail records err as the writer's error unless one is already recorded.
func (w *Writer) Fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// Uint8 appends v.
func (w *Writer) Uint8(v uint8) {
	if w.err == nil {
		w.buf = append(w.buf, v)
	}
}

// Uint16 appends v in network byte order.
func (w *Writer) Uint16(v uint16) {
	if w.err == nil {
		w.buf = append(w.buf, byte(v>>8), byte(v))
	}
}

// Uint32 appends v in network byte order.
func (w *Writer) Uint32(v uint32) {
	if w.err == nil {
		w.buf = append(w.buf, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
}

// Uint64 appends v in network byte order.
func (w *Writer) Uint64(v uint64) {
	if w.err == nil {
		w.buf = append(w.buf, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32),
			byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
}

// Bool appends a presence octet: 1 for true, 0 for false.
func (w *Writer) Bool(v bool) {
	if v {
		w.Uint8(1)
	} else {
		w.Uint8(0)
	}
}

// Raw appends b as it is: a fixed-size opaque value or a pre-encoded struct.
func (w *Writer) Raw(b []byte) {
	if w.err == nil {
		w.buf = append(w.buf, b...)
	}
}

// Varint appends the minimal variable-length header for n.
func (w *Writer) Varint(n uint64) {
	if w.err != nil {
		return
	}
	if varintLen(n) == 0 {
		w.err = fmt.Errorf("wire: length %d exceeds the %d a vector header can carry", n, MaxVarint)
		return
	}
	w.buf = AppendVarint(w.buf, n)
}

// Opaque appends b as opaque<V>: a variable-length header, then the bytes.
func (w *Writer) Opaque(b []byte) {
	w.Varint(uint64(len(b)))
	w.Raw(b)
}

// Vector appends a vector<V> whose body body writes. The header is written
// after the body, so nesting costs no scratch buffers.
func (w *Writer) Vector(body func(w *Writer)) {
	if w.err != nil {
		return
	}
	// Reserve one header byte, the common case, and widen it afterwards if
	// the body turned out longer than 63 bytes.
	start := len(w.buf)
	w.buf = append(w.buf, 0)
	body(w)
	if w.err != nil {
		return
	}
	n := uint64(len(w.buf) - start - 1)
	h := varintLen(n)
	if h == 0 {
		w.err = fmt.Errorf("wire: vector of %d bytes exceeds the %d a vector header can carry", n, MaxVarint)
		return
	}
	if h > 1 {
		w.buf = append(w.buf, make([]byte, h-1)...)
		copy(w.buf[start+h:], w.buf[start+1:start+1+int(n)])
	}
	putVarint(w.buf[start:start+h], n)
}

// Optional appends optional<T>: a presence octet and, if present, the value
// that body writes.
func (w *Writer) Optional(present bool, body func(w *Writer)) {
	w.Bool(present)
	if present {
		body(w)
	}
}

// Encode appends v's encoding.
func (w *Writer) Encode(v Encoder) {
	if w.err == nil {
		v.EncodeTLS(w)
	}
}

// EncoderFunc adapts a function to the Encoder interface.
type EncoderFunc func(w *Writer)

// EncodeTLS calls f(w).
func (f EncoderFunc) EncodeTLS(w *Writer) { f(w) }
