// Package phoenix is a small Phoenix Channels (protocol V2, vsn=2.0.0) client: a
// codec for text and binary frames, a Socket that multiplexes channels over one
// message connection, Channels with join/push/leave and in-order event delivery,
// and the Backoff policy used to reconnect and re-join.
//
// It uses only the standard library (a test enforces it). It does not dial: a
// Socket runs over a Conn (one message per Read/Write), which the transport
// package provides on top of a WebSocket, and which tests provide in memory.
//
// # Wire format
//
// A text frame is the JSON array [join_ref, ref, topic, event, payload] where
// join_ref and ref are strings or null. EncodeText writes it without whitespace,
// byte-identical to what the official JS client sends, copying the payload
// verbatim. DecodeText accepts, like the server, arrays with more than five
// elements and ignores the extra ones. Binary frames start with a kind byte
// (push, reply, broadcast) followed by one length byte per string field, the
// fields, then the raw payload; see the DecodeBinary* functions. The telephone
// never sends binary frames, so the package has no binary encoder. Every decode error wraps ErrMalformed, and no decoder panics on any
// input (they are fuzzed). Decoded payloads alias the decoded buffer.
//
// # Socket behaviour
//
// Refs are decimal strings counting up from "1" per Socket. A Channel's join_ref
// is the ref of its latest phx_join and is carried by every message it sends.
// Replies (phx_reply) are matched to the waiting call by ref and never reach
// channel handlers; a reply that arrives after its call gave up is dropped. Every
// call that waits for a reply is bounded by SocketOptions.PushTimeout or its
// context's deadline, whichever comes first. The socket sends
// [null,ref,"phoenix","heartbeat",{}] every HeartbeatInterval; when the previous
// heartbeat is still unanswered at the next beat it closes the Conn with code 1000
// (like the official JS client) and Err reports ErrHeartbeatTimeout. A malformed
// inbound frame is logged and dropped; a read or write error stops the socket.
//
// # Concurrency and ownership
//
// A Socket owns its Conn and closes it. Each Socket runs one reader goroutine, one
// writer goroutine, one heartbeat goroutine (unless disabled) and one delivery
// goroutine per Channel with a handler (none with SocketOptions.InlineHandlers, which
// runs handlers on the reader); Close stops and joins all of them, and Done is closed
// once they have all ended. The writer drains queued frames in batches (one flush
// with a Conn that implements BatchWriter); with SocketOptions.InlineWrites a sender
// that finds it idle writes its own frame. Channel.SendAppend builds a payload
// straight into its frame; Channel.SendParts sends a large one from its parts, as one
// fragmented message with a Conn that implements PartsWriter. All Socket and Channel methods are safe
// for concurrent use. Codec functions are pure and safe for concurrent use.
// Backoff is not safe for concurrent use.
package phoenix
