package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// rpcRestore carries a backup to the leader.
const rpcRestore = "/cluster/v1/restore"

// MaxBackupSize bounds a backup Restore accepts.
const MaxBackupSize = 1 << 30

// ServerStatus is one node in a ClusterStatus.
type ServerStatus struct {
	ID         string `json:"id"`
	RaftAddr   string `json:"raft_addr"`
	GossipAddr string `json:"gossip_addr,omitempty"`
	// Suffrage is "voter", "nonvoter", or "none" for a node gossip knows
	// that is not (yet) in the Raft configuration.
	Suffrage string       `json:"suffrage"`
	Gossip   MemberStatus `json:"gossip,omitempty"`
	// LogLevel is the command set the node's release applies, as it
	// advertises it (fsm.LogLevel; 0 for a release before levels): a
	// rolling upgrade is done when every server shows this release's.
	LogLevel int  `json:"log_level"`
	Leader   bool `json:"leader"`
	// Info is the node's own report, nil if it did not answer (Error
	// says why).
	Info  *NodeInfo `json:"info,omitempty"`
	Error string    `json:"error,omitempty"`
}

// ClusterStatus is the cluster as one node sees it.
type ClusterStatus struct {
	// ReportedBy is the node that assembled this status.
	ReportedBy string         `json:"reported_by"`
	LeaderID   string         `json:"leader_id"`
	LeaderAddr string         `json:"leader_addr"`
	Term       uint64         `json:"term"`
	Servers    []ServerStatus `json:"servers"`
}

// Status assembles the cluster's status: the Raft configuration, gossip's
// view, and each node's own report (asked over the internal channel, each
// bounded by two seconds).
func (n *Node) Status(ctx context.Context) (ClusterStatus, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return ClusterStatus{}, n.translate("status", err)
	}
	leaderID, leaderAddr := n.Leader()
	st := ClusterStatus{ReportedBy: n.cfg.NodeID, LeaderID: leaderID, LeaderAddr: leaderAddr, Term: n.raft.CurrentTerm()}
	index := map[string]int{}
	for _, s := range f.Configuration().Servers {
		suffrage := "voter"
		if s.Suffrage != raft.Voter {
			suffrage = "nonvoter"
		}
		index[string(s.ID)] = len(st.Servers)
		st.Servers = append(st.Servers, ServerStatus{ID: string(s.ID), RaftAddr: string(s.Address), Suffrage: suffrage, Leader: string(s.ID) == leaderID})
	}
	if n.gossip != nil {
		for _, m := range n.gossip.snapshot() {
			i, ok := index[m.ID]
			if !ok {
				i = len(st.Servers)
				index[m.ID] = i
				st.Servers = append(st.Servers, ServerStatus{ID: m.ID, RaftAddr: m.Meta.RaftAddr, Suffrage: "none"})
			}
			st.Servers[i].GossipAddr, st.Servers[i].Gossip, st.Servers[i].LogLevel = m.GossipAddr, m.Status, m.Meta.LogLevel
		}
	}
	var wg sync.WaitGroup
	for i := range st.Servers {
		s := &st.Servers[i]
		if s.ID == n.cfg.NodeID {
			info := n.Info()
			s.Info = &info
			continue
		}
		if n.rpc == nil || s.RaftAddr == "" || s.Gossip == StatusLeft {
			continue // a node that left is gone for good: nobody to ask
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			var info NodeInfo
			if err := n.rpc.call(cctx, s.RaftAddr, rpcNodeInfo, nil, &info); err != nil {
				s.Error = err.Error()
				return
			}
			s.Info = &info
		}()
	}
	wg.Wait()
	return st, nil
}

// TransferLeadership hands leadership to the voter named id, or to the
// most up-to-date voter if id is empty. Any node may be asked; it is
// forwarded to the leader.
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	ctx, cancel := n.withDefaultDeadline(ctx)
	defer cancel()
	return n.onLeader(ctx, "transfer leadership", false, func(ctx context.Context, leader string, local bool) error {
		if local {
			return n.transferLocal(ctx, id)
		}
		return n.rpc.call(ctx, leader, rpcTransfer, serverRequest{ID: id}, nil)
	})
}

func (n *Node) transferLocal(ctx context.Context, id string) error {
	if n.raft.State() != raft.Leader {
		lid, addr := n.Leader()
		return &NotLeaderError{LeaderID: lid, LeaderAddr: addr}
	}
	if id == n.cfg.NodeID {
		return nil
	}
	_, err := n.await(ctx, "transfer leadership", func() (any, error) {
		if id == "" {
			return nil, n.raft.LeadershipTransfer().Error()
		}
		s, ok := n.server(raft.ServerID(id))
		if !ok || s.Suffrage != raft.Voter {
			return nil, fmt.Errorf("%q is not a voter of this cluster", id)
		}
		return nil, n.raft.LeadershipTransferToServer(s.ID, s.Address).Error()
	})
	return err
}

