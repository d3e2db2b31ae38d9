package comfy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	maxErrorBody = 4 << 10
	// maxErrorRead is larger than maxErrorBody so that a long validation
	// error still parses, even though only its start is kept.
	maxErrorRead = 64 << 10
)

// Sentinel errors that do not come from an HTTP status.
var (
	// ErrInvalidArgument is wrapped by errors from client-side checks,
	// such as an empty id, made before anything is sent.
	// [IsValidation] reports true for it.
	ErrInvalidArgument = errors.New("comfy: invalid argument")

	// ErrUnexpectedResponse is wrapped when a 2xx body cannot be decoded,
	// or lacks a field that the call cannot do without.
	ErrUnexpectedResponse = errors.New("comfy: unexpected response")
)

// APIError is a non-2xx response. Its text never contains the API key,
// even if the server echoed it.
type APIError struct {
	StatusCode int
	Method     string
	// Path is the request path without the query string.
	Path string
	// Detail is the server's explanation, taken from {"detail": "…"},
	// {"detail": [{loc, msg}…]} (joined as "loc: msg; …") or
	// {"error": "…"}. For other bodies it is the start of the text.
	Detail string
	// Body is the raw body, cut to 4 KiB.
	Body []byte
	// NotFoundQuirk is set when the server answered 500 but the route is
	// known to hide a not-found that way. That happens on GET and DELETE
	// /deployment/{id} (a catch-all handler turns the 404 into a 500) and
	// on POST /run/{id}/cancel when the detail says the run was not found.
	// [IsNotFound] reports true for these. The flag lets callers tell an
	// inferred not-found from a real 404. On the deployment routes, a
	// genuine server failure looks exactly the same, so the executor
	// retries those 500s before giving up.
	NotFoundQuirk bool
	// RetryAfter is the server's Retry-After, if it sent one.
	RetryAfter time.Duration

	hasRetryAfter  bool
	ambiguousQuirk bool
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "comfy: %s %s: %d %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode))
	if e.NotFoundQuirk {
		b.WriteString(" (treated as not found)")
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// quirk tells the executor how to read a 500 on routes known to misuse it.
type quirk int

const (
	quirkNone quirk = iota
	// quirkHidden404 is for handlers that wrap a 404 into a bare 500.
	quirkHidden404
	// quirkCancel is for cancel, whose 500 detail names the cause.
	quirkCancel
)

func (c *Client) newAPIError(resp *http.Response, method, path string, q quirk) *APIError {
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorRead))
	raw = c.redactBytes(raw)
	e := &APIError{
		StatusCode: resp.StatusCode,
		Method:     method,
		Path:       path,
		Detail:     c.redact(parseDetail(raw)),
		Body:       truncateBytes(raw, maxErrorBody),
	}
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
		e.RetryAfter, e.hasRetryAfter = d, true
	}
	if resp.StatusCode == http.StatusInternalServerError {
		switch q {
		case quirkHidden404:
			e.NotFoundQuirk, e.ambiguousQuirk = true, true
		case quirkCancel:
			e.NotFoundQuirk = strings.Contains(strings.ToLower(e.Detail), "not found")
		}
	}
	return e
}

func truncateBytes(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return b[:n]
}

// parseDetail pulls a readable message out of the shapes that FastAPI and
// the hand-written handlers produce.
func parseDetail(raw []byte) string {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return ""
	}
	var body map[string]json.RawMessage
	if trimmed[0] == '{' && json.Unmarshal(trimmed, &body) == nil {
		for _, key := range []string{"detail", "error", "message"} {
			if v, ok := body[key]; ok {
				if s := detailText(v); s != "" {
					return s
				}
			}
		}
		return ""
	}
	s := string(trimmed)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return truncateText(s, 200)
}

