package httpapi

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// federation serves the MIMI endpoints (seed section 7) to other providers.
type federation struct {
	cfg     Config
	backend Backend
	peers   Peers
	domain  string
	log     *slog.Logger
	meter   *meter // per-peer budgets
	// searches rate-limits identifier queries per peer.
	searches *limiter
}

// fedHandler handles a federation request from the authenticated peer.
type fedHandler func(w http.ResponseWriter, r *http.Request, peer string) error

// Federation route names, for Config.Middleware (RouteName).
const (
	RouteDirectory          = "mimi.directory"
	RouteRequestConsent     = "mimi.requestConsent"
	RouteUpdateConsent      = "mimi.updateConsent"
	RouteClaimKeyMaterial   = "mimi.claimKeyMaterial"
	RouteUpdateRoom         = "mimi.updateRoom"
	RouteProvisionalMessage = "mimi.provisionalMessage"
	RouteFanout             = "mimi.fanout"
	RouteClaimGroupInfo     = "mimi.claimGroupInfo"
	RouteDownloadFile       = "mimi.downloadFile"
	RouteReportAbuse        = "mimi.reportAbuse"
	RouteIdentifierQuery    = "mimi.identifierQuery"
)

// federationRoute is a MIMI endpoint.
type federationRoute struct {
	primitive proto.Primitive
	method    string
	path      string
	name      string
}

// federationRoutes lists the endpoints (seed section 7; identifierQuery is
// POST, DECISIONS.md item 16).
func federationRoutes() []federationRoute {
	return []federationRoute{
		{proto.RequestConsent, http.MethodPost, "/requestConsent/{targetDomain}", RouteRequestConsent},
		{proto.UpdateConsent, http.MethodPost, "/updateConsent/{requesterDomain}", RouteUpdateConsent},
		{proto.ClaimKeyMaterial, http.MethodPost, "/claimKeymaterial/{domain}", RouteClaimKeyMaterial},
		{proto.UpdateRoom, http.MethodPost, "/updateRoom/{roomId}", RouteUpdateRoom},
		{proto.ProvisionalMessage, http.MethodPost, "/provisionalMessage/{roomId}", RouteProvisionalMessage},
		{proto.FanoutMessages, http.MethodPost, "/fanout/{roomId}", RouteFanout},
		{proto.ClaimGroupInfo, http.MethodPost, "/claimGroupInfo/{roomId}", RouteClaimGroupInfo},
		{proto.DownloadFile, http.MethodGet, "/downloadFile/{url}", RouteDownloadFile},
		{proto.ReportAbuse, http.MethodPost, "/reportAbuse/{roomId}", RouteReportAbuse},
		{proto.IdentifierQuery, http.MethodPost, "/identifierQuery/{domain}", RouteIdentifierQuery},
	}
}

// NewFederation returns the router of the MIMI endpoints other providers
// call (seed section 7), with TLS-presentation bodies (application/mimi).
// Every endpoint but the directory needs an authenticated peer
// (Config.PeerIdentity, by default the mTLS client certificate); errors are
// text/plain. peers relays key material claims for rooms hosted here; nil
// peers make every relay fail as unreachable.
func NewFederation(cfg Config, backend Backend, peers Peers) http.Handler {
	domain := backend.Domain()
	f := &federation{cfg: cfg.withDefaults(domain), backend: backend, peers: orNoPeers(peers), domain: domain}
	f.log = f.cfg.Logger
	f.meter = newMeter(f.cfg.PeerBudget, f.cfg.RoomFanout)
	limits := f.cfg.RateLimits.withDefaults()
	f.searches = newLimiter(limits.PeerSearch, limits.MaxKeys, time.Now)
	textStatus := func(status int, msg string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeTextError(f.log, w, r, fail(status, "%s", msg))
		})
	}
	r := newRouter(&f.cfg, textStatus(http.StatusNotFound, "no such MIMI endpoint"), textStatus(http.StatusMethodNotAllowed, "method not allowed"))
	r.Path("/.well-known/mimi-protocol-directory").Methods(http.MethodGet).Name(RouteDirectory).HandlerFunc(f.directory)
	handlers := map[string]fedHandler{
		RouteRequestConsent:     f.requestConsent,
		RouteUpdateConsent:      f.updateConsent,
		RouteClaimKeyMaterial:   f.claimKeyMaterial,
		RouteUpdateRoom:         f.roomCommand(fsm.CmdUpdateRoom),
		RouteProvisionalMessage: f.roomCommand(fsm.CmdProvisional),
		RouteFanout:             f.fanout,
		RouteClaimGroupInfo:     f.claimGroupInfo,
		RouteDownloadFile:       f.downloadFile,
		RouteReportAbuse:        f.roomCommand(fsm.CmdReportAbuse),
		RouteIdentifierQuery:    f.identifierQuery,
	}
	for _, rt := range federationRoutes() {
		path, timeout := rt.path, f.cfg.RequestTimeout
		if rt.primitive == proto.DownloadFile {
			// The URL is one percent-encoded segment; accept it also
			// when its slashes were left unescaped.
			path, timeout = "/downloadFile/{url:.+}", f.cfg.DownloadTimeout
		}
		r.Path(path).Methods(rt.method).Name(rt.name).Handler(f.authenticated(handlers[rt.name], timeout))
	}
	r.Path(proto.RemoveClientsPath).Methods(http.MethodPost).Name(RouteRemoveClients).Handler(f.authenticated(f.removeClients, f.cfg.RequestTimeout))
	r.Path(proto.WelcomeTreePath).Methods(http.MethodPost).Name(RouteFedWelcomeTree).Handler(f.authenticated(f.welcomeTree, f.cfg.RequestTimeout))
	return f.cfg.withDeadlines(r)
}

