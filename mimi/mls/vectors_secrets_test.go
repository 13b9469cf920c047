package mls

import (
	"bytes"
	"testing"

	"github.com/mimihub/mimi-hub/internal/mlsvectors"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

func TestVectorsKeySchedule(t *testing.T) {
	var vs []struct {
		CipherSuite       uint16 `json:"cipher_suite"`
		GroupID           hexb   `json:"group_id"`
		InitialInitSecret hexb   `json:"initial_init_secret"`
		Epochs            []struct {
			TreeHash                hexb `json:"tree_hash"`
			CommitSecret            hexb `json:"commit_secret"`
			PSKSecret               hexb `json:"psk_secret"`
			ConfirmedTranscriptHash hexb `json:"confirmed_transcript_hash"`
			GroupContext            hexb `json:"group_context"`
			JoinerSecret            hexb `json:"joiner_secret"`
			WelcomeSecret           hexb `json:"welcome_secret"`
			InitSecret              hexb `json:"init_secret"`
			SenderDataSecret        hexb `json:"sender_data_secret"`
			EncryptionSecret        hexb `json:"encryption_secret"`
			ExporterSecret          hexb `json:"exporter_secret"`
			EpochAuthenticator      hexb `json:"epoch_authenticator"`
			ExternalSecret          hexb `json:"external_secret"`
			ConfirmationKey         hexb `json:"confirmation_key"`
			MembershipKey           hexb `json:"membership_key"`
			ResumptionPSK           hexb `json:"resumption_psk"`
			ExternalPub             hexb `json:"external_pub"`
			Exporter                struct {
				Label   string `json:"label"` // used as is, hex digits and all
				Context hexb   `json:"context"`
				Length  int    `json:"length"`
				Secret  hexb   `json:"secret"`
			} `json:"exporter"`
		} `json:"epochs"`
	}
	mlsvectors.Load(t, "key-schedule.json", &vs)
	for _, v := range vs {
		s := suiteFor(t, "key-schedule.json", v.CipherSuite)
		initSecret := []byte(v.InitialInitSecret)
		for n, e := range v.Epochs {
			gc := GroupContext{Version: MLS10, CipherSuite: s.id, GroupID: v.GroupID, Epoch: uint64(n), TreeHash: e.TreeHash, ConfirmedTranscriptHash: e.ConfirmedTranscriptHash}
			ctx := wire.MustMarshal(&gc)
			if !bytes.Equal(ctx, e.GroupContext) {
				t.Fatalf("%s epoch %d: group context encoding differs", s.id, n)
			}
			joiner, err := s.joinerSecret(initSecret, e.CommitSecret, ctx)
			if err != nil {
				t.Fatal(err)
			}
			es, err := s.epochSecretsFromJoiner(joiner, e.PSKSecret, ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name      string
				got, want []byte
			}{
				{"joiner", es.joiner, e.JoinerSecret},
				{"welcome", es.welcome, e.WelcomeSecret},
				{"init", es.init, e.InitSecret},
				{"sender data", es.senderData, e.SenderDataSecret},
				{"encryption", es.encryption, e.EncryptionSecret},
				{"exporter", es.exporter, e.ExporterSecret},
				{"epoch authenticator", es.epochAuthenticator, e.EpochAuthenticator},
				{"external", es.external, e.ExternalSecret},
				{"confirmation key", es.confirmationKey, e.ConfirmationKey},
				{"membership key", es.membershipKey, e.MembershipKey},
				{"resumption psk", es.resumptionPSK, e.ResumptionPSK},
			} {
				if !bytes.Equal(c.got, c.want) {
					t.Errorf("%s epoch %d: %s secret = %x, want %x", s.id, n, c.name, c.got, c.want)
				}
			}
			if w := s.welcomeSecret(joiner, e.PSKSecret); !bytes.Equal(w, e.WelcomeSecret) {
				t.Errorf("%s epoch %d: welcomeSecret = %x", s.id, n, w)
			}
			if _, pub, err := s.externalKeyPair(es); err != nil || !bytes.Equal(pub, e.ExternalPub) {
				t.Errorf("%s epoch %d: external_pub = %x, %v", s.id, n, pub, err)
			}
			x := e.Exporter
			if got, err := s.export(es.exporter, x.Label, x.Context, x.Length); err != nil || !bytes.Equal(got, x.Secret) {
				t.Errorf("%s epoch %d: exporter = %x, %v", s.id, n, got, err)
			}
			initSecret = es.init
		}
	}
}

func TestVectorsPSKSecret(t *testing.T) {
	var vs []struct {
		CipherSuite uint16 `json:"cipher_suite"`
		PSKs        []struct {
			ID    hexb `json:"psk_id"`
			PSK   hexb `json:"psk"`
			Nonce hexb `json:"psk_nonce"`
		} `json:"psks"`
		PSKSecret hexb `json:"psk_secret"`
	}
	mlsvectors.Load(t, "psk_secret.json", &vs)
	for i, v := range vs {
		s := suiteFor(t, "psk_secret.json", v.CipherSuite)
		var psks []PSK
		for _, p := range v.PSKs {
			psks = append(psks, PSK{ID: PreSharedKeyID{Type: PSKExternal, ID: p.ID, Nonce: p.Nonce}, Secret: p.PSK})
		}
		got, err := s.pskSecret(psks)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil {
			got = s.zeros()
		}
		if !bytes.Equal(got, v.PSKSecret) {
			t.Errorf("%d (%s, %d psks): psk_secret = %x, want %x", i, s.id, len(psks), got, []byte(v.PSKSecret))
		}
	}
}

func TestVectorsSecretTree(t *testing.T) {
	var vs []struct {
		CipherSuite      uint16 `json:"cipher_suite"`
		EncryptionSecret hexb   `json:"encryption_secret"`
		SenderData       struct {
			SenderDataSecret hexb `json:"sender_data_secret"`
			Ciphertext       hexb `json:"ciphertext"`
			Key              hexb `json:"key"`
			Nonce            hexb `json:"nonce"`
		} `json:"sender_data"`
		Leaves [][]struct {
			Generation       uint32 `json:"generation"`
			ApplicationKey   hexb   `json:"application_key"`
			ApplicationNonce hexb   `json:"application_nonce"`
			HandshakeKey     hexb   `json:"handshake_key"`
			HandshakeNonce   hexb   `json:"handshake_nonce"`
		} `json:"leaves"`
	}
	mlsvectors.Load(t, "secret-tree.json", &vs)
	for _, v := range vs {
		s := suiteFor(t, "secret-tree.json", v.CipherSuite)
		sd := v.SenderData
		key, nonce, err := senderDataKeys(s, sd.SenderDataSecret, sd.Ciphertext)
		if err != nil || !bytes.Equal(key, sd.Key) || !bytes.Equal(nonce, sd.Nonce) {
			t.Errorf("%s: sender data key %x nonce %x, %v", s.id, key, nonce, err)
		}
		tree := newSecretTree(s, v.EncryptionSecret, uint32(len(v.Leaves)))
		for l, gens := range v.Leaves {
			for _, g := range gens {
				for _, c := range []struct {
					kind       ratchetKind
					key, nonce []byte
				}{{applicationRatchet, g.ApplicationKey, g.ApplicationNonce}, {handshakeRatchet, g.HandshakeKey, g.HandshakeNonce}} {
					r, err := tree.ratchet(LeafIndex(l), c.kind)
					if err != nil {
						t.Fatal(err)
					}
					kn, err := r.get(g.Generation)
					if err != nil {
						t.Fatalf("%s leaf %d generation %d: %v", s.id, l, g.Generation, err)
					}
					if !bytes.Equal(kn.key, c.key) || !bytes.Equal(kn.nonce, c.nonce) {
						t.Errorf("%s leaf %d generation %d kind %d: key/nonce differ", s.id, l, g.Generation, c.kind)
					}
				}
			}
		}
	}
}

func TestVectorsMessageProtection(t *testing.T) {
	var vs []struct {
		CipherSuite             uint16 `json:"cipher_suite"`
		GroupID                 hexb   `json:"group_id"`
		Epoch                   uint64 `json:"epoch"`
		TreeHash                hexb   `json:"tree_hash"`
		ConfirmedTranscriptHash hexb   `json:"confirmed_transcript_hash"`
		SignaturePriv           hexb   `json:"signature_priv"`
		SignaturePub            hexb   `json:"signature_pub"`
		EncryptionSecret        hexb   `json:"encryption_secret"`
		SenderDataSecret        hexb   `json:"sender_data_secret"`
		MembershipKey           hexb   `json:"membership_key"`
		Proposal                hexb   `json:"proposal"`
		ProposalPriv            hexb   `json:"proposal_priv"`
		ProposalPub             hexb   `json:"proposal_pub"`
		Commit                  hexb   `json:"commit"`
		CommitPriv              hexb   `json:"commit_priv"`
		CommitPub               hexb   `json:"commit_pub"`
		Application             hexb   `json:"application"`
		ApplicationPriv         hexb   `json:"application_priv"`
	}
	mlsvectors.Load(t, "message-protection.json", &vs)
	for _, v := range vs {
		s := suiteFor(t, "message-protection.json", v.CipherSuite)
		gc := GroupContext{Version: MLS10, CipherSuite: s.id, GroupID: v.GroupID, Epoch: v.Epoch, TreeHash: v.TreeHash, ConfirmedTranscriptHash: v.ConfirmedTranscriptHash}
		ctx := wire.MustMarshal(&gc)
		keys := func() *messageKeys {
			return &messageKeys{suite: s, epoch: v.Epoch, senderData: v.SenderDataSecret, tree: newSecretTree(s, v.EncryptionSecret, 2), membership: v.MembershipKey}
		}
		signer, err := s.ParseSigningKey(v.SignaturePriv)
		if err != nil {
			t.Fatal(err)
		}
		// checkContent verifies the signature and that the body is the
		// vector's.
		checkContent := func(name string, ac *AuthenticatedContent, body []byte) {
			if err := ac.VerifySignature(s, v.SignaturePub, ctx); err != nil {
				t.Errorf("%s %s: signature: %v", s.id, name, err)
			}
			var w wire.Writer
			ac.Content.encodeBody(&w)
			got, _ := w.Bytes()
			// An application body is opaque<V>; the vector holds the raw bytes.
			if ac.Content.ContentType == ContentApplication {
				got = ac.Content.ApplicationData
			}
			if !bytes.Equal(got, body) {
				t.Errorf("%s %s: decrypted body differs", s.id, name)
			}
		}
		for _, c := range []struct {
			name       string
			body, priv []byte
			pub        []byte
			ct         ContentType
		}{
			{"proposal", v.Proposal, v.ProposalPriv, v.ProposalPub, ContentProposal},
			{"commit", v.Commit, v.CommitPriv, v.CommitPub, ContentCommit},
			{"application", v.Application, v.ApplicationPriv, nil, ContentApplication},
		} {
			m, err := DecodeMessage(c.priv)
			if err != nil {
				t.Fatal(err)
			}
			ac, err := keys().decryptPrivate(m.Private)
			if err != nil {
				t.Fatalf("%s %s: decrypt: %v", s.id, c.name, err)
			}
			checkContent(c.name+" (private)", ac, c.body)
			if c.pub != nil {
				m, err := DecodeMessage(c.pub)
				if err != nil {
					t.Fatal(err)
				}
				pac := m.Public.Authenticated()
				tag, err := membershipTag(s, v.MembershipKey, pac, ctx)
				if err != nil || !bytes.Equal(tag, m.Public.MembershipTag) {
					t.Errorf("%s %s: membership tag mismatch (%v)", s.id, c.name, err)
				}
				checkContent(c.name+" (public)", pac, c.body)
			}
			// Protect our own and unprotect it again.
			own := &AuthenticatedContent{WireFormat: WirePrivateMessage, Content: ac.Content, Auth: ac.Auth}
			if err := own.Sign(signer, ctx); err != nil {
				t.Fatal(err)
			}
			pm, err := keys().encryptPrivate(own, 1, 7, nil)
			if err != nil {
				t.Fatal(err)
			}
			back, err := keys().decryptPrivate(pm)
			if err != nil {
				t.Fatalf("%s %s: round trip: %v", s.id, c.name, err)
			}
			checkContent(c.name+" (round trip)", back, c.body)
		}
	}
}
