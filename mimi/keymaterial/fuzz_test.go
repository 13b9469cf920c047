package keymaterial

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// fuzzMaxVector bounds vectors as a snapshot restore would.
const fuzzMaxVector = 1 << 20

// FuzzStore checks that the snapshot decoder never panics, that whatever it
// accepts re-encodes to the same bytes, and that a decoded store can be
// used. The seed corpus is in testdata/fuzz/FuzzStore
// (go test -run TestWriteFuzzCorpus -update-corpus rewrites it).
func FuzzStore(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Store
		if err := wire.UnmarshalLimit(data, &s, fuzzMaxVector); err != nil {
			return
		}
		re, err := wire.Marshal(&s)
		if err != nil {
			t.Fatalf("accepted snapshot does not re-encode: %v", err)
		}
		if !bytes.Equal(re, data) {
			t.Fatalf("re-encoding differs from the accepted snapshot:\n in %x\nout %x", data, re)
		}
		var targets []proto.URI
		for u := range s.users {
			targets = append(targets, u)
			if len(targets) == s.limits.MaxTargetsPerClaim {
				break
			}
		}
		if len(targets) > 0 {
			req := request(targets...)
			req.LastResortAllowed = true
			if _, _, err := s.Claim(req, allow, testNow); err != nil {
				t.Fatalf("claim on a decoded store: %v", err)
			}
		}
		s.Prune(testNow)
		s.Counts()
	})
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus in testdata/fuzz")

// TestWriteFuzzCorpus writes FuzzStore's seeds: snapshots of an empty store,
// a populated one, one after claims and deletions (the routes it holds
// are for any room, as every snapshot before route rooms) and one with a
// route bound to a room.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite the seed corpus")
	}
	empty, err := NewStore(dom)
	must(t, err)
	populated := newTestStore(t)
	upload(t, populated, alicePhone, newKP(t, alicePhone), newKP(t, alicePhone, withLastResort()))
	upload(t, populated, bobPhone, newKP(t, bobPhone, withSuite(suiteB)))
	used := newTestStore(t)
	script(t, used, scriptKPs(t))
	upload(t, used, bobPhone, newKP(t, bobPhone))
	claim(t, used, request(bob), testNow)
	routed := newTestStore(t) // a route bound to the room it was claimed for
	upload(t, routed, bobPhone, newKP(t, bobPhone))
	forRoom := request(bob)
	forRoom.Room = room1
	claim(t, routed, forRoom, testNow)

	dir := filepath.Join("testdata", "fuzz", "FuzzStore")
	must(t, os.MkdirAll(dir, 0o755))
	for name, s := range map[string]*Store{"empty": empty, "populated": populated, "used": used, "routed": routed} {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", snapshot(t, s))
		must(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
}

// TestSeedCorpusDecodes keeps the seeds useful: each must be a snapshot the
// decoder accepts, so fuzzing starts from valid stores.
func TestSeedCorpusDecodes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzStore", "*"))
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
		var s Store
		if err := wire.UnmarshalLimit([]byte(data), &s, fuzzMaxVector); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
