package mls

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/mimihub/mimi-hub/internal/mlsvectors"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// tally counts the vectors run per file and suite across this package's
// vector tests; TestMain prints it.
var tally mlsvectors.Tally

func TestMain(m *testing.M) {
	code := m.Run()
	if r := tally.Report(); r != "" {
		fmt.Print(r)
	}
	os.Exit(code)
}

type hexb = mlsvectors.Hex

// suiteFor returns the suite of a vector and counts the vector as run. Every
// RFC 9420 suite is supported, so a vector for another suite fails the test.
func suiteFor(t *testing.T, file string, id uint16) *Suite {
	t.Helper()
	s, err := CipherSuite(id).Suite()
	if err != nil {
		t.Fatalf("%s: vector for cipher suite %d: %v", file, id, err)
	}
	tally.Ran(file, id)
	return s
}

func TestVectorsTreeMath(t *testing.T) {
	var vs []struct {
		NLeaves uint32    `json:"n_leaves"`
		NNodes  uint32    `json:"n_nodes"`
		Root    uint32    `json:"root"`
		Left    []*uint32 `json:"left"`
		Right   []*uint32 `json:"right"`
		Parent  []*uint32 `json:"parent"`
		Sibling []*uint32 `json:"sibling"`
	}
	mlsvectors.Load(t, "tree-math.json", &vs)
	for _, v := range vs {
		tally.Ran("tree-math.json", 0)
		if got := nodeWidth(v.NLeaves); got != v.NNodes {
			t.Errorf("n=%d: width %d, want %d", v.NLeaves, got, v.NNodes)
		}
		r := root(v.NLeaves)
		if uint32(r) != v.Root {
			t.Errorf("n=%d: root %d, want %d", v.NLeaves, r, v.Root)
		}
		for i := uint32(0); i < v.NNodes; i++ {
			x := nodeIndex(i)
			check := func(name string, want *uint32, got func() nodeIndex) {
				if want == nil {
					return
				}
				if g := got(); uint32(g) != *want {
					t.Errorf("n=%d: %s(%d) = %d, want %d", v.NLeaves, name, i, g, *want)
				}
			}
			check("left", v.Left[i], x.left)
			check("right", v.Right[i], x.right)
			check("parent", v.Parent[i], x.parent)
			check("sibling", v.Sibling[i], x.sibling)
			if (v.Left[i] == nil) != x.isLeaf() {
				t.Errorf("n=%d: node %d leaf-ness disagrees with the vector", v.NLeaves, i)
			}
			if (v.Parent[i] == nil) != (x == r) {
				t.Errorf("n=%d: node %d root-ness disagrees with the vector", v.NLeaves, i)
			}
		}
	}
}

func TestVectorsDeserialization(t *testing.T) {
	var vs []struct {
		Header hexb   `json:"vlbytes_header"`
		Length uint64 `json:"length"`
	}
	mlsvectors.Load(t, "deserialization.json", &vs)
	for _, v := range vs {
		tally.Ran("deserialization.json", 0)
		r := wire.NewReader(v.Header)
		if n := r.Varint(); n != v.Length || r.Finish() != nil {
			t.Errorf("header %x: length %d (%v), want %d", []byte(v.Header), n, r.Err(), v.Length)
		}
		var w wire.Writer
		w.Varint(v.Length)
		if enc, _ := w.Bytes(); !bytes.Equal(enc, v.Header) {
			t.Errorf("length %d encodes as %x, want %x", v.Length, enc, []byte(v.Header))
		}
	}
}

