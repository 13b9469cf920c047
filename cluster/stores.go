package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// File names inside Config.DataDir.
const (
	logsFile   = "logs.db"
	stableFile = "stable.db"
	// The file snapshot store creates DataDir/snapshots itself.
)

// stores are a node's durable Raft state.
type stores struct {
	logDB    *raftboltdb.BoltStore // the log
	stableDB *raftboltdb.BoltStore // current term, vote
	logs     raft.LogStore         // logDB behind an in-memory cache of recent entries
	stable   raft.StableStore
	snaps    *raft.FileSnapshotStore
}

// openStores opens (creating if missing) the stores in cfg.DataDir.
func openStores(cfg Config, hl *hcLogger) (_ *stores, err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	st := &stores{}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	if st.logDB, err = openBolt(filepath.Join(cfg.DataDir, logsFile), cfg.StoreOpenTimeout); err != nil {
		return nil, err
	}
	if st.stableDB, err = openBolt(filepath.Join(cfg.DataDir, stableFile), cfg.StoreOpenTimeout); err != nil {
		return nil, err
	}
	st.stable = st.stableDB
	if st.logs, err = raft.NewLogCache(logCacheSize, st.logDB); err != nil {
		return nil, fmt.Errorf("log cache: %w", err)
	}
	if n, err := reapTempSnapshots(cfg.DataDir); err != nil {
		return nil, err
	} else if n > 0 {
		cfg.Logger.Info("removed unfinished snapshots left by an earlier run", "count", n)
	}
	if st.snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, cfg.SnapshotRetain, hl.Named("snapshot")); err != nil {
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	return st, nil
}

func openBolt(path string, lockTimeout time.Duration) (*raftboltdb.BoltStore, error) {
	opts := *bolt.DefaultOptions
	opts.Timeout = lockTimeout
	s, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &opts})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open %s: file is locked (is another node using this data dir?): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s, nil
}

// close closes the BoltDB files. Call only after Raft has stopped.
func (st *stores) close() error {
	var errs []error
	if st.logDB != nil {
		if err := st.logDB.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", logsFile, err))
		}
		st.logDB = nil
	}
	if st.stableDB != nil {
		if err := st.stableDB.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", stableFile, err))
		}
		st.stableDB = nil
	}
	return errors.Join(errs...)
}

// snapshotsDir is the folder the file snapshot store keeps in DataDir.
const snapshotsDir = "snapshots"

// reapTempSnapshots removes the snapshots a crash (kill -9, power loss)
// left unfinished: the file snapshot store writes each into "<id>.tmp"
// and renames it when complete, and never looks at ".tmp" folders again.
// It runs before Raft opens the store, so no snapshot is being written.
func reapTempSnapshots(dataDir string) (int, error) {
	dir := filepath.Join(dataDir, snapshotsDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("list snapshots: %w", err)
	}
	n := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return n, fmt.Errorf("remove an unfinished snapshot: %w", err)
		}
		n++
	}
	return n, nil
}
