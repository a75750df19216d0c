package telephone

import (
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/verastack/telephone/internal/jsonstr"
)

// bodyChunkSize is the size of the pooled buffers a response body is escaped into.
const bodyChunkSize = 64 << 10

var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, 0, bodyChunkSize)
	return &b
}}

func getChunk() []byte { return (*chunkPool.Get().(*[]byte))[:0] }

// putChunk gives a chunk back to the pool; other buffers are left to the collector.
func putChunk(b []byte) {
	if cap(b) == bodyChunkSize {
		b = b[:0]
		chunkPool.Put(&b)
	}
}

// escapedBody is a response body kept as the content of the proxy_res body string (or of its
// chunks, docs/PROTOCOL.md §3.4), escaped as the handler writes it into pooled chunks of
// bodyChunkSize bytes: the body is held once, escaped, and never copied while it grows; the
// chunks are written to the socket as they are (phoenix.Channel.SendParts) and go back to
// the pool one by one.
//
// Invalid UTF-8 is replaced as strings.ToValidUTF8 does (one U+FFFD per run of invalid
// bytes) and remembered, for UTF8Reject. A body longer than pieceSize is cut into Plugboard
// chunks while it is escaped: a piece ends before the character that would make it longer
// than pieceSize, and the pieces are separated by `","`, so that the content fits between
// `"chunks":["` and `"]` (and, with one piece, between `"body":"` and `"`).
type escapedBody struct {
	chunks    [][]byte  // escaped content; every chunk but the last is full
	first     [1][]byte // chunks' array while there is one
	n         int64     // escaped bytes in chunks
	raw       int64     // body bytes, after replacement
	scratch   []byte    // escaping of a write that does not fit the last chunk
	fixed     []byte    // a segment with its invalid bytes replaced
	carry     []byte    // an incomplete character at the end of the last write
	pieceSize int
	piece     int  // bytes in the current piece
	pieces    int  // pieces started
	invalid   bool // some bytes were not valid UTF-8
	inBad     bool // the last bytes were a run of invalid ones
}

func (e *escapedBody) init(pieceSize int) {
	e.pieceSize, e.pieces = max(pieceSize, utf8.UTFMax), 1
	e.chunks = e.first[:0]
}

// escapeStep bounds what is escaped at once, so that scratch stays small whatever the
// size of a write.
const escapeStep = 32 << 10

// write adds p to the body; a character split between writes (or steps) is completed by the
// next.
func (e *escapedBody) write(p []byte) {
	for len(p) > escapeStep {
		e.writeStep(p[:escapeStep])
		p = p[escapeStep:]
	}
	e.writeStep(p)
}

func (e *escapedBody) writeStep(p []byte) {
	for len(e.carry) > 0 && len(p) > 0 {
		k := len(e.carry)
		buf := append(e.carry, p[:min(len(p), utf8.UTFMax)]...)
		if !utf8.FullRune(buf) { // p was too short to complete it
			e.carry = buf
			return
		}
		_, size := utf8.DecodeRune(buf) // one character, or one invalid byte
		e.segment(buf[:size])
		if size >= k {
			p = p[size-k:]
			e.carry = buf[:0]
		} else {
			e.carry = buf[:copy(buf, buf[size:k])]
		}
	}
	cut := len(p)
	for i := len(p) - 1; i >= 0 && i > len(p)-utf8.UTFMax; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				cut = i
			}
			break
		}
	}
	e.segment(p[:cut])
	e.carry = append(e.carry, p[cut:]...)
}

// finish ends the body: an incomplete character left at the end is invalid.
func (e *escapedBody) finish() {
	if len(e.carry) > 0 {
		e.segment(e.carry)
		e.carry = nil
	}
	e.scratch, e.fixed = nil, nil
}

