package telephone

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/verastack/telephone/transport"
)

// TokenVending configures WithTokenVending: how the Client gets its own token from Plugboard's
// token vending API (docs/PROTOCOL.md §4.5) with a service-account key.
type TokenVending struct {
	// APIKey is the service account's API key ("sa_live_…"). Required. It is sent only in the
	// Authorization header of the vending request and is never logged.
	APIKey string
	// APIURL is Plugboard's HTTP(S) origin, e.g. "https://plugboard.example.com". "" means the
	// origin of the socket URL given to New, with ws turned into http and wss into https. The
	// TLS configuration and proxy of the socket (WithTLSConfig, WithProxy) apply to it.
	APIURL string
	// PathID, when set, is sent as path_id: Plugboard then refuses the key if its service
	// account is bound to another path. A stored or configured token for another path is not
	// used.
	PathID string
	// InstanceID names this replica (sent as instance_id; the CLI uses the host name), so that
	// the token's name in Plugboard says which replica holds it.
	InstanceID string
	// Description is sent as the token's description.
	Description string
}

// WithTokenVending lets the Client vend its own token with a service-account key, so that
// several replicas of one path each hold their own token (a token shared by replicas breaks at
// the first refresh: Plugboard keeps only the newest token of each record). At start-up a valid
// token from WithToken or the TokenStore is used if there is one; otherwise one is vended and
// stored, so a restart does not vend again while it is valid. When the token is refused,
// expires or is revoked, a new one is vended instead of failing. A key Plugboard refuses (401)
// or a path it is not bound to (403) makes Run fail with a *VendingError; other failures are
// retried with the reconnect backoff.
func WithTokenVending(v TokenVending) Option {
	return func(o *options) error {
		if v.APIKey == "" {
			return optErr("WithTokenVending", "APIKey is empty")
		}
		if strings.ContainsFunc(v.APIKey, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return optErr("WithTokenVending", "APIKey contains spaces or control characters")
		}
		if v.APIURL != "" {
			if _, err := vendEndpoint(v.APIURL); err != nil {
				return optErr("WithTokenVending", "APIURL: %v", err)
			}
		}
		if v.PathID != "" {
			if u, err := uuid.Parse(v.PathID); err != nil || u.String() != v.PathID {
				return optErr("WithTokenVending", "PathID must be a lower-case UUID, got %q", v.PathID)
			}
		}
		o.vending = &v
		return nil
	}
}

