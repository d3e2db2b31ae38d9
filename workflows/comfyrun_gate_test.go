package workflows

import (
	"context"

	"go.temporal.io/sdk/temporal"
	"time"

	"github.com/stretchr/testify/mock"

	"github.com/durable-comfy/durable-comfy/activities"
)

func (s *comfyRunSuite) TestSharedLimitWaitsForTheGateBeforeSubmitting() {
	in := input()
	in.SharedLimit = &SharedLimit{Max: 2, Group: "batch-7"}
	s.preflightOK(true)
	s.env.OnActivity(a.AcquireGate, mock.Anything, mock.MatchedBy(func(r activities.AcquireGateRequest) bool {
		return r.DeploymentID == testDeployment && r.Request.Group == "batch-7" && r.Request.Limit == 2 && r.Request.Holder != ""
	})).Return(nil).Once()
	var submittedAt time.Time
	s.env.OnActivity(a.Submit, mock.Anything, mock.Anything).Return(func(_ context.Context, _ activities.SubmitRequest) (*activities.SubmitResult, error) {
		submittedAt = s.env.Now()
		return &activities.SubmitResult{RunID: "run-1"}, nil
	}).Once()
	s.awaitReturns("run-1", "success", "")
	s.collectOK("run-1")
	var released []string
	s.env.OnSignalExternalWorkflow(mock.Anything, activities.GateID(testDeployment), "", activities.GateReleaseSignal, mock.Anything).
		Return(func(_, workflowID, _, _ string, _ any) error {
			released = append(released, workflowID)
			return nil
		}).Once()
	var gated RunStatus
	s.env.RegisterDelayedCallback(func() { gated = s.status() }, 5*time.Minute)
	s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(activities.GateGrantedSignal, nil) }, 10*time.Minute)
	start := s.env.Now()

	s.env.ExecuteWorkflow(ComfyRun, in)

	s.result()
	s.Equal(PhaseGated, gated.Phase, "the run waits for its slot")
	s.False(submittedAt.Before(start.Add(10*time.Minute)), "nothing is submitted before the grant")
	s.Equal([]string{activities.GateID(testDeployment)}, released, "the slot goes back once the run ended")
}

func (s *comfyRunSuite) TestCancelWhileWaitingForASlotWithdrawsTheRequest() {
	in := input()
	in.SharedLimit = &SharedLimit{Max: 1}
	s.preflightOK(true)
	s.env.OnActivity(a.AcquireGate, mock.Anything, mock.Anything).Return(nil).Once()
	withdrawn := 0
	s.env.OnSignalExternalWorkflow(mock.Anything, activities.GateID(testDeployment), "", activities.GateReleaseSignal, mock.Anything).
		Return(func(_, _, _, _ string, _ any) error { withdrawn++; return nil })
	s.env.RegisterDelayedCallback(s.env.CancelWorkflow, time.Minute)

	s.env.ExecuteWorkflow(ComfyRun, in)

	var canceled *temporal.CanceledError
	s.Require().ErrorAs(s.env.GetWorkflowError(), &canceled)
	s.Equal(1, withdrawn)
	s.env.AssertNotCalled(s.T(), "Submit", mock.Anything, mock.Anything)
}
