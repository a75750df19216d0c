package telephone_test

import (
	"context"
	"io"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/telephonetest"
)

// benchTunnel measures one request end to end: an HTTP client calls the in-memory Plugboard,
// which pushes proxy_req to the Client over a real WebSocket; the Client forwards it to an
// in-process handler and sends proxy_res back.
func benchTunnel(b *testing.B, opts ...telephone.Option) {
	srv := telephonetest.NewServer()
	defer srv.Close()
	tok, err := srv.Mint(telephonetest.NewPathID(), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello from the backend")
	})
	opts = append([]telephone.Option{telephone.WithToken(tok.Token), telephone.WithHandler(h),
		telephone.WithRateLimit(math.Inf(1), 0)}, opts...)
	c, err := telephone.New(srv.SocketURL(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Shutdown(ctx)
		<-runErr
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.WaitJoined(ctx, tok.PathID, 1); err != nil {
		b.Fatal(err)
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, srv.CallURL(tok.PathID)+"/bench?x=1", nil)
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	b.ReportAllocs()
	for b.Loop() {
		res, err := client.Do(req)
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
