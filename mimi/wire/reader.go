package wire

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Decoder is implemented by every struct that has a TLS encoding.
type Decoder interface {
	// DecodeTLS reads the value from r. Errors are recorded in r.
	DecodeTLS(r *Reader)
}

// DecodeError reports where and why an encoding was rejected.
type DecodeError struct {
	Offset int    // byte offset in the outermost input
	Reason string // what was wrong
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("invalid encoding at byte %d: %s", e.Offset, e.Reason)
}

// DefaultMaxVector is the vector length limit of readers made by NewReader:
// the largest length a header can carry.
const DefaultMaxVector = MaxVarint

// readerState is shared by a Reader and the sub-readers of its vectors, so an
// error anywhere stops the whole decode.
type readerState struct {
	err       *DecodeError
	maxVector int
}

// Reader decodes TLS encodings from a byte slice. Byte slices it returns alias
// the input; copy them to keep them beyond the input's lifetime.
type Reader struct {
	s   cryptobyte.String
	end int // offset of the end of s in the outermost input
	st  *readerState
}

// NewReader returns a Reader over b that accepts vectors up to
// DefaultMaxVector bytes.
func NewReader(b []byte) *Reader {
	return &Reader{s: b, end: len(b), st: &readerState{maxVector: DefaultMaxVector}}
}

// Unmarshal decodes b into v. b must hold exactly one encoding: trailing bytes
// are an error.
func Unmarshal(b []byte, v Decoder) error {
	return UnmarshalLimit(b, v, DefaultMaxVector)
}

// UnmarshalLimit is Unmarshal with a limit on the length of every vector.
func UnmarshalLimit(b []byte, v Decoder, maxVector int) error {
	r := NewReader(b)
	r.SetMaxVector(maxVector)
	v.DecodeTLS(r)
	return r.Finish()
}

// SetMaxVector sets the longest vector, in bytes, the reader and its
// sub-readers accept.
func (r *Reader) SetMaxVector(n int) { r.st.maxVector = n }

// Offset returns the current position in the outermost input.
func (r *Reader) Offset() int { return r.end - len(r.s) }

// Empty reports whether the reader has no bytes left (or has failed).
func (r *Reader) Empty() bool { return r.st.err != nil || len(r.s) == 0 }

// Len returns the number of unread bytes.
func (r *Reader) Len() int { return len(r.s) }

// Err returns the first error met, or nil.
func (r *Reader) Err() error {
	if r.st.err == nil {
		return nil
	}
	return r.st.err
}

// OK reports whether no error has been met.
func (r *Reader) OK() bool { return r.st.err == nil }

// Failf records an error at the current offset unless one is recorded.
func (r *Reader) Failf(format string, args ...any) {
	if r.st.err == nil {
		r.st.err = &DecodeError{Offset: r.Offset(), Reason: fmt.Sprintf(format, args...)}
	}
}

// Finish returns the first error met, or an error if bytes remain unread.
func (r *Reader) Finish() error {
	if r.st.err == nil && len(r.s) != 0 {
		r.Failf("%d trailing bytes", len(r.s))
	}
	return r.Err()
}

func (r *Reader) truncated(what string) {
	r.Failf("truncated %s", what)
}

// Uint8 reads one octet into p.
func (r *Reader) Uint8(p *uint8) {
	if r.st.err == nil && !r.s.ReadUint8(p) {
		r.truncated("uint8")
	}
}

// Uint16 reads a big-endian uint16 into p.
func (r *Reader) Uint16(p *uint16) {
	if r.st.err == nil && !r.s.ReadUint16(p) {
		r.truncated("uint16")
	}
}

// Uint32 reads a big-endian uint32 into p.
func (r *Reader) Uint32(p *uint32) {
	if r.st.err == nil && !r.s.ReadUint32(p) {
		r.truncated("uint32")
	}
}

// Uint64 reads a big-endian uint64 into p.
func (r *Reader) Uint64(p *uint64) {
	if r.st.err == nil && !r.s.ReadUint64(p) {
		r.truncated("uint64")
	}
}

// Bool reads a presence octet, which must be 0 or 1.
func (r *Reader) Bool(p *bool) {
	var b uint8
	r.Uint8(&b)
	switch {
	case r.st.err != nil:
	case b == 0:
		*p = false
	case b == 1:
		*p = true
	default:
		r.st.err = &DecodeError{Offset: r.Offset() - 1, Reason: fmt.Sprintf("presence octet %d is neither 0 nor 1", b)}
	}
}

