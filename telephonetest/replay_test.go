package telephonetest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/verastack/telephone/phoenix"
)

// recordingPath is the golden transcript recorded against Phoenix 1.7.21.
const recordingPath = "../testdata/phoenix-1.7.21-frames.md"

// recordedPathID is the path id used throughout the recording.
const recordedPathID = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"

// step is one recorded frame: conn is the recording's connection label ("A",
// "C(new JWT)", ...), in tells C→S from S→C.
type step struct {
	conn  string
	in    bool
	frame string
}

var (
	sectionLine = regexp.MustCompile(`^### (\d+)\. `)
	frameLine   = regexp.MustCompile("^`\\+\\s*\\d+ms` ([A-Z](?:\\([^)]*\\))?) (C→S|S→C) `(.*)`$")
)

// loadRecording parses the transcript into its numbered sections' frames.
func loadRecording(t testing.TB) map[int][]step {
	t.Helper()
	f, err := os.Open(recordingPath)
	if err != nil {
		t.Fatalf("open recording: %v", err)
	}
	defer f.Close()
	out := make(map[int][]step)
	section := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := sectionLine.FindStringSubmatch(line); m != nil {
			section, _ = strconv.Atoi(m[1])
			continue
		}
		if m := frameLine.FindStringSubmatch(line); m != nil && section > 0 {
			out[section] = append(out[section], step{conn: m[1], in: m[2] == "C→S", frame: m[3]})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRecordingParses(t *testing.T) {
	rec := loadRecording(t)
	want := map[int]int{1: 2, 2: 2, 3: 4, 4: 2, 5: 2, 6: 1, 7: 2, 8: 6, 9: 8, 10: 4, 11: 7, 12: 4, 13: 3, 15: 2, 16: 7}
	for sec, n := range want {
		if len(rec[sec]) != n {
			t.Errorf("section %d: %d frames, want %d", sec, len(rec[sec]), n)
		}
	}
}

// replayer plays recorded sections against a server: C→S frames are sent
// verbatim (recorded request and connection ids replaced by the live ones),
// S→C frames are read and compared by shape.
type replayer struct {
	t     *testing.T
	s     *Server
	rec   map[int][]step
	conns map[string]*rawClient
	ids   map[string]string // recorded request_id/connection_id → live one
	last  map[string]phoenix.Message
}

func newReplayer(t *testing.T, s *Server, rec map[int][]step) *replayer {
	return &replayer{t: t, s: s, rec: rec, conns: map[string]*rawClient{}, ids: map[string]string{}, last: map[string]phoenix.Message{}}
}

// play runs a section; hooks[i] runs before step i (hooks[len] at the end).
func (r *replayer) play(section int, hooks map[int]func()) {
	r.t.Helper()
	steps := r.rec[section]
	if len(steps) == 0 && section != 14 {
		r.t.Fatalf("section %d has no frames", section)
	}
	for i, st := range steps {
		if h := hooks[i]; h != nil {
			h()
		}
		c := r.conns[st.conn]
		if c == nil {
			r.t.Fatalf("section %d step %d: no connection %q", section, i, st.conn)
		}
		if st.in {
			c.sendRaw(r.substitute(st.frame))
			continue
		}
		got := c.read()
		r.last[st.conn] = got
		if err := r.compare(st.frame, got); err != nil {
			r.t.Fatalf("section %d step %d:\nrecorded %s\ngot      %s %s %s %s %s\n%v",
				section, i, st.frame, got.JoinRef, got.Ref, got.Topic, got.Event, got.Payload, err)
		}
	}
	if h := hooks[len(steps)]; h != nil {
		h()
	}
}

func (r *replayer) substitute(frame string) string {
	for rec, live := range r.ids {
		frame = strings.ReplaceAll(frame, rec, live)
	}
	return frame
}

// exactKeys are payload keys whose values must equal the recording's; other
// leaves only need the same JSON type.
var exactKeys = map[string]bool{
	"status": true, "reason": true, "method": true, "path": true, "query_string": true,
	"body": true, "opcode": true, "data": true, "code": true, "expires_in": true,
}

// freeKeys are objects whose keys depend on the HTTP client, not the server.
var freeKeys = map[string]bool{"headers": true}

// compare checks got against a recorded S→C frame: join_ref, ref, topic and
// event exactly, the payload's keys recursively, the values of exactKeys, and
// ids consistently mapped.
func (r *replayer) compare(recorded string, got phoenix.Message) error {
	want, err := phoenix.DecodeText([]byte(recorded))
	if err != nil {
		return fmt.Errorf("recorded frame: %w", err)
	}
	if want.JoinRef != got.JoinRef || want.Ref != got.Ref || want.Topic != got.Topic || want.Event != got.Event {
		return errors.New("envelope differs")
	}
	var wp, gp any
	if err := json.Unmarshal(want.Payload, &wp); err != nil {
		return err
	}
	if err := json.Unmarshal(got.Payload, &gp); err != nil {
		return err
	}
	return r.compareValue("payload", "", wp, gp)
}

func (r *replayer) compareValue(where, key string, want, got any) error {
	if reflect.TypeOf(want) != reflect.TypeOf(got) {
		return fmt.Errorf("%s: type %T, want %T", where, got, want)
	}
	switch w := want.(type) {
	case map[string]any:
		g := got.(map[string]any)
		if freeKeys[key] {
			return nil
		}
		if wk, gk := sortedKeys(w), sortedKeys(g); !reflect.DeepEqual(wk, gk) {
			return fmt.Errorf("%s: keys %v, want %v", where, gk, wk)
		}
		for k, wv := range w {
			if err := r.compareValue(where+"."+k, k, wv, g[k]); err != nil {
				return err
			}
		}
	case string:
		if key == "request_id" || key == "connection_id" {
			return r.mapID(where, w, got.(string))
		}
		if exactKeys[key] && w != got {
			return fmt.Errorf("%s: %q, want %q", where, got, w)
		}
	default:
		if exactKeys[key] && !reflect.DeepEqual(want, got) {
			return fmt.Errorf("%s: %v, want %v", where, got, want)
		}
	}
	return nil
}

func (r *replayer) mapID(where, recorded, live string) error {
	if prev, ok := r.ids[recorded]; ok && prev != live {
		return fmt.Errorf("%s: id %s, want %s (seen before)", where, live, prev)
	}
	r.ids[recorded] = live
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// upgradeStatus sends a WebSocket upgrade request and returns the status and
// body of a refusal.
func upgradeStatus(t testing.TB, rawURL string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, strings.Replace(rawURL, "ws://", "http://", 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	res := doHTTP(req)
	if res.err != nil {
		t.Fatal(res.err)
	}
	return res.status, res.body
}

// proxiedClient opens a client WebSocket through the /call front.
func proxiedClient(t testing.TB, s *Server, pathAndQuery string, header http.Header) *websocket.Conn {
	t.Helper()
	c, status, err := dialProxied(t, s, pathAndQuery, header, nil)
	if err != nil {
		t.Fatalf("proxied dial: status %d: %v", status, err)
	}
	return c
}

func dialProxied(t testing.TB, s *Server, pathAndQuery string, header http.Header, protocols []string) (*websocket.Conn, int, error) {
	t.Helper()
	ctx, cancel := contextWithTestTimeout()
	defer cancel()
	u := "ws" + strings.TrimPrefix(s.URL(), "http") + pathAndQuery
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: header, HTTPClient: noKeepAliveClient(), Subprotocols: protocols})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		return nil, status, err
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c, http.StatusSwitchingProtocols, nil
}

// clientRead reads one message from a proxied client.
func clientRead(t testing.TB, c *websocket.Conn) (websocket.MessageType, string) {
	t.Helper()
	ctx, cancel := contextWithTestTimeout()
	defer cancel()
	typ, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("proxied client read: %v", err)
	}
	return typ, string(data)
}

// clientClosed reads until the proxied client is closed and returns the close
// frame the server sent.
func clientClosed(t testing.TB, c *websocket.Conn) websocket.CloseError {
	t.Helper()
	ctx, cancel := contextWithTestTimeout()
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("proxied client ended without a close frame: %v", err)
		}
		return ce
	}
}