// server looks a server up in the latest configuration.
func (n *Node) server(id raft.ServerID) (raft.Server, bool) {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return raft.Server{}, false
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == id {
			return s, true
		}
	}
	return raft.Server{}, false
}

// RemoveServer removes a server from the Raft configuration (an
// operator's decision, such as retiring a dead node at once). It refuses
// if the remaining voters would have no live quorum, or to remove the
// leader (transfer leadership first).
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	ctx, cancel := n.withDefaultDeadline(ctx)
	defer cancel()
	return n.onLeader(ctx, "remove server", true, func(ctx context.Context, leader string, local bool) error {
		if local {
			return n.removeLocal(ctx, id, true)
		}
		return n.rpc.call(ctx, leader, rpcRemove, serverRequest{ID: id}, nil)
	})
}

func (n *Node) removeLocal(ctx context.Context, id string, _ bool) error {
	if !n.isReadyLeader() {
		lid, addr := n.Leader()
		return &NotLeaderError{LeaderID: lid, LeaderAddr: addr}
	}
	if id == n.cfg.NodeID {
		return errors.New("cluster: the leader cannot remove itself; transfer leadership first")
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return n.translate("remove server", err)
	}
	servers := f.Configuration().Servers
	s, ok := n.server(raft.ServerID(id))
	if !ok {
		return nil // already gone: removal is idempotent
	}
	members := map[string]member{}
	if n.gossip != nil {
		for _, m := range n.gossip.snapshot() {
			members[m.ID] = m
		}
	}
	if !n.canRemove(servers, members, s, false) {
		return fmt.Errorf("cluster: removing %s would leave the other voters without a live quorum", id)
	}
	_, err := n.await(ctx, "remove server", func() (any, error) {
		return nil, n.raft.RemoveServer(s.ID, 0, 0).Error()
	})
	if err == nil {
		n.log.Info("removed a server on request", "id", id)
	}
	return err
}

// Leave takes this node out of the cluster for good: it hands over
// leadership if it leads, has the leader remove it from the Raft
// configuration, and announces its departure through gossip. Shut the node
// down afterwards. The last voter cannot leave.
func (n *Node) Leave(ctx context.Context) error {
	ctx, cancel := n.withDefaultDeadline(ctx)
	defer cancel()
	if n.raft.State() == raft.Leader {
		if n.otherVoters() == 0 {
			return errors.New("cluster: leave: this node is the only voter")
		}
		if err := n.transferLocal(ctx, ""); err != nil {
			return fmt.Errorf("cluster: leave: hand over leadership: %w", err)
		}
	}
	// Announce the departure first: once gossip says "left", the leader's
	// reconciliation removes this node and never adds it back, whereas a
	// node still alive in gossip would be re-added as a non-voter.
	if n.gossip != nil {
		if err := n.gossip.leave(5 * time.Second); err != nil {
			n.log.Warn("gossip leave", "err", err)
		}
	}
	self := n.cfg.NodeID
	err := n.onLeader(ctx, "leave", true, func(ctx context.Context, leader string, local bool) error {
		if local {
			return &NotLeaderError{} // still leading: wait for the transfer
		}
		return n.rpc.call(ctx, leader, rpcRemove, serverRequest{ID: self}, nil)
	})
	if err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	n.log.Info("left the cluster")
	return nil
}

// Server is a member of the Raft configuration.
type Server struct {
	ID       string
	RaftAddr string
	Voter    bool
}

// Servers returns the latest Raft configuration, from this node's log
// (cheap: no network).
func (n *Node) Servers() ([]Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, n.translate("servers", err)
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// backupMagic opens a backup file; a JSON header follows (its length as 4
// bytes), then the snapshot.
const backupMagic = "mimi-hub-backup/1\n"

// backupHeader describes the snapshot in a backup.
type backupHeader struct {
	Index   uint64    `json:"index"`
	Term    uint64    `json:"term"`
	Size    int64     `json:"size"`
	Version int       `json:"version"`
	Node    string    `json:"node"`
	Created time.Time `json:"created"`
}

// Backup writes a backup of the replicated state to w: a snapshot taken
// after a linearizable barrier, so it holds every write acknowledged before
// the call. Works on any node.
func (n *Node) Backup(ctx context.Context, w io.Writer) (BackupInfo, error) {
	if err := n.Barrier(ctx); err != nil {
		return BackupInfo{}, err
	}
	var meta *raft.SnapshotMeta
	var rc io.ReadCloser
	_, err := n.await(ctx, "backup", func() (any, error) {
		f := n.raft.Snapshot()
		err := f.Error()
		if errors.Is(err, raft.ErrNothingNewToSnapshot) {
			list, lerr := n.st.snaps.List()
			if lerr != nil || len(list) == 0 {
				return nil, fmt.Errorf("no snapshot to back up: %w", errors.Join(err, lerr))
			}
			meta, rc, err = n.st.snaps.Open(list[0].ID)
			return nil, err
		}
		if err != nil {
			return nil, err
		}
		meta, rc, err = f.Open()
		return nil, err
	})
	if err != nil {
		return BackupInfo{}, err
	}
	defer rc.Close()
	hdr, _ := json.Marshal(backupHeader{Index: meta.Index, Term: meta.Term, Size: meta.Size, Version: int(meta.Version), Node: n.cfg.NodeID, Created: time.Now().UTC()})
	buf := append([]byte(backupMagic), binary.BigEndian.AppendUint32(nil, uint32(len(hdr)))...)
	buf = append(buf, hdr...)
	if _, err := w.Write(buf); err != nil {
		return BackupInfo{}, fmt.Errorf("cluster: backup: %w", err)
	}
	written, err := io.Copy(w, rc)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("cluster: backup: %w", err)
	}
	if written != meta.Size {
		return BackupInfo{}, fmt.Errorf("cluster: backup: snapshot is %d bytes, expected %d", written, meta.Size)
	}
	return BackupInfo{Index: meta.Index, Term: meta.Term, Size: meta.Size}, nil
}

