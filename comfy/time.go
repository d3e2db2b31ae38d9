package comfy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// Time is a timestamp from the API, always held in UTC.
//
// The server formats times differently from route to route: milliseconds
// with "Z", "Z" with the seconds left out when they are zero
// ("2025-01-01T10:05Z"), or Python isoformat() with no zone at all. Times
// without a zone are naive UTC database values, so they are read as UTC.
//
// When decoding, a value that cannot be parsed becomes the zero Time
// instead of an error. One odd timestamp must not hide a run's status from
// a poller. Use [ParseTime] for strict parsing. null and "" also decode to
// the zero Time, and the zero Time encodes as null.
type Time struct{ time.Time }

// timeLayouts are tried in order. Go also accepts fractional seconds when
// parsing a layout that has a seconds field but none of its own.
var timeLayouts = []struct {
	layout string
	zoned  bool
}{
	{time.RFC3339, true},
	{"2006-01-02T15:04Z07:00", true},
	{"2006-01-02T15:04:05Z0700", true},
	{"2006-01-02T15:04:05Z07", true},
	{"2006-01-02T15:04:05", false},
	{"2006-01-02T15:04", false},
	{"2006-01-02", false},
}

// ParseTime parses any timestamp format the API is known to emit and
// returns it in UTC. A space is accepted in place of the "T".
func ParseTime(s string) (Time, error) {
	s = strings.TrimSpace(s)
	if len(s) > 10 && s[10] == ' ' {
		s = s[:10] + "T" + s[11:]
	}
	// A lowercase zone or separator ("…t…z") is allowed by RFC 3339.
	s = strings.ToUpper(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l.layout, s); err == nil {
			t = t.UTC()
			// An offset can carry a year-9999 time past the range RFC 3339
			// can write, and it would not read back.
			if t.Year() < 0 || t.Year() > 9999 {
				break
			}
			return Time{t}, nil
		}
	}
	return Time{}, fmt.Errorf("comfy: unrecognised timestamp %q", s)
}

// maxUnixSeconds is the end of year 9999, the last instant RFC 3339 can
// express. Larger numbers are not timestamps.
const maxUnixSeconds = 253402300799

// UnmarshalJSON implements json.Unmarshaler. It is tolerant: see [Time].
func (t *Time) UnmarshalJSON(data []byte) error {
	*t = Time{}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case '"':
		var s string
		if json.Unmarshal(data, &s) != nil || s == "" {
			return nil
		}
		if parsed, err := ParseTime(s); err == nil {
			*t = parsed
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		// Unix seconds, as sent by some progress messages.
		var f float64
		if json.Unmarshal(data, &f) == nil && f > 0 && f <= maxUnixSeconds {
			sec, frac := math.Modf(f)
			*t = Time{time.Unix(int64(sec), int64(frac*1e9)).UTC()}
		}
	}
	return nil
}

// MarshalJSON writes RFC 3339 with nanoseconds in UTC, or null for the zero
// Time.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	b := make([]byte, 0, len(time.RFC3339Nano)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// String formats the time as RFC 3339 in UTC, or "" for the zero Time.
func (t Time) String() string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
