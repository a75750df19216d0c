package telephone

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawBackend is a TCP backend whose answers the test writes byte by byte: serve is called
// for every request read on a connection (n counts from 0 on each connection) and reports
// whether to keep the connection.
type rawBackend struct {
	ln     net.Listener
	conns  atomic.Int32
	closed chan struct{} // one value each time the backend has closed a connection
	wg     sync.WaitGroup
}

func newRawBackend(t *testing.T, serve func(w io.Writer, r *http.Request, n int) bool) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &rawBackend{ln: ln, closed: make(chan struct{}, 64)}
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			b.wg.Go(func() {
				defer func() {
					c.Close()
					select {
					case b.closed <- struct{}{}:
					default:
					}
				}()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, r.Body)
					if !serve(c, r, n) {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		b.wg.Wait()
	})
	return b
}

// answer serves every request with 200 and body, keeping the connection or not.
func answer(body string, keep bool) func(io.Writer, *http.Request, int) bool {
	return func(w io.Writer, _ *http.Request, _ int) bool {
		fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		return keep
	}
}

func (b *rawBackend) url() string { return "http://" + b.ln.Addr().String() }

func testLean(t *testing.T) *leanTransport {
	t.Helper()
	lt := newLeanTransport(4, defaultBackendTransport())
	t.Cleanup(lt.CloseIdleConnections)
	return lt
}

func leanDo(t *testing.T, rt http.RoundTripper, method, url, body string) (*http.Response, string, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	res, err := rt.RoundTrip(r)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, string(b), err
}

func TestLeanTransportFraming(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		response  string
		want      string
		wantConns int32 // connections after two requests
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello", 1},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n", "hello", 1},
		{"no body", "HTTP/1.1 204 No Content\r\n\r\n", "", 1},
		{"early hints first", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello", 1},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", "hello", 2},
		{"until EOF", "HTTP/1.0 200 OK\r\n\r\nhello", "hello", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newRawBackend(t, func(w io.Writer, _ *http.Request, _ int) bool {
				_, _ = io.WriteString(w, tt.response)
				return !strings.Contains(tt.response, "close") && !strings.HasPrefix(tt.response, "HTTP/1.0")
			})
			lt := testLean(t)
			for range 2 {
				res, body, err := leanDo(t, lt, "GET", b.url()+"/x", "")
				if err != nil {
					t.Fatal(err)
				}
				if res.StatusCode/100 != 2 || body != tt.want {
					t.Fatalf("got %d %q, want 2xx %q", res.StatusCode, body, tt.want)
				}
			}
			if got := b.conns.Load(); got != tt.wantConns {
				t.Fatalf("%d connections, want %d", got, tt.wantConns)
			}
		})
	}
}

// A connection whose body was not read to its end is closed, never reused.
func TestLeanTransportUnreadBodyClosesConnection(t *testing.T) {
	t.Parallel()
	b := newRawBackend(t, answer("hello", true))
	lt := testLean(t)
	r, _ := http.NewRequest("GET", b.url(), nil)
	res, err := lt.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if _, body, err := leanDo(t, lt, "GET", b.url(), ""); err != nil || body != "hello" {
		t.Fatalf("second request: %q, %v", body, err)
	}
	if got := b.conns.Load(); got != 2 {
		t.Fatalf("%d connections, want 2", got)
	}
}

// The backend closes a kept-alive connection after each response without saying so: the
// next request notices it before sending and dials again, whatever its method. Each request
// waits until the backend has closed the previous connection: a close still on its way when
// the next request starts is a race no client can see, and a POST is then not sent again.
func TestLeanTransportClosedIdleConnection(t *testing.T) {
	t.Parallel()
	b := newRawBackend(t, answer("ok", false))
	lt := testLean(t)
	lt.peekAfter = 0
	for i, method := range []string{"GET", "POST", "POST"} {
		if _, body, err := leanDo(t, lt, method, b.url(), "data"); err != nil || body != "ok" {
			t.Fatalf("request %d (%s): %q, %v", i, method, body, err)
		}
		<-b.closed
	}
	if got := b.conns.Load(); got != 3 {
		t.Errorf("%d connections, want 3 (one per request)", got)
	}
}

