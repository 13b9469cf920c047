package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
)

// config is the daemon's configuration: defaults, then a JSON file
// (-config), then MIMI_HUB_* environment variables, then flags. JSON keys
// are the flag names with underscores; durations are strings ("15m").
type config struct {
	Domain          string            `json:"domain"`
	DataDir         string            `json:"data"`
	NodeID          string            `json:"node_id"`
	FederationAddr  string            `json:"federation_addr"`
	ClientAddr      string            `json:"client_addr"`
	OpsAddr         string            `json:"ops_addr"`
	RaftAddr        string            `json:"raft_addr"`
	RaftAdvertise   string            `json:"raft_advertise"`
	GossipAddr      string            `json:"gossip_addr"`
	GossipAdvertise string            `json:"gossip_advertise"`
	Join            []string          `json:"join"`
	BootstrapExpect int               `json:"bootstrap_expect"`
	ClusterName     string            `json:"cluster_name"`
	GossipKeyFile   string            `json:"gossip_key_file"`
	ClusterCert     string            `json:"cluster_cert"`
	ClusterKey      string            `json:"cluster_key"`
	ClusterCA       string            `json:"cluster_ca"`
	PublicURL       string            `json:"public_url"`
	Cert            string            `json:"cert"`
	Key             string            `json:"key"`
	PeerCA          string            `json:"peer_ca"`
	DevCADir        string            `json:"dev_ca_dir"`
	Peers           map[string]string `json:"peer"`
	AssetHosts      []string          `json:"asset_host"`
	AssetCA         string            `json:"asset_ca"`
	RegistrationKey string            `json:"registration_key"`
	Registration    string            `json:"registration"`
	NoAccountLimits bool              `json:"no_account_rate_limits"`
	AdminToken      string            `json:"admin_token"`
	// AdminTokenSet records that -admin-token (or admin_token in the
	// file) was given, possibly empty (admintoken.go).
	AdminTokenSet  bool     `json:"-"`
	AdminTokenFile string   `json:"admin_token_file"`
	OpsHosts       []string `json:"ops_host"`
	RequireConsent bool     `json:"require_consent"`
	LogLevel       string   `json:"log_level"`
	LogFormat      string   `json:"log_format"`

	DeadNodeRemoveAfter  duration `json:"dead_node_remove_after"`
	LeaderWait           duration `json:"leader_wait"`
	SnapshotThreshold    uint64   `json:"snapshot_threshold"`
	SnapshotInterval     duration `json:"snapshot_interval"`
	TrailingLogs         uint64   `json:"trailing_logs"`
	RaftHeartbeatTimeout duration `json:"raft_heartbeat_timeout"`
	RaftElectionTimeout  duration `json:"raft_election_timeout"`
	RaftLeaseTimeout     duration `json:"raft_lease_timeout"`
	RaftCommitTimeout    duration `json:"raft_commit_timeout"`

	limitsConfig // limits.go
}

func defaults() config {
	return config{
		Domain:          "localhost",
		DataDir:         "mimi-hub-data",
		FederationAddr:  "127.0.0.1:8443",
		ClientAddr:      "127.0.0.1:8444",
		OpsAddr:         "127.0.0.1:8445",
		RaftAddr:        "127.0.0.1:8446",
		GossipAddr:      "127.0.0.1:8447",
		BootstrapExpect: bootstrapUnset,
		LogLevel:        "info",
		LogFormat:       "text",
		Peers:           map[string]string{},
		// The cluster's own defaults, spelled out so that -h shows them.
		DeadNodeRemoveAfter:  duration(cluster.DefaultDeadServerRemoval),
		LeaderWait:           duration(cluster.DefaultLeaderWait),
		SnapshotThreshold:    cluster.DefaultSnapshotThreshold,
		SnapshotInterval:     duration(cluster.DefaultSnapshotInterval),
		TrailingLogs:         cluster.DefaultTrailingLogs,
		RaftHeartbeatTimeout: duration(cluster.DefaultHeartbeatTimeout),
		RaftElectionTimeout:  duration(cluster.DefaultElectionTimeout),
		RaftLeaseTimeout:     duration(cluster.DefaultLeaderLeaseTimeout),
		RaftCommitTimeout:    duration(cluster.DefaultCommitTimeout),
	}
}

