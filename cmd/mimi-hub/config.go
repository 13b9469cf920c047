package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/mimihub/mimi-hub/internal/devca"
)

// config is the daemon's configuration: defaults, then a JSON file
// (-config), then MIMI_HUB_* environment variables, then flags.
type config struct {
	Domain          string            `json:"domain"`
	DataDir         string            `json:"data_dir"`
	FederationAddr  string            `json:"federation_addr"`
	ClientAddr      string            `json:"client_addr"`
	OpsAddr         string            `json:"ops_addr"`
	RaftAddr        string            `json:"raft_addr"`
	PublicURL       string            `json:"public_url"`
	Cert            string            `json:"cert"`
	Key             string            `json:"key"`
	PeerCA          string            `json:"peer_ca"`
	DevCADir        string            `json:"dev_ca_dir"`
	Peers           map[string]string `json:"peers"`
	AssetHosts      []string          `json:"asset_hosts"`
	RegistrationKey string            `json:"registration_key"`
	RequireConsent  bool              `json:"require_consent"`
	LogLevel        string            `json:"log_level"`
}

func defaults() config {
	return config{
		Domain:         "localhost",
		DataDir:        "mimi-hub-data",
		FederationAddr: "127.0.0.1:8443",
		ClientAddr:     "127.0.0.1:8444",
		OpsAddr:        "127.0.0.1:8445",
		RaftAddr:       "127.0.0.1:8446",
		LogLevel:       "info",
	}
}

// kvFlag is a repeatable flag of domain=address pairs.
type kvFlag map[string]string