// The backend reads the second request on a connection and closes it without answering: an
// idempotent request is sent once more on a new connection; a POST gets the error.
func TestLeanTransportReplaysIdempotentOnReusedConnection(t *testing.T) {
	t.Parallel()
	b := newRawBackend(t, func(w io.Writer, _ *http.Request, n int) bool {
		if n > 0 {
			return false // read it, answer nothing
		}
		_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	lt := testLean(t)
	tests := []struct {
		method, key string
		wantErr     bool
	}{
		{"GET", "", false},
		{"PUT", "k1", false}, // Idempotency-Key
		{"POST", "", true},
	}
	for _, tt := range tests {
		if _, _, err := leanDo(t, lt, "GET", b.url(), ""); err != nil { // a kept-alive connection
			t.Fatal(err)
		}
		r, _ := http.NewRequest(tt.method, b.url(), strings.NewReader("body"))
		if tt.key != "" {
			r.Header.Set("Idempotency-Key", tt.key)
		}
		res, err := lt.RoundTrip(r)
		if tt.wantErr {
			if err == nil {
				res.Body.Close()
				t.Fatalf("%s on a connection closed unanswered: no error", tt.method)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.method, err)
		}
		res.Body.Close()
	}
}

// Cancelling the request's context ends a round trip waiting for the backend at once.
func TestLeanTransportCancel(t *testing.T) {
	t.Parallel()
	got := make(chan struct{}, 1)
	release := make(chan struct{})
	b := newRawBackend(t, func(w io.Writer, _ *http.Request, n int) bool {
		if n == 0 {
			got <- struct{}{}
			<-release
		}
		return false
	})
	defer close(release)
	lt := testLean(t)
	ctx, cancel := context.WithCancel(context.Background())
	r, _ := http.NewRequestWithContext(ctx, "GET", b.url(), nil)
	go func() { <-got; cancel() }()
	if _, err := lt.RoundTrip(r); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// The same while reading the body.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	b2 := newRawBackend(t, func(w io.Writer, _ *http.Request, _ int) bool {
		_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
		got <- struct{}{}
		<-release
		return false
	})
	r2, _ := http.NewRequestWithContext(ctx2, "GET", b2.url(), nil)
	res, err := lt.RoundTrip(r2)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	go func() { <-got; cancel2() }()
	if _, err := io.ReadAll(res.Body); !errors.Is(err, context.Canceled) {
		t.Fatalf("body err = %v, want context.Canceled", err)
	}
}

// An idle connection is closed after the idle timeout.
func TestLeanTransportIdleTimeout(t *testing.T) {
	t.Parallel()
	closed := make(chan struct{})
	b := newRawBackend(t, answer("ok", true))
	lt := testLean(t)
	lt.idleTimeout = time.Millisecond
	if _, _, err := leanDo(t, lt, "GET", b.url(), ""); err != nil {
		t.Fatal(err)
	}
	go func() {
		// The backend's connection loop ends when the telephone closes its side.
		b.ln.Close()
		b.wg.Wait()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("idle connection not closed")
	}
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if n := len(lt.idle[b.ln.Addr().String()]); n != 0 {
		t.Fatalf("%d idle connections left", n)
	}
}

// More idle connections than maxIdle are closed, not kept.
func TestLeanTransportMaxIdle(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }))
	defer srv.Close()
	lt := testLean(t)
	var res []*http.Response
	for range 6 {
		r, _ := http.NewRequest("GET", srv.URL, nil)
		rs, err := lt.RoundTrip(r)
		if err != nil {
			t.Fatal(err)
		}
		res = append(res, rs)
	}
	for _, rs := range res {
		_, _ = io.Copy(io.Discard, rs.Body)
		rs.Body.Close()
	}
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if n := len(lt.idle[srv.Listener.Addr().String()]); n != lt.maxIdle {
		t.Fatalf("%d idle connections, want %d", n, lt.maxIdle)
	}
}

type fallbackRT struct{ n atomic.Int32 }

func (c *fallbackRT) RoundTrip(*http.Request) (*http.Response, error) {
	c.n.Add(1)
	return nil, errors.New("fallback")
}

