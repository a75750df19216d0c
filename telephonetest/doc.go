// Package telephonetest is an in-memory Plugboard server for tests, in the
// spirit of net/http/httptest.
//
// A Server mints telephone tokens (HS256, signed with Plugboard's key
// derivation), vends tokens to service accounts at POST
// /api/token-vending/generate exactly as Plugboard does (NewServiceAccount),
// accepts telephone sockets at /telephone/websocket speaking Phoenix Channels
// V2 (V1 when the URL has no vsn, as Phoenix does), runs the telephone channel (heartbeats, token refresh
// with rotation, proxy_req/proxy_res, ws_* WebSocket proxying), and serves an
// HTTP front at /call/<path_id>/... that routes requests and WebSocket upgrades
// through the joined telephones round-robin, answering 503 with no telephone,
// 504 on timeout and 502 when the telephone goes away mid-request. Fault
// injectors (DropAll, Restart, Disconnect, RefuseTokens, DelayReplies,
// DropReplies, StopHeartbeatAcks, CrashChannels, Push) and observers (Joined,
// WaitJoined, Stats, JoinedTokens, Frames, TokenInfo) make client behaviour
// testable.
//
// The wire behaviour follows the real Plugboard and Phoenix as recorded in
// testdata/phoenix-1.7.21-frames.md and described in docs/PROTOCOL.md:
// refused sockets get HTTP 403 with an empty body before the upgrade, unknown
// events crash the channel (phx_error), join_ref is checked strictly as in
// Phoenix 1.8.3+ unless WithLenientJoinRef is given, and so on.
//
// Deliberate differences from a real server:
//   - Token vending has no rate limit (Plugboard limits it per API key), and
//     service accounts are never bound to a deleted or non-mount path.
//   - A request body that is not valid UTF-8 is answered 400 (it cannot travel
//     as a JSON string; Plugboard is expected to crash the channel instead).
//   - Body parsers do not consume JSON or form bodies: the telephone always
//     receives the raw body.
//   - The waiting entry of a timed-out request is removed at once (Plugboard
//     keeps it until the channel ends).
//   - Framing headers in a proxy_res (content-length, transfer-encoding,
//     connection) are not copied to the response; net/http computes them.
//   - A proxied WebSocket client is accepted before the telephone answers
//     ws_connect, as Plugboard does, so its Sec-WebSocket-Protocol is answered
//     only in WithWSCheck mode, with the protocol from ws_check_result.
//   - The idle timeout counts inbound frames only.
//
// The loopback admin endpoints GET /mint, /admin/revoke, /admin/disconnect,
// /admin/service-account, /admin/stats and /admin/sockets serve scripts and the
// CLI's devserver (see Server.Handler); /admin/disconnect?conn=<id> cuts one socket
// (DropSocket).
package telephonetest
