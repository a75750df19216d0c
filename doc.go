// Package telephone is the agent side of Plugboard's reverse proxy: a Client keeps one
// outbound WebSocket to a Plugboard server, speaks Phoenix Channels over it, joins the
// channel of the path its token names, and serves the HTTP requests and WebSockets that
// Plugboard pushes to it from a backend — an http.Handler in the same process, or a TCP
// service reached through httputil.ReverseProxy.
//
// Quick start:
//
//	c, err := telephone.New("wss://plugboard.example.com/telephone/websocket",
//		telephone.WithToken(token),
//		telephone.WithHandler(mux), // or telephone.WithBackendURL("http://127.0.0.1:8080")
//	)
//	if err != nil {
//		return err // an *OptionError names the option
//	}
//	go func() { <-ctx.Done(); c.Shutdown(context.Background()) }()
//	return c.Run(context.Background()) // nil after Shutdown; ErrTokenRefused when no token is accepted
//
// Run reconnects after every failure with exponential backoff and full jitter, re-joins a
// channel Plugboard closes, refreshes the token at half-life and persists it through the
// TokenStore. Every limit (request deadline, concurrency, rate, body sizes, circuit breaker,
// WebSocket limits) is on by default; see the With* options for the defaults. Status reports
// the session, and WithMetrics exports Prometheus metrics.
//
// The package telephonetest provides an in-memory Plugboard for tests, and cmd/telephone is a
// drop-in replacement for the original sidecar binary. The wire protocol as this module
// implements it, with its compatibility decisions, is described in docs/PROTOCOL.md in the
// repository.
package telephone
