package telephonetest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/verastack/telephone/phoenix"
	"github.com/verastack/telephone/telephonetest"
)

// miniTelephone is a tiny telephone built on the phoenix codec and
// coder/websocket: it joins telephone:<path_id> and serves every proxy_req
// with an http.Handler. It stands in for telephone.Client in these examples.
type miniTelephone struct {
	conn      *websocket.Conn
	done      chan struct{}
	closeCode websocket.StatusCode // how the server closed the socket, once done is closed
}

// dialTelephone connects, joins and starts serving h. It returns the join
// reply's response.
func dialTelephone(ctx context.Context, s *telephonetest.Server, tok telephonetest.Token, h http.Handler) (*miniTelephone, json.RawMessage, error) {
	u := s.SocketURL() + "?vsn=2.0.0&token=" + url.QueryEscape(tok.Token)
	c, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		return nil, nil, err
	}
	topic := "telephone:" + tok.PathID
	join, _ := phoenix.EncodeText(phoenix.Message{JoinRef: "1", Ref: "1", Topic: topic, Event: phoenix.EventJoin})
	if err := c.Write(ctx, websocket.MessageText, join); err != nil {
		return nil, nil, err
	}
	_, data, err := c.Read(ctx)
	if err != nil {
		return nil, nil, err
	}
	m, err := phoenix.DecodeText(data)
	if err != nil {
		return nil, nil, err
	}
	reply, err := phoenix.DecodeReply(m.Payload)
	if err != nil {
		return nil, nil, err
	}
	t := &miniTelephone{conn: c, done: make(chan struct{})}
	go t.serve(topic, h)
	return t, reply.Response, nil
}

// serve answers proxy_req pushes until the socket closes.
func (t *miniTelephone) serve(topic string, h http.Handler) {
	defer close(t.done)
	for ref := 2; ; ref++ {
		_, data, err := t.conn.Read(context.Background())
		if err != nil {
			t.closeCode = websocket.CloseStatus(err)
			return
		}
		m, err := phoenix.DecodeText(data)
		if err != nil || m.Event != "proxy_req" {
			continue
		}
		res := handle(m.Payload, h)
		frame, _ := phoenix.EncodeText(phoenix.Message{JoinRef: "1", Ref: fmt.Sprint(ref), Topic: topic, Event: "proxy_res", Payload: res})
		_ = t.conn.Write(context.Background(), websocket.MessageText, frame)
	}
}

// handle turns a proxy_req payload into a proxy_res payload by running h.
func handle(payload json.RawMessage, h http.Handler) json.RawMessage {
	var req struct {
		RequestID   string            `json:"request_id"`
		Method      string            `json:"method"`
		Path        string            `json:"path"`
		Headers     map[string]string `json:"headers"`
		Body        string            `json:"body"`
		QueryString string            `json:"query_string"`
	}
	_ = json.Unmarshal(payload, &req)
	target := req.Path
	if req.QueryString != "" {
		target += "?" + req.QueryString
	}
	r := httptest.NewRequest(req.Method, target, strings.NewReader(req.Body))
	for k, v := range req.Headers {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	headers := map[string]string{}
	for k, vs := range rec.Header() {
		headers[k] = vs[0]
	}
	res, _ := json.Marshal(map[string]any{
		"request_id": req.RequestID, "status": rec.Code, "headers": headers, "body": rec.Body.String(),
	})
	return res
}

// Close closes the socket and waits for the serving goroutine.
func (t *miniTelephone) Close() {
	_ = t.conn.Close(websocket.StatusNormalClosure, "")
	<-t.done
}

// get performs a GET and returns "status body".
func get(rawURL string) string {
	res, err := http.Get(rawURL)
	if err != nil {
		return err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return fmt.Sprintf("%d %s", res.StatusCode, strings.TrimSpace(string(b)))
}

// This example tests a handler end to end: an HTTP request sent to the
// server's /call front travels to the telephone as proxy_req, the telephone
// runs the handler, and its proxy_res becomes the HTTP response.
func Example() {
	s := telephonetest.NewServer()
	defer s.Close()
	defer http.DefaultClient.CloseIdleConnections()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, %s", r.URL.Query().Get("name"))
	})

	tok, err := s.Mint("", 0)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tel, _, err := dialTelephone(ctx, s, tok, mux)
	if err != nil {
		panic(err)
	}
	defer tel.Close()
	if err := s.WaitJoined(ctx, tok.PathID, 1); err != nil {
		panic(err)
	}

	fmt.Println(get(s.CallURL(tok.PathID) + "/hello?name=gopher"))
	// Output: 200 hello, gopher
}

// This example shows the join reply a telephone receives.
func ExampleServer_Mint() {
	s := telephonetest.NewServer(telephonetest.WithTokenLifetime(30 * time.Minute))
	defer s.Close()
	tok, err := s.Mint("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", 0)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tel, joinReply, err := dialTelephone(ctx, s, tok, http.NotFoundHandler())
	if err != nil {
		panic(err)
	}
	defer tel.Close()
	fmt.Println(string(joinReply))
	// Output: {"expires_in":1800,"path":"/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee","status":"ok"}
}

// This example injects faults: with no telephone the front answers 503, and
// Restart closes telephone sockets with close code 1012 as a draining server
// does.
func ExampleServer_Restart() {
	s := telephonetest.NewServer()
	defer s.Close()
	defer http.DefaultClient.CloseIdleConnections()
	tok, err := s.Mint("", 0)
	if err != nil {
		panic(err)
	}
	fmt.Println(strings.SplitN(get(s.CallURL(tok.PathID)+"/x"), " ", 2)[0])

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tel, _, err := dialTelephone(ctx, s, tok, http.NotFoundHandler())
	if err != nil {
		panic(err)
	}
	s.Restart()
	<-tel.done
	fmt.Println("telephone closed with", int(tel.closeCode))
	// Output:
	// 503
	// telephone closed with 1012
}