// authenticated runs h for an authenticated peer within its budget and
// with a deadline.
func (f *federation) authenticated(h fedHandler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, err := f.cfg.PeerIdentity(r)
		if err == nil && !validDomain(peer) {
			err = fmt.Errorf("%q is not a provider domain", peer)
		}
		if err != nil {
			writeTextError(f.log, w, r, fail(http.StatusUnauthorized, "unauthenticated: %v", err))
			return
		}
		if peer == f.domain {
			writeTextError(f.log, w, r, fail(http.StatusForbidden, "%s is this provider's own domain; it does not federate with itself", peer))
			return
		}
		r, cancel := f.cfg.route(w, r, timeout)
		defer cancel()
		ctx, err := f.meter.admit(r, peer)
		if err != nil {
			writeTextError(f.log, w, r, err)
			return
		}
		r = r.WithContext(ctx)
		if err := h(w, r, peer); err != nil {
			writeTextError(f.log, w, r, err)
		}
	})
}

// apply proposes a command for peer and returns its result, or the refusal
// as an error.
func (f *federation) apply(r *http.Request, t fsm.CommandType, peer string, body wire.Encoder) (*fsm.Result, error) {
	id, err := requestID(r, "peer:"+peer, RouteName(r))
	if err != nil {
		return nil, err
	}
	res, err := f.backend.Apply(r.Context(), t, id, peer, body)
	if err != nil {
		return nil, err
	}
	return res, resultErr(res)
}

// directory serves /.well-known/mimi-protocol-directory.
func (f *federation) directory(w http.ResponseWriter, r *http.Request) {
	var d proto.Directory
	for _, rt := range federationRoutes() {
		m := proto.MethodPost
		if rt.method == http.MethodGet {
			m = proto.MethodGet
		}
		d.Entries = append(d.Entries, proto.DirectoryEntry{Primitive: rt.primitive, Method: m, URI: f.cfg.PublicURL + rt.path})
	}
	w.Header().Set("Cache-Control", "public, max-age=3600")
	if err := writeMIMI(w, http.StatusOK, &d); err != nil {
		writeTextError(f.log, w, r, err)
	}
}

// ourDomain checks a path domain names this provider.
func (f *federation) ourDomain(r *http.Request, name string) error {
	d, err := domainVar(r, name)
	if err != nil {
		return err
	}
	if d != f.domain {
		return fail(http.StatusNotFound, "this provider is %s, not %s", f.domain, d)
	}
	return nil
}

// consentEntry reads a consent body.
func (f *federation) consentEntry(w http.ResponseWriter, r *http.Request) (*proto.ConsentEntry, error) {
	body, err := readBody(w, r, f.cfg.MaxBody)
	if err != nil {
		return nil, err
	}
	var e proto.ConsentEntry
	if err := decode(body, &e, f.cfg.MaxVector, "ConsentEntry"); err != nil {
		return nil, err
	}
	return &e, nil
}

