package fsm

import (
	"github.com/mimihub/mimi-hub/mimi/keymaterial"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// consentCheck returns the consent rule for a key material claim that
// provider from (this provider's domain for its own clients) makes for a
// requesting user of requesterDomain. A provider claiming for its own user
// is taken at its word; a room's hub relaying for another provider's user
// is not, so only consent for that room counts (consent.Book.CheckRelayed,
// DECISIONS.md "Peers act only for their own users").
func (s *State) consentCheck(from, requesterDomain string) keymaterial.ConsentFunc {
	if from == requesterDomain {
		return s.consent.Check
	}
	return s.consent.CheckRelayed
}

// Subscribers lists the local clients subscribed to a room (hosted here or
// not), sorted.
func (s *State) Subscribers(room proto.URI) []proto.URI {
	st := s.streams[room]
	if st == nil {
		return nil
	}
	var out []proto.URI
	for _, sub := range st.subs {
		if sub.until == 0 {
			out = append(out, sub.client)
		}
	}
	return out
}
