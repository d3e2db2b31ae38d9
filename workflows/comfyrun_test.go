package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"github.com/stretchr/testify/suite"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/preflight"
)

const testDeployment = "de000000-0000-4000-8000-000000000001"

type comfyRunSuite struct {
	suite.Suite
	testsuite.WorkflowTestSuite
	env   *testsuite.TestWorkflowEnvironment
	shown *[]string
}

func TestComfyRun(t *testing.T) { suite.Run(t, new(comfyRunSuite)) }

func (s *comfyRunSuite) SetupTest() {
	s.env = s.NewTestWorkflowEnvironment()
	s.env.RegisterActivity(&activities.Activities{})
	Register(s.env)
	s.shown = recordComfyStatus(s.env)
}

// recordComfyStatus collects every ComfyStatus value the workflow upserts.
func recordComfyStatus(env *testsuite.TestWorkflowEnvironment) *[]string {
	var shown []string
	env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		if v, ok := args.Get(0).(temporal.SearchAttributes).GetKeyword(StatusKey); ok {
			shown = append(shown, v)
		}
	}).Return(nil).Maybe()
	return &shown
}

func last(values *[]string) string {
	if len(*values) == 0 {
		return ""
	}
	return (*values)[len(*values)-1]
}

func (s *comfyRunSuite) TearDownTest() { s.env.AssertExpectations(s.T()) }

func input() ComfyRunInput {
	return ComfyRunInput{DeploymentID: testDeployment, Inputs: map[string]any{"prompt": "a cat"}}
}

func (s *comfyRunSuite) preflightOK(canCancel bool) {
	s.env.OnActivity(a.Preflight, mock.Anything, activities.PreflightRequest{DeploymentID: testDeployment, Inputs: input().Inputs}).
		Return(&activities.PreflightResult{DeploymentID: testDeployment, ComfyWorkflowID: "wf-1", MachineID: "m-1", MachineName: "gpu-pool-a", CanCancel: canCancel}, nil).Once()
}

func (s *comfyRunSuite) submitReturns(runID string) *testsuite.MockCallWrapper {
	return s.env.OnActivity(a.Submit, mock.Anything, mock.Anything).Return(&activities.SubmitResult{RunID: runID}, nil).Once()
}

func (s *comfyRunSuite) awaitReturns(runID, status, deadline string) *testsuite.MockCallWrapper {
	return s.env.OnActivity(a.AwaitRun, mock.Anything, mock.MatchedBy(func(r activities.AwaitRequest) bool { return r.RunID == runID })).
		Return(&activities.AwaitResult{RunID: runID, Status: status, DeadlineExceeded: deadline, QueueSeconds: 1, RunSeconds: 3}, nil).Once()
}

// runsForAnHour makes AwaitRun take an hour of test time, so a cancel
// scheduled earlier arrives while the run is being waited for.
func (s *comfyRunSuite) runsForAnHour(runID string) {
	s.env.OnActivity(a.AwaitRun, mock.Anything, mock.Anything).After(time.Hour).
		Return(&activities.AwaitResult{RunID: runID, Status: "success"}, nil).Maybe()
}

func (s *comfyRunSuite) collectOK(runID string) {
	s.env.OnActivity(a.CollectOutputs, mock.Anything, mock.MatchedBy(func(r activities.CollectRequest) bool { return r.RunID == runID })).
		Return(&activities.CollectResult{Folder: "/out/wf", ManifestPath: "/out/wf/manifest.json",
			Outputs: []activities.StoredOutput{{OutputID: "image", Kind: "images", Path: "/out/wf/image.png", SHA256: "abc", Size: 10}}}, nil).Once()
}

func (s *comfyRunSuite) result() *ComfyRunResult {
	s.Require().True(s.env.IsWorkflowCompleted())
	s.Require().NoError(s.env.GetWorkflowError())
	var res ComfyRunResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	return &res
}

func (s *comfyRunSuite) status() RunStatus {
	v, err := s.env.QueryWorkflow(StatusQuery)
	s.Require().NoError(err)
	var st RunStatus
	s.Require().NoError(v.Get(&st))
	return st
}

func (s *comfyRunSuite) appErrorType() string {
	var appErr *temporal.ApplicationError
	s.Require().True(errors.As(s.env.GetWorkflowError(), &appErr), "want an application error, got %v", s.env.GetWorkflowError())
	return appErr.Type()
}

