package phoenix

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

const goldenPath = "../testdata/phoenix-1.7.21-frames.md"

// goldenFrame is one recorded frame of the transcript.
type goldenFrame struct {
	line     int
	clientTx bool // C→S (true) or S→C (false)
	raw      string
}

// loadGolden returns every frame of the form C→S `[...]` or S→C `[...]`.
func loadGolden(tb testing.TB) []goldenFrame {
	tb.Helper()
	f, err := os.Open(goldenPath)
	if err != nil {
		tb.Fatalf("open golden frames: %v", err)
	}
	defer f.Close()
	var frames []goldenFrame
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		for _, dir := range []string{"C→S `", "S→C `"} {
			i := strings.Index(line, dir)
			if i < 0 {
				continue
			}
			rest := line[i+len(dir):]
			end := strings.IndexByte(rest, '`')
			if end < 0 || !strings.HasPrefix(rest, "[") {
				tb.Fatalf("line %d: frame not closed or not an array: %q", n, line)
			}
			frames = append(frames, goldenFrame{line: n, clientTx: dir[0] == 'C', raw: rest[:end]})
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("read golden frames: %v", err)
	}
	return frames
}

func TestGoldenFramesDecodeAndReencode(t *testing.T) {
	t.Parallel()
	frames := loadGolden(t)
	var cs, sc int
	for _, g := range frames {
		m, err := DecodeText([]byte(g.raw))
		if err != nil {
			t.Fatalf("line %d: DecodeText(%s): %v", g.line, g.raw, err)
		}
		if m.Topic == "" || m.Event == "" || len(m.Payload) == 0 {
			t.Errorf("line %d: empty topic/event/payload in %+v", g.line, m)
		}
		if !g.clientTx {
			sc++
			continue
		}
		cs++
		out, err := EncodeText(m)
		if err != nil {
			t.Fatalf("line %d: EncodeText: %v", g.line, err)
		}
		if string(out) != g.raw {
			t.Errorf("line %d: re-encoded frame differs\n got %s\nwant %s", g.line, out, g.raw)
		}
	}
	if cs != 26 || sc != 30 {
		t.Fatalf("parsed %d C→S and %d S→C frames, want 26 and 30", cs, sc)
	}
}

func TestGoldenFramesFields(t *testing.T) {
	t.Parallel()
	const topic = "telephone:aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
	byRaw := map[string]Message{}
	for _, g := range loadGolden(t) {
		m, err := DecodeText([]byte(g.raw))
		if err != nil {
			t.Fatal(err)
		}
		byRaw[g.raw] = m
	}
	tests := []struct {
		raw  string
		want Message
	}{
		{`["1","1","` + topic + `","phx_join",{}]`,
			Message{JoinRef: "1", Ref: "1", Topic: topic, Event: EventJoin, Payload: []byte(`{}`)}},
		{`[null,"2","phoenix","heartbeat",{}]`,
			Message{Ref: "2", Topic: TopicPhoenix, Event: EventHeartbeat, Payload: []byte(`{}`)}},
		{`[null,"2","phoenix","phx_reply",{"response":{},"status":"ok"}]`,
			Message{Ref: "2", Topic: TopicPhoenix, Event: EventReply, Payload: []byte(`{"response":{},"status":"ok"}`)}},
		{`["1",null,"` + topic + `","heartbeat_ack",{"ts":1700000000}]`,
			Message{JoinRef: "1", Topic: topic, Event: "heartbeat_ack", Payload: []byte(`{"ts":1700000000}`)}},
		{`["3","3","` + topic + `","phx_error",{}]`,
			Message{JoinRef: "3", Ref: "3", Topic: topic, Event: EventError, Payload: []byte(`{}`)}},
	}
	for _, tt := range tests {
		got, ok := byRaw[tt.raw]
		if !ok {
			t.Errorf("frame %s not found in the golden file", tt.raw)
			continue
		}
		assertMessage(t, got, tt.want)
	}
}

func TestGoldenReplies(t *testing.T) {
	t.Parallel()
	var ok, errs int
	for _, g := range loadGolden(t) {
		m, _ := DecodeText([]byte(g.raw))
		if m.Event != EventReply {
			continue
		}
		r, err := DecodeReply(m.Payload)
		if err != nil {
			t.Fatalf("line %d: DecodeReply: %v", g.line, err)
		}
		switch r.Status {
		case "ok":
			ok++
		case "error":
			errs++
			re := &ReplyError{Status: r.Status, Response: r.Response}
			if re.Reason() == "" {
				t.Errorf("line %d: error reply without reason: %s", g.line, r.Response)
			}
		default:
			t.Errorf("line %d: status %q", g.line, r.Status)
		}
	}
	if ok != 11 || errs != 2 {
		t.Fatalf("got %d ok and %d error replies, want 11 and 2", ok, errs)
	}
}

func assertMessage(t *testing.T, got, want Message) {
	t.Helper()
	if got.JoinRef != want.JoinRef || got.Ref != want.Ref || got.Topic != want.Topic ||
		got.Event != want.Event || got.Status != want.Status || got.Binary != want.Binary ||
		string(got.Payload) != string(want.Payload) {
		t.Errorf("message mismatch\n got %+v (payload %s)\nwant %+v (payload %s)", got, got.Payload, want, want.Payload)
	}
}
