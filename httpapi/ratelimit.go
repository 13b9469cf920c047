package httpapi

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/mimihub/mimi-hub/internal/budget"
)

// Rate is a token bucket's refill rate and size: Burst requests at once,
// then one every Every.
type Rate struct {
	Every time.Duration
	Burst int
}

// RateLimits bounds the account endpoints, per source address and per
// account, in this node's memory: a cluster of n nodes lets a client that
// spreads its requests over every node make up to n times as many. The
// zero value uses the defaults below; a Rate with Burst < 0 turns that
// limit off (tests).
type RateLimits struct {
	// Registration: new users per source address.
	Registration Rate
	// Link: device link requests, per source address and per target
	// account (the account's budget stops a flood of codes on one user).
	Link Rate
	// Password: password attempts (adding a device, changing the
	// password), per source address and per account.
	Password Rate
	// Approve: link approvals and device invitations per account.
	Approve Rate
	// Redeem: device invitation redemptions per source address only (a
	// per-account budget would let anyone spend the account's: that is
	// what makes link requests blockable).
	Redeem Rate
	// Search: identifier queries per account on the client API, and
	// PeerSearch per peer on the federation endpoint. Every query is a
	// pass over the provider's users (fsm.State.IdentifierQuery), so the
	// request budget alone would let one account keep a core busy.
	Search, PeerSearch Rate
	// MaxKeys bounds the keys each bucket table tracks; when it is full,
	// buckets that refilled are forgotten (a sweep at most once a second),
	// and new keys are refused (429) until there is room.
	MaxKeys int
}

// Default rate limits.
var (
	DefaultRegistrationRate = Rate{Every: 10 * time.Second, Burst: 10}
	DefaultLinkRate         = Rate{Every: 30 * time.Second, Burst: 5}
	DefaultPasswordRate     = Rate{Every: time.Minute, Burst: 5}
	DefaultApproveRate      = Rate{Every: 10 * time.Second, Burst: 10}
	// DefaultRedeemRate allows 25 redemptions per address in an
	// invitation's 10 minutes: with 5 open invitations of 59-bit codes,
	// one guess in about 10^17 hits.
	DefaultRedeemRate = Rate{Every: 30 * time.Second, Burst: 5}
	// DefaultSearchRate allows a search per keystroke in a burst, then
	// two a second; DefaultPeerSearchRate 50 a second per peer, for all of
	// its users.
	DefaultSearchRate     = Rate{Every: 500 * time.Millisecond, Burst: 20}
	DefaultPeerSearchRate = Rate{Every: 20 * time.Millisecond, Burst: 200}
)

// NoRateLimits turns every account rate limit off: for load tests and
// test networks that make many accounts from one address.
var NoRateLimits = RateLimits{Registration: Rate{Burst: -1}, Link: Rate{Burst: -1}, Password: Rate{Burst: -1}, Approve: Rate{Burst: -1}, Redeem: Rate{Burst: -1},
	Search: Rate{Burst: -1}, PeerSearch: Rate{Burst: -1}}

// DefaultRateKeys is RateLimits.MaxKeys's default.
const DefaultRateKeys = 100_000

func (l RateLimits) withDefaults() RateLimits {
	def := func(r *Rate, d Rate) {
		if r.Burst == 0 {
			*r = d
		}
	}
	def(&l.Registration, DefaultRegistrationRate)
	def(&l.Link, DefaultLinkRate)
	def(&l.Password, DefaultPasswordRate)
	def(&l.Approve, DefaultApproveRate)
	def(&l.Redeem, DefaultRedeemRate)
	def(&l.Search, DefaultSearchRate)
	def(&l.PeerSearch, DefaultPeerSearchRate)
	if l.MaxKeys <= 0 {
		l.MaxKeys = DefaultRateKeys
	}
	return l
}

// limiter is the strict token-bucket table of one Rate (internal/budget:
// whole tokens; a full table forgets only refilled buckets and refuses new
// keys until one did).
type limiter = budget.Table

func newLimiter(rate Rate, maxKeys int, now func() time.Time) *limiter {
	if rate.Burst < 0 || rate.Every <= 0 {
		return budget.NewStrict(budget.Limit{}, maxKeys, now) // off
	}
	return budget.NewStrict(budget.Limit{Rate: float64(time.Second) / float64(rate.Every), Burst: float64(rate.Burst)}, maxKeys, now)
}

// limited is a request over a rate limit: 429 with Retry-After.
func limited(what string, retry time.Duration) error {
	return &apiError{status: http.StatusTooManyRequests, retryAfter: retry,
		msg: fmt.Sprintf("too many %s; retry in %s s", what, retryAfterHeader(retry))}
}

// rateLimiters are the client API's limiters.
type rateLimiters struct {
	registerIP, linkIP, linkUser, passwordIP, passwordUser, approveUser, redeemIP *limiter
	searchUser, searchPeer                                                        *limiter
}

func newRateLimiters(l RateLimits, now func() time.Time) *rateLimiters {
	l = l.withDefaults()
	nl := func(r Rate) *limiter { return newLimiter(r, l.MaxKeys, now) }
	return &rateLimiters{
		registerIP: nl(l.Registration), linkIP: nl(l.Link), linkUser: nl(l.Link),
		passwordIP: nl(l.Password), passwordUser: nl(l.Password), approveUser: nl(l.Approve), redeemIP: nl(l.Redeem),
		searchUser: nl(l.Search), searchPeer: nl(l.PeerSearch),
	}
}

// limitKey is one key's bucket in one limiter.
type limitKey struct {
	l   *limiter
	key string
}

// spend spends a token of each budget in order, refusing at the first that
// has none.
func spend(what string, budgets ...limitKey) error {
	for _, b := range budgets {
		if ok, retry := b.l.Allow(b.key); !ok {
			return limited(what, retry)
		}
	}
	return nil
}

// sourceAddr is the key of a request's source: its remote IP (an IPv6
// address counts by its /64, which one host usually holds whole). Proxies
// are not trusted: behind one, every client shares its address.
func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}
