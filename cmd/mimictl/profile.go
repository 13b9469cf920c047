package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// Files of a profile folder.
const (
	profileFile    = "profile.json"
	lockFile       = "lock"
	unresolvedFile = "unresolved"
	profileVersion = 1
	// lockWait bounds the wait for another mimictl using the profile.
	lockWait = 30 * time.Second
)

// profile is the content of profile.json. State is the Member's saved
// state (mimi/client Member.Save): its signature key, KeyPackage private
// keys and every room's MLS group secrets.
type profile struct {
	Version int `json:"version"`
	// Server is the provider's client API, e.g. https://127.0.0.1:8444.
	Server string `json:"server"`
	// Servers, when set, lists the client APIs of every node of the
	// provider's cluster (Server is the first); requests fail over among
	// them (failover.go).
	Servers []string `json:"servers,omitempty"`
	// CA is the PEM file of roots the server is verified against (empty:
	// the system roots).
	CA string `json:"ca,omitempty"`
	// Client is the client URI, for display.
	Client proto.URI `json:"client"`
	// Token is the bearer token.
	Token string `json:"token"`
	// State is the Member's saved state.
	State []byte `json:"state"`
	// Updated is when the state was last saved.
	Updated time.Time `json:"updated"`
	// Recent keeps the last application messages received in each room,
	// with the keys an abuse report about one of them discloses (see
	// recent.go).
	Recent map[proto.URI][]recentMessage `json:"recent,omitempty"`
}

// servers returns the client API URLs of the profile's provider.
func (p *profile) servers() []string {
	if len(p.Servers) > 0 {
		return p.Servers
	}
	return []string{p.Server}
}

// httpClient returns a client API HTTP client verifying servers against
// caFile (the system roots when empty) and sending registrationKey, when
// set, with /v1/register.
func httpClient(caFile, registrationKey string) (*http.Client, *http.Transport, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pemBytes, err := os.ReadFile(caFile)
		if err != nil {
			return nil, nil, fmt.Errorf("CA file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pemBytes) {
			return nil, nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
		}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = tc
	var rt http.RoundTripper = t
	if registrationKey != "" {
		rt = registrationKeyTransport{next: t, key: registrationKey}
	}
	return &http.Client{Transport: rt}, t, nil
}

// registrationKeyTransport adds the Mimi-Registration-Key header to
// /v1/register requests. mimi/client's User.Register has no way to send
// it, so mimictl adds it on the way out.
type registrationKeyTransport struct {
	next http.RoundTripper
	key  string
}

// RoundTrip implements http.RoundTripper.
func (t registrationKeyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/v1/register" {
		r = r.Clone(r.Context())
		r.Header.Set("Mimi-Registration-Key", t.key)
	}
	return t.next.RoundTrip(r)
}

// memberConfig is the Member configuration mimictl uses.
func (e *env) memberConfig() client.MemberConfig {
	return client.MemberConfig{Logger: e.logger()}
}

// session is an open profile: locked, loaded, with its Member.
type session struct {
	e       *env
	dir     string
	prof    *profile
	api     *client.User
	member  *client.Member
	tr      *http.Transport
	release func()
}

// openOptions adjust openProfile.
type openOptions struct {
	// readOnly allows opening a profile with an unresolved write: the
	// command does not change the MLS state.
	readOnly bool
}

// openProfile locks the profile folder and loads its Member. The caller
// must close the session.
func (e *env) openProfile(ctx context.Context, o openOptions) (*session, error) {
	dir, err := e.profileDir()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, profileFile)); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no profile in %s: run 'mimictl register' first (or pass -profile)", dir)
	}
	release, err := lockProfile(ctx, dir, e.stderr)
	if err != nil {
		return nil, err
	}
	s, err := e.loadSession(dir, o)
	if err != nil {
		release()
		return nil, err
	}
	s.release = release
	return s, nil
}

