package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Gossip key rotation. Gossip is encrypted with the primary key of each
// node's keyring and accepted under any key in it, so a key is rotated
// without a pause in three cluster-wide steps: install the new key on
// every node, use it (make it primary) on every node, remove the old one
// from every node. Node.Keyring does one step on every node it can reach
// (the Raft configuration's servers and the nodes gossip sees alive),
// asking the others over the internal channel. A node keeps its keyring in
// DataDir/gossip-keyring.json (0600) after the first change, and from then
// on starts with it instead of GossipConfig.Key.

// KeyringFile is the keyring a node keeps in its DataDir once its keys
// were changed through Node.Keyring.
const KeyringFile = "gossip-keyring.json"

// rpcKeyring carries a keyring step to a node.
const rpcKeyring = "/cluster/v1/keyring"

// maxKeyringKeys bounds the keys a keyring holds.
const maxKeyringKeys = 8

// Keyring operations.
const (
	KeyringList    = "list"
	KeyringInstall = "install"
	KeyringUse     = "use"
	KeyringRemove  = "remove"
)

// ErrKeyring marks a keyring operation refused as unsafe or invalid
// (callers answer it as a conflict or bad request).
var ErrKeyring = errors.New("keyring")

// KeyFingerprint names a gossip key without revealing it: the first eight
// bytes of its SHA-256, in hex.
func KeyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// NodeKeyring is one node's keyring as Node.Keyring reports it.
type NodeKeyring struct {
	Node string `json:"node"`
	// Keys are the fingerprints of the node's keys; Primary the one it
	// encrypts with.
	Keys    []string `json:"keys,omitempty"`
	Primary string   `json:"primary,omitempty"`
	// Error says why the node did not answer or refused the step.
	Error string `json:"error,omitempty"`
}

// keyringRequest is a keyring step sent to a node.
type keyringRequest struct {
	Op  string `json:"op"`
	Key []byte `json:"key,omitempty"`
}

// keyringState persists a node's keyring.
type keyringState struct {
	mu   sync.Mutex // serializes changes and their saving
	path string
	ring *memberlist.Keyring
}

// loadKeyring returns the node's keyring: the saved one if there is one,
// else a keyring holding only key.
func loadKeyring(dir string, key []byte, log *slog.Logger) (*keyringState, error) {
	path := filepath.Join(dir, KeyringFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		ring, err := memberlist.NewKeyring(nil, key)
		if err != nil {
			return nil, fmt.Errorf("gossip key: %w", err)
		}
		return &keyringState{path: path, ring: ring}, nil
	case err != nil:
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	var saved struct {
		Keys [][]byte `json:"keys"` // primary first
	}
	if err := json.Unmarshal(b, &saved); err != nil || len(saved.Keys) == 0 || len(saved.Keys) > maxKeyringKeys {
		return nil, fmt.Errorf("gossip keyring %s: unreadable or empty (%v)", path, err)
	}
	ring, err := memberlist.NewKeyring(saved.Keys, saved.Keys[0])
	if err != nil {
		return nil, fmt.Errorf("gossip keyring %s: %w", path, err)
	}
	if !slices.ContainsFunc(saved.Keys, func(k []byte) bool { return bytes.Equal(k, key) }) {
		log.Info("starting with the rotated gossip keyring; the configured gossip key is not in it", "file", path, "primary", KeyFingerprint(saved.Keys[0]))
	}
	return &keyringState{path: path, ring: ring}, nil
}

// view reports the keyring.
func (k *keyringState) view(node string) NodeKeyring {
	out := NodeKeyring{Node: node, Primary: KeyFingerprint(k.ring.GetPrimaryKey())}
	for _, key := range k.ring.GetKeys() {
		out.Keys = append(out.Keys, KeyFingerprint(key))
	}
	return out
}

// apply does one step on this node's keyring and saves it.
func (k *keyringState) apply(op string, key []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	has := slices.ContainsFunc(k.ring.GetKeys(), func(x []byte) bool { return bytes.Equal(x, key) })
	var err error
	switch op {
	case KeyringInstall:
		if !has && len(k.ring.GetKeys()) >= maxKeyringKeys {
			return fmt.Errorf("%w: the keyring holds %d keys already; remove one first", ErrKeyring, maxKeyringKeys)
		}
		err = k.ring.AddKey(key)
	case KeyringUse:
		if !has {
			return fmt.Errorf("%w: key %s is not installed on this node", ErrKeyring, KeyFingerprint(key))
		}
		err = k.ring.UseKey(key)
	case KeyringRemove:
		if bytes.Equal(k.ring.GetPrimaryKey(), key) {
			return fmt.Errorf("%w: key %s is the primary key; use another one first", ErrKeyring, KeyFingerprint(key))
		}
		if !has {
			return nil // already gone
		}
		err = k.ring.RemoveKey(key)
	default:
		return fmt.Errorf("%w: unknown operation %q", ErrKeyring, op)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKeyring, err)
	}
	return k.save()
}

