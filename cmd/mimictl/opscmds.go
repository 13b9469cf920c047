package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mimihub/mimi-hub/internal/hub"
)

// Operator commands read a provider node's operations listener
// (internal/hub/ops.go): plain HTTP, meant for a private network.
const (
	defaultOpsURL = "http://127.0.0.1:8445"
	// opsTimeout bounds one request to the operations listener.
	opsTimeout = 15 * time.Second
	// maxOpsAnswer bounds an answer's size.
	maxOpsAnswer = 16 << 20
)

// opsFlags are the flags of the operator commands.
type opsFlags struct {
	url string
	adminTokenFlags
}

func (o *opsFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&o.url, "ops", defaultOpsURL, "`URL` of the provider node's operations listener (mimi-hub -ops-addr)")
	o.adminTokenFlags.define(fs)
}

// adminTokenFlags say where the node's admin token comes from.
type adminTokenFlags struct {
	token, file, data string
}

func (a *adminTokenFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&a.token, "admin-token", "", "the node's admin bearer `token` (default $MIMICTL_ADMIN_TOKEN, else read from -admin-token-file or -data)")
	fs.StringVar(&a.file, "admin-token-file", "", "`file` holding the admin token (default $MIMICTL_ADMIN_TOKEN_FILE)")
	fs.StringVar(&a.data, "data", "mimi-hub-data", "the node's data `folder` (mimi-hub -data), whose admin-token file is read when the node listens on this host's loopback")
}

// resolve returns the admin token for the operations listener at base:
// -admin-token, $MIMICTL_ADMIN_TOKEN, -admin-token-file,
// $MIMICTL_ADMIN_TOKEN_FILE, or, for a listener on a loopback address,
// the token mimi-hub generated in its data folder (-data), if there is
// one. "" means none: the request goes without.
func (a *adminTokenFlags) resolve(e *env, base string) (string, error) {
	if a.token != "" {
		return a.token, nil
	}
	if tok := e.getenv("MIMICTL_ADMIN_TOKEN"); tok != "" {
		return tok, nil
	}
	file := a.file
	if file == "" {
		file = e.getenv("MIMICTL_ADMIN_TOKEN_FILE")
	}
	if file != "" {
		return hub.ReadAdminToken(file)
	}
	u, err := url.Parse(base)
	if err != nil || a.data == "" || !hub.IsLoopbackAddr(net.JoinHostPort(u.Hostname(), "0")) {
		return "", nil
	}
	tok, err := hub.ReadAdminToken(filepath.Join(a.data, hub.AdminTokenFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return tok, err
}

// get fetches path from the operations listener into out, or returns the
// raw answer when out is nil.
func (o *opsFlags) get(ctx context.Context, e *env, path string, query url.Values, out any) ([]byte, error) {
	return o.call(ctx, e, http.MethodGet, path, query, nil, out)
}

// post sends in (nil: no body) as JSON to path and decodes the answer
// into out, returning the raw answer.
func (o *opsFlags) post(ctx context.Context, e *env, path string, in, out any) ([]byte, error) {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("POST %s: encoding the request: %w", path, err)
		}
		body = b
	}
	return o.call(ctx, e, http.MethodPost, path, nil, body, out)
}

// call sends one request of at most opsTimeout and decodes a JSON answer
// into out (unless out is nil), returning the raw answer.
func (o *opsFlags) call(ctx context.Context, e *env, method, path string, query url.Values, body []byte, out any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, opsTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	resp, target, err := o.request(ctx, e, method, path, query, rd, "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxOpsAnswer))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, target, err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("%s %s: decoding the answer: %w", method, target, err)
		}
	}
	return raw, nil
}

