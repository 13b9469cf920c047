package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/mimihub/mimi-hub/cluster"
)

// Gossip key rotation through the operations listener (cluster/keyring.go):
//
//	GET  /v1/cluster/keyring   every node's gossip keys (fingerprints only) -> OpsKeyring
//	POST /v1/cluster/keyring   OpsKeyringRequest: install, use or remove a key on every node -> OpsKeyring
//
// A rotation is three requests: install the new key, use it, remove the
// old one. A step some node could not take answers 502 (409 when it was
// refused as unsafe: using a key a node lacks, removing one in use) and
// names the nodes; repeat it once they answer.

// OpsKeyringRequest is the body of POST /v1/cluster/keyring.
type OpsKeyringRequest struct {
	// Op is "install", "use" or "remove".
	Op string `json:"op"`
	// Key is the gossip key, standard base64 of 16, 24 or 32 bytes.
	Key string `json:"key"`
}

// OpsKeyring answers /v1/cluster/keyring: each node's keys after the step.
type OpsKeyring struct {
	Nodes []cluster.NodeKeyring `json:"nodes"`
}

func (h *Hub) opsKeyringList(w http.ResponseWriter, r *http.Request) {
	h.keyring(w, r, cluster.KeyringList, nil)
}

func (h *Hub) opsKeyringChange(w http.ResponseWriter, r *http.Request) {
	var req OpsKeyringRequest
	if !decodeOps(w, r, &req, false) {
		return
	}
	switch req.Op {
	case cluster.KeyringInstall, cluster.KeyringUse, cluster.KeyringRemove:
	default:
		opsError(w, http.StatusBadRequest, fmt.Sprintf(`keyring: "op" must be install, use or remove, not %q`, req.Op))
		return
	}
	key, err := cluster.DecodeGossipKey(req.Key)
	if err != nil {
		opsError(w, http.StatusBadRequest, "keyring: "+err.Error())
		return
	}
	h.keyring(w, r, req.Op, key)
}

func (h *Hub) keyring(w http.ResponseWriter, r *http.Request, op string, key []byte) {
	if h.cfg.Raft.Gossip == nil {
		opsError(w, http.StatusConflict, "keyring: this node runs without gossip (a single-node provider)")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), clusterOpTimeout)
	defer cancel()
	nodes, err := h.node.Keyring(ctx, op, key)
	switch {
	case errors.Is(err, cluster.ErrKeyring):
		opsError(w, http.StatusConflict, err.Error())
		return
	case err != nil:
		h.clusterError(w, r, "keyring "+op, err, http.StatusBadGateway)
		return
	}
	if op != cluster.KeyringList {
		h.cfg.Logger.Warn("gossip keyring changed on every node on request", "op", op, "key", cluster.KeyFingerprint(key))
	}
	writeJSON(w, OpsKeyring{Nodes: nodes})
}
