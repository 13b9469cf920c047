// Command mimictl is mimi-hub's command-line client, operator tool and
// load generator.
//
// As a client, each invocation acts as one MIMI client (one device of one
// user) of a provider's client API (httpapi/openapi.yaml), through
// mimi/client's Member: register (a new user's first device), invite-device
// (an existing device invites a further one) and link (the further device,
// with the invitation's code, approved by an existing one or proven by the
// password), approve, devices, revoke, password, publish-keys, create-room, add,
// remove, roles, send, watch, leave, join, rooms, members, consent, report
// and whoami. The client's state lives in a profile folder: the provider's
// URL, the CA file that verifies it, the bearer token, the Member's saved
// MLS state and the last messages received (so that report can disclose
// one). A profile is named by -profile NAME (or $MIMICTL_PROFILE) and
// kept in $MIMICTL_HOME/NAME, by default ~/.mimictl/NAME; register names
// it USER@DOMAIN unless told otherwise, and the other commands use the
// only profile there is when none is named. A -profile with a slash in it
// is a folder path. The state holds the client's private keys and group
// secrets: the folder is created 0700 and its files 0600, every change is
// written to a temporary file and renamed over the old one, and a profile
// must not be copied between machines or restored from a backup (an old
// state would reuse message keys). Commands lock the profile while they
// run, so `mimictl watch -follow` in one terminal and `mimictl send` in
// another share it safely.
//
// As an operator tool, status and reports read a provider node's
// operations listener (internal/hub/ops.go, mimi-hub -ops-addr), cluster
// operates its Raft cluster, drill probes every node with writes and reads
// while it disrupts the cluster (docs/drills.md), and users suspends users,
// revokes devices and mints invite codes there (internal/hub/ops_users.go).
//
// `mimictl bench` loads a provider with application messages
// (provisionalMessage) or commits (updateRoom) from 1, 16, 64...
// concurrent senders, one mimi/client Member each, and prints
// throughput and latency percentiles per level, against running
// providers (-server, a comma-separated list) or, with -inprocess, a
// single-node provider it starts itself.
//
// `mimictl help` lists the commands and `mimictl help COMMAND` (or
// `mimictl COMMAND -h`) explains one. Flags may come before or after
// positional arguments; "--" ends them. Errors go to stderr; the exit
// status is 0 on success, 1 when the operation failed and 2 for usage
// errors.
package main
