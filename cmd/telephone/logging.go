package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lmittmann/tint"
	"github.com/mattn/go-isatty"
)

// logConfig says how the CLI logs.
type logConfig struct {
	Format    string         // "json", "text", or "auto"/"" (text on a terminal, else JSON)
	Level     *slog.LevelVar // the level, which SIGHUP may change
	Terminal  bool           // the output is a terminal (isTerminal)
	NoColor   bool           // NO_COLOR is set: text lines carry no colour even on a terminal
	AccessLog bool           // log one info line per forwarded request
}

// newLogger returns the CLI's logger writing to w. "json" writes JSON lines with durations as
// text ("1.5s"); "text" writes tint's human-readable lines, coloured only on a terminal and
// without NO_COLOR; "auto" (or "") picks text on a terminal and JSON otherwise.
func newLogger(w io.Writer, lc logConfig) *slog.Logger {
	term := lc.Terminal
	var h slog.Handler
	switch {
	case lc.Format == "text" || (lc.Format != "json" && term):
		h = tint.NewTextHandler(w, &tint.Options{Level: lc.Level, TimeFormat: time.TimeOnly, NoColor: !term || lc.NoColor})
	default:
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lc.Level, ReplaceAttr: durationAsText})
	}
	if lc.AccessLog {
		h = &accessHandler{next: h, level: lc.Level}
	}
	return slog.New(h)
}

// durationAsText renders durations as Go duration strings ("1.5s") instead of nanoseconds.
func durationAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// accessMessage is the message of the line the Client logs at debug level for every request
// it answers (method, path, status, elapsed, bytes, request_id); TestAccessLog keeps the two in
// step.
const accessMessage = "request served"

// accessHandler raises the Client's per-request line to info level, so that it appears as an
// access log without enabling every other debug line.
type accessHandler struct {
	next  slog.Handler
	level *slog.LevelVar
}

// Enabled lets debug records through to Handle, which drops the ones that are not access lines.
func (h *accessHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelDebug && (l >= slog.LevelInfo || h.level.Level() <= slog.LevelInfo)
}

func (h *accessHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == accessMessage && r.Level < slog.LevelInfo {
		r.Level = slog.LevelInfo
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *accessHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &accessHandler{next: h.next.WithAttrs(attrs), level: h.level}
}

func (h *accessHandler) WithGroup(name string) slog.Handler {
	return &accessHandler{next: h.next.WithGroup(name), level: h.level}
}

// isTerminal reports whether w is a terminal (or a Cygwin/MSYS pseudo-terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fd := f.Fd()
	return isatty.IsTerminal(fd) || isatty.IsCygwinTerminal(fd)
}
