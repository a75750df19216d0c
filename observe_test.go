package telephone_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/verastack/telephone"
)

// recorder is an Observer that keeps everything it is told.
type recorder struct {
	mu     sync.Mutex
	reqs   []*telephone.ObservedRequest
	resps  map[string]*telephone.ObservedResponse
	wss    []*telephone.ObservedWebSocket
	wsEnds []*telephone.ObservedWebSocketEnd
	ended  chan struct{} // one value per completed request or connection
}

func newRecorder() *recorder {
	return &recorder{resps: map[string]*telephone.ObservedResponse{}, ended: make(chan struct{}, 100)}
}

func (r *recorder) ObserveRequest(req *telephone.ObservedRequest) func(*telephone.ObservedResponse) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	return func(res *telephone.ObservedResponse) {
		r.mu.Lock()
		r.resps[req.ID] = res
		r.mu.Unlock()
		r.ended <- struct{}{}
	}
}

func (r *recorder) ObserveWebSocket(ws *telephone.ObservedWebSocket) func(*telephone.ObservedWebSocketEnd) {
	r.mu.Lock()
	r.wss = append(r.wss, ws)
	r.mu.Unlock()
	return func(end *telephone.ObservedWebSocketEnd) {
		r.mu.Lock()
		r.wsEnds = append(r.wsEnds, end)
		r.mu.Unlock()
		r.ended <- struct{}{}
	}
}

// observed waits for n ends, then returns the requests observed (there must be n) and the
// responses, holding r.mu until the returned unlock is called.
func (r *recorder) observed(t *testing.T, n int) (reqs []*telephone.ObservedRequest, resps map[string]*telephone.ObservedResponse, unlock func()) {
	t.Helper()
	for range n {
		r.wait(t)
	}
	r.mu.Lock()
	if len(r.reqs) != n {
		r.mu.Unlock()
		t.Fatalf("%d requests observed, want %d", len(r.reqs), n)
	}
	return r.reqs, r.resps, r.mu.Unlock
}

func (r *recorder) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r.ended:
	case <-time.After(waitBound):
		t.Fatal("the observer was not told of the end")
	}
}

func TestObserverSeesRequestsAndResponses(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	tn := startTunnel(t, nil, telephone.WithBackendURL(echoBackend(t).URL), telephone.WithObserver(rec))
	res, body := tn.do("POST", "/echo/a?x=1", strings.NewReader("ping"), "X-Custom", "v", "Authorization", "Bearer s")
	if res.StatusCode != 200 || body != "ping" {
		t.Fatalf("%d %q", res.StatusCode, body)
	}
	reqs, resps, unlock := rec.observed(t, 1)
	defer unlock()
	req := reqs[0]
	if req.Method != "POST" || req.Path != "/echo/a" || req.Query != "x=1" || req.Body != "ping" ||
		req.Header.Get("X-Custom") != "v" || req.Header.Get("Authorization") != "Bearer s" || req.ID == "" || req.Start.IsZero() {
		t.Errorf("observed request %+v", req)
	}
	got := resps[req.ID]
	if got == nil || got.Status != 200 || got.Body != "ping" || got.Header.Get("X-Got-Custom") != "v" || got.Duration <= 0 {
		t.Errorf("observed response %+v", got)
	}
}

// TestObserverSeesLargeBodies: a body sent from several buffers, in Plugboard chunks, is
// seen whole (the buffers go back to the pool once written).
func TestObserverSeesLargeBodies(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	tn := startTunnel(t, nil, telephone.WithBackendURL(echoBackend(t).URL), telephone.WithObserver(rec), telephone.WithChunkSize(1000))
	big := strings.Repeat("日本語😀é\"\n", 15000) // 315 000 bytes, 405 000 escaped
	res, body := tn.do("POST", "/echo", strings.NewReader(big))
	if res.StatusCode != 200 || body != big {
		t.Fatalf("%d, body of %d bytes", res.StatusCode, len(body))
	}
	rec.wait(t)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	got := rec.resps[rec.reqs[0].ID]
	if got == nil {
		t.Fatal("no response observed")
	}
	if got.Body != big {
		t.Fatalf("observed response body of %d bytes, want %d", len(got.Body), len(big))
	}
}

