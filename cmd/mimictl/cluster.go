package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/internal/hub"
)

// The cluster commands drive the /v1/cluster/ endpoints of a node's
// operations listener (internal/hub/ops.go). Any node answers for the
// cluster: changes are forwarded to the leader.

func clusterCommand() *command {
	return &command{
		name: "cluster", summary: "show and change a provider's Raft cluster: status, join, leave, transfer-leader, remove, snapshot, restore, keyring (operator)",
		help: `Operates a provider's Raft cluster through a node's operations listener
(-ops, with -admin-token when the node has one). Any node can be asked:
changes go to the leader. While the cluster has no leader, changes fail
with HTTP 503; retry once it has one.`,
		sub: []*command{
			clusterStatusCommand(),
			clusterJoinCommand(),
			clusterLeaveCommand(),
			clusterTransferCommand(),
			clusterRemoveCommand(),
			clusterSnapshotCommand(),
			clusterRestoreCommand(),
			clusterKeyringCommand(),
		},
	}
}

func clusterStatusCommand() *command {
	return &command{
		name: "status", summary: "list the nodes: suffrage, gossip status, leader, term, log indexes, last contact",
		noProfile: true,
		help: `Reads GET /v1/cluster/status: the Raft configuration and gossip's view as
the node asked sees them, and each node's own report (asked over the
cluster's internal channel; a node that does not answer within two
seconds shows its error). SUFFRAGE is voter, nonvoter (a new node
catching up before promotion) or none (seen by gossip only). LOG is the
command set the node's release applies, as it advertises it (0 for a
release before log levels): a rolling upgrade is done when every node
shows the same, and some changes of the log wait for that. -json prints
the answer as it is.`,
		setup: func(fs *flag.FlagSet) runFunc {
			o := &opsFlags{}
			o.define(fs)
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("cluster status", args, 0, 0); err != nil {
					return err
				}
				var st cluster.ClusterStatus
				raw, err := o.get(ctx, e, "/v1/cluster/status", nil, &st)
				if err != nil {
					return err
				}
				if e.json {
					return writeCompactJSON(e, raw)
				}
				return printClusterStatus(e, &st)
			}
		},
	}
}

// printClusterStatus writes a cluster status as a table.
func printClusterStatus(e *env, st *cluster.ClusterStatus) error {
	leader := "no leader known"
	if st.LeaderID != "" {
		leader = "leader " + st.LeaderID
		if st.LeaderAddr != "" {
			leader += " at " + st.LeaderAddr
		}
	}
	fmt.Fprintf(e.stdout, "%s, term %d (as %s sees it)\n\n", leader, st.Term, st.ReportedBy)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSUFFRAGE\tGOSSIP\tLOG\tLEADER\tSTATE\tTERM\tCOMMIT\tAPPLIED\tLAST CONTACT\tRAFT ADDR")
	var problems []string
	for _, s := range st.Servers {
		mark := ""
		if s.Leader {
			mark = "*"
		}
		gossip, level := string(s.Gossip), "-"
		if gossip == "" {
			gossip = "-"
		} else {
			level = strconv.Itoa(s.LogLevel)
		}
		state, term, commit, applied, contact := "?", "-", "-", "-", "-"
		if in := s.Info; in != nil {
			state = strings.ToLower(in.State)
			term, commit, applied = strconv.FormatUint(in.Term, 10), strconv.FormatUint(in.CommitIndex, 10), strconv.FormatUint(in.AppliedIndex, 10)
			contact = lastContact(in)
		}
		if s.Error != "" {
			problems = append(problems, fmt.Sprintf("%s: no report: %s", s.ID, sanitize(s.Error)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sanitize(s.ID), s.Suffrage, sanitize(gossip), level, mark, state, term, commit, applied, contact, sanitize(s.RaftAddr))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range problems {
		if _, err := fmt.Fprintln(e.stdout, p); err != nil {
			return err
		}
	}
	return nil
}

// lastContact describes how long ago a node last heard from the leader.
func lastContact(in *cluster.NodeInfo) string {
	switch {
	case strings.EqualFold(in.State, "leader"):
		return "-"
	case in.LastContactMillis < 0:
		return "never"
	}
	return (time.Duration(in.LastContactMillis) * time.Millisecond).String()
}

func clusterJoinCommand() *command {
	return &command{
		name: "join", synopsis: "GOSSIP-ADDR...", summary: "have the node contact other nodes through gossip",
		noProfile: true,
		help: `Asks the node to contact the gossip addresses given (host:port, the
other nodes' mimi-hub -gossip-addr): POST /v1/cluster/join. Nodes find
each other this way; the leader then adds a node that is new to the
cluster as a non-voter and promotes it to voter once it has caught up.
A node started with -join does this by itself.`,
		setup: func(fs *flag.FlagSet) runFunc {
			o := &opsFlags{}
			o.define(fs)
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("cluster join", args, 1, -1); err != nil {
					return err
				}
				var out hub.OpsJoinAnswer
				raw, err := o.post(ctx, e, "/v1/cluster/join", hub.OpsJoinRequest{Addrs: args}, &out)
				if err != nil {
					return err
				}
				if e.json {
					return writeCompactJSON(e, raw)
				}
				_, err = fmt.Fprintf(e.stdout, "contacted %d node(s) through gossip\n", out.Contacted)
				return err
			}
		},
	}
}

func clusterLeaveCommand() *command {
	return &command{
		name: "leave", summary: "take the node at -ops out of the cluster for good",
		noProfile: true,
		help: `The node at -ops leaves the cluster: POST /v1/cluster/leave. It hands
over leadership if it leads, has the leader remove it from the Raft
configuration and tells gossip it left. mimi-hub then stops by itself;
otherwise the answer says to stop it. Its data directory must not be
reused to rejoin: start a replacement with an empty one. The last voter
cannot leave.`,
		setup: func(fs *flag.FlagSet) runFunc {
			o := &opsFlags{}
			o.define(fs)
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("cluster leave", args, 0, 0); err != nil {
					return err
				}
				var out hub.OpsLeaveAnswer
				raw, err := o.post(ctx, e, "/v1/cluster/leave", nil, &out)
				if err != nil {
					return err
				}
				if e.json {
					return writeCompactJSON(e, raw)
				}
				next := "stop its process now (it does not stop by itself)"
				if out.ShuttingDown {
					next = "it is shutting down"
				}
				_, err = fmt.Fprintf(e.stdout, "%s left the cluster; %s\n", sanitize(out.Left), next)
				return err
			}
		},
	}
}

func clusterTransferCommand() *command {
	return &command{
		name: "transfer-leader", synopsis: "[NODE]", summary: "hand leadership to a voter (default: the most up-to-date one)",
		noProfile: true,
		help: `Hands the cluster's leadership to the voter NODE (a Raft node id, as
'mimictl cluster status' lists them), or without NODE to the most
up-to-date other voter: POST /v1/cluster/transfer-leader. Useful before
stopping the leader's machine; a graceful stop of mimi-hub does it too.`,
		setup: func(fs *flag.FlagSet) runFunc {
			o := &opsFlags{}
			o.define(fs)
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("cluster transfer-leader", args, 0, 1); err != nil {
					return err
				}
				var in any
				if len(args) == 1 {
					in = hub.OpsServerRequest{ID: args[0]}
				}
				var out hub.OpsLeaderAnswer
				raw, err := o.post(ctx, e, "/v1/cluster/transfer-leader", in, &out)
				if err != nil {
					return err
				}
				if e.json {
					return writeCompactJSON(e, raw)
				}
				if out.LeaderID == "" {
					_, err = fmt.Fprintln(e.stdout, "leadership transferred; no new leader has announced itself yet: see 'mimictl cluster status'")
					return err
				}
				_, err = fmt.Fprintf(e.stdout, "leader is now %s at %s\n", sanitize(out.LeaderID), sanitize(out.LeaderAddr))
				return err
			}
		},
	}
}

