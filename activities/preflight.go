package activities

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/preflight"
)

// PreflightRequest names a deployment and the inputs a run would use.
type PreflightRequest struct {
	DeploymentID string         `json:"deployment_id"`
	Inputs       map[string]any `json:"inputs,omitempty"`
	// SkipInputCheck leaves the inputs unchecked: a batch checks every item
	// itself against the returned InputTypes, so its one check per
	// deployment must not fail on inputs that only the items supply.
	SkipInputCheck bool `json:"skip_input_check,omitempty"`
}

// PreflightResult is what later steps need to know about the deployment.
type PreflightResult struct {
	DeploymentID      string `json:"deployment_id"`
	ComfyWorkflowID   string `json:"comfy_workflow_id"`
	WorkflowVersionID string `json:"workflow_version_id"`
	MachineID         string `json:"machine_id"`
	MachineName       string `json:"machine_name"`
	MachineType       string `json:"machine_type"`
	GPU               string `json:"gpu,omitempty"`
	// RunTimeoutSeconds is the deployment's own run_timeout: ComfyDeploy
	// ends longer runs with "timeout" whatever our deadlines say.
	RunTimeoutSeconds int  `json:"run_timeout_seconds,omitempty"`
	CanCancel         bool `json:"can_cancel"`
	// ConcurrencyLimit is how many runs the deployment executes at once
	// (0: unknown); a batch over a pool balances load relative to it.
	ConcurrencyLimit int `json:"concurrency_limit,omitempty"`
	// InputTypes and OutputTypes are the deployment's declared schema, kept
	// so a batch or pipeline can check each item's inputs and references
	// without another API call.
	InputTypes  []comfy.InputType  `json:"input_types,omitempty"`
	OutputTypes []comfy.OutputType `json:"output_types,omitempty"`
}

// CheckInputs validates inputs against a preflight result's input types. It
// is pure and deterministic, so workflows may call it directly; a failure
// is the same non-retryable InvalidInput error the Preflight activity raises.
func CheckInputs(pre *PreflightResult, inputs map[string]any) error {
	return classify("", preflight.CheckInputs(pre.InputTypes, inputs))
}

// Preflight checks, before any money is spent, that the deployment exists,
// its machine can take runs and is ready, the workflow version's custom nodes
// are installed, and the inputs match the deployment's declared input types.
func (a *Activities) Preflight(ctx context.Context, req PreflightRequest) (*PreflightResult, error) {
	if req.DeploymentID == "" {
		return nil, temporal.NewNonRetryableApplicationError("deployment_id is required", ErrTypeInvalidRequest, nil)
	}
	dep, err := a.Comfy.Deployments.Get(ctx, req.DeploymentID)
	if comfy.IsNotFound(err) {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("deployment %s does not exist or this API key cannot see it; copy the id from the ComfyDeploy dashboard (Deployments) and check the key's organisation", req.DeploymentID),
			preflight.KindDeploymentNotFound, nil)
	}
	if err != nil {
		return nil, classify("get deployment "+req.DeploymentID, err)
	}
	if !req.SkipInputCheck {
		if err := preflight.CheckInputs(dep.InputTypes, req.Inputs); err != nil {
			return nil, classify("", err)
		}
	}

	machine, err := a.Comfy.Machines.Get(ctx, dep.MachineID)
	if comfy.IsNotFound(err) {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("deployment %s points at machine %s, which does not exist (deleted?); redeploy the workflow to a live machine", dep.ID, dep.MachineID),
			preflight.KindMachineNotFound, nil)
	}
	if err != nil {
		return nil, classify("get machine "+dep.MachineID, err)
	}
	if err := preflight.CheckMachine(machine); err != nil {
		return nil, classify("", err)
	}

	if dep.WorkflowVersionID != "" {
		version, err := a.Comfy.Workflows.GetVersionByID(ctx, dep.WorkflowVersionID)
		switch {
		case comfy.IsNotFound(err):
			// The run itself would fail with "Workflow version not found".
			return nil, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("deployment %s points at workflow version %s, which does not exist; redeploy it", dep.ID, dep.WorkflowVersionID),
				preflight.KindDeploymentNotFound, nil)
		case err != nil:
			return nil, classify("get workflow version "+dep.WorkflowVersionID, err)
		}
		if err := preflight.CheckCustomNodes(version, machine); err != nil {
			return nil, classify("", err)
		}
	}

	gpu := dep.GPU
	if gpu == "" {
		gpu = machine.GPU
	}
	runTimeout := dep.RunTimeout
	if runTimeout == 0 {
		runTimeout = machine.RunTimeout
	}
	concurrency := dep.ConcurrencyLimit
	if concurrency == 0 {
		concurrency = machine.ConcurrencyLimit
	}
	return &PreflightResult{
		DeploymentID:      dep.ID,
		ComfyWorkflowID:   dep.WorkflowID,
		WorkflowVersionID: dep.WorkflowVersionID,
		MachineID:         machine.ID,
		MachineName:       machine.Name,
		MachineType:       string(machine.Type),
		GPU:               gpu,
		RunTimeoutSeconds: runTimeout,
		CanCancel:         machine.Type.CanCancel(),
		ConcurrencyLimit:  concurrency,
		InputTypes:        dep.InputTypes,
		OutputTypes:       dep.OutputTypes,
	}, nil
}