func TestVectorsCryptoBasics(t *testing.T) {
	var vs []struct {
		CipherSuite uint16 `json:"cipher_suite"`
		RefHash     struct {
			Label string `json:"label"`
			Value hexb   `json:"value"`
			Out   hexb   `json:"out"`
		} `json:"ref_hash"`
		ExpandWithLabel struct {
			Secret  hexb   `json:"secret"`
			Label   string `json:"label"`
			Context hexb   `json:"context"`
			Length  int    `json:"length"`
			Out     hexb   `json:"out"`
		} `json:"expand_with_label"`
		DeriveSecret struct {
			Secret hexb   `json:"secret"`
			Label  string `json:"label"`
			Out    hexb   `json:"out"`
		} `json:"derive_secret"`
		DeriveTreeSecret struct {
			Secret     hexb   `json:"secret"`
			Label      string `json:"label"`
			Generation uint32 `json:"generation"`
			Length     int    `json:"length"`
			Out        hexb   `json:"out"`
		} `json:"derive_tree_secret"`
		SignWithLabel struct {
			Priv      hexb   `json:"priv"`
			Pub       hexb   `json:"pub"`
			Content   hexb   `json:"content"`
			Label     string `json:"label"`
			Signature hexb   `json:"signature"`
		} `json:"sign_with_label"`
		EncryptWithLabel struct {
			Priv       hexb   `json:"priv"`
			Pub        hexb   `json:"pub"`
			Label      string `json:"label"`
			Context    hexb   `json:"context"`
			Plaintext  hexb   `json:"plaintext"`
			KEMOutput  hexb   `json:"kem_output"`
			Ciphertext hexb   `json:"ciphertext"`
		} `json:"encrypt_with_label"`
	}
	mlsvectors.Load(t, "crypto-basics.json", &vs)
	for _, v := range vs {
		s := suiteFor(t, "crypto-basics.json", v.CipherSuite)
		t.Run(s.id.String(), func(t *testing.T) {
			if got := s.RefHash(v.RefHash.Label, v.RefHash.Value); !bytes.Equal(got, v.RefHash.Out) {
				t.Errorf("RefHash = %x, want %x", got, []byte(v.RefHash.Out))
			}
			e := v.ExpandWithLabel
			if got, err := s.ExpandWithLabel(e.Secret, e.Label, e.Context, e.Length); err != nil || !bytes.Equal(got, e.Out) {
				t.Errorf("ExpandWithLabel = %x, %v", got, err)
			}
			if got := s.DeriveSecret(v.DeriveSecret.Secret, v.DeriveSecret.Label); !bytes.Equal(got, v.DeriveSecret.Out) {
				t.Errorf("DeriveSecret = %x", got)
			}
			d := v.DeriveTreeSecret
			if got, err := s.DeriveTreeSecret(d.Secret, d.Label, d.Generation, d.Length); err != nil || !bytes.Equal(got, d.Out) {
				t.Errorf("DeriveTreeSecret = %x, %v", got, err)
			}
			sw := v.SignWithLabel
			if err := s.VerifyWithLabel(sw.Pub, sw.Label, sw.Content, sw.Signature); err != nil {
				t.Errorf("VerifyWithLabel(vector signature): %v", err)
			}
			key, err := s.ParseSigningKey(sw.Priv)
			if err != nil {
				t.Fatalf("ParseSigningKey: %v", err)
			}
			if !bytes.Equal(key.PublicKey(), sw.Pub) {
				t.Errorf("public key of vector private key = %x, want %x", key.PublicKey(), []byte(sw.Pub))
			}
			sig, err := key.SignWithLabel(sw.Label, sw.Content)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.VerifyWithLabel(sw.Pub, sw.Label, sw.Content, sig); err != nil {
				t.Errorf("own signature does not verify: %v", err)
			}
			bad := bytes.Clone(sw.Signature)
			bad[len(bad)/2] ^= 1
			if err := s.VerifyWithLabel(sw.Pub, sw.Label, sw.Content, bad); err == nil {
				t.Errorf("corrupted signature verifies")
			}
			ew := v.EncryptWithLabel
			pt, err := s.DecryptWithLabel(ew.Priv, ew.Label, ew.Context, HPKECiphertext{KEMOutput: ew.KEMOutput, Ciphertext: ew.Ciphertext})
			if err != nil || !bytes.Equal(pt, ew.Plaintext) {
				t.Errorf("DecryptWithLabel = %x, %v", pt, err)
			}
			ct, err := s.EncryptWithLabel(ew.Pub, ew.Label, ew.Context, ew.Plaintext)
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := s.DecryptWithLabel(ew.Priv, ew.Label, ew.Context, ct); err != nil || !bytes.Equal(pt, ew.Plaintext) {
				t.Errorf("round trip = %x, %v", pt, err)
			}
		})
	}
}

