package proto

import (
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// HTTPMethod is the method a directory entry is reached with.
type HTTPMethod uint8

// HTTP methods of directory entries.
const (
	MethodGet  HTTPMethod = 1
	MethodPost HTTPMethod = 2
)

// Primitive names a MIMI endpoint (seed section 7.1).
type Primitive uint8

// The seed's primitives.
const (
	RequestConsent     Primitive = 1
	UpdateConsent      Primitive = 2
	ClaimKeyMaterial   Primitive = 3
	UpdateRoom         Primitive = 4
	ProvisionalMessage Primitive = 5
	FanoutMessages     Primitive = 6
	ClaimGroupInfo     Primitive = 7
	DownloadFile       Primitive = 8
	ReportAbuse        Primitive = 9
	IdentifierQuery    Primitive = 10
)

func (p Primitive) String() string {
	switch p {
	case RequestConsent:
		return "requestConsent"
	case UpdateConsent:
		return "updateConsent"
	case ClaimKeyMaterial:
		return "claimKeyMaterial"
	case UpdateRoom:
		return "updateRoom"
	case ProvisionalMessage:
		return "provisionalMessage"
	case FanoutMessages:
		return "fanoutMessage"
	case ClaimGroupInfo:
		return "claimGroupInfo"
	case DownloadFile:
		return "downloadFile"
	case ReportAbuse:
		return "reportAbuse"
	case IdentifierQuery:
		return "identifierQuery"
	case RemoveClients:
		return "removeClients"
	case WelcomeTree:
		return "welcomeTree"
	}
	return fmt.Sprintf("primitive(%d)", uint8(p))
}

// DirectoryEntry says where a primitive is served.
type DirectoryEntry struct {
	Primitive Primitive
	Method    HTTPMethod
	URI       string // https URL template; {placeholders} are path segments
}

// Directory is the body of /.well-known/mimi-protocol-directory.
type Directory struct {
	Entries []DirectoryEntry
}

// EncodeTLS writes the directory.
func (d *Directory) EncodeTLS(w *wire.Writer) {
	w.Vector(func(w *wire.Writer) {
		for _, e := range d.Entries {
			w.Uint8(uint8(e.Primitive))
			w.Uint8(uint8(e.Method))
			writeString(w, e.URI)
		}
	})
}

// DecodeTLS reads the directory.
func (d *Directory) DecodeTLS(r *wire.Reader) {
	d.Entries = nil
	r.VectorEach(func(r *wire.Reader) {
		var e DirectoryEntry
		readEnum(r, &e.Primitive, "MIMI primitive", func(p Primitive) bool { return p >= 1 && p <= 10 })
		readEnum(r, &e.Method, "HTTP method", func(m HTTPMethod) bool { return m == MethodGet || m == MethodPost })
		readString(r, &e.URI)
		d.Entries = append(d.Entries, e)
	})
}

// Find returns the entry for p.
func (d *Directory) Find(p Primitive) (DirectoryEntry, bool) {
	for _, e := range d.Entries {
		if e.Primitive == p {
			return e, true
		}
	}
	return DirectoryEntry{}, false
}
