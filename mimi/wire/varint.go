package wire

// MaxVarint is the largest length a variable-length vector header can carry
// (RFC 9420 section 2.1.2: 30 bits).
const MaxVarint = 1<<30 - 1

// varintLen returns the number of header bytes the minimal encoding of n
// takes, or 0 if n is too large to encode.
func varintLen(n uint64) int {
	switch {
	case n < 1<<6:
		return 1
	case n < 1<<14:
		return 2
	case n <= MaxVarint:
		return 4
	default:
		return 0
	}
}

// putVarint writes the minimal header for n into b, which must have exactly
// varintLen(n) bytes.
func putVarint(b []byte, n uint64) {
	switch len(b) {
	case 1:
		b[0] = byte(n)
	case 2:
		b[0] = 0x40 | byte(n>>8)
		b[1] = byte(n)
	case 4:
		b[0] = 0x80 | byte(n>>24)
		b[1] = byte(n >> 16)
		b[2] = byte(n >> 8)
		b[3] = byte(n)
	}
}

// AppendVarint appends the minimal variable-length header for n to b.
// It panics if n exceeds MaxVarint; callers encoding untrusted lengths use a
// Writer, which reports the error instead.
func AppendVarint(b []byte, n uint64) []byte {
	l := varintLen(n)
	if l == 0 {
		panic("wire: varint out of range")
	}
	var tmp [4]byte
	putVarint(tmp[:l], n)
	return append(b, tmp[:l]...)
}
