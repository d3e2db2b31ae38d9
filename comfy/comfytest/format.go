package comfytest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ---- timestamps -----------------------------------------------------------
//
// The real service mixes three encodings (reference §1); the simulator uses
// all of them so that the client's tolerant parsing is exercised.

// pyIsoformat mimics Python's datetime.isoformat() for a naive UTC value:
// microsecond precision, and no fraction at all when microseconds are zero.
func pyIsoformat(t time.Time) string {
	t = t.UTC()
	us := t.Nanosecond() / 1000
	s := t.Format("2006-01-02T15:04:05")
	if us != 0 {
		s += fmt.Sprintf(".%06d", us)
	}
	return s
}

// ormTime is the ORM-dict encoding: isoformat()[:-3] + "Z". With non-zero
// microseconds this trims to milliseconds; with zero microseconds it cuts the
// seconds off instead (for example "2025-01-01T10:05Z").
func ormTime(t time.Time) string {
	s := pyIsoformat(t)
	return s[:len(s)-3] + "Z"
}

// pydanticTime is how a Pydantic response model re-serialises an ORM string:
// it parses the millisecond value and prints six fraction digits plus "Z".
func pydanticTime(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()/1000 == 0 { // the ORM string had lost its seconds
		t = t.Truncate(time.Minute)
	} else {
		t = t.Truncate(time.Millisecond)
	}
	return pyIsoformat(t) + "Z"
}

// rawSQLTime is the raw-SQL encoding used by machine routes: isoformat(), no zone.
func rawSQLTime(t time.Time) string { return pyIsoformat(t) }

func timeOrNil(t time.Time, f func(time.Time) string) any {
	if t.IsZero() {
		return nil
	}
	return f(t)
}

// pyFloat encodes like Python's json: integral floats keep a ".0".
type pyFloat float64

func (f pyFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return []byte(s), nil
}

func secondsBetween(a, b time.Time) any {
	if a.IsZero() || b.IsZero() {
		return nil
	}
	return pyFloat(math.Round(b.Sub(a).Seconds()*1e6) / 1e6)
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// ---- Durations in JSON ------------------------------------------------------

// Duration is a time.Duration that marshals to JSON as a Go duration string
// ("150ms") and unmarshals from such a string or from a number of seconds.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("duration must be a string like \"150ms\" or a number of seconds: %s", b)
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

// ---- ids ----------------------------------------------------------------------

// newUUID returns a random version-4 UUID. Identifiers are not derived from
// the fault seed so that two simulator processes never hand out the same run
// id.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// parseUUID validates s like Pydantic's UUID type (hyphenated or 32 hex
// digits, optional urn:uuid: prefix or braces) and returns the canonical
// lower-case hyphenated form, or a Pydantic-style error message.
func parseUUID(s string) (string, string) {
	v := strings.TrimPrefix(strings.ToLower(s), "urn:uuid:")
	v = strings.TrimSuffix(strings.TrimPrefix(v, "{"), "}")
	h := strings.ReplaceAll(v, "-", "")
	for i, c := range v {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c == '-') {
			return "", fmt.Sprintf("Input should be a valid UUID, invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `%c` at %d", c, i+1)
		}
	}
	if len(h) != 32 {
		return "", fmt.Sprintf("Input should be a valid UUID, invalid group count: expected 5, found %d", strings.Count(v, "-")+1)
	}
	if strings.Contains(v, "-") && (len(v) != 36 || v[8] != '-' || v[13] != '-' || v[18] != '-' || v[23] != '-') {
		return "", "Input should be a valid UUID, invalid group length in group 0: expected 8, found " + strconv.Itoa(strings.Index(v, "-"))
	}
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], ""
}

// ---- responses -------------------------------------------------------------

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"detail":"Internal server error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeDetail(w http.ResponseWriter, status int, detail string) {
	writeJSON(w, status, map[string]any{"detail": detail})
}

// validationError is one item of a FastAPI 422 body.
type validationError struct {
	Type  string `json:"type"`
	Loc   []any  `json:"loc"`
	Msg   string `json:"msg"`
	Input any    `json:"input"`
}

func write422(w http.ResponseWriter, errs []validationError) {
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": errs})
}

func uuid422(w http.ResponseWriter, where, name, value string) bool {
	if _, msg := parseUUID(value); msg != "" {
		write422(w, []validationError{{Type: "uuid_parsing", Loc: []any{where, name}, Msg: msg, Input: value}})
		return true
	}
	return false
}

// queryInt parses an integer query parameter; on error it writes a 422.
func queryInt(w http.ResponseWriter, r *http.Request, name string, def int) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		write422(w, []validationError{{Type: "int_parsing", Loc: []any{"query", name},
			Msg: "Input should be a valid integer, unable to parse string as an integer", Input: v}})
		return 0, false
	}
	return n, true
}

// queryBool parses a boolean query parameter the way Pydantic does.
func queryBool(w http.ResponseWriter, r *http.Request, name string, def bool) (bool, bool) {
	v := strings.ToLower(r.URL.Query().Get(name))
	switch v {
	case "":
		return def, true
	case "true", "1", "yes", "on", "t", "y":
		return true, true
	case "false", "0", "no", "off", "f", "n":
		return false, true
	}
	write422(w, []validationError{{Type: "bool_parsing", Loc: []any{"query", name},
		Msg: "Input should be a valid boolean, unable to interpret input", Input: r.URL.Query().Get(name)}})
	return false, false
}

func page[T any](items []T, offset, limit int) []T {
	if offset < 0 {
		offset = 0
	}
	if offset >= len(items) {
		return []T{}
	}
	items = items[offset:]
	if limit >= 0 && limit < len(items) {
		items = items[:limit]
	}
	return items
}
