package tokenstore

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// storedTimeLayout is the text modernc.org/sqlite writes for a time.Time parameter when no
// _time_format DSN parameter is set: it calls time.Time.String() (sqlite.go, conn.formatTime),
// which is this layout plus, for times carrying a monotonic clock reading such as time.Now(), a
// " m=+1.234567890" suffix. The original sidecar bound time.Now() and the token's expiry this
// way, in the process's local zone. The store writes the same layout (without the monotonic
// suffix) so that the original's text comparisons (ORDER BY updated_at, expires_at > ?) keep
// working on rows written by either program in the same zone.
const storedTimeLayout = "2006-01-02 15:04:05.999999999 -0700 MST"

// storedTimeLayoutNoAbbrev is storedTimeLayout without the zone abbreviation.
const storedTimeLayoutNoAbbrev = "2006-01-02 15:04:05.999999999 -0700"

// formatStoredTime renders t as modernc.org/sqlite would for a time.Time parameter, in loc.
func formatStoredTime(t time.Time, loc *time.Location) string {
	return t.Round(0).In(loc).Format(storedTimeLayout)
}

// readLayouts are the text forms parseStoredTime accepts after storedTimeLayout: SQLite's own
// date formats (CURRENT_TIMESTAMP, datetime()), modernc's _time_format=sqlite, and RFC 3339.
// Forms without a zone are read as UTC, as SQLite does.
var readLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02T15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04",
	"2006-01-02T15:04",
	"2006-01-02",
}

// parseStoredTime reads a DATETIME column value as scanned by database/sql: a time.Time (the
// driver already parsed the text), a string or []byte in any of the layouts above or
// time.Time.String() with or without a monotonic suffix, or an integer of Unix seconds
// (milliseconds when larger than 1e12, as the driver does).
func parseStoredTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x, nil
	case int64:
		if x > 1e12 || x < -1e12 {
			return time.UnixMilli(x), nil
		}
		return time.Unix(x, 0), nil
	case []byte:
		return parseTimeText(string(x))
	case string:
		return parseTimeText(x)
	case nil:
		return time.Time{}, fmt.Errorf("%w: time is NULL", ErrCorrupt)
	default:
		return time.Time{}, fmt.Errorf("%w: time has SQL type %T", ErrCorrupt, v)
	}
}

// parseTimeText parses the text forms described at parseStoredTime.
func parseTimeText(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, " m="); i >= 0 {
		s = s[:i]
	}
	if t, err := time.Parse(storedTimeLayout, s); err == nil {
		return t, nil
	}
	// Zones without an abbreviation print the offset twice ("-0530 -0530"), which the
	// abbreviation field of storedTimeLayout does not accept: parse without it.
	if f := strings.Fields(s); len(f) == 4 {
		if t, err := time.Parse(storedTimeLayoutNoAbbrev, strings.Join(f[:3], " ")); err == nil {
			return t, nil
		}
	}
	for _, layout := range readLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return parseStoredTime(n)
	}
	return time.Time{}, fmt.Errorf("%w: unreadable time %q", ErrCorrupt, s)
}
