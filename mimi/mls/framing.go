package mls

import (
	"fmt"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// SenderType says who sent a message (RFC 9420 section 6).
type SenderType uint8

// Sender types.
const (
	SenderMember            SenderType = 1
	SenderExternal          SenderType = 2
	SenderNewMemberProposal SenderType = 3
	SenderNewMemberCommit   SenderType = 4
)

func (t SenderType) String() string {
	switch t {
	case SenderMember:
		return "member"
	case SenderExternal:
		return "external"
	case SenderNewMemberProposal:
		return "new_member_proposal"
	case SenderNewMemberCommit:
		return "new_member_commit"
	}
	return fmt.Sprintf("sender type %d", uint8(t))
}

// Sender identifies a message's sender. Index is the leaf index of a member or
// the sender_index of an external sender.
type Sender struct {
	Type  SenderType
	Index uint32
}

// MemberSender returns the sender for the member at leaf.
func MemberSender(leaf LeafIndex) Sender { return Sender{Type: SenderMember, Index: uint32(leaf)} }

// EncodeTLS writes the sender.
func (s *Sender) EncodeTLS(w *wire.Writer) {
	w.Uint8(uint8(s.Type))
	switch s.Type {
	case SenderMember, SenderExternal:
		w.Uint32(s.Index)
	case SenderNewMemberProposal, SenderNewMemberCommit:
	default:
		w.Fail(fmt.Errorf("cannot encode %s", s.Type))
	}
}

// DecodeTLS reads the sender.
func (s *Sender) DecodeTLS(r *wire.Reader) {
	var t uint8
	r.Uint8(&t)
	*s = Sender{Type: SenderType(t)}
	switch s.Type {
	case SenderMember, SenderExternal:
		r.Uint32(&s.Index)
	case SenderNewMemberProposal, SenderNewMemberCommit:
	default:
		if r.OK() {
			r.Failf("unknown sender type %d", t)
		}
	}
}

// ContentType says what a framed message carries.
type ContentType uint8

// Content types.
const (
	ContentApplication ContentType = 1
	ContentProposal    ContentType = 2
	ContentCommit      ContentType = 3
)

func (t ContentType) String() string {
	switch t {
	case ContentApplication:
		return "application"
	case ContentProposal:
		return "proposal"
	case ContentCommit:
		return "commit"
	}
	return fmt.Sprintf("content type %d", uint8(t))
}

func readContentType(r *wire.Reader, p *ContentType) {
	var t uint8
	r.Uint8(&t)
	*p = ContentType(t)
	if r.OK() && (t < 1 || t > 3) {
		r.Failf("unknown content type %d", t)
	}
}

// WireFormat says how an MLSMessage is framed (RFC 9420 section 17.2).
type WireFormat uint16

// Wire formats.
const (
	WirePublicMessage  WireFormat = 1
	WirePrivateMessage WireFormat = 2
	WireWelcome        WireFormat = 3
	WireGroupInfo      WireFormat = 4
	WireKeyPackage     WireFormat = 5
)

func (f WireFormat) String() string {
	switch f {
	case WirePublicMessage:
		return "mls_public_message"
	case WirePrivateMessage:
		return "mls_private_message"
	case WireWelcome:
		return "mls_welcome"
	case WireGroupInfo:
		return "mls_group_info"
	case WireKeyPackage:
		return "mls_key_package"
	}
	return fmt.Sprintf("wire format 0x%04x", uint16(f))
}

// FramedContent is the signed part of a handshake or application message.
// ContentType selects which of ApplicationData, Proposal and Commit is set.
type FramedContent struct {
	GroupID           []byte
	Epoch             uint64
	Sender            Sender
	AuthenticatedData []byte
	ContentType       ContentType
	ApplicationData   []byte
	Proposal          *Proposal
	Commit            *Commit
}

// EncodeTLS writes the framed content.
func (c *FramedContent) EncodeTLS(w *wire.Writer) {
	w.Opaque(c.GroupID)
	w.Uint64(c.Epoch)
	w.Encode(&c.Sender)
	w.Opaque(c.AuthenticatedData)
	w.Uint8(uint8(c.ContentType))
	c.encodeBody(w)
}

func (c *FramedContent) encodeBody(w *wire.Writer) {
	switch c.ContentType {
	case ContentApplication:
		w.Opaque(c.ApplicationData)
	case ContentProposal:
		if c.Proposal == nil {
			w.Fail(fmt.Errorf("proposal content without a proposal"))
			return
		}
		w.Encode(c.Proposal)
	case ContentCommit:
		if c.Commit == nil {
			w.Fail(fmt.Errorf("commit content without a commit"))
			return
		}
		w.Encode(c.Commit)
	default:
		w.Fail(fmt.Errorf("cannot encode %s", c.ContentType))
	}
}

// DecodeTLS reads the framed content.
func (c *FramedContent) DecodeTLS(r *wire.Reader) {
	r.Opaque(&c.GroupID)
	r.Uint64(&c.Epoch)
	r.Decode(&c.Sender)
	r.Opaque(&c.AuthenticatedData)
	readContentType(r, &c.ContentType)
	c.decodeBody(r)
}

func (c *FramedContent) decodeBody(r *wire.Reader) {
	c.ApplicationData, c.Proposal, c.Commit = nil, nil, nil
	switch c.ContentType {
	case ContentApplication:
		r.Opaque(&c.ApplicationData)
	case ContentProposal:
		c.Proposal = new(Proposal)
		r.Decode(c.Proposal)
	case ContentCommit:
		c.Commit = new(Commit)
		r.Decode(c.Commit)
	}
}

// FramedContentAuthData authenticates framed content: the sender's signature
// and, for commits, the confirmation tag.
type FramedContentAuthData struct {
	Signature       []byte
	ConfirmationTag []byte // commits only
}

func (a *FramedContentAuthData) encode(w *wire.Writer, ct ContentType) {
	w.Opaque(a.Signature)
	if ct == ContentCommit {
		w.Opaque(a.ConfirmationTag)
	}
}

func (a *FramedContentAuthData) decode(r *wire.Reader, ct ContentType) {
	r.Opaque(&a.Signature)
	a.ConfirmationTag = nil
	if ct == ContentCommit {
		r.Opaque(&a.ConfirmationTag)
	}
}

// AuthenticatedContent is framed content with its authentication data, the
// value that proposal references and transcript hashes cover.
type AuthenticatedContent struct {
	WireFormat WireFormat
	Content    FramedContent
	Auth       FramedContentAuthData
}

// EncodeTLS writes the authenticated content.
func (a *AuthenticatedContent) EncodeTLS(w *wire.Writer) {
	w.Uint16(uint16(a.WireFormat))
	w.Encode(&a.Content)
	a.Auth.encode(w, a.Content.ContentType)
}

// DecodeTLS reads the authenticated content.
func (a *AuthenticatedContent) DecodeTLS(r *wire.Reader) {
	var f uint16
	r.Uint16(&f)
	a.WireFormat = WireFormat(f)
	r.Decode(&a.Content)
	a.Auth.decode(r, a.Content.ContentType)
}

// framedContentTBS returns FramedContentTBS. ctx is the encoded GroupContext;
// it is included for member and new_member_commit senders.
func framedContentTBS(wf WireFormat, c *FramedContent, ctx []byte) ([]byte, error) {
	var w wire.Writer
	w.Uint16(uint16(MLS10))
	w.Uint16(uint16(wf))
	w.Encode(c)
	if c.Sender.Type == SenderMember || c.Sender.Type == SenderNewMemberCommit {
		w.Raw(ctx)
	}
	return w.Bytes()
}

// VerifySignature checks the content's signature with the sender's key.
// groupContext is the encoded GroupContext of the epoch the content was sent
// in.
func (a *AuthenticatedContent) VerifySignature(s *Suite, signatureKey, groupContext []byte) error {
	tbs, err := framedContentTBS(a.WireFormat, &a.Content, groupContext)
	if err != nil {
		return err
	}
	return s.VerifyWithLabel(signatureKey, "FramedContentTBS", tbs, a.Auth.Signature)
}

// Sign sets the content's signature.
func (a *AuthenticatedContent) Sign(key *SigningKey, groupContext []byte) error {
	tbs, err := framedContentTBS(a.WireFormat, &a.Content, groupContext)
	if err != nil {
		return err
	}
	a.Auth.Signature, err = key.SignWithLabel("FramedContentTBS", tbs)
	return err
}

// PublicMessage is signed but unencrypted framing (RFC 9420 section 6.2).
type PublicMessage struct {
	Content       FramedContent
	Auth          FramedContentAuthData
	MembershipTag []byte // member senders only
}

// EncodeTLS writes the public message.
func (m *PublicMessage) EncodeTLS(w *wire.Writer) {
	w.Encode(&m.Content)
	m.Auth.encode(w, m.Content.ContentType)
	if m.Content.Sender.Type == SenderMember {
		w.Opaque(m.MembershipTag)
	}
}

// DecodeTLS reads the public message.
func (m *PublicMessage) DecodeTLS(r *wire.Reader) {
	r.Decode(&m.Content)
	m.Auth.decode(r, m.Content.ContentType)
	m.MembershipTag = nil
	if m.Content.Sender.Type == SenderMember {
		r.Opaque(&m.MembershipTag)
	}
}

// Authenticated returns the message as AuthenticatedContent.
func (m *PublicMessage) Authenticated() *AuthenticatedContent {
	return &AuthenticatedContent{WireFormat: WirePublicMessage, Content: m.Content, Auth: m.Auth}
}

// PrivateMessage is encrypted framing (RFC 9420 section 6.3). A hub reads
// only the header fields; the rest needs the group's secrets.
type PrivateMessage struct {
	GroupID             []byte
	Epoch               uint64
	ContentType         ContentType
	AuthenticatedData   []byte
	EncryptedSenderData []byte
	Ciphertext          []byte
}

// EncodeTLS writes the private message.
func (m *PrivateMessage) EncodeTLS(w *wire.Writer) {
	w.Opaque(m.GroupID)
	w.Uint64(m.Epoch)
	w.Uint8(uint8(m.ContentType))
	w.Opaque(m.AuthenticatedData)
	w.Opaque(m.EncryptedSenderData)
	w.Opaque(m.Ciphertext)
}

// DecodeTLS reads the private message.
func (m *PrivateMessage) DecodeTLS(r *wire.Reader) {
	r.Opaque(&m.GroupID)
	r.Uint64(&m.Epoch)
	readContentType(r, &m.ContentType)
	r.Opaque(&m.AuthenticatedData)
	r.Opaque(&m.EncryptedSenderData)
	r.Opaque(&m.Ciphertext)
}

// Message is an MLSMessage: a version, a wire format and exactly one body.
type Message struct {
	Version    ProtocolVersion
	WireFormat WireFormat
	Public     *PublicMessage
	Private    *PrivateMessage
	Welcome    *Welcome
	GroupInfo  *GroupInfo
	KeyPackage *KeyPackage
}

// EncodeTLS writes the MLSMessage.
func (m *Message) EncodeTLS(w *wire.Writer) {
	w.Uint16(uint16(m.Version))
	w.Uint16(uint16(m.WireFormat))
	var body wire.Encoder
	switch m.WireFormat {
	case WirePublicMessage:
		body = nilSafe(m.Public)
	case WirePrivateMessage:
		body = nilSafe(m.Private)
	case WireWelcome:
		body = nilSafe(m.Welcome)
	case WireGroupInfo:
		body = nilSafe(m.GroupInfo)
	case WireKeyPackage:
		body = nilSafe(m.KeyPackage)
	}
	if body == nil {
		w.Fail(fmt.Errorf("MLSMessage with %s has no matching body", m.WireFormat))
		return
	}
	w.Encode(body)
}

// nilSafe turns a typed nil pointer into a nil interface.
func nilSafe[T any, P interface {
	*T
	wire.Encoder
}](p P) wire.Encoder {
	if p == nil {
		return nil
	}
	return p
}

// DecodeTLS reads the MLSMessage. Unknown versions and wire formats are
// errors.
func (m *Message) DecodeTLS(r *wire.Reader) {
	var v, f uint16
	r.Uint16(&v)
	r.Uint16(&f)
	*m = Message{Version: ProtocolVersion(v), WireFormat: WireFormat(f)}
	if !r.OK() {
		return
	}
	if m.Version != MLS10 {
		r.Failf("unsupported protocol version %d", v)
		return
	}
	switch m.WireFormat {
	case WirePublicMessage:
		m.Public = new(PublicMessage)
		r.Decode(m.Public)
	case WirePrivateMessage:
		m.Private = new(PrivateMessage)
		r.Decode(m.Private)
	case WireWelcome:
		m.Welcome = new(Welcome)
		r.Decode(m.Welcome)
	case WireGroupInfo:
		m.GroupInfo = new(GroupInfo)
		r.Decode(m.GroupInfo)
	case WireKeyPackage:
		m.KeyPackage = new(KeyPackage)
		r.Decode(m.KeyPackage)
		if r.OK() && m.KeyPackage.Version != m.Version {
			r.Failf("KeyPackage version %d differs from the MLSMessage version %d", m.KeyPackage.Version, m.Version)
		}
	default:
		r.Failf("unknown wire format 0x%04x", f)
	}
}

// DecodeMessage decodes one MLSMessage that fills data exactly.
func DecodeMessage(data []byte) (*Message, error) {
	m := new(Message)
	if err := wire.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("decode MLSMessage: %w", err)
	}
	return m, nil
}

// NewPublicMessage wraps pm as an MLSMessage.
func NewPublicMessage(pm *PublicMessage) *Message {
	return &Message{Version: MLS10, WireFormat: WirePublicMessage, Public: pm}
}

// NewGroupInfoMessage wraps gi as an MLSMessage.
func NewGroupInfoMessage(gi *GroupInfo) *Message {
	return &Message{Version: MLS10, WireFormat: WireGroupInfo, GroupInfo: gi}
}

// NewKeyPackageMessage wraps kp as an MLSMessage.
func NewKeyPackageMessage(kp *KeyPackage) *Message {
	return &Message{Version: MLS10, WireFormat: WireKeyPackage, KeyPackage: kp}
}

// NewWelcomeMessage wraps wl as an MLSMessage.
func NewWelcomeMessage(wl *Welcome) *Message {
	return &Message{Version: MLS10, WireFormat: WireWelcome, Welcome: wl}
}
