package workflows

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/preflight"
)

// Batch phases, shown in the progress query and the ComfyStatus search
// attribute (besides the final statuses).
const (
	BatchPhasePreflight  = "preflight"
	BatchPhaseRunning    = "running"
	BatchPhasePaused     = "paused"
	BatchPhaseStopping   = "stopping"
	BatchPhaseCancelling = "cancelling"
	BatchPhaseFailed     = "failed"
)

// ComfyBatch runs one ComfyRun child per item in a sliding window of at
// most MaxConcurrency runs, over one deployment or a pool, and writes a
// JSONL results manifest. It continues as new every PageSize items (or when
// the server suggests it), carrying its counters and in-flight set; children
// report their outcome by signal, so they outlive any one run of the batch.
// Child ids are "<batch id>/<item index>" and a succeeded child's id cannot
// be reused, so re-running a batch id only runs the items that did not
// succeed.
func ComfyBatch(ctx workflow.Context, in ComfyBatchInput) (*ComfyBatchResult, error) {
	b := &batch{in: in}
	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	return b.run(ctx)
}

// batch is the workflow shell: the loop and every Temporal call. What to do
// is decided by its deterministic parts (batchParts: pool, window, pager,
// ledger), which never see workflow.Context.
type batch struct {
	in     ComfyBatchInput
	id     string
	logger log.Logger
	// ctx survives a cancellation of the workflow, so a cancelled batch
	// still cancels its runs, waits for their reports and writes results.
	ctx workflow.Context
	batchParts

	// phase is shown by the progress query; shownStatus is the ComfyStatus
	// search attribute last upserted, and sinceShown counts the items ended
	// since the UI details were last refreshed.
	phase       string
	shownStatus string
	sinceShown  int
	// Signals stay buffered in their channels until the main loop drains
	// them. A goroutine blocked in Receive would take a value off the
	// channel before it runs, and a continue-as-new in between would lose it.
	signals []workflow.ReceiveChannel
	drains  []func()
	// whenAsked: children this run starts report by signal only when asked,
	// before a continue-as-new (askToReport).
	whenAsked bool
	// reports counts the reports applied, to wake the main loop.
	reports int
	// nextOrphanCheck is when carried children are next checked for having
	// closed without reporting (checkOrphans).
	nextOrphanCheck time.Time
}

func (b *batch) setup(ctx workflow.Context) error {
	info := workflow.GetInfo(ctx)
	b.id = info.WorkflowExecution.ID
	b.logger = log.With(workflow.GetLogger(ctx), "BatchId", b.id)
	b.ctx, _ = workflow.NewDisconnectedContext(ctx)
	// Within a run the batch learns an item's end from the child's
	// completion, which costs it fewer updates than a report signal.
	b.whenAsked = workflow.GetVersion(ctx, "report-when-asked", workflow.DefaultVersion, 1) == 1
	b.phase = BatchPhasePreflight
	st := b.in.State
	if st == nil {
		st = &BatchState{MaxConcurrency: b.in.MaxConcurrency, StartedAt: workflow.Now(ctx)}
		if st.MaxConcurrency == 0 {
			st.MaxConcurrency = DefaultBatchConcurrency
		}
		for _, d := range b.in.Deployments {
			st.Pool = append(st.Pool, PoolMember{DeploymentID: d})
		}
	}
	b.in.State = nil
	if b.in.Source == nil {
		st.Total = len(b.in.Items)
	}
	b.batchParts = newBatchParts(&b.in, st)

	err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, func() (BatchProgress, error) { return b.progress(ctx), nil },
		workflow.QueryHandlerOptions{Description: "Counts, GPU-seconds, estimated cost, rate and time left"})
	if err != nil {
		return err
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, SetConcurrencyUpdate,
		func(ctx workflow.Context, n int) (int, error) {
			prev := b.st.MaxConcurrency
			b.st.MaxConcurrency = n
			b.logger.Info("Concurrency changed", "From", prev, "To", n)
			b.showDetails(ctx)
			return prev, nil
		},
		workflow.UpdateHandlerOptions{
			Description: "Set the maximum number of runs in flight; returns the previous maximum",
			Validator: func(_ workflow.Context, n int) error {
				if n < 1 || n > MaxBatchConcurrency {
					return fmt.Errorf("concurrency must be between 1 and %d, got %d", MaxBatchConcurrency, n)
				}
				return nil
			},
		})
	if err != nil {
		return err
	}
	b.onSignal(ctx, PauseSignal, func() { b.setPaused(ctx, true) })
	b.onSignal(ctx, ResumeSignal, func() { b.setPaused(ctx, false) })
	b.onSignal(ctx, CancelSignal, func() { b.askCancel(ctx, "cancel signal") })
	b.onReports(ctx)
	// Cancelling the workflow itself works like the cancel signal.
	workflow.Go(ctx, func(gctx workflow.Context) {
		gctx.Done().Receive(gctx, nil)
		b.st.WorkflowCancelled = true
		b.askCancel(b.ctx, "workflow cancelled")
	})

	if err := b.in.validate(); err != nil {
		b.setPhase(ctx, BatchPhaseFailed)
		return err
	}
	return nil
}