// save writes the keyring, primary key first, atomically (0600).
func (k *keyringState) save() error {
	keys := [][]byte{k.ring.GetPrimaryKey()}
	for _, key := range k.ring.GetKeys() {
		if !bytes.Equal(key, keys[0]) {
			keys = append(keys, key)
		}
	}
	b, err := json.Marshal(struct {
		Keys [][]byte `json:"keys"`
	}{keys})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(k.path), ".gossip-keyring-*")
	if err != nil {
		return fmt.Errorf("saving the gossip keyring: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(b)
	if err := errors.Join(werr, tmp.Chmod(0o600), tmp.Sync(), tmp.Close()); err != nil {
		return fmt.Errorf("saving the gossip keyring: %w", err)
	}
	if err := os.Rename(tmp.Name(), k.path); err != nil {
		return fmt.Errorf("saving the gossip keyring: %w", err)
	}
	return nil
}

// DecodeGossipKey reads a gossip key written as standard base64 and checks
// its size (16, 24 or 32 bytes).
func DecodeGossipKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: the key is not standard base64: %v", ErrKeyring, err)
	}
	if err := memberlist.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyring, err)
	}
	return key, nil
}

// Keyring does one keyring step (KeyringList, KeyringInstall, KeyringUse or
// KeyringRemove) on every node it can reach, this one included, and
// reports each node's keyring afterwards. "use" is refused unless every
// node reached holds the key, and "remove" of a node's primary key is
// refused on that node: either would cut nodes off. An error is returned
// when the step was refused or some node did not answer; the report says
// which.
func (n *Node) Keyring(ctx context.Context, op string, key []byte) ([]NodeKeyring, error) {
	if n.gossip == nil {
		return nil, fmt.Errorf("%w: this node runs without gossip", ErrKeyring)
	}
	if op != KeyringList {
		if err := memberlist.ValidateKey(key); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKeyring, err)
		}
	}
	targets := n.keyringTargets()
	if op == KeyringUse || op == KeyringRemove {
		// Every node must hold a key before any encrypts with it, and no
		// node may still encrypt with a key being removed.
		list, err := n.keyringEach(ctx, targets, keyringRequest{Op: KeyringList})
		if err != nil {
			return list, fmt.Errorf("not every node answered; %s the key once they all do: %w", op, err)
		}
		fp := KeyFingerprint(key)
		for _, nk := range list {
			if op == KeyringUse && !slices.Contains(nk.Keys, fp) {
				return list, fmt.Errorf("%w: node %s does not hold key %s yet; install it everywhere first", ErrKeyring, nk.Node, fp)
			}
			if op == KeyringRemove && nk.Primary == fp {
				return list, fmt.Errorf("%w: node %s encrypts with key %s; use another key everywhere first", ErrKeyring, nk.Node, fp)
			}
		}
	}
	return n.keyringEach(ctx, targets, keyringRequest{Op: op, Key: key})
}

// keyringTarget is a node to ask: its id and Raft address ("" for this
// node).
type keyringTarget struct{ id, addr string }

// keyringTargets lists this node, the Raft configuration's servers and
// the nodes gossip sees alive.
func (n *Node) keyringTargets() []keyringTarget {
	seen := map[string]bool{n.cfg.NodeID: true}
	out := []keyringTarget{{id: n.cfg.NodeID}}
	if servers, err := n.Servers(); err == nil {
		for _, s := range servers {
			if !seen[s.ID] {
				seen[s.ID] = true
				out = append(out, keyringTarget{s.ID, s.RaftAddr})
			}
		}
	}
	for _, m := range n.gossip.snapshot() {
		if !seen[m.ID] && m.Status == StatusAlive && m.Meta.RaftAddr != "" {
			seen[m.ID] = true
			out = append(out, keyringTarget{m.ID, m.Meta.RaftAddr})
		}
	}
	return out
}

// keyringEach sends req to every target (each bounded by two seconds)
// and collects their keyrings.
func (n *Node) keyringEach(ctx context.Context, targets []keyringTarget, req keyringRequest) ([]NodeKeyring, error) {
	out := make([]NodeKeyring, len(targets))
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Go(func() {
			if tg.addr == "" {
				nk, err := n.keyringLocal(req)
				out[i] = nk
				if err != nil {
					out[i].Error = err.Error()
				}
				return
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			var nk NodeKeyring
			if n.rpc == nil {
				nk.Error = "no internal channel"
			} else if err := n.rpc.call(cctx, tg.addr, rpcKeyring, req, &nk); err != nil {
				nk.Error = err.Error()
			}
			nk.Node = tg.id
			out[i] = nk
		})
	}
	wg.Wait()
	var errs []error
	for _, nk := range out {
		if nk.Error != "" {
			errs = append(errs, fmt.Errorf("%s: %s", nk.Node, nk.Error))
		}
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("keyring %s: %w", req.Op, errors.Join(errs...))
	}
	return out, nil
}

// keyringLocal does a step on this node.
func (n *Node) keyringLocal(req keyringRequest) (NodeKeyring, error) {
	if n.gossip == nil {
		return NodeKeyring{Node: n.cfg.NodeID}, fmt.Errorf("%w: this node runs without gossip", ErrKeyring)
	}
	var err error
	if req.Op != KeyringList {
		if err = n.gossip.keys.apply(req.Op, req.Key); err == nil {
			n.log.Info("gossip keyring changed on request", "op", req.Op, "key", KeyFingerprint(req.Key))
		}
	}
	return n.gossip.keys.view(n.cfg.NodeID), err
}
