// Command fuzzcorpus writes the seed corpora of mimi/mls's fuzz targets from
// the MLS working group's test vectors:
//
//	go run ./internal/tools/fuzzcorpus -vectors ../shared/mls-test-vectors -out mimi/mls/testdata/fuzz
//
// The corpora are committed; rerun this only when the targets change.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// perTarget bounds how many seeds each target gets, to keep the repo small.
const perTarget = 24

func main() {
	vectors := flag.String("vectors", "../shared/mls-test-vectors", "folder of the MLS test vectors")
	out := flag.String("out", "mimi/mls/testdata/fuzz", "folder of the fuzz corpora")
	flag.Parse()
	seeds := map[string][][]byte{}
	add := func(target string, b []byte) {
		if len(seeds[target]) < perTarget && len(b) > 0 {
			seeds[target] = append(seeds[target], b)
		}
	}

	var trees []struct {
		Tree string `json:"tree"`
	}
	load(*vectors, "tree-validation.json", &trees)
	for i, tr := range trees {
		if i%7 == 0 { // one per suite and shape
			add("FuzzRatchetTree", unhex(tr.Tree))
		}
	}
	var msgs []map[string]string
	load(*vectors, "messages.json", &msgs)
	for _, m := range msgs {
		for _, k := range []string{"mls_welcome", "mls_group_info", "mls_key_package", "public_message_application", "public_message_proposal", "public_message_commit", "private_message"} {
			add("FuzzMessage", unhex(m[k]))
		}
		add("FuzzRatchetTree", unhex(m["ratchet_tree"]))
		add("FuzzKeyPackage", unhex(m["add_proposal"]))
		msg, err := mls.DecodeMessage(unhex(m["mls_group_info"]))
		if err == nil {
			add("FuzzGroupInfo", wire.MustMarshal(msg.GroupInfo))
		}
		if msg, err := mls.DecodeMessage(unhex(m["mls_welcome"])); err == nil {
			add("FuzzWelcome", wire.MustMarshal(msg.Welcome))
		}
	}
	for target, list := range seeds {
		dir := filepath.Join(*out, target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			log.Fatal(err)
		}
		for _, b := range list {
			sum := sha256.Sum256(b)
			content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, hex.EncodeToString(sum[:8])), []byte(content), 0o644); err != nil {
				log.Fatal(err)
			}
		}
		fmt.Printf("%s: %d seeds\n", target, len(list))
	}
}

func load(dir, name string, v any) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		log.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		log.Fatalf("%s: %v", name, err)
	}
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		log.Fatal(err)
	}
	return b
}