// onSignal registers a payload-free control signal; the main loop applies
// it with the others (see drainSignals).
func (b *batch) onSignal(ctx workflow.Context, name string, apply func()) {
	ch := workflow.GetSignalChannel(ctx, name)
	b.signals = append(b.signals, ch)
	b.drains = append(b.drains, func() {
		for ch.ReceiveAsync(nil) {
			apply()
		}
	})
}

// signalsPending reports whether a signal waits in a channel.
func (b *batch) signalsPending() bool {
	for _, ch := range b.signals {
		if ch.Len() > 0 {
			return true
		}
	}
	return false
}

func (b *batch) drainSignals() {
	for _, drain := range b.drains {
		drain()
	}
}

func (b *batch) run(ctx workflow.Context) (*ComfyBatchResult, error) {
	if err := b.checkPool(); err != nil {
		b.setPhase(ctx, BatchPhaseFailed)
		return nil, err
	}
	b.setPhase(ctx, b.currentPhase())
	for {
		b.drainSignals()
		b.recheckPool(ctx)
		if b.window.cancelDue() {
			b.cancelInFlight()
		}
		next := b.next(workflow.Now(b.ctx), continueAsNewSuggested(ctx))
		if next == stepTake {
			if b.takeAndStart() {
				continue
			}
			next = b.nextWithoutTaking(continueAsNewSuggested(ctx))
		}
		switch next {
		case stepContinueAsNew:
			return b.continueAsNew(ctx)
		case stepFinish:
			return b.finish(ctx)
		case stepFlush:
			if err := b.flush(); err != nil {
				return nil, err
			}
			continue
		}
		wake := b.wakeUp(ctx)
		if b.checkOrphans(ctx) {
			continue
		}
		wait, ok := b.window.nextRequeue(workflow.Now(b.ctx))
		ok = ok && b.window.hasRoom()
		if d, check := b.untilOrphanCheck(ctx); check && (!ok || d < wait) {
			wait, ok = d, true
		}
		if d, check := b.pool.untilRecheck(workflow.Now(ctx)); check && (!ok || d < wait) {
			wait, ok = d, true
		}
		if ok {
			_, _ = workflow.AwaitWithTimeout(b.ctx, wait, wake)
		} else {
			_ = workflow.Await(b.ctx, wake)
		}
	}
}

// wakeUp is the loop's wait condition: a signal to apply, a step the loop
// would take (next, the same decision the loop makes), a cancel to send, or
// an item that ended since the wait began.
func (b *batch) wakeUp(ctx workflow.Context) func() bool {
	reports := b.reports
	return func() bool {
		return b.signalsPending() || b.window.cancelDue() ||
			b.next(workflow.Now(b.ctx), continueAsNewSuggested(ctx)) != stepWait ||
			// An item recorded from its child's completion (whenAsked)
			// changes what the loop should do next, as a report does.
			(b.whenAsked && b.reports != reports)
	}
}

