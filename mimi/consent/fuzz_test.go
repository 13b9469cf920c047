package consent

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// fuzzMaxVector bounds vectors as a snapshot restore would.
const fuzzMaxVector = 1 << 20

// FuzzBook checks that the snapshot decoder never panics, that whatever it
// accepts re-encodes to the same bytes, and that a decoded book can be used.
// The seed corpus is in testdata/fuzz/FuzzBook
// (go test -run TestWriteFuzzCorpus -update-corpus rewrites it).
func FuzzBook(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var b Book
		if err := wire.UnmarshalLimit(data, &b, fuzzMaxVector); err != nil {
			return
		}
		re, err := wire.Marshal(&b)
		if err != nil {
			t.Fatalf("accepted snapshot does not re-encode: %v", err)
		}
		if !bytes.Equal(re, data) {
			t.Fatalf("re-encoding differs from the accepted snapshot:\n in %x\nout %x", data, re)
		}
		for _, r := range b.pending.all() {
			b.Check(r.owner, r.other, roomOf(r.scope))
			if _, err := b.Pending(r.owner); err != nil {
				t.Fatalf("pending of a decoded owner: %v", err)
			}
		}
		for _, r := range b.received.all() {
			if _, err := b.Received(r.owner); err != nil {
				t.Fatalf("received of a decoded owner: %v", err)
			}
		}
		for _, r := range b.decisions.all() {
			b.Check(r.owner, r.other, nil)
			if err := b.RemoveUser(r.owner); err != nil {
				t.Fatalf("remove a decoded owner: %v", err)
			}
		}
	})
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus in testdata/fuzz")

// TestWriteFuzzCorpus writes FuzzBook's seeds: snapshots of an empty book
// and of books after the determinism script, with either default.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite the seed corpus")
	}
	seeds := map[string]*Book{"empty": testBook(t, true)}
	for name, require := range map[string]bool{"strict": true, "lenient": false} {
		b := testBook(t, require)
		script(t, b, scriptKPs(t))
		seeds[name] = b
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzBook")
	must(t, os.MkdirAll(dir, 0o755))
	for name, b := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", snapshot(t, b))
		must(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
}

// TestSeedCorpusDecodes keeps the seeds useful: each must be a snapshot the
// decoder accepts, so fuzzing starts from valid books.
func TestSeedCorpusDecodes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzBook", "*"))
	must(t, err)
	if len(files) == 0 {
		t.Fatal("no seed corpus")
	}
	for _, name := range files {
		raw, err := os.ReadFile(name)
		must(t, err)
		quoted, ok := strings.CutPrefix(strings.TrimSpace(string(raw)), "go test fuzz v1\n[]byte(")
		if !ok || !strings.HasSuffix(quoted, ")") {
			t.Fatalf("%s: not a one-value corpus file", name)
		}
		data, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
		must(t, err)
		var b Book
		if err := wire.UnmarshalLimit([]byte(data), &b, fuzzMaxVector); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
