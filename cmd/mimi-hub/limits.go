package main

import (
	"strconv"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/httpapi"
	"github.com/mimihub/mimi-hub/internal/hub"
)

// limitsConfig bounds what the node keeps and what clients and peers may
// send it. The state bounds (retention, inboxes, outboxes) decide what
// the replicated state machine keeps: the leader's are replicated to
// every node (fsm.Bounds); give every node the same values. Zero means the default; for rates and connection bounds a
// negative value means no limit.
type limitsConfig struct {
	MaxConns          int      `json:"max_conns"`
	MaxConnsPerAddr   int      `json:"max_conns_per_addr"`
	ClientRequests    float64  `json:"client_requests_per_second"`
	ClientBytes       float64  `json:"client_bytes_per_second"`
	PeerRequests      float64  `json:"peer_requests_per_second"`
	PeerBytes         float64  `json:"peer_bytes_per_second"`
	RoomFanoutBytes   float64  `json:"room_fanout_bytes_per_second"`
	MaxMessageBody    int64    `json:"max_message_body"`
	BodyTimeout       duration `json:"body_timeout"`
	Retention         duration `json:"retention"`
	RoomLogBytes      int64    `json:"room_log_bytes"`
	RoomLogEntries    int      `json:"room_log_entries"`
	LogBytes          int64    `json:"log_bytes"`
	InboxItems        int      `json:"inbox_items"`
	InboxBytes        int64    `json:"inbox_bytes"`
	OutboxItems       int      `json:"outbox_items"`
	OutboxBytes       int64    `json:"outbox_bytes"`
	OutboxTotalBytes  int64    `json:"outbox_total_bytes"`
	MaxSubscriptions  int      `json:"max_subscriptions"`
	MaxRaftEntryBytes int      `json:"max_raft_entry_bytes"`
}

func parseFloat(v string) (float64, error) { return strconv.ParseFloat(v, 64) }
func parseInt64(v string) (int64, error)   { return strconv.ParseInt(v, 10, 64) }

func floatOpt(name, usage string, field func(*config) *float64) option {
	return option{name, usage, func(c *config, v string) error {
		n, err := parseFloat(v)
		*field(c) = n
		return err
	}, nil, "float"}
}

func int64Opt(name, usage string, field func(*config) *int64) option {
	return option{name, usage, func(c *config, v string) error {
		n, err := parseInt64(v)
		*field(c) = n
		return err
	}, nil, "int"}
}

// limitOptions are the options of limitsConfig. Their zero value means the
// default their usage names, so -h shows no zero default.
func limitOptions() []option {
	opts := limitFlags()
	for i := range opts {
		opts[i].show = nil
	}
	return opts
}

