// Package transport dials the WebSocket that carries telephone's Phoenix
// Channels traffic to a Plugboard server. It is built on
// github.com/coder/websocket and knows nothing of Phoenix or of token
// storage.
//
// Dial adds the token and vsn=2.0.0 query parameters to the Plugboard URL
// (keeping the others), applies the TLS options (custom CA bundle, client
// certificate for mTLS, SHA-256 pinning of the server certificate,
// InsecureSkipVerify only when asked), goes through the proxy named by
// HTTPS_PROXY/NO_PROXY unless Options.Proxy says otherwise, bounds the
// handshake with a timeout and sets a read limit on the connection.
//
// Errors are typed so that a reconnect loop can decide what to do: a refused
// upgrade is an *UpgradeError carrying the HTTP status, and 401/403 (how
// Plugboard refuses a token) match ErrUnauthorized and are permanent;
// network failures are *DialError and worth retrying. No error text or log
// form produced here contains the token: Redact gives the URL form for logs.
//
// Conn adapts the WebSocket to a plain message connection: Read and Write
// take a binary flag and bytes, Close takes a close code and reason, and a
// close frame from the peer is reported as a *CloseError (see CloseCode).
//
// The package reads no environment variable itself; the default proxy
// function http.ProxyFromEnvironment is the only environment access, made by
// the standard library.
package transport
