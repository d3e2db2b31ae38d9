package workflows

import (
	"errors"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/activities"
)

// ItemDoneSignal is the signal a ComfyRun with ReportTo sends its parent
// when it ends, whatever the outcome. Its payload is an ItemReport.
const ItemDoneSignal = "comfy-item-done"

// ItemReport is how one run ended, in references only: output paths and
// checksums, never output bytes.
type ItemReport struct {
	Key        string `json:"key"`
	WorkflowID string `json:"workflow_id"`
	// Status is "succeeded", "failed" or "cancelled".
	Status       string                 `json:"status"`
	DeploymentID string                 `json:"deployment_id"`
	MachineName  string                 `json:"machine_name,omitempty"`
	Inputs       map[string]any         `json:"inputs,omitempty"`
	RunIDs       []string               `json:"run_ids,omitempty"`
	GPU          string                 `json:"gpu,omitempty"`
	GPUSeconds   float64                `json:"gpu_seconds,omitempty"`
	Outputs      []activities.OutputRef `json:"outputs,omitempty"`
	ManifestPath string                 `json:"manifest_path,omitempty"`
	// DeadlineExceeded is the last attempt's: "queue" lets a batch move the
	// item to another deployment of its pool.
	DeadlineExceeded string `json:"deadline_exceeded,omitempty"`
	Error            string `json:"error,omitempty"`
	ErrorType        string `json:"error_type,omitempty"`
}

// report signals the run's outcome to ReportTo. The parent is addressed
// without a run id, so the signal reaches whichever run of a continued-as-new
// parent is current. It runs on a disconnected context because a cancelled
// run must still report.
func (r *comfyRun) report(ctx workflow.Context, runErr error) {
	rep := newItemReport(r.in.ReportTo.Key, &r.result, runErr)
	rep.WorkflowID = workflow.GetInfo(ctx).WorkflowExecution.ID
	rep.Inputs = r.in.Inputs
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	err := workflow.SignalExternalWorkflow(dctx, r.in.ReportTo.WorkflowID, "", ItemDoneSignal, rep).Get(dctx, nil)
	if err != nil {
		// The parent is gone (terminated, or finished without waiting); the
		// run's own result still holds everything.
		workflow.GetLogger(ctx).Warn("Could not report the run's outcome", "ReportTo", r.in.ReportTo.WorkflowID, "Error", err)
	}
}

// newItemReport summarises a ComfyRun's result and error. The batch uses it
// too, for a child that ended without reporting.
func newItemReport(key string, res *ComfyRunResult, err error) ItemReport {
	rep := ItemReport{Key: key, Status: activities.ItemSucceeded}
	if res != nil {
		rep.WorkflowID, rep.DeploymentID, rep.MachineName = res.WorkflowID, res.DeploymentID, res.MachineName
		rep.ManifestPath, rep.Error = res.ManifestPath, res.Error
		for _, att := range res.Attempts {
			if att.RunID != "" {
				rep.RunIDs = append(rep.RunIDs, att.RunID)
			}
			rep.GPUSeconds += att.RunSeconds
			if att.GPU != "" {
				rep.GPU = att.GPU
			}
			rep.DeadlineExceeded = att.DeadlineExceeded
		}
		for _, o := range res.Outputs {
			rep.Outputs = append(rep.Outputs, activities.OutputRef{Path: o.Path, SHA256: o.SHA256})
		}
	}
	if err == nil {
		return rep
	}
	rep.Status = activities.ItemFailed
	var appErr *temporal.ApplicationError
	switch {
	case temporal.IsCanceledError(err):
		rep.Status, rep.ErrorType = activities.ItemCancelled, "Cancelled"
	case errors.As(err, &appErr):
		rep.ErrorType = appErr.Type()
	}
	if rep.Error == "" {
		rep.Error = err.Error()
	}
	return rep
}
