package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Media types of MIMI bodies.
const (
	// ContentTypeMIMI is the media type of every MIMI request and response
	// body: the TLS presentation encoding of the seed's struct.
	ContentTypeMIMI = "application/mimi"
	// ContentTypeDirectory is the media type of the endpoint directory.
	ContentTypeDirectory = "application/mimi-directory"
)

// HTTP headers of the MIMI endpoints beyond the seed (DECISIONS.md item 20).
const (
	// HeaderSequence carries the hub's number of a /fanout batch's first
	// message.
	HeaderSequence = "Mimi-Sequence"
	// HeaderExclude lists, comma-separated, the client URIs a /fanout batch
	// must not be delivered to.
	HeaderExclude = "Mimi-Exclude"
)

// DirectoryPath is the well-known path of the endpoint directory.
const DirectoryPath = "/.well-known/mimi-protocol-directory"

// Defaults of FederationConfig and UserConfig.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultMaxResponse  = 64 << 20
	DefaultMaxVector    = 64 << 20
	DefaultMaxDownload  = 256 << 20
	DefaultDirectoryTTL = 5 * time.Minute
	// DefaultMaxDirectories bounds the directories cached.
	DefaultMaxDirectories = 10_000
	maxDirectorySize      = 1 << 20
)

// FederationConfig configures a Federation client.
type FederationConfig struct {
	// Domain is this provider's domain; its TLS client certificate names it.
	Domain string
	// HTTPClient sends the requests. When nil, one is built from TLS.
	HTTPClient *http.Client
	// TLS is used when HTTPClient is nil. It must hold this provider's
	// client certificate (Certificates or GetClientCertificate), which must
	// name Domain; RootCAs are the roots peers are verified against (nil:
	// the system roots). Peer certificates are verified against the host
	// of the URL requested.
	TLS *tls.Config
	// Resolve maps a peer domain to the base URL of its MIMI endpoints
	// (https, no trailing slash needed). Nil means "https://" + domain.
	Resolve func(domain string) (baseURL string, err error)
	// Timeout bounds each request, answer included (DownloadFile: until
	// the answer's headers). Zero means DefaultTimeout.
	Timeout time.Duration
	// MaxResponse bounds an answer's body; zero means DefaultMaxResponse.
	MaxResponse int64
	// MaxDownload bounds a downloaded file; zero means DefaultMaxDownload.
	MaxDownload int64
	// MaxVector bounds every vector when decoding answers; zero means
	// DefaultMaxVector.
	MaxVector int
	// DirectoryTTL is how long a peer's directory (or its absence) is
	// cached. Zero means DefaultDirectoryTTL; negative disables caching.
	DirectoryTTL time.Duration
	// MaxDirectories bounds the directories cached (zero:
	// DefaultMaxDirectories). The domains contacted are named by the
	// provider's clients, so a full cache first drops expired entries (a
	// pass at most once a second), then caches nothing new until some
	// expire; an uncached peer costs a directory fetch per request.
	MaxDirectories int
	// Logger receives a debug line per request; nil discards.
	Logger *slog.Logger
	// Now is the clock for the directory cache and Retry-After dates; nil
	// means time.Now.
	Now func() time.Time
}

// Federation is the MIMI client a provider uses to reach other providers
// (draft-barnes-mimi-protocol section 7): it discovers each peer's
// endpoints from its directory, sends the TLS encodings of the seed's
// structs over mutual TLS, and decodes the answers strictly. It is safe for
// concurrent use.
//
// Methods return the peer's answer when it is a MIMI answer, including
// refusals such as an UpdateRoomResponse with code wrongEpoch. A non-2xx
// HTTP answer is a *StatusError, a request that got no answer a
// *TransportError; IsRetryable and RetryAfter classify both.
type Federation struct {
	cfg FederationConfig
	hc  *http.Client
	log *slog.Logger

	mu   sync.Mutex
	dirs map[string]cachedDirectory
	// swept is when the cache last dropped its expired entries.
	swept time.Time
}

// cachedDirectory is a peer's directory, or its absence (dir nil: the peer
// answered 404 and the seed's default paths apply).
type cachedDirectory struct {
	base    string
	dir     *proto.Directory
	expires time.Time
}

