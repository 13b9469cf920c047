package devca

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
)

func TestCAIssuesMutualTLSCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreate(dir)
	if err != nil || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("the CA was not reloaded: %v", err)
	}
	c, err := ca.Issue("a.example", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "a.example", Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("usage %v: %v", usage, err)
		}
	}
	if len(c.Leaf.IPAddresses) != 1 || len(c.Leaf.DNSNames) != 2 {
		t.Fatalf("names %v %v", c.Leaf.DNSNames, c.Leaf.IPAddresses)
	}
	if err := WriteCert(c, filepath.Join(dir, "a.pem"), filepath.Join(dir, "a-key.pem")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "a-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	if err := os.Remove(filepath.Join(dir, caKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(dir); err == nil {
		t.Fatal("a CA without its key loaded")
	}
}