// request sends a request to the operations listener, bounded by ctx
// only, and returns a 200 answer for the caller to read and close (with
// the URL it went to). Any other answer becomes an error carrying the
// node's message and, where one helps, a hint.
func (o *opsFlags) request(ctx context.Context, e *env, method, path string, query url.Values, body io.Reader, contentType string) (*http.Response, string, error) {
	base := strings.TrimRight(o.url, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, "", &usageError{msg: fmt.Sprintf("-ops %q is not an http:// or https:// URL", o.url), hint: "Example: -ops http://127.0.0.1:8445"}
	}
	target := base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, target, fmt.Errorf("%s: %w", path, err)
	}
	token, err := o.resolve(e, base)
	if err != nil {
		return nil, target, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil || method != http.MethodGet {
		// Every write declares its media type: the listener refuses one
		// that does not (as it refuses a browser's form).
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, target, fmt.Errorf("%s %s: %w\nhint: is the provider running, and is -ops its operations listener (mimi-hub -ops-addr, default 127.0.0.1:8445)?", method, target, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, target, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxOpsAnswer))
	var je struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(raw))
	isJSON := json.Unmarshal(raw, &je) == nil && je.Error != ""
	if isJSON {
		msg = je.Error
	}
	err = fmt.Errorf("%s %s: HTTP %d: %s", method, target, resp.StatusCode, sanitize(msg))
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		err = fmt.Errorf("%w\nhint: pass the node's admin token with -admin-token, $MIMICTL_ADMIN_TOKEN or -admin-token-file; on the node's host, -data names its data folder (mimi-hub wrote the token there on first start)", err)
	case http.StatusNotFound:
		if !isJSON || strings.HasPrefix(msg, "no such operations endpoint") {
			err = fmt.Errorf("%w\nhint: is -ops the operations listener of a mimi-hub recent enough to serve %s?", err, path)
		}
	case http.StatusServiceUnavailable:
		err = fmt.Errorf("%w\nhint: the cluster has no leader right now (an election, or too few nodes up), or the node is stopping; retry shortly", err)
	case http.StatusGatewayTimeout:
		err = fmt.Errorf("%w\nhint: check the outcome with 'mimictl cluster status' before retrying", err)
	}
	return nil, target, err
}

func statusCommand() *command {
	return &command{
		name: "status", summary: "show a provider node's Raft state, state sizes and fanout queues (operator)",
		noProfile: true,
		help: `Reads GET /v1/status from the node's operations listener: the provider's
domain, this node's Raft state (leader or not, term, log indexes), the
sizes of the replicated state, and per peer provider the fanout items
waiting and the delivery counters. -json prints the node's answer as it is.`,
		setup: func(fs *flag.FlagSet) runFunc {
			o := &opsFlags{}
			o.define(fs)
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("status", args, 0, 0); err != nil {
					return err
				}
				var st hub.OpsStatus
				raw, err := o.get(ctx, e, "/v1/status", nil, &st)
				if err != nil {
					return err
				}
				if e.json {
					return writeCompactJSON(e, raw)
				}
				return printStatus(e, &st)
			}
		},
	}
}

// writeCompactJSON writes a JSON answer on one line.
func writeCompactJSON(e *env, raw []byte) error {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return fmt.Errorf("the node's answer is not JSON: %w", err)
	}
	b.WriteByte('\n')
	_, err := e.stdout.Write(b.Bytes())
	return err
}