// Fixed reads n bytes, a fixed-size opaque value, into p.
func (r *Reader) Fixed(p *[]byte, n int) {
	if r.st.err == nil && !r.s.ReadBytes(p, n) {
		r.truncated(fmt.Sprintf("%d-byte value", n))
	}
}

// Varint reads a variable-length vector header and returns the length it
// carries. Non-minimal encodings and the reserved 0b11 prefix are errors.
func (r *Reader) Varint() uint64 {
	if r.st.err != nil {
		return 0
	}
	start := r.Offset()
	var first uint8
	if !r.s.ReadUint8(&first) {
		r.truncated("vector length")
		return 0
	}
	prefix := first >> 6
	if prefix == 3 {
		r.st.err = &DecodeError{Offset: start, Reason: "vector length uses the reserved 0b11 prefix"}
		return 0
	}
	n := uint64(first & 0x3f)
	for i := 0; i < 1<<prefix-1; i++ {
		var b uint8
		if !r.s.ReadUint8(&b) {
			r.truncated("vector length")
			return 0
		}
		n = n<<8 | uint64(b)
	}
	if varintLen(n) != 1<<prefix {
		r.st.err = &DecodeError{Offset: start, Reason: fmt.Sprintf("vector length %d is not minimally encoded", n)}
		return 0
	}
	return n
}

// vectorBody reads a vector header and returns a sub-reader over the body.
func (r *Reader) vectorBody() (*Reader, bool) {
	body, ok := r.vectorBytes()
	if !ok {
		return nil, false
	}
	return &Reader{s: body, end: r.Offset(), st: r.st}, true
}

// vectorBytes reads a vector header and returns the body.
func (r *Reader) vectorBytes() ([]byte, bool) {
	start := r.Offset()
	n := r.Varint()
	if r.st.err != nil {
		return nil, false
	}
	if n > uint64(r.st.maxVector) {
		r.st.err = &DecodeError{Offset: start, Reason: fmt.Sprintf("vector of %d bytes exceeds the limit of %d", n, r.st.maxVector)}
		return nil, false
	}
	var body cryptobyte.String
	if !r.s.ReadBytes((*[]byte)(&body), int(n)) {
		r.st.err = &DecodeError{Offset: start, Reason: fmt.Sprintf("vector of %d bytes runs past the end of the input (%d left)", n, len(r.s))}
		return nil, false
	}
	return body, true
}

// Opaque reads opaque<V> into p. The result aliases the input.
func (r *Reader) Opaque(p *[]byte) {
	if body, ok := r.vectorBytes(); ok {
		*p = body
	}
}

// Vector reads a vector<V> and lets body decode its content, which body must
// consume exactly.
func (r *Reader) Vector(body func(r *Reader)) {
	sub, ok := r.vectorBody()
	if !ok {
		return
	}
	body(sub)
	if r.st.err == nil && len(sub.s) != 0 {
		sub.Failf("%d unread bytes at the end of a vector", len(sub.s))
	}
}

// VectorEach reads a vector<V> of elements, calling item once per element
// until the vector is consumed.
func (r *Reader) VectorEach(item func(r *Reader)) {
	r.Vector(func(sub *Reader) {
		for !sub.Empty() {
			before := len(sub.s)
			item(sub)
			if sub.st.err == nil && len(sub.s) == before {
				sub.Failf("vector element decoded from zero bytes")
			}
		}
	})
}

// Optional reads optional<T>: a presence octet and, if present, the value
// body decodes. It reports whether the value was present.
func (r *Reader) Optional(body func(r *Reader)) bool {
	var present bool
	r.Bool(&present)
	if present && r.st.err == nil {
		body(r)
	}
	return present && r.st.err == nil
}

// Decode reads v.
func (r *Reader) Decode(v Decoder) {
	if r.st.err == nil {
		v.DecodeTLS(r)
	}
}

// Capture runs body and returns the bytes it consumed, aliasing the input.
func (r *Reader) Capture(body func(r *Reader)) []byte {
	before := r.s
	body(r)
	if r.st.err != nil {
		return nil
	}
	return before[:len(before)-len(r.s)]
}

// Rest consumes and returns every unread byte.
func (r *Reader) Rest() []byte {
	if r.st.err != nil {
		return nil
	}
	b := []byte(r.s)
	r.s = r.s[len(r.s):]
	return b
}