// roundTrip decodes enc into v and checks re-encoding reproduces it.
func roundTrip(t *testing.T, name string, enc []byte, v interface {
	wire.Encoder
	wire.Decoder
}) {
	t.Helper()
	if err := wire.Unmarshal(enc, v); err != nil {
		t.Errorf("%s: decode: %v", name, err)
		return
	}
	re, err := wire.Marshal(v)
	if err != nil {
		t.Errorf("%s: encode: %v", name, err)
		return
	}
	if !bytes.Equal(re, enc) {
		t.Errorf("%s: re-encoding differs from the vector", name)
	}
}

// removeBody is the Remove proposal body: uint32 removed.
type removeBody struct{ leaf uint32 }

func (b *removeBody) EncodeTLS(w *wire.Writer) { w.Uint32(b.leaf) }
func (b *removeBody) DecodeTLS(r *wire.Reader) { r.Uint32(&b.leaf) }

// opaqueBody is a body that is one opaque<V> (ExternalInit).
type opaqueBody struct{ b []byte }

func (o *opaqueBody) EncodeTLS(w *wire.Writer) { w.Opaque(o.b) }
func (o *opaqueBody) DecodeTLS(r *wire.Reader) { r.Opaque(&o.b) }

// treeCodec round-trips a ratchet tree through the Tree type.
type treeCodec struct{ t *Tree }

func (c *treeCodec) EncodeTLS(w *wire.Writer) { c.t.EncodeTLS(w) }
func (c *treeCodec) DecodeTLS(r *wire.Reader) {
	s, _ := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	t, err := DecodeTree(s, r.Rest(), wire.DefaultMaxVector)
	if err != nil {
		r.Failf("%v", err)
		return
	}
	c.t = t
}

func TestVectorsMessages(t *testing.T) {
	var vs []map[string]hexb
	mlsvectors.Load(t, "messages.json", &vs)
	for i, v := range vs {
		tally.Ran("messages.json", 0)
		for _, name := range []string{"mls_welcome", "mls_group_info", "mls_key_package", "public_message_application", "public_message_proposal", "public_message_commit", "private_message"} {
			roundTrip(t, fmt.Sprintf("%d/%s", i, name), v[name], new(Message))
		}
		roundTrip(t, fmt.Sprintf("%d/ratchet_tree", i), v["ratchet_tree"], new(treeCodec))
		roundTrip(t, fmt.Sprintf("%d/group_secrets", i), v["group_secrets"], new(GroupSecrets))
		roundTrip(t, fmt.Sprintf("%d/add_proposal", i), v["add_proposal"], new(KeyPackage))
		roundTrip(t, fmt.Sprintf("%d/update_proposal", i), v["update_proposal"], new(LeafNode))
		roundTrip(t, fmt.Sprintf("%d/remove_proposal", i), v["remove_proposal"], new(removeBody))
		roundTrip(t, fmt.Sprintf("%d/pre_shared_key_proposal", i), v["pre_shared_key_proposal"], new(PreSharedKeyID))
		roundTrip(t, fmt.Sprintf("%d/re_init_proposal", i), v["re_init_proposal"], new(ReInit))
		roundTrip(t, fmt.Sprintf("%d/external_init_proposal", i), v["external_init_proposal"], new(opaqueBody))
		roundTrip(t, fmt.Sprintf("%d/group_context_extensions_proposal", i), v["group_context_extensions_proposal"], new(Extensions))
		roundTrip(t, fmt.Sprintf("%d/commit", i), v["commit"], new(Commit))
		if t.Failed() {
			return
		}
	}
}

