package activities_test

import (
	"context"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/wakeup"
)

// withWakeups serves a wakeup.Hub that the simulator's webhooks reach.
func withWakeups(t *testing.T, h *harness) *wakeup.Hub {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	t.Cleanup(srv.Close)
	hub, err := wakeup.New("http://"+srv.Listener.Addr().String()+"/comfy/webhook", "activities-test-webhook-secret", nil)
	require.NoError(t, err)
	srv.Config.Handler = hub
	srv.Start()
	h.acts.Wakeups = hub
	return hub
}

func TestSubmitGivesTheRunASignedWebhook(t *testing.T) {
	h := newHarness(t)
	withWakeups(t, h)
	val, err := h.env().ExecuteActivity(h.acts.Submit, submitReq("tok-hook"))
	require.NoError(t, err)
	var res activities.SubmitResult
	require.NoError(t, val.Get(&res))

	run, err := h.client.Runs.Get(context.Background(), res.RunID, nil)
	require.NoError(t, err)
	hook, err := url.Parse(run.Webhook)
	require.NoError(t, err)
	assert.Equal(t, "/comfy/webhook", hook.Path)
	assert.Equal(t, "tok-hook", hook.Query().Get(comfy.CorrelationQueryParam))
	assert.NotEmpty(t, hook.Query().Get(comfy.WebhookSignatureParam))
	assert.Equal(t, "tok-hook", comfy.CorrelationToken(run))
}

func TestAwaitRunWakesOnTheWebhookInsteadOfWaitingForItsPoll(t *testing.T) {
	h := newHarness(t, withSimOptions(func(o *comfytest.Options) {
		// Duplicates and late deliveries must not matter either.
		o.Faults = comfytest.Faults{WebhookDuplicateRate: 1, WebhookReorderRate: 0.5}
	}))
	withWakeups(t, h)
	val, err := h.env().ExecuteActivity(h.acts.Submit, submitReq("tok-wake"))
	require.NoError(t, err)
	var sub activities.SubmitResult
	require.NoError(t, val.Get(&sub))

	// One poll an hour: only the webhook can end this wait in time.
	const interval = time.Hour
	type outcome struct {
		res activities.AwaitResult
		err error
	}
	done := make(chan outcome, 1)
	go func() { // no require here: it may not stop the test from another goroutine
		var o outcome
		val, err := h.env().ExecuteActivity(h.acts.AwaitRun, activities.AwaitRequest{RunID: sub.RunID, SubmittedAt: time.Now(), PollInterval: interval, CanCancel: true})
		if o.err = err; err == nil {
			o.err = val.Get(&o.res)
		}
		done <- o
	}()
	select {
	case o := <-done:
		require.NoError(t, o.err)
		assert.Equal(t, string(comfy.StatusSuccess), o.res.Status)
	case <-time.After(30 * time.Second):
		t.Fatalf("AwaitRun was not woken by the run's webhook")
	}
}

func TestAwaitRunPollsToTheEndWhenWebhooksAreLost(t *testing.T) {
	h := newHarness(t, withSimOptions(func(o *comfytest.Options) {
		o.Faults = comfytest.Faults{WebhookDropRate: 1}
	}))
	withWakeups(t, h)
	val, err := h.env().ExecuteActivity(h.acts.Submit, submitReq("tok-lost"))
	require.NoError(t, err)
	var sub activities.SubmitResult
	require.NoError(t, val.Get(&sub))
	res := await(t, h.env(), h.acts, activities.AwaitRequest{RunID: sub.RunID, SubmittedAt: time.Now(), CanCancel: true})
	assert.Equal(t, string(comfy.StatusSuccess), res.Status)
	assert.Zero(t, h.srv.Counters().WebhookDeliveries)
}
