package activities

import (
	"context"
	"fmt"
	"maps"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/comfy"
)

// SubmitRequest asks for one paid ComfyDeploy run.
type SubmitRequest struct {
	DeploymentID string         `json:"deployment_id"`
	Inputs       map[string]any `json:"inputs,omitempty"`
	GPU          string         `json:"gpu,omitempty"`
	// ComfyWorkflowID is the deployment's ComfyDeploy workflow, whose recent
	// runs are searched for CorrelationToken after an ambiguous submit.
	ComfyWorkflowID string `json:"comfy_workflow_id"`
	// CorrelationToken identifies this submission attempt. It is unique per
	// attempt and stable across activity retries, so a retry can find the run
	// an earlier try created.
	CorrelationToken string `json:"correlation_token"`
}

// SubmitResult names the run that now exists for the request.
type SubmitResult struct {
	RunID string `json:"run_id"`
	// Reconciled is true when the run was found by its correlation token
	// rather than created by this call.
	Reconciled bool `json:"reconciled,omitempty"`
}

// reconcileDepth is how many of the workflow's newest runs are searched for
// a correlation token; the reference suggests 20, a few more covers busy
// workflows shared by several batches.
const reconcileDepth = 50

// Submit creates the run at most once per correlation token. ComfyDeploy has
// no idempotency key, and it commits the run row before dispatching it, so a
// request that times out or fails with a 5xx may still have created a paid
// run. Every attempt after the first therefore looks the token up among the
// workflow's recent runs before sending anything.
func (a *Activities) Submit(ctx context.Context, req SubmitRequest) (*SubmitResult, error) {
	if req.CorrelationToken == "" || req.DeploymentID == "" || req.ComfyWorkflowID == "" {
		// Without the workflow id an ambiguous submit could not be looked
		// up, and a retry might pay for a second run.
		return nil, temporal.NewNonRetryableApplicationError(
			"deployment_id, comfy_workflow_id and correlation_token are required", ErrTypeInvalidRequest, nil)
	}
	logger := activity.GetLogger(ctx)

	if activity.GetInfo(ctx).Attempt > 1 {
		runID, err := a.findRunByToken(ctx, req.ComfyWorkflowID, req.CorrelationToken)
		if err != nil {
			return nil, classify("look up earlier submission", err)
		}
		if runID != "" {
			logger.Info("Reconciled an earlier submission", "RunId", runID, "CorrelationToken", req.CorrelationToken)
			return &SubmitResult{RunID: runID, Reconciled: true}, nil
		}
	}

	inputs := make(map[string]any, len(req.Inputs)+1)
	maps.Copy(inputs, req.Inputs)
	inputs[comfy.CorrelationInputKey] = req.CorrelationToken

	queued, err := a.Comfy.Runs.QueueDeployment(ctx, &comfy.DeploymentRunRequest{
		DeploymentID: req.DeploymentID,
		Inputs:       inputs,
		GPU:          comfy.GPU(req.GPU),
	})
	if err == nil {
		return &SubmitResult{RunID: queued.RunID}, nil
	}
	if !comfy.IsRetryable(err) {
		return nil, classify("submit run", err)
	}

	// The outcome is unknown. Look once now: the row is usually already
	// there. If it is not, fail retryably; the next attempt looks again after
	// the retry interval before it submits.
	runID, lookErr := a.findRunByToken(ctx, req.ComfyWorkflowID, req.CorrelationToken)
	if lookErr == nil && runID != "" {
		logger.Warn("Submit reported an error but the run exists; using it", "RunId", runID, "Error", err)
		return &SubmitResult{RunID: runID, Reconciled: true}, nil
	}
	return nil, temporal.NewApplicationError(
		fmt.Sprintf("submit run: outcome unknown (%v); the next attempt looks up correlation token %s before submitting again", err, req.CorrelationToken),
		ErrTypeSubmitUnconfirmed)
}

func (a *Activities) findRunByToken(ctx context.Context, workflowID, token string) (string, error) {
	run, found, err := a.Comfy.Workflows.FindRunByCorrelationToken(ctx, workflowID, token, &comfy.WorkflowRunsOptions{Limit: reconcileDepth})
	if err != nil || !found {
		return "", err
	}
	return run.ID, nil
}
