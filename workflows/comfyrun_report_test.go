package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/durable-comfy/durable-comfy/activities"
)

// reportEnv runs a ComfyRun that reports to "batch-1" and captures the
// report it signals.
func reportEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *[]ItemReport) {
	t.Helper()
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Activities{})
	Register(env)
	recordComfyStatus(env)
	var reports []ItemReport
	env.OnSignalExternalWorkflow(mock.Anything, "batch-1", "", ItemDoneSignal, mock.Anything).
		Return(func(_, _, _, _ string, arg any) error {
			reports = append(reports, arg.(ItemReport))
			return nil
		}).Maybe()
	return env, &reports
}

func reportingInput() ComfyRunInput {
	in := input()
	in.Preflight = &activities.PreflightResult{DeploymentID: testDeployment, ComfyWorkflowID: "wf-1", MachineName: "gpu-pool-a", CanCancel: true}
	in.ReportTo = &ReportTo{WorkflowID: "batch-1", Key: "3.1"}
	return in
}

func TestComfyRunReportsSuccessToItsParent(t *testing.T) {
	env, reports := reportEnv(t)
	env.OnActivity(a.Submit, mock.Anything, mock.Anything).Return(&activities.SubmitResult{RunID: "run-1"}, nil).Once()
	env.OnActivity(a.AwaitRun, mock.Anything, mock.Anything).
		Return(&activities.AwaitResult{RunID: "run-1", Status: "success", RunSeconds: 12.5, GPU: "A10G"}, nil).Once()
	env.OnActivity(a.CollectOutputs, mock.Anything, mock.Anything).Return(&activities.CollectResult{ManifestPath: "/out/m.json",
		Outputs: []activities.StoredOutput{{Path: "/out/image.png", SHA256: "abc", Size: 10}}}, nil).Once()

	env.ExecuteWorkflow(ComfyRun, reportingInput())

	require.NoError(t, env.GetWorkflowError())
	require.Len(t, *reports, 1, "exactly one report, at the end")
	rep := (*reports)[0]
	require.Equal(t, "3.1", rep.Key)
	require.Equal(t, activities.ItemSucceeded, rep.Status)
	require.Equal(t, testDeployment, rep.DeploymentID)
	require.Equal(t, []string{"run-1"}, rep.RunIDs)
	require.InDelta(t, 12.5, rep.GPUSeconds, 1e-9)
	require.Equal(t, "A10G", rep.GPU)
	require.Equal(t, []activities.OutputRef{{Path: "/out/image.png", SHA256: "abc"}}, rep.Outputs, "references only, never bytes")
	require.Equal(t, "/out/m.json", rep.ManifestPath)
	require.Equal(t, "a cat", rep.Inputs["prompt"])
	require.Empty(t, rep.Error)
}

func TestComfyRunReportsAQueueDeadlineFailure(t *testing.T) {
	env, reports := reportEnv(t)
	env.OnActivity(a.Submit, mock.Anything, mock.Anything).Return(&activities.SubmitResult{RunID: "run-1"}, nil).Once()
	env.OnActivity(a.AwaitRun, mock.Anything, mock.Anything).
		Return(&activities.AwaitResult{RunID: "run-1", Status: "cancelled", DeadlineExceeded: activities.DeadlineQueue}, nil).Once()

	env.ExecuteWorkflow(ComfyRun, reportingInput())

	require.Error(t, env.GetWorkflowError())
	require.Len(t, *reports, 1)
	rep := (*reports)[0]
	require.Equal(t, activities.ItemFailed, rep.Status)
	require.Equal(t, ErrTypeRunTimedOut, rep.ErrorType)
	require.Equal(t, activities.DeadlineQueue, rep.DeadlineExceeded)
	require.Contains(t, rep.Error, "run-1")
}

func TestComfyRunReportsCancellation(t *testing.T) {
	env, reports := reportEnv(t)
	env.OnActivity(a.Submit, mock.Anything, mock.Anything).Return(&activities.SubmitResult{RunID: "run-1"}, nil).Once()
	env.OnActivity(a.AwaitRun, mock.Anything, mock.Anything).After(time.Hour).
		Return(&activities.AwaitResult{RunID: "run-1", Status: "success"}, nil).Maybe()
	env.OnActivity(a.CancelRun, mock.Anything, mock.Anything).
		Return(&activities.CancelResult{RunID: "run-1", Supported: true, FinalStatus: "cancelled"}, nil).Once()
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)

	env.ExecuteWorkflow(ComfyRun, reportingInput())

	require.Error(t, env.GetWorkflowError())
	require.Len(t, *reports, 1, "a cancelled run still reports, on a disconnected context")
	require.Equal(t, activities.ItemCancelled, (*reports)[0].Status)
	require.Equal(t, []string{"run-1"}, (*reports)[0].RunIDs)
}

