package proto

import (
	"fmt"
	"strings"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// URI is an IdentifierUri: struct { opaque uri<V>; }. mimi-hub uses the
// shapes of draft-mahy-mimi-identity (see DECISIONS.md):
//
//	user    mimi://a.example/u/alice
//	client  mimi://a.example/u/alice/d/phone   (a client lives under its user)
//	room    mimi://hub.example/r/clubhouse
type URI string

// EncodeTLS writes the URI as opaque<V>.
func (u URI) EncodeTLS(w *wire.Writer) { w.Opaque([]byte(u)) }

// DecodeTLS reads the URI.
func (u *URI) DecodeTLS(r *wire.Reader) {
	var b []byte
	r.Opaque(&b)
	*u = URI(b)
}

// Kind says what a URI names.
type Kind int

// Kinds of identifiers.
const (
	KindUser Kind = iota + 1
	KindClient
	KindRoom
)

// Identifier is a parsed URI.
type Identifier struct {
	Kind   Kind
	Domain string
	User   string // users and clients
	Device string // clients
	Room   string // rooms
}

// maxIDLen bounds each identifier component.
const maxIDLen = 255

// validComponent reports whether s is a non-empty path segment of unreserved
// URI characters (RFC 3986), so identifiers need no escaping in URLs.
func validComponent(s string) bool {
	if s == "" || len(s) > maxIDLen {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// validDomain reports whether s looks like a DNS name (letters, digits,
// hyphens and dots, no empty labels) or localhost.
func validDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for rest, more := s, true; more; {
		var label string
		label, rest, more = strings.Cut(rest, ".")
		if !validLabel(label) {
			return false
		}
	}
	return true
}

// validLabel reports whether s is a DNS label: 1 to 63 lower-case letters,
// digits and inner hyphens.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// maxURIParts is one more than the segments of the longest identifier
// (a client: domain/u/NAME/d/DEVICE), so a longer path is seen as one.
const maxURIParts = 6

// Parse parses a MIMI identifier URI.
func (u URI) Parse() (Identifier, error) {
	rest, ok := strings.CutPrefix(string(u), "mimi://")
	if !ok {
		return Identifier{}, fmt.Errorf("identifier %q: scheme is not mimi://", u)
	}
	// Split on "/" into a fixed array: Parse runs on every request's
	// identifiers, and strings.Split would allocate each time.
	var buf [maxURIParts]string
	n := 0
	for more := true; more && n < maxURIParts; n++ {
		buf[n], rest, more = strings.Cut(rest, "/")
	}
	return identify(u, buf[:n])
}

// identify makes the identifier of u from its parts after the scheme,
// split on "/" (at most maxURIParts: more are refused as too many).
func identify(u URI, parts []string) (Identifier, error) {
	if !validDomain(parts[0]) {
		return Identifier{}, fmt.Errorf("identifier %q: invalid domain %q", u, parts[0])
	}
	id := Identifier{Domain: parts[0]}
	switch {
	case len(parts) == 3 && parts[1] == "u":
		id.Kind, id.User = KindUser, parts[2]
	case len(parts) == 5 && parts[1] == "u" && parts[3] == "d":
		id.Kind, id.User, id.Device = KindClient, parts[2], parts[4]
	case len(parts) == 3 && parts[1] == "r":
		id.Kind, id.Room = KindRoom, parts[2]
	default:
		return Identifier{}, fmt.Errorf("identifier %q: not a user (/u/NAME), client (/u/NAME/d/DEVICE) or room (/r/ID)", u)
	}
	for _, c := range parts[2:] {
		if !validComponent(c) {
			return Identifier{}, fmt.Errorf("identifier %q: path segment %q is empty, too long or has characters outside [A-Za-z0-9._~-]", u, c)
		}
	}
	return id, nil
}

// URI formats the identifier.
func (id Identifier) URI() URI {
	switch id.Kind {
	case KindUser:
		return UserURI(id.Domain, id.User)
	case KindClient:
		return ClientURI(id.Domain, id.User, id.Device)
	case KindRoom:
		return RoomURI(id.Domain, id.Room)
	}
	return ""
}

// UserURI returns the URI of user at domain.
func UserURI(domain, user string) URI { return URI("mimi://" + domain + "/u/" + user) }

// ClientURI returns the URI of a user's client (device).
func ClientURI(domain, user, device string) URI {
	return URI("mimi://" + domain + "/u/" + user + "/d/" + device)
}

// ProviderURI returns the URI naming a provider itself, mimi://domain: the
// identity in a hub's external-sender credential. It is not a user, client
// or room, so Parse does not take it.
func ProviderURI(domain string) URI { return URI("mimi://" + domain) }

// RoomURI returns the URI of a room hosted at hubDomain.
func RoomURI(hubDomain, room string) URI { return URI("mimi://" + hubDomain + "/r/" + room) }

// UserOf returns the user URI a client URI lives under, or the URI itself
// for a user URI.
func (u URI) UserOf() (URI, error) {
	id, err := u.Parse()
	if err != nil {
		return "", err
	}
	switch id.Kind {
	case KindUser:
		return u, nil // Parse took exactly mimi://DOMAIN/u/NAME
	case KindClient:
		return UserURI(id.Domain, id.User), nil
	}
	return "", fmt.Errorf("identifier %q names a room, not a user or client", u)
}

// Domain returns the provider domain of the URI.
func (u URI) Domain() (string, error) {
	id, err := u.Parse()
	return id.Domain, err
}