// BackupInfo describes a backup.
type BackupInfo struct {
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	Size  int64  `json:"size"`
}

// ErrInvalidBackup: Restore was given bytes that are not a complete
// mimi-hub backup.
var ErrInvalidBackup = errors.New("not a valid mimi-hub backup")

// parseBackup checks a backup and returns its header and snapshot bytes.
func parseBackup(b []byte) (backupHeader, []byte, error) {
	h, data, err := parseBackupParts(b)
	if err != nil {
		return h, nil, fmt.Errorf("%w: %w", ErrInvalidBackup, err)
	}
	return h, data, nil
}

func parseBackupParts(b []byte) (backupHeader, []byte, error) {
	var h backupHeader
	if !bytes.HasPrefix(b, []byte(backupMagic)) || len(b) < len(backupMagic)+4 {
		return h, nil, errors.New("no backup header")
	}
	b = b[len(backupMagic):]
	hl := int(binary.BigEndian.Uint32(b))
	b = b[4:]
	if hl > len(b) || hl > 4096 {
		return h, nil, errors.New("backup header is truncated")
	}
	if err := json.Unmarshal(b[:hl], &h); err != nil {
		return h, nil, fmt.Errorf("backup header: %w", err)
	}
	data := b[hl:]
	if int64(len(data)) != h.Size {
		return h, nil, fmt.Errorf("backup holds %d snapshot bytes, its header says %d", len(data), h.Size)
	}
	if _, err := readSnapshotHeader(bytes.NewReader(data)); err != nil {
		return h, nil, err
	}
	return h, data, nil
}

// Restore replaces the replicated state with a backup's, cluster-wide (the
// leader installs it and replicates it as a snapshot). It is for disaster
// recovery: every write since the backup is lost. Any node may be asked.
func (n *Node) Restore(ctx context.Context, backup []byte) error {
	if _, _, err := parseBackup(backup); err != nil {
		return fmt.Errorf("cluster: restore: %w", err)
	}
	ctx, cancel := n.withDefaultDeadline(ctx)
	defer cancel()
	return n.onLeader(ctx, "restore", false, func(ctx context.Context, leader string, local bool) error {
		if local {
			return n.restoreLocal(ctx, backup)
		}
		return n.rpc.call(ctx, leader, rpcRestore, backup, nil)
	})
}

func (n *Node) restoreLocal(ctx context.Context, backup []byte) error {
	h, data, err := parseBackup(backup)
	if err != nil {
		return fmt.Errorf("%w: %v", errInvalidRPC, err)
	}
	if !n.isReadyLeader() {
		lid, addr := n.Leader()
		return &NotLeaderError{LeaderID: lid, LeaderAddr: addr}
	}
	term := n.raft.CurrentTerm()
	n.readyTerm.Store(0) // reads wait until the restored state is applied
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersion(h.Version), Index: h.Index, Term: h.Term, Size: h.Size}
	timeout, err := enqueueTimeout("restore", ctx)
	if err != nil {
		return err
	}
	_, err = n.await(ctx, "restore", func() (any, error) {
		return nil, n.raft.Restore(meta, bytes.NewReader(data), timeout)
	})
	if err != nil {
		return err
	}
	if err := n.markReady(); err != nil {
		return fmt.Errorf("cluster: restore: applied, but the follow-up entry failed: %w", err)
	}
	if n.raft.State() == raft.Leader && n.raft.CurrentTerm() == term {
		n.readyTerm.Store(term)
	}
	n.log.Info("restored a backup", "backup_index", h.Index, "from_node", h.Node, "created", h.Created)
	return nil
}

func (n *Node) serveRestore(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBackupSize+1))
	if err != nil || len(b) > MaxBackupSize {
		encodeRPCError(w, fmt.Errorf("%w: unreadable or oversized backup", errInvalidRPC))
		return
	}
	ctx, cancel := n.withDefaultDeadline(r.Context())
	defer cancel()
	if err := n.restoreLocal(ctx, b); err != nil {
		encodeRPCError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte("{}"))
}