// loadSession reads the profile of a locked folder.
func (e *env) loadSession(dir string, o openOptions) (*session, error) {
	if !o.readOnly {
		if note, err := os.ReadFile(filepath.Join(dir, unresolvedFile)); err == nil {
			return nil, fmt.Errorf("profile %s has a write of unknown outcome that could not be saved:\n%s\n"+
				"Its saved MLS state may be older than what the server applied, and sending from it could reuse message keys. "+
				"Register a new client (or, at your own risk, delete %s)", dir, note, filepath.Join(dir, unresolvedFile))
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, profileFile))
	if err != nil {
		return nil, fmt.Errorf("reading the profile: %w", err)
	}
	p := new(profile)
	if err := json.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("profile %s: %w", filepath.Join(dir, profileFile), err)
	}
	if p.Version != profileVersion {
		return nil, fmt.Errorf("profile %s: version %d, want %d", dir, p.Version, profileVersion)
	}
	hc, tr, err := httpClient(p.CA, "")
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", dir, err)
	}
	if hc.Transport, err = newFailover(hc.Transport, p.servers(), e.logger()); err != nil {
		return nil, fmt.Errorf("profile %s: %w", dir, err)
	}
	api, err := client.NewUser(client.UserConfig{BaseURL: p.Server, HTTPClient: hc, Token: p.Token, Logger: e.logger()})
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", dir, err)
	}
	m, err := client.LoadMember(api, p.State, e.memberConfig())
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", dir, err)
	}
	return &session{e: e, dir: dir, prof: p, api: api, member: m, tr: tr}, nil
}

// reload re-reads the profile from disk (watch does, between batches, so
// that commands run meanwhile in other processes are not overwritten).
func (s *session) reload() error {
	fresh, err := s.e.loadSession(s.dir, openOptions{})
	if err != nil {
		return err
	}
	s.tr.CloseIdleConnections()
	s.prof, s.api, s.member, s.tr = fresh.prof, fresh.api, fresh.member, fresh.tr
	return nil
}

// save stores the Member's state. A write whose outcome is unknown is
// first sent again (bounded); if its outcome stays unknown the state
// cannot be saved, and the profile is marked so that no later command
// sends from the stale state.
func (s *session) save(ctx context.Context) error {
	state, err := s.member.Save()
	if errors.Is(err, client.ErrUnresolved) {
		state, err = s.resolveAndSave(ctx)
	}
	if err != nil {
		return err
	}
	s.prof.State, s.prof.Token, s.prof.Updated = state, s.api.Token(), time.Now().UTC()
	if err := writeProfile(s.dir, s.prof); err != nil {
		return err
	}
	// The state is durable: the stream may drop what it covers.
	if err := s.member.Ack(ctx); err != nil {
		s.e.logger().Warn("acknowledging the stream failed; the next sync retries", "err", err)
	}
	return nil
}

// resolveAndSave retries the unresolved writes a few times, then saves.
func (s *session) resolveAndSave(ctx context.Context) ([]byte, error) {
	var last error
	for try := range 4 {
		if try > 0 {
			// Wait even after an interrupt: the state must not be lost,
			// and the wait is bounded.
			time.Sleep(time.Duration(try) * time.Second)
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
		last = s.member.Resolve(rctx)
		cancel()
		if last == nil {
			return s.member.Save()
		}
		if !errors.Is(last, client.ErrUnresolved) {
			break
		}
	}
	note := fmt.Sprintf("at %s: %v", time.Now().UTC().Format(time.RFC3339), last)
	if err := os.WriteFile(filepath.Join(s.dir, unresolvedFile), []byte(note+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("%w; and marking the profile failed: %w", last, err)
	}
	return nil, fmt.Errorf("the state could not be saved: %w (the profile is marked; see %s)", last, filepath.Join(s.dir, unresolvedFile))
}

// close releases the profile.
func (s *session) close() {
	s.tr.CloseIdleConnections()
	if s.release != nil {
		s.release()
	}
}

// domain returns the client's provider domain.
func (s *session) domain() string {
	d, _ := s.member.Client().Domain()
	return d
}

// writeProfile writes profile.json atomically, readable by its owner only.
func writeProfile(dir string, p *profile) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the profile: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".profile-*.tmp")
	if err != nil {
		return fmt.Errorf("saving the profile: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("saving the profile: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("saving the profile: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("saving the profile: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("saving the profile: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, profileFile)); err != nil {
		return fmt.Errorf("saving the profile: %w", err)
	}
	return nil
}

// makeProfileDir creates the profile folder (0700), tightening an existing
// one's permissions.
func makeProfileDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("profile folder: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("profile folder: %w", err)
	}
	return nil
}