// bootstrapUnset marks -bootstrap-expect as not given: a node without
// -join bootstraps alone (1), a node with -join only joins (0). Joining a
// cluster must never bootstrap a second one by default.
const bootstrapUnset = -1

// duration is a time.Duration that reads "15m" from JSON and flags.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"15m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	*d = duration(v)
	return err
}

// option is one setting: a flag, an environment variable and a JSON key.
type option struct {
	name  string
	usage string
	// set applies a value given as text to c (repeatable options append).
	set func(c *config, v string) error
	// show returns c's value as -h prints it as the default ("": none to
	// print); nil for options whose usage explains the default.
	show func(c *config) string
	// kind names the value in -h ("duration", "ADDR", ...); "bool" makes
	// the flag a switch (-require-consent alone means true).
	kind string
}

func stringOpt(name, usage string, field func(*config) *string) option {
	return option{name, usage, func(c *config, v string) error { *field(c) = v; return nil },
		func(c *config) string { return *field(c) }, "string"}
}

func intOpt(name, usage string, field func(*config) *int) option {
	return option{name, usage, func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		*field(c) = n
		return err
	}, func(c *config) string { return strconv.Itoa(*field(c)) }, "int"}
}

func uintOpt(name, usage string, field func(*config) *uint64) option {
	return option{name, usage, func(c *config, v string) error {
		n, err := strconv.ParseUint(v, 10, 64)
		*field(c) = n
		return err
	}, func(c *config) string { return strconv.FormatUint(*field(c), 10) }, "uint"}
}

func durationOpt(name, usage string, field func(*config) *duration) option {
	return option{name, usage, func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		*field(c) = duration(d)
		return err
	}, func(c *config) string { return time.Duration(*field(c)).String() }, "duration"}
}

func boolOpt(name, usage string, field func(*config) *bool) option {
	return option{name, usage, func(c *config, v string) error {
		b, err := strconv.ParseBool(v)
		*field(c) = b
		return err
	}, func(c *config) string {
		if *field(c) {
			return "true"
		}
		return ""
	}, "bool"}
}

// listOpt appends comma-separated values.
func listOpt(name, usage string, field func(*config) *[]string) option {
	return option{name, usage, func(c *config, v string) error {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				*field(c) = append(*field(c), s)
			}
		}
		return nil
	}, func(c *config) string { return strings.Join(*field(c), ",") }, "list"}
}

// noShownDefault is o for an option whose usage explains its default
// better than a value would.
func noShownDefault(o option) option {
	o.show = nil
	return o
}

// optionFlag is an option as a flag.Value: Set records the flag, String
// is the default that -h prints.
type optionFlag struct {
	def  string
	kind string
	set  func(string) error
}

func (f *optionFlag) String() string {
	if f == nil {
		return ""
	}
	return f.def
}

func (f *optionFlag) Set(v string) error { return f.set(v) }

// IsBoolFlag makes a bool option a switch for the flag package.
func (f *optionFlag) IsBoolFlag() bool { return f.kind == "bool" }

// printUsage is -h: how to run the binary, then every flag with the kind
// of its value, its environment variable and its default.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage:
  mimi-hub [flags]               run a node
  mimi-hub healthcheck [flags]   exit 0 if the node these flags configure is ready (GET /readyz)
  mimi-hub -version              print the version and VCS revision

Every flag can also be set by its MIMI_HUB_* environment variable or by its
key (the flag name with underscores) in the -config JSON file; flags win
over the environment, which wins over the file.

