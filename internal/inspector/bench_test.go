package inspector

import (
	"net/http"
	"testing"
	"time"

	"github.com/verastack/telephone"
)

// BenchmarkObserveNoPage is what the inspector costs each proxied request while no page is
// open: one request recorded and finished, with a token in its query, and (once the ring is
// full) one entry evicted.
func BenchmarkObserveNoPage(b *testing.B) {
	in := New(Options{MaxEntries: 100})
	req := &telephone.ObservedRequest{Method: "GET", Path: "/items/1", Query: "a=1&token=abc;page=2",
		Host: "pb.example", Header: http.Header{"Accept": {"*/*"}}, Body: "payload", Start: time.Now()}
	res := &telephone.ObservedResponse{Status: 200, Header: http.Header{"Content-Type": {"text/plain"}},
		Body: "ok", Duration: time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		in.ObserveRequest(req)(res)
	}
}
