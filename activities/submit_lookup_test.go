package activities_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy"
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

// TestSubmitRetryDoesNotResubmitWhenTheLookupIsCutShort: more runs than
// the lookup may page through were created since the submission whose
// outcome is unknown (every page is full and newer than it), so "not
// found" proves nothing; every attempt must fail as unconfirmed rather
// than pay for a second run.
func TestSubmitRetryDoesNotResubmitWhenTheLookupIsCutShort(t *testing.T) {
	var submits, pages atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/api/run/deployment/queue":
			submits.Add(1)
			http.Error(w, "upstream timeout", http.StatusBadGateway) // created or not: unknown
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/runs"):
			pages.Add(1)
			limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
			rows := make([]map[string]any, limit)
			for i := range rows {
				rows[i] = map[string]any{
					"id": fmt.Sprintf("run-%d-%d", pages.Load(), i), "created_at": time.Now().UTC().Format(time.RFC3339),
					"workflow_inputs": map[string]any{comfy.CorrelationInputKey: "someone-else"},
				}
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(rows)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(api.Close)
	cc, err := comfy.NewClient(comfy.WithBaseURL(api.URL+"/api"), comfy.WithAPIKey("k"), comfy.WithRetry(comfy.RetryPolicy{MaxAttempts: 1}))
	require.NoError(t, err)

	env := quietSuite().NewTestWorkflowEnvironment()
	env.RegisterWorkflow(submitWorkflow)
	env.RegisterActivity(&activities.Activities{Comfy: cc})
	req := submitReq("tok-buried")
	req.SubmittedAt = time.Now()
	env.ExecuteWorkflow(submitWorkflow, "Submit", req, int32(3))
	err = env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.Equal(t, activities.ErrTypeSubmitUnconfirmed, appErr.Type(), "%v", err)
	assert.Contains(t, appErr.Error(), "did not reach back to the submission")
	assert.Equal(t, int64(1), submits.Load(), "attempts 2 and 3 found nothing within the bound and did not submit again")
}