func (s *comfyRunSuite) TestSuccessCollectsOutputs() {
	s.preflightOK(true)
	s.submitReturns("run-1")
	s.awaitReturns("run-1", "success", "")
	s.collectOK("run-1")

	s.env.ExecuteWorkflow(ComfyRun, input())

	res := s.result()
	s.Equal("success", res.Status)
	s.Equal("run-1", res.RunID)
	s.Equal("gpu-pool-a", res.MachineName)
	s.Require().Len(res.Attempts, 1)
	s.Equal("run-1", res.Attempts[0].RunID)
	s.Equal("/out/wf/manifest.json", res.ManifestPath)
	s.Require().Len(res.Outputs, 1)
	st := s.status()
	s.Equal(PhaseSucceeded, st.Phase)
	s.Equal(1.0, st.Progress)
	s.Equal([]string{"pending", "not-started", "success"}, *s.shown, "ComfyStatus changes only with the phase")
}

func (s *comfyRunSuite) TestFailedRunIsResubmittedWithANewToken() {
	in := input()
	in.Retry = RetryPolicy{MaxAttempts: 3}
	s.preflightOK(true)
	var tokens []string
	s.env.OnActivity(a.Submit, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.SubmitRequest) (*activities.SubmitResult, error) {
		tokens = append(tokens, r.CorrelationToken)
		return &activities.SubmitResult{RunID: []string{"run-1", "run-2"}[len(tokens)-1]}, nil
	}).Twice()
	s.awaitReturns("run-1", "failed", "")
	s.awaitReturns("run-2", "success", "")
	s.collectOK("run-2")

	s.env.ExecuteWorkflow(ComfyRun, in)

	res := s.result()
	s.Equal("run-2", res.RunID)
	s.Require().Len(res.Attempts, 2)
	s.Equal("failed", res.Attempts[0].Status)
	s.Equal("success", res.Attempts[1].Status)
	s.Require().Len(tokens, 2)
	s.NotEqual(tokens[0], tokens[1], "each paid attempt needs its own correlation token")
}

func (s *comfyRunSuite) TestTimeoutWithoutRetriesFails() {
	s.preflightOK(true)
	s.submitReturns("run-1")
	s.awaitReturns("run-1", "timeout", "")

	s.env.ExecuteWorkflow(ComfyRun, input())

	s.Equal(ErrTypeRunTimedOut, s.appErrorType())
	s.env.AssertNotCalled(s.T(), "CollectOutputs", mock.Anything, mock.Anything)
	s.Equal(PhaseFailed, s.status().Phase)
}

func (s *comfyRunSuite) TestQueueDeadlineIsRetriedOnlyWhenThePolicySaysTimeout() {
	in := input()
	in.Retry = RetryPolicy{MaxAttempts: 2, RetryOn: []string{RetryOnTimeout}}
	in.QueueTimeout = Duration(5 * time.Minute)
	s.preflightOK(true)
	s.submitReturns("run-1")
	s.submitReturns("run-2")
	s.env.OnActivity(a.AwaitRun, mock.Anything, mock.MatchedBy(func(r activities.AwaitRequest) bool {
		return r.RunID == "run-1" && r.QueueTimeout == 5*time.Minute && r.CanCancel
	})).Return(&activities.AwaitResult{RunID: "run-1", Status: "cancelled", DeadlineExceeded: activities.DeadlineQueue}, nil).Once()
	s.awaitReturns("run-2", "success", "")
	s.collectOK("run-2")

	s.env.ExecuteWorkflow(ComfyRun, in)

	res := s.result()
	s.Equal(activities.DeadlineQueue, res.Attempts[0].DeadlineExceeded)
	s.Equal("success", res.Attempts[1].Status)
}

func (s *comfyRunSuite) TestFailedRunIsNotRetriedWhenPolicyOnlyCoversTimeouts() {
	in := input()
	in.Retry = RetryPolicy{MaxAttempts: 3, RetryOn: []string{RetryOnTimeout}}
	s.preflightOK(true)
	s.submitReturns("run-1")
	s.awaitReturns("run-1", "failed", "")

	s.env.ExecuteWorkflow(ComfyRun, in)

	s.Equal(ErrTypeRunFailed, s.appErrorType())
}

func (s *comfyRunSuite) TestCancelCancelsTheRemoteRunAndWaits() {
	s.preflightOK(true)
	s.submitReturns("run-1")
	s.runsForAnHour("run-1")
	s.env.OnActivity(a.CancelRun, mock.Anything, activities.CancelRequest{RunID: "run-1"}).
		Return(&activities.CancelResult{RunID: "run-1", Supported: true, FinalStatus: "cancelled", Message: "run cancelled at ComfyDeploy"}, nil).Once()
	s.env.RegisterDelayedCallback(s.env.CancelWorkflow, time.Minute)

	s.env.ExecuteWorkflow(ComfyRun, input())

	s.Require().True(s.env.IsWorkflowCompleted())
	var canceled *temporal.CanceledError
	s.Require().ErrorAs(s.env.GetWorkflowError(), &canceled)
	var res ComfyRunResult
	s.Require().NoError(canceled.Details(&res))
	s.Require().NotNil(res.Cancel)
	s.True(res.Cancel.Supported)
	s.Equal("cancelled", res.Status)
	s.Equal(PhaseCancelled, s.status().Phase)
	s.Equal("cancelled", last(s.shown))
}