func clusterRemoveCommand() *command {
	return &command{
		name: "remove", synopsis: "NODE", summary: "remove a (dead) node from the Raft configuration now",
		noProfile: true,
		help: `Removes the node NODE (a Raft node id) from the Raft configuration at
once: POST /v1/cluster/remove. Use it to retire a dead node without
waiting for the leader to do so (mimi-hub -dead-node-remove-after). The
leader refuses if the remaining voters would have no live quorum, and
never removes itself (transfer leadership first). A node that is still
running should rather 'mimictl cluster leave'.`,
		setup: func(fs *flag.FlagSet) runFunc {
			o := &opsFlags{}
			o.define(fs)
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("cluster remove", args, 1, 1); err != nil {
					return err
				}
				var out hub.OpsRemoveAnswer
				raw, err := o.post(ctx, e, "/v1/cluster/remove", hub.OpsServerRequest{ID: args[0]}, &out)
				if err != nil {
					return err
				}
				if e.json {
					return writeCompactJSON(e, raw)
				}
				_, err = fmt.Fprintf(e.stdout, "removed %s from the Raft configuration\n", sanitize(out.Removed))
				return err
			}
		},
	}
}

func clusterSnapshotCommand() *command {
	return &command{
		name: "snapshot", synopsis: "-o FILE", summary: "save a backup of the provider's replicated state to a file",
		noProfile: true,
		help: `Saves a backup of the provider's whole replicated state: GET
/v1/cluster/snapshot. It holds every write acknowledged before the
command ran. The file is written under a temporary name and renamed into
place only once the node confirmed the backup complete, so -o never
names a partial backup; "-o -" writes to standard output. The backup
holds users' tokens (hashed) and rooms' public state: keep it private
(the file is created 0600).`,
		setup: func(fs *flag.FlagSet) runFunc {
			o := &opsFlags{}
			o.define(fs)
			out := fs.String("o", "", "`FILE` to write the backup to (required; - for standard output)")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("cluster snapshot", args, 0, 0); err != nil {
					return err
				}
				if *out == "" {
					return usagef("cluster snapshot", "cluster snapshot: -o FILE is required")
				}
				return e.snapshot(ctx, o, *out)
			}
		},
	}
}

