package room

import (
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// bigUpdate is an Update of c's own leaf carrying an extension of size
// bytes (a type its capabilities list, so the leaf is valid).
func (w *world) bigUpdate(c *client, size int) *mls.Proposal {
	w.t.Helper()
	leaf, _ := c.group.Tree().Leaf(c.group.MyLeaf())
	next := *leaf
	_, pub, err := w.suite.GenerateHPKEKey()
	if err != nil {
		w.t.Fatal(err)
	}
	const padding mls.ExtensionType = 0xF0AA
	next.EncryptionKey, next.Source, next.Lifetime, next.ParentHash = pub, mls.SourceUpdate, mls.Lifetime{}, nil
	next.Capabilities.Extensions = append(slices.Clone(next.Capabilities.Extensions), padding)
	next.Extensions = mls.Extensions{{Type: padding, Data: make([]byte, size)}}
	if err := next.Sign(c.signer, c.group.GroupID(), c.group.MyLeaf()); err != nil {
		w.t.Fatal(err)
	}
	return mls.UpdateProposal(&next)
}

// TestHostilePeerPendingBytes: Doug's provider (d.example, a hostile
// peer) sends proposals of Doug's own that are each as large as a request
// may be. The room keeps at most maxOptionalPendingBytes of proposals
// nobody committed in an epoch: beyond it Doug is refused (notAllowed)
// and nothing changes, where 256 such proposals used to keep 4 GiB in
// every node's state until the next commit. Departures still queue.
func TestHostilePeerPendingBytes(t *testing.T) {
	w := newSeedWorld(t)
	size := maxOptionalPendingBytes / 4
	for range 3 {
		w.must(w.propose(w.doug1, w.bigUpdate(w.doug1, size)), "Doug's big Update")
	}
	before := w.state()
	w.refused(before, w.propose(w.doug1, w.bigUpdate(w.doug1, size)), proto.UpdateNotAllowed, "Doug's Update past the epoch's bytes")
	w.must(w.propose(w.cathy1, mls.SelfRemoveProposal()), "Cathy1 leaves")
	// Alice commits the queue alone (Doug kept no keys for his Updates).
	w.must(w.commit(w.alice1, mls.CommitOptions{ForcePath: true, References: QueuedReferences(w.alice1.group, 0)}), "Alice commits")
	w.must(w.propose(w.doug1, w.bigUpdate(w.doug1, size)), "Doug's big Update in the next epoch")
}