func (s *comfyRunSuite) TestCancelDuringSubmitFindsTheRunByToken() {
	s.preflightOK(true)
	var token string
	s.env.OnActivity(a.Submit, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.SubmitRequest) (*activities.SubmitResult, error) {
		token = r.CorrelationToken
		return nil, temporal.NewApplicationError("outcome unknown", activities.ErrTypeSubmitUnconfirmed)
	})
	s.env.OnActivity(a.CancelRun, mock.Anything, mock.MatchedBy(func(r activities.CancelRequest) bool {
		return r.RunID == "" && r.CorrelationToken == token && r.ComfyWorkflowID == "wf-1"
	})).Return(&activities.CancelResult{Supported: true, Message: "no run had been created; nothing to cancel"}, nil).Once()
	s.env.RegisterDelayedCallback(s.env.CancelWorkflow, 8*time.Second)

	s.env.ExecuteWorkflow(ComfyRun, input())

	var canceled *temporal.CanceledError
	s.Require().ErrorAs(s.env.GetWorkflowError(), &canceled)
}

func (s *comfyRunSuite) TestCancelOnAMachineThatCannotCancelSaysSo() {
	s.preflightOK(false)
	s.submitReturns("run-1")
	s.runsForAnHour("run-1")
	s.env.OnActivity(a.CancelRun, mock.Anything, mock.Anything).
		Return(&activities.CancelResult{RunID: "run-1", Supported: false, FinalStatus: "running", Message: "this machine type cannot cancel runs"}, nil).Once()
	s.env.RegisterDelayedCallback(s.env.CancelWorkflow, time.Minute)

	s.env.ExecuteWorkflow(ComfyRun, input())

	var canceled *temporal.CanceledError
	s.Require().ErrorAs(s.env.GetWorkflowError(), &canceled)
	var res ComfyRunResult
	s.Require().NoError(canceled.Details(&res))
	s.False(res.Cancel.Supported)
	s.Contains(res.Cancel.Message, "cannot cancel")
}

func (s *comfyRunSuite) TestProgressSignalsUpdateTheStatusQuery() {
	s.preflightOK(true)
	s.submitReturns("run-1")
	s.env.OnActivity(a.AwaitRun, mock.Anything, mock.Anything).After(2*time.Minute).
		Return(&activities.AwaitResult{RunID: "run-1", Status: "success"}, nil).Once()
	s.collectOK("run-1")
	var mid RunStatus
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(activities.ProgressSignal, activities.ProgressUpdate{RunID: "run-1", Status: "running", Progress: 0.4, LiveStatus: "Executing KSampler"})
	}, time.Minute)
	s.env.RegisterDelayedCallback(func() { mid = s.status() }, 90*time.Second)

	s.env.ExecuteWorkflow(ComfyRun, input())

	s.result()
	s.Equal(PhaseWaiting, mid.Phase)
	s.Equal("running", mid.Status)
	s.InDelta(0.4, mid.Progress, 1e-9)
	s.Equal("Executing KSampler", mid.LiveStatus)
}

func (s *comfyRunSuite) TestReconciledSubmitIsRecorded() {
	s.preflightOK(true)
	s.env.OnActivity(a.Submit, mock.Anything, mock.Anything).Return(&activities.SubmitResult{RunID: "run-1", Reconciled: true}, nil).Once()
	s.awaitReturns("run-1", "success", "")
	s.collectOK("run-1")

	s.env.ExecuteWorkflow(ComfyRun, input())

	s.True(s.result().Attempts[0].Reconciled)
}

func (s *comfyRunSuite) TestSkipOutputsDoesNotCollect() {
	in := input()
	in.Outputs.Skip = true
	s.preflightOK(true)
	s.submitReturns("run-1")
	s.awaitReturns("run-1", "success", "")

	s.env.ExecuteWorkflow(ComfyRun, in)

	s.Empty(s.result().Outputs)
}