// NewFederation checks cfg and returns a client.
func NewFederation(cfg FederationConfig) (*Federation, error) {
	if _, err := proto.URI("mimi://" + cfg.Domain + "/u/x").Parse(); err != nil {
		return nil, fmt.Errorf("federation client: invalid domain %q", cfg.Domain)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxResponse <= 0 {
		cfg.MaxResponse = DefaultMaxResponse
	}
	if cfg.MaxDownload <= 0 {
		cfg.MaxDownload = DefaultMaxDownload
	}
	if cfg.MaxVector <= 0 {
		cfg.MaxVector = DefaultMaxVector
	}
	if cfg.DirectoryTTL == 0 {
		cfg.DirectoryTTL = DefaultDirectoryTTL
	}
	if cfg.MaxDirectories <= 0 {
		cfg.MaxDirectories = DefaultMaxDirectories
	}
	if cfg.Resolve == nil {
		cfg.Resolve = func(domain string) (string, error) { return "https://" + domain, nil }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		if err := checkClientCertificate(cfg.TLS, cfg.Domain); err != nil {
			return nil, fmt.Errorf("federation client: %w", err)
		}
		hc = &http.Client{Transport: newTransport(cfg.TLS)}
	}
	return &Federation{cfg: cfg, hc: hc, log: log.With("component", "mimi-federation-client", "domain", cfg.Domain), dirs: map[string]cachedDirectory{}}, nil
}

// newTransport returns an HTTP transport using tc.
func newTransport(tc *tls.Config) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if tc != nil {
		tc = tc.Clone()
		if tc.MinVersion == 0 {
			tc.MinVersion = tls.VersionTLS12
		}
		t.TLSClientConfig = tc
	}
	return t
}

// checkClientCertificate checks that tc presents a client certificate, and
// that a static one names domain.
func checkClientCertificate(tc *tls.Config, domain string) error {
	if tc == nil || (len(tc.Certificates) == 0 && tc.GetClientCertificate == nil) {
		return errors.New("mutual TLS needs a client certificate (TLS.Certificates or TLS.GetClientCertificate) or an HTTPClient")
	}
	if len(tc.Certificates) == 0 {
		return nil
	}
	c := tc.Certificates[0]
	leaf := c.Leaf
	if leaf == nil {
		if len(c.Certificate) == 0 {
			return errors.New("the client certificate is empty")
		}
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return fmt.Errorf("client certificate: %w", err)
		}
	}
	if err := leaf.VerifyHostname(domain); err != nil {
		return fmt.Errorf("the client certificate does not name %s: %w", domain, err)
	}
	return nil
}

// Domain returns this provider's domain.
func (f *Federation) Domain() string { return f.cfg.Domain }

// roomParts returns a room URI's hub domain and id (its last segment).
func roomParts(room proto.URI) (hub, id string, err error) {
	p, err := room.Parse()
	if err != nil {
		return "", "", err
	}
	if p.Kind != proto.KindRoom {
		return "", "", fmt.Errorf("%q is not a room URI", room)
	}
	return p.Domain, p.Room, nil
}

