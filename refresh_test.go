package telephone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/verastack/telephone/internal/plugtoken"
	"github.com/verastack/telephone/phoenix"
	"github.com/verastack/telephone/tokenstore"
	"github.com/verastack/telephone/transport"
)

var errMemClosed = errors.New("memconn: closed")

// memConn is one end of an in-memory message connection (phoenix.Conn); inside a synctest
// bubble its blocking operations are durably blocking.
type memConn struct {
	in, out chan []byte
	closed  chan struct{}
	once    *sync.Once
}

func memPipe() (client, server memConn) {
	a, b := make(chan []byte, 64), make(chan []byte, 64)
	closed, once := make(chan struct{}), &sync.Once{}
	return memConn{in: a, out: b, closed: closed, once: once}, memConn{in: b, out: a, closed: closed, once: once}
}

func (m memConn) Read(ctx context.Context) (bool, []byte, error) {
	select {
	case b := <-m.in:
		return false, b, nil
	case <-m.closed:
		return false, nil, errMemClosed
	case <-ctx.Done():
		return false, nil, ctx.Err()
	}
}

func (m memConn) Write(ctx context.Context, _ bool, data []byte) error {
	select {
	case m.out <- data:
		return nil
	case <-m.closed:
		return errMemClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m memConn) Close(int, string) error {
	m.once.Do(func() { close(m.closed) })
	return nil
}

// fakePlugboard answers a telephone's frames the way the real channel does, with a
// scriptable refresh_token answer.
type fakePlugboard struct {
	t      *testing.T
	key    []byte
	pathID string
	// refresh decides the answer to the n-th refresh_token (1-based): "reply", "push",
	// "revoked" or "error".
	refresh func(n int) string
	refuse  map[string]bool // tokens answered with HTTP 403

	mu        sync.Mutex
	refreshes int
	issued    []string
	conns     int
	server    memConn           // the latest connection's server end
	servers   []memConn         // every connection's server end, in dial order
	dials     []time.Time       // when each dial happened (refused ones too)
	events    []string          // "<conn> proxy_res <status>" and "<conn> phx_leave", in arrival order
	results   []json.RawMessage // proxy_res payloads received
	leaves    int               // phx_leave messages received
	wg        sync.WaitGroup
}

func newFakePlugboard(t *testing.T) *fakePlugboard {
	return &fakePlugboard{t: t, key: plugtoken.DeriveKey(testSecret), pathID: "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
		refresh: func(int) string { return "reply" }}
}

const testSecret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func (f *fakePlugboard) mint(life time.Duration) string {
	now := time.Now()
	tok, err := plugtoken.Sign(plugtoken.Claims{Subject: "00000000-0000-4000-8000-000000000001", ID: "tok-" + now.Format(time.RFC3339Nano),
		PathID: f.pathID, IssuedAt: now, ExpiresAt: now.Add(life)}, f.key)
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

func (f *fakePlugboard) dial(_ context.Context, token string) (phoenix.Conn, error) {
	f.mu.Lock()
	refused := f.refuse[token]
	f.dials = append(f.dials, time.Now())
	f.mu.Unlock()
	if refused {
		return nil, &transport.UpgradeError{StatusCode: http.StatusForbidden, URL: "ws://plugboard.test/telephone/websocket?token=REDACTED"}
	}
	client, server := memPipe()
	f.mu.Lock()
	f.conns++
	f.server = server
	f.servers = append(f.servers, server)
	idx := len(f.servers) - 1
	f.mu.Unlock()
	f.wg.Go(func() { f.serve(idx, server) })
	return client, nil
}

func (f *fakePlugboard) serve(idx int, conn memConn) {
	ctx := context.Background()
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return
		}
		m, err := phoenix.DecodeText(data)
		if err != nil {
			f.t.Errorf("client sent a malformed frame: %v", err)
			return
		}
		f.record(idx, m)
		for _, out := range f.answer(m) {
			frame, err := phoenix.EncodeText(out)
			if err != nil {
				f.t.Error(err)
				return
			}
			if conn.Write(ctx, false, frame) != nil {
				return
			}
		}
	}
}

// record logs the proxy_res and phx_leave frames of connection idx.
func (f *fakePlugboard) record(idx int, m phoenix.Message) {
	var e string
	switch m.Event {
	case "proxy_res":
		var p struct {
			Status int `json:"status"`
		}
		_ = json.Unmarshal(m.Payload, &p)
		e = fmt.Sprintf("%d proxy_res %d", idx, p.Status)
	case phoenix.EventLeave:
		e = fmt.Sprintf("%d phx_leave", idx)
	default:
		return
	}
	f.mu.Lock()
	f.events = append(f.events, e)
	f.mu.Unlock()
}

