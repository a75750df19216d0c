package telephonetest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/verastack/telephone/phoenix"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait in the tests so that a bug fails instead of
// hanging; it is never a timing assertion.
const testTimeout = 60 * time.Second

// newTestServer starts a server closed at the end of the test.
func newTestServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := NewServer(opts...)
	t.Cleanup(s.Close)
	return s
}

// mint mints a token or fails the test.
func mint(t testing.TB, s *Server, pathID string) Token {
	t.Helper()
	tok, err := s.Mint(pathID, 0)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return tok
}

// socketURLFor returns the socket URL with token and vsn.
func socketURLFor(s *Server, token string) string {
	q := url.Values{"vsn": {"2.0.0"}}
	if token != "" {
		q.Set("token", token)
	}
	return s.SocketURL() + "?" + q.Encode()
}

// rawClient is a bare Phoenix V2 client over coder/websocket for tests.
type rawClient struct {
	t testing.TB
	c *websocket.Conn
}

// dialRaw opens a socket with the token; it returns the upgrade response status
// on refusal.
func dialRaw(t testing.TB, rawURL string) (*rawClient, int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, rawURL, &websocket.DialOptions{HTTPClient: noKeepAliveClient()})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
			if resp.Body != nil {
				_ = resp.Body.Close()
			}
		}
		return nil, status, err
	}
	c.SetReadLimit(-1)
	rc := &rawClient{t: t, c: c}
	t.Cleanup(func() { _ = c.CloseNow() })
	return rc, http.StatusSwitchingProtocols, nil
}

// dial opens a socket with the token or fails the test.
func dial(t testing.TB, s *Server, token string) *rawClient {
	t.Helper()
	c, status, err := dialRaw(t, socketURLFor(s, token))
	if err != nil {
		t.Fatalf("dial: status %d: %v", status, err)
	}
	return c
}

// noKeepAliveClient is an HTTP client that leaves no idle connection behind
// (goleak).
func noKeepAliveClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: testTimeout}
}

// sendRaw sends one text frame.
func (c *rawClient) sendRaw(frame string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		c.t.Fatalf("write %s: %v", frame, err)
	}
}

// send sends one message built from its parts (payload nil means {}).
func (c *rawClient) send(joinRef, ref, topic, event string, payload any) {
	c.t.Helper()
	data, err := marshalPayload(payload)
	if err != nil {
		c.t.Fatal(err)
	}
	frame, err := phoenix.EncodeText(phoenix.Message{JoinRef: joinRef, Ref: ref, Topic: topic, Event: event, Payload: data})
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(frame))
}

// readRaw reads the next text frame.
func (c *rawClient) readRaw() string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	typ, data, err := c.c.Read(ctx)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		c.t.Fatalf("read: binary frame %x", data)
	}
	return string(data)
}

// read reads and decodes the next frame.
func (c *rawClient) read() phoenix.Message {
	c.t.Helper()
	raw := c.readRaw()
	m, err := phoenix.DecodeText([]byte(raw))
	if err != nil {
		c.t.Fatalf("decode %s: %v", raw, err)
	}
	return m
}

// expect reads the next frame and checks its event.
func (c *rawClient) expect(event string) phoenix.Message {
	c.t.Helper()
	m := c.read()
	if m.Event != event {
		c.t.Fatalf("got %s %s, want event %s", m.Event, m.Payload, event)
	}
	return m
}

// expectReply reads a phx_reply and checks its status; it returns the response.
func (c *rawClient) expectReply(ref, status string) json.RawMessage {
	c.t.Helper()
	m := c.expect(phoenix.EventReply)
	r, err := phoenix.DecodeReply(m.Payload)
	if err != nil {
		c.t.Fatal(err)
	}
	if m.Ref != ref || r.Status != status {
		c.t.Fatalf("reply ref %q status %q (%s), want ref %q status %q", m.Ref, r.Status, r.Response, ref, status)
	}
	return r.Response
}