// UpdateRoom sends a commit or proposals to the room's hub (POST
// /updateRoom/{roomId}). A refusal is the returned response's code.
func (f *Federation) UpdateRoom(ctx context.Context, room proto.URI, req *proto.UpdateRoomRequest) (*proto.UpdateRoomResponse, error) {
	out := new(proto.UpdateRoomResponse)
	if err := f.roomCall(ctx, proto.UpdateRoom, room, req, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ProvisionalMessage sends an application message (an MLSMessage of wire
// format mls_private_message) to the room's hub (POST
// /provisionalMessage/{roomId}).
func (f *Federation) ProvisionalMessage(ctx context.Context, room proto.URI, m *mls.Message) (*proto.UpdateRoomResponse, error) {
	if m == nil {
		return nil, errors.New("provisionalMessage: no message")
	}
	out := new(proto.UpdateRoomResponse)
	if err := f.roomCall(ctx, proto.ProvisionalMessage, room, m, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Fanout delivers a batch of a room's accepted messages to a follower
// provider (POST /fanout/{roomId}), with the hub's number of the first
// message in Mimi-Sequence and, when exclude is not empty, the clients that
// must not receive it in Mimi-Exclude.
func (f *Federation) Fanout(ctx context.Context, peer string, room proto.URI, firstSeq uint64, batch proto.FanoutBatch, exclude []proto.URI) error {
	return f.fanout(ctx, peer, room, firstSeq, len(batch), batch, exclude)
}

// FanoutEncoded is Fanout for messages already encoded (each a
// FanoutMessage's TLS encoding), as a hub's outbox keeps them: the body is
// their concatenation, with nothing decoded or encoded again.
func (f *Federation) FanoutEncoded(ctx context.Context, peer string, room proto.URI, firstSeq uint64, messages [][]byte, exclude []proto.URI) error {
	// The batch's encoding is its messages' one after another: joined in
	// one allocation of the exact size, the body is not encoded again.
	return f.fanout(ctx, peer, room, firstSeq, len(messages), encodedBody(bytes.Join(messages, nil)), exclude)
}

// encodedBody is a request body already in its wire form; call sends it
// as it is.
type encodedBody []byte

// EncodeTLS writes the body.
func (b encodedBody) EncodeTLS(w *wire.Writer) { w.Raw(b) }

// redactedURL logs a URL without its password, formatted only when the
// record is logged (the debug records of every request usually are not).
type redactedURL struct{ u *url.URL }

// LogValue implements slog.LogValuer.
func (r redactedURL) LogValue() slog.Value { return slog.StringValue(r.u.Redacted()) }

func (f *Federation) fanout(ctx context.Context, peer string, room proto.URI, firstSeq uint64, n int, body wire.Encoder, exclude []proto.URI) error {
	_, id, err := roomParts(room)
	if err != nil {
		return fmt.Errorf("fanout: %w", err)
	}
	if n == 0 {
		return errors.New("fanout: empty batch")
	}
	if firstSeq == 0 {
		return errors.New("fanout: hub sequence numbers start at 1")
	}
	h := http.Header{}
	h.Set(HeaderSequence, strconv.FormatUint(firstSeq, 10))
	if len(exclude) > 0 {
		list := make([]string, len(exclude))
		for i, c := range exclude {
			if strings.ContainsAny(string(c), ", \t\r\n") || c == "" {
				return fmt.Errorf("fanout: client URI %q cannot be listed in %s", c, HeaderExclude)
			}
			list[i] = string(c)
		}
		h.Set(HeaderExclude, strings.Join(list, ","))
	}
	return f.call(ctx, "fanout "+string(room), peer, proto.FanoutMessages, map[string]string{"roomId": id}, body, h, nil)
}

// ClaimKeyMaterial claims KeyPackages of users at targetDomain (POST
// /claimKeymaterial/{targetDomain}), sent to via: the target itself, or the
// hub of the room they are for, which relays the claim.
func (f *Federation) ClaimKeyMaterial(ctx context.Context, via, targetDomain string, req *proto.KeyMaterialRequest) (*proto.KeyMaterialResponse, error) {
	out := new(proto.KeyMaterialResponse)
	vars := map[string]string{"targetDomain": targetDomain, "domain": targetDomain}
	if err := f.call(ctx, "claimKeyMaterial for "+targetDomain, via, proto.ClaimKeyMaterial, vars, req, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ClaimGroupInfo asks the room's hub for the GroupInfo a client needs to
// join by external commit (POST /claimGroupInfo/{roomId}). A refusal is the
// returned response's status.
func (f *Federation) ClaimGroupInfo(ctx context.Context, room proto.URI, req *proto.GroupInfoRequest) (*proto.GroupInfoResponse, error) {
	out := new(proto.GroupInfoResponse)
	if err := f.roomCall(ctx, proto.ClaimGroupInfo, room, req, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// RequestConsent sends a consent request or its cancellation to the
// target's provider (POST /requestConsent/{targetDomain}).
func (f *Federation) RequestConsent(ctx context.Context, targetDomain string, e *proto.ConsentEntry) error {
	vars := map[string]string{"targetDomain": targetDomain, "domain": targetDomain}
	return f.call(ctx, "requestConsent", targetDomain, proto.RequestConsent, vars, e, nil, nil)
}

// UpdateConsent sends a grant or revocation to the requester's provider
// (POST /updateConsent/{requesterDomain}).
func (f *Federation) UpdateConsent(ctx context.Context, requesterDomain string, e *proto.ConsentEntry) error {
	vars := map[string]string{"requesterDomain": requesterDomain, "domain": requesterDomain}
	return f.call(ctx, "updateConsent", requesterDomain, proto.UpdateConsent, vars, e, nil, nil)
}

// RemoveClients asks a room's hub to remove some of this provider's own
// clients from the room with the hub's own Remove proposals (POST
// /removeClients/{roomId}, an extension: DECISIONS.md item 27). It is not in
// the directory, so it goes to the hub's base URL.
func (f *Federation) RemoveClients(ctx context.Context, room proto.URI, req *proto.RemoveClientsRequest) error {
	return f.roomCall(ctx, proto.RemoveClients, room, req, nil, nil)
}

// ReportAbuse sends an abuse report to the room's hub (POST
// /reportAbuse/{roomId}).
func (f *Federation) ReportAbuse(ctx context.Context, room proto.URI, r *proto.AbuseReport) error {
	return f.roomCall(ctx, proto.ReportAbuse, room, r, nil, nil)
}

// IdentifierQuery looks users up at domain (POST /identifierQuery/{domain};
// DECISIONS.md item 16). A peer whose directory lists the seed's GET gets
// a GET with the same body.
func (f *Federation) IdentifierQuery(ctx context.Context, domain string, req *proto.IdentifierRequest) (*proto.IdentifierResponse, error) {
	out := new(proto.IdentifierResponse)
	if err := f.call(ctx, "identifierQuery", domain, proto.IdentifierQuery, map[string]string{"domain": domain}, req, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// DownloadFile fetches an asset through a hub (GET /downloadFile/{url},
// the asset URL percent-encoded as one path segment; DECISIONS.md item 17).
// The caller reads and closes the body; reading past MaxDownload fails with
// ErrResponseTooLarge. The Timeout covers the wait for the answer's headers;
// the transfer itself is bounded by ctx.
func (f *Federation) DownloadFile(ctx context.Context, hub string, assetURL string) (io.ReadCloser, error) {
	op := "downloadFile " + assetURL
	method, u, err := f.endpoint(ctx, hub, proto.DownloadFile, map[string]string{"url": assetURL})
	if err != nil {
		return nil, fmt.Errorf("mimi %s via %s: %w", op, hub, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(f.cfg.Timeout, cancel)
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		timer.Stop()
		cancel()
		return nil, fmt.Errorf("mimi %s via %s: %w", op, hub, err)
	}
	start := time.Now()
	resp, err := f.hc.Do(req)
	timer.Stop()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("mimi %s via %s: %w", op, hub, &TransportError{Method: method, URL: u.Redacted(), Err: err})
	}
	f.log.DebugContext(ctx, "mimi request", "op", "downloadFile", "peer", hub, "method", method, "url", redactedURL{u}, "status", resp.StatusCode, "duration", time.Since(start))
	if resp.StatusCode/100 != 2 {
		defer cancel()
		defer resp.Body.Close()
		return nil, fmt.Errorf("mimi %s via %s: %w", op, hub, statusError(resp, f.cfg.Now()))
	}
	if resp.ContentLength > f.cfg.MaxDownload {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("mimi %s via %s: %w: %d bytes announced, the limit is %d", op, hub, ErrResponseTooLarge, resp.ContentLength, f.cfg.MaxDownload)
	}
	return &limitedBody{r: resp.Body, left: f.cfg.MaxDownload, limit: f.cfg.MaxDownload, cancel: cancel}, nil
}

// WelcomeTree fetches from the room's hub the ratchet tree a Welcome's
// recipient needs (POST /welcomeTree/{roomId}, DECISIONS.md item 5): the
// tree in wire form, as a body the caller reads and closes, with its
// announced length (-1 if none). It is not read here, so a provider
// relays a large tree to its client without holding it; reading past
// MaxResponse fails with ErrResponseTooLarge. The Timeout covers the wait
// for the answer's headers; the transfer is bounded by ctx.
func (f *Federation) WelcomeTree(ctx context.Context, room proto.URI, req *proto.WelcomeTreeRequest) (io.ReadCloser, int64, error) {
	hub, id, err := roomParts(room)
	if err != nil {
		return nil, 0, fmt.Errorf("mimi welcomeTree: %w", err)
	}
	op := "welcomeTree " + string(room)
	method, u, err := f.endpoint(ctx, hub, proto.WelcomeTree, map[string]string{"roomId": id})
	if err != nil {
		return nil, 0, fmt.Errorf("mimi %s to %s: %w", op, hub, err)
	}
	data, err := wire.Marshal(req)
	if err != nil {
		return nil, 0, fmt.Errorf("mimi %s: encoding the request: %w", op, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(f.cfg.Timeout, cancel)
	hreq, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(data))
	if err != nil {
		timer.Stop()
		cancel()
		return nil, 0, fmt.Errorf("mimi %s to %s: %w", op, hub, err)
	}
	hreq.Header.Set("Content-Type", ContentTypeMIMI)
	hreq.Header.Set("Accept", ContentTypeMIMI)
	resp, err := f.hc.Do(hreq)
	timer.Stop()
	if err != nil {
		cancel()
		return nil, 0, fmt.Errorf("mimi %s to %s: %w", op, hub, &TransportError{Method: method, URL: u.Redacted(), Err: err})
	}
	fail := func(err error) (io.ReadCloser, int64, error) {
		resp.Body.Close()
		cancel()
		return nil, 0, fmt.Errorf("mimi %s to %s: %w", op, hub, err)
	}
	if resp.StatusCode/100 != 2 {
		return fail(statusError(resp, f.cfg.Now()))
	}
	if err := checkContentType(resp.Header.Get("Content-Type"), ContentTypeMIMI); err != nil {
		return fail(err)
	}
	if resp.ContentLength > f.cfg.MaxResponse {
		return fail(fmt.Errorf("%w: %d bytes announced, the limit is %d", ErrResponseTooLarge, resp.ContentLength, f.cfg.MaxResponse))
	}
	return &limitedBody{r: resp.Body, left: f.cfg.MaxResponse, limit: f.cfg.MaxResponse, cancel: cancel}, resp.ContentLength, nil
}

// roomCall sends a request about a room to its hub.
func (f *Federation) roomCall(ctx context.Context, p proto.Primitive, room proto.URI, body wire.Encoder, h http.Header, out wire.Decoder) error {
	hub, id, err := roomParts(room)
	if err != nil {
		return fmt.Errorf("mimi %s: %w", p, err)
	}
	return f.call(ctx, p.String()+" "+string(room), hub, p, map[string]string{"roomId": id}, body, h, out)
}

// call sends one MIMI request to peer and decodes its answer into out (nil:
// the answer has no body).
func (f *Federation) call(ctx context.Context, op, peer string, p proto.Primitive, vars map[string]string, body wire.Encoder, h http.Header, out wire.Decoder) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("mimi %s to %s: %w", op, peer, err)
		}
	}()
	method, u, err := f.endpoint(ctx, peer, p, vars)
	if err != nil {
		return err
	}
	data, encoded := body.(encodedBody)
	if !encoded {
		if data, err = wire.Marshal(body); err != nil {
			return fmt.Errorf("encoding the request: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(data))
	if err != nil {
		return err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", ContentTypeMIMI)
	req.Header.Set("Accept", ContentTypeMIMI)
	if key := IdempotencyKey(ctx); key != "" && method == http.MethodPost {
		req.Header.Set(HeaderIdempotencyKey, key)
	}
	start := time.Now()
	resp, err := f.hc.Do(req)
	if err != nil {
		f.log.DebugContext(ctx, "mimi request failed", "op", p.String(), "peer", peer, "method", method, "url", redactedURL{u}, "err", err)
		return &TransportError{Method: method, URL: u.Redacted(), Err: err}
	}
	defer resp.Body.Close()
	f.log.DebugContext(ctx, "mimi request", "op", p.String(), "peer", peer, "method", method, "url", redactedURL{u}, "status", resp.StatusCode, "duration", time.Since(start))
	if resp.StatusCode/100 != 2 {
		return statusError(resp, f.cfg.Now())
	}
	if out == nil {
		// The answer has no body; drain a little so the connection can be
		// reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	if err := checkContentType(resp.Header.Get("Content-Type"), ContentTypeMIMI); err != nil {
		return err
	}
	if resp.ContentLength > f.cfg.MaxResponse {
		return fmt.Errorf("%w: %d bytes announced, the limit is %d", ErrResponseTooLarge, resp.ContentLength, f.cfg.MaxResponse)
	}
	ans, err := readBody(resp.Body, f.cfg.MaxResponse)
	if err != nil {
		if errors.Is(err, ErrResponseTooLarge) {
			return err
		}
		return &TransportError{Method: method, URL: u.Redacted(), Err: fmt.Errorf("reading the answer: %w", err)}
	}
	if err := proto.Decode(ans, out, f.cfg.MaxVector); err != nil {
		return fmt.Errorf("decoding the answer: %w", err)
	}
	return nil
}

// checkContentType accepts a missing Content-Type or one of want
// (parameters ignored).
func checkContentType(ct string, want ...string) error {
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("invalid Content-Type %q: %w", ct, err)
	}
	for _, w := range want {
		if mt == w {
			return nil
		}
	}
	return fmt.Errorf("unexpected Content-Type %q, want %s", ct, strings.Join(want, " or "))
}

// defaultEndpoint returns the seed's method and path for p.
func defaultEndpoint(p proto.Primitive) (method, path string) {
	switch p {
	case proto.RequestConsent:
		return http.MethodPost, "/requestConsent/{targetDomain}"
	case proto.UpdateConsent:
		return http.MethodPost, "/updateConsent/{requesterDomain}"
	case proto.ClaimKeyMaterial:
		return http.MethodPost, "/claimKeymaterial/{targetDomain}"
	case proto.UpdateRoom:
		return http.MethodPost, "/updateRoom/{roomId}"
	case proto.ProvisionalMessage:
		return http.MethodPost, "/provisionalMessage/{roomId}"
	case proto.FanoutMessages:
		return http.MethodPost, "/fanout/{roomId}"
	case proto.ClaimGroupInfo:
		return http.MethodPost, "/claimGroupInfo/{roomId}"
	case proto.DownloadFile:
		return http.MethodGet, "/downloadFile/{url}"
	case proto.ReportAbuse:
		return http.MethodPost, "/reportAbuse/{roomId}"
	case proto.IdentifierQuery:
		return http.MethodPost, "/identifierQuery/{domain}"
	case proto.RemoveClients:
		return http.MethodPost, proto.RemoveClientsPath
	case proto.WelcomeTree:
		return http.MethodPost, proto.WelcomeTreePath
	}
	return "", ""
}

// endpoint returns the method and URL of primitive p at peer: from the
// peer's directory, or the seed's default path under its base URL.
func (f *Federation) endpoint(ctx context.Context, peer string, p proto.Primitive, vars map[string]string) (string, *url.URL, error) {
	cd, err := f.lookup(ctx, peer)
	if err != nil {
		return "", nil, err
	}
	method, template := defaultEndpoint(p)
	if method == "" {
		return "", nil, fmt.Errorf("unknown MIMI primitive %d", p)
	}
	template = cd.base + template
	if cd.dir != nil {
		if e, ok := cd.dir.Find(p); ok {
			template = e.URI
			method = http.MethodPost
			if e.Method == proto.MethodGet {
				method = http.MethodGet
			}
		}
	}
	u, err := expand(template, vars)
	if err != nil {
		return "", nil, fmt.Errorf("%s endpoint of %s: %w", p, peer, err)
	}
	return method, u, nil
}

// expand replaces the {name} placeholders of an https URL template with
// the path-escaped values of vars.
func expand(template string, vars map[string]string) (*url.URL, error) {
	var b strings.Builder
	rest := template
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			b.WriteString(rest)
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("URL template %q has an unclosed placeholder", template)
		}
		name := rest[i+1 : i+j]
		v, ok := vars[name]
		if !ok {
			return nil, fmt.Errorf("URL template %q has placeholder {%s}, which this request does not fill", template, name)
		}
		if v == "" {
			return nil, fmt.Errorf("URL template %q: empty value for {%s}", template, name)
		}
		b.WriteString(rest[:i])
		b.WriteString(url.PathEscape(v))
		rest = rest[i+j+1:]
	}
	u, err := url.Parse(b.String())
	if err != nil {
		return nil, fmt.Errorf("URL template %q: %w", template, err)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("URL %q is not an https URL of a host", u.Redacted())
	}
	return u, nil
}

// baseURL resolves a peer domain to the base URL of its endpoints.
func (f *Federation) baseURL(peer string) (string, error) {
	if _, err := proto.URI("mimi://" + peer + "/u/x").Parse(); err != nil {
		return "", fmt.Errorf("invalid peer domain %q", peer)
	}
	base, err := f.cfg.Resolve(peer)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", peer, err)
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("base URL of %s: %w", peer, err)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("base URL %q of %s is not an https URL of a host", base, peer)
	}
	return strings.TrimRight(base, "/"), nil
}

// Directory returns peer's endpoint directory (GET
// /.well-known/mimi-protocol-directory), from the cache while it is fresh.
// A peer without a directory gives a *StatusError with status 404; requests
// to it use the seed's default paths. Callers must not modify the result.
func (f *Federation) Directory(ctx context.Context, peer string) (*proto.Directory, error) {
	cd, err := f.lookup(ctx, peer)
	if err != nil {
		return nil, err
	}
	if cd.dir == nil {
		return nil, fmt.Errorf("mimi directory of %s: %w", peer, &StatusError{Status: http.StatusNotFound, Message: "the peer has no directory"})
	}
	return cd.dir, nil
}

// lookup returns peer's cached directory or fetches it.
func (f *Federation) lookup(ctx context.Context, peer string) (cachedDirectory, error) {
	now := f.cfg.Now()
	f.mu.Lock()
	cd, ok := f.dirs[peer]
	f.mu.Unlock()
	if ok && now.Before(cd.expires) {
		return cd, nil
	}
	base, err := f.baseURL(peer)
	if err != nil {
		return cachedDirectory{}, err
	}
	dir, err := f.fetchDirectory(ctx, peer, base)
	if err != nil {
		return cachedDirectory{}, err
	}
	cd = cachedDirectory{base: base, dir: dir, expires: now.Add(f.cfg.DirectoryTTL)}
	if f.cfg.DirectoryTTL > 0 {
		f.cache(peer, cd, now)
	}
	return cd, nil
}

// cache keeps cd for peer within MaxDirectories entries.
func (f *Federation) cache(peer string, cd cachedDirectory, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.dirs[peer]; !ok && len(f.dirs) >= f.cfg.MaxDirectories {
		if now.Sub(f.swept) < time.Second {
			return
		}
		f.swept = now
		for p, c := range f.dirs {
			if !now.Before(c.expires) {
				delete(f.dirs, p)
			}
		}
		if len(f.dirs) >= f.cfg.MaxDirectories {
			return
		}
	}
	f.dirs[peer] = cd
}

// fetchDirectory GETs a peer's directory; nil means it has none (404).
func (f *Federation) fetchDirectory(ctx context.Context, peer, base string) (*proto.Directory, error) {
	u := base + DirectoryPath
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("mimi directory of %s: %w", peer, err)
	}
	req.Header.Set("Accept", ContentTypeDirectory)
	resp, err := f.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mimi directory of %s: %w", peer, &TransportError{Method: http.MethodGet, URL: u, Err: err})
	}
	defer resp.Body.Close()
	f.log.DebugContext(ctx, "mimi directory", "peer", peer, "url", u, "status", resp.StatusCode)
	if resp.StatusCode == http.StatusNotFound {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil, nil
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("mimi directory of %s: %w", peer, statusError(resp, f.cfg.Now()))
	}
	if err := checkContentType(resp.Header.Get("Content-Type"), ContentTypeDirectory, ContentTypeMIMI); err != nil {
		return nil, fmt.Errorf("mimi directory of %s: %w", peer, err)
	}
	data, err := readBody(resp.Body, min(f.cfg.MaxResponse, maxDirectorySize))
	if err != nil {
		if !errors.Is(err, ErrResponseTooLarge) {
			err = &TransportError{Method: http.MethodGet, URL: u, Err: err}
		}
		return nil, fmt.Errorf("mimi directory of %s: %w", peer, err)
	}
	dir := new(proto.Directory)
	if err := proto.Decode(data, dir, f.cfg.MaxVector); err != nil {
		return nil, fmt.Errorf("mimi directory of %s: %w", peer, err)
	}
	return dir, nil
}
