package history

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Kind is what an operation does.
type Kind string

// Operation kinds.
const (
	// KindCommit submits an MLS commit built on (Epoch, Parent) that would
	// move the room to Epoch+1 with transcript hash Hash.
	KindCommit Kind = "commit"
	// KindRead reads a room's epoch and confirmed transcript hash.
	KindRead Kind = "read"
	// KindClaim claims one KeyPackage of User; KeyPackageRef is what it got.
	KindClaim Kind = "claim"
	// KindUpload uploads KeyPackages of Client.
	KindUpload Kind = "upload"
	// KindSend submits an application message whose encoding has Digest.
	KindSend Kind = "send"
	// KindRegister registers Client; its token authenticates the
	// client's later operations.
	KindRegister Kind = "register"
)

// Outcome is how an operation ended.
type Outcome string

// Outcomes.
const (
	// OK: the server acknowledged the operation (for a commit or a send:
	// accepted it).
	OK Outcome = "ok"
	// Fail: the server refused it; it had no effect.
	Fail Outcome = "fail"
	// Unknown: no answer (timeout, connection error, 5xx); it may or may
	// not have taken effect, now or later.
	Unknown Outcome = "unknown"
)

// Op is one client operation.
type Op struct {
	// ID numbers operations in invocation order, from 0.
	ID int `json:"id"`
	// Process is the logical client that ran it (one at a time per
	// process).
	Process int  `json:"process"`
	Kind    Kind `json:"kind"`
	// Node is the node whose API was called ("" if none was reached).
	Node string `json:"node,omitempty"`
	// Room the operation is about (commits, reads, sends).
	Room string `json:"room,omitempty"`
	// Call and Return are the invocation and completion times; Return is 0
	// while the operation runs.
	Call   int64   `json:"call"`
	Return int64   `json:"return"`
	Result Outcome `json:"outcome"`
	// Code is the server's answer (a MIMI update code name, an HTTP
	// status, or "timeout"/"transport").
	Code string `json:"code,omitempty"`
	// Error is the client's error text, if any.
	Error string `json:"error,omitempty"`
	// Attempts counts the HTTP requests sent (retries with the same
	// idempotency key are one operation).
	Attempts int `json:"attempts,omitempty"`
	// As is the client whose token authenticated the operation.
	As string `json:"as,omitempty"`

	// Epoch is the epoch a commit is built on, or the epoch a read
	// returned.
	Epoch uint64 `json:"epoch,omitempty"`
	// Parent is the transcript hash of the epoch a commit is built on.
	Parent string `json:"parent,omitempty"`
	// Hash is the transcript hash a commit produces, or the one a read
	// returned (hex).
	Hash string `json:"hash,omitempty"`

	// User is the user whose KeyPackage a claim asked for; Client the
	// client an upload is for or a claim got.
	User   string `json:"user,omitempty"`
	Client string `json:"client,omitempty"`
	// KeyPackageRefs are the references (hex) an upload stored or a claim
	// received.
	KeyPackageRefs []string `json:"key_package_refs,omitempty"`
	// LastResort marks a claim answered with a last-resort KeyPackage,
	// which may be handed out again.
	LastResort bool `json:"last_resort,omitempty"`

	// Sender and Digest identify a sent application message (Digest is the
	// hex SHA-256 of its MLSMessage encoding).
	Sender string `json:"sender,omitempty"`
	Digest string `json:"digest,omitempty"`

	// Resolved says how an unknown outcome was settled after the run:
	// "happened", "not-happened", or "" when it stays unknown.
	Resolved string `json:"resolved,omitempty"`
}

// Latency is how long a completed operation took.
func (o *Op) Latency() time.Duration {
	if o.Return == 0 {
		return 0
	}
	return time.Duration(o.Return - o.Call)
}

// Delivery is one fanout request the follower provider received.
type Delivery struct {
	// At is when it arrived.
	At   int64  `json:"at"`
	Room string `json:"room"`
	// From is the hub domain the request authenticated as.
	From string `json:"from"`
	// FirstSeq is the Mimi-Sequence header: the hub's number of the first
	// message.
	FirstSeq uint64 `json:"first_seq"`
	// Messages are the batch's messages in order.
	Messages []Message `json:"messages"`
	// Status is what the recorder answered.
	Status int `json:"status"`
}

// Message is one message of a fanout batch or of a stream.
type Message struct {
	// Digest is the hex SHA-256 of the MLSMessage encoding.
	Digest string `json:"digest"`
	// Kind is "application", "commit", "proposal", "welcome" or
	// "other".
	Kind string `json:"kind"`
}

// Observed is one message of a room in hub order, as a local client of
// the hub's provider read it from its stream.
type Observed struct {
	Room   string `json:"room"`
	HubSeq uint64 `json:"hub_seq"`
	Message
}

// Final is a room's state as one node reported it after the run healed.
type Final struct {
	Node  string `json:"node"`
	Room  string `json:"room"`
	Epoch uint64 `json:"epoch"`
	Hash  string `json:"hash"`
	// Error is set when the node could not answer.
	Error string `json:"error,omitempty"`
}

