package proto

import (
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// AbusiveMessage is an application message reported as abusive, with the
// key and nonce that decrypt just that message's content.
type AbusiveMessage struct {
	Message *mls.Message // mls_private_message, content type application
	Key     []byte
	Nonce   []byte
}

// EncodeTLS writes the message.
func (a *AbusiveMessage) EncodeTLS(w *wire.Writer) {
	writeMessage(w, a.Message, "abusive message")
	w.Opaque(a.Key)
	w.Opaque(a.Nonce)
}

// DecodeTLS reads the message.
func (a *AbusiveMessage) DecodeTLS(r *wire.Reader) {
	a.Message = readMessage(r, mls.WirePrivateMessage, "abusive message")
	if r.OK() && a.Message.Private.ContentType != mls.ContentApplication {
		r.Failf("an abusive message must be an application message, not a %s", a.Message.Private.ContentType)
	}
	r.Opaque(&a.Key)
	r.Opaque(&a.Nonce)
}

// AbuseType classifies a report. The seed leaves it undefined; mimi-hub
// defines these values (DECISIONS.md).
type AbuseType uint8

// Abuse types.
const (
	AbuseSpam          AbuseType = 1
	AbuseHarassment    AbuseType = 2
	AbuseHate          AbuseType = 3
	AbuseViolence      AbuseType = 4
	AbuseSexual        AbuseType = 5
	AbuseImpersonation AbuseType = 6
	AbuseIllegal       AbuseType = 7
	AbuseOther         AbuseType = 255
)

func validAbuseType(t AbuseType) bool { return t >= AbuseSpam && t <= AbuseIllegal || t == AbuseOther }

// AbuseReport is the body of /reportAbuse (seed section 7.9). The seed lists
// messages twice; it appears once here, where it is first listed.
type AbuseReport struct {
	ReportingUser   URI
	AllegedAbuser   URI
	GroupID         []byte
	Epoch           uint64
	AllegedAbuserAt uint32 // the alleged abuser's leaf index
	Messages        []AbusiveMessage
	Reason          AbuseType
	Note            string
}

// EncodeTLS writes the report.
func (a *AbuseReport) EncodeTLS(w *wire.Writer) {
	a.ReportingUser.EncodeTLS(w)
	a.AllegedAbuser.EncodeTLS(w)
	w.Opaque(a.GroupID)
	w.Uint64(a.Epoch)
	w.Uint32(a.AllegedAbuserAt)
	writeList(w, a.Messages)
	w.Uint8(uint8(a.Reason))
	writeString(w, a.Note)
}

// DecodeTLS reads the report.
func (a *AbuseReport) DecodeTLS(r *wire.Reader) {
	a.ReportingUser.DecodeTLS(r)
	a.AllegedAbuser.DecodeTLS(r)
	r.Opaque(&a.GroupID)
	r.Uint64(&a.Epoch)
	r.Uint32(&a.AllegedAbuserAt)
	readList(r, &a.Messages)
	readEnum(r, &a.Reason, "abuse type", validAbuseType)
	readString(r, &a.Note)
}
