package activities

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/comfy"
)

// CancelRequest asks to stop a run. When the run id is not known yet (the
// workflow was cancelled while submitting), the run is found by its
// correlation token first, so a run created at the last moment is not left
// running.
type CancelRequest struct {
	RunID            string `json:"run_id,omitempty"`
	ComfyWorkflowID  string `json:"comfy_workflow_id,omitempty"`
	CorrelationToken string `json:"correlation_token,omitempty"`
}

// CancelResult says plainly what happened to the remote run.
type CancelResult struct {
	RunID string `json:"run_id,omitempty"`
	// Supported is false when the machine type cannot cancel (classic,
	// runpod-serverless): the run keeps going and is billed.
	Supported   bool   `json:"supported"`
	FinalStatus string `json:"final_status,omitempty"`
	Message     string `json:"message"`
}

type cancelOutcome struct {
	CancelResult
	run *comfy.Run
}

// CancelRun cancels a run at ComfyDeploy and waits until it shows
// "cancelled" (or another terminal status that won the race).
func (a *Activities) CancelRun(ctx context.Context, req CancelRequest) (*CancelResult, error) {
	runID := req.RunID
	if runID == "" && req.CorrelationToken != "" {
		found, err := a.findRunByToken(ctx, req.ComfyWorkflowID, req.CorrelationToken, time.Time{})
		if err != nil {
			return nil, classify("look up run to cancel", err)
		}
		if found == "" {
			return &CancelResult{Supported: true, Message: "no run had been created; nothing to cancel"}, nil
		}
		runID = found
	}
	if runID == "" {
		return nil, temporal.NewNonRetryableApplicationError("run_id or correlation_token is required", ErrTypeInvalidRequest, nil)
	}
	out, err := a.cancelAndWait(ctx, runID)
	if err != nil {
		return nil, err
	}
	return &out.CancelResult, nil
}

func (a *Activities) cancelAndWait(ctx context.Context, runID string) (*cancelOutcome, error) {
	_, err := a.Comfy.Runs.Cancel(ctx, runID)
	switch {
	case comfy.IsCancelUnsupported(err):
		// The same 500 answers a cancel of an unknown run; tell them apart.
		run, getErr := a.Comfy.Runs.Get(ctx, runID, nil)
		switch {
		case comfy.IsNotFound(getErr):
			return nil, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("run %s is unknown to ComfyDeploy; nothing to cancel", runID), ErrTypeRunNotFound, nil)
		case getErr != nil:
			return nil, classify("get run "+runID, getErr)
		}
		if run.Status.IsTerminal() {
			return &cancelOutcome{
				CancelResult: CancelResult{RunID: runID, Supported: true, FinalStatus: string(run.Status),
					Message: fmt.Sprintf("run had already ended with %q", run.Status)},
				run: run,
			}, nil
		}
		res := CancelResult{RunID: runID, Supported: false, FinalStatus: string(run.Status),
			Message: "this machine type cannot cancel runs (ComfyDeploy cancels only comfy-deploy-serverless runs); the run keeps going and is billed until it ends"}
		return &cancelOutcome{CancelResult: res, run: run}, nil
	case err != nil:
		return nil, classify("cancel run "+runID, err)
	}

	wait := firstPositive(a.CancelWait, DefaultCancelWait)
	deadline := time.Now().Add(wait)
	interval := a.pollInterval(0)
	for {
		run, err := a.Comfy.Runs.Get(ctx, runID, nil)
		if err != nil && !comfy.IsRetryable(err) {
			return nil, classify("get run "+runID, err)
		}
		if err == nil && run.Status.IsTerminal() {
			msg := "run cancelled at ComfyDeploy"
			if run.Status != comfy.StatusCancelled {
				msg = fmt.Sprintf("run ended with %q before the cancel took effect", run.Status)
			}
			return &cancelOutcome{
				CancelResult: CancelResult{RunID: runID, Supported: true, FinalStatus: string(run.Status), Message: msg},
				run:          run,
			}, nil
		}
		activity.RecordHeartbeat(ctx, runID)
		if time.Now().After(deadline) {
			return nil, temporal.NewApplicationError(
				fmt.Sprintf("cancel of run %s accepted but it is not terminal after %s", runID, wait), ErrTypeComfyUnavailable)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(interval):
		}
	}
}
