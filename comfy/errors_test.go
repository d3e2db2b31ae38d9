package comfy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
)

func TestErrorClasses(t *testing.T) {
	cases := []struct {
		name       string
		status     int
		body       string
		wantDetail string
		check      func(error) bool
		retryable  bool
	}{
		{"unauthorized", 401, `{"detail":"Invalid or expired token"}`, "Invalid or expired token", IsUnauthorized, false},
		{"forbidden credits", 403, `{"detail":"Insufficient your GPU credits to create run"}`, "Insufficient your GPU credits to create run", IsForbidden, false},
		{"not found", 404, `{"detail":"Run not found"}`, "Run not found", IsNotFound, false},
		{"validation list", 422, `{"detail":[{"loc":["body","deployment_id"],"msg":"field required","type":"missing"},{"loc":["body","inputs","x"],"msg":"bad","type":"t"}]}`,
			"body.deployment_id: field required; body.inputs.x: bad", IsValidation, false},
		{"bad request", 400, `{"detail":"Invalid machine type"}`, "Invalid machine type", IsValidation, false},
		{"error key", 400, `{"error":"name taken"}`, "name taken", IsValidation, false},
		{"timeout", 408, ``, "", IsRetryable, true},
		{"too many", 429, `slow down`, "slow down", IsRetryable, true},
		{"server", 500, `{"detail":"Internal server error"}`, "Internal server error", IsRetryable, true},
		{"gateway html", 502, "<html>\n<body>bad gateway</body>", "<html>", IsRetryable, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t)
			f.json("GET /api/runs/count", tc.status, tc.body)
			c := f.client(WithRetry(RetryPolicy{MaxAttempts: 1}))
			_, err := c.Runs.Count(context.Background(), nil)
			apiErr, ok := asAPIError(err)
			if !ok {
				t.Fatalf("err = %T %v, want *APIError", err, err)
			}
			if apiErr.StatusCode != tc.status || apiErr.Method != "GET" || apiErr.Path != "/api/runs/count" {
				t.Errorf("APIError = %+v", apiErr)
			}
			if apiErr.Detail != tc.wantDetail {
				t.Errorf("Detail = %q, want %q", apiErr.Detail, tc.wantDetail)
			}
			if !tc.check(err) {
				t.Errorf("classifier false for %v", err)
			}
			if IsRetryable(err) != tc.retryable {
				t.Errorf("IsRetryable = %v", !tc.retryable)
			}
			if wrapped := fmt.Errorf("activity: %w", err); !tc.check(wrapped) {
				t.Error("classifier does not see through wrapping")
			}
			if !strings.Contains(err.Error(), fmt.Sprint(tc.status)) {
				t.Errorf("Error() = %q lacks status", err.Error())
			}
		})
	}
}

func TestAPIErrorBodyTruncated(t *testing.T) {
	f := newFakeAPI(t)
	long := `{"detail":"` + strings.Repeat("x", 10000) + `"}`
	f.json("GET /api/run/{id}", 400, long)
	_, err := f.client().Runs.Get(context.Background(), "r", nil)
	apiErr, _ := asAPIError(err)
	if apiErr == nil || len(apiErr.Body) != 4096 {
		t.Fatalf("body length = %d, want 4096", len(apiErr.Body))
	}
	if len(apiErr.Detail) != 10000 {
		t.Errorf("detail length = %d: a long JSON detail should still parse", len(apiErr.Detail))
	}
}