func continueAsNewSuggested(ctx workflow.Context) bool {
	return workflow.GetInfo(ctx).GetContinueAsNewSuggested()
}

// checkPool checks every deployment of the pool once at the start of the
// batch, and the ones that failed again at each continue-as-new (their
// machine may have become ready since). The results are cached in state and
// passed to every child, so no item checks its deployment again.
func (b *batch) checkPool() error {
	members := b.pool.unchecked()
	futures := make([]workflow.Future, len(members))
	for n, i := range members {
		id := b.st.Pool[i].DeploymentID
		actx := workflow.WithActivityOptions(b.ctx, preflightOptions("Preflight deployment "+id, preflightAttempts))
		futures[n] = workflow.ExecuteActivity(actx, a.Preflight, activities.PreflightRequest{DeploymentID: id, SkipInputCheck: true})
	}
	var firstErr error
	for n, f := range futures {
		m := &b.st.Pool[members[n]]
		var pre activities.PreflightResult
		err := f.Get(b.ctx, &pre)
		m.setCheck(&pre, err)
		if err != nil {
			firstErr = firstError(firstErr, err)
			b.logger.Warn("Deployment failed its check; it takes no items", "DeploymentId", m.DeploymentID, "Error", err)
		}
	}
	for _, i := range members {
		b.st.Pool[i].CheckedAt = workflow.Now(b.ctx)
	}
	if b.st.Runs > 0 {
		return nil // the first run's checks below already passed
	}
	if b.pool.down() && firstErr != nil {
		return firstErr // no deployment can take a run: fail before any is submitted
	}
	if b.in.Budget.MaxCostUSD > 0 {
		if msg, ok := b.pool.unpriced(b.in.Budget.GPUPricePerHour); ok {
			return temporal.NewNonRetryableApplicationError(msg, ErrTypeInvalidWorkflowInput, nil, []string{msg})
		}
	}
	return nil
}

