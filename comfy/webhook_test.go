package comfy

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	signer  = WebhookSigner{Secret: []byte("webhook-secret-0123456789")}
	signNow = time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
)

func mustSign(t *testing.T, base, subject string, exp time.Time) *url.URL {
	t.Helper()
	s, err := signer.SignURL(base, subject, exp)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestWebhookSignAndVerify(t *testing.T) {
	exp := signNow.Add(48 * time.Hour)
	u := mustSign(t, "https://worker.example/hooks/comfy?target_events=run.output,run.updated&x=1", "wf-123/activity-7", exp)

	if !strings.HasPrefix(u.RawQuery, "target_events=run.output,run.updated&x=1&") {
		t.Errorf("existing query not kept verbatim: %q", u.RawQuery)
	}
	q := u.Query()
	assertEq(t, q.Get(CorrelationQueryParam), "wf-123/activity-7")
	assertEq(t, q.Get(WebhookExpiresParam), fmt.Sprint(exp.Unix()))

	sub, err := signer.Verify(u, signNow)
	if err != nil || sub != "wf-123/activity-7" {
		t.Fatalf("Verify = %q, %v", sub, err)
	}
	// The subject doubles as the run's correlation token.
	assertEq(t, CorrelationToken(&Run{Webhook: u.String()}), "wf-123/activity-7")

	// Re-signing replaces our parameters instead of adding copies.
	again := mustSign(t, u.String(), "other", exp)
	if n := len(again.Query()[CorrelationQueryParam]); n != 1 {
		t.Errorf("re-signed URL has %d cid params", n)
	}
	if sub, err := signer.Verify(again, signNow); err != nil || sub != "other" {
		t.Errorf("re-signed Verify = %q, %v", sub, err)
	}
}

func TestWebhookVerifyRejects(t *testing.T) {
	exp := signNow.Add(time.Hour)
	good := mustSign(t, "https://w.example/cb", "subject-A", exp)
	other := mustSign(t, "https://w.example/cb", "subject-B", exp)

	with := func(mod func(q url.Values)) *url.URL {
		u := *good
		q := u.Query()
		mod(q)
		u.RawQuery = q.Encode()
		return &u
	}
	cases := []struct {
		name string
		u    *url.URL
		now  time.Time
		want error
	}{
		{"tampered subject", with(func(q url.Values) { q.Set(CorrelationQueryParam, "subject-B") }), signNow, ErrWebhookTokenInvalid},
		{"tampered signature", with(func(q url.Values) {
			sig := []byte(q.Get(WebhookSignatureParam))
			sig[3] ^= 1
			q.Set(WebhookSignatureParam, string(sig))
		}), signNow, ErrWebhookTokenInvalid},
		{"extended expiry", with(func(q url.Values) { q.Set(WebhookExpiresParam, fmt.Sprint(exp.Add(time.Hour).Unix())) }), signNow, ErrWebhookTokenInvalid},
		{"replayed from another subject", with(func(q url.Values) { q.Set(WebhookSignatureParam, other.Query().Get(WebhookSignatureParam)) }), signNow, ErrWebhookTokenInvalid},
		{"expired", good, exp.Add(time.Second), ErrWebhookTokenExpired},
		{"missing signature", with(func(q url.Values) { q.Del(WebhookSignatureParam) }), signNow, ErrWebhookTokenMissing},
		{"missing subject", with(func(q url.Values) { q.Del(CorrelationQueryParam) }), signNow, ErrWebhookTokenMissing},
		{"missing expiry", with(func(q url.Values) { q.Del(WebhookExpiresParam) }), signNow, ErrWebhookTokenMissing},
		{"no params", &url.URL{Path: "/cb"}, signNow, ErrWebhookTokenMissing},
		{"nil", nil, signNow, ErrWebhookTokenMissing},
		{"repeated subject", with(func(q url.Values) { q.Add(CorrelationQueryParam, "subject-B") }), signNow, ErrWebhookTokenInvalid},
		{"malformed expiry", with(func(q url.Values) { q.Set(WebhookExpiresParam, "+1") }), signNow, ErrWebhookTokenInvalid},
		{"malformed signature", with(func(q url.Values) { q.Set(WebhookSignatureParam, "!!!") }), signNow, ErrWebhookTokenInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := signer.Verify(tc.u, tc.now)
			if !errors.Is(err, tc.want) || sub != "" {
				t.Errorf("Verify = %q, %v; want %v", sub, err, tc.want)
			}
		})
	}
	wrongKey := WebhookSigner{Secret: []byte("other-secret")}
	if _, err := wrongKey.Verify(good, signNow); !errors.Is(err, ErrWebhookTokenInvalid) {
		t.Errorf("wrong key: %v", err)
	}
	// Exactly at the expiry second the token is still valid.
	if _, err := signer.Verify(good, exp); err != nil {
		t.Errorf("at expiry: %v", err)
	}
}

