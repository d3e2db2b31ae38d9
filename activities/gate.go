package activities

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// The deployment gate caps how many runs of one deployment are in flight
// across every workflow on a task queue that asks for it, and shares the
// slots fairly between batches. These names are a public surface.
const (
	GateWorkflow       = "ComfyDeploymentGate"
	GateAcquireSignal  = "comfy-gate-acquire"
	GateReleaseSignal  = "comfy-gate-release"
	GateGrantedSignal  = "comfy-gate-granted"
	gateWorkflowPrefix = "comfy-gate/"
)

// GateID is the workflow id of the gate of a deployment.
func GateID(deploymentID string) string { return gateWorkflowPrefix + deploymentID }

// GateRequest asks a gate for a slot, or (as a release) returns one.
type GateRequest struct {
	// Holder is the workflow id that waits for GateGrantedSignal.
	Holder string `json:"holder"`
	// Group is the fairness unit: slots rotate between groups (a batch id,
	// or the holder itself for a lone run).
	Group string `json:"group,omitempty"`
	// Limit is the cap the requester wants; the gate uses the latest one.
	Limit int `json:"limit,omitempty"`
}

// GateStart is the input that starts a gate workflow.
type GateStart struct {
	DeploymentID string `json:"deployment_id"`
}

// TemporalClient is the part of client.Client the activities use: the
// gate's signal-with-start and lease checks, and WaitFinisher.
type TemporalClient interface {
	SignalWithStartWorkflow(ctx context.Context, workflowID, signalName string, signalArg any,
		options client.StartWorkflowOptions, workflow any, workflowArgs ...any) (client.WorkflowRun, error)
	DescribeWorkflowExecution(ctx context.Context, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error)
	CompleteActivityByID(ctx context.Context, namespace, workflowID, runID, activityID string, result any, err error) error
}

// AcquireGateRequest names the deployment whose gate receives req.
type AcquireGateRequest struct {
	DeploymentID string      `json:"deployment_id"`
	TaskQueue    string      `json:"task_queue"`
	Request      GateRequest `json:"request"`
}

// AcquireGate queues req at the deployment's gate, starting the gate when
// it is not running (signal-with-start, which workflow code cannot do).
// The grant arrives later as GateGrantedSignal on the holder.
func (a *Activities) AcquireGate(ctx context.Context, req AcquireGateRequest) error {
	if a.Temporal == nil {
		return temporal.NewNonRetryableApplicationError(
			"shared_limit needs a Temporal client in the worker's activities", ErrTypeInvalidRequest, nil)
	}
	_, err := a.Temporal.SignalWithStartWorkflow(ctx, GateID(req.DeploymentID), GateAcquireSignal, req.Request,
		client.StartWorkflowOptions{
			TaskQueue:     req.TaskQueue,
			StaticSummary: fmt.Sprintf("Concurrency gate of deployment %s", req.DeploymentID),
		}, GateWorkflow, GateStart{DeploymentID: req.DeploymentID})
	if err != nil {
		return fmt.Errorf("signal gate of deployment %s: %w", req.DeploymentID, err)
	}
	return nil
}

// ClosedHolders returns the holders whose workflows are no longer running.
// A holder that was terminated never releases its slot; the gate uses this
// to take such slots back.
func (a *Activities) ClosedHolders(ctx context.Context, holders []string) ([]string, error) {
	if a.Temporal == nil {
		return nil, nil
	}
	closed := []string{}
	for _, id := range holders {
		desc, err := a.Temporal.DescribeWorkflowExecution(ctx, id, "")
		var notFound *serviceerror.NotFound
		switch {
		case errors.As(err, &notFound):
			closed = append(closed, id)
		case err != nil:
			return nil, fmt.Errorf("describe holder %s: %w", id, err)
		case desc.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING:
			closed = append(closed, id)
		}
	}
	return closed, nil
}
