package telephone

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/verastack/telephone/phoenix"
)

// websocketGoingAway is the close code for proxied WebSockets when the telephone stops or
// loses its session.
const websocketGoingAway = 1001

// wsManager proxies Plugboard's WebSocket connections to the backend.
//
// TEMPORARY (issue 8 replaces this file): every ws_connect is refused with ws_error
// backend_error and every ws_check answered unsupported.
type wsManager struct {
	c  *Client
	mu sync.Mutex // guards rejected
	st WSStatus
}

func newWSManager(c *Client) *wsManager {
	return &wsManager{c: c, st: WSStatus{Max: c.o.maxWebSockets}}
}

func (w *wsManager) handle(s *session, m phoenix.Message) {
	var p struct {
		ConnectionID string `json:"connection_id"`
		CheckID      string `json:"check_id"`
	}
	if json.Unmarshal(m.Payload, &p) != nil {
		return
	}
	ctx := context.WithoutCancel(s.ctx)
	switch {
	case m.Event == "ws_connect" && p.ConnectionID != "":
		w.mu.Lock()
		w.st.Rejected++
		w.mu.Unlock()
		_ = s.ch.Send(ctx, "ws_error", map[string]string{"connection_id": p.ConnectionID, "reason": "backend_error"})
	case m.Event == "ws_check" && p.CheckID != "":
		_ = s.ch.Send(ctx, "ws_check_result", map[string]any{"check_id": p.CheckID, "supported": false, "reason": "backend_error"})
	}
}

func (w *wsManager) closeAll(code int) {}

func (w *wsManager) status() WSStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st
}
