package telephone_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/telephonetest"
)

// Embedding: the Client serves Plugboard's requests with the service's own http.Handler,
// with no TCP hop. telephonetest stands in for Plugboard.
func Example_embedded() {
	plugboard := telephonetest.NewServer()
	defer plugboard.Close()
	tok, _ := plugboard.Mint(telephonetest.NewPathID(), time.Hour)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello/{name}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, %s", r.PathValue("name"))
	})
	client, err := telephone.New(plugboard.SocketURL(), telephone.WithToken(tok.Token), telephone.WithHandler(mux))
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- client.Run(context.Background()) }()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = plugboard.WaitJoined(ctx, tok.PathID, 1)
	res, err := http.Get(plugboard.CallURL(tok.PathID) + "/hello/gopher")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	fmt.Println(res.StatusCode, string(body))

	_ = client.Shutdown(ctx)
	fmt.Println("Run returned:", <-done)
	// Output:
	// 200 hello, gopher
	// Run returned: <nil>
}

// Sidecar: the Client forwards to a TCP backend through httputil.ReverseProxy.
func Example_sidecar() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"path":%q,"query":%q}`, r.URL.Path, r.URL.RawQuery)
	}))
	defer backend.Close()
	plugboard := telephonetest.NewServer()
	defer plugboard.Close()
	tok, _ := plugboard.Mint(telephonetest.NewPathID(), time.Hour)

	client, err := telephone.New(plugboard.SocketURL(), telephone.WithToken(tok.Token), telephone.WithBackendURL(backend.URL))
	if err != nil {
		fmt.Println(err)
		return
	}
	go func() { _ = client.Run(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer func() { _ = client.Shutdown(ctx) }()
	// Status reports the join, and the path Plugboard gave, once the Client has processed
	// Plugboard's reply (Plugboard counts it when sending the reply, and may already push
	// requests before then).
	for st := client.Status(); (!st.Joined || st.Path == "") && ctx.Err() == nil; st = client.Status() {
		time.Sleep(10 * time.Millisecond)
	}

	res, err := http.Get(plugboard.CallURL(tok.PathID) + "/api/items/?page=2")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	fmt.Println(res.StatusCode, res.Header.Get("Content-Type"), string(body))
	st := client.Status()
	fmt.Println("joined:", st.Joined, "path:", st.Path == "/"+tok.PathID)
	// Output:
	// 200 application/json {"path":"/api/items/","query":"page=2"}
	// joined: true path: true
}

// accessLine is an Observer that prints one line per request, once its response is sent.
type accessLine struct{}

func (accessLine) ObserveRequest(req *telephone.ObservedRequest) func(*telephone.ObservedResponse) {
	return func(res *telephone.ObservedResponse) {
		fmt.Printf("%s %s?%s -> %d %q\n", req.Method, req.Path, req.Query, res.Status, res.Body)
	}
}

func (accessLine) ObserveWebSocket(*telephone.ObservedWebSocket) func(*telephone.ObservedWebSocketEnd) {
	return nil
}

// Observing: an Observer sees every forwarded request with its response, to build your own
// view of the traffic (the CLI's request inspector is built on it).
func ExampleWithObserver() {
	plugboard := telephonetest.NewServer()
	defer plugboard.Close()
	tok, _ := plugboard.Mint(telephonetest.NewPathID(), time.Hour)
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hi") })
	client, err := telephone.New(plugboard.SocketURL(), telephone.WithToken(tok.Token),
		telephone.WithHandler(hello), telephone.WithObserver(accessLine{}))
	if err != nil {
		fmt.Println(err)
		return
	}
	go func() { _ = client.Run(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer func() { _ = client.Shutdown(ctx) }()
	_ = plugboard.WaitJoined(ctx, tok.PathID, 1)

	res, err := http.Get(plugboard.CallURL(tok.PathID) + "/greet?lang=en")
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	// Output:
	// GET /greet?lang=en -> 200 "hi"
}