func TestVectorsTreeValidation(t *testing.T) {
	var vs []struct {
		CipherSuite uint16  `json:"cipher_suite"`
		Tree        hexb    `json:"tree"`
		GroupID     hexb    `json:"group_id"`
		Resolutions [][]int `json:"resolutions"`
		TreeHashes  []hexb  `json:"tree_hashes"`
	}
	mlsvectors.Load(t, "tree-validation.json", &vs)
	for i, v := range vs {
		s := suiteFor(t, "tree-validation.json", v.CipherSuite)
		tree, err := DecodeTree(s, v.Tree, wire.DefaultMaxVector)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if int(nodeWidth(tree.nLeaves)) != len(v.TreeHashes) {
			t.Fatalf("%d: tree has %d nodes, vector %d", i, nodeWidth(tree.nLeaves), len(v.TreeHashes))
		}
		for x := range v.TreeHashes {
			if got := tree.nodeHash(nodeIndex(x)); !bytes.Equal(got, v.TreeHashes[x]) {
				t.Errorf("%d: tree hash of node %d = %x, want %x", i, x, got, []byte(v.TreeHashes[x]))
			}
			var res []int
			for _, y := range tree.resolution(nodeIndex(x), nil, nil) {
				res = append(res, int(y))
			}
			if fmt.Sprint(res) != fmt.Sprint(v.Resolutions[x]) && !(len(res) == 0 && len(v.Resolutions[x]) == 0) {
				t.Errorf("%d: resolution of node %d = %v, want %v", i, x, res, v.Resolutions[x])
			}
		}
		if err := tree.Validate(v.GroupID, nil); err != nil {
			t.Errorf("%d (%s): valid tree rejected: %v", i, s.id, err)
		}
	}
}

func TestVectorsTreeOperations(t *testing.T) {
	var vs []struct {
		CipherSuite    uint16 `json:"cipher_suite"`
		TreeBefore     hexb   `json:"tree_before"`
		Proposal       hexb   `json:"proposal"`
		ProposalSender uint32 `json:"proposal_sender"`
		TreeHashBefore hexb   `json:"tree_hash_before"`
		TreeAfter      hexb   `json:"tree_after"`
		TreeHashAfter  hexb   `json:"tree_hash_after"`
	}
	mlsvectors.Load(t, "tree-operations.json", &vs)
	for i, v := range vs {
		s := suiteFor(t, "tree-operations.json", v.CipherSuite)
		tree, err := DecodeTree(s, v.TreeBefore, wire.DefaultMaxVector)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if !bytes.Equal(tree.Hash(), v.TreeHashBefore) {
			t.Errorf("%d: tree hash before = %x", i, tree.Hash())
		}
		var p Proposal
		if err := wire.Unmarshal(v.Proposal, &p); err != nil {
			t.Fatalf("%d: proposal: %v", i, err)
		}
		switch p.Type {
		case ProposalAdd:
			_, err = tree.addLeaf(&p.KeyPackage.LeafNode)
		case ProposalUpdate:
			err = tree.updateLeaf(LeafIndex(v.ProposalSender), p.LeafNode)
		case ProposalRemove:
			err = tree.removeLeaf(p.Removed)
			tree.truncate()
		default:
			t.Fatalf("%d: unexpected proposal %s", i, p.Type)
		}
		if err != nil {
			t.Fatalf("%d: apply %s: %v", i, p.Type, err)
		}
		if got := wire.MustMarshal(tree); !bytes.Equal(got, v.TreeAfter) {
			t.Errorf("%d: tree after %s differs from the vector", i, p.Type)
		}
		if !bytes.Equal(tree.Hash(), v.TreeHashAfter) {
			t.Errorf("%d: tree hash after %s = %x, want %x", i, p.Type, tree.Hash(), []byte(v.TreeHashAfter))
		}
	}
}

