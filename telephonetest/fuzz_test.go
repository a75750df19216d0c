package telephonetest

import (
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/verastack/telephone/internal/binframe"
)

// FuzzSocketFrame feeds arbitrary frames to a joined socket: the server must
// never panic or hang, whatever arrives.
func FuzzSocketFrame(f *testing.F) {
	topic := topicPrefix + recordedPathID
	for _, seed := range []string{
		`["1","2","` + topic + `","heartbeat",{"ts":1}]`,
		`["1","2","` + topic + `","proxy_res",{"request_id":"x","status":200}]`,
		`["1","2","` + topic + `","ws_frame",{"connection_id":"x","opcode":"text","data":"aGk="}]`,
		`["1","2","` + topic + `","ws_check_result",{"check_id":"x"}]`,
		`["1","2","` + topic + `","refresh_token",{}]`,
		`["1","2","` + topic + `","phx_leave",{}]`,
		`["3","3","` + topic + `","phx_join",{}]`,
		`[null,"2","phoenix","heartbeat",{}]`,
		`[1,2,3]`, `{}`, ``, `["1","2","t","e",[],"extra"]`,
	} {
		f.Add([]byte(seed), false)
	}
	bin, _ := binframe.Push("1", "2", topic, "proxy_res", []byte{1})
	f.Add(bin, true)
	f.Fuzz(func(t *testing.T, data []byte, binary bool) {
		s := newServer([]Option{WithIdleTimeout(time.Hour), WithWSCheck()})
		tok, err := s.Mint(recordedPathID, 0)
		if err != nil {
			t.Fatal(err)
		}
		fc, stop := fakeSocket(t, s, tok)
		defer stop()
		typ := websocket.MessageText
		if binary {
			typ = websocket.MessageBinary
		}
		for _, m := range []fakeMsg{
			{websocket.MessageText, []byte(`["1","1","` + topic + `","phx_join",{}]`)},
			{typ, data},
			{websocket.MessageText, []byte(`[null,"b","phoenix","heartbeat",{}]`)},
		} {
			select {
			case fc.in <- m:
			case <-fc.closed:
				return
			}
		}
	})
}
