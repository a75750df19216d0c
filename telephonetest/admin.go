package telephonetest

import (
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"
)

// mintResponse is the JSON answer of GET /mint (the devserver contract in cmd/telephone/README.md).
type mintResponse struct {
	Token     string `json:"token"`
	TokenID   string `json:"token_id"`
	PathID    string `json:"path_id"`
	ExpiresIn int64  `json:"expires_in"`
	SocketURL string `json:"socket_url"`
	CallURL   string `json:"call_url"`
}

// serveAdmin serves the loopback admin endpoints used by scripts and the CLI's
// devserver: GET /mint, /admin/revoke, /admin/disconnect, /admin/service-account,
// /admin/stats and /admin/sockets.
// Requests from non-loopback addresses get 403; errors are JSON {"error": ...}.
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	if !isLoopback(r.RemoteAddr) {
		writeJSON(w, http.StatusForbidden, errorBody("admin endpoints answer loopback clients only"))
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeJSON(w, http.StatusMethodNotAllowed, errorBody("use GET"))
		return
	}
	switch r.URL.Path {
	case "/mint":
		s.adminMint(w, r)
	case "/admin/revoke":
		s.adminRevoke(w, r, false)
	case "/admin/disconnect":
		if r.URL.Query().Has("conn") {
			s.adminDropSocket(w, r)
			return
		}
		s.adminRevoke(w, r, true)
	case "/admin/service-account":
		s.adminServiceAccount(w, r)
	case "/admin/stats":
		writeJSON(w, http.StatusOK, s.Stats())
	case "/admin/sockets":
		writeJSON(w, http.StatusOK, s.Sockets())
	default:
		writeJSON(w, http.StatusNotFound, errorBody("unknown admin endpoint"))
	}
}

func errorBody(msg string) map[string]string { return map[string]string{"error": msg} }

// isLoopback reports whether a RemoteAddr is a loopback address.
func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// adminMint serves GET /mint?path_id=<uuid>&ttl=<seconds>: a missing path_id
// gets a random one, a missing or zero ttl the token lifetime, a negative ttl
// an already expired token.
func (s *Server) adminMint(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ttl := time.Duration(0)
	if v := q.Get("ttl"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody("ttl must be an integer number of seconds"))
			return
		}
		ttl = time.Duration(n) * time.Second
	}
	tok, err := s.Mint(q.Get("path_id"), ttl)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
		return
	}
	if ttl == 0 {
		ttl = s.cfg.tokenLifetime
	}
	writeJSON(w, http.StatusOK, mintResponse{
		Token: tok.Token, TokenID: tok.ID, PathID: tok.PathID,
		ExpiresIn: int64(ttl / time.Second),
		SocketURL: s.SocketURL(), CallURL: s.CallURL(tok.PathID),
	})
}

// adminRevoke serves /admin/revoke?token_id=… and, with disconnect,
// /admin/disconnect?token_id=… which also closes the token's sockets (1011).
// token_id is the record id that /mint answers, or the jti of a JWT minted for
// the record: the id a telephone logs as token_id.
func (s *Server) adminRevoke(w http.ResponseWriter, r *http.Request, disconnect bool) {
	id := r.URL.Query().Get("token_id")
	if id == "" {
		writeJSON(w, http.StatusBadRequest, errorBody("token_id is required"))
		return
	}
	s.mu.Lock()
	rec := s.recordFor(id)
	s.mu.Unlock()
	if rec == nil {
		writeJSON(w, http.StatusNotFound, errorBody(ErrUnknownToken.Error()))
		return
	}
	id = rec.id
	s.Revoke(id)
	closed := 0
	if disconnect {
		closed = s.closeTokenSockets(id, websocket.StatusInternalError)
	}
	writeJSON(w, http.StatusOK, map[string]any{"token_id": id, "revoked": true, "closed_sockets": closed})
}

// adminDropSocket serves /admin/disconnect?conn=<id>: DropSocket for one socket
// (an id from /admin/sockets), answering {"conn", "failed_calls"}. The token is
// not revoked.
func (s *Server) adminDropSocket(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("conn")
	failed, err := s.DropSocket(id)
	if err != nil {
		writeJSON(w, http.StatusNotFound, errorBody(err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"conn": id, "failed_calls": failed})
}