`)
	fs.VisitAll(func(f *flag.Flag) {
		kind, usage := flag.UnquoteUsage(f)
		if of, ok := f.Value.(*optionFlag); ok {
			kind = of.kind
		}
		if kind == "bool" {
			kind = ""
		}
		fmt.Fprintf(w, "  -%s", f.Name)
		if kind != "" {
			fmt.Fprintf(w, " %s", kind)
		}
		fmt.Fprintf(w, "\n    \t%s", strings.ReplaceAll(usage, "\n", "\n    \t"))
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

func options() []option {
	return append([]option{
		stringOpt("domain", "the provider's domain", func(c *config) *string { return &c.Domain }),
		stringOpt("data", "data directory (Raft log, snapshots, dev certificates)", func(c *config) *string { return &c.DataDir }),
		stringOpt("node-id", "this node's name within the provider's cluster (default: the domain)", func(c *config) *string { return &c.NodeID }),
		stringOpt("federation-addr", "listen address of the MIMI federation endpoints (mutual TLS)", func(c *config) *string { return &c.FederationAddr }),
		stringOpt("client-addr", "listen address of the client API (TLS)", func(c *config) *string { return &c.ClientAddr }),
		stringOpt("ops-addr", "listen address of /healthz, /readyz, /metrics and the operator API (plain HTTP; keep it private)", func(c *config) *string { return &c.OpsAddr }),
		stringOpt("raft-addr", "listen address of Raft and the internal channel (mutual TLS, cluster CA)", func(c *config) *string { return &c.RaftAddr }),
		stringOpt("raft-advertise", "address other nodes reach -raft-addr at: an IP, or a DNS name they resolve at every connection (a pod's stable name); default: -raft-addr, which must then be a concrete IP", func(c *config) *string { return &c.RaftAdvertise }),
		stringOpt("gossip-addr", "listen address of gossip, TCP and UDP", func(c *config) *string { return &c.GossipAddr }),
		stringOpt("gossip-advertise", "address other nodes reach -gossip-addr at: an IP, or a host name resolved once at start to its one address (default: -gossip-addr)", func(c *config) *string { return &c.GossipAdvertise }),
		listOpt("join", "gossip addresses of other nodes of this provider, HOST:PORT or dns:NAME:PORT (every address NAME resolves to) or dns:SRVNAME (SRV records), resolved again until one answers (comma-separated, repeatable)", func(c *config) *[]string { return &c.Join }),
		noShownDefault(intOpt("bootstrap-expect", "voters of a brand-new cluster: bootstrap once this many empty nodes see each other (1: alone; 0: only join an existing cluster; default 1 without -join, 0 with it)", func(c *config) *int { return &c.BootstrapExpect })),
		stringOpt("cluster-name", "gossip label; nodes of other clusters are ignored (default: the domain)", func(c *config) *string { return &c.ClusterName }),
		stringOpt("gossip-key-file", "file with the base64 gossip key (16, 24 or 32 bytes); default: made in the dev CA folder", func(c *config) *string { return &c.GossipKeyFile }),
		stringOpt("cluster-cert", "PEM certificate of this node from the cluster CA; default: issued by the dev cluster CA", func(c *config) *string { return &c.ClusterCert }),
		stringOpt("cluster-key", "PEM private key of -cluster-cert", func(c *config) *string { return &c.ClusterKey }),
		stringOpt("cluster-ca", "PEM root of the cluster CA (verifies other nodes)", func(c *config) *string { return &c.ClusterCA }),
		stringOpt("public-url", "URL peers reach the federation endpoints at (default https://DOMAIN:PORT)", func(c *config) *string { return &c.PublicURL }),
		stringOpt("cert", "PEM certificate naming DOMAIN (server and client auth); default: issued by the dev CA", func(c *config) *string { return &c.Cert }),
		stringOpt("key", "PEM private key of -cert", func(c *config) *string { return &c.Key }),
		stringOpt("peer-ca", "PEM roots that verify peer providers; default: the dev CA", func(c *config) *string { return &c.PeerCA }),
		stringOpt("dev-ca-dir", "folder of the development CAs and gossip key, created on first use (default DATA/dev-ca); share it between local providers and the nodes of a local cluster", func(c *config) *string { return &c.DevCADir }),
		{name: "peer", kind: "DOMAIN=HOST:PORT", usage: "peer provider address override (comma-separated, repeatable)", set: func(c *config, v string) error {
			for _, item := range strings.Split(v, ",") {
				d, a, ok := strings.Cut(strings.TrimSpace(item), "=")
				if !ok || d == "" || a == "" {
					return fmt.Errorf("want DOMAIN=HOST:PORT, got %q", item)
				}
				c.Peers[d] = a
			}
			return nil
		}},
		listOpt("asset-host", "host downloadFile may fetch from (repeatable)", func(c *config) *[]string { return &c.AssetHosts }),
		stringOpt("asset-ca", "PEM roots that verify the asset hosts; default: the system roots", func(c *config) *string { return &c.AssetCA }),
		stringOpt("registration-key", "secret clients must present to register a new user (default: open registration)", func(c *config) *string { return &c.RegistrationKey }),
		stringOpt("registration", "who may create new users: open, key (needs -registration-key), invite (codes from 'mimictl users invite') or closed; default key with -registration-key, else open. Further devices of a user always need its approval or password", func(c *config) *string { return &c.Registration }),
		boolOpt("no-account-rate-limits", "turn off the per-address and per-account limits on registration, device linking, password attempts and identifier queries (load tests only)", func(c *config) *bool { return &c.NoAccountLimits }),
		{"admin-token", `bearer token of the operator API, the dashboard and pprof on -ops-addr (default: the token in -admin-token-file, generated on first start); "" runs without one, allowed only on a loopback -ops-addr`, func(c *config, v string) error {
			c.AdminToken, c.AdminTokenSet = v, true
			return nil
		}, nil, "string"}, // never shown: it is a secret
		stringOpt("admin-token-file", "file holding the admin token, created (0600, a new random token) if missing; nodes may share one (default DATA/admin-token)", func(c *config) *string { return &c.AdminTokenFile }),
		listOpt("ops-host", "host name the operations listener answers to besides IP addresses and localhost (comma-separated, repeatable; other Host headers are refused against DNS rebinding)", func(c *config) *[]string { return &c.OpsHosts }),
		boolOpt("require-consent", "claims for local users need their explicit consent; the leader's applies on every node", func(c *config) *bool { return &c.RequireConsent }),
		stringOpt("log-level", "debug, info, warn or error", func(c *config) *string { return &c.LogLevel }),
		stringOpt("log-format", "text (key=value lines) or json (one JSON object per line)", func(c *config) *string { return &c.LogFormat }),
		durationOpt("dead-node-remove-after", "remove a node from Raft after it has been failed this long (never below the bootstrap size or a live quorum)", func(c *config) *duration { return &c.DeadNodeRemoveAfter }),
		durationOpt("leader-wait", "how long a request waits for a leader before answering 503", func(c *config) *duration { return &c.LeaderWait }),
		uintOpt("snapshot-threshold", "log entries between automatic snapshots", func(c *config) *uint64 { return &c.SnapshotThreshold }),
		durationOpt("snapshot-interval", "how often the snapshot threshold is checked", func(c *config) *duration { return &c.SnapshotInterval }),
		uintOpt("trailing-logs", "log entries kept after a snapshot", func(c *config) *uint64 { return &c.TrailingLogs }),
		durationOpt("raft-heartbeat-timeout", "Raft heartbeat timeout", func(c *config) *duration { return &c.RaftHeartbeatTimeout }),
		durationOpt("raft-election-timeout", "Raft election timeout", func(c *config) *duration { return &c.RaftElectionTimeout }),
		durationOpt("raft-lease-timeout", "Raft leader lease timeout", func(c *config) *duration { return &c.RaftLeaseTimeout }),
		durationOpt("raft-commit-timeout", "longest an idle leader waits before telling followers the new commit index", func(c *config) *duration { return &c.RaftCommitTimeout }),
	}, limitOptions()...)
}

// envName is the environment variable of an option.
func envName(name string) string {
	return "MIMI_HUB_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// loadConfig parses args (and the environment) into a config.
func loadConfig(args []string, getenv func(string) string, usage io.Writer) (config, error) {
	opts := options()
	fs := flag.NewFlagSet("mimi-hub", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.Usage = func() { printUsage(usage, fs) }
	file := fs.String("config", "", "JSON configuration file (keys: the flag names with underscores)")
	fs.Bool("version", false, "print the version and VCS revision, then exit")
	type given struct{ name, value string }
	var flags []given
	probe, shown := defaults(), defaults()
	for _, o := range opts {
		f := &optionFlag{kind: o.kind, set: func(v string) error {
			if err := o.set(&probe, v); err != nil {
				return err
			}
			flags = append(flags, given{o.name, v})
			return nil
		}}
		if o.show != nil {
			f.def = o.show(&shown)
		}
		fs.Var(f, o.name, o.usage+" [env "+envName(o.name)+"]")
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c := defaults()
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
		c.AdminTokenSet = jsonHasKey(b, "admin_token")
		if c.Peers == nil {
			c.Peers = map[string]string{}
		}
	}
	for _, o := range opts {
		if v := getenv(envName(o.name)); v != "" {
			if err := o.set(&c, v); err != nil {
				return config{}, fmt.Errorf("%s: %w", envName(o.name), err)
			}
		}
	}
	for _, g := range flags {
		i := slices.IndexFunc(opts, func(o option) bool { return o.name == g.name })
		if err := opts[i].set(&c, g.value); err != nil {
			return config{}, fmt.Errorf("-%s: %w", g.name, err)
		}
	}
	return c.complete()
}

// complete fills derived defaults and checks the combination.
func (c config) complete() (config, error) {
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
	if c.NodeID == "" {
		c.NodeID = c.Domain
	}
	if c.ClusterName == "" {
		c.ClusterName = c.Domain
	}
	if c.BootstrapExpect == bootstrapUnset {
		c.BootstrapExpect = 1
		if len(c.Join) > 0 {
			c.BootstrapExpect = 0
		}
	}
	var errs []error
	for _, pair := range [][3]string{{"cert", c.Cert, c.Key}, {"cluster-cert", c.ClusterCert, c.ClusterKey}} {
		if (pair[1] == "") != (pair[2] == "") {
			errs = append(errs, fmt.Errorf("-%s and its key go together", pair[0]))
		}
	}
	if c.ClusterCert != "" && c.ClusterCA == "" {
		errs = append(errs, errors.New("-cluster-cert needs -cluster-ca"))
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, errors.New("-bootstrap-expect must not be negative"))
	}
	if c.BootstrapExpect == 0 && len(c.Join) == 0 {
		errs = append(errs, errors.New("-bootstrap-expect 0 joins an existing cluster: give -join"))
	}
	errs = append(errs, c.checkAdminToken())
	return c, errors.Join(errs...)
}

// readGossipKey reads a gossip key file (base64).
func readGossipKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("gossip key %s: not base64: %w", path, err)
	}
	return key, nil
}

// logger returns the daemon's logger, its level held by level so that a
// reload can change it.
func (c config) logger(w io.Writer, level *slog.LevelVar) (*slog.Logger, error) {
	if err := c.setLevel(level); err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.LogFormat {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", c.LogFormat)
}

// setLevel sets level to the configured log level.
func (c config) setLevel(level *slog.LevelVar) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("log level %q: %w", c.LogLevel, err)
	}
	level.Set(l)
	return nil
}
