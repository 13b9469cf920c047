package proto

import (
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Protocol is the end-to-end protocol a request is about.
type Protocol uint8

// MLS10 is MLS 1.0 (RFC 9420), the only protocol.
const MLS10 Protocol = 1

func readProtocol(r *wire.Reader, p *Protocol) {
	readEnum(r, p, "protocol", func(p Protocol) bool { return p == MLS10 })
}

// KeyMaterialRequest is the body of /claimKeyMaterial (seed section 7.3).
type KeyMaterialRequest struct {
	Protocol       Protocol
	RequestingUser URI
	TargetUsers    []URI
	// Room is the room the KeyPackages are for; empty when none is named.
	Room                 URI
	AcceptableSuites     []mls.CipherSuite
	RequiredCapabilities mls.RequiredCapabilities
	LastResortAllowed    bool
}

// EncodeTLS writes the request.
func (k *KeyMaterialRequest) EncodeTLS(w *wire.Writer) {
	w.Uint8(uint8(k.Protocol))
	k.RequestingUser.EncodeTLS(w)
	writeURIs(w, k.TargetUsers)
	k.Room.EncodeTLS(w)
	w.Vector(func(w *wire.Writer) {
		for _, s := range k.AcceptableSuites {
			w.Uint16(uint16(s))
		}
	})
	w.Encode(&k.RequiredCapabilities)
	w.Bool(k.LastResortAllowed)
}

// DecodeTLS reads the request.
func (k *KeyMaterialRequest) DecodeTLS(r *wire.Reader) {
	readProtocol(r, &k.Protocol)
	k.RequestingUser.DecodeTLS(r)
	readURIs(r, &k.TargetUsers)
	k.Room.DecodeTLS(r)
	k.AcceptableSuites = nil
	r.VectorEach(func(r *wire.Reader) {
		var s uint16
		r.Uint16(&s)
		k.AcceptableSuites = append(k.AcceptableSuites, mls.CipherSuite(s))
	})
	r.Decode(&k.RequiredCapabilities)
	r.Bool(&k.LastResortAllowed)
}

// KeyMaterialUserCode is a per-user result of a claim.
type KeyMaterialUserCode uint8

// User codes.
const (
	UserSuccess              KeyMaterialUserCode = 0
	UserPartialSuccess       KeyMaterialUserCode = 1
	UserIncompatibleProtocol KeyMaterialUserCode = 2
	UserNoCompatibleMaterial KeyMaterialUserCode = 3
	UserUnknown              KeyMaterialUserCode = 4
	UserNoConsent            KeyMaterialUserCode = 5
	UserNoConsentForThisRoom KeyMaterialUserCode = 6
	UserDeleted              KeyMaterialUserCode = 7
)

func (c KeyMaterialUserCode) String() string {
	return [...]string{"success", "partialSuccess", "incompatibleProtocol", "noCompatibleMaterial",
		"userUnknown", "noConsent", "noConsentForThisRoom", "userDeleted", "unknown"}[min(int(c), 8)]
}

// KeyMaterialClientCode is a per-client result of a claim.
type KeyMaterialClientCode uint8

// Client codes.
const (
	ClientSuccess              KeyMaterialClientCode = 0
	ClientKeyMaterialExhausted KeyMaterialClientCode = 1
	ClientOnlyLastResort       KeyMaterialClientCode = 2
	ClientNothingCompatible    KeyMaterialClientCode = 3
)

func (c KeyMaterialClientCode) String() string {
	return [...]string{"success", "keyMaterialExhausted", "onlyLastResort", "nothingCompatible", "unknown"}[min(int(c), 4)]
}

// ClientKeyMaterial is one client's result.
type ClientKeyMaterial struct {
	Status     KeyMaterialClientCode
	Client     URI
	KeyPackage *mls.Message // success: an MLSMessage of wire format mls_key_package
	// Capabilities may accompany nothingCompatible; nil when withheld.
	Capabilities *mls.Capabilities
}

// EncodeTLS writes the client result (protocol mls10).
func (c *ClientKeyMaterial) EncodeTLS(w *wire.Writer) {
	w.Uint8(uint8(c.Status))
	c.Client.EncodeTLS(w)
	switch c.Status {
	case ClientSuccess:
		writeMessage(w, c.KeyPackage, "client KeyPackage")
	case ClientNothingCompatible:
		w.Optional(c.Capabilities != nil, func(w *wire.Writer) { w.Encode(c.Capabilities) })
	}
}

// DecodeTLS reads the client result.
func (c *ClientKeyMaterial) DecodeTLS(r *wire.Reader) {
	readEnum(r, &c.Status, "key material client code", func(s KeyMaterialClientCode) bool { return s <= ClientNothingCompatible })
	c.Client.DecodeTLS(r)
	c.KeyPackage, c.Capabilities = nil, nil
	switch c.Status {
	case ClientSuccess:
		c.KeyPackage = readMessage(r, mls.WireKeyPackage, "client KeyPackage")
	case ClientNothingCompatible:
		r.Optional(func(r *wire.Reader) {
			c.Capabilities = new(mls.Capabilities)
			r.Decode(c.Capabilities)
		})
	}
}

// UserKeyMaterial is one user's result. Clients is populated only for
// success, partialSuccess and (optionally) noCompatibleMaterial.
type UserKeyMaterial struct {
	Status  KeyMaterialUserCode
	User    URI
	Clients []ClientKeyMaterial
}

// EncodeTLS writes the user result.
func (u *UserKeyMaterial) EncodeTLS(w *wire.Writer) {
	w.Uint8(uint8(u.Status))
	u.User.EncodeTLS(w)
	writeList(w, u.Clients)
}

// DecodeTLS reads the user result and enforces which codes may list clients.
func (u *UserKeyMaterial) DecodeTLS(r *wire.Reader) {
	readEnum(r, &u.Status, "key material user code", func(s KeyMaterialUserCode) bool { return s <= UserDeleted })
	u.User.DecodeTLS(r)
	readList(r, &u.Clients)
	switch u.Status {
	case UserSuccess, UserPartialSuccess, UserNoCompatibleMaterial:
	default:
		if r.OK() && len(u.Clients) > 0 {
			r.Failf("user code %s must not list clients", u.Status)
		}
	}
}

// KeyMaterialResponse answers a KeyMaterialRequest.
type KeyMaterialResponse struct {
	Protocol Protocol
	Users    []UserKeyMaterial
}

// EncodeTLS writes the response.
func (k *KeyMaterialResponse) EncodeTLS(w *wire.Writer) {
	w.Uint8(uint8(k.Protocol))
	writeList(w, k.Users)
}

// DecodeTLS reads the response.
func (k *KeyMaterialResponse) DecodeTLS(r *wire.Reader) {
	readProtocol(r, &k.Protocol)
	readList(r, &k.Users)
}
