// Package httpapi is the provider's HTTP surface: two gorilla/mux routers
// over the replicated state (Backend) and the outbound MIMI client (Peers).
//
// NewFederation serves the MIMI endpoints of draft-barnes-mimi-protocol
// section 7 to other providers: the directory, consent, key material claims
// (relayed by the hub for its rooms), updateRoom, provisionalMessage,
// fanout, claimGroupInfo, reportAbuse, identifierQuery and the proxied
// downloadFile, with TLS-presentation bodies (application/mimi) and plain
// text errors. The requesting provider is the DNS name of its verified TLS
// client certificate (PeerFromTLS, replaceable in Config).
//
// NewClientAPI serves the provider's own clients (openapi.yaml beside this
// file): registration and bearer tokens, KeyPackages, key material claims,
// rooms (hosted here, or relayed to their hub), consent, identifier
// queries and a long-polled message stream, in JSON with {"error", "kind"}
// errors.
//
// Handlers decode strictly and bound every body before they touch state,
// turn each request into one fsm command (or a read, or a relay), and map
// the outcome to a status: refusals by their fsm.ErrorKind, a cluster
// without leader to 503 with Retry-After, deadlines to 504. Every route is
// named (RouteName), so Config.Middleware can wrap all of them, e.g. for
// metrics. DESIGN.md beside this file explains routing, authentication,
// relay rules, error mapping and limits.
package httpapi
