package room

import (
	"fmt"
	"slices"
	"strings"
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

// bigAdd is an Add of a new client of c's user whose KeyPackage carries an
// extension of size bytes.
func (w *world) bigAdd(c *client, device string, size int) *mls.Proposal {
	return w.bigAddIn(c, device, mls.Extensions{{Type: 0xF0AA, Data: make([]byte, size)}}, nil)
}

// bigAddIn is an Add of a new client of c's user whose KeyPackage carries
// ext, and its leaf node leafExt.
func (w *world) bigAddIn(c *client, device string, ext, leafExt mls.Extensions) *mls.Proposal {
	w.t.Helper()
	user, _, _ := strings.Cut(c.name, "/")
	n := w.newClient(c.domain, user, device)
	caps := roomCaps
	caps.Extensions = append(slices.Clone(caps.Extensions), 0xF0AA)
	kp, err := mls.NewKeyPackage(w.suite, n.signer, mls.KeyPackageOptions{
		Credential: mls.BasicCredential([]byte(n.uri)), Capabilities: caps, Lifetime: w.lifetime(),
		Extensions: ext, LeafExtensions: leafExt,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return mls.AddProposal(kp.KeyPackage)
}

// TestHostilePeerLeafSize: a leaf node (an Update, an Add's KeyPackage, a
// path, an external joiner) is at most maxLeafNodeBytes: a hostile peer's
// member could otherwise put a 16 MiB leaf into the tree that every
// GroupInfo, Welcome tree and snapshot of the room then carries.
func TestHostilePeerLeafSize(t *testing.T) {
	w := newSeedWorld(t)
	before := w.state()
	w.refused(before, w.propose(w.doug1, w.bigUpdate(w.doug1, maxLeafNodeBytes)), proto.UpdateInvalidProposal, "Doug's oversized Update")
	big := mls.Extensions{{Type: 0xF0AA, Data: make([]byte, maxLeafNodeBytes)}}
	w.refused(before, w.propose(w.doug1, w.bigAddIn(w.doug1, "big1", nil, big)), proto.UpdateInvalidProposal, "Doug adds a client of his with an oversized leaf")
	w.refused(before, w.commit(w.doug1, mls.CommitOptions{Proposals: []*mls.Proposal{w.bigAddIn(w.doug1, "big2", nil, big)}}), proto.UpdateInvalidProposal, "the same Add by value")
	w.must(w.propose(w.doug1, w.bigUpdate(w.doug1, maxLeafNodeBytes/2)), "Doug's Update within the bound")
}

// TestHostilePeerPendingBytes: Doug's provider (d.example, a hostile
// peer) sends proposals of Doug's own that are each as large as a request
// may be (Adds of his own new clients whose KeyPackages carry megabytes). The room keeps at most maxOptionalPendingBytes of proposals
// nobody committed in an epoch: beyond it Doug is refused (notAllowed)
// and nothing changes, where 256 such proposals used to keep 4 GiB in
// every node's state until the next commit. Departures still queue.
func TestHostilePeerPendingBytes(t *testing.T) {
	w := newSeedWorld(t)
	size := maxOptionalPendingBytes / 4
	for i := range 3 {
		w.must(w.propose(w.doug1, w.bigAdd(w.doug1, fmt.Sprint("d", i), size)), "Doug adds a client of his with a big KeyPackage")
	}
	before := w.state()
	w.refused(before, w.propose(w.doug1, w.bigAdd(w.doug1, "d3", size)), proto.UpdateNotAllowed, "Doug's Add past the epoch's bytes")
	w.must(w.propose(w.cathy1, mls.SelfRemoveProposal()), "Cathy1 leaves")
	// Alice commits the queue alone (Doug kept no keys for his Updates).
	w.must(w.commit(w.alice1, mls.CommitOptions{ForcePath: true, References: QueuedReferences(w.alice1.group, 0)}), "Alice commits")
	w.must(w.propose(w.doug1, w.bigAdd(w.doug1, "d4", size)), "Doug's big Add in the next epoch")
}