func TestVectorsTranscriptHashes(t *testing.T) {
	var vs []struct {
		CipherSuite                  uint16 `json:"cipher_suite"`
		ConfirmationKey              hexb   `json:"confirmation_key"`
		AuthenticatedContent         hexb   `json:"authenticated_content"`
		InterimTranscriptHashBefore  hexb   `json:"interim_transcript_hash_before"`
		ConfirmedTranscriptHashAfter hexb   `json:"confirmed_transcript_hash_after"`
		InterimTranscriptHashAfter   hexb   `json:"interim_transcript_hash_after"`
	}
	mlsvectors.Load(t, "transcript-hashes.json", &vs)
	for _, v := range vs {
		s := suiteFor(t, "transcript-hashes.json", v.CipherSuite)
		var ac AuthenticatedContent
		if err := wire.Unmarshal(v.AuthenticatedContent, &ac); err != nil {
			t.Fatal(err)
		}
		confirmed, err := confirmedTranscriptHash(s, v.InterimTranscriptHashBefore, &ac)
		if err != nil || !bytes.Equal(confirmed, v.ConfirmedTranscriptHashAfter) {
			t.Errorf("%s: confirmed transcript hash = %x, %v", s.id, confirmed, err)
		}
		if interim := interimTranscriptHash(s, confirmed, ac.Auth.ConfirmationTag); !bytes.Equal(interim, v.InterimTranscriptHashAfter) {
			t.Errorf("%s: interim transcript hash = %x", s.id, interim)
		}
		if !s.VerifyMAC(v.ConfirmationKey, confirmed, ac.Auth.ConfirmationTag) {
			t.Errorf("%s: confirmation tag does not match MAC(confirmation_key, confirmed)", s.id)
		}
	}
}

func TestVectorsWelcomeRouting(t *testing.T) {
	var vs []struct {
		CipherSuite uint16 `json:"cipher_suite"`
		KeyPackage  hexb   `json:"key_package"`
		Welcome     hexb   `json:"welcome"`
	}
	mlsvectors.Load(t, "welcome.json", &vs)
	for _, v := range vs {
		suiteFor(t, "welcome.json (routing)", v.CipherSuite)
		kpm, err := DecodeMessage(v.KeyPackage)
		if err != nil {
			t.Fatal(err)
		}
		wm, err := DecodeMessage(v.Welcome)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := kpm.KeyPackage.Ref()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := wm.Welcome.FindSecrets(ref); !ok {
			t.Errorf("suite %d: the Welcome has no entry for the KeyPackage's ref %x", v.CipherSuite, ref)
		}
		if err := kpm.KeyPackage.Validate(kpm.KeyPackage.LeafNode.Lifetime.NotBefore); err != nil {
			t.Errorf("suite %d: vector KeyPackage invalid: %v", v.CipherSuite, err)
		}
	}
}

func TestVectorsTreeKEMPublic(t *testing.T) {
	var vs []struct {
		CipherSuite uint16 `json:"cipher_suite"`
		GroupID     hexb   `json:"group_id"`
		RatchetTree hexb   `json:"ratchet_tree"`
		UpdatePaths []struct {
			Sender        uint32 `json:"sender"`
			UpdatePath    hexb   `json:"update_path"`
			TreeHashAfter hexb   `json:"tree_hash_after"`
		} `json:"update_paths"`
	}
	mlsvectors.Load(t, "treekem.json", &vs)
	for i, v := range vs {
		s := suiteFor(t, "treekem.json (public)", v.CipherSuite)
		for j, up := range v.UpdatePaths {
			tree, err := DecodeTree(s, v.RatchetTree, wire.DefaultMaxVector)
			if err != nil {
				t.Fatalf("%d: %v", i, err)
			}
			if err := tree.Validate(v.GroupID, nil); err != nil {
				t.Fatalf("%d: tree invalid: %v", i, err)
			}
			var path UpdatePath
			if err := wire.Unmarshal(up.UpdatePath, &path); err != nil {
				t.Fatalf("%d/%d: %v", i, j, err)
			}
			sender := LeafIndex(up.Sender)
			if err := tree.mergeUpdatePath(sender, &path, v.GroupID, nil, tree.suite); err != nil {
				t.Errorf("%d/%d: valid path rejected: %v", i, j, err)
				continue
			}
			if !bytes.Equal(tree.Hash(), up.TreeHashAfter) {
				t.Errorf("%d/%d: tree hash after = %x, want %x", i, j, tree.Hash(), []byte(up.TreeHashAfter))
			}
			if err := tree.Validate(v.GroupID, nil); err != nil {
				t.Errorf("%d/%d: tree after merge invalid: %v", i, j, err)
			}
		}
	}
}
