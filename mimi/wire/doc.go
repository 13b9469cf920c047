// Package wire implements the TLS presentation language as RFC 9420 uses it:
// fixed-width big-endian integers, fixed-size opaque values, vectors with the
// variable-length header of RFC 9420 section 2.1.2, and optional<T>.
//
// Decoding is strict, because every byte a hub decodes comes from an untrusted
// peer and because MLS signs and hashes encodings: a value has exactly one
// valid encoding, so decode followed by encode must reproduce the input.
// Non-minimal vector headers, the reserved 0b11 header prefix, optional
// presence octets other than 0 and 1, truncated input, trailing bytes and
// vectors longer than the caller's limit are all errors.
//
// A Reader keeps the first error it meets and turns every later call into a
// no-op, so decoders read like the struct definitions they implement and check
// the error once. A Writer works the same way. Readers sit on
// golang.org/x/crypto/cryptobyte; writers fill a flat buffer and write each
// vector header after its body so nested vectors need no scratch buffers.
package wire