func (k kvFlag) String() string {
	var parts []string
	for d, a := range k {
		parts = append(parts, d+"="+a)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (k kvFlag) Set(v string) error {
	for _, item := range strings.Split(v, ",") {
		d, a, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || d == "" || a == "" {
			return fmt.Errorf("want domain=host:port, got %q", item)
		}
		k[d] = a
	}
	return nil
}

// listFlag is a repeatable flag of strings.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// loadConfig parses args (and the environment) into a config.
func loadConfig(args []string, getenv func(string) string) (config, error) {
	c := defaults()
	fs := flag.NewFlagSet("mimi-hub", flag.ContinueOnError)
	file := fs.String("config", "", "JSON configuration file")
	peers, assets := kvFlag{}, listFlag{}
	str := map[string]*string{
		"domain":           fs.String("domain", c.Domain, "the provider's domain"),
		"data":             fs.String("data", c.DataDir, "data directory (Raft log, snapshots, dev certificates)"),
		"federation-addr":  fs.String("federation-addr", c.FederationAddr, "listen address of the MIMI federation endpoints (mutual TLS)"),
		"client-addr":      fs.String("client-addr", c.ClientAddr, "listen address of the client API (TLS)"),
		"ops-addr":         fs.String("ops-addr", c.OpsAddr, "listen address of /healthz and /readyz (plain HTTP; keep it private)"),
		"raft-addr":        fs.String("raft-addr", c.RaftAddr, "listen address of the Raft transport"),
		"public-url":       fs.String("public-url", "", "URL peers reach the federation endpoints at (default https://DOMAIN:PORT)"),
		"cert":             fs.String("cert", "", "PEM certificate naming DOMAIN (server and client auth); default: issued by the dev CA"),
		"key":              fs.String("key", "", "PEM private key of -cert"),
		"peer-ca":          fs.String("peer-ca", "", "PEM roots that verify peer providers; default: the dev CA"),
		"dev-ca-dir":       fs.String("dev-ca-dir", "", "folder of the development CA, created on first use (default DATA/dev-ca); share it between local providers"),
		"registration-key": fs.String("registration-key", "", "secret clients must present to register (default: open registration)"),
		"log-level":        fs.String("log-level", c.LogLevel, "debug, info, warn or error"),
	}
	consent := fs.Bool("require-consent", false, "claims for local users need their explicit consent")
	fs.Var(peers, "peer", "peer provider address override, DOMAIN=HOST:PORT (repeatable)")
	fs.Var(&assets, "asset-host", "host downloadFile may fetch from (repeatable)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			return config{}, err
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return config{}, fmt.Errorf("config file %s: %w", *file, err)
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	targets := map[string]*string{
		"domain": &c.Domain, "data": &c.DataDir, "federation-addr": &c.FederationAddr, "client-addr": &c.ClientAddr,
		"ops-addr": &c.OpsAddr, "raft-addr": &c.RaftAddr, "public-url": &c.PublicURL, "cert": &c.Cert, "key": &c.Key,
		"peer-ca": &c.PeerCA, "dev-ca-dir": &c.DevCADir, "registration-key": &c.RegistrationKey, "log-level": &c.LogLevel,
	}
	for name, dst := range targets {
		env := "MIMI_HUB_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		switch {
		case set[name]:
			*dst = *str[name]
		case getenv(env) != "":
			*dst = getenv(env)
		}
	}
	if set["require-consent"] {
		c.RequireConsent = *consent
	} else if v := getenv("MIMI_HUB_REQUIRE_CONSENT"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return config{}, fmt.Errorf("MIMI_HUB_REQUIRE_CONSENT: %w", err)
		}
		c.RequireConsent = b
	}
	if c.Peers == nil {
		c.Peers = map[string]string{}
	}
	for d, a := range peers {
		c.Peers[d] = a
	}
	c.AssetHosts = append(c.AssetHosts, assets...)
	if c.PublicURL == "" {
		_, port, err := net.SplitHostPort(c.FederationAddr)
		if err != nil {
			return config{}, fmt.Errorf("federation address %q: %w", c.FederationAddr, err)
		}
		c.PublicURL = "https://" + net.JoinHostPort(c.Domain, port)
	}
	if c.DevCADir == "" {
		c.DevCADir = filepath.Join(c.DataDir, "dev-ca")
	}
	if (c.Cert == "") != (c.Key == "") {
		return config{}, errors.New("-cert and -key go together")
	}
	return c, nil
}

// certificates returns the provider's certificate and the roots peers are
// verified against: the configured files, or else the development CA's.
func (c config) certificates(log *slog.Logger) (tls.Certificate, *x509.CertPool, error) {
	var ca *devca.CA
	devCA := func() (*devca.CA, error) {
		if ca == nil {
			var err error
			if ca, err = devca.LoadOrCreate(c.DevCADir); err != nil {
				return nil, fmt.Errorf("dev CA: %w", err)
			}
		}
		return ca, nil
	}
	var cert tls.Certificate
	if c.Cert != "" {
		var err error
		if cert, err = tls.LoadX509KeyPair(c.Cert, c.Key); err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("certificate: %w", err)
		}
	} else {
		ca, err := devCA()
		if err != nil {
			return tls.Certificate{}, nil, err
		}
		certFile := filepath.Join(c.DataDir, "dev-cert.pem")
		keyFile := filepath.Join(c.DataDir, "dev-key.pem")
		if loaded, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil && namesDomain(loaded, c.Domain) && issuedBy(loaded, ca) {
			cert = loaded
		} else {
			if cert, err = ca.Issue(c.Domain, "localhost", "127.0.0.1", "::1"); err != nil {
				return tls.Certificate{}, nil, err
			}
			if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
				return tls.Certificate{}, nil, err
			}
			if err := devca.WriteCert(cert, certFile, keyFile); err != nil {
				return tls.Certificate{}, nil, err
			}
			log.Info("issued a development certificate", "domain", c.Domain, "cert", certFile, "ca", filepath.Join(c.DevCADir, "dev-ca.pem"))
		}
	}
	var roots *x509.CertPool
	if c.PeerCA != "" {
		pemBytes, err := os.ReadFile(c.PeerCA)
		if err != nil {
			return tls.Certificate{}, nil, err
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pemBytes) {
			return tls.Certificate{}, nil, fmt.Errorf("%s holds no PEM certificates", c.PeerCA)
		}
	} else {
		ca, err := devCA()
		if err != nil {
			return tls.Certificate{}, nil, err
		}
		roots = ca.Pool()
	}
	return cert, roots, nil
}

func namesDomain(c tls.Certificate, domain string) bool {
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	return err == nil && leaf.VerifyHostname(domain) == nil
}

func issuedBy(c tls.Certificate, ca *devca.CA) bool {
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return false
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

func (c config) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", c.LogLevel, err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}
