package comfy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestNewClientBaseURL(t *testing.T) {
	for _, bad := range []string{"", "api.comfydeploy.com/api", "ftp://x/api", "http://", "http://h/api?x=1", "http://u:p@h/api", "://bad"} {
		if _, err := NewClient(WithBaseURL(bad)); err == nil {
			t.Errorf("WithBaseURL(%q): want error", bad)
		}
	}
	c, err := NewClient()
	if err != nil {
		t.Fatal(err)
	}
	if c.BaseURL() != DefaultBaseURL {
		t.Errorf("default base = %q", c.BaseURL())
	}
	c, err = NewClient(WithBaseURL("http://localhost:3011/api/"))
	if err != nil {
		t.Fatal(err)
	}
	req, err := c.NewRequest(context.Background(), http.MethodGet, "/run/abc?queue_position=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := req.URL.String(); got != "http://localhost:3011/api/run/abc?queue_position=true" {
		t.Errorf("URL = %q", got)
	}
	if c.Runs == nil || c.Deployments == nil || c.Machines == nil || c.Workflows == nil || c.Files == nil || c.Assets == nil || c.Streams == nil {
		t.Error("services not initialised")
	}
}

func TestNewRequestRejectsAbsoluteURL(t *testing.T) {
	c, _ := NewClient(WithAPIKey(testKey))
	for _, p := range []string{"https://evil.example/x", "//evil.example/x"} {
		if _, err := c.NewRequest(context.Background(), http.MethodGet, p, nil); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("NewRequest(%q) err = %v, want ErrInvalidArgument", p, err)
		}
	}
}

func TestEscapedIDsStayOneSegment(t *testing.T) {
	f := newFakeAPI(t)
	f.json("GET /api/run/{id}", 200, `{"id":"x"}`)
	c := f.client()
	if _, err := c.Runs.Get(context.Background(), "a/b c", nil); err != nil {
		t.Fatal(err)
	}
	if got := f.last().Path; got != "/api/run/a%2Fb%20c" {
		t.Errorf("path = %q", got)
	}
	for _, id := range []string{"", " ", ".", ".."} {
		if _, err := c.Runs.Get(context.Background(), id, nil); !IsValidation(err) {
			t.Errorf("Get(%q) err = %v, want validation error", id, err)
		}
	}
	if f.count() != 1 {
		t.Errorf("invalid ids reached the server: %d requests", f.count())
	}
}

func TestHeaders(t *testing.T) {
	f := newFakeAPI(t)
	f.json("GET /api/run/{id}", 200, `{"id":"r1"}`)
	c := f.client(WithUserAgent("my-worker/1.0"))
	if _, err := c.Runs.Get(context.Background(), "r1", nil); err != nil {
		t.Fatal(err)
	}
	h := f.last().Header
	if got := h.Get("Authorization"); got != "Bearer "+testKey {
		t.Errorf("Authorization = %q", got)
	}
	if got := h.Get("User-Agent"); got != "my-worker/1.0" {
		t.Errorf("User-Agent = %q", got)
	}
	if got := h.Get("Accept"); got != "application/json" {
		t.Errorf("Accept = %q", got)
	}

	anon, _ := NewClient(WithBaseURL(f.srv.URL + "/api"))
	if _, err := anon.Runs.Get(context.Background(), "r1", nil); err != nil {
		t.Fatal(err)
	}
	if got := f.last().Header.Get("Authorization"); got != "" {
		t.Errorf("client without key sent Authorization %q", got)
	}
}

