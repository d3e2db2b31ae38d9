package wakeup

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const secret = "0123456789abcdef-test-secret"

func newHub(t *testing.T, logs *bytes.Buffer) *Hub {
	t.Helper()
	var logger *slog.Logger
	if logs != nil {
		logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h, err := New("https://worker.example/comfy/webhook", secret, logger)
	require.NoError(t, err)
	return h
}

func post(h http.Handler, target, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, target, strings.NewReader(body)))
	return rec
}

func woken(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestNewRejectsUnusableConfig(t *testing.T) {
	_, err := New("worker.example/hook", secret, nil)
	assert.ErrorContains(t, err, "absolute http(s) URL")
	_, err = New("https://worker.example/hook", "short", nil)
	assert.ErrorContains(t, err, "at least 16 characters")
}

func TestTerminalWebhookWakesTheWaitOfItsRunOnly(t *testing.T) {
	h := newHub(t, nil)
	hook, err := h.URL("batch-1/3/run-a/1")
	require.NoError(t, err)
	mine, stopMine := h.Watch("run-1")
	defer stopMine()
	other, stopOther := h.Watch("run-2")
	defer stopOther()

	rec := post(h, hook, `{"event_type":"run.updated","run_id":"run-1","status":"running","progress":0.5,"outputs":[]}`)
	assert.Equal(t, http.StatusNoContent, rec.Code)
	assert.False(t, woken(mine), "a non-terminal status is not worth a poll")

	rec = post(h, hook, `{"event_type":"run.updated","run_id":"run-1","status":"success","progress":1,"outputs":[]}`)
	assert.Equal(t, http.StatusNoContent, rec.Code)
	assert.True(t, woken(mine))
	assert.False(t, woken(other))
}

func TestDuplicateDeliveriesWakeOnce(t *testing.T) {
	h := newHub(t, nil)
	hook, err := h.URL("tok")
	require.NoError(t, err)
	ch, stop := h.Watch("run-1")
	defer stop()
	body := `{"run_id":"run-1","status":"failed","progress":0.4,"outputs":[]}`
	post(h, hook, body)
	require.True(t, woken(ch))
	post(h, hook, body)
	assert.False(t, woken(ch), "the duplicate must not cost another poll")
	post(h, hook, `{"run_id":"run-1","status":"failed","progress":0.5,"live_status":"x","outputs":[]}`)
	assert.False(t, woken(ch), "nor a body varied to look new")
}

func TestStoppedWatchIsForgotten(t *testing.T) {
	h := newHub(t, nil)
	_, stop := h.Watch("run-1")
	stop()
	assert.Equal(t, 0, h.wake("run-1"))
	assert.Empty(t, h.waiters)
}

func TestRefusesWhatItDidNotSign(t *testing.T) {
	var logs bytes.Buffer
	h := newHub(t, &logs)
	ch, stop := h.Watch("run-1")
	defer stop()
	body := `{"run_id":"run-1","status":"success","outputs":[]}`

	forged, err := New("https://worker.example/comfy/webhook", "another-secret-of-16+", nil)
	require.NoError(t, err)
	forgedURL, err := forged.URL("tok")
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnauthorized, post(h, forgedURL, body).Code)
	assert.Equal(t, http.StatusUnauthorized, post(h, "https://worker.example/comfy/webhook", body).Code)

	h.TokenLifetime = -time.Minute
	expired, err := h.URL("tok")
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnauthorized, post(h, expired, body).Code)

	assert.False(t, woken(ch))
	assert.NotContains(t, logs.String(), "sig=", "signatures stay out of logs")
	assert.NotContains(t, logs.String(), secret)
}

func TestRefusesMalformedRequests(t *testing.T) {
	h := newHub(t, nil)
	hook, err := h.URL("tok")
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, post(h, hook, `{"status":"success"}`).Code, "no run_id")
	assert.Equal(t, http.StatusBadRequest, post(h, hook, `not json`).Code)
	assert.Equal(t, http.StatusRequestEntityTooLarge, post(h, hook, `{"run_id":"`+strings.Repeat("x", maxBody)+`"}`).Code)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, hook, nil))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
}

func TestURLCarriesTheCorrelationToken(t *testing.T) {
	h := newHub(t, nil)
	hook, err := h.URL("wf/run/2")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(hook, "https://worker.example/comfy/webhook?"))
	assert.Contains(t, hook, "cid=wf%2Frun%2F2")
}

// elsewhere records the calls of Hub.Elsewhere.
type elsewhere struct {
	calls chan [2]string
}

func (e *elsewhere) finish(_ context.Context, token, runID string) (bool, error) {
	e.calls <- [2]string{token, runID}
	return true, nil
}

func TestRunsWatchedNowhereHereGoElsewhere(t *testing.T) {
	h := newHub(t, nil)
	e := &elsewhere{calls: make(chan [2]string, 4)}
	h.Elsewhere = e.finish
	hook, err := h.URL("batch/7/r1/1")
	require.NoError(t, err)
	_, stop := h.Watch("run-here")
	defer stop()

	post(h, hook, `{"run_id":"run-here","status":"success","outputs":[]}`)
	post(h, hook, `{"run_id":"run-away","status":"running","outputs":[]}`)
	post(h, hook, `{"run_id":"run-away","status":"success","outputs":[]}`)
	select {
	case call := <-e.calls:
		assert.Equal(t, [2]string{"batch/7/r1/1", "run-away"}, call, "the token comes from the signed URL")
	case <-time.After(5 * time.Second):
		t.Fatal("Elsewhere was not called for a run no wait here watches")
	}
	assert.Empty(t, e.calls, "a run woken here, and a non-terminal status, go nowhere else")
}