// recheckPool runs the deployment checks the pool says are due (see
// pool.dueRechecks), beside the window: a deployment that fails one takes
// no more items, one that passes takes them again.
func (b *batch) recheckPool(ctx workflow.Context) {
	// Batches started before re-checks existed must replay without them.
	if workflow.GetVersion(ctx, "recheck-failing-deployments", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	b.pool.rechecksOn = true
	for _, id := range b.pool.dueRechecks(workflow.Now(ctx)) {
		actx := workflow.WithActivityOptions(b.ctx, preflightOptions("Check deployment "+id+" again after a failed item", recheckAttempts))
		future := workflow.ExecuteActivity(actx, a.Preflight, activities.PreflightRequest{DeploymentID: id, SkipInputCheck: true})
		workflow.Go(b.ctx, func(gctx workflow.Context) {
			defer b.pool.recheckEnded(id)
			var pre activities.PreflightResult
			err := future.Get(gctx, &pre)
			switch {
			case err == nil:
				b.pool.member(id).setCheck(&pre, nil)
			case temporal.IsApplicationError(err) && !isRetryableApplicationError(err):
				// The deployment can no longer take runs; continue-as-new
				// checks it again.
				b.pool.member(id).setCheck(nil, err)
				b.logger.Warn("Deployment failed its re-check; it takes no more items", "DeploymentId", id, "Error", err)
			default:
				b.logger.Warn("Could not re-check deployment; keeping it", "DeploymentId", id, "Error", err)
			}
		})
	}
}

// takeAndStart takes the next item (a moved one first) and starts it or
// records why it cannot run. It reports false when no item was ready.
func (b *batch) takeAndStart() bool {
	if i, ok := b.window.readyRequeue(workflow.Now(b.ctx)); ok {
		rq := b.window.takeRequeued(i)
		b.start(rq.Flight, rq.Inputs, rq.StartTries, rq.Error)
		return true
	}
	if b.pager.left() == 0 && !b.readPage() {
		return false
	}
	item, ok := b.pager.take()
	if !ok {
		return false
	}
	f := Flight{Index: item.Index, Line: item.Line, Dispatch: 1}
	if item.Error != "" {
		b.record(f, nil, activities.BatchItemResult{Status: activities.ItemFailed, Error: item.Error, ErrorType: preflight.KindInvalidInput})
		return true
	}
	b.start(f, mergeInputs(b.in.Defaults.Inputs, item.Inputs), 0, "")
	return true
}

// readPage loads the page at the cursor, unless loaded: inline items from
// the input, a source by an activity. It reports false when the source
// could not be read, which stops the batch from starting new items.
func (b *batch) readPage() bool {
	if b.pager.loaded {
		return true
	}
	if b.in.Source == nil {
		b.pager.load(b.pager.inline(b.in.Items))
		return true
	}
	actx := workflow.WithActivityOptions(b.ctx, workflow.ActivityOptions{
		Summary:             fmt.Sprintf("Read items from %d", b.st.Cursor.Index),
		StartToCloseTimeout: 5 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 2 * time.Second, MaximumInterval: time.Minute, MaximumAttempts: 8},
	})
	req := activities.ReadBatchItemsRequest{
		Source: *b.in.Source, Cursor: b.st.Cursor, Limit: b.pager.size, CountTotal: b.st.Total == 0,
	}
	// The reader keeps columns the pool does not declare out of its
	// result, so a file never meant as a source stays out of history.
	if workflow.GetVersion(b.ctx, "source-only-declared-inputs", workflow.DefaultVersion, 1) == 1 {
		req.Declared, req.OnlyDeclared = declaredInputs(b.st.Pool)
	}
	var res activities.ReadBatchItemsResult
	err := workflow.ExecuteActivity(actx, a.ReadBatchItems, req).Get(b.ctx, &res)
	if err != nil {
		b.logger.Error("Batch source unreadable; no more items start", "Error", err)
		b.st.StoppedBy, b.st.SourceError = StoppedBySource, err.Error()
		b.setPhase(b.ctx, BatchPhaseStopping)
		return false
	}
	if res.Total > 0 {
		b.st.Total = res.Total
	}
	b.pager.load(res)
	return true
}

// record ends an item in the ledger and shows it: a policy that stops the
// batch changes its phase, and every detailsEvery items (and the last) the
// UI details are refreshed.
func (b *batch) record(f Flight, inputs map[string]any, line activities.BatchItemResult) {
	if b.ledger.record(f, b.childID(f.Index), inputs, line) {
		b.logger.Info("Batch stops starting new items", "StoppedBy", b.st.StoppedBy, "Failed", b.st.Failed, "GPUSeconds", b.st.GPUSecs)
		b.setPhase(b.ctx, BatchPhaseStopping)
	}
	if b.sinceShown++; b.sinceShown >= detailsEvery || b.done() {
		b.showDetails(b.ctx)
	}
}

func (b *batch) childID(index int) string { return b.id + "/" + strconv.Itoa(index) }

// currentPhase derives the phase from the state, for a continued run.
func (b *batch) currentPhase() string {
	switch {
	case b.st.CancelAsked:
		return BatchPhaseCancelling
	case b.st.StoppedBy != "":
		return BatchPhaseStopping
	case b.st.Paused:
		return BatchPhasePaused
	}
	return BatchPhaseRunning
}

func (b *batch) setPaused(ctx workflow.Context, paused bool) {
	if b.st.CancelAsked || b.st.Paused == paused {
		return
	}
	b.st.Paused = paused
	if paused {
		b.setPhase(ctx, BatchPhasePaused)
	} else {
		b.setPhase(ctx, BatchPhaseRunning)
	}
}

func (b *batch) askCancel(ctx workflow.Context, why string) {
	if b.st.CancelAsked {
		return
	}
	b.logger.Info("Cancelling the batch", "Reason", why, "InFlight", len(b.st.InFlight))
	b.st.CancelAsked, b.st.StoppedBy = true, StoppedByCancel
	b.setPhase(ctx, BatchPhaseCancelling)
}