func reply(m phoenix.Message, status string, response any) phoenix.Message {
	p, _ := json.Marshal(map[string]any{"status": status, "response": response})
	return phoenix.Message{JoinRef: m.JoinRef, Ref: m.Ref, Topic: m.Topic, Event: phoenix.EventReply, Payload: p}
}

func (f *fakePlugboard) answer(m phoenix.Message) []phoenix.Message {
	switch m.Event {
	case phoenix.EventHeartbeat:
		if m.Topic == phoenix.TopicPhoenix {
			return []phoenix.Message{reply(m, "ok", map[string]any{})}
		}
		return []phoenix.Message{{JoinRef: m.JoinRef, Topic: m.Topic, Event: "heartbeat_ack", Payload: json.RawMessage(`{"ts":1}`)}}
	case phoenix.EventJoin:
		return []phoenix.Message{reply(m, "ok", map[string]any{"status": "ok", "path": "/api", "expires_in": 3600})}
	case phoenix.EventLeave:
		f.mu.Lock()
		f.leaves++
		f.mu.Unlock()
		return []phoenix.Message{reply(m, "ok", map[string]any{})}
	case "proxy_res":
		f.mu.Lock()
		f.results = append(f.results, append(json.RawMessage(nil), m.Payload...))
		f.mu.Unlock()
	case "refresh_token":
		f.mu.Lock()
		f.refreshes++
		n := f.refreshes
		f.mu.Unlock()
		switch f.refresh(n) {
		case "push":
			tok := f.issue()
			p, _ := json.Marshal(map[string]any{"token": tok, "expires_in": 3600})
			return []phoenix.Message{{JoinRef: m.JoinRef, Topic: m.Topic, Event: "refresh_token_ack", Payload: p}}
		case "revoked":
			return []phoenix.Message{reply(m, "error", map[string]any{"reason": ":token_revoked"})}
		case "error":
			return []phoenix.Message{reply(m, "error", map[string]any{"reason": ":not_found"})}
		default:
			return []phoenix.Message{reply(m, "ok", map[string]any{"token": f.issue(), "expires_in": 3600})}
		}
	}
	return nil
}

func (f *fakePlugboard) issue() string {
	tok := f.mint(time.Hour)
	f.mu.Lock()
	f.issued = append(f.issued, tok)
	f.mu.Unlock()
	return tok
}

func (f *fakePlugboard) count() (refreshes int, issued []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshes, append([]string(nil), f.issued...)
}

// runFake runs a Client against f inside the current synctest bubble and returns a stop func.
func runFake(t *testing.T, f *fakePlugboard, opts ...Option) (*Client, func()) {
	t.Helper()
	opts = append([]Option{WithHandler(http.NotFoundHandler()), WithPlugboardSecret(testSecret)}, opts...)
	c, err := New("ws://plugboard.test/telephone/websocket", opts...)
	if err != nil {
		t.Fatal(err)
	}
	c.dialFn = f.dial
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	synctest.Wait()
	return c, func() {
		if err := c.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		f.wg.Wait()
	}
}

func TestRefreshAtHalfLife(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePlugboard(t)
		store := tokenstore.NewMemory()
		first := f.mint(time.Hour)
		c, stop := runFake(t, f, WithToken(first), WithTokenStore(store))
		defer stop()
		if !c.Status().Joined {
			t.Fatalf("not joined: %+v", c.Status())
		}
		time.Sleep(28*time.Minute + 29*time.Second) // before half-life minus the 5 % jitter
		if n, _ := f.count(); n != 0 {
			t.Fatalf("refreshed %d times before half-life", n)
		}
		time.Sleep(3 * time.Minute) // past half-life plus the jitter
		synctest.Wait()
		n, issued := f.count()
		if n != 1 {
			t.Fatalf("refreshes by 31.5 min = %d, want 1", n)
		}
		st := c.Status()
		stored, _ := store.Load(context.Background())
		if stored != issued[0] || st.LastRefresh.IsZero() || st.RefreshFailures != 0 || c.tokens.current().raw != issued[0] {
			t.Fatalf("refreshed token not adopted and saved: status %+v", st)
		}
		// The next refresh follows the new token's half-life.
		time.Sleep(31*time.Minute + 30*time.Second)
		synctest.Wait()
		if n, _ := f.count(); n != 2 {
			t.Fatalf("second refresh: %d", n)
		}
	})
}

