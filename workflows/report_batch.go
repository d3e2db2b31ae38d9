package workflows

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/activities"
)

// The batch's side of the report protocol (report.go is the run's side):
// item keys, the reports a batch receives, an item's end read from its
// child's completion instead, and the asks to report before a
// continue-as-new.

// askChunk is how many asks to report are in flight at once, far below the
// limit of pending outgoing signals of one workflow.
const askChunk = 200

// itemKey identifies one dispatch of an item in reports: "<index>.<dispatch>".
func itemKey(index, dispatch int) string { return strconv.Itoa(index) + "." + strconv.Itoa(dispatch) }

func parseItemKey(key string) (index, dispatch int, ok bool) {
	i, d, found := strings.Cut(key, ".")
	index, err1 := strconv.Atoi(i)
	dispatch, err2 := strconv.Atoi(d)
	return index, dispatch, found && err1 == nil && err2 == nil
}

// onReports registers the ItemDoneSignal channel; the main loop applies
// the reports with the other signals (see drainSignals).
func (b *batch) onReports(ctx workflow.Context) {
	reports := workflow.GetSignalChannel(ctx, ItemDoneSignal)
	b.signals = append(b.signals, reports)
	b.drains = append(b.drains, func() {
		var rep ItemReport
		for reports.ReceiveAsync(&rep) {
			b.onReport(ctx, rep)
			rep = ItemReport{}
		}
	})
}

// onReport applies a child's report: the item ends, or moves to another
// deployment of the pool when its run waited past the queue deadline.
// Reports for items not in flight (duplicates, or a previous run's
// dispatch) are ignored.
func (b *batch) onReport(ctx workflow.Context, rep ItemReport) {
	index, dispatch, ok := parseItemKey(rep.Key)
	i := b.window.flightAt(index, dispatch)
	if !ok || i < 0 {
		b.logger.Debug("Ignoring a report for an item not in flight", "Key", rep.Key, "WorkflowId", rep.WorkflowID)
		return
	}
	b.reports++
	f := b.window.remove(i)
	inputs := b.window.takeInputs(index)
	if rep.Inputs != nil {
		inputs = rep.Inputs
	}
	b.ledger.addUsage(f.Deployment, rep)

	if rep.Status == activities.ItemFailed && rep.DeadlineExceeded == activities.DeadlineQueue && b.st.StoppedBy == "" && !b.st.CancelAsked {
		tried := append(slices.Clone(f.Tried), f.Deployment)
		if b.pool.choose(tried) != nil {
			b.pool.member(f.Deployment).Moved++
			b.st.Moved++
			next := Flight{Index: f.Index, Line: f.Line, Dispatch: f.Dispatch + 1, Tried: tried, RunIDs: append(slices.Clone(f.RunIDs), rep.RunIDs...)}
			b.window.requeue(Requeued{Flight: next, Inputs: inputs, NotBefore: workflow.Now(ctx).Add(requeueDelay), Error: rep.Error})
			b.logger.Info("Item waited past the queue deadline; moving it to another deployment", "Index", f.Index, "From", f.Deployment)
			return
		}
	}
	b.record(f, inputs, activities.BatchItemResult{
		Status: rep.Status, DeploymentID: rep.DeploymentID, RunIDs: append(slices.Clone(f.RunIDs), rep.RunIDs...),
		GPUSeconds: rep.GPUSeconds, Outputs: rep.Outputs, ManifestPath: rep.ManifestPath, Error: rep.Error, ErrorType: rep.ErrorType,
	})
}

// childClosed applies the end of a child this run started. With whenAsked
// its completion is the usual report; otherwise its report signal is, and
// the completion only covers a child that could not signal.
func (b *batch) childClosed(ctx workflow.Context, f Flight, inputs map[string]any, res *ComfyRunResult, err error) {
	ended := func() {
		if err != nil {
			*res = childResult(err)
			// Report what the child returned, as its own report would,
			// not the wrapper that says it was a child.
			var childErr *temporal.ChildWorkflowExecutionError
			if b.whenAsked && errors.As(err, &childErr) && childErr.Unwrap() != nil {
				err = childErr.Unwrap()
			}
		}
		rep := newItemReport(itemKey(f.Index, f.Dispatch), res, err)
		rep.Inputs = inputs
		b.onReport(ctx, rep)
	}
	reported := !b.window.inFlight(f.Index, f.Dispatch)
	if !reported && b.whenAsked {
		ended() // the usual way: a child reports only when asked
		reported = true
	}
	// A moved item waits for this dispatch to close before it starts again
	// under the same workflow id; now it has.
	b.window.dispatchClosed(f, workflow.Now(ctx))
	if reported {
		return
	}
	b.logger.Warn("Item's run ended without reporting; recorded from its result", "Index", f.Index)
	ended()
}

// childResult extracts the ComfyRunResult a failed or cancelled child
// carries in its error details.
func childResult(err error) ComfyRunResult {
	var res ComfyRunResult
	var appErr *temporal.ApplicationError
	var canceled *temporal.CanceledError
	switch {
	case errors.As(err, &appErr) && appErr.HasDetails():
		_ = appErr.Details(&res)
	case errors.As(err, &canceled) && canceled.HasDetails():
		_ = canceled.Details(&res)
	}
	return res
}

// askToReport asks the children this run started, which report only when
// asked, to report by signal, and waits until each ask is delivered (the
// child will then report to the next run) or the child has ended (its
// completion reaches this run). Asks go out askChunk at a time.
func (b *batch) askToReport() {
	if !b.whenAsked {
		return
	}
	flights := b.window.startedHereInFlight() // an earlier run's children report already
	for len(flights) > 0 {
		n := min(askChunk, len(flights))
		pending := n
		for _, f := range flights[:n] {
			future := workflow.SignalExternalWorkflow(b.ctx, b.childID(f.Index), "", AskReportSignal, nil)
			workflow.Go(b.ctx, func(ctx workflow.Context) {
				defer func() { pending-- }()
				if err := future.Get(ctx, nil); err != nil {
					// The child ended meanwhile: wait for its completion.
					b.logger.Debug("Ask to report not delivered", "Index", f.Index, "Error", err)
					_ = workflow.Await(ctx, func() bool { return !b.window.inFlight(f.Index, f.Dispatch) })
				}
			})
		}
		flights = flights[n:]
		for pending > 0 {
			b.drainSignals()
			_ = workflow.Await(b.ctx, func() bool { return pending == 0 || b.signalsPending() })
		}
	}
}