// https and proxied requests go to the fallback transport.
func TestLeanTransportFallback(t *testing.T) {
	t.Parallel()
	fb := &fallbackRT{}
	lt := &leanTransport{fallback: fb, maxIdle: 1, idleTimeout: time.Minute, idle: map[string][]*leanConn{},
		proxy: func(r *http.Request) (*url.URL, error) {
			if r.URL.Host == "proxied.example" {
				return &url.URL{Scheme: "http", Host: "proxy.example"}, nil
			}
			return nil, nil
		}}
	for _, u := range []string{"https://backend.example/", "http://proxied.example/"} {
		r, _ := http.NewRequest("GET", u, nil)
		if _, err := lt.RoundTrip(r); err == nil || err.Error() != "fallback" {
			t.Fatalf("%s: err = %v, want the fallback's", u, err)
		}
	}
	if fb.n.Load() != 2 {
		t.Fatalf("fallback called %d times, want 2", fb.n.Load())
	}
}

// Requests waiting for a slow backend cost one goroutine each, the caller's: the transport
// starts none (net/http's Transport runs two per connection).
func TestLeanTransportNoGoroutinePerConnection(t *testing.T) {
	const n = 20
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	b := newRawBackend(t, func(w io.Writer, r *http.Request, k int) bool {
		arrived <- struct{}{}
		<-release
		return answer("ok", true)(w, r, k)
	})
	lt := testLean(t)
	before := runtime.NumGoroutine()
	var callers sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		callers.Go(func() {
			_, body, err := leanDo(t, lt, "GET", b.url(), "")
			if err == nil && body != "ok" {
				err = fmt.Errorf("body %q", body)
			}
			errs <- err
		})
	}
	for range n {
		<-arrived
	}
	// n callers and the backend's n connection handlers; nothing of the transport's.
	during := runtime.NumGoroutine() - before
	close(release)
	callers.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if during > 2*n {
		t.Fatalf("%d goroutines while %d requests wait, want at most %d", during, n, 2*n)
	}
}

// A backend that answers 413 after the head and closes without reading the body: the
// telephone passes the 413 on, not a write error.
func TestLeanTransportAnswerBeforeBody(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbig")
	})
	lt := testLean(t)
	res, body, err := leanDo(t, lt, "POST", "http://"+ln.Addr().String(), strings.Repeat("x", 32<<20))
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusRequestEntityTooLarge || body != "big" {
		t.Fatalf("got %d %q, want 413 \"big\"", res.StatusCode, body)
	}
}

// A response head without end is an error once it passes 10 MiB, not a growing buffer.
func TestLeanTransportHeadLimit(t *testing.T) {
	t.Parallel()
	b := newRawBackend(t, func(w io.Writer, _ *http.Request, _ int) bool {
		line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
		_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\n")
		for range (maxResponseHeaderBytes / len(line)) + 2 {
			if _, err := io.WriteString(w, line); err != nil {
				return false
			}
		}
		return false
	})
	lt := testLean(t)
	if _, _, err := leanDo(t, lt, "GET", b.url(), ""); !errors.Is(err, errHeadTooLarge) {
		t.Fatalf("err = %v, want errHeadTooLarge", err)
	}
}

// With several idle connections the backend closes unanswered, a request is sent once on a
// reused one and then on a new one: never once per idle connection.
func TestLeanTransportReplaysOnce(t *testing.T) {
	t.Parallel()
	var arrived sync.WaitGroup
	arrived.Add(3)
	var reusedTries atomic.Int32
	b := newRawBackend(t, func(w io.Writer, r *http.Request, n int) bool {
		if n > 0 {
			reusedTries.Add(1)
			return false // read it, answer nothing
		}
		if r.URL.Path == "/warm" {
			arrived.Done()
			arrived.Wait() // three connections at once
		}
		return answer("ok", true)(w, r, n)
	})
	lt := testLean(t)
	var warm sync.WaitGroup
	for range 3 {
		warm.Go(func() { _, _, _ = leanDo(t, lt, "GET", b.url()+"/warm", "") })
	}
	warm.Wait()
	if _, body, err := leanDo(t, lt, "GET", b.url()+"/x", ""); err != nil || body != "ok" {
		t.Fatalf("got %q, %v", body, err)
	}
	if got := reusedTries.Load(); got != 1 {
		t.Fatalf("sent %d times on reused connections, want 1", got)
	}
	if got := b.conns.Load(); got != 4 {
		t.Fatalf("%d connections, want 4", got)
	}
}

// TestAliveWithoutASocket: a connection that is not a socket (nothing to peek at) counts as
// usable, without a panic.
func TestAliveWithoutASocket(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if !alive(a) {
		t.Error("a pipe was judged dead")
	}
	if err := waitReadable(a); err != nil {
		t.Errorf("waitReadable on a pipe: %v", err)
	}
}
