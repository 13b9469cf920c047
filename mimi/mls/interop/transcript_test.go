package interop_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mimihub/mimi-hub/internal/mlsvectors"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// hexBytes is a byte string carried as lowercase hex in the harness's JSON.
type hexBytes = mlsvectors.Hex

// transcript is the format both directions share (see tsmls/README.md).
type transcript struct {
	CipherSuite uint16   `json:"cipher_suite"`
	GroupID     hexBytes `json:"group_id"`
	Steps       []step   `json:"steps"`
}

type step struct {
	Op                 string   `json:"op"`
	By                 string   `json:"by"`
	SenderType         string   `json:"sender_type,omitempty"`
	Epoch              uint64   `json:"epoch"`
	Commit             hexBytes `json:"commit,omitempty"`
	Proposal           hexBytes `json:"proposal,omitempty"`
	Message            hexBytes `json:"message,omitempty"`
	Plaintext          hexBytes `json:"plaintext,omitempty"`
	GroupInfo          hexBytes `json:"group_info,omitempty"`
	RatchetTree        hexBytes `json:"ratchet_tree,omitempty"`
	Welcome            hexBytes `json:"welcome,omitempty"`
	EpochAuthenticator hexBytes `json:"epoch_authenticator,omitempty"`
	Note               string   `json:"note,omitempty"`
}

// goMember is a Go client's KeyPackage with the private keys to use it; the
// public half is what the harness reads as go_member.json.
type goMember struct {
	Name           string   `json:"name"`
	CipherSuite    uint16   `json:"cipher_suite"`
	KeyPackage     hexBytes `json:"key_package"`
	InitPriv       hexBytes `json:"init_priv,omitempty"`
	EncryptionPriv hexBytes `json:"encryption_priv,omitempty"`
	SignaturePriv  hexBytes `json:"signature_priv,omitempty"`
	// GeneratedAt is the Unix time the KeyPackage was made; replays judge
	// lifetimes at this time.
	GeneratedAt uint64 `json:"generated_at,omitempty"`
}

func (m *goMember) bundle(t *testing.T) *mls.KeyPackageBundle {
	t.Helper()
	msg, err := mls.DecodeMessage(m.KeyPackage)
	if err != nil {
		t.Fatal(err)
	}
	s, err := mls.CipherSuite(m.CipherSuite).Suite()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := s.ParseSigningKey(m.SignaturePriv)
	if err != nil {
		t.Fatal(err)
	}
	return &mls.KeyPackageBundle{KeyPackage: msg.KeyPackage, InitKey: m.InitPriv, EncryptionKey: m.EncryptionPriv, SignatureKey: signer}
}

// newGoMember makes a KeyPackage listing the custom proposal type the
// scenarios use.
func newGoMember(t *testing.T, s *mls.Suite, name string, now uint64) *goMember {
	t.Helper()
	return newGoMemberWith(t, s, name, now, mls.Capabilities{Proposals: []mls.ProposalType{customProposal}})
}

// newGoMemberWith makes a KeyPackage with the given capabilities.
func newGoMemberWith(t *testing.T, s *mls.Suite, name string, now uint64, caps mls.Capabilities) *goMember {
	t.Helper()
	signer, err := s.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := mls.NewKeyPackage(s, signer, mls.KeyPackageOptions{
		Credential:   mls.BasicCredential([]byte("mimi://a.example/u/" + name)),
		Capabilities: caps,
		Lifetime:     mls.Lifetime{NotBefore: now - 3600, NotAfter: now + 30*86400},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &goMember{
		Name: name, CipherSuite: uint16(s.ID()),
		KeyPackage:     wire.MustMarshal(mls.NewKeyPackageMessage(b.KeyPackage)),
		InitPriv:       b.InitKey,
		EncryptionPriv: b.EncryptionKey,
		SignaturePriv:  signer.Bytes(),
		GeneratedAt:    now,
	}
}

// tsMembers is the harness's ts_members.json.
type tsMembers struct {
	CipherSuite uint16 `json:"cipher_suite"`
	Members     []struct {
		Name       string          `json:"name"`
		KeyPackage hexBytes        `json:"key_package"`
		Private    json.RawMessage `json:"private"`
	} `json:"members"`
}

// results is the harness's results.json.
type results struct {
	Members []memberResult `json:"members"`
}

type memberResult struct {
	Name         string  `json:"name"`
	JoinedEpoch  *uint64 `json:"joined_epoch"`
	RemovedEpoch *uint64 `json:"removed_epoch"`
	Epochs       []struct {
		Epoch              uint64   `json:"epoch"`
		EpochAuthenticator hexBytes `json:"epoch_authenticator"`
	} `json:"epochs"`
	Plaintexts []struct {
		Step      int      `json:"step"`
		Plaintext hexBytes `json:"plaintext"`
	} `json:"plaintexts"`
	Errors []string `json:"errors"`
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func decode(t *testing.T, b []byte, what string) *mls.Message {
	t.Helper()
	m, err := mls.DecodeMessage(b)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return m
}

func (s *step) String() string { return fmt.Sprintf("%s by %s (epoch %d)", s.Op, s.By, s.Epoch) }