func TestObserverSeesTimeouts(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release })
	tn := startTunnel(t, nil, telephone.WithHandler(h), telephone.WithObserver(rec), telephone.WithRequestTimeout(200*time.Millisecond))
	res, _ := tn.do("GET", "/slow", nil)
	close(release)
	if res.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d", res.StatusCode)
	}
	rec.wait(t)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if res := rec.resps[rec.reqs[0].ID]; res == nil || res.Status != http.StatusGatewayTimeout {
		t.Errorf("observed %+v", res)
	}
}

func TestObserverSeesWebSockets(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	b := newWSBackend(t, []string{"chat"}, nil)
	tn := startTunnel(t, nil, telephone.WithBackendURL(b.URL), telephone.WithObserver(rec))
	c := dialWS(t, tn, "/room?x=1", &websocket.DialOptions{Subprotocols: []string{"chat"},
		HTTPHeader: http.Header{"Cookie": {"sid=1"}}})
	roundTrip(t, c, websocket.MessageText, []byte("hello"))
	roundTrip(t, c, websocket.MessageBinary, []byte{1, 2, 3})
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	rec.wait(t)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.wss) != 1 || len(rec.wsEnds) != 1 {
		t.Fatalf("observed %d connections and %d ends, want 1 and 1", len(rec.wss), len(rec.wsEnds))
	}
	ws := rec.wss[0]
	if !strings.HasSuffix(ws.URL, "/room?x=1") || ws.Protocol != "chat" || ws.Header.Get("Cookie") != "sid=1" || ws.ID == "" {
		t.Errorf("observed connection %+v", ws)
	}
	end := rec.wsEnds[0]
	if end.Code != 1000 || end.FramesIn != 2 || end.BytesIn != 8 || end.FramesOut != 2 || end.BytesOut != 8 || end.Duration <= 0 {
		t.Errorf("observed end %+v", end)
	}
}

func TestWithObserverNil(t *testing.T) {
	t.Parallel()
	if _, err := telephone.New("ws://pb.test/telephone/websocket", telephone.WithObserver(nil)); err == nil {
		t.Fatal("WithObserver(nil) accepted")
	}
}

// TestObserverNamesTheSession: with two sessions, Plugboard spreads requests over both, and the
// observer sees which one carried each request (the slot, as in Status.Sessions).
func TestObserverNamesTheSession(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	tn := startTunnel(t, nil, telephone.WithBackendURL(echoBackend(t).URL), telephone.WithObserver(rec), telephone.WithConnections(2))
	tn.waitJoined(2)
	for range 4 {
		if res, _ := tn.do("GET", "/", nil); res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		rec.wait(t)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	seen := map[int]int{}
	for _, r := range rec.reqs {
		seen[r.Session]++
	}
	if len(seen) != 2 || seen[0] == 0 || seen[1] == 0 {
		t.Errorf("requests per session %v, want both of 0 and 1", seen)
	}
}

// TestObserverSeesRefusals: a request refused at admission (here over the rate limit) is
// observed too, with the 429 it got; the backend never saw it.
func TestObserverSeesRefusals(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	var served sync.WaitGroup
	served.Add(1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Done() })
	tn := startTunnel(t, nil, telephone.WithHandler(h), telephone.WithObserver(rec), telephone.WithRateLimit(0.001, 1))
	if res, _ := tn.do("GET", "/first", nil); res.StatusCode != 200 {
		t.Fatalf("first: %d", res.StatusCode)
	}
	served.Wait()
	if res, _ := tn.do("GET", "/second?q=1", nil, "X-Custom", "v"); res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second: %d, want 429", res.StatusCode)
	}
	reqs, resps, unlock := rec.observed(t, 2)
	defer unlock()
	refused := reqs[1]
	if refused.Path != "/second" || refused.Query != "q=1" || refused.Header.Get("X-Custom") != "v" {
		t.Errorf("observed refusal %+v", refused)
	}
	if got := resps[refused.ID]; got == nil || got.Status != http.StatusTooManyRequests || got.Body == "" {
		t.Errorf("observed answer to the refusal %+v", got)
	}
}