func TestRefreshPushForm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePlugboard(t)
		f.refresh = func(int) string { return "push" }
		c, stop := runFake(t, f, WithToken(f.mint(10*time.Minute)))
		defer stop()
		time.Sleep(6 * time.Minute)
		synctest.Wait()
		_, issued := f.count()
		if len(issued) != 1 || c.tokens.current().raw != issued[0] || c.Status().RefreshFailures != 0 {
			t.Fatalf("push-form refresh not adopted: %+v", c.Status())
		}
	})
}

func TestRefreshRevokedStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePlugboard(t)
		f.refresh = func(int) string { return "revoked" }
		c, stop := runFake(t, f, WithToken(f.mint(10*time.Minute)))
		defer stop()
		time.Sleep(6 * time.Minute)
		synctest.Wait()
		st := c.Status()
		if !st.TokenRevoked || st.RefreshFailures != 1 {
			t.Fatalf("status after revocation = %+v", st)
		}
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		if n, _ := f.count(); n != 1 {
			t.Fatalf("refresh retried %d times after :token_revoked", n)
		}
		if !c.Status().Joined {
			t.Fatal("the live session must keep serving after a revocation")
		}
	})
}

func TestRefreshFailureThenSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePlugboard(t)
		f.refresh = func(n int) string {
			if n <= 2 {
				return "error"
			}
			return "reply"
		}
		c, stop := runFake(t, f, WithToken(f.mint(time.Hour)))
		defer stop()
		for n, _ := f.count(); n == 0; n, _ = f.count() {
			time.Sleep(time.Second)
		}
		synctest.Wait()
		if st := c.Status(); st.RefreshFailures != 1 || st.TokenRevoked || !st.LastRefresh.IsZero() {
			t.Fatalf("after the first failure: %+v", st)
		}
		time.Sleep(2 * time.Minute) // retries with backoff (5 s, 10 s, ...)
		synctest.Wait()
		n, issued := f.count()
		if n != 3 || len(issued) != 1 || c.tokens.current().raw != issued[0] || c.Status().RefreshFailures != 0 {
			t.Fatalf("refreshes %d, issued %d, status %+v", n, len(issued), c.Status())
		}
	})
}

func TestRefreshRetriesBeforeExpiry(t *testing.T) {
	t.Parallel()
	o := defaultOptions()
	tm := newTokenManager(newConfig(o), discardLogger(), nil)
	now := time.Now()
	tm.cur = token{claims: plugtoken.Claims{IssuedAt: now.Add(-50 * time.Minute), ExpiresAt: now.Add(7 * time.Minute)}}
	tm.failures = 10 // backoff would be 5 min or more
	if d := tm.nextRefresh(now); d > 2*time.Minute {
		t.Fatalf("next attempt in %v: must come before less than 5 minutes remain", d)
	}
	tm.failures = 0
	if d := tm.nextRefresh(now); d != time.Second {
		t.Fatalf("past half-life: next refresh in %v, want 1s", d)
	}
}

func TestRestartPicksNewestToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePlugboard(t)
		store := tokenstore.NewMemory()
		configured := f.mint(time.Hour)
		c, stop := runFake(t, f, WithToken(configured), WithTokenStore(store))
		time.Sleep(32 * time.Minute)
		synctest.Wait()
		stop()
		_, issued := f.count()
		if len(issued) != 1 {
			t.Fatalf("no refresh happened")
		}
		// A restart with the same (older) configured token resumes with the refreshed one.
		c2, stop2 := runFake(t, f, WithToken(configured), WithTokenStore(store))
		defer stop2()
		if got := c2.tokens.current(); got.raw != issued[0] || got.source != "stored" {
			t.Fatalf("restart uses the %s token, want the refreshed stored one", got.source)
		}
		_ = c
	})
}