func TestDeploymentNotFoundQuirk(t *testing.T) {
	f := newFakeAPI(t)
	f.json("GET /api/deployment/{id}", 500, `{"detail":"Internal server error"}`)
	f.json("DELETE /api/deployment/{id}", 500, `{"detail":"Internal server error"}`)
	f.json("GET /api/deployments", 500, `{"detail":"Internal server error"}`)
	c := f.client()

	_, err := c.Deployments.Get(context.Background(), "missing")
	apiErr, ok := asAPIError(err)
	if !ok || !IsNotFound(err) || !apiErr.NotFoundQuirk {
		t.Fatalf("err = %v, want not-found quirk", err)
	}
	if IsRetryable(err) {
		t.Error("quirk must not be retryable")
	}
	if !strings.Contains(err.Error(), "treated as not found") {
		t.Errorf("Error() = %q", err.Error())
	}
	// A real hiccup looks the same, so the executor tries a few times first.
	if n := f.count(); n != 3 {
		t.Errorf("GET calls = %d, want 3", n)
	}

	if err := c.Deployments.Delete(context.Background(), "missing"); !IsNotFound(err) {
		t.Errorf("Delete err = %v, want not found", err)
	}

	// The list route has no such quirk.
	_, err = c.Deployments.List(context.Background(), nil)
	if IsNotFound(err) || !IsRetryable(err) {
		t.Errorf("List err = %v: want a plain retryable 500", err)
	}

	// A real 404 is not a quirk.
	f2 := newFakeAPI(t)
	f2.json("GET /api/deployment/{id}", 404, `{"detail":"Deployment not found"}`)
	_, err = f2.client().Deployments.Get(context.Background(), "x")
	if apiErr, _ := asAPIError(err); !IsNotFound(err) || apiErr.NotFoundQuirk {
		t.Errorf("err = %v", err)
	}
}

func TestCancelQuirks(t *testing.T) {
	f := newFakeAPI(t)
	f.json("POST /api/run/{id}/cancel", 500, `{"detail":"Error cancel function 404: Run not found or has no modal function call ID"}`)
	c := f.client()
	_, err := c.Runs.Cancel(context.Background(), "classic-run")
	if !IsCancelUnsupported(err) {
		t.Errorf("IsCancelUnsupported(%v) = false", err)
	}
	if apiErr, _ := asAPIError(err); !IsNotFound(err) || !apiErr.NotFoundQuirk {
		t.Errorf("IsNotFound(%v) = false; the message also covers unknown runs", err)
	}
	if IsRetryable(err) {
		t.Error("cancel quirk must not be retryable")
	}
	if f.count() != 1 {
		t.Errorf("calls = %d, want 1 (deterministic failure)", f.count())
	}

	// A transient cancel failure is retried, because a cancel is safe to repeat.
	f2 := newFakeAPI(t)
	f2.sequence("POST /api/run/{id}/cancel", step{status: 503}, step{status: 200, body: `{"status":"success","message":"Function cancelled"}`})
	res, err := f2.client().Runs.Cancel(context.Background(), "r")
	if err != nil || res.Status != "success" || res.Message != "Function cancelled" || f2.count() != 2 {
		t.Errorf("res=%+v err=%v calls=%d", res, err, f2.count())
	}

	// Another 500 on cancel is neither.
	f3 := newFakeAPI(t)
	f3.json("POST /api/run/{id}/cancel", 500, `{"detail":"modal exploded"}`)
	_, err = f3.client(WithRetry(RetryPolicy{MaxAttempts: 1})).Runs.Cancel(context.Background(), "r")
	if IsCancelUnsupported(err) || IsNotFound(err) || !IsRetryable(err) {
		t.Errorf("err = %v misclassified", err)
	}
}

func TestIsRetryableNonAPIErrors(t *testing.T) {
	if IsRetryable(nil) || IsRetryable(errors.New("x")) || IsRetryable(context.DeadlineExceeded) || IsRetryable(ErrInvalidArgument) {
		t.Error("unexpected retryable")
	}
	if !IsRetryable(&net.OpError{Op: "dial", Err: errors.New("refused")}) {
		t.Error("net errors are retryable")
	}
	te := &transportError{method: "GET", path: "/x", err: context.DeadlineExceeded}
	if !IsRetryable(te) {
		t.Error("a transport timeout (http.Client.Timeout) is retryable")
	}
}

func TestParseDetailShapes(t *testing.T) {
	cases := map[string]string{
		``:                              "",
		`{"detail":null}`:               "",
		`{"detail":{"code":"x"}}`:       `{"code":"x"}`,
		`{"message":"m"}`:               "m",
		`{"other":1}`:                   "",
		"plain text\nsecond line":       "plain text",
		`{"detail":[{"msg":"no loc"}]}`: "no loc",
	}
	for in, want := range cases {
		if got := parseDetail([]byte(in)); got != want {
			t.Errorf("parseDetail(%q) = %q, want %q", in, got, want)
		}
	}
}