// printStatus writes a status as text.
func printStatus(e *env, st *hub.OpsStatus) error {
	when := func(t *time.Time) string {
		if t == nil {
			return "never"
		}
		return fmt.Sprintf("%s (%s ago)", t.Local().Format(time.DateTime), st.Now.Sub(*t).Round(time.Second))
	}
	leader := st.Raft.LeaderID
	if leader == "" {
		leader = "none known"
	} else if st.Raft.LeaderAddr != "" {
		leader += " at " + st.Raft.LeaderAddr
	}
	c := st.Counts
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "domain\t%s\n", st.Domain)
	fmt.Fprintf(tw, "node\t%s: Raft %s at %s\n", st.NodeID, strings.ToLower(st.Raft.State), st.Raft.Addr)
	fmt.Fprintf(tw, "leader\t%s\n", leader)
	switch {
	case st.Ready:
		fmt.Fprintf(tw, "ready\tyes\n")
	case st.NotReady != "": // older nodes say neither
		fmt.Fprintf(tw, "ready\tno: %s\n", sanitize(st.NotReady))
	}
	fmt.Fprintf(tw, "term\t%d\n", st.Raft.Term)
	fmt.Fprintf(tw, "log\tlast %d, committed %d, applied %d, snapshot %d\n", st.Raft.LastIndex, st.Raft.CommitIndex, st.Raft.AppliedIndex, st.Raft.LastSnapshotIndex)
	if !st.Raft.Leader {
		fmt.Fprintf(tw, "leader contact\t%s\n", when(st.Raft.LastContact))
	}
	fmt.Fprintf(tw, "last accepted\t%s\n", when(st.LastAcceptedAt))
	fmt.Fprintf(tw, "state\t%d rooms, %d users, %d clients, %d room streams, %d abuse reports, %d outbox items\n",
		c.Rooms, c.Users, c.Clients, c.Streams, c.Reports, c.OutboxItems)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Peers) == 0 {
		_, err := fmt.Fprintln(e.stdout, "\npeers: none yet")
		return err
	}
	fmt.Fprintln(e.stdout)
	tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tQUEUED\tOLDEST\tDELIVERED\tDROPPED\tFAILURES\tLAST ERROR")
	for _, name := range slices.Sorted(maps.Keys(st.Peers)) {
		p := st.Peers[name]
		oldest := "-"
		if p.OldestEnqueued != nil {
			oldest = st.Now.Sub(*p.OldestEnqueued).Round(time.Second).String()
		}
		lastErr := "-"
		if p.LastError != "" {
			lastErr = sanitize(p.LastError)
			if len(lastErr) > 100 {
				lastErr = lastErr[:97] + "..."
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%s\n", name, p.Outbox, oldest, p.Delivered, p.Dropped, p.Failures, lastErr)
	}
	return tw.Flush()
}

func reportsCommand() *command {
	return &command{
		name: "reports", summary: "list the abuse reports a provider received (operator)",
		noProfile: true,
		help: `Reads GET /v1/reports from the node's operations listener: the abuse
reports users sent about rooms this provider hosts, oldest first. Each
report has an index that does not change; -after INDEX lists the reports
after it, so a later 'mimictl reports -after LAST' shows only new ones.
-all follows the pages to the end. "verified" counts the reported messages
the hub decrypted with the disclosed keys and found sent by the alleged
abuser.`,
		setup: func(fs *flag.FlagSet) runFunc {
			o := &opsFlags{}
			o.define(fs)
			after := fs.Uint64("after", 0, "list reports after this `index`")
			limit := fs.Int("limit", hub.DefaultReportsLimit, "reports per page (at most 1000)")
			all := fs.Bool("all", false, "follow the pages until the last report")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("reports", args, 0, 0); err != nil {
					return err
				}
				if *limit < 1 || *limit > hub.MaxReportsLimit {
					return usagef("reports", "reports: -limit must be between 1 and %d", hub.MaxReportsLimit)
				}
				return e.reports(ctx, o, *after, *limit, *all)
			}
		},
	}
}

// maxReportPages bounds reports -all.
const maxReportPages = 10_000

// reports runs the reports command.
func (e *env) reports(ctx context.Context, o *opsFlags, after uint64, limit int, all bool) error {
	var tw *tabwriter.Writer
	if !e.json {
		tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "INDEX\tRECEIVED\tROOM\tREPORTER\tABUSER\tREASON\tMESSAGES\tVERIFIED\tNOTE")
	}
	shown := 0
	var page hub.OpsReports
	for range maxReportPages {
		q := url.Values{"after": {strconv.FormatUint(after, 10)}, "limit": {strconv.Itoa(limit)}}
		raw, err := o.get(ctx, e, "/v1/reports", q, &page)
		if err != nil {
			return err
		}
		if e.json {
			if err := writeCompactJSON(e, raw); err != nil {
				return err
			}
		} else {
			for _, r := range page.Reports {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", r.Index, r.ReceivedAt.Local().Format(time.DateTime), r.Room,
					short(r.ReportingUser), short(r.AllegedAbuser), r.Reason, r.Messages, r.Verified, sanitize(r.Note))
			}
		}
		shown += len(page.Reports)
		after = page.Next
		if !all || !page.More || len(page.Reports) == 0 {
			break
		}
	}
	if e.json {
		return nil
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case shown == 0:
		_, err := fmt.Fprintf(e.stdout, "no reports after index %d (%d kept in all)\n", after, page.Total)
		return err
	case page.More:
		_, err := fmt.Fprintf(e.stdout, "more reports follow: mimictl reports -after %d (or -all)\n", page.Next)
		return err
	}
	return nil
}
