// Package client holds mimi-hub's client libraries; it runs no server.
//
// Federation is the MIMI client a provider uses to reach other providers
// (draft-barnes-mimi-protocol section 7, with the choices of
// mimi/proto/DECISIONS.md). It authenticates with mutual TLS (its client
// certificate names its domain), discovers each peer's endpoints from
// /.well-known/mimi-protocol-directory (cached for a short TTL, falling back
// to the seed's paths when the peer has no directory), and sends the TLS
// encodings of the mimi/proto structs as application/mimi bodies. Fanout
// batches carry the hub's number of their first message in Mimi-Sequence
// and the clients to skip in Mimi-Exclude. Answers are bounded in size and
// decoded strictly. It does not retry: its callers (the delivery worker,
// the relay of client requests) decide, with IsRetryable and RetryAfter.
//
// User is the client of a provider's own client API
// (httpapi/openapi.yaml): JSON over HTTPS with MLS and MIMI objects as
// base64 of their TLS encodings, a bearer token, and an Idempotency-Key on
// every write, reused when the write is retried after a connection error or
// a 502, 503 or 504 (honoring Retry-After).
//
// Member sits on User and acts as one MIMI client with a real MLS client
// (mimi/mls): it creates rooms, adds and removes users, leaves, sends,
// joins by external commit or from Welcomes in its stream, and turns the
// stream into events. Its state persists with Save and LoadMember. The CLI
// and the end-to-end tests use it.
//
// Errors: a non-2xx answer is a *StatusError (with the client API's error
// kind and Retry-After), a request that got no answer a *TransportError. A
// MIMI refusal that comes as a 200 answer (an UpdateRoomResponse whose code
// is not success, a GroupInfoResponse whose status is not success) is a
// result for Federation and User, and an error (*RefusedError,
// *GroupInfoError) for Member's flows.
//
// DESIGN.md beside this file records the wire details and the Member's
// choices (echoes, unknown outcomes, acknowledgements).
package client
