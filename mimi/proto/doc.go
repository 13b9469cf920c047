// Package proto holds the messages of the MIMI transport protocol
// (draft-barnes-mimi-protocol, "the seed", sections 5 and 7) and their strict
// TLS-presentation encodings: the endpoint directory, consent, key material
// claims, the updateRoom body and response, fanout, group info claims, abuse
// reports and identifier queries, plus the two MLS objects the seed defines
// (the ParticipantListPatch proposal and the base policy GroupContext
// extension) and the identifier URIs everything refers to.
//
// The seed leaves gaps and contradictions; DECISIONS.md beside this file
// records how each is resolved and why. Every decoder is strict (see package
// wire), and every MLS object travels as an MLSMessage.
package proto
