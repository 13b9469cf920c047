package hubproc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Status is the part of GET /v1/status the harness reads.
type Status struct {
	NodeID string `json:"node_id"`
	Raft   struct {
		State        string `json:"state"`
		Leader       bool   `json:"leader"`
		LeaderID     string `json:"leader_id"`
		Term         uint64 `json:"term"`
		LastIndex    uint64 `json:"last_index"`
		CommitIndex  uint64 `json:"commit_index"`
		AppliedIndex uint64 `json:"applied_index"`
		// LastSnapshotIndex is the latest snapshot's index.
		LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	} `json:"raft"`
	Peers map[string]struct {
		Outbox    uint64 `json:"outbox"`
		Delivered uint64 `json:"delivered"`
		Failures  uint64 `json:"failures"`
		LastError string `json:"last_error"`
	} `json:"peers"`
}

// ClusterStatus is the part of GET /v1/cluster/status the harness reads:
// the Raft configuration as one node sees it.
type ClusterStatus struct {
	ReportedBy string `json:"reported_by"`
	LeaderID   string `json:"leader_id"`
	Term       uint64 `json:"term"`
	Servers    []struct {
		ID string `json:"id"`
		// Suffrage is "voter", "nonvoter", or "none" (known to gossip
		// only).
		Suffrage string `json:"suffrage"`
	} `json:"servers"`
}

// opsClient talks to a node's operations listener.
type opsClient struct {
	hc    *http.Client
	token string
}

func (o *opsClient) do(ctx context.Context, method, url string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	resp, err := o.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	if resp.StatusCode/100 != 2 {
		return &HTTPError{Method: method, URL: url, Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, url, err)
		}
	}
	return nil
}

// HTTPError is a non-2xx answer of the operations API.
type HTTPError struct {
	Method, URL string
	Status      int
	Body        string
}

// Error implements error.
func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.URL, e.Status, e.Body)
}