// Link is one epoch of a room's commit chain as the workload followed it:
// the room reached Epoch with transcript hash Hash.
type Link struct {
	Epoch uint64 `json:"epoch"`
	Hash  string `json:"hash"`
}

// Chain is a room's commit chain: the state after setup and every epoch
// after it, in order, as the workload's members followed it.
type Chain struct {
	Room  string `json:"room"`
	Links []Link `json:"links"`
	// Abandoned is set when the workload stopped following the room
	// because its state no longer matched any commit it made.
	Abandoned string `json:"abandoned,omitempty"`
}

// Head returns the chain's last link.
func (c *Chain) Head() Link {
	if len(c.Links) == 0 {
		return Link{}
	}
	return c.Links[len(c.Links)-1]
}

// Uploaded is a KeyPackage a client uploaded.
type Uploaded struct {
	User       string `json:"user"`
	Client     string `json:"client"`
	Ref        string `json:"ref"`
	LastResort bool   `json:"last_resort,omitempty"`
}

// History is everything a run recorded. It is safe for concurrent use
// while recording; read it with Snapshot.
type History struct {
	start time.Time

	mu         sync.Mutex
	ops        []Op
	deliveries []Delivery
	observed   []Observed
	finals     []Final
	chains     map[string]*Chain
	uploaded   []Uploaded
}

// New starts a history whose clock starts now.
func New() *History {
	return &History{start: time.Now(), chains: map[string]*Chain{}}
}

// Start returns the wall-clock time the history's clock started.
func (h *History) Start() time.Time { return h.start }

// Now returns the time since the start.
func (h *History) Now() int64 {
	return max(int64(time.Since(h.start)), 1)
}

// Invoke records the start of op (its ID and Call are set here) and
// returns its ID.
func (h *History) Invoke(op Op) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.ID = len(h.ops)
	op.Call = h.Now()
	op.Return = 0
	h.ops = append(h.ops, op)
	return op.ID
}

// Complete records the end of operation id: fn updates it (outcome, code,
// results) and Return is set.
func (h *History) Complete(id int, fn func(*Op)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id < 0 || id >= len(h.ops) {
		panic(fmt.Sprintf("history: no operation %d", id))
	}
	op := &h.ops[id]
	fn(op)
	op.Return = h.Now()
}

// Update changes operation id without completing it.
func (h *History) Update(id int, fn func(*Op)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn(&h.ops[id])
}

// AddDelivery records a fanout request the follower received.
func (h *History) AddDelivery(d Delivery) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deliveries = append(h.deliveries, d)
}

// AddObserved records messages a local observer read in hub order.
func (h *History) AddObserved(o ...Observed) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.observed = append(h.observed, o...)
}

// AddFinal records a node's final view of a room.
func (h *History) AddFinal(f Final) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.finals = append(h.finals, f)
}

// AddUploaded records KeyPackages a client stored (or may have stored).
func (h *History) AddUploaded(u ...Uploaded) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.uploaded = append(h.uploaded, u...)
}

// Extend appends link to room's chain, creating it.
func (h *History) Extend(room string, link Link) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.chains[room]
	if c == nil {
		c = &Chain{Room: room}
		h.chains[room] = c
	}
	c.Links = append(c.Links, link)
}

// Abandon marks room's chain as no longer followed, with the reason.
func (h *History) Abandon(room, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.chains[room]
	if c == nil {
		c = &Chain{Room: room}
		h.chains[room] = c
	}
	if c.Abandoned == "" {
		c.Abandoned = reason
	}
}

// Snapshot is a copy of a history's records.
type Snapshot struct {
	// Start is the wall-clock time of time 0.
	Start      time.Time  `json:"start"`
	Ops        []Op       `json:"ops"`
	Deliveries []Delivery `json:"deliveries"`
	Observed   []Observed `json:"observed"`
	Finals     []Final    `json:"finals"`
	Chains     []Chain    `json:"chains"`
	Uploaded   []Uploaded `json:"uploaded"`
}

// Snapshot copies the records, chains sorted by room.
func (h *History) Snapshot() Snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := Snapshot{
		Start: h.start, Ops: slices.Clone(h.ops), Deliveries: slices.Clone(h.deliveries),
		Observed: slices.Clone(h.observed), Finals: slices.Clone(h.finals), Uploaded: slices.Clone(h.uploaded),
	}
	for _, c := range h.chains {
		cc := *c
		cc.Links = slices.Clone(c.Links)
		s.Chains = append(s.Chains, cc)
	}
	slices.SortFunc(s.Chains, func(a, b Chain) int { return cmp.Compare(a.Room, b.Room) })
	return s
}

// End returns the latest time in the snapshot: the last return, delivery
// or call.
func (s *Snapshot) End() int64 {
	var end int64
	for _, o := range s.Ops {
		end = max(end, o.Call, o.Return)
	}
	for _, d := range s.Deliveries {
		end = max(end, d.At)
	}
	return end
}
