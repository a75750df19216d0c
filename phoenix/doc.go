// Package phoenix is a small Phoenix Channels (protocol V2, vsn=2.0.0) client: a
// codec for text and binary frames, a Socket that multiplexes channels over one
// message connection, Channels with join/push/leave and in-order event delivery,
// and the Backoff policy used to reconnect and re-join.
//
// It uses only the standard library. It does not dial: a Socket runs over a Conn
// (one message per Read/Write), which the transport package provides on top of a
// WebSocket, and which tests provide in memory.
//
// # Wire format
//
// A text frame is the JSON array [join_ref, ref, topic, event, payload] where
// join_ref and ref are strings or null. EncodeText writes it without whitespace,
// byte-identical to what the official JS client sends; DecodeText accepts (like
// the server) arrays with extra trailing elements and ignores them. Binary frames
// start with a kind byte (push, reply, broadcast) followed by one length byte per
// string field, the fields, then the raw payload; see the Encode/DecodeBinary
// functions. Every decode error wraps ErrMalformed, and no decoder panics on any
// input (they are fuzzed).
//
// # Concurrency and ownership
//
// A Socket owns its Conn and closes it. Each Socket runs one reader goroutine, one
// writer goroutine, one heartbeat goroutine (unless disabled) and one delivery
// goroutine per Channel; Close stops and joins all of them. All Socket and Channel
// methods are safe for concurrent use. Codec functions are pure and safe for
// concurrent use. Backoff is not safe for concurrent use.
package phoenix