// segment adds whole characters (or invalid bytes) to the body.
func (e *escapedBody) segment(s []byte) {
	if len(s) == 0 {
		return
	}
	if utf8.Valid(s) {
		e.inBad = false
	} else {
		e.invalid = true
		s = e.toValid(s)
	}
	e.raw += int64(len(s))
	for len(s) > 0 {
		room := e.pieceSize - e.piece
		if len(s) <= room {
			e.escape(s)
			e.piece += len(s)
			return
		}
		n := room
		for n > 0 && !utf8.RuneStart(s[n]) { // n > 0 in a new piece: init makes pieceSize >= UTFMax
			n--
		}
		e.escape(s[:n])
		e.append([]byte(`","`))
		e.piece, e.pieces = 0, e.pieces+1
		s = s[n:]
	}
}

// toValid replaces each run of invalid bytes with U+FFFD, a run continuing across writes.
func (e *escapedBody) toValid(s []byte) []byte {
	out := e.fixed[:0]
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			if !e.inBad {
				out = append(out, "\uFFFD"...)
			}
			e.inBad = true
		} else {
			out = append(out, s[i:i+size]...)
			e.inBad = false
		}
		i += size
	}
	e.fixed = out
	return out
}

// escape appends s (whole characters) escaped. A body starts in a small buffer that grows
// up to bodyChunkSize (a small response takes no more than it needs); from then on s is
// escaped straight into the last chunk when it has room for the worst case, else through
// scratch and copied into pooled chunks.
func (e *escapedBody) escape(s []byte) {
	// The string aliases s only for the call: jsonstr reads it and keeps nothing.
	str := unsafe.String(unsafe.SliceData(s), len(s))
	k := len(e.chunks) - 1
	var last []byte
	if k >= 0 {
		last = e.chunks[k]
	}
	switch want := len(last) + len(s) + len(s)/8 + 16; {
	case cap(last) < bodyChunkSize && want <= bodyChunkSize: // the first buffer, still growing
		if want > cap(last) {
			last = append(make([]byte, 0, min(bodyChunkSize, max(2*cap(last), want))), last...)
		}
	case cap(last)-len(last) >= 6*len(s):
	default:
		e.scratch = jsonstr.AppendContent(e.scratch[:0], str, false)
		e.append(e.scratch)
		return
	}
	n := len(last)
	last = jsonstr.AppendContent(last, str, false) // may outgrow the estimate: then a larger first buffer
	e.n += int64(len(last) - n)
	if k < 0 {
		e.chunks = append(e.chunks, last)
	} else {
		e.chunks[k] = last
	}
}

// append copies escaped bytes into the chunks, filling each before taking the next.
func (e *escapedBody) append(b []byte) {
	e.n += int64(len(b))
	for len(b) > 0 {
		k := len(e.chunks) - 1
		switch {
		case k < 0:
			e.chunks = append(e.chunks, getChunk())
			k++
		case len(e.chunks[k]) < cap(e.chunks[k]):
		case cap(e.chunks[k]) < bodyChunkSize: // the first buffer becomes a full-size chunk
			e.chunks[k] = append(getChunk(), e.chunks[k]...)
		default:
			e.chunks = append(e.chunks, getChunk())
			k++
		}
		c := e.chunks[k]
		n := copy(c[len(c):cap(c)], b)
		e.chunks[k] = c[:len(c)+n]
		b = b[n:]
	}
}

// chunked reports whether the body takes the chunked form.
func (e *escapedBody) chunked() bool { return e != nil && e.pieces > 1 }

// release gives the chunks back to the pool.
func (e *escapedBody) release() {
	if e == nil {
		return
	}
	for i, c := range e.chunks {
		putChunk(c)
		e.chunks[i] = nil
	}
	e.chunks, e.n = nil, 0
}

// take hands the chunks over (to the socket, which releases them as it writes them).
func (e *escapedBody) take() [][]byte {
	chunks := e.chunks
	e.chunks, e.n = nil, 0
	return chunks
}
