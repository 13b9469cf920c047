package proto

import "github.com/mimihub/mimi-hub/mimi/wire"

// SearchIdentifierType says what an identifier query searches by (seed
// section 7.10).
type SearchIdentifierType uint8

// Search types.
const (
	SearchHandle       SearchIdentifierType = 1
	SearchNick         SearchIdentifierType = 2
	SearchEmail        SearchIdentifierType = 3
	SearchPhone        SearchIdentifierType = 4
	SearchPartialName  SearchIdentifierType = 5
	SearchWholeProfile SearchIdentifierType = 6
	SearchOIDCStdClaim SearchIdentifierType = 7
	SearchVCardField   SearchIdentifierType = 8
)

// IdentifierRequest is the body of /identifierQuery.
type IdentifierRequest struct {
	Type  SearchIdentifierType
	Value string
	// Field is the claim name (oidcStdClaim) or field name (vcardField).
	Field string
}

// EncodeTLS writes the request.
func (q *IdentifierRequest) EncodeTLS(w *wire.Writer) {
	w.Uint8(uint8(q.Type))
	writeString(w, q.Value)
	if q.Type == SearchOIDCStdClaim || q.Type == SearchVCardField {
		writeString(w, q.Field)
	}
}

// DecodeTLS reads the request.
func (q *IdentifierRequest) DecodeTLS(r *wire.Reader) {
	readEnum(r, &q.Type, "search identifier type", func(t SearchIdentifierType) bool { return t >= SearchHandle && t <= SearchVCardField })
	readString(r, &q.Value)
	q.Field = ""
	if q.Type == SearchOIDCStdClaim || q.Type == SearchVCardField {
		readString(r, &q.Field)
	}
}

// IdentifierQueryCode is the outcome of an identifier query.
type IdentifierQueryCode uint8

// Query codes.
const (
	QuerySuccess          IdentifierQueryCode = 0
	QueryNotFound         IdentifierQueryCode = 1
	QueryAmbiguous        IdentifierQueryCode = 2
	QueryForbidden        IdentifierQueryCode = 3
	QueryUnsupportedField IdentifierQueryCode = 4
)

func (c IdentifierQueryCode) String() string {
	return [...]string{"success", "notFound", "ambiguous", "forbidden", "unsupportedField", "unknown"}[min(int(c), 5)]
}

// FieldSource says which schema a profile field comes from.
type FieldSource uint8

// Field sources.
const (
	FieldOIDCStdClaim FieldSource = 7
	FieldVCardField   FieldSource = 8
)

// ProfileField is one field of a user profile.
type ProfileField struct {
	Source FieldSource
	Name   string
	Value  []byte
}

// EncodeTLS writes the field.
func (f *ProfileField) EncodeTLS(w *wire.Writer) {
	w.Uint8(uint8(f.Source))
	writeString(w, f.Name)
	w.Opaque(f.Value)
}

// DecodeTLS reads the field.
func (f *ProfileField) DecodeTLS(r *wire.Reader) {
	readEnum(r, &f.Source, "field source", func(s FieldSource) bool { return s == FieldOIDCStdClaim || s == FieldVCardField })
	readString(r, &f.Name)
	r.Opaque(&f.Value)
}

// UserProfile is a found user.
type UserProfile struct {
	URI    URI
	Fields []ProfileField
}

// EncodeTLS writes the profile.
func (p *UserProfile) EncodeTLS(w *wire.Writer) {
	p.URI.EncodeTLS(w)
	writeList(w, p.Fields)
}

// DecodeTLS reads the profile.
func (p *UserProfile) DecodeTLS(r *wire.Reader) {
	p.URI.DecodeTLS(r)
	readList(r, &p.Fields)
}

// IdentifierResponse answers an identifier query.
type IdentifierResponse struct {
	Code     IdentifierQueryCode
	URIs     []URI
	Profiles []UserProfile
}

// EncodeTLS writes the response.
func (q *IdentifierResponse) EncodeTLS(w *wire.Writer) {
	w.Uint8(uint8(q.Code))
	writeURIs(w, q.URIs)
	writeList(w, q.Profiles)
}

// DecodeTLS reads the response.
func (q *IdentifierResponse) DecodeTLS(r *wire.Reader) {
	readEnum(r, &q.Code, "identifier query code", func(c IdentifierQueryCode) bool { return c <= QueryUnsupportedField })
	readURIs(r, &q.URIs)
	readList(r, &q.Profiles)
}