func TestWebhookSignErrors(t *testing.T) {
	exp := signNow.Add(time.Hour)
	if _, err := (WebhookSigner{}).SignURL("https://x/cb", "s", exp); err == nil {
		t.Error("no secret: want error")
	}
	if _, err := (WebhookSigner{}).Verify(&url.URL{}, signNow); err == nil {
		t.Error("verify without secret: want error")
	}
	for _, c := range []struct {
		base, sub string
		exp       time.Time
	}{
		{"https://x/cb", "", exp}, {"https://x/cb", "s", time.Time{}}, {"/relative", "s", exp}, {"ftp://x/cb", "s", exp}, {"://", "s", exp},
	} {
		if _, err := signer.SignURL(c.base, c.sub, c.exp); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("SignURL(%q,%q): %v", c.base, c.sub, err)
		}
	}
}

func TestWebhookSignerHidesSecret(t *testing.T) {
	secret := string(signer.Secret)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "signer", signer)
	holder := struct{ S WebhookSigner }{signer}
	for _, s := range []string{
		fmt.Sprint(signer), fmt.Sprintf("%+v", signer), fmt.Sprintf("%#v", signer), fmt.Sprintf("%x", signer),
		fmt.Sprintf("%v", &signer), fmt.Sprintf("%+v", holder), buf.String(),
	} {
		if strings.Contains(s, secret) || strings.Contains(s, fmt.Sprintf("%x", secret)) || strings.Contains(s, "119 101 98") {
			t.Errorf("secret leaked: %s", s)
		}
	}
}

func TestParseWebhook(t *testing.T) {
	ev, err := ParseWebhook([]byte(`{"run_id":"r1","status":"running","live_status":null,"progress":0.5,"outputs":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	assertEq(t, ev.EventType, WebhookRunUpdated)
	assertEq(t, ev.Status, StatusRunning)
	assertEq(t, ev.Progress, 0.5)

	ev, err = ParseWebhook([]byte(`{"event_type":"run.output","run_id":"r1","status":"running","progress":"0.75","outputs":[{"id":"o1","output_id":"final","data":{"images":[{"url":"https://s3/a.png","type":"output","filename":"a.png","output_id":"final","format":"png"}]}}],"extra":1}`))
	if err != nil {
		t.Fatal(err)
	}
	assertEq(t, ev.EventType, WebhookRunOutput)
	assertEq(t, ev.Progress, 0.75)
	if m := ev.Outputs[0].Data["images"][0].Media; m == nil || m.OutputID != "final" || m.Format != "png" {
		t.Errorf("media = %+v", m)
	}

	for _, bad := range []string{``, `[]`, `{"status":"success"}`, `{"run_id":"r","outputs":"x"}`} {
		if _, err := ParseWebhook([]byte(bad)); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ParseWebhook(%q) err = %v", bad, err)
		}
	}
}

func TestWebhookDeduper(t *testing.T) {
	d := NewWebhookDeduper(3)
	parse := func(s string) *WebhookEvent {
		ev, err := ParseWebhook([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	running := parse(`{"run_id":"r1","status":"running","progress":0.1}`)
	runningAgain := parse(`{"event_type":"run.updated","run_id":"r1","status":"running","progress":0.1,"outputs":[]}`)
	progressed := parse(`{"run_id":"r1","status":"running","progress":0.2}`)
	success := parse(`{"run_id":"r1","status":"success","progress":1,"outputs":[{"id":"o2"},{"id":"o1"}]}`)
	successReordered := parse(`{"run_id":"r1","status":"success","progress":1,"outputs":[{"id":"o1"},{"id":"o2"}]}`)
	output1 := parse(`{"event_type":"run.output","run_id":"r1","status":"running","progress":1,"outputs":[{"id":"o1"}]}`)
	output2 := parse(`{"event_type":"run.output","run_id":"r1","status":"running","progress":1,"outputs":[{"id":"o2"}]}`)

	if d.Seen(running) {
		t.Error("first delivery reported as seen")
	}
	if !d.Seen(runningAgain) {
		t.Error("duplicate (event_type defaulted) not detected")
	}
	if d.Seen(progressed) {
		t.Error("new progress reported as duplicate")
	}
	if d.Seen(success) || !d.Seen(successReordered) {
		t.Error("terminal duplicate with reordered outputs not detected")
	}
	if d.Seen(output1) || d.Seen(output2) {
		t.Error("distinct run.output deliveries reported as duplicates")
	}
	assertEq(t, d.Len(), 3) // bounded
	if d.Seen(running) {
		t.Error("oldest key should have been evicted")
	}

	// Status only moves forward: a late "running" after success is stale.
	if running.Supersedes(StatusSuccess) || !success.Supersedes(StatusRunning) {
		t.Error("Supersedes wrong")
	}
}

func TestWebhookDeduperConcurrent(t *testing.T) {
	var d WebhookDeduper // zero value is usable
	var wg sync.WaitGroup
	var mu sync.Mutex
	firsts := 0
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if !d.SeenKey(fmt.Sprintf("k%d", (i+g)%100)) {
					mu.Lock()
					firsts++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	assertEq(t, firsts, 100) // each key is new exactly once
	assertEq(t, d.Len(), 100)
}
