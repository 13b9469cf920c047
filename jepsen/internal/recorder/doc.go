// Package recorder is the follower provider of the jepsen harness: a
// minimal MIMI federation server for another domain (f.example) that the
// cluster lists as a peer. It speaks mutual TLS with the development CA,
// accepts /fanout/{roomId} from the hub (checking the hub's certificate
// names the hub's domain and the room is the hub's) and records every
// request it receives, redeliveries included, in arrival order, with its
// sequence number and the digest and kind of each message. It answers the
// directory with 404, so the hub uses the seed's paths.
//
// It does not apply the fanout itself: the checkers (check.EffectiveStream)
// apply the follower's rule to the recording, so that a duplicate or a gap
// shows in the report rather than being silently absorbed.
//
// It reuses nothing of httpapi: httpapi.NewFederation needs the whole
// replicated provider state behind it, and what is wanted here is the raw
// requests.
package recorder
