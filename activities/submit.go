package activities

import (
	"context"
	"fmt"
	"maps"
	"time"

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
	// SubmittedAt is when the submission attempt began; the token lookup
	// searches the workflow's runs back to shortly before it.
	SubmittedAt time.Time `json:"submitted_at,omitzero"`
}

// SubmitResult names the run that now exists for the request.
type SubmitResult struct {
	RunID string `json:"run_id"`
	// Reconciled is true when the run was found by its correlation token
	// rather than created by this call.
	Reconciled bool `json:"reconciled,omitempty"`
}

// The token lookup pages through the workflow's runs, newest first, back
// to lookbackSlack before the submission began (clock skew between worker
// and ComfyDeploy, and a slow dispatch), and at most lookupMaxPages pages.
// A fixed depth is not enough: a busy batch creates hundreds of runs of the
// same workflow per minute.
const (
	lookupPageSize = 100
	lookupMaxPages = 50
	lookbackSlack  = 10 * time.Minute
)

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
		runID, err := a.findRunByToken(ctx, req.ComfyWorkflowID, req.CorrelationToken, req.SubmittedAt)
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

	run := &comfy.DeploymentRunRequest{
		DeploymentID: req.DeploymentID,
		Inputs:       inputs,
		GPU:          comfy.GPU(req.GPU),
	}
	if a.Wakeups != nil {
		// Without a webhook the run is still polled to its end.
		hook, err := a.Wakeups.URL(req.CorrelationToken)
		if err != nil {
			logger.Warn("Submitting without a webhook", "Error", err)
		}
		run.Webhook = hook
	}
	queued, err := a.Comfy.Runs.QueueDeployment(ctx, run)
	if err == nil {
		return &SubmitResult{RunID: queued.RunID}, nil
	}
	if !comfy.IsRetryable(err) {
		return nil, classify("submit run", err)
	}

	// The outcome is unknown. Look once now: the row is usually already
	// there. If it is not, fail retryably; the next attempt looks again after
	// the retry interval before it submits.
	runID, lookErr := a.findRunByToken(ctx, req.ComfyWorkflowID, req.CorrelationToken, req.SubmittedAt)
	if lookErr == nil && runID != "" {
		logger.Warn("Submit reported an error but the run exists; using it", "RunId", runID, "Error", err)
		return &SubmitResult{RunID: runID, Reconciled: true}, nil
	}
	return nil, temporal.NewApplicationError(
		fmt.Sprintf("submit run: outcome unknown (%v); the next attempt looks up correlation token %s before submitting again", err, req.CorrelationToken),
		ErrTypeSubmitUnconfirmed)
}

// findRunByToken returns the id of the run that carries token, or "", with
// comfy's one lookup (Workflows.FindRunByCorrelationToken) bounded by the
// submission time (a zero since leaves lookupMaxPages pages). Each lookup
// logs how many pages it read, so its cost shows under load.
func (a *Activities) findRunByToken(ctx context.Context, workflowID, token string, since time.Time) (string, error) {
	opts := &comfy.FindRunOptions{PageSize: lookupPageSize, MaxPages: lookupMaxPages}
	if !since.IsZero() {
		opts.Since = since.Add(-lookbackSlack)
	}
	lookup, err := a.Comfy.Workflows.FindRunByCorrelationToken(ctx, workflowID, token, opts)
	activity.GetLogger(ctx).Info("Looked up correlation token", "CorrelationToken", token,
		"Found", lookup.Found(), "LookupPages", lookup.Pages, "LookupRuns", lookup.Runs, "Bounded", !since.IsZero(), "Error", err)
	if err != nil || !lookup.Found() {
		return "", err
	}
	return lookup.Run.ID, nil
}