// join joins telephone:<pathID> with joinRef as both join_ref and ref. The join reply is
// queued before the channel is registered; join returns after a barrier, whose reply comes
// after the join was handled, so that HTTP calls made from then on find the channel.
func (c *rawClient) join(pathID, joinRef string) {
	c.t.Helper()
	c.send(joinRef, joinRef, topicPrefix+pathID, phoenix.EventJoin, nil)
	c.expectReply(joinRef, "ok")
	c.expectNothing("joined-" + joinRef)
}

// barrier sends a phoenix heartbeat and reads frames up to its reply, returning
// the frames received before it: the server handles messages in order, so
// anything an earlier message caused arrives before the barrier's reply.
func (c *rawClient) barrier(ref string) []phoenix.Message {
	c.t.Helper()
	c.send("", ref, phoenix.TopicPhoenix, phoenix.EventHeartbeat, nil)
	var before []phoenix.Message
	for {
		m := c.read()
		if m.Topic == phoenix.TopicPhoenix && m.Event == phoenix.EventReply && m.Ref == ref {
			return before
		}
		before = append(before, m)
	}
}

// expectNothing checks that no frame precedes a barrier.
func (c *rawClient) expectNothing(ref string) {
	c.t.Helper()
	if got := c.barrier(ref); len(got) > 0 {
		c.t.Fatalf("unexpected frames: %+v", got)
	}
}

// closeStatus reads until the connection closes and returns the close code
// (-1 when it ended without a close frame).
func (c *rawClient) closeStatus() websocket.StatusCode {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for {
		_, _, err := c.c.Read(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				c.t.Fatalf("socket did not close: %v", err)
			}
			return websocket.CloseStatus(err)
		}
	}
}

// waitJoined waits for n telephones on the path or fails the test.
func waitJoined(t testing.TB, s *Server, pathID string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.WaitJoined(ctx, pathID, n); err != nil {
		t.Fatalf("WaitJoined(%d): %v", n, err)
	}
}

// httpResult is a finished HTTP call.
type httpResult struct {
	status int
	header http.Header
	body   string
	te     []string
	err    error
}

// doHTTP performs a request and reads the whole response.
func doHTTP(req *http.Request) httpResult {
	resp, err := noKeepAliveClient().Do(req)
	if err != nil {
		return httpResult{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return httpResult{status: resp.StatusCode, header: resp.Header, body: string(b), te: resp.TransferEncoding, err: err}
}

// goHTTP performs a request in the background; the result arrives on the
// returned channel. The goroutine ends when the request does (bounded by the
// client timeout).
func goHTTP(t testing.TB, method, rawURL, body string, header http.Header) <-chan httpResult {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, rawURL, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	out := make(chan httpResult, 1)
	go func() { out <- doHTTP(req) }()
	return out
}

// await waits for an HTTP result.
func await(t testing.TB, ch <-chan httpResult) httpResult {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("http: %v", r.err)
		}
		return r
	case <-time.After(testTimeout):
		t.Fatal("http request did not finish")
		return httpResult{}
	}
}

// payloadMap decodes a payload into a map.
func payloadMap(t testing.TB, raw json.RawMessage) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("payload %s: %v", raw, err)
	}
	return m
}

// answer reads the next proxy_req and answers it with proxy_res.
func (c *rawClient) answer(joinRef, ref string, res map[string]any) proxyRequest {
	c.t.Helper()
	m := c.expect("proxy_req")
	var req proxyRequest
	if err := json.Unmarshal(m.Payload, &req); err != nil {
		c.t.Fatal(err)
	}
	res["request_id"] = req.RequestID
	c.send(joinRef, ref, m.Topic, "proxy_res", res)
	return req
}

// contextWithTestTimeout bounds one wait by testTimeout.
func contextWithTestTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), testTimeout)
}

// netListen listens on a random loopback port.
func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
