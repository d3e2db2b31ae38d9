package comfy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// testKey looks like a real key (a JWT) so the redaction of its signature
// part is exercised too.
const testKey = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoidXNlcl8xIn0.c2VjcmV0LXNpZ25hdHVyZS1wYXJ0LTEyMzQ1Njc4"

type recordedRequest struct {
	Method      string
	Path        string // as escaped on the wire
	Query       string
	Header      http.Header
	Body        []byte
	ContentType string
}

// fakeAPI is an httptest server with Go 1.22 mux patterns under /api that
// records every request it receives.
type fakeAPI struct {
	t      *testing.T
	mux    *http.ServeMux
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []recordedRequest
	sleeps []time.Duration
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{t: t, mux: http.NewServeMux()}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recordedRequest{
			Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
			Header: r.Header.Clone(), Body: body, ContentType: r.Header.Get("Content-Type"),
		})
		f.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		f.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) handle(pattern string, h http.HandlerFunc) { f.mux.HandleFunc(pattern, h) }

// json registers a handler that always answers with status and body.
func (f *fakeAPI) json(pattern string, status int, body string) {
	f.handle(pattern, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

// sequence answers successive calls with successive statuses and bodies.
// The last one repeats.
func (f *fakeAPI) sequence(pattern string, steps ...step) {
	var mu sync.Mutex
	n := 0
	f.handle(pattern, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		s := steps[min(n, len(steps)-1)]
		n++
		mu.Unlock()
		if s.hangup {
			hj, _ := w.(http.Hijacker)
			conn, _, err := hj.Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		for k, v := range s.header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.status)
		_, _ = io.WriteString(w, s.body)
	})
}

type step struct {
	status int
	body   string
	header map[string]string
	hangup bool // close the connection without answering
}

func (f *fakeAPI) requests() []recordedRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recordedRequest(nil), f.reqs...)
}

func (f *fakeAPI) count() int { return len(f.requests()) }

func (f *fakeAPI) last() recordedRequest {
	f.t.Helper()
	reqs := f.requests()
	if len(reqs) == 0 {
		f.t.Fatal("no request received")
	}
	return reqs[len(reqs)-1]
}

// client returns a client for the fake with a fast retry policy whose
// waits are recorded instead of slept.
func (f *fakeAPI) client(opts ...Option) *Client {
	f.t.Helper()
	all := append([]Option{
		WithBaseURL(f.srv.URL + "/api"),
		WithAPIKey(testKey),
		WithRetry(RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}),
	}, opts...)
	c, err := NewClient(all...)
	if err != nil {
		f.t.Fatalf("NewClient: %v", err)
	}
	c.sleep = func(ctx context.Context, d time.Duration) error {
		f.mu.Lock()
		f.sleeps = append(f.sleeps, d)
		f.mu.Unlock()
		return ctx.Err()
	}
	return c
}

func (f *fakeAPI) recordedSleeps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}

// assertJSONEqual compares two JSON documents semantically.
func assertJSONEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("request body is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want JSON: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("body mismatch\n got: %s\nwant: %s", got, want)
	}
}

func ptr[T any](v T) *T { return &v }