// vendEndpoint returns the vending endpoint URL for an http(s) origin.
func vendEndpoint(origin string) (string, error) {
	u, err := url.Parse(origin)
	switch {
	case err != nil:
		return "", err
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("scheme must be http or https, got %q", u.Scheme)
	case u.Host == "":
		return "", errors.New("URL has no host")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return "", errors.New("URL must not carry user info, a query or a fragment")
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/token-vending/generate"
	u.RawPath = ""
	return u.String(), nil
}

// vendor calls the token vending API.
type vendor struct {
	endpoint   string
	key        string
	pathID     string
	instanceID string
	body       []byte
	client     *http.Client
	timeout    time.Duration
	mu         sync.Mutex // serialises vending, so that concurrent dials vend once
}

// newVendor builds the vendor for socket, the Plugboard socket URL.
func newVendor(o *options, socket *url.URL) (*vendor, error) {
	v := o.vending
	origin := v.APIURL
	if origin == "" {
		scheme := "http"
		if socket.Scheme == "wss" {
			scheme = "https"
		}
		origin = scheme + "://" + socket.Host
	}
	endpoint, err := vendEndpoint(origin)
	if err != nil {
		return nil, optErr("WithTokenVending", "API URL %q: %v", origin, err)
	}
	client, err := transport.NewHTTPClient(transport.Options{TLSConfig: o.tlsConfig, Proxy: o.proxy})
	if err != nil {
		return nil, optErr("WithTokenVending", "%v", err)
	}
	req := map[string]string{}
	for k, val := range map[string]string{"path_id": v.PathID, "instance_id": v.InstanceID, "description": v.Description} {
		if val != "" {
			req[k] = val
		}
	}
	body, _ := json.Marshal(req) // a map of strings always encodes
	return &vendor{endpoint: endpoint, key: v.APIKey, pathID: v.PathID, instanceID: v.InstanceID, body: body,
		client: client, timeout: o.connectTimeout}, nil
}

// VendingError is a failure answer of Plugboard's token vending API. A 401 (key refused), 403
// (path not allowed), a redirect or another 4xx except 408, 422 and 429 cannot be fixed by
// retrying: the error then matches ErrVendingRefused and ErrNoToken, and Run returns it. Other
// answers (5xx, and a 201 without a token) are retried with the reconnect backoff.
type VendingError struct {
	StatusCode int
	URL        string // the vending endpoint
	Message    string // Plugboard's "error" text, or the start of the body
	// AllowedPathID and RequestedPathID are set for a 403: the path the service account is
	// bound to and the one that was asked for.
	AllowedPathID, RequestedPathID string
}

func (e *VendingError) Error() string {
	switch {
	case e.StatusCode == http.StatusUnauthorized:
		return fmt.Sprintf("telephone: Plugboard refused the service-account key (PLUGBOARD_SERVICE_ACCOUNT_KEY): %d %q; "+
			"check the key, and that its service account is not revoked and its path still exists", e.StatusCode, e.Message)
	case e.StatusCode == http.StatusForbidden:
		return fmt.Sprintf("telephone: the service-account key is bound to path %s, not to the requested path %s "+
			"(PLUGBOARD_PATH_ID): %q", e.AllowedPathID, e.RequestedPathID, e.Message)
	case e.StatusCode == http.StatusNotFound || (e.StatusCode >= 300 && e.StatusCode < 400):
		return fmt.Sprintf("telephone: no token vending endpoint at %s (check PLUGBOARD_API_URL): %d %q", e.URL, e.StatusCode, e.Message)
	}
	return fmt.Sprintf("telephone: token vending at %s answered %d: %q", e.URL, e.StatusCode, e.Message)
}

// permanent reports whether retrying cannot help: a 3xx or a 4xx other than 408, 422 and 429.
func (e *VendingError) permanent() bool {
	switch e.StatusCode {
	case http.StatusRequestTimeout, http.StatusUnprocessableEntity, http.StatusTooManyRequests:
		return false
	}
	return e.StatusCode >= 300 && e.StatusCode < 500
}

// Unwrap makes a permanent refusal match ErrVendingRefused and ErrNoToken.
func (e *VendingError) Unwrap() []error {
	if e.permanent() {
		return []error{ErrVendingRefused, ErrNoToken}
	}
	return nil
}

// vendReply is the 201 answer, and the error fields of the others.
type vendReply struct {
	Token           string `json:"token"`
	Error           string `json:"error"`
	AllowedPathID   any    `json:"allowed_path_id"`
	RequestedPathID any    `json:"requested_path_id"`
}

// vend asks for a new token once and returns the JWT.
func (v *vendor) vend(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.endpoint, bytes.NewReader(v.body))
	if err != nil {
		return "", fmt.Errorf("token vending: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+v.key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, err := v.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("token vending: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("token vending: reading the answer: %w", err)
	}
	var r vendReply
	jerr := json.Unmarshal(body, &r)
	if res.StatusCode == http.StatusCreated && jerr == nil && r.Token != "" {
		return r.Token, nil
	}
	e := &VendingError{StatusCode: res.StatusCode, URL: v.endpoint, Message: r.Error}
	if jerr != nil || r.Error == "" {
		e.Message = strings.ToValidUTF8(string(body[:min(len(body), 200)]), "?")
	}
	if r.AllowedPathID != nil || r.RequestedPathID != nil {
		e.AllowedPathID, e.RequestedPathID = fmt.Sprint(r.AllowedPathID), fmt.Sprint(r.RequestedPathID)
	}
	return "", e
}

// sourceVended marks a token obtained from the vending API.
const sourceVended = "vended"

// needsVend reports whether the current token cannot open a socket and a new one should be
// vended: there is none, or it was refused, revoked or has expired. tm.mu must be held.
func (tm *tokenManager) needsVendLocked(now time.Time) bool {
	return tm.vend != nil && (tm.cur.raw == "" || tm.refusedID[tm.cur.raw] || tm.revoked || !now.Before(tm.cur.claims.ExpiresAt))
}

// forDial returns the token to open the next socket with, vending a new one when needed.
// Concurrent callers (several sessions) share one vend.
func (tm *tokenManager) forDial(ctx context.Context) (token, error) {
	tm.mu.Lock()
	cur, vend := tm.cur, tm.needsVendLocked(time.Now())
	tm.mu.Unlock()
	if !vend {
		return cur, nil
	}
	tm.vend.mu.Lock()
	defer tm.vend.mu.Unlock()
	tm.mu.Lock()
	cur, vend = tm.cur, tm.needsVendLocked(time.Now())
	tm.mu.Unlock()
	if !vend {
		return cur, nil // another session vended meanwhile
	}
	tm.log.Info("vending a token", slog.String("url", tm.vend.endpoint), slog.String("instance_id", tm.vend.instanceID))
	raw, err := tm.vend.vend(ctx)
	if err != nil {
		return token{}, err
	}
	t, err := tm.parse(raw, sourceVended)
	if err != nil {
		return token{}, fmt.Errorf("token vending: %w", err)
	}
	if tm.vend.pathID != "" && t.claims.PathID != tm.vend.pathID {
		return token{}, fmt.Errorf("token vending: %w: vended token is for path %s, not %s", ErrInvalidToken, t.claims.PathID, tm.vend.pathID)
	}
	tm.mu.Lock()
	tm.cur, tm.fallback, tm.revoked, tm.failures = t, nil, false, 0
	tm.mu.Unlock()
	tm.save(ctx, t)
	tm.m.TokenExpiry(t.claims.ExpiresAt)
	tm.log.Info("token vended", slog.String("token_id", t.claims.ID), slog.String("path_id", t.claims.PathID),
		slog.Time("expires", t.claims.ExpiresAt))
	return t, nil
}

// forPath drops candidate tokens for another path than the vending PathID.
func (tm *tokenManager) forPath(cands []token) []token {
	if tm.vend == nil || tm.vend.pathID == "" {
		return cands
	}
	var out []token
	for _, t := range cands {
		if t.claims.PathID != tm.vend.pathID {
			tm.log.Warn("token not usable: it is for another path than PLUGBOARD_PATH_ID", slog.String("source", t.source),
				slog.String("path_id", t.claims.PathID), slog.String("want_path_id", tm.vend.pathID))
			continue
		}
		out = append(out, t)
	}
	return out
}

// explainRefusal logs why Plugboard most likely refused t. A token that has not expired and
// was not revoked was most likely refreshed by another telephone sharing it: that is logged
// once per Client as an error saying how to fix it.
func (tm *tokenManager) explainRefusal(t token, err error) {
	attrs := []any{slog.String("token_id", t.claims.ID), slog.String("source", t.source),
		slog.String("path_id", t.claims.PathID), slog.Any("error", err)}
	tm.mu.Lock()
	revoked := tm.revoked && tm.cur.raw == t.raw
	first := !tm.explained && !revoked && time.Now().Before(t.claims.ExpiresAt) && t.source != sourceVended
	tm.explained = tm.explained || first
	tm.mu.Unlock()
	next := "Run stops unless another token is left"
	if tm.vend != nil {
		next = "vending a new one"
	}
	switch {
	case !time.Now().Before(t.claims.ExpiresAt):
		tm.log.Warn("Plugboard refused the token: it has expired; "+next, attrs...)
	case revoked:
		tm.log.Warn("Plugboard refused the token: it was revoked; "+next, attrs...)
	case first:
		tm.log.Error("Plugboard refused a token that has not expired: most likely another telephone holding the same "+
			"token refreshed it (Plugboard keeps only the newest token of each record, so a token shared by replicas "+
			"breaks at the first refresh), or it was revoked. Give every replica its own token: set "+
			"PLUGBOARD_SERVICE_ACCOUNT_KEY (WithTokenVending) so that each replica vends one, or mint one token per replica; "+next, attrs...)
	default:
		tm.log.Warn("Plugboard refused the token; "+next, attrs...)
	}
}
