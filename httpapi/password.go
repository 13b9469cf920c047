package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are argon2id's costs (RFC 9106). The node that receives a
// request hashes and verifies; the hash (a PHC string carrying its
// parameters) is what the replicated state keeps, so parameters can change
// without invalidating stored hashes.
type PasswordParams struct {
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
}

// DefaultPasswordParams are OWASP's argon2id minimum (19 MiB, 2 passes,
// one lane): about 30 ms on the reference machine.
var DefaultPasswordParams = PasswordParams{Time: 2, MemoryKiB: 19 * 1024, Threads: 1}

// Password bounds. A stored hash whose parameters exceed the maxima is
// refused rather than run, so a corrupted or hostile hash cannot make a
// node spend unbounded memory.
const (
	MinPassword          = 8
	MaxPassword          = 1024
	maxPasswordMemoryKiB = 1 << 20 // 1 GiB
	maxPasswordTime      = 16
	passwordSaltSize     = 16
	passwordKeySize      = 32
	// DefaultPasswordConcurrency bounds the hashes a node computes at
	// once (each takes MemoryKiB); more requests wait for a slot.
	DefaultPasswordConcurrency = 2
)

var errBadPasswordHash = errors.New("stored password hash is malformed")

// checkPassword checks a new password's form.
func checkPassword(p string) error {
	if !utf8.ValidString(p) {
		return fail(http.StatusBadRequest, "password: not UTF-8")
	}
	if n := utf8.RuneCountInString(p); n < MinPassword || len(p) > MaxPassword {
		return fail(http.StatusBadRequest, "password: %d characters; want at least %d and at most %d bytes", n, MinPassword, MaxPassword)
	}
	return nil
}

// passwordHasher computes argon2id hashes, a bounded number at once.
type passwordHasher struct {
	params PasswordParams
	slots  chan struct{}
}

func newPasswordHasher(p PasswordParams, concurrency int) *passwordHasher {
	if p.Time == 0 || p.MemoryKiB == 0 || p.Threads == 0 {
		p = DefaultPasswordParams
	}
	if concurrency <= 0 {
		concurrency = DefaultPasswordConcurrency
	}
	return &passwordHasher{params: p, slots: make(chan struct{}, concurrency)}
}

func (h *passwordHasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *passwordHasher) release() { <-h.slots }

// hash returns the PHC string of password with a fresh salt.
func (h *passwordHasher) hash(ctx context.Context, password string) ([]byte, error) {
	salt := make([]byte, passwordSaltSize)
	_, _ = rand.Read(salt) // never fails (crypto/rand)
	if err := h.acquire(ctx); err != nil {
		return nil, err
	}
	defer h.release()
	p := h.params
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, passwordKeySize)
	b64 := base64.RawStdEncoding.EncodeToString
	return fmt.Appendf(nil, "$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64(salt), b64(key)), nil
}

// verify reports whether password matches the stored PHC string.
func (h *passwordHasher) verify(ctx context.Context, stored []byte, password string) (bool, error) {
	parts := strings.Split(string(stored), "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false, errBadPasswordHash
	}
	var p PasswordParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil {
		return false, errBadPasswordHash
	}
	if p.MemoryKiB == 0 || p.MemoryKiB > maxPasswordMemoryKiB || p.Time == 0 || p.Time > maxPasswordTime || p.Threads == 0 {
		return false, errBadPasswordHash
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	key, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(key) == 0 || len(key) > 64 {
		return false, errBadPasswordHash
	}
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}
