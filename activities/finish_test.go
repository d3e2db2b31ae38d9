package activities_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
)

// waitingWorkflow plays the Temporal side of WaitFinisher: one workflow
// whose pending activities it describes, and the completions it receives.
type waitingWorkflow struct {
	workflowID, runID string
	pending           []*workflowpb.PendingActivityInfo
	completed         []completion
}

type completion struct {
	namespace, workflowID, runID, activityID string
	result                                   *activities.AwaitResult
}

func (w *waitingWorkflow) SignalWithStartWorkflow(context.Context, string, string, any, client.StartWorkflowOptions, any, ...any) (client.WorkflowRun, error) {
	panic("not used by WaitFinisher")
}

func (w *waitingWorkflow) DescribeWorkflowExecution(_ context.Context, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	if workflowID != w.workflowID || runID != w.runID {
		return nil, assert.AnError
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{PendingActivities: w.pending}, nil
}

func (w *waitingWorkflow) CompleteActivityByID(_ context.Context, namespace, workflowID, runID, activityID string, result any, err error) error {
	res, _ := result.(*activities.AwaitResult)
	w.completed = append(w.completed, completion{namespace, workflowID, runID, activityID, res})
	return err
}

func pendingWait(t *testing.T, activityType string, state enumspb.PendingActivityState, runID string) *workflowpb.PendingActivityInfo {
	t.Helper()
	details, err := converter.GetDefaultDataConverter().ToPayloads(activities.PollState{RunID: runID, Status: "running", Polls: 1})
	require.NoError(t, err)
	return &workflowpb.PendingActivityInfo{ActivityId: "7", ActivityType: &commonpb.ActivityType{Name: activityType}, State: state, HeartbeatDetails: details}
}

func TestWaitFinisherCompletesOnlyTheWaitOnAnEndedRun(t *testing.T) {
	h := newHarness(t)
	ended := h.runToSuccess(comfytest.DeploymentTxt2Img, txt2imgInputs)
	token := activities.CorrelationToken("batch-1/4", "run-a", 1)
	started := enumspb.PENDING_ACTIVITY_STATE_STARTED

	for name, tc := range map[string]struct {
		token   string
		pending []*workflowpb.PendingActivityInfo
	}{
		"token not ours":          {"not-a-token", []*workflowpb.PendingActivityInfo{pendingWait(t, "AwaitRun", started, ended)}},
		"no wait pending":         {token, []*workflowpb.PendingActivityInfo{pendingWait(t, "CollectOutputs", started, ended)}},
		"wait on another run":     {token, []*workflowpb.PendingActivityInfo{pendingWait(t, "AwaitRun", started, "other-run")}},
		"wait between its tries":  {token, []*workflowpb.PendingActivityInfo{pendingWait(t, "AwaitRun", enumspb.PENDING_ACTIVITY_STATE_SCHEDULED, ended)}},
		"workflow is another one": {activities.CorrelationToken("batch-1/5", "run-a", 1), []*workflowpb.PendingActivityInfo{pendingWait(t, "AwaitRun", started, ended)}},
	} {
		t.Run(name, func(t *testing.T) {
			wf := &waitingWorkflow{workflowID: "batch-1/4", runID: "run-a", pending: tc.pending}
			h.acts.Temporal = wf
			done, _ := activities.WaitFinisher{Activities: h.acts}.Finish(context.Background(), tc.token, ended)
			assert.False(t, done)
			assert.Empty(t, wf.completed)
		})
	}

	t.Run("the wait on the ended run", func(t *testing.T) {
		wf := &waitingWorkflow{workflowID: "batch-1/4", runID: "run-a", pending: []*workflowpb.PendingActivityInfo{
			pendingWait(t, "Submit", started, ended), pendingWait(t, "AwaitRun", started, ended)}}
		h.acts.Temporal = wf
		done, err := activities.WaitFinisher{Activities: h.acts}.Finish(context.Background(), token, ended)
		require.NoError(t, err)
		assert.True(t, done)
		require.Len(t, wf.completed, 1)
		c := wf.completed[0]
		assert.Equal(t, completion{"default", "batch-1/4", "run-a", "7", c.result}, c)
		require.NotNil(t, c.result)
		assert.Equal(t, ended, c.result.RunID)
		assert.Equal(t, string(comfy.StatusSuccess), c.result.Status)
		assert.Positive(t, c.result.RunSeconds, "the same result AwaitRun returns")
	})
}

func TestWaitFinisherLeavesRunningAndCancelledRunsToTheWait(t *testing.T) {
	h := newHarness(t, withSimOptions(func(o *comfytest.Options) {
		o.Timing = comfytest.Timing{ColdStart: 10 * time.Millisecond, Run: time.Hour}
	}))
	token := activities.CorrelationToken("wf", "run-a", 1)
	running := h.queue(comfytest.DeploymentTxt2Img, "", txt2imgInputs)
	cancelled := h.queue(comfytest.DeploymentTxt2Img, "", txt2imgInputs)
	h.waitStatus(cancelled, 5*time.Second, func(s comfy.RunStatus) bool { return s == comfy.StatusStarted || s == comfy.StatusRunning })
	_, err := h.client.Runs.Cancel(context.Background(), cancelled)
	require.NoError(t, err)
	h.waitStatus(cancelled, 5*time.Second, func(s comfy.RunStatus) bool { return s == comfy.StatusCancelled })

	for _, runID := range []string{running, cancelled} {
		wf := &waitingWorkflow{workflowID: "wf", runID: "run-a", pending: []*workflowpb.PendingActivityInfo{
			pendingWait(t, "AwaitRun", enumspb.PENDING_ACTIVITY_STATE_STARTED, runID)}}
		h.acts.Temporal = wf
		done, err := activities.WaitFinisher{Activities: h.acts}.Finish(context.Background(), token, runID)
		require.NoError(t, err)
		assert.False(t, done, runID)
		assert.Empty(t, wf.completed)
	}
}