func TestComfyRunReportsInvalidInput(t *testing.T) {
	env, reports := reportEnv(t)
	in := reportingInput()
	in.GPU = "RTX9090"

	env.ExecuteWorkflow(ComfyRun, in)

	require.Error(t, env.GetWorkflowError())
	require.Len(t, *reports, 1, "a run that fails before its first step reports too")
	require.Equal(t, ErrTypeInvalidWorkflowInput, (*reports)[0].ErrorType)
}

func TestComfyRunWithoutReportToSendsNoSignal(t *testing.T) {
	env, reports := reportEnv(t)
	env.OnActivity(a.Submit, mock.Anything, mock.Anything).Return(&activities.SubmitResult{RunID: "run-1"}, nil).Once()
	env.OnActivity(a.AwaitRun, mock.Anything, mock.Anything).Return(&activities.AwaitResult{RunID: "run-1", Status: "success"}, nil).Once()
	in := reportingInput()
	in.ReportTo, in.Outputs.Skip = nil, true

	env.ExecuteWorkflow(ComfyRun, in)

	require.NoError(t, env.GetWorkflowError())
	require.Empty(t, *reports)
}

func (s *comfyRunSuite) TestABatchItemWaitsWithoutProgressSignals() {
	in := input()
	in.ReportTo = &ReportTo{WorkflowID: "batch-1", Key: "0.1"}
	s.preflightOK(true)
	s.submitReturns("run-1")
	s.env.OnActivity(a.AwaitRun, mock.Anything, mock.MatchedBy(func(r activities.AwaitRequest) bool { return r.QuietProgress })).
		Return(&activities.AwaitResult{RunID: "run-1", Status: "success"}, nil).Once()
	s.collectOK("run-1")
	s.env.OnSignalExternalWorkflow(mock.Anything, "batch-1", "", ItemDoneSignal, mock.Anything).Return(nil).Once()

	s.env.ExecuteWorkflow(ComfyRun, in)

	s.Equal("success", s.result().Status)
}

func whenAskedInput() ComfyRunInput {
	in := reportingInput()
	in.ReportTo.WhenAsked = true
	return in
}

func TestComfyRunThatReportsWhenAskedStaysQuietUnasked(t *testing.T) {
	env, reports := reportEnv(t)
	env.OnActivity(a.Submit, mock.Anything, mock.Anything).Return(&activities.SubmitResult{RunID: "run-1"}, nil).Once()
	env.OnActivity(a.AwaitRun, mock.Anything, mock.Anything).Return(&activities.AwaitResult{RunID: "run-1", Status: "success"}, nil).Once()
	env.OnActivity(a.CollectOutputs, mock.Anything, mock.Anything).Return(&activities.CollectResult{}, nil).Once()

	env.ExecuteWorkflow(ComfyRun, whenAskedInput())

	require.NoError(t, env.GetWorkflowError())
	require.Empty(t, *reports, "the parent reads the outcome from the completion")
}

func TestComfyRunAskedToReportReports(t *testing.T) {
	env, reports := reportEnv(t)
	env.OnActivity(a.Submit, mock.Anything, mock.Anything).Return(&activities.SubmitResult{RunID: "run-1"}, nil).Once()
	env.OnActivity(a.AwaitRun, mock.Anything, mock.Anything).After(time.Hour).
		Return(&activities.AwaitResult{RunID: "run-1", Status: "success"}, nil).Once()
	env.OnActivity(a.CollectOutputs, mock.Anything, mock.Anything).Return(&activities.CollectResult{}, nil).Once()
	// The batch is about to continue as new while the run waits.
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(AskReportSignal, nil) }, time.Minute)

	env.ExecuteWorkflow(ComfyRun, whenAskedInput())

	require.NoError(t, env.GetWorkflowError())
	require.Len(t, *reports, 1, "the next run of the batch learns the outcome by signal")
	require.Equal(t, activities.ItemSucceeded, (*reports)[0].Status)
}

func TestComfyRunThatReportsWhenAskedFailsWithItsResult(t *testing.T) {
	env, reports := reportEnv(t)
	env.OnActivity(a.Submit, mock.Anything, mock.Anything).Return(&activities.SubmitResult{RunID: "run-1"}, nil).Once()
	env.OnActivity(a.AwaitRun, mock.Anything, mock.Anything).
		Return(nil, temporal.NewNonRetryableApplicationError("run run-1 is unknown", activities.ErrTypeRunNotFound, nil)).Once()

	env.ExecuteWorkflow(ComfyRun, whenAskedInput())

	require.Empty(t, *reports)
	err := env.GetWorkflowError()
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, activities.ErrTypeRunNotFound, appErr.Type(), "the cause's type, for the results line")
	var res ComfyRunResult
	require.NoError(t, appErr.Details(&res), "the parent builds the item's line from it")
	require.Equal(t, []string{"run-1"}, newItemReport("3.1", &res, err).RunIDs)
	require.Contains(t, res.Error, "run run-1 is unknown")
}
