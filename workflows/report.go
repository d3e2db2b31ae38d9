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

// AskReportSignal is how a parent asks a run with ReportTo.WhenAsked to
// report its outcome by signal after all. Once the ask is delivered the
// run will report: a workflow cannot complete while a signal it has not
// seen is pending (the server refuses the completion and the run sees the
// signal first).
const AskReportSignal = "comfy-report-asked"

// reporter sends a run's report to its parent (ReportTo), at once or, with
// WhenAsked, only if asked.
type reporter struct {
	to  *ReportTo
	ask workflow.ReceiveChannel
}

// newReporter returns nil when the run reports to no one.
func newReporter(ctx workflow.Context, to *ReportTo) *reporter {
	if to == nil {
		return nil
	}
	return &reporter{to: to, ask: workflow.GetSignalChannel(ctx, AskReportSignal)}
}

// quiet says whether the run leaves its outcome to its completion: it
// reports only when asked, and was not. The version check keeps runs that
// a worker without WhenAsked started (it ignores the field and always
// reports) replaying the same way on a newer worker.
func (rp *reporter) quiet(ctx workflow.Context) bool {
	return rp.to.WhenAsked && rp.ask.Len() == 0 &&
		workflow.GetVersion(ctx, "report-when-asked", workflow.DefaultVersion, 1) == 1
}

// result makes a failed run's error carry its result when the parent may
// read the outcome from the run's completion instead of a report.
func (rp *reporter) result(res *ComfyRunResult, err error) error {
	if rp == nil || !rp.to.WhenAsked || err == nil || temporal.IsCanceledError(err) {
		return err // a cancelled run's error carries its result already
	}
	if top, ok := err.(*temporal.ApplicationError); ok && top.HasDetails() && top.Type() != ErrTypeInvalidWorkflowInput {
		return err // RunFailed and friends carry the result already
	}
	kind := ErrTypeRunFailed
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		kind = appErr.Type()
	}
	if res.Error == "" {
		res.Error = err.Error()
	}
	return temporal.NewNonRetryableApplicationError(err.Error(), kind, err, *res)
}

// report signals the run's outcome to the parent, unless the parent reads
// it from the run's completion (see quiet). The parent is
// addressed without a run id, so the signal reaches whichever run of a
// continued-as-new parent is current. It runs on a disconnected context
// because a cancelled run must still report, and it waits for the signal
// to be delivered: the server drops a signal whose sender has closed.
func (rp *reporter) report(ctx workflow.Context, r *comfyRun, runErr error) {
	if rp == nil {
		return
	}
	if rp.quiet(ctx) {
		return
	}
	rep := newItemReport(rp.to.Key, &r.result, runErr)
	rep.WorkflowID = workflow.GetInfo(ctx).WorkflowExecution.ID
	rep.Inputs = r.in.Inputs
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	err := workflow.SignalExternalWorkflow(dctx, rp.to.WorkflowID, "", ItemDoneSignal, rep).Get(dctx, nil)
	if err != nil {
		// The parent is gone (terminated, or finished without waiting); the
		// run's own result still holds everything.
		workflow.GetLogger(ctx).Warn("Could not report the run's outcome", "ReportTo", rp.to.WorkflowID, "Error", err)
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
