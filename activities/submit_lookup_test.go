package activities_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
)

const workflowRunsRoute = "GET /api/workflow/{workflow_id}/runs"

// TestSubmitRetryFindsARunBeyondTheFirstPage: a busy batch created more
// than a page of runs of the same workflow between the submission whose
// reply was lost and the retry, so the retry's lookup has to page (bounded
// by the submission time) to find it instead of paying for a second run.
func TestSubmitRetryFindsARunBeyondTheFirstPage(t *testing.T) {
	h := newHarness(t)
	req := submitReq("tok-deep")
	req.SubmittedAt = time.Now()
	env := h.workflowEnv()
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.Attempt == 2 {
			for i := range 150 {
				h.queue(comfytest.DeploymentTxt2Img, fmt.Sprintf("tok-busy-%d", i), req.Inputs)
			}
		}
	})
	env.ExecuteWorkflow(submitWorkflow, submitLosingReply, req, int32(3))
	require.NoError(t, env.GetWorkflowError())
	var res activities.SubmitResult
	require.NoError(t, env.GetWorkflowResult(&res))
	assert.True(t, res.Reconciled, "attempt 2 found attempt 1's run")
	c := h.srv.Counters()
	assert.Equal(t, 1, c.RunsByToken["tok-deep"], "no second run was paid for")
	assert.Equal(t, 2, c.Calls[workflowRunsRoute][200], "151 runs: the token is on the second page of 100")
}

// TestCancelByTokenFindsARunBeyondTheFirstPage: the cancel of a submission
// whose outcome is unknown has no time bound and pages up to the limit.
func TestCancelByTokenFindsARunBeyondTheFirstPage(t *testing.T) {
	h := newHarness(t)
	run := h.queue(comfytest.DeploymentTxt2Img, "tok-cancel-deep", map[string]any{"prompt": "a cat"})
	for i := range 150 {
		h.queue(comfytest.DeploymentTxt2Img, fmt.Sprintf("tok-busy-%d", i), map[string]any{"prompt": "a dog"})
	}
	val, err := h.env().ExecuteActivity(h.acts.CancelRun, activities.CancelRequest{
		ComfyWorkflowID: comfytest.WorkflowTxt2Img, CorrelationToken: "tok-cancel-deep"})
	require.NoError(t, err)
	var res activities.CancelResult
	require.NoError(t, val.Get(&res))
	assert.Equal(t, run, res.RunID)
	assert.Equal(t, 2, h.srv.Counters().Calls[workflowRunsRoute][200], "151 runs: the token is on the second page of 100")
}
