package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/mimihub/mimi-hub/internal/hub"
)

// The operations listener's admin token. Without -admin-token a node
// reads its token from -admin-token-file (default DATA/admin-token),
// creating the file with a new random token on first start and printing
// the token once, with the file's path. mimictl on the same host reads the
// same file (mimictl -data DATA). Running without a token takes an explicit
// -admin-token "" (or "admin_token": "" in the file), and only with a
// loopback -ops-addr: the hub refuses anything else too.

// checkAdminToken checks the token settings' combination.
func (c config) checkAdminToken() error {
	switch {
	case c.AdminTokenSet && c.AdminTokenFile != "":
		return errors.New("-admin-token and -admin-token-file exclude each other")
	case c.AdminTokenSet && c.AdminToken == "" && c.OpsAddr != "" && !hub.IsLoopbackAddr(c.OpsAddr):
		return fmt.Errorf("-admin-token \"\" runs the operations listener without a token, which is allowed only on a loopback address, not %s", c.OpsAddr)
	}
	return nil
}

// adminTokenPath is the token file a node without -admin-token uses.
func (c config) adminTokenPath() string {
	if c.AdminTokenFile != "" {
		return c.AdminTokenFile
	}
	return filepath.Join(c.DataDir, hub.AdminTokenFile)
}

// adminToken returns the token the node runs with, generating the token
// file on first start; the first time, it tells the operator on stderr.
func (c config) adminToken(stderr io.Writer) (string, error) {
	if c.AdminTokenSet || c.OpsAddr == "" {
		return c.AdminToken, nil
	}
	path := c.adminTokenPath()
	tok, created, err := hub.LoadOrCreateAdminToken(path)
	if err != nil {
		return "", err
	}
	if created {
		fmt.Fprintf(stderr, "mimi-hub: generated the admin token of the operations listener (%s): %s\n"+
			"mimi-hub: it is kept in %s (0600); mimictl on this host reads it with -data %s, elsewhere pass -admin-token\n",
			c.OpsAddr, tok, path, filepath.Dir(path))
	}
	return tok, nil
}

// jsonHasKey reports whether the JSON object b has key at its top level.
func jsonHasKey(b []byte, key string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return false
	}
	_, ok := m[key]
	return ok
}
