package mls

import (
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// epochSecrets are the secrets of one epoch (RFC 9420 section 8).
type epochSecrets struct {
	joiner             []byte
	welcome            []byte
	senderData         []byte
	encryption         []byte
	exporter           []byte
	external           []byte
	confirmationKey    []byte
	membershipKey      []byte
	resumptionPSK      []byte
	epochAuthenticator []byte
	init               []byte // init_secret for the next epoch
}

// zeros returns the all-zero secret of length Nh used where RFC 9420 says "0".
func (s *Suite) zeros() []byte { return make([]byte, s.nh) }

// joinerSecret derives joiner_secret from the previous epoch's init_secret,
// the commit secret and the new GroupContext (encoded).
func (s *Suite) joinerSecret(initSecret, commitSecret, groupContext []byte) ([]byte, error) {
	if commitSecret == nil {
		commitSecret = s.zeros()
	}
	return s.ExpandWithLabel(s.Extract(initSecret, commitSecret), "joiner", groupContext, s.nh)
}

// welcomeSecret derives the welcome_secret from joiner_secret and psk_secret.
func (s *Suite) welcomeSecret(joiner, pskSecret []byte) []byte {
	return s.DeriveSecret(s.Extract(joiner, orZeros(s, pskSecret)), "welcome")
}

func orZeros(s *Suite, b []byte) []byte {
	if b == nil {
		return s.zeros()
	}
	return b
}

// epochSecretsFromJoiner derives every secret of the epoch.
func (s *Suite) epochSecretsFromJoiner(joiner, pskSecret, groupContext []byte) (*epochSecrets, error) {
	member := s.Extract(joiner, orZeros(s, pskSecret))
	epoch, err := s.ExpandWithLabel(member, "epoch", groupContext, s.nh)
	if err != nil {
		return nil, err
	}
	return &epochSecrets{
		joiner:             joiner,
		welcome:            s.DeriveSecret(member, "welcome"),
		senderData:         s.DeriveSecret(epoch, "sender data"),
		encryption:         s.DeriveSecret(epoch, "encryption"),
		exporter:           s.DeriveSecret(epoch, "exporter"),
		external:           s.DeriveSecret(epoch, "external"),
		confirmationKey:    s.DeriveSecret(epoch, "confirm"),
		membershipKey:      s.DeriveSecret(epoch, "membership"),
		resumptionPSK:      s.DeriveSecret(epoch, "resumption"),
		epochAuthenticator: s.DeriveSecret(epoch, "authentication"),
		init:               s.DeriveSecret(epoch, "init"),
	}, nil
}

// externalKeyPair derives the epoch's external HPKE key pair.
func (s *Suite) externalKeyPair(es *epochSecrets) (priv, pub []byte, err error) {
	return s.DeriveKeyPair(es.external)
}

// export is MLS-Exporter (RFC 9420 section 8.5).
func (s *Suite) export(exporterSecret []byte, label string, context []byte, length int) ([]byte, error) {
	return s.ExpandWithLabel(s.DeriveSecret(exporterSecret, label), "exported", s.Hash(context), length)
}

// PSK is a pre-shared key and the id it goes by.
type PSK struct {
	ID     PreSharedKeyID
	Secret []byte
}

// pskSecret combines PSKs into psk_secret (RFC 9420 section 8.4); nil when
// there are none.
func (s *Suite) pskSecret(psks []PSK) ([]byte, error) {
	if len(psks) == 0 {
		return nil, nil
	}
	secret := s.zeros()
	for i, p := range psks {
		extracted := s.Extract(nil, p.Secret)
		var w wire.Writer
		w.Encode(&p.ID)
		w.Uint16(uint16(i))
		w.Uint16(uint16(len(psks)))
		label, err := w.Bytes()
		if err != nil {
			return nil, fmt.Errorf("PSK label %d: %w", i, err)
		}
		input, err := s.ExpandWithLabel(extracted, "derived psk", label, s.nh)
		if err != nil {
			return nil, err
		}
		secret = s.Extract(input, secret)
	}
	return secret, nil
}
