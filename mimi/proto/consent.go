package proto

import (
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// ConsentOperation is what a ConsentEntry does (seed section 7.2).
type ConsentOperation uint8

// Consent operations.
const (
	ConsentCancel  ConsentOperation = 0
	ConsentRequest ConsentOperation = 1
	ConsentGrant   ConsentOperation = 2
	ConsentRevoke  ConsentOperation = 3
)

func (o ConsentOperation) String() string {
	switch o {
	case ConsentCancel:
		return "cancel"
	case ConsentRequest:
		return "request"
	case ConsentGrant:
		return "grant"
	case ConsentRevoke:
		return "revoke"
	}
	return "unknown consent operation"
}

// ConsentEntry is the body of /requestConsent and /updateConsent. Without a
// room it is about any room.
type ConsentEntry struct {
	Operation ConsentOperation
	Requester URI
	Target    URI
	Room      *URI // nil: any room
	// KeyPackages may come with a grant (MLSMessages of wire format
	// mls_key_package), so the requester can add the target at once.
	KeyPackages []*mls.Message
}

// EncodeTLS writes the entry.
func (c *ConsentEntry) EncodeTLS(w *wire.Writer) {
	w.Uint8(uint8(c.Operation))
	c.Requester.EncodeTLS(w)
	c.Target.EncodeTLS(w)
	w.Optional(c.Room != nil, func(w *wire.Writer) { c.Room.EncodeTLS(w) })
	if c.Operation == ConsentGrant {
		writeMessages(w, c.KeyPackages, "consent grant KeyPackage")
	}
}

// DecodeTLS reads the entry.
func (c *ConsentEntry) DecodeTLS(r *wire.Reader) {
	readEnum(r, &c.Operation, "consent operation", func(o ConsentOperation) bool { return o <= ConsentRevoke })
	c.Requester.DecodeTLS(r)
	c.Target.DecodeTLS(r)
	c.Room = nil
	r.Optional(func(r *wire.Reader) {
		c.Room = new(URI)
		c.Room.DecodeTLS(r)
	})
	c.KeyPackages = nil
	if c.Operation == ConsentGrant {
		c.KeyPackages = readMessages(r, mls.WireKeyPackage, "consent grant KeyPackage")
	}
}