func TestPreflightRejectionsFailBeforeSubmit(t *testing.T) {
	for _, kind := range []string{
		preflight.KindDeploymentNotFound, preflight.KindMachineNotFound, preflight.KindMachineNotReady,
		preflight.KindMachineTypeUnsupported, preflight.KindMissingCustomNodes, preflight.KindInvalidInput,
		activities.ErrTypeUnauthorized, activities.ErrTypeForbidden,
	} {
		t.Run(kind, func(t *testing.T) {
			var ts testsuite.WorkflowTestSuite
			env := ts.NewTestWorkflowEnvironment()
			env.RegisterActivity(&activities.Activities{})
			Register(env)
			shown := recordComfyStatus(env)
			env.OnActivity(a.Preflight, mock.Anything, mock.Anything).
				Return(nil, temporal.NewNonRetryableApplicationError("rejected: "+kind, kind, nil)).Once()

			env.ExecuteWorkflow(ComfyRun, input())

			var appErr *temporal.ApplicationError
			require.ErrorAs(t, env.GetWorkflowError(), &appErr)
			require.Equal(t, kind, appErr.Type())
			env.AssertNotCalled(t, "Submit", mock.Anything, mock.Anything)
			require.Equal(t, "rejected", last(shown))
		})
	}
}

func TestInvalidInputFailsWithoutAnyActivity(t *testing.T) {
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Activities{})
	Register(env)
	shown := recordComfyStatus(env)

	env.ExecuteWorkflow(ComfyRun, ComfyRunInput{DeploymentID: "txt2img", GPU: "RTX9090", Retry: RetryPolicy{MaxAttempts: 99}})

	var appErr *temporal.ApplicationError
	require.ErrorAs(t, env.GetWorkflowError(), &appErr)
	require.Equal(t, ErrTypeInvalidWorkflowInput, appErr.Type())
	require.Contains(t, appErr.Error(), `deployment_id "txt2img" is not a UUID`)
	require.Contains(t, appErr.Error(), `gpu "RTX9090"`)
	require.Contains(t, appErr.Error(), "retry.max_attempts")
	require.Equal(t, []string{"rejected"}, *shown, "an invalid run is findable by ComfyStatus")
}

func (s *comfyRunSuite) TestPreflightFromAParentIsNotRepeated() {
	in := input()
	in.Preflight = &activities.PreflightResult{DeploymentID: testDeployment, ComfyWorkflowID: "wf-1", MachineName: "gpu-pool-a", CanCancel: true}
	s.submitReturns("run-1")
	s.awaitReturns("run-1", "success", "")
	s.collectOK("run-1")

	s.env.ExecuteWorkflow(ComfyRun, in)

	s.Equal("gpu-pool-a", s.result().MachineName)
	s.env.AssertNotCalled(s.T(), "Preflight", mock.Anything, mock.Anything)
}

func (s *comfyRunSuite) TestUnconfirmedSubmitIsCancelledByTokenBeforeFailing() {
	s.preflightOK(true)
	var token string
	s.env.OnActivity(a.Submit, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.SubmitRequest) (*activities.SubmitResult, error) {
		token = r.CorrelationToken
		return nil, temporal.NewApplicationError("outcome unknown", activities.ErrTypeSubmitUnconfirmed)
	})
	s.env.OnActivity(a.CancelRun, mock.Anything, mock.MatchedBy(func(r activities.CancelRequest) bool {
		return r.RunID == "" && r.CorrelationToken == token
	})).Return(&activities.CancelResult{RunID: "run-late", Supported: true, FinalStatus: "cancelled", Message: "run cancelled at ComfyDeploy"}, nil).Once()

	s.env.ExecuteWorkflow(ComfyRun, input())

	s.Require().Error(s.env.GetWorkflowError())
	s.Equal(PhaseFailed, s.status().Phase)
	s.Contains(s.status().Attempts[0].Error, "submission outcome unknown: run cancelled at ComfyDeploy")
}

// parentOf runs a ComfyRun as a child started with StartSearchAttributes,
// as batches and pipelines do.
func parentOf(ctx workflow.Context, in ComfyRunInput) (*ComfyRunResult, error) {
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: "item-1", TypedSearchAttributes: StartSearchAttributes(in.DeploymentID),
	})
	var res ComfyRunResult
	err := workflow.ExecuteChildWorkflow(cctx, ComfyRunWorkflow, in).Get(cctx, &res)
	return &res, err
}

func (s *comfyRunSuite) TestChildStartedWithItsAttributesStillUpsertsThem() {
	// Skipping the first upsert when the parent set the attributes would not
	// replay where an older worker ran the first task (see
	// StartSearchAttributes); it needs a workflow.GetVersion, which upserts
	// too.
	s.env.RegisterWorkflow(parentOf)
	s.preflightOK(true)
	s.submitReturns("run-1")
	s.awaitReturns("run-1", "success", "")
	s.collectOK("run-1")
	s.env.ExecuteWorkflow(parentOf, input())
	s.Require().NoError(s.env.GetWorkflowError())
	s.Equal([]string{"pending", "not-started", "success"}, *s.shown)
}
