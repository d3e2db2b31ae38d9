package workflows

import (
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/preflight"
)

// orphanCheckEvery is how often children started before the last
// continue-as-new are checked for having closed without reporting.
const orphanCheckEvery = 5 * time.Minute

// errTypeNoDeploymentReady is the error type of an item that no deployment
// of the pool could take (none ready, or none left to move it to after its
// run waited past the queue deadline). Its value, "RunTimedOut", is what
// results lines have always carried for it and callers match on; only the
// name here says what it means.
const errTypeNoDeploymentReady = ErrTypeRunTimedOut

// start validates an item's inputs against the cached check of the chosen
// deployment and starts its ComfyRun; a bad item fails alone, before any
// API call.
func (b *batch) start(f Flight, inputs map[string]any, tries int, prevErr string) {
	m := b.pool.choose(f.Tried)
	if m == nil {
		msg := "no deployment of the pool is ready"
		if len(f.Tried) > 0 {
			msg = "no other deployment of the pool is ready: " + prevErr
		}
		b.record(f, inputs, activities.BatchItemResult{Status: activities.ItemFailed, Error: msg, ErrorType: errTypeNoDeploymentReady})
		return
	}
	f.Deployment = m.DeploymentID
	child := b.in.itemInput(b.id, m.DeploymentID, inputs)
	if problems := child.Problems(); len(problems) > 0 {
		b.record(f, inputs, activities.BatchItemResult{Status: activities.ItemFailed, Error: strings.Join(problems, "; "), ErrorType: preflight.KindInvalidInput})
		return
	}
	if err := activities.CheckInputs(m.Preflight, inputs); err != nil {
		b.record(f, inputs, activities.BatchItemResult{Status: activities.ItemFailed, Error: err.Error(), ErrorType: preflight.KindInvalidInput})
		return
	}
	child.Preflight = m.Preflight
	child.ReportTo = &ReportTo{WorkflowID: b.id, Key: itemKey(f.Index, f.Dispatch), WhenAsked: b.whenAsked}

	cctx := workflow.WithChildOptions(b.ctx, workflow.ChildWorkflowOptions{
		WorkflowID: b.childID(f.Index),
		// Children must outlive continue-as-new; cancel cancels them itself.
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
		// A succeeded item's id cannot be reused: a re-run skips it.
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		StaticSummary:         fmt.Sprintf("Item %d of batch %s on %s", f.Index, b.id, m.DeploymentID),
		TypedSearchAttributes: StartSearchAttributes(m.DeploymentID),
	})
	m.Served++
	b.window.started(f, inputs)
	future := workflow.ExecuteChildWorkflow(cctx, ComfyRunWorkflow, child)
	workflow.Go(b.ctx, func(ctx workflow.Context) { b.watch(ctx, f, inputs, tries, future) })
}

// watch follows a child this run started: a refused start, and an end
// without a report (the child could not signal), are recorded from here.
func (b *batch) watch(ctx workflow.Context, f Flight, inputs map[string]any, tries int, future workflow.ChildWorkflowFuture) {
	err := future.GetChildWorkflowExecution().Get(ctx, nil)
	b.window.startAnswered(f.Index)
	if err != nil {
		i := b.window.flightAt(f.Index, f.Dispatch)
		if i < 0 {
			return
		}
		b.window.remove(i)
		b.pool.member(f.Deployment).Served--
		switch {
		case temporal.IsWorkflowExecutionAlreadyStartedError(err) && f.Dispatch > 1 && tries < maxStartTries:
			// The previous dispatch of this item has reported but not yet
			// closed: try again shortly.
			f.Deployment = ""
			b.window.requeue(Requeued{Flight: f, Inputs: inputs, NotBefore: workflow.Now(ctx).Add(requeueDelay), StartTries: tries + 1})
		case temporal.IsWorkflowExecutionAlreadyStartedError(err) && f.Dispatch == 1:
			b.record(f, inputs, activities.BatchItemResult{Status: activities.ItemSkipped,
				Error: "not submitted again: this item's run already succeeded in an earlier run of this batch (or is still running)"})
		default:
			b.record(f, inputs, activities.BatchItemResult{Status: activities.ItemFailed, Error: "could not start the item's run: " + err.Error()})
		}
		return
	}
	if b.window.cancelSent {
		b.cancelChild(f.Index) // cancel arrived while the start was pending
	}
	var res ComfyRunResult
	err = future.Get(ctx, &res)
	b.childClosed(ctx, f, inputs, &res, err)
}

// cancelInFlight asks every running child to cancel (its remote run too);
// they report "cancelled" and the batch ends when all have. A child that
// ended meanwhile makes its request fail, which is fine.
func (b *batch) cancelInFlight() {
	b.window.cancelSent = true
	for _, index := range b.window.cancellable() {
		b.cancelChild(index)
	}
}

func (b *batch) cancelChild(index int) {
	future := workflow.RequestCancelExternalWorkflow(b.ctx, b.childID(index), "")
	workflow.Go(b.ctx, func(ctx workflow.Context) {
		if err := future.Get(ctx, nil); err != nil {
			b.logger.Debug("Cancel request not delivered", "Index", index, "Error", err)
		}
	})
}

// carriedIDs are the workflow ids of the carried children (window.carried).
func (b *batch) carriedIDs() []string {
	var ids []string
	for _, f := range b.window.carried() {
		ids = append(ids, b.childID(f.Index))
	}
	return ids
}

// untilOrphanCheck says how long until carried children are next checked.
func (b *batch) untilOrphanCheck(ctx workflow.Context) (time.Duration, bool) {
	if len(b.window.carried()) == 0 || !b.orphanChecks(ctx) {
		return 0, false
	}
	if b.nextOrphanCheck.IsZero() {
		b.nextOrphanCheck = workflow.Now(ctx).Add(orphanCheckEvery)
	}
	return max(b.nextOrphanCheck.Sub(workflow.Now(ctx)), time.Second), true
}

// checkOrphans records as failed the carried children that closed without
// reporting (terminated, or timed out), which would otherwise keep the
// batch waiting forever. It reports whether it ran.
func (b *batch) checkOrphans(ctx workflow.Context) bool {
	ids := b.carriedIDs()
	if len(ids) == 0 || !b.orphanChecks(ctx) || b.nextOrphanCheck.IsZero() || workflow.Now(ctx).Before(b.nextOrphanCheck) {
		return false
	}
	b.nextOrphanCheck = workflow.Now(ctx).Add(orphanCheckEvery)
	actx := workflow.WithActivityOptions(b.ctx, workflow.ActivityOptions{
		Summary:             fmt.Sprintf("Check %d items started before the last continue-as-new", len(ids)),
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var closed []string
	if err := workflow.ExecuteActivity(actx, a.ClosedHolders, ids).Get(b.ctx, &closed); err != nil {
		b.logger.Warn("Could not check items in flight", "Error", err)
		return true
	}
	b.drainSignals() // a report may have arrived while checking
	for _, id := range closed {
		for _, f := range b.st.InFlight {
			if b.childID(f.Index) != id {
				continue
			}
			b.window.removeItem(f.Index)
			b.record(f, b.window.inputs[f.Index], activities.BatchItemResult{Status: activities.ItemFailed,
				Error: "the item's run " + id + " closed without reporting (terminated or timed out); see its history"})
			break
		}
	}
	return true
}

// orphanChecks is false for batches that started before the check existed.
func (b *batch) orphanChecks(ctx workflow.Context) bool {
	return workflow.GetVersion(ctx, "check-orphaned-items", workflow.DefaultVersion, 1) == 1
}
