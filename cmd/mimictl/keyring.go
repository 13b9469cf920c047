package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/internal/hub"
)

// The gossip keyring commands drive /v1/cluster/keyring (internal/hub/
// ops_keyring.go): a key is rotated by installing the new one, using it,
// then removing the old one, each on every node.

func clusterKeyringCommand() *command {
	return &command{
		name: "keyring", summary: "rotate the gossip key: list, generate, install, use, remove",
		help: `Rotates the key that encrypts gossip between a provider's nodes, with no
restart and no pause: generate a key, install it on every node, use it
(every node encrypts with it), remove the old one. Each step goes to every
node the node at -ops reaches; a node that did not answer is named, and
the step can be repeated. Nodes keep their keyring in their data folder
(gossip-keyring.json) and start with it from then on. Keys are shown by
fingerprint only.

  mimictl cluster keyring generate > new.key
  mimictl cluster keyring install -key-file new.key
  mimictl cluster keyring use -key-file new.key
  mimictl cluster keyring remove -key-file old.key`,
		sub: []*command{
			keyringListCommand(),
			keyringGenerateCommand(),
			keyringStepCommand(cluster.KeyringInstall, "add a key to every node's keyring (gossip still encrypts with the current one)"),
			keyringStepCommand(cluster.KeyringUse, "make an installed key the one every node encrypts with"),
			keyringStepCommand(cluster.KeyringRemove, "remove a key no node encrypts with any more"),
		},
	}
}

func keyringListCommand() *command {
	return &command{
		name: "list", summary: "show every node's gossip keys (fingerprints) and the one it encrypts with",
		noProfile: true,
		help:      `Reads GET /v1/cluster/keyring: each node's keys by fingerprint (the first eight bytes of their SHA-256), the primary one marked *.`,
		setup: func(fs *flag.FlagSet) runFunc {
			o := &opsFlags{}
			o.define(fs)
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("cluster keyring list", args, 0, 0); err != nil {
					return err
				}
				var out hub.OpsKeyring
				raw, err := o.get(ctx, e, "/v1/cluster/keyring", nil, &out)
				if err != nil {
					return err
				}
				return printKeyring(e, raw, &out)
			}
		},
	}
}

func keyringGenerateCommand() *command {
	return &command{
		name: "generate", summary: "print a new random gossip key (32 bytes, base64)",
		noProfile: true,
		help:      `Prints a new random 32-byte gossip key in standard base64, the format of mimi-hub -gossip-key-file. Keep it as secret as the old one.`,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("cluster keyring generate", args, 0, 0); err != nil {
					return err
				}
				key := make([]byte, 32)
				if _, err := rand.Read(key); err != nil {
					return err
				}
				s := base64.StdEncoding.EncodeToString(key)
				return e.output(map[string]string{"key": s, "fingerprint": cluster.KeyFingerprint(key)}, s+"\n")
			}
		},
	}
}

func keyringStepCommand(op, summary string) *command {
	path := "cluster keyring " + op
	return &command{
		name: op, synopsis: "[KEY]", summary: summary,
		noProfile: true,
		help: fmt.Sprintf(`POST /v1/cluster/keyring with op %q: on every node the node at -ops
reaches. KEY is the key in standard base64; -key-file reads it from a file
instead (a key on the command line shows in the process list).`, op),
		setup: func(fs *flag.FlagSet) runFunc {
			o := &opsFlags{}
			o.define(fs)
			keyFile := fs.String("key-file", "", "`file` holding the key in base64 (as mimi-hub -gossip-key-file)")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs(path, args, 0, 1); err != nil {
					return err
				}
				var key string
				switch {
				case len(args) == 1 && *keyFile != "":
					return usagef(path, "%s: give KEY or -key-file, not both", path)
				case len(args) == 1:
					key = args[0]
				case *keyFile != "":
					b, err := os.ReadFile(*keyFile)
					if err != nil {
						return fmt.Errorf("key file: %w", err)
					}
					key = strings.TrimSpace(string(b))
				default:
					return usagef(path, "%s: give KEY or -key-file", path)
				}
				if _, err := cluster.DecodeGossipKey(key); err != nil {
					return usagef(path, "%s: %v", path, err)
				}
				var out hub.OpsKeyring
				raw, err := o.post(ctx, e, "/v1/cluster/keyring", hub.OpsKeyringRequest{Op: op, Key: key}, &out)
				if err != nil {
					return err
				}
				return printKeyring(e, raw, &out)
			}
		},
	}
}

// printKeyring writes each node's keyring.
func printKeyring(e *env, raw []byte, k *hub.OpsKeyring) error {
	if e.json {
		return writeCompactJSON(e, raw)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tKEYS (* encrypts with it)")
	for _, n := range k.Nodes {
		if n.Error != "" {
			fmt.Fprintf(tw, "%s\terror: %s\n", sanitize(n.Node), sanitize(n.Error))
			continue
		}
		var keys []string
		for _, fp := range n.Keys {
			if fp == n.Primary {
				fp += "*"
			}
			keys = append(keys, fp)
		}
		fmt.Fprintf(tw, "%s\t%s\n", sanitize(n.Node), strings.Join(keys, " "))
	}
	return tw.Flush()
}
