package mls

import (
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// followerStateVersion is the format of Follower.EncodeTLS. Version 2
// added the retained tree deltas (treehistory.go) at the end; version 1
// still restores, with none.
const followerStateVersion = 2

// EncodeTLS writes the follower's whole state (for snapshots): the
// GroupContext, the interim transcript hash, the tree, the current GroupInfo,
// the pending proposal messages and the closed flag. The encoding is
// deterministic: two followers that processed the same messages encode
// identically.
func (f *Follower) EncodeTLS(w *wire.Writer) {
	w.Uint8(followerStateVersion)
	w.Encode(&f.ctx)
	w.Opaque(f.interim)
	w.Vector(func(w *wire.Writer) { f.tree.EncodeTLS(w) })
	w.Opaque(f.info)
	w.Vector(func(w *wire.Writer) {
		for _, p := range f.pending {
			w.Opaque(p.message)
		}
	})
	w.Bool(f.closed)
	f.encodeHistory(w)
}

// RestoreFollower rebuilds a Follower from EncodeTLS output. The state is
// trusted (it comes from this process's own snapshots), so the tree is not
// revalidated; its structure and the pending messages are still decoded
// strictly.
func RestoreFollower(state []byte, cfg Config) (*Follower, error) {
	r := wire.NewReader(state)
	var version uint8
	r.Uint8(&version)
	if r.OK() && version != followerStateVersion && version != 1 {
		return nil, fmt.Errorf("restore follower: state format %d, want %d (or 1)", version, followerStateVersion)
	}
	f := &Follower{groupState: groupState{cfg: cfg}}
	r.Decode(&f.ctx)
	r.Opaque(&f.interim)
	var tree, info []byte
	r.Opaque(&tree)
	r.Opaque(&info)
	var pending [][]byte
	r.VectorEach(func(r *wire.Reader) {
		var m []byte
		r.Opaque(&m)
		pending = append(pending, m)
	})
	r.Bool(&f.closed)
	if version >= 2 {
		f.decodeHistory(r)
		if r.OK() && len(f.history) > 0 && f.history[len(f.history)-1].epoch+1 != f.ctx.Epoch {
			r.Failf("the last tree delta is of epoch %d, the group is at epoch %d", f.history[len(f.history)-1].epoch, f.ctx.Epoch)
		}
	}
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("restore follower: %w", err)
	}
	s, err := f.ctx.CipherSuite.Suite()
	if err != nil {
		return nil, fmt.Errorf("restore follower: %w", err)
	}
	f.suite = s
	f.setContext(&f.ctx)
	f.interim = append([]byte(nil), f.interim...)
	f.info = append([]byte(nil), info...)
	if f.tree, err = DecodeTree(s, tree, wire.DefaultMaxVector); err != nil {
		return nil, fmt.Errorf("restore follower: %w", err)
	}
	if f.pending, err = restorePending(s, pending); err != nil {
		return nil, fmt.Errorf("restore follower: %w", err)
	}
	return f, nil
}