func TestFutureIatWithinSkewAccepted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePlugboard(t)
		now := time.Now()
		mk := func(skew time.Duration) string {
			tok, _ := plugtoken.Sign(plugtoken.Claims{Subject: "s", ID: "j", PathID: f.pathID,
				IssuedAt: now.Add(skew), ExpiresAt: now.Add(time.Hour)}, f.key)
			return tok
		}
		o := defaultOptions()
		o.plugboardSecret = testSecret
		tm := newTokenManager(newConfig(o), discardLogger(), nil)
		if _, err := tm.parse(mk(3*time.Minute), "configured"); err != nil {
			t.Fatalf("iat 3 min ahead refused: %v", err)
		}
		if _, err := tm.parse(mk(10*time.Minute), "configured"); !errors.Is(err, plugtoken.ErrIssuedInFuture) {
			t.Fatalf("iat 10 min ahead: %v", err)
		}
		wrong, _ := plugtoken.Sign(plugtoken.Claims{Subject: "s", ID: "j", PathID: f.pathID, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, []byte("another key"))
		if _, err := tm.parse(wrong, "configured"); !errors.Is(err, plugtoken.ErrSignature) || !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("bad signature: %v", err)
		}
		expired, _ := plugtoken.Sign(plugtoken.Claims{Subject: "s", ID: "j", PathID: f.pathID, IssuedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}, f.key)
		if _, err := tm.parse(expired, "configured"); !errors.Is(err, plugtoken.ErrExpired) {
			t.Fatalf("expired: %v", err)
		}
	})
}

func (f *fakePlugboard) sawLeave() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leaves > 0
}

// TestRefusedNewerTokenFallsBackToOlder: the stored token is newer (by iat) and used first;
// when Plugboard refuses it, the configured one is tried once and used.
func TestRefusedNewerTokenFallsBackToOlder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePlugboard(t)
		configured := f.mint(time.Hour)
		time.Sleep(time.Minute)
		stored := f.mint(time.Hour)
		f.refuse = map[string]bool{stored: true}
		store := tokenstore.NewMemory()
		if err := store.Save(context.Background(), stored, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		c, stop := runFake(t, f, WithToken(configured), WithTokenStore(store))
		defer stop()
		if st := c.Status(); !st.Joined || c.tokens.current().raw != configured || st.Reconnects != 0 {
			t.Fatalf("did not fall back to the configured token: %+v", st)
		}
	})
}

// TestEveryTokenRefusedStopsRun: both sources refused → Run returns ErrTokenRefused.
func TestEveryTokenRefusedStopsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePlugboard(t)
		configured := f.mint(time.Hour)
		time.Sleep(time.Minute)
		stored := f.mint(time.Hour)
		f.refuse = map[string]bool{stored: true, configured: true}
		store := tokenstore.NewMemory()
		_ = store.Save(context.Background(), stored, time.Now().Add(time.Hour))
		c, err := New("ws://plugboard.test/telephone/websocket", WithToken(configured), WithTokenStore(store),
			WithHandler(http.NotFoundHandler()))
		if err != nil {
			t.Fatal(err)
		}
		c.dialFn = f.dial
		if err := c.Run(context.Background()); !errors.Is(err, ErrTokenRefused) || !errors.Is(err, transport.ErrUnauthorized) {
			t.Fatalf("Run = %v", err)
		}
		if st := c.Status(); st.LastError == "" || st.Joined {
			t.Fatalf("status %+v", st)
		}
	})
}

// gatedStore is a Memory store whose Save, once gate is set, waits for it to be closed.
type gatedStore struct {
	*tokenstore.Memory
	gate atomic.Pointer[chan struct{}]
}

func (s *gatedStore) Save(ctx context.Context, token string, exp time.Time) error {
	if g := s.gate.Load(); g != nil {
		<-*g
	}
	return s.Memory.Save(ctx, token, exp)
}

// TestRefreshSavedBeforeReported checks that Status reports a refresh only once the refreshed
// token is stored: whoever sees LastRefresh finds it in the TokenStore.
func TestRefreshSavedBeforeReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePlugboard(t)
		store := &gatedStore{Memory: tokenstore.NewMemory()}
		c, stop := runFake(t, f, WithToken(f.mint(time.Hour)), WithTokenStore(store))
		defer stop()
		gate := make(chan struct{})
		release := sync.OnceFunc(func() { close(gate) })
		defer release() // before stop, also when the test fails
		store.gate.Store(&gate)
		time.Sleep(32 * time.Minute) // past half-life: the refresh is being saved
		synctest.Wait()
		if n, _ := f.count(); n != 1 || !c.Status().LastRefresh.IsZero() {
			t.Fatalf("%d refreshes; LastRefresh %v reported before the token was stored", n, c.Status().LastRefresh)
		}
		release()
		synctest.Wait()
		_, issued := f.count()
		if stored, _ := store.Load(context.Background()); c.Status().LastRefresh.IsZero() || stored != issued[0] {
			t.Fatal("the refresh was not reported after the token was stored")
		}
	})
}
