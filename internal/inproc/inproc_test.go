package inproc

import (
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestServesOneExchangeThenRefuses(t *testing.T) {
	s := New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.URL.Path+" from "+r.RemoteAddr)
	}), "192.0.2.1:0", discard())
	hc := s.HTTPClient()
	res, err := hc.Get("http://in-process/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if string(body) != "hello /x from 192.0.2.1:0" {
		t.Fatalf("body %q", body)
	}
	if _, err := hc.Get("http://in-process/y"); err == nil {
		t.Fatal("second dial over the single pipe succeeded")
	}
	if !s.Stop(time.Second) {
		t.Fatal("Stop reported a running handler after it returned")
	}
	if s.Conn() == nil {
		t.Fatal("no client end")
	}
}

func TestStopWaitsForTheHandler(t *testing.T) {
	entered, release, returned := make(chan struct{}), make(chan struct{}), make(chan struct{})
	s := New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(returned)
		close(entered)
		<-release
	}), "", discard())
	go func() {
		res, err := s.HTTPClient().Get("http://in-process/")
		if err == nil {
			_ = res.Body.Close()
		}
	}()
	<-entered
	if s.Stop(time.Millisecond) {
		t.Fatal("Stop returned true while the handler was blocked")
	}
	close(release)
	<-returned
	if !s.Stop(time.Minute) {
		t.Fatal("Stop returned false after the handler returned")
	}
}

func TestStoppedServerAnswers503(t *testing.T) {
	s := New(http.NotFoundHandler(), "", discard())
	s.Stop(time.Second)
	rec := &recorder{header: http.Header{}}
	s.ServeHTTP(rec, &http.Request{})
	if rec.code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", rec.code)
	}
	l := &listener{}
	if _, err := l.Accept(); err == nil || l.Close() != nil {
		t.Fatal("empty listener accepted")
	}
	if a := l.Addr(); a.Network() != "pipe" || a.String() == "" {
		t.Fatalf("addr %v", a)
	}
}

type recorder struct {
	header http.Header
	code   int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(p []byte) (int, error) { return len(p), nil }
func (r *recorder) WriteHeader(code int)        { r.code = code }
