package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
)

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	// EventMessage is an application message from another member.
	EventMessage EventKind = iota + 1
	// EventProposal is a proposal now pending in the room.
	EventProposal
	// EventCommit is a commit another client made; the room moved to Epoch.
	EventCommit
	// EventJoined: this member joined the room from a Welcome.
	EventJoined
	// EventRemoved: a commit removed this member from the room; the member
	// forgot the room.
	EventRemoved
	// EventConsent is a consent request or grant for this member's user.
	EventConsent
	// EventGap: stream items were dropped before this member read them;
	// rooms may have to be rejoined.
	EventGap
	// EventResolved: a write whose outcome was unknown got its answer; Err
	// is nil when it was accepted (and what follows acceptance, such as an
	// external joiner's subscription, succeeded).
	EventResolved
	// EventError: a stream item could not be processed (Err says why).
	EventError
)

// String names the kind.
func (k EventKind) String() string {
	switch k {
	case EventMessage:
		return "message"
	case EventProposal:
		return "proposal"
	case EventCommit:
		return "commit"
	case EventJoined:
		return "joined"
	case EventRemoved:
		return "removed"
	case EventConsent:
		return "consent"
	case EventGap:
		return "gap"
	case EventResolved:
		return "resolved"
	case EventError:
		return "error"
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// Event is something Sync found in the stream.
type Event struct {
	Kind EventKind
	// Seq is the stream item's position (0 for events not from an item).
	Seq uint64
	// Room is the room the event is about (empty for consent about any
	// room and gaps).
	Room proto.URI
	// At is the hub's acceptance time, when known.
	At time.Time
	// Sender is the sending client (messages, proposals and commits by
	// members; empty for the hub's own proposals). For application
	// messages it is checked against the message's authenticated_data.
	Sender proto.URI
	// Epoch is the epoch a message or proposal was sent in, or the epoch a
	// commit or join moved the member to. An application message may be of
	// an epoch before the room's current one: it was accepted by the hub
	// before a commit this member processed first (typically its own), and
	// its group kept that epoch's keys (MemberConfig.PastEpochs; an epoch
	// its own commit ended is held until the stream passes that commit).
	Epoch uint64
	// Text is an application message's content.
	Text []byte
	// Proposal is a proposal event's proposal.
	Proposal *mls.ProposalResult
	// Commit describes a commit; Patches are the ParticipantListPatches it
	// covers, Added and Removed the clients it added and removed.
	Commit  *mls.CommitResult
	Patches []proto.ParticipantListPatch
	Added   []proto.URI
	Removed []proto.URI
	// Consent is a consent event's entry.
	Consent *proto.ConsentEntry
	// Op names the write an EventResolved is about.
	Op string
	// Err is why an EventError item failed, or the refusal of an
	// EventResolved write.
	Err error

	// Message, SenderLeaf, ContentKey and ContentNonce are what an abuse
	// report about an application message discloses (Member.ReportAbuse).
	Message                  *mls.Message
	SenderLeaf               mls.LeafIndex
	ContentKey, ContentNonce []byte
}

// Sync reads the stream from the member's cursor without waiting, and
// processes it (see SyncWait).
func (m *Member) Sync(ctx context.Context) ([]Event, error) { return m.SyncWait(ctx, 0) }

// SyncWait settles writes whose outcome was unknown, then reads the stream
// from the member's cursor (waiting up to wait for the first item) until it
// is drained, and processes every item: it applies commits and proposals,
// decrypts application messages (checking their sender against their
// authenticated_data), including those of the past epochs its groups keep,
// joins rooms from Welcomes addressed to its
// KeyPackages, skips the echoes of its own messages, and decodes consent
// items. It returns the events in stream order; on error, the events
// processed before it.
//
// Sync acknowledges the items a saved state covers: up to the cursor of the
// last Save or LoadMember, so that items a crash would lose are read again;
// a Member that is never saved acknowledges everything it processed.
func (m *Member) SyncWait(ctx context.Context, wait time.Duration) ([]Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	events, err := m.resolveAll(ctx)
	if err != nil {
		return events, err
	}
	held := m.heldInLocalRooms()
	for {
		page, err := m.api.Stream(ctx, StreamOptions{After: m.cursor, Wait: wait, Limit: m.cfg.SyncLimit})
		if err != nil {
			return events, err
		}
		wait = 0
		if page.Gap {
			m.log.WarnContext(ctx, "stream items were dropped before being read", "after", m.cursor)
			events = append(events, Event{Kind: EventGap})
		}
		for i := range page.Items {
			it := &page.Items[i]
			events = append(events, m.process(ctx, it)...)
			m.cursor = it.Seq
		}
		if len(page.Items) == 0 || m.cursor >= page.Last {
			break
		}
	}
	m.releaseDrained(held)
	m.ack(ctx)
	return events, nil
}

// heldInLocalRooms returns, for the group of each room this member's own
// provider hosts, the latest epoch held when the call is made (HoldEpoch: one of
// this member's commits ended it, and messages of it may still be on
// their way).
func (m *Member) heldInLocalRooms() map[*mls.Group]uint64 {
	out := map[*mls.Group]uint64{}
	for r, mr := range m.rooms {
		if !m.hostsHere(r) {
			continue
		}
		if h := mr.group.HeldEpochs(); len(h) > 0 {
			out[mr.group] = h[len(h)-1]
		}
	}
	return out
}

// releaseDrained releases the epochs heldInLocalRooms listed once the
// stream is read to its end. Such an epoch was held when the read began,
// so the commit that ended it had been accepted; the provider, which is
// the room's hub, numbered every message of that epoch before the commit,
// and each read carries the commit's index (Mimi-Min-Index), so the
// stream's end as read lies past them all: none can still arrive. This
// releases them even in a room where nobody else speaks (a later message
// would release them too, passed). Rooms of other hubs keep theirs until
// then: their messages reach this provider's stream in the order that
// hub's fanout arrives. A group the drain replaced (the member left, or
// joined again) is not touched.
func (m *Member) releaseDrained(held map[*mls.Group]uint64) {
	for _, mr := range m.rooms {
		if e, ok := held[mr.group]; ok {
			mr.group.ReleaseEpochs(e + 1)
		}
	}
}

// Ack acknowledges every stream item the member processed, whether or not
// a saved state covers it.
func (m *Member) Ack(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cursor <= m.acked {
		return nil
	}
	if err := m.api.Ack(ctx, m.cursor); err != nil {
		return err
	}
	m.acked = m.cursor
	return nil
}

// ack acknowledges what a saved state covers; failures wait for the next
// Sync.
func (m *Member) ack(ctx context.Context) {
	upTo := m.cursor
	if m.saved {
		upTo = m.savedCursor
	}
	if upTo <= m.acked {
		return
	}
	if err := m.api.Ack(ctx, upTo); err != nil {
		m.log.WarnContext(ctx, "acknowledging the stream failed; the next Sync retries", "seq", upTo, "err", err)
		return
	}
	m.acked = upTo
}

// process handles one stream item.
func (m *Member) process(ctx context.Context, it *StreamItem) []Event {
	base := Event{Seq: it.Seq, Room: it.Room, At: it.At}
	fail := func(err error) []Event {
		m.log.WarnContext(ctx, "stream item not processed", "seq", it.Seq, "kind", string(it.Kind), "room", string(it.Room), "err", err)
		e := base
		e.Kind, e.Err = EventError, err
		return []Event{e}
	}
	switch it.Kind {
	case ItemConsent:
		entry, err := it.ConsentEntry()
		if err != nil {
			return fail(err)
		}
		e := base
		e.Kind, e.Consent = EventConsent, entry
		return []Event{e}
	case ItemWelcome:
		msg, err := it.MLSMessage()
		if err != nil {
			return fail(err)
		}
		ev, err := m.joinWelcome(ctx, it, msg)
		if err != nil {
			return fail(err)
		}
		if ev == nil {
			return nil
		}
		return []Event{*ev}
	case ItemMessage:
		mr, ok := m.rooms[it.Room]
		if !ok {
			m.log.DebugContext(ctx, "message for a room this member is not in", "seq", it.Seq, "room", string(it.Room))
			return nil
		}
		d := digest(it.Data)
		if _, own := mr.sent[d]; own {
			delete(mr.sent, d) // a hub echoed this member's own message
			if msg, err := it.MLSMessage(); err == nil {
				passed(mr.group, msg)
			}
			return nil
		}
		msg, err := it.MLSMessage()
		if err != nil {
			return fail(err)
		}
		events, err := m.processMessage(ctx, it.Room, mr, msg, base)
		if err != nil {
			return fail(err)
		}
		return events
	}
	m.log.DebugContext(ctx, "skipping a stream item of an unknown kind", "seq", it.Seq, "kind", string(it.Kind))
	return nil
}

// passed releases the epochs the room's stream has passed by delivering
// msg, an echo of this member's own message (the delivery of anyone else's
// releases the epochs before it once processed, processMessage). The hub
// refuses a message of epoch e once it has accepted the commit ending e,
// and a stream delivers a room's messages in the hub's order, so a message
// sent in epoch e comes after every message of the epochs before e, and
// the commit ending e after every message of e.
func passed(g *mls.Group, msg *mls.Message) {
	var epoch uint64
	var ct mls.ContentType
	switch {
	case msg.Public != nil:
		epoch, ct = msg.Public.Content.Epoch, msg.Public.Content.ContentType
	case msg.Private != nil:
		epoch, ct = msg.Private.Epoch, msg.Private.ContentType
	default:
		return
	}
	if ct == mls.ContentCommit {
		epoch++
	}
	g.ReleaseEpochs(epoch)
}

// identity returns the client URI of the member at leaf l.
func identity(g *mls.Group, l mls.LeafIndex) proto.URI {
	leaf, ok := g.Tree().Leaf(l)
	if !ok {
		return ""
	}
	return proto.URI(leaf.Credential.Identity)
}

// processMessage applies a room message to the member's group.
func (m *Member) processMessage(ctx context.Context, r proto.URI, mr *memberRoom, msg *mls.Message, e Event) ([]Event, error) {
	epoch := mr.group.Epoch()
	// A commit that removes this member leaves no committer leaf in its
	// result (nothing after the removal is derived), so the committer is
	// named from the tree as it was before.
	var committer proto.URI
	if msg.Public != nil && msg.Public.Content.ContentType == mls.ContentCommit && msg.Public.Content.Sender.Type == mls.SenderMember {
		committer = identity(mr.group, mls.LeafIndex(msg.Public.Content.Sender.Index))
	}
	res, err := mr.group.Process(msg)
	if err != nil {
		return nil, fmt.Errorf("processing a message of %s at epoch %d: %w", r, epoch, err)
	}
	// Only a message the group authenticated moves the stream on: one
	// that merely claims a later epoch releases nothing.
	mr.group.ReleaseEpochs(res.Epoch)
	e.Epoch = res.Epoch
	switch res.ContentType {
	case mls.ContentApplication:
		// The sender as it was in the message's epoch: a late message's
		// leaf may have changed hands since.
		l := mls.LeafIndex(res.Sender.Index)
		if res.SenderLeaf != nil {
			e.Sender = proto.URI(res.SenderLeaf.Credential.Identity)
		}
		e.Kind, e.SenderLeaf, e.Text = EventMessage, l, res.ApplicationData
		e.Message, e.ContentKey, e.ContentNonce = msg, res.ContentKey, res.ContentNonce
		if !bytes.Equal(res.AuthenticatedData, room.SenderHint(e.Sender)) {
			return nil, fmt.Errorf("%w: a message in %s names %q but was sent by %s (leaf %d)", ErrSenderMismatch, r, res.AuthenticatedData, e.Sender, l)
		}
		return []Event{e}, nil
	case mls.ContentProposal:
		e.Kind, e.Proposal = EventProposal, res.Proposal
		if res.Proposal != nil && res.Proposal.SenderLeaf != nil {
			e.Sender = proto.URI(res.Proposal.SenderLeaf.Credential.Identity)
		}
		return []Event{e}, nil
	case mls.ContentCommit:
		mr.pruneSent()
		e.Kind, e.Commit = EventCommit, res.Commit
		if c := res.Commit; c != nil {
			e.Epoch = c.Epoch
			if c.CommitterLeaf != nil {
				e.Sender = proto.URI(c.CommitterLeaf.Credential.Identity)
			} else {
				e.Sender = committer
			}
			for _, cp := range c.Proposals {
				patch, ok, err := proto.PatchOf(cp.Proposal, m.cfg.MaxVector)
				if err != nil {
					return nil, err
				}
				if ok {
					e.Patches = append(e.Patches, *patch)
				}
			}
			for _, a := range c.Added {
				e.Added = append(e.Added, proto.URI(a.Node.Credential.Identity))
			}
			for _, x := range c.Removed {
				e.Removed = append(e.Removed, proto.URI(x.Node.Credential.Identity))
			}
		}
		events := []Event{e}
		if mr.group.Removed() {
			delete(m.rooms, r)
			gone := Event{Kind: EventRemoved, Seq: e.Seq, Room: r, At: e.At, Sender: e.Sender, Epoch: e.Epoch}
			events = append(events, gone)
			if err := m.api.Unsubscribe(ctx, r); err != nil {
				m.log.WarnContext(ctx, "unsubscribing from a room this member was removed from", "room", string(r), "err", err)
			}
		}
		return events, nil
	}
	return nil, fmt.Errorf("processing a message of %s: unknown content type %s", r, res.ContentType)
}

// joinWelcome joins a room from a Welcome addressed to one of the member's
// KeyPackages; a nil event means the Welcome needs no action.
func (m *Member) joinWelcome(ctx context.Context, it *StreamItem, msg *mls.Message) (*Event, error) {
	if _, ok := m.rooms[it.Room]; ok {
		m.log.DebugContext(ctx, "Welcome to a room this member is in", "room", string(it.Room))
		return nil, nil
	}
	w := msg.Welcome
	var bundle *mls.KeyPackageBundle
	var ref string
	var s mls.EncryptedGroupSecrets
	for _, sec := range w.Secrets {
		if b, ok := m.keyPackages[hex.EncodeToString(sec.NewMember)]; ok {
			bundle, ref, s = b, hex.EncodeToString(sec.NewMember), sec
			break
		}
	}
	if bundle == nil {
		return nil, errors.New("the Welcome names none of this member's KeyPackages")
	}
	g, err := mls.JoinFromWelcome(w, bundle, nil, m.groupOptions())
	if errors.Is(err, mls.ErrInvalidTree) {
		// The Welcome came without the ratchet tree (byReference): fetch
		// the tree of its epoch from the hub.
		tree, terr := m.api.WelcomeTree(ctx, it.Room, s.NewMember)
		if terr != nil {
			// A hub without tree fetches (one that implements only
			// the seed) has at least the current epoch's tree, which
			// is the Welcome's if nobody committed since.
			resp, cerr := m.api.ClaimGroupInfo(ctx, it.Room, m.signer.PublicKey())
			if cerr != nil || resp.Status != proto.GroupInfoSuccess || resp.RatchetTree.Tree == nil {
				return nil, fmt.Errorf("joining %s: the Welcome has no tree and fetching it failed: %w", it.Room, terr)
			}
			tree = resp.RatchetTree.Tree
		}
		g, err = mls.JoinFromWelcome(w, bundle, tree, m.groupOptions())
	}
	if err != nil {
		return nil, fmt.Errorf("joining %s: %w", it.Room, err)
	}
	if !bytes.Equal(g.GroupID(), []byte(it.Room)) {
		return nil, fmt.Errorf("the Welcome delivered for %s is for group %q", it.Room, g.GroupID())
	}
	if !bundle.KeyPackage.IsLastResort() {
		delete(m.keyPackages, ref)
	}
	m.rooms[it.Room] = newMemberRoom(g)
	return &Event{Kind: EventJoined, Seq: it.Seq, Room: it.Room, At: it.At, Epoch: g.Epoch()}, nil
}