// flush writes the pending result lines as the next results part.
func (b *batch) flush() error {
	if len(b.st.Unflushed) == 0 {
		return nil
	}
	part, lines := b.st.Parts+1, b.st.Unflushed
	actx := workflow.WithActivityOptions(b.ctx, workflow.ActivityOptions{
		Summary:             fmt.Sprintf("Write results part %d (%d items)", part, len(lines)),
		StartToCloseTimeout: 2 * time.Minute,
		// Unlimited attempts: a full disk stalls the batch rather than
		// losing its results.
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 2 * time.Second, MaximumInterval: time.Minute},
	})
	err := workflow.ExecuteActivity(actx, a.WriteBatchResults, activities.WriteBatchResultsRequest{BatchID: b.id, Part: part, Lines: lines}).Get(b.ctx, nil)
	if err != nil {
		return err
	}
	b.ledger.flushed(part, len(lines))
	return nil
}

// continueAsNew hands the batch to a fresh run: it waits for pending child
// starts and re-checks (their futures do not survive), asks the children
// it started to report to the next run, applies buffered signals, writes
// the results so far, and lets update handlers finish.
func (b *batch) continueAsNew(ctx workflow.Context) (*ComfyBatchResult, error) {
	_ = workflow.Await(b.ctx, func() bool { return b.window.starting == 0 && !b.pool.rechecksRunning() })
	b.askToReport()
	b.drainSignals()
	if err := b.flush(); err != nil {
		return nil, err
	}
	_ = workflow.Await(b.ctx, func() bool { return workflow.AllHandlersFinished(b.ctx) })
	// Whatever arrived meanwhile is applied now; its lines travel in state.
	b.drainSignals()
	b.st.Runs++
	next := b.in
	next.State = b.st
	b.logger.Info("Continuing as new", "Taken", b.pager.takenHere, "InFlight", len(b.st.InFlight), "Next", b.st.Cursor.Index+b.st.Taken)
	return nil, workflow.NewContinueAsNewError(ctx, ComfyBatchWorkflow, next)
}

// finish records moved items that never restarted, writes the results
// manifest and returns the summary.
func (b *batch) finish(ctx workflow.Context) (*ComfyBatchResult, error) {
	for _, rq := range b.st.Requeued {
		status, msg := activities.ItemFailed, rq.Error
		if b.st.CancelAsked {
			status, msg = activities.ItemCancelled, "batch cancelled before the item moved to another deployment"
		}
		b.record(rq.Flight, rq.Inputs, activities.BatchItemResult{Status: status, RunIDs: rq.RunIDs, Error: msg, ErrorType: errTypeNoDeploymentReady})
	}
	b.st.Requeued = nil
	if err := b.flush(); err != nil {
		return nil, err
	}
	actx := workflow.WithActivityOptions(b.ctx, workflow.ActivityOptions{
		Summary:             fmt.Sprintf("Write results manifest (%d parts)", b.st.Parts),
		StartToCloseTimeout: 30 * time.Minute,
		HeartbeatTimeout:    2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 2 * time.Second, MaximumInterval: time.Minute, MaximumAttempts: 10},
	})
	var manifest activities.FinalizeBatchResultsResult
	err := workflow.ExecuteActivity(actx, a.FinalizeBatchResults, activities.FinalizeBatchResultsRequest{BatchID: b.id, Parts: b.st.Parts}).Get(b.ctx, &manifest)
	if err != nil {
		return nil, err
	}
	res := b.ledger.result(b.id, manifest.Path)
	b.setPhase(b.ctx, res.Status)
	if b.st.WorkflowCancelled {
		return nil, temporal.NewCanceledError(res)
	}
	return res, nil
}

// firstError returns first, or err when there was no error before.
func firstError(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func isRetryableApplicationError(err error) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && !appErr.NonRetryable()
}
