// Package devca makes the certificates a development setup needs: one
// self-signed CA per folder, and per provider domain a certificate usable
// both as a TLS server certificate and as the client certificate of mutual
// TLS between providers. Production deployments bring their own PKI; this
// exists so that `go run ./cmd/mimi-hub` and the tests work out of the box.
package devca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a development certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is the CA certificate, for clients to trust.
	PEM []byte
}

const (
	caCertFile = "dev-ca.pem"
	caKeyFile  = "dev-ca-key.pem"
)

// LoadOrCreate returns the CA kept in dir, creating it (and dir) on first
// use. Creation holds a lock on the folder, so providers starting at the
// same moment on a shared folder end up with one CA.
func LoadOrCreate(dir string) (*CA, error) {
	var ca *CA
	err := withLock(dir, func() error {
		certPEM, errCert := os.ReadFile(filepath.Join(dir, caCertFile))
		keyPEM, errKey := os.ReadFile(filepath.Join(dir, caKeyFile))
		if errCert == nil && errKey == nil {
			var err error
			ca, err = parse(certPEM, keyPEM)
			return err
		}
		if !errors.Is(errCert, os.ErrNotExist) || !errors.Is(errKey, os.ErrNotExist) {
			return fmt.Errorf("dev CA in %s is incomplete: %v, %v", dir, errCert, errKey)
		}
		created, keyPEM, err := create()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, caKeyFile), keyPEM, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, caCertFile), created.PEM, 0o644); err != nil {
			return err
		}
		ca = created
		return nil
	})
	return ca, err
}

// LoadOrCreateSecret returns the random secret of size bytes kept in
// dir/name, creating it on first use (under the folder's lock), such as the
// gossip key every node of a development cluster shares.
func LoadOrCreateSecret(dir, name string, size int) ([]byte, error) {
	var secret []byte
	err := withLock(dir, func() error {
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if err == nil {
			if len(b) != size {
				return fmt.Errorf("%s holds %d bytes, want %d", path, len(b), size)
			}
			secret = b
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		secret = make([]byte, size)
		rand.Read(secret)
		return os.WriteFile(path, secret, 0o600)
	})
	return secret, err
}

// withLock creates dir if needed and runs fn holding an exclusive lock on
// dir/.lock.
func withLock(dir string, fn func() error) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := lockFile(f); err != nil {
		return fmt.Errorf("lock %s: %w", dir, err)
	}
	return fn()
}

// New returns a fresh CA held in memory (for tests).
func New() (*CA, error) {
	ca, _, err := create()
	return ca, err
}

func create() (*CA, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "mimi-hub development CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	ca, err := parse(certPEM, keyPEM)
	return ca, keyPEM, err
}

func parse(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("dev CA: malformed PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("dev CA certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("dev CA key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("dev CA key is %T, want ECDSA", k)
	}
	return &CA{Cert: cert, Key: key, PEM: certPEM}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}

// Issue returns a certificate for domain (and the given extra IP and DNS
// names), valid for server and client authentication.
func (ca *CA) Issue(domain string, names ...string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: domain},
		DNSNames:     []string{domain},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if n != domain {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Pool returns a pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// WriteCert stores a certificate and its key as PEM files.
func WriteCert(c tls.Certificate, certFile, keyFile string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return err
	}
	var certPEM []byte
	for _, der := range c.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, certPEM, 0o644)
}
