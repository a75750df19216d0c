package telephonetest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/verastack/telephone/phoenix"
)

// BenchmarkCallRoundTrip measures one HTTP request through the /call front:
// proxy_req to a raw telephone, proxy_res back, response to the caller.
func BenchmarkCallRoundTrip(b *testing.B) {
	s := NewServer()
	defer s.Close()
	tok := mint(b, s, "")
	c := dial(b, s, tok.Token)
	c.join(tok.PathID, "1")
	topic := topicPrefix + tok.PathID
	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() { _ = c.c.CloseNow() }()
	wg.Go(func() { answerLoop(c.c, topic) })
	client := &http.Client{}
	defer client.CloseIdleConnections()
	url := s.CallURL(tok.PathID) + "/bench"
	b.ReportAllocs()
	for b.Loop() {
		res, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
}

// answerLoop answers every proxy_req with a small 200 until the socket closes.
func answerLoop(c *websocket.Conn, topic string) {
	for {
		_, data, err := c.Read(context.Background())
		if err != nil {
			return
		}
		m, err := phoenix.DecodeText(data)
		if err != nil || m.Event != "proxy_req" {
			continue
		}
		var req proxyRequest
		_ = json.Unmarshal(m.Payload, &req)
		res, _ := json.Marshal(map[string]any{"request_id": req.RequestID, "body": "ok"})
		frame, _ := phoenix.EncodeText(phoenix.Message{JoinRef: "1", Ref: "r", Topic: topic, Event: "proxy_res", Payload: res})
		if c.Write(context.Background(), websocket.MessageText, frame) != nil {
			return
		}
	}
}