func clientWrite(t testing.TB, c *websocket.Conn, typ websocket.MessageType, data string) {
	t.Helper()
	ctx, cancel := contextWithTestTimeout()
	defer cancel()
	if err := c.Write(ctx, typ, []byte(data)); err != nil {
		t.Fatalf("proxied client write: %v", err)
	}
}

// TestReplayRecording replays sections 1-15 of the recording on one socket "A"
// (and the extra connections the recording opens), in order, as recorded.
func TestReplayRecording(t *testing.T) {
	rec := loadRecording(t)
	s := newTestServer(t, WithRequestTimeout(1500*time.Millisecond))
	tok, err := s.Mint(recordedPathID, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := newReplayer(t, s, rec)
	call := s.CallURL(recordedPathID)

	// 1. Mint + connect + join.
	r.conns["A"] = dial(t, s, tok.Token)
	r.play(1, nil)
	waitJoined(t, s, recordedPathID, 1)
	// 2. Phoenix heartbeat. 3. App heartbeat with and without ts: no reply.
	r.play(2, nil)
	r.play(3, map[int]func(){4: func() { r.conns["A"].expectNothing("b3") }})
	if ts := payloadMap(t, r.last["A"].Payload)["ts"].(float64); time.Since(time.Unix(int64(ts), 0)).Abs() > time.Hour {
		t.Errorf("heartbeat_ack without ts carries %v, want the server's Unix time", ts)
	}
	replayHTTP(t, r, call)
	replayWS(t, r)
	replaySessionEnd(t, r, tok, call)
}

// replayHTTP replays sections 4-7: proxied HTTP requests.
func replayHTTP(t *testing.T, r *replayer, call string) {
	var res <-chan httpResult
	// 4. POST with a chunked request body, answered 201.
	r.play(4, map[int]func(){
		0: func() {
			req, _ := http.NewRequest(http.MethodPost, call+"/api/echo?x=1", bufio.NewReader(strings.NewReader(`{"hello":"world"}`)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Custom", "abc")
			ch := make(chan httpResult, 1)
			go func() { ch <- doHTTP(req) }()
			res = ch
		},
		1: func() {
			h := payloadMap(t, r.last["A"].Payload)["headers"].(map[string]any)
			if h["x-custom"] != "abc" || h["content-type"] != "application/json" || h["transfer-encoding"] != "chunked" || h["host"] == nil {
				t.Errorf("proxy_req headers = %v", h)
			}
		},
		2: func() {
			got := await(t, res)
			if got.status != 201 || got.header.Get("Content-Type") != "application/json" ||
				got.header.Get("X-Telephone") != "recorder" || got.body != `{"ok":true}` {
				t.Errorf("section 4 HTTP = %d %v %q", got.status, got.header, got.body)
			}
		},
	})
	// 5. Chunked proxy_res → chunked transfer-encoding.
	r.play(5, map[int]func(){
		0: func() { res = goHTTP(t, http.MethodGet, call+"/stream", "", nil) },
		2: func() {
			got := await(t, res)
			if got.status != 200 || got.body != "abc" || !reflect.DeepEqual(got.te, []string{"chunked"}) {
				t.Errorf("section 5 HTTP = %d te=%v %q", got.status, got.te, got.body)
			}
		},
	})
	// 6. No answer → 504.
	r.play(6, map[int]func(){
		0: func() { res = goHTTP(t, http.MethodGet, call+"/slow", "", nil) },
		1: func() {
			if got := await(t, res); got.status != http.StatusGatewayTimeout {
				t.Errorf("section 6 HTTP = %d, want 504", got.status)
			}
		},
	})
	// 7. proxy_res for an unknown or missing request_id: ignored, no reply.
	r.play(7, map[int]func(){2: func() { r.conns["A"].expectNothing("b7") }})
}

// replayWS replays sections 8-9: proxied WebSockets.
func replayWS(t *testing.T, r *replayer) {
	var pc *websocket.Conn
	// 8. Client frames before ws_connected are buffered; frames both ways; client close.
	r.play(8, map[int]func(){
		0: func() {
			pc = proxiedClient(t, r.s, "/call/"+recordedPathID+"/socket?room=1", http.Header{"X-Request-Id": {"rec-1"}})
			clientWrite(t, pc, websocket.MessageText, "hi backend")
		},
		1: func() {
			h := payloadMap(t, r.last["A"].Payload)["headers"].(map[string]any)
			if h["x-request-id"] != "rec-1" {
				t.Errorf("ws_connect headers = %v", h)
			}
		},
		4: func() {
			if typ, got := clientRead(t, pc); typ != websocket.MessageText || got != "hello client" {
				t.Errorf("proxied client got %v %q", typ, got)
			}
			clientWrite(t, pc, websocket.MessageBinary, "\x01\x02\x03")
		},
		5: func() {
			if err := pc.Close(websocket.StatusNormalClosure, ""); err != nil {
				t.Errorf("client close: %v", err)
			}
		},
	})
	// 9. Backend closes (ws_closed 4000) and backend error (ws_error → 1014).
	r.play(9, map[int]func(){
		0: func() { pc = proxiedClient(t, r.s, "/call/"+recordedPathID+"/socket2", nil) },
		3: func() {
			if ce := clientClosed(t, pc); ce.Code != 4000 || ce.Reason != "backend done" {
				t.Errorf("ws_closed: client closed with %v", ce)
			}
		},
		4: func() { pc = proxiedClient(t, r.s, "/call/"+recordedPathID+"/socket2", nil) },
		7: func() {
			if ce := clientClosed(t, pc); ce.Code != websocket.StatusBadGateway || ce.Reason != "Bad Gateway: ECONNREFUSED" {
				t.Errorf("ws_error: client closed with %v", ce)
			}
		},
	})
}

// replaySessionEnd replays sections 10-15.
func replaySessionEnd(t *testing.T, r *replayer, tok Token, call string) {
	s := r.s
	// 10. Refresh: the old JWT is refused at once, the new one opens sockets.
	r.play(10, map[int]func(){
		2: func() {
			newTok, _ := payloadMap(t, r.last["A"].Payload)["response"].(map[string]any)["token"].(string)
			if status, body := upgradeStatus(t, socketURLFor(s, tok.Token)); status != http.StatusForbidden || body != "" {
				t.Errorf("old JWT after refresh: %d %q, want 403 with an empty body", status, body)
			}
			r.conns["C(new JWT)"] = dial(t, s, newTok)
		},
		4: func() { _ = r.conns["C(new JWT)"].c.Close(websocket.StatusNormalClosure, "") },
	})
	// 11. Unmatched topic, path_id mismatch, duplicate join. 12. Unknown event crashes the channel.
	r.play(11, nil)
	r.play(12, nil)
	// 13. Leave, then /call answers 503.
	r.play(13, map[int]func(){3: func() {
		waitJoinedExactly(t, s, recordedPathID, 0)
		if got := await(t, goHTTP(t, http.MethodGet, call+"/after-leave", "", nil)); got.status != http.StatusServiceUnavailable {
			t.Errorf("after leave: %d, want 503", got.status)
		}
	}})
	// 14. Refused connections: 403 with an empty body.
	replayRefusals(t, s, tok)
	// 15. Server-initiated disconnect: close code 1011.
	d := mint(t, s, recordedPathID)
	r.conns["D"] = dial(t, s, d.Token)
	r.play(15, map[int]func(){2: func() {
		s.Disconnect(d.ID)
		if code := r.conns["D"].closeStatus(); code != websocket.StatusInternalError {
			t.Errorf("disconnect: close code %d, want 1011", code)
		}
	}})
}

func replayRefusals(t *testing.T, s *Server, tok Token) {
	expired, err := s.Mint(recordedPathID, -time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	revoked := mint(t, s, recordedPathID)
	s.Revoke(revoked.ID)
	good := s.CurrentToken(tok.ID)
	badSig := good[:len(good)-4] + "AAAA"
	if badSig == good {
		badSig = good[:len(good)-4] + "BBBB"
	}
	cases := map[string]string{
		"no token": "", "bad signature": badSig, "expired JWT": expired.Token, "revoked JWT": revoked.Token,
	}
	for name, jwt := range cases {
		if status, body := upgradeStatus(t, socketURLFor(s, jwt)); status != http.StatusForbidden || body != "" {
			t.Errorf("%s: %d %q, want 403 with an empty body", name, status, body)
		}
	}
}

// TestReplayHeartbeatTimeout replays section 16 on a server with the recorded
// 2000 ms app heartbeat timeout: phx_error, the socket stays usable, /call 503.
func TestReplayHeartbeatTimeout(t *testing.T) {
	t.Parallel()
	rec := loadRecording(t)
	s := newTestServer(t, WithHeartbeatTimeout(2*time.Second))
	tok, err := s.Mint(recordedPathID, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := newReplayer(t, s, rec)
	r.conns["H"] = dial(t, s, tok.Token)
	r.play(16, map[int]func(){7: func() {
		if got := await(t, goHTTP(t, http.MethodGet, s.CallURL(recordedPathID)+"/x", "", nil)); got.status != http.StatusServiceUnavailable {
			t.Errorf("after heartbeat timeout: %d, want 503", got.status)
		}
		r.conns["H"].expectNothing("still-open")
	}})
}
