package main

import (
	"context"
	"fmt"
	"io"

	"go.temporal.io/api/enums/v1"

	"github.com/durable-comfy/durable-comfy/activities"
)

func cmdCancel(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "cancel", "[-wait] [-json] WORKFLOW_ID", `
Requests cancellation of a ComfyRun. The workflow then cancels its
ComfyDeploy run where the machine type allows it (comfy-deploy-serverless machines);
classic and runpod-serverless machines cannot cancel, and their run keeps
going and is billed. -wait follows the workflow until it has ended and
prints that cancel report.

Without -wait the exit code is 0 once the request is accepted. With -wait
it reflects how the workflow ended: 3 cancelled (the expected outcome),
0 if it succeeded before the cancel took effect, 1 if it failed.`)
	wait := fs.Bool("wait", false, "wait until the workflow has ended and print the cancel report")
	asJSON := fs.Bool("json", false, "print the final report as JSON on stdout (with -wait)")
	// Describe first (openRun does) so that a closed workflow gets its
	// outcome explained rather than the server's terse "workflow execution
	// already completed".
	id, c, desc, err := openRun(ctx, e, fs, args)
	if err != nil {
		return err
	}
	defer c.Close()
	runID := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		r := newReport(c, id, desc)
		if err := r.addOutcome(ctx, c); err != nil {
			return err
		}
		if !*asJSON {
			fmt.Fprintf(e.stdout, "Nothing to cancel: workflow %s has already ended (%s).\n\n", id, r.ExecutionStatus)
		}
		return writeReport(e, *asJSON, r, printCancelReport)
	}

	if err := c.CancelWorkflow(ctx, id, runID); err != nil {
		return c.temporalError("cancel workflow", id, err)
	}
	if !*wait {
		if *asJSON {
			return writeJSON(e.stdout, map[string]string{"workflow_id": id, "run_id": runID, "cancel": "requested", "ui_url": c.uiLink(id)})
		}
		fmt.Fprintf(e.stdout, "Cancellation requested for %s; the workflow now cancels its ComfyDeploy run.\n", id)
		field(e.stdout, "follow", "starter watch %s   (or: starter cancel -wait %s)", id, id)
		field(e.stdout, "web ui", "%s", c.uiLink(id))
		return nil
	}
	return finish(ctx, c, e, id, runID, *asJSON, printCancelReport)
}

// cancelSummary says in one line what happened to the remote run, the
// part of a cancel a user is billed for.
func cancelSummary(cr *activities.CancelResult) string {
	run := "the ComfyDeploy run"
	if cr.RunID != "" {
		run = "ComfyDeploy run " + cr.RunID
	}
	var s string
	switch {
	case cr.Supported && cr.FinalStatus == "cancelled":
		s = run + " was cancelled"
	case cr.Supported && cr.FinalStatus != "":
		s = fmt.Sprintf("%s ended %q before the cancel took effect", run, cr.FinalStatus)
	case cr.Supported:
		s = "cancel requested for " + run
	default:
		s = run + " could NOT be cancelled: its machine type does not support cancel; it keeps running and is billed"
	}
	if cr.Message != "" {
		s += " (" + cr.Message + ")"
	}
	return s
}

// printCancelReport leads with the remote run's fate, then the usual
// report.
func printCancelReport(w io.Writer, r *report) {
	switch {
	case r.ExecutionStatus != "Canceled":
	case r.Result == nil || r.Result.Cancel == nil:
		fmt.Fprintf(w, "Workflow %s cancelled; no ComfyDeploy run had been submitted, so nothing was running remotely.\n\n", r.WorkflowID)
	default:
		fmt.Fprintf(w, "Workflow %s cancelled; %s.\n\n", r.WorkflowID, cancelSummary(r.Result.Cancel))
	}
	printReport(w, r)
}
