package httpapi

import (
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Config configures both routers. The zero value works for tests; a
// deployment sets PublicURL, AssetHosts and, for open registration, nothing
// else.
type Config struct {
	// PublicURL is the https base URL peers reach this provider's
	// federation endpoints at (scheme, host, optional path prefix), e.g.
	// "https://mimi.a.example". The directory lists absolute URL templates
	// under it. Default: "https://" + the provider's domain.
	PublicURL string

	// PeerIdentity returns the domain of the provider that sent a
	// federation request, or an error (answered 401). Default: PeerFromTLS,
	// the DNS SAN of the verified TLS client certificate. Tests inject
	// their own.
	PeerIdentity func(*http.Request) (string, error)

	// MaxBody bounds request bodies (default 1 MiB); MaxRoomBody bounds
	// the bodies that carry commits and messages: updateRoom,
	// provisionalMessage and fanout, and on the client API room creation,
	// commits, proposals, messages and KeyPackage uploads (plus base64
	// overhead). Default 16 MiB. Larger bodies get 413.
	MaxBody     int64
	MaxRoomBody int64
	// A commit or proposals for a room hosted here may be larger, with
	// the room: MaxRoomBody plus RoomBodyPerMember (default 1 KiB) per
	// member client, at most MaxLargeRoomBody (default 128 MiB), so a
	// 100,000-member room takes a commit carrying its full tree while a
	// small room keeps the small limit (binary.go).
	RoomBodyPerMember int64
	MaxLargeRoomBody  int64
	// MaxVector bounds every vector when decoding MIMI bodies (default
	// MaxLargeRoomBody).
	MaxVector int
	// MaxMessageBody bounds application messages: provisionalMessage, and
	// on the client API messages (plus base64 overhead). Default 1 MiB.
	MaxMessageBody int64

	// BodyTimeout bounds the arrival of a request's body (and of whatever
	// a handler leaves unread of it): BodyTimeout plus a second per
	// BodyMinRate bytes declared (default 10 s and 64 KiB/s), so a
	// client that declares a body and sends nothing is gone in seconds.
	// 408 after it.
	BodyTimeout time.Duration
	BodyMinRate int64

	// ClientBudget meters each authenticated client, PeerBudget each
	// authenticated peer provider, on this node; RoomFanout bounds the
	// fanout bytes a second one peer sends for one room (bursts of eight
	// seconds' worth; negative: no limit). Over budget is 429 with
	// Retry-After. Defaults: clients 100 requests and 4 MiB a second,
	// peers 1000 requests and 32 MiB a second, 4 MiB a second per room.
	ClientBudget Budget
	PeerBudget   Budget
	RoomFanout   float64

	// RequestTimeout bounds one request's work: replicated writes, reads
	// and relays to other providers (default 30s). A long-polling stream
	// request gets its wait on top.
	RequestTimeout time.Duration
	// MaxStreamWait caps the stream's wait parameter (default and at most
	// 60s).
	MaxStreamWait time.Duration
	// MaxStreamPolls bounds the long polls one client keeps waiting on a
	// node (default 4): a new one beyond it ends the client's oldest,
	// which answers what it has.
	MaxStreamPolls int
	// Draining, when closed, ends waiting long polls at once (they answer
	// what they have), so a server shutting down is not held up by them;
	// the client polls again, elsewhere. Nil: never.
	Draining <-chan struct{}

	// AssetHosts lists the hosts downloadFile may fetch from: "host"
	// allows any port, "host:port" exactly that one. Empty: downloadFile
	// answers 403 to everything.
	AssetHosts []string
	// AssetClient fetches assets (default: a plain http.Client). A copy is
	// used, with DownloadTimeout when it has no Timeout, and, when it has
	// no CheckRedirect, one that follows redirects only to allowed hosts.
	AssetClient *http.Client
	// MaxDownload bounds an asset's size (default 100 MiB);
	// DownloadTimeout the whole download (default 5 minutes).
	MaxDownload     int64
	DownloadTimeout time.Duration

	// RegistrationKey, when set, must be presented in the
	// Mimi-Registration-Key header of /v1/register (policy "key").
	RegistrationKey string
	// Registration is the policy for creating new users: RegistrationOpen,
	// RegistrationKey, RegistrationInvite or RegistrationClosed. Default:
	// "key" when RegistrationKey is set, else "open". Devices of existing
	// users are added only with an existing device's approval or the
	// account's password, whatever the policy.
	Registration string
	// RateLimits bounds registration, device linking and password
	// attempts per source address and per account (ratelimit.go).
	RateLimits RateLimits
	// Now is the clock a user's replicated password schedule is read
	// against (fsm/passwordguard.go: the leaders stamp its times with
	// theirs). Default time.Now; tests set the test backend's.
	Now func() time.Time
	// PasswordParams are argon2id's costs (default
	// DefaultPasswordParams); PasswordConcurrency bounds the hashes
	// computed at once (default DefaultPasswordConcurrency).
	PasswordParams      PasswordParams
	PasswordConcurrency int

	// Middleware wraps every matched route of both routers, innermost
	// last. Inside, RouteName(r) is the route's name, e.g.
	// "mimi.updateRoom" or "client.commit", for metrics.
	Middleware []func(http.Handler) http.Handler

	// Logger receives request logs (debug) and internal errors. Default:
	// slog.Default().
	Logger *slog.Logger
}

// Defaults of Config's zero fields.
const (
	DefaultMaxBody           = 1 << 20
	DefaultMaxRoomBody       = 16 << 20
	DefaultRoomBodyPerMember = 1 << 10
	DefaultMaxLargeRoomBody  = 128 << 20
	DefaultRequestTimeout    = 30 * time.Second
	DefaultMaxStreamWait     = 60 * time.Second
	DefaultMaxDownload       = 100 << 20
	DefaultDownloadTimeout   = 5 * time.Minute
)

func (c Config) withDefaults(domain string) Config {
	if c.PublicURL == "" {
		c.PublicURL = "https://" + domain
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.PeerIdentity == nil {
		c.PeerIdentity = PeerFromTLS
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxBody <= 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.MaxRoomBody <= 0 {
		c.MaxRoomBody = DefaultMaxRoomBody
	}
	if c.RoomBodyPerMember <= 0 {
		c.RoomBodyPerMember = DefaultRoomBodyPerMember
	}
	if c.MaxLargeRoomBody <= 0 {
		c.MaxLargeRoomBody = DefaultMaxLargeRoomBody
	}
	c.MaxLargeRoomBody = max(c.MaxLargeRoomBody, c.MaxRoomBody)
	if c.MaxVector <= 0 {
		c.MaxVector = int(c.MaxLargeRoomBody)
	}
	if c.MaxMessageBody <= 0 {
		c.MaxMessageBody = DefaultMaxMessageBody
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = DefaultBodyTimeout
	}
	if c.BodyMinRate <= 0 {
		c.BodyMinRate = DefaultBodyMinRate
	}
	c.ClientBudget = c.ClientBudget.withDefaults(DefaultClientRequests, DefaultClientBytes)
	c.PeerBudget = c.PeerBudget.withDefaults(DefaultPeerRequests, DefaultPeerBytes)
	if c.RoomFanout == 0 {
		c.RoomFanout = DefaultRoomFanout
	}
	if c.MaxStreamWait <= 0 || c.MaxStreamWait > DefaultMaxStreamWait {
		c.MaxStreamWait = DefaultMaxStreamWait
	}
	if c.MaxStreamPolls <= 0 {
		c.MaxStreamPolls = DefaultMaxStreamPolls
	}
	if c.MaxDownload <= 0 {
		c.MaxDownload = DefaultMaxDownload
	}
	if c.DownloadTimeout <= 0 {
		c.DownloadTimeout = DefaultDownloadTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.AssetHosts = slices.Clone(c.AssetHosts)
	c.Middleware = slices.Clone(c.Middleware)
	// Redirects, too, may lead only to allowed hosts.
	allowed := (&Config{AssetHosts: c.AssetHosts}).assetAllowed
	ac := http.Client{}
	if c.AssetClient != nil {
		ac = *c.AssetClient
	}
	if ac.Timeout == 0 {
		ac.Timeout = c.DownloadTimeout
	}
	if ac.CheckRedirect == nil {
		ac.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errTooManyRedirects
			}
			if !allowed(req.URL) {
				return errRedirectNotAllowed
			}
			return nil
		}
	}
	c.AssetClient = &ac
	return c
}
