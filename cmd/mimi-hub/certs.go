package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/internal/devca"
)

// Development material lives in DevCADir (shared by the providers and
// nodes of a local setup): the provider CA at its top, the cluster CA in
// cluster/, and the gossip key. Each node keeps the certificates issued to
// it in its data folder.
const (
	devClusterCADir = "cluster"
	devGossipKey    = "gossip.key"
	gossipKeySize   = 32
)

// devCA loads (or creates) a CA folder once.
type devCA struct {
	dir string
	ca  *devca.CA
}

func (d *devCA) get() (*devca.CA, error) {
	if d.ca == nil {
		ca, err := devca.LoadOrCreate(d.dir)
		if err != nil {
			return nil, fmt.Errorf("dev CA in %s: %w", d.dir, err)
		}
		d.ca = ca
	}
	return d.ca, nil
}

// devCert returns the certificate kept in certFile/keyFile if it names
// exactly dnsName (and every IP of ips) and was issued by ca; otherwise it
// issues a new one and stores it. Loopback addresses are always named, so
// clients on this machine can connect by IP.
func devCert(ca *devca.CA, dnsName string, ips []string, certFile, keyFile string, log *slog.Logger) (tls.Certificate, error) {
	ips = append([]string{"127.0.0.1", "::1"}, ips...)
	if c, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil && namesExactly(c, dnsName, ips) && issuedBy(c, ca) {
		return c, nil
	}
	c, err := ca.Issue(dnsName, ips...)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return tls.Certificate{}, err
	}
	if err := devca.WriteCert(c, certFile, keyFile); err != nil {
		return tls.Certificate{}, err
	}
	log.Info("issued a development certificate", "name", dnsName, "cert", certFile)
	return c, nil
}

// namesExactly reports whether c's only DNS name is name (a provider's
// peers take the single DNS name of its certificate as its domain) and it
// names every IP of ips.
func namesExactly(c tls.Certificate, name string, ips []string) bool {
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil || !slices.Equal(leaf.DNSNames, []string{name}) {
		return false
	}
	for _, s := range ips {
		ip := net.ParseIP(s)
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

// listenIPs returns the concrete IPs the given listen addresses name.
func listenIPs(addrs ...string) []string {
	var ips []string
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if ip := net.ParseIP(host); err == nil && ip != nil && !ip.IsUnspecified() && !slices.Contains(ips, ip.String()) {
			ips = append(ips, ip.String())
		}
	}
	return ips
}

func issuedBy(c tls.Certificate, ca *devca.CA) bool {
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return false
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("%s holds no PEM certificates", path)
	}
	return pool, nil
}

// material is what the daemon's TLS and gossip need.
type material struct {
	cert      tls.Certificate
	peerRoots *x509.CertPool
	// assetRoots verify asset hosts (-asset-ca); nil: the system roots.
	assetRoots *x509.CertPool
	cluster    *cluster.TLS
	gossipKey  []byte
}

// loadMaterial returns the configured certificates and keys, or the
// development ones.
func (c config) loadMaterial(log *slog.Logger) (material, error) {
	var m material
	providerCA := &devCA{dir: c.DevCADir}
	clusterCA := &devCA{dir: filepath.Join(c.DevCADir, devClusterCADir)}
	var err error

	if c.Cert != "" {
		if m.cert, err = tls.LoadX509KeyPair(c.Cert, c.Key); err != nil {
			return m, fmt.Errorf("certificate: %w", err)
		}
	} else {
		ca, err := providerCA.get()
		if err != nil {
			return m, err
		}
		if m.cert, err = devCert(ca, c.Domain, listenIPs(c.FederationAddr, c.ClientAddr), filepath.Join(c.DataDir, "dev-cert.pem"), filepath.Join(c.DataDir, "dev-key.pem"), log); err != nil {
			return m, err
		}
	}
	if c.PeerCA != "" {
		if m.peerRoots, err = loadPool(c.PeerCA); err != nil {
			return m, fmt.Errorf("peer CA: %w", err)
		}
	} else {
		ca, err := providerCA.get()
		if err != nil {
			return m, err
		}
		m.peerRoots = ca.Pool()
	}
	if c.AssetCA != "" {
		if m.assetRoots, err = loadPool(c.AssetCA); err != nil {
			return m, fmt.Errorf("asset CA: %w", err)
		}
	}

	m.cluster = &cluster.TLS{}
	if c.ClusterCert != "" {
		if m.cluster.Certificate, err = tls.LoadX509KeyPair(c.ClusterCert, c.ClusterKey); err != nil {
			return m, fmt.Errorf("cluster certificate: %w", err)
		}
		if m.cluster.Roots, err = loadPool(c.ClusterCA); err != nil {
			return m, fmt.Errorf("cluster CA: %w", err)
		}
	} else {
		ca, err := clusterCA.get()
		if err != nil {
			return m, err
		}
		name := c.NodeID + ".node." + c.ClusterName
		if m.cluster.Certificate, err = devCert(ca, name, nil, filepath.Join(c.DataDir, "dev-node-cert.pem"), filepath.Join(c.DataDir, "dev-node-key.pem"), log); err != nil {
			return m, err
		}
		m.cluster.Roots = ca.Pool()
	}

	if c.GossipKeyFile != "" {
		if m.gossipKey, err = readGossipKey(c.GossipKeyFile); err != nil {
			return m, err
		}
	} else if m.gossipKey, err = devca.LoadOrCreateSecret(c.DevCADir, devGossipKey, gossipKeySize); err != nil {
		return m, fmt.Errorf("dev gossip key: %w", err)
	}
	return m, nil
}