func TestAPIKeyNeverFormatted(t *testing.T) {
	c, err := NewClient(WithAPIKey("  " + testKey + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.creds.key != testKey {
		t.Fatal("key was not trimmed")
	}
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	logger.Info("client", "client", c, "value", *c)
	outputs := []string{
		fmt.Sprint(c), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c),
		fmt.Sprintf("%v", *c), fmt.Sprintf("%+v", *c), fmt.Sprintf("%s", c.creds),
		fmt.Sprintf("%+v", c.Runs), c.String(), logBuf.String(),
	}
	for _, o := range outputs {
		if strings.Contains(o, testKey) || strings.Contains(o, "c2VjcmV0") {
			t.Errorf("formatted client leaks key: %s", o)
		}
	}
	if !strings.Contains(c.String(), redacted) {
		t.Errorf("String() = %q, want it to say the key is redacted", c.String())
	}
}

func TestAPIKeyNotInErrorsEvenWhenEchoed(t *testing.T) {
	f := newFakeAPI(t)
	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			auth := r.Header.Get("Authorization")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"detail":"bad token %s (sig %s)"}`, auth, testKey[strings.LastIndexByte(testKey, '.')+1:])
		}
	}
	f.handle("GET /api/run/{id}", echo(401))
	f.handle("POST /api/run/deployment/queue", echo(500))
	var logBuf bytes.Buffer
	c := f.client(WithLogger(slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))))

	_, err1 := c.Runs.Get(context.Background(), "r1", nil)
	_, err2 := c.Runs.QueueDeployment(context.Background(), &DeploymentRunRequest{DeploymentID: "d"})
	for _, err := range []error{err1, err2} {
		if err == nil {
			t.Fatal("want error")
		}
		var apiErr *APIError
		if !errors.As(err, &apiErr) {
			t.Fatalf("want *APIError, got %T", err)
		}
		for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", apiErr), string(apiErr.Body), apiErr.Detail, logBuf.String()} {
			if strings.Contains(s, testKey) || strings.Contains(s, "c2VjcmV0LXNpZ25hdHVyZS") {
				t.Errorf("key leaked: %s", s)
			}
		}
		if !strings.Contains(apiErr.Detail, redacted) {
			t.Errorf("detail = %q, want redaction marker", apiErr.Detail)
		}
	}
	if !IsUnauthorized(err1) {
		t.Errorf("IsUnauthorized(%v) = false", err1)
	}
}

func TestRetryGETOn503ThenSuccess(t *testing.T) {
	f := newFakeAPI(t)
	f.sequence("GET /api/run/{id}",
		step{status: 503, body: `{"detail":"unavailable"}`},
		step{status: 502, body: `bad gateway`},
		step{status: 200, body: `{"id":"r1","status":"running"}`})
	c := f.client()
	run, err := c.Runs.Get(context.Background(), "r1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != StatusRunning {
		t.Errorf("status = %q", run.Status)
	}
	if n := f.count(); n != 3 {
		t.Errorf("calls = %d, want 3", n)
	}
	if n := len(f.recordedSleeps()); n != 2 {
		t.Errorf("sleeps = %d, want 2", n)
	}
	for _, d := range f.recordedSleeps() {
		if d < 0 || d > 2*time.Millisecond {
			t.Errorf("backoff %v outside policy", d)
		}
	}
}

func TestRetryGivesUpAfterMaxAttempts(t *testing.T) {
	f := newFakeAPI(t)
	f.json("GET /api/machines", 500, `{"detail":"boom"}`)
	c := f.client()
	_, err := c.Machines.List(context.Background(), nil)
	if !IsRetryable(err) {
		t.Fatalf("err = %v, want retryable", err)
	}
	if n := f.count(); n != 3 {
		t.Errorf("calls = %d, want 3", n)
	}
}

func TestRunCreationNeverRetried(t *testing.T) {
	ctxs := map[string]context.Context{
		"plain":      context.Background(),
		"idempotent": WithIdempotent(context.Background()),
	}
	for name, ctx := range ctxs {
		t.Run(name, func(t *testing.T) {
			f := newFakeAPI(t)
			for _, p := range []string{"/run/deployment/queue", "/run/deployment/sync", "/run/deployment/stream", "/run/workflow/queue"} {
				f.json("POST /api"+p, 503, `{"detail":"unavailable"}`)
			}
			c := f.client()
			dreq := &DeploymentRunRequest{DeploymentID: "d1"}
			wreq := &WorkflowRunRequest{WorkflowID: "w", WorkflowAPIJSON: []byte(`{}`)}
			calls := []func() error{
				func() error { _, err := c.Runs.QueueDeployment(ctx, dreq); return err },
				func() error { _, err := c.Runs.SyncDeployment(ctx, dreq); return err },
				func() error { _, err := c.Runs.StreamDeployment(ctx, dreq); return err },
				func() error { _, err := c.Runs.QueueWorkflow(ctx, wreq); return err },
			}
			for i, call := range calls {
				before := f.count()
				err := call()
				if !IsRetryable(err) {
					t.Errorf("call %d: err = %v, want a retryable APIError", i, err)
				}
				if got := f.count() - before; got != 1 {
					t.Errorf("call %d: %d requests, want exactly 1", i, got)
				}
			}
		})
	}
}

func TestRunCreationTransportErrorNotRetried(t *testing.T) {
	f := newFakeAPI(t)
	f.sequence("POST /api/run/deployment/queue", step{hangup: true}, step{status: 200, body: `{"run_id":"r"}`})
	c := f.client()
	_, err := c.Runs.QueueDeployment(context.Background(), &DeploymentRunRequest{DeploymentID: "d"})
	if err == nil || !IsRetryable(err) {
		t.Fatalf("err = %v, want retryable transport error", err)
	}
	if f.count() != 1 {
		t.Errorf("calls = %d, want 1", f.count())
	}
	if strings.Contains(err.Error(), "http://") {
		t.Errorf("transport error repeats the URL: %v", err)
	}
}

func TestTransportErrorRetriedForGET(t *testing.T) {
	f := newFakeAPI(t)
	f.sequence("GET /api/run/{id}", step{hangup: true}, step{status: 200, body: `{"id":"r"}`})
	c := f.client()
	if _, err := c.Runs.Get(context.Background(), "r", nil); err != nil {
		t.Fatal(err)
	}
	if f.count() != 2 {
		t.Errorf("calls = %d, want 2", f.count())
	}
}

func TestIdempotentContextEnablesRetry(t *testing.T) {
	f := newFakeAPI(t)
	f.sequence("POST /api/deployment", step{status: 503}, step{status: 503}, step{status: 200, body: `{"id":"d1"}`})
	c := f.client()
	req := &CreateDeploymentRequest{WorkflowID: "w", WorkflowVersionID: "v", Environment: "production"}

	if _, err := c.Deployments.Create(context.Background(), req); !IsRetryable(err) {
		t.Fatalf("unmarked POST: err = %v, want the 503", err)
	}
	if f.count() != 1 {
		t.Fatalf("unmarked POST retried: %d calls", f.count())
	}
	dep, err := c.Deployments.Create(WithIdempotent(context.Background()), req)
	if err != nil {
		t.Fatal(err)
	}
	if dep.ID != "d1" || f.count() != 3 {
		t.Errorf("dep = %+v, calls = %d", dep, f.count())
	}
	// The replayed body must be identical.
	reqs := f.requests()
	if !bytes.Equal(reqs[1].Body, reqs[2].Body) || len(reqs[2].Body) == 0 {
		t.Errorf("retry body differs: %q vs %q", reqs[1].Body, reqs[2].Body)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	f := newFakeAPI(t)
	f.sequence("GET /api/run/{id}",
		step{status: 429, header: map[string]string{"Retry-After": "2"}},
		step{status: 503, header: map[string]string{"Retry-After": time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)}},
		step{status: 200, body: `{"id":"r"}`})
	c := f.client()
	if _, err := c.Runs.Get(context.Background(), "r", nil); err != nil {
		t.Fatal(err)
	}
	sleeps := f.recordedSleeps()
	if len(sleeps) != 2 || sleeps[0] != 2*time.Second || sleeps[1] != 0 {
		t.Errorf("sleeps = %v, want [2s 0s]", sleeps)
	}
	if f.count() != 3 {
		t.Errorf("calls = %d", f.count())
	}
}

func TestRetryAfterTooLongIsHandedBack(t *testing.T) {
	f := newFakeAPI(t)
	f.sequence("GET /api/run/{id}", step{status: 503, header: map[string]string{"Retry-After": "3600"}}, step{status: 200, body: `{}`})
	c := f.client()
	_, err := c.Runs.Get(context.Background(), "r", nil)
	apiErr, ok := asAPIError(err)
	if !ok || apiErr.RetryAfter != time.Hour {
		t.Fatalf("err = %v, want APIError with RetryAfter 1h", err)
	}
	if f.count() != 1 {
		t.Errorf("calls = %d, want 1", f.count())
	}
}

func TestRetryWaitRespectsContext(t *testing.T) {
	f := newFakeAPI(t)
	f.json("GET /api/run/{id}", 503, `{}`)
	c := f.client()
	c.sleep = sleepContext
	c.retry = RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Hour, MaxBackoff: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	c.logger = slog.New(cancelOnRetryHandler{cancel: cancel})
	_, err := c.Runs.Get(ctx, "r", nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if f.count() != 1 {
		t.Errorf("calls = %d", f.count())
	}
}

// cancelOnRetryHandler cancels a context when the executor logs that it
// is about to wait, so the test can cancel during the wait without timing.
type cancelOnRetryHandler struct{ cancel context.CancelFunc }

func (h cancelOnRetryHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h cancelOnRetryHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "retrying") {
		h.cancel()
	}
	return nil
}
func (h cancelOnRetryHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h cancelOnRetryHandler) WithGroup(string) slog.Handler      { return h }

func TestCancelledContextReturnedAsIs(t *testing.T) {
	f := newFakeAPI(t)
	f.json("GET /api/run/{id}", 200, `{}`)
	c := f.client()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Runs.Get(ctx, "r", nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if IsRetryable(err) {
		t.Error("context cancellation must not be retryable")
	}
}

func TestRetryPolicyBackoff(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 10, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 400 * time.Millisecond}.normalized()
	for attempt := 1; attempt <= 8; attempt++ {
		limit := min(100*time.Millisecond<<(attempt-1), 400*time.Millisecond)
		for range 50 {
			if d := p.backoff(attempt); d < 0 || d >= limit {
				t.Fatalf("attempt %d: backoff %v outside [0,%v)", attempt, d, limit)
			}
		}
	}
	if got := (RetryPolicy{}).normalized(); got.MaxAttempts != 1 {
		t.Errorf("zero policy attempts = %d", got.MaxAttempts)
	}
	if d := DefaultRetryPolicy(); d.MaxAttempts != 4 || d.InitialBackoff != 200*time.Millisecond || d.MaxBackoff != 5*time.Second {
		t.Errorf("DefaultRetryPolicy = %+v", d)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]struct {
		want time.Duration
		ok   bool
	}{
		"":                              {0, false},
		"5":                             {5 * time.Second, true},
		"-1":                            {0, false},
		"soon":                          {0, false},
		"Wed, 01 Jan 2025 00:00:30 GMT": {30 * time.Second, true},
		"Tue, 31 Dec 2024 00:00:00 GMT": {0, true},
	}
	for in, want := range cases {
		got, ok := parseRetryAfter(in, now)
		if got != want.want || ok != want.ok {
			t.Errorf("parseRetryAfter(%q) = %v,%v want %v,%v", in, got, ok, want.want, want.ok)
		}
	}
}

func TestDoEscapeHatch(t *testing.T) {
	f := newFakeAPI(t)
	f.json("GET /api/session/{id}", 200, `{"id":"s1","url":"https://x"}`)
	c := f.client()
	req, err := c.NewRequest(context.Background(), http.MethodGet, "/session/s1", nil)
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ ID, URL string }
	resp, err := c.Do(context.Background(), req, &out)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || out.ID != "s1" || out.URL != "https://x" {
		t.Errorf("resp=%d out=%+v", resp.StatusCode, out)
	}
}

func TestMalformedSuccessBody(t *testing.T) {
	f := newFakeAPI(t)
	f.json("GET /api/run/{id}", 200, `<html>proxy page</html>`)
	f.json("POST /api/run/deployment/queue", 200, `{"status":"success","batch_id":"b1"}`)
	c := f.client()
	if _, err := c.Runs.Get(context.Background(), "r", nil); !errors.Is(err, ErrUnexpectedResponse) {
		t.Errorf("Get err = %v, want ErrUnexpectedResponse", err)
	}
	if _, err := c.Runs.QueueDeployment(context.Background(), &DeploymentRunRequest{DeploymentID: "d"}); !errors.Is(err, ErrUnexpectedResponse) {
		t.Errorf("Queue err = %v, want ErrUnexpectedResponse", err)
	}
}