// requestConsent: POST /requestConsent/{targetDomain}, a request or cancel
// from the requester's provider for a local target.
func (f *federation) requestConsent(w http.ResponseWriter, r *http.Request, peer string) error {
	if err := f.ourDomain(r, "targetDomain"); err != nil {
		return err
	}
	e, err := f.consentEntry(w, r)
	if err != nil {
		return err
	}
	if e.Operation != proto.ConsentRequest && e.Operation != proto.ConsentCancel {
		return fail(http.StatusBadRequest, "requestConsent carries a request or a cancel, not a %s (use updateConsent)", e.Operation)
	}
	if d, _ := e.Target.Domain(); d != f.domain {
		return fail(http.StatusBadRequest, "the target %q is not a user of %s", e.Target, f.domain)
	}
	if d, _ := e.Requester.Domain(); d != peer {
		return fail(http.StatusForbidden, "%s may not send consent requests for %q", peer, e.Requester)
	}
	if _, err := f.apply(r, fsm.CmdConsent, peer, &fsm.ConsentBody{Entry: *e}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// updateConsent: POST /updateConsent/{requesterDomain}, a grant or revoke
// from the target's provider for a local requester.
func (f *federation) updateConsent(w http.ResponseWriter, r *http.Request, peer string) error {
	if err := f.ourDomain(r, "requesterDomain"); err != nil {
		return err
	}
	e, err := f.consentEntry(w, r)
	if err != nil {
		return err
	}
	if e.Operation != proto.ConsentGrant && e.Operation != proto.ConsentRevoke {
		return fail(http.StatusBadRequest, "updateConsent carries a grant or a revoke, not a %s (use requestConsent)", e.Operation)
	}
	if d, _ := e.Requester.Domain(); d != f.domain {
		return fail(http.StatusBadRequest, "the requester %q is not a user of %s", e.Requester, f.domain)
	}
	if d, _ := e.Target.Domain(); d != peer {
		return fail(http.StatusForbidden, "%s may not decide for %q", peer, e.Target)
	}
	if _, err := f.apply(r, fsm.CmdConsent, peer, &fsm.ConsentBody{Entry: *e}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// roomCommand serves updateRoom, provisionalMessage and reportAbuse for a
// room hosted here: the body is checked, then handed to the room engine.
func (f *federation) roomCommand(t fsm.CommandType) fedHandler {
	return func(w http.ResponseWriter, r *http.Request, peer string) error {
		room, err := roomVar(r, "roomId", f.domain)
		if err != nil {
			return err
		}
		update := new(proto.UpdateRoomRequest)
		limit, check := hostedRoomBodyLimit(r, &f.cfg, f.backend, room, true), wire.Decoder(update)
		switch t {
		case fsm.CmdProvisional:
			limit, check = f.cfg.MaxMessageBody, new(mls.Message)
		case fsm.CmdReportAbuse:
			limit, check = f.cfg.MaxBody, new(proto.AbuseReport)
		}
		body, err := readBody(w, r, limit)
		if err != nil {
			return err
		}
		if err := decode(body, check, f.cfg.MaxVector, t.String()+" body"); err != nil {
			return err
		}
		if t == fsm.CmdUpdateRoom && update.RatchetTree.Representation == proto.TreeFull {
			if refusal := byReference(update, f.cfg.MaxVector); refusal != nil {
				return writeMIMI(w, http.StatusOK, refusal)
			}
			if body, err = wire.Marshal(update); err != nil {
				return fmt.Errorf("re-encode updateRoom: %w", err)
			}
		}
		res, err := f.apply(r, t, peer, &fsm.RoomBody{Room: room, Request: body})
		if err != nil {
			return err
		}
		if t == fsm.CmdReportAbuse {
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		writeRawMIMI(w, http.StatusOK, res.Body)
		return nil
	}
}

// fanout: POST /fanout/{roomId} from the hub of mimi://{peer}/r/{roomId}.
func (f *federation) fanout(w http.ResponseWriter, r *http.Request, peer string) error {
	room, err := roomVar(r, "roomId", peer)
	if err != nil {
		return err
	}
	// Mimi-Sequence (the hub's number of the first message) is optional:
	// a hub that implements only the seed sends none, and its messages are
	// taken in arrival order, duplicates recognized by digest (0 below).
	var seq uint64
	if seqHeader := r.Header.Get("Mimi-Sequence"); seqHeader != "" {
		if seq, err = strconv.ParseUint(seqHeader, 10, 64); err != nil || seq == 0 {
			return fail(http.StatusBadRequest, "Mimi-Sequence %q is not a decimal number from 1", seqHeader)
		}
	}
	var exclude []proto.URI
	if h := r.Header.Values("Mimi-Exclude"); len(h) > 0 {
		for _, part := range strings.Split(strings.Join(h, ","), ",") {
			c := proto.URI(strings.TrimSpace(part))
			if c == "" {
				continue
			}
			if id, err := c.Parse(); err != nil || id.Kind != proto.KindClient {
				return fail(http.StatusBadRequest, "Mimi-Exclude: %q is not a client URI", c)
			}
			exclude = append(exclude, c)
		}
	}
	// A hub's fanout for one room is metered on its own: a busy room of a
	// peer cannot take the whole peer's budget, nor one peer's rooms the
	// node's. (A body over the limit is refused by readBody, at no cost.)
	if r.ContentLength <= f.cfg.MaxRoomBody {
		if err := f.meter.admitRoom(peer, string(room), int(max(r.ContentLength, 0))); err != nil {
			return err
		}
	}
	body, err := readBody(w, r, f.cfg.MaxRoomBody)
	if err != nil {
		return err
	}
	if r.ContentLength < 0 {
		f.meter.rooms.Charge(peer+" "+string(room), float64(len(body)))
	}
	var batch proto.FanoutBatch
	if err := decode(body, &batch, f.cfg.MaxVector, "fanout body"); err != nil {
		return err
	}
	if _, err := f.apply(r, fsm.CmdFanout, peer, &fsm.FanoutBody{Room: room, FirstSeq: seq, Batch: batch, Exclude: exclude}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// claimGroupInfo: POST /claimGroupInfo/{roomId}, answered from the latest
// committed state (noSuchRoom when the room is not hosted here).
func (f *federation) claimGroupInfo(w http.ResponseWriter, r *http.Request, peer string) error {
	var req proto.GroupInfoRequest
	room, err := f.hostedRoomRequest(w, r, &req, "GroupInfoRequest")
	if err != nil {
		return err
	}
	if err := responseBudget(r); err != nil {
		return err
	}
	resp, err := readGroupInfo(r, f.backend, room, peer, &req)
	if err != nil {
		return err
	}
	return writeGroupInfo(w, r, resp)
}

// identifierQuery: POST /identifierQuery/{domain} about local users.
func (f *federation) identifierQuery(w http.ResponseWriter, r *http.Request, peer string) error {
	if err := f.ourDomain(r, "domain"); err != nil {
		return err
	}
	if err := spend("identifier queries by "+peer, limitKey{f.searches, peer}); err != nil {
		return err
	}
	body, err := readBody(w, r, f.cfg.MaxBody)
	if err != nil {
		return err
	}
	var req proto.IdentifierRequest
	if err := decode(body, &req, f.cfg.MaxVector, "IdentifierRequest"); err != nil {
		return err
	}
	var out []byte
	err = f.backend.Read(r.Context(), false, func(s *fsm.State) error {
		var err error
		out, err = wire.Marshal(s.IdentifierQuery(&req))
		return err
	})
	if err != nil {
		return err
	}
	writeRawMIMI(w, http.StatusOK, out)
	return nil
}

// downloadFile: GET /downloadFile/{url}, a proxied fetch of an asset on
// one of the configured peer asset hosts (DECISIONS.md item 17).
func (f *federation) downloadFile(w http.ResponseWriter, r *http.Request, peer string) error {
	raw, err := pathVar(r, "url")
	if err != nil {
		return err
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fail(http.StatusBadRequest, "path {url}: %v", err)
	}
	if !f.cfg.assetAllowed(u) {
		return fail(http.StatusForbidden, "downloadFile fetches only https URLs on configured asset hosts; %q is not one", raw)
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		return fail(http.StatusBadRequest, "path {url}: %v", err)
	}
	resp, err := f.cfg.AssetClient.Do(req)
	if err != nil {
		if r.Context().Err() != nil {
			return fail(http.StatusGatewayTimeout, "fetching the asset timed out")
		}
		return &apiError{status: http.StatusBadGateway, msg: fmt.Sprintf("fetching the asset: %v", err), cause: err}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return fail(http.StatusNotFound, "the asset host has no such asset (%d)", resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return fail(http.StatusBadGateway, "the asset host answered %s", resp.Status)
	case resp.ContentLength > f.cfg.MaxDownload:
		return fail(http.StatusBadGateway, "the asset is %d bytes; at most %d are relayed", resp.ContentLength, f.cfg.MaxDownload)
	}
	h := w.Header()
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("X-Content-Type-Options", "nosniff")
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	w.WriteHeader(http.StatusOK)
	lr := &io.LimitedReader{R: resp.Body, N: f.cfg.MaxDownload + 1}
	_, err = io.Copy(w, lr)
	if lr.N == 0 || err != nil {
		// The status is sent: abort the response so the peer sees a
		// failed transfer, not a truncated asset.
		f.log.DebugContext(r.Context(), "download aborted", "peer", peer, "url", u.Redacted(), "over_limit", lr.N == 0, "error", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}
