package main

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lmittmann/tint"
	"github.com/mattn/go-isatty"
)

// newLogger returns the CLI's logger writing to w at the level held by level (which SIGHUP may
// change). format "json" writes JSON lines; "text" writes tint's human-readable lines,
// coloured only on a terminal; "auto" (or "") picks text on a terminal and JSON otherwise.
func newLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	term := isTerminal(w)
	switch format {
	case "json":
	case "text":
		return slog.New(tint.NewTextHandler(w, &tint.Options{Level: level, TimeFormat: time.TimeOnly, NoColor: !term}))
	default:
		if term {
			return slog.New(tint.NewTextHandler(w, &tint.Options{Level: level, TimeFormat: time.TimeOnly}))
		}
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
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
