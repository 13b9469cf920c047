package devca

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
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

// TestLoadOrCreateConcurrently: providers starting together on a shared
// folder all get the same CA and the same secret.
func TestLoadOrCreateConcurrently(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	cas := make([]*CA, n)
	secrets := make([][]byte, n)
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			cas[i], errs[i] = LoadOrCreate(dir)
		}()
		go func() {
			defer wg.Done()
			secrets[i], errs[n+i] = LoadOrCreateSecret(dir, "gossip.key", 32)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || errs[n+i] != nil {
			t.Fatalf("caller %d: %v, %v", i, errs[i], errs[n+i])
		}
		if !cas[i].Cert.Equal(cas[0].Cert) || !bytes.Equal(secrets[i], secrets[0]) || len(secrets[i]) != 32 {
			t.Fatalf("caller %d got a different CA or secret", i)
		}
	}
	if _, err := LoadOrCreateSecret(dir, "gossip.key", 16); err == nil {
		t.Fatal("a secret of the wrong size was accepted")
	}
}