func detailText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var items []struct {
		Loc []any  `json:"loc"`
		Msg string `json:"msg"`
	}
	if json.Unmarshal(v, &items) == nil && len(items) > 0 {
		parts := make([]string, 0, len(items))
		for _, it := range items {
			loc := make([]string, 0, len(it.Loc))
			for _, l := range it.Loc {
				loc = append(loc, fmt.Sprint(l))
			}
			if len(loc) > 0 {
				parts = append(parts, strings.Join(loc, ".")+": "+it.Msg)
			} else {
				parts = append(parts, it.Msg)
			}
		}
		return strings.Join(parts, "; ")
	}
	if t := bytes.TrimSpace(v); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		return truncateText(string(t), 200)
	}
	return ""
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// parseRetryAfter accepts both forms of RFC 9110: delay seconds, or an
// HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// transportError wraps a network failure: no response was received, or the
// body could not be read. It stays unexported so that APIError is the only
// error type callers need to know. Use [IsRetryable].
type transportError struct {
	method, path string
	err          error
	msg          string
}

func (e *transportError) Error() string {
	msg := e.msg
	if msg == "" {
		msg = e.err.Error()
	}
	return "comfy: " + e.method + " " + e.path + ": " + msg
}

func (e *transportError) Unwrap() error { return e.err }

func asAPIError(err error) (*APIError, bool) {
	var e *APIError
	ok := errors.As(err, &e)
	return e, ok
}

// IsNotFound reports a 404, or a 500 that the server uses to hide a
// not-found (see [APIError.NotFoundQuirk]).
func IsNotFound(err error) bool {
	e, ok := asAPIError(err)
	return ok && (e.StatusCode == http.StatusNotFound || e.NotFoundQuirk)
}

// IsUnauthorized reports a 401: missing, invalid or revoked key.
func IsUnauthorized(err error) bool {
	e, ok := asAPIError(err)
	return ok && e.StatusCode == http.StatusUnauthorized
}

// IsForbidden reports a 403. Causes include insufficient GPU credits, a
// suspended account, and a token whose scopes do not cover the route.
func IsForbidden(err error) bool {
	e, ok := asAPIError(err)
	return ok && e.StatusCode == http.StatusForbidden
}

// IsValidation reports that the request itself was rejected: a 422, a 400,
// or a client-side [ErrInvalidArgument]. Repeating it unchanged will fail
// again.
func IsValidation(err error) bool {
	if errors.Is(err, ErrInvalidArgument) {
		return true
	}
	e, ok := asAPIError(err)
	return ok && (e.StatusCode == http.StatusUnprocessableEntity || e.StatusCode == http.StatusBadRequest)
}

// IsCancelUnsupported reports the 500 that cancel returns when the run has
// no Modal function call id. That covers runs on classic and
// runpod-serverless machines, and stream runs before their function_call_id
// event. The server uses one message for both this case and an unknown run
// ("Run not found or has no modal function call ID"), so [IsNotFound] may
// also be true. Call Runs.Get to tell the two apart.
func IsCancelUnsupported(err error) bool {
	e, ok := asAPIError(err)
	return ok && e.StatusCode == http.StatusInternalServerError &&
		strings.HasSuffix(e.Path, "/cancel") &&
		strings.Contains(strings.ToLower(e.Detail), "modal function call id")
}

// IsRetryable reports whether repeating an idempotent request may succeed.
// That covers network failures and timeouts, 408, 429 and 5xx, but not the
// 500s that stand for not-found or an unsupported cancel. Context
// cancellation and deadline errors are not retryable: they are the
// caller's own decision. Before repeating a run creation, search for the
// run first (see [WorkflowsService.FindRunByCorrelationToken]).
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if e, ok := asAPIError(err); ok {
		if e.NotFoundQuirk || IsCancelUnsupported(e) {
			return false
		}
		return e.StatusCode == http.StatusRequestTimeout ||
			e.StatusCode == http.StatusTooManyRequests ||
			e.StatusCode >= 500
	}
	var te *transportError
	if errors.As(err, &te) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne)
}
