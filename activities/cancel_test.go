package activities_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
)

func cancelRun(t *testing.T, env *testsuite.TestActivityEnvironment, a *activities.Activities, req activities.CancelRequest) activities.CancelResult {
	t.Helper()
	val, err := env.ExecuteActivity(a.CancelRun, req)
	require.NoError(t, err)
	var res activities.CancelResult
	require.NoError(t, val.Get(&res))
	return res
}

func TestCancelRunServerless(t *testing.T) {
	h := newHarness(t)
	h.srv.SetTiming(comfytest.DeploymentTxt2Img, comfytest.Timing{ColdStart: time.Hour, Run: time.Second})
	id := h.queue(comfytest.DeploymentTxt2Img, "", txt2imgInputs)
	res := cancelRun(t, h.env(), h.acts, activities.CancelRequest{RunID: id})
	assert.Equal(t, id, res.RunID)
	assert.True(t, res.Supported)
	assert.Equal(t, string(comfy.StatusCancelled), res.FinalStatus)
	assert.Contains(t, res.Message, "cancelled")
	assert.Equal(t, 1, h.srv.Counters().Cancels)
	run := h.waitStatus(id, time.Second, comfy.RunStatus.IsTerminal)
	assert.Equal(t, comfy.StatusCancelled, run.Status)
}

func TestCancelRunAlreadyFinished(t *testing.T) {
	h := newHarness(t)
	id := h.runToSuccess(comfytest.DeploymentTxt2Img, txt2imgInputs)
	res := cancelRun(t, h.env(), h.acts, activities.CancelRequest{RunID: id})
	assert.True(t, res.Supported)
	assert.Equal(t, string(comfy.StatusSuccess), res.FinalStatus)
	assert.Zero(t, h.srv.Counters().Cancels)
}

func TestCancelRunClassicUnsupported(t *testing.T) {
	h := newHarness(t)
	h.srv.SetTiming(comfytest.DeploymentTxt2ImgClassic, comfytest.Timing{ColdStart: time.Hour, Run: time.Second})
	id := h.queue(comfytest.DeploymentTxt2ImgClassic, "", txt2imgInputs)
	res := cancelRun(t, h.env(), h.acts, activities.CancelRequest{RunID: id})
	assert.Equal(t, id, res.RunID)
	assert.False(t, res.Supported)
	assert.Contains(t, res.Message, "cannot cancel")
	assert.Contains(t, res.Message, "billed")
	assert.NotContains(t, res.Message, "comfy:", "the message is for people, not a raw client error")
	assert.False(t, comfy.RunStatus(res.FinalStatus).IsTerminal(), "the run keeps going: %q", res.FinalStatus)
	assert.Zero(t, h.srv.Counters().Cancels)
}

func TestCancelRunByCorrelationToken(t *testing.T) {
	h := newHarness(t)
	h.srv.SetTiming(comfytest.DeploymentTxt2Img, comfytest.Timing{ColdStart: time.Hour, Run: time.Second})
	other := h.queue(comfytest.DeploymentTxt2Img, "tok-other", txt2imgInputs)
	id := h.queue(comfytest.DeploymentTxt2Img, "tok-cancel-me", txt2imgInputs)
	res := cancelRun(t, h.env(), h.acts, activities.CancelRequest{ComfyWorkflowID: comfytest.WorkflowTxt2Img, CorrelationToken: "tok-cancel-me"})
	assert.Equal(t, id, res.RunID, "the run is found by its token")
	assert.True(t, res.Supported)
	assert.Equal(t, string(comfy.StatusCancelled), res.FinalStatus)
	assert.Equal(t, 1, h.srv.Counters().Cancels)

	run, err := h.client.Runs.Get(t.Context(), other, nil)
	require.NoError(t, err)
	assert.NotEqual(t, comfy.StatusCancelled, run.Status, "only the matching run is cancelled")
}

func TestCancelRunTokenWithoutRun(t *testing.T) {
	h := newHarness(t)
	h.queue(comfytest.DeploymentTxt2Img, "tok-unrelated", txt2imgInputs)
	res := cancelRun(t, h.env(), h.acts, activities.CancelRequest{ComfyWorkflowID: comfytest.WorkflowTxt2Img, CorrelationToken: "tok-never-submitted"})
	assert.Empty(t, res.RunID)
	assert.True(t, res.Supported)
	assert.Contains(t, res.Message, "nothing to cancel")
	assert.Zero(t, h.srv.Counters().Cancels)
}

func TestCancelRunNeedsRunOrToken(t *testing.T) {
	h := newHarness(t)
	_, err := h.env().ExecuteActivity(h.acts.CancelRun, activities.CancelRequest{})
	ae := appErr(t, err)
	assert.Equal(t, activities.ErrTypeInvalidRequest, ae.Type())
	assert.True(t, ae.NonRetryable())
}

func TestCancelRunUnknownRun(t *testing.T) {
	// The cancel route answers the same 500 for an unknown run as for a
	// machine type that cannot cancel; the activity must not claim the
	// latter for a run that does not exist.
	h := newHarness(t)
	_, err := h.env().ExecuteActivity(h.acts.CancelRun, activities.CancelRequest{RunID: "00000000-0000-4000-8000-000000000000"})
	ae := appErr(t, err)
	assert.Equal(t, activities.ErrTypeRunNotFound, ae.Type())
	assert.True(t, ae.NonRetryable())
}