// backupResult describes a saved backup (the -json output of snapshot).
type backupResult struct {
	File  string `json:"file"`
	Bytes int64  `json:"bytes"`
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
}

// snapshot runs the cluster snapshot command.
func (e *env) snapshot(ctx context.Context, o *opsFlags, file string) error {
	resp, target, err := o.request(ctx, e, http.MethodGet, "/v1/cluster/snapshot", nil, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	res := backupResult{File: file}
	if file == "-" {
		n, err := io.Copy(e.stdout, resp.Body)
		if err != nil {
			return fmt.Errorf("GET %s: %w", target, err)
		}
		res.Bytes = n
		return backupTrailers(resp, &res)
	}
	dir, base := filepath.Split(file)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+"-*.tmp")
	if err != nil {
		return fmt.Errorf("saving the backup: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	save := func() error {
		if err := tmp.Chmod(0o600); err != nil {
			return err
		}
		n, err := io.Copy(tmp, resp.Body)
		if err != nil {
			return fmt.Errorf("receiving it from %s: %w", target, err)
		}
		res.Bytes = n
		if err := backupTrailers(resp, &res); err != nil {
			return err
		}
		return tmp.Sync()
	}
	err = save()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err != nil {
		return fmt.Errorf("saving the backup to %s: %w", file, err)
	}
	if e.json {
		return e.emit(res)
	}
	_, err = fmt.Fprintf(e.stdout, "wrote %s: %d bytes, the state up to log index %d (term %d)\n", file, res.Bytes, res.Index, res.Term)
	return err
}

// backupTrailers reads the trailers that confirm a complete backup (they
// arrive only after the whole body was read).
func backupTrailers(resp *http.Response, res *backupResult) error {
	index, ierr := strconv.ParseUint(resp.Trailer.Get(hub.TrailerBackupIndex), 10, 64)
	term, terr := strconv.ParseUint(resp.Trailer.Get(hub.TrailerBackupTerm), 10, 64)
	if ierr != nil || terr != nil || resp.Trailer.Get(hub.TrailerBackupSize) == "" {
		return errors.New("the node did not confirm the backup complete (no backup trailers): it is incomplete; retry")
	}
	res.Index, res.Term = index, term
	return nil
}

func clusterRestoreCommand() *command {
	return &command{
		name: "restore", synopsis: "-i FILE [-yes]", summary: "replace the provider's whole replicated state with a backup's",
		noProfile: true,
		help: `Restores a backup made by 'mimictl cluster snapshot': POST
/v1/cluster/restore. It is for disaster recovery: the leader installs the
backup and every node takes it over, so every write since the backup is
lost, for every user and room of the provider. It asks for confirmation
(type yes) on standard input unless -yes is given.`,
		setup: func(fs *flag.FlagSet) runFunc {
			o := &opsFlags{}
			o.define(fs)
			in := fs.String("i", "", "backup `FILE` to restore (required)")
			yes := fs.Bool("yes", false, "do not ask for confirmation")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("cluster restore", args, 0, 0); err != nil {
					return err
				}
				if *in == "" {
					return usagef("cluster restore", "cluster restore: -i FILE is required")
				}
				return e.restore(ctx, o, *in, *yes)
			}
		},
	}
}

// restore runs the cluster restore command.
func (e *env) restore(ctx context.Context, o *opsFlags, file string, yes bool) error {
	fi, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if fi.Size() > cluster.MaxBackupSize {
		return fmt.Errorf("backup %s is %d bytes; a node accepts at most %d", file, fi.Size(), cluster.MaxBackupSize)
	}
	if !yes {
		if err := confirmRestore(os.Stdin, e.stderr, file); err != nil {
			return err
		}
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	resp, target, err := o.request(ctx, e, http.MethodPost, "/v1/cluster/restore", nil, f, "application/octet-stream")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxOpsAnswer))
	if err != nil {
		return fmt.Errorf("POST %s: reading the answer: %w", target, err)
	}
	if e.json {
		return writeCompactJSON(e, raw)
	}
	_, err = fmt.Fprintf(e.stdout, "restored %s (%d bytes): every node now holds the backup's state\n", file, fi.Size())
	return err
}

// confirmRestore asks before a restore: the answer on in must be "yes".
// No answer at all (in is empty or closed, as for a script) refuses
// with a hint at -yes, which is how scripts confirm.
func confirmRestore(in io.Reader, prompt io.Writer, file string) error {
	fmt.Fprintf(prompt, "Restoring %s replaces the provider's whole replicated state on every node:\nevery write since the backup was made is lost. Type yes to restore: ", file)
	line, err := bufio.NewReader(in).ReadString('\n')
	switch {
	case errors.Is(err, io.EOF) && line == "":
		fmt.Fprintln(prompt)
		return usagef("cluster restore", "cluster restore: no confirmation on standard input; confirm with -yes")
	case err != nil && !errors.Is(err, io.EOF):
		return fmt.Errorf("reading the confirmation: %w", err)
	case strings.TrimSpace(line) != "yes":
		return errors.New("restore cancelled: nothing changed")
	}
	return nil
}