func limitFlags() []option {
	l := func(c *config) *limitsConfig { return &c.limitsConfig }
	return []option{
		intOpt("max-conns", "connections each listener (federation, client, ops) holds at most; more wait (default 8192)", func(c *config) *int { return &l(c).MaxConns }),
		intOpt("max-conns-per-addr", "connections one source address may hold on a listener; more are closed (default 1024: clients behind one NAT share an address)", func(c *config) *int { return &l(c).MaxConnsPerAddr }),
		floatOpt("client-requests-per-second", "requests a second each client may make to this node, bursts of 2 s (default 100)", func(c *config) *float64 { return &l(c).ClientRequests }),
		floatOpt("client-bytes-per-second", "body bytes a second each client may send to this node, bursts of 8 s (default 4 MiB)", func(c *config) *float64 { return &l(c).ClientBytes }),
		floatOpt("peer-requests-per-second", "requests a second each peer provider may make to this node (default 1000)", func(c *config) *float64 { return &l(c).PeerRequests }),
		floatOpt("peer-bytes-per-second", "body bytes a second each peer provider may send to this node (default 32 MiB)", func(c *config) *float64 { return &l(c).PeerBytes }),
		floatOpt("room-fanout-bytes-per-second", "fanout bytes a second a hub may send for one room (default 4 MiB)", func(c *config) *float64 { return &l(c).RoomFanoutBytes }),
		int64Opt("max-message-body", "largest application message body, bytes (default 1 MiB)", func(c *config) *int64 { return &l(c).MaxMessageBody }),
		durationOpt("body-timeout", "time a request body may take to arrive, plus 1 s per 64 KiB declared (default 10s)", func(c *config) *duration { return &l(c).BodyTimeout }),
		durationOpt("retention", "how long an unread room message is kept (default 168h); the leader's applies on every node", func(c *config) *duration { return &l(c).Retention }),
		int64Opt("room-log-bytes", "unread message bytes kept per room (default 16 MiB); the leader's applies on every node", func(c *config) *int64 { return &l(c).RoomLogBytes }),
		intOpt("room-log-entries", "unread messages kept per room (default 100000); the leader's applies on every node", func(c *config) *int { return &l(c).RoomLogEntries }),
		int64Opt("log-bytes", "unread message bytes kept for all rooms (default 512 MiB); the leader's applies on every node", func(c *config) *int64 { return &l(c).LogBytes }),
		intOpt("inbox-items", "unacknowledged Welcomes and consent items kept per client (default 1000); the leader's applies on every node", func(c *config) *int { return &l(c).InboxItems }),
		int64Opt("inbox-bytes", "bytes of those kept per client (default 4 MiB); the leader's applies on every node", func(c *config) *int64 { return &l(c).InboxBytes }),
		intOpt("outbox-items", "undelivered items kept per peer provider (default 100000); the leader's applies on every node", func(c *config) *int { return &l(c).OutboxItems }),
		int64Opt("outbox-bytes", "undelivered bytes kept per peer provider (default 64 MiB); the leader's applies on every node", func(c *config) *int64 { return &l(c).OutboxBytes }),
		int64Opt("outbox-total-bytes", "undelivered bytes kept for all peer providers together; past it the largest queue drops its oldest (default 512 MiB); the leader's applies on every node", func(c *config) *int64 { return &l(c).OutboxTotalBytes }),
		intOpt("max-subscriptions", "rooms one client may follow (default 10000); the leader's applies on every node", func(c *config) *int { return &l(c).MaxSubscriptions }),
		intOpt("max-raft-entry-bytes", "largest command written to the Raft log (default 20 MiB)", func(c *config) *int { return &l(c).MaxRaftEntryBytes }),
	}
}

// apply sets the limits on a node's configuration.
func (l limitsConfig) apply(h *hub.Config) {
	h.MaxConns, h.MaxConnsPerAddr = l.MaxConns, l.MaxConnsPerAddr
	h.Limits = hub.Limits{
		ClientBudget:   httpapi.Budget{Requests: l.ClientRequests, Bytes: l.ClientBytes},
		PeerBudget:     httpapi.Budget{Requests: l.PeerRequests, Bytes: l.PeerBytes},
		RoomFanout:     l.RoomFanoutBytes,
		MaxMessageBody: l.MaxMessageBody,
		BodyTimeout:    time.Duration(l.BodyTimeout),
	}
	h.State = fsm.Config{Bounds: fsm.Bounds{
		InboxLimit: l.InboxItems, InboxBytes: l.InboxBytes,
		Retention:        fsm.Retention{MaxAge: uint64(time.Duration(l.Retention).Milliseconds()), RoomEntries: l.RoomLogEntries, RoomBytes: l.RoomLogBytes, TotalBytes: l.LogBytes},
		MaxSubscriptions: l.MaxSubscriptions,
		OutboxLimit:      l.OutboxItems, OutboxBytes: l.OutboxBytes, OutboxTotalBytes: l.OutboxTotalBytes,
	}}
	h.Raft.MaxEntrySize = l.MaxRaftEntryBytes
}
