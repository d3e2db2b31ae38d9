package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/preflight"
)

const (
	// flushEvery bounds the result lines held in workflow state (and the
	// size of one WriteBatchResults payload).
	flushEvery = 200
	// requeueDelay is how long a moved item waits for its previous dispatch
	// (same workflow id) to close when this run did not start it and so has
	// no future to tell; maxStartTries bounds how often it tries.
	requeueDelay  = 30 * time.Second
	maxStartTries = 5
	// detailsEvery limits how often ended items refresh the UI details.
	detailsEvery = 10
	// recheckEvery bounds how often a deployment with failing items is
	// checked again.
	recheckEvery = time.Minute
	// orphanCheckEvery is how often children started before the last
	// continue-as-new are checked for having closed without reporting.
	orphanCheckEvery = 5 * time.Minute
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

type batch struct {
	in     ComfyBatchInput
	st     *BatchState
	id     string
	logger log.Logger
	// ctx survives a cancellation of the workflow, so a cancelled batch
	// still cancels its runs, waits for their reports and writes results.
	ctx workflow.Context

	// The page of items being taken: st.Cursor is where it starts and
	// st.Taken how many of it were taken; page holds the rest.
	page     []activities.BatchItem
	pageNext activities.BatchCursor
	pageEOF  bool
	pageRead bool

	// inputs and unstarted cover children started by this run only.
	inputs    map[int]map[string]any
	unstarted map[int]bool
	starting  int
	takenHere int

	cancelSent  bool
	phase       string
	shownStatus string
	sinceShown  int
	// Signals stay buffered in their channels until the main loop drains
	// them. A goroutine blocked in Receive would take a value off the
	// channel before it runs, and a continue-as-new in between would lose it.
	signals []workflow.ReceiveChannel
	drains  []func()
	// rechecking counts deployment checks in flight (see recheckPool).
	rechecking int
	// watched marks items this run started (it has their futures);
	// nextOrphanCheck is when the others are next checked (checkOrphans).
	watched         map[int]bool
	nextOrphanCheck time.Time
	// rechecks is true once re-checks are on (see recheckPool); checking
	// marks deployments whose check is in flight.
	rechecks bool
	checking map[string]bool
	// whenAsked: children this run starts report by signal only when asked,
	// before a continue-as-new (askToReport).
	whenAsked bool
	// reports counts the reports applied, to wake the main loop.
	reports int
}

func (b *batch) setup(ctx workflow.Context) error {
	info := workflow.GetInfo(ctx)
	b.id = info.WorkflowExecution.ID
	b.logger = log.With(workflow.GetLogger(ctx), "BatchId", b.id)
	b.ctx, _ = workflow.NewDisconnectedContext(ctx)
	b.inputs, b.unstarted, b.watched = map[int]map[string]any{}, map[int]bool{}, map[int]bool{}
	b.checking = map[string]bool{}
	// Within a run the batch learns an item's end from the child's
	// completion, which costs it fewer updates than a report signal.
	b.whenAsked = workflow.GetVersion(ctx, "report-when-asked", workflow.DefaultVersion, 1) == 1
	b.phase = BatchPhasePreflight
	b.st = b.in.State
	if b.st == nil {
		b.st = &BatchState{MaxConcurrency: b.in.MaxConcurrency, StartedAt: workflow.Now(ctx)}
		if b.st.MaxConcurrency == 0 {
			b.st.MaxConcurrency = DefaultBatchConcurrency
		}
		for _, d := range b.in.Deployments {
			b.st.Pool = append(b.st.Pool, PoolMember{DeploymentID: d})
		}
	}
	b.in.State = nil
	if b.in.Source == nil {
		b.st.Total = len(b.in.Items)
	}

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
	reports := workflow.GetSignalChannel(ctx, ItemDoneSignal)
	b.signals = append(b.signals, reports)
	b.drains = append(b.drains, func() {
		var rep ItemReport
		for reports.ReceiveAsync(&rep) {
			b.onReport(ctx, rep)
			rep = ItemReport{}
		}
	})
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

func (b *batch) run(ctx workflow.Context) (*ComfyBatchResult, error) {
	if err := b.checkPool(); err != nil {
		b.setPhase(ctx, BatchPhaseFailed)
		return nil, err
	}
	b.setPhase(ctx, b.currentPhase())
	for {
		b.drainSignals()
		b.recheckPool(ctx)
		if b.st.CancelAsked && !b.cancelSent {
			b.cancelInFlight()
		}
		if b.canTake() {
			if b.takenHere >= b.pageSize() || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
				return b.continueAsNew(ctx)
			}
			if b.takeAndStart() {
				continue
			}
		}
		if b.done() {
			return b.finish(ctx)
		}
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			return b.continueAsNew(ctx)
		}
		if len(b.st.Unflushed) >= flushEvery {
			if err := b.flush(); err != nil {
				return nil, err
			}
			continue
		}
		reports := b.reports
		wake := func() bool {
			return b.signalsPending() || b.canTake() || b.done() || (b.st.CancelAsked && !b.cancelSent) ||
				len(b.st.Unflushed) >= flushEvery || workflow.GetInfo(ctx).GetContinueAsNewSuggested() ||
				// An item recorded from its child's completion (whenAsked)
				// changes what the loop should do next, as a report does.
				(b.whenAsked && b.reports != reports)
		}
		if b.checkOrphans(ctx) {
			continue
		}
		wait, ok := b.nextRequeue()
		ok = ok && b.canStartMore()
		if d, check := b.untilOrphanCheck(ctx); check && (!ok || d < wait) {
			wait, ok = d, true
		}
		if d, check := b.untilRecheck(ctx); check && (!ok || d < wait) {
			wait, ok = d, true
		}
		if ok {
			_, _ = workflow.AwaitWithTimeout(b.ctx, wait, wake)
		} else {
			_ = workflow.Await(b.ctx, wake)
		}
	}
}

// carried lists the children in flight that an earlier run of the batch
// started: only their report signal tells this run that they ended.
func (b *batch) carried() []string {
	var ids []string
	for _, f := range b.st.InFlight {
		if !b.watched[f.Index] {
			ids = append(ids, b.childID(f.Index))
		}
	}
	return ids
}

// untilOrphanCheck says how long until carried children are next checked.
func (b *batch) untilOrphanCheck(ctx workflow.Context) (time.Duration, bool) {
	if len(b.carried()) == 0 || !b.orphanChecks(ctx) {
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
	ids := b.carried()
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
			b.st.InFlight = slices.DeleteFunc(b.st.InFlight, func(x Flight) bool { return x.Index == f.Index })
			b.record(f, b.inputs[f.Index], activities.BatchItemResult{Status: activities.ItemFailed,
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

// checkPool checks every deployment of the pool once at the start of the
// batch, and the ones that failed again at each continue-as-new (their
// machine may have become ready since). The results are cached in state and
// passed to every child, so no item checks its deployment again.
func (b *batch) checkPool() error {
	var futures []workflow.Future
	var members []int
	for i, m := range b.st.Pool {
		if m.Preflight != nil {
			continue
		}
		actx := workflow.WithActivityOptions(b.ctx, workflow.ActivityOptions{
			Summary:             "Preflight deployment " + m.DeploymentID,
			StartToCloseTimeout: time.Minute,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 10},
		})
		futures = append(futures, workflow.ExecuteActivity(actx, a.Preflight, activities.PreflightRequest{DeploymentID: m.DeploymentID, SkipInputCheck: true}))
		members = append(members, i)
	}
	var firstErr error
	for n, f := range futures {
		m := &b.st.Pool[members[n]]
		var pre activities.PreflightResult
		if err := f.Get(b.ctx, &pre); err != nil {
			m.Error = err.Error()
			firstErr = cmpErr(firstErr, err)
			b.logger.Warn("Deployment failed its check; it takes no items", "DeploymentId", m.DeploymentID, "Error", err)
			continue
		}
		m.Preflight, m.Error = &pre, ""
	}
	for _, i := range members {
		b.st.Pool[i].CheckedAt = workflow.Now(b.ctx)
	}
	if b.st.Runs > 0 {
		return nil // the first run's checks below already passed
	}
	if b.choose(nil) == nil && firstErr != nil {
		return firstErr // no deployment can take a run: fail before any is submitted
	}
	if b.in.Budget.MaxCostUSD > 0 {
		// An unpriced GPU would cost nothing and never stop the batch.
		for _, m := range b.st.Pool {
			if gpu := b.gpuOf(m.DeploymentID, ""); m.Preflight != nil && b.in.Budget.GPUPricePerHour[gpu] <= 0 {
				msg := fmt.Sprintf("budget.max_cost_usd needs budget.gpu_price_per_hour[%q]: deployment %s runs on %s", gpu, m.DeploymentID, gpu)
				return temporal.NewNonRetryableApplicationError(msg, ErrTypeInvalidWorkflowInput, nil, []string{msg})
			}
		}
	}
	return nil
}

// recheckPool checks again, at most once per recheckEvery, each deployment
// one of whose items failed: a machine that went into "error" or started
// rebuilding stops taking items, and one that recovered takes them again.
// Deployments are otherwise checked once per batch, not per item.
func (b *batch) recheckPool(ctx workflow.Context) {
	// Batches started before re-checks existed must replay without them.
	if workflow.GetVersion(ctx, "recheck-failing-deployments", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	b.rechecks = true
	now := workflow.Now(ctx)
	down := b.poolDown()
	for i := range b.st.Pool {
		m := &b.st.Pool[i]
		due := now.Sub(m.CheckedAt) >= recheckEvery
		failing := m.Recheck && m.Preflight != nil
		// While no deployment is ready, the failed ones are checked every
		// recheckEvery so the batch resumes by itself when one recovers.
		recovering := down && m.Preflight == nil
		if !due || !(failing || recovering) || b.checking[m.DeploymentID] {
			continue
		}
		b.checking[m.DeploymentID] = true
		m.Recheck, m.CheckedAt = false, now
		b.rechecking++
		id := m.DeploymentID
		actx := workflow.WithActivityOptions(b.ctx, workflow.ActivityOptions{
			Summary:             "Check deployment " + id + " again after a failed item",
			StartToCloseTimeout: time.Minute,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 5},
		})
		future := workflow.ExecuteActivity(actx, a.Preflight, activities.PreflightRequest{DeploymentID: id, SkipInputCheck: true})
		workflow.Go(b.ctx, func(gctx workflow.Context) {
			defer func() { b.rechecking--; delete(b.checking, id) }()
			var pre activities.PreflightResult
			err := future.Get(gctx, &pre)
			m := b.member(id)
			switch {
			case err == nil:
				m.Preflight, m.Error = &pre, ""
			case temporal.IsApplicationError(err) && !isRetryableApplicationError(err):
				// The deployment can no longer take runs; continue-as-new
				// checks it again.
				m.Preflight, m.Error = nil, err.Error()
				b.logger.Warn("Deployment failed its re-check; it takes no more items", "DeploymentId", id, "Error", err)
			default:
				b.logger.Warn("Could not re-check deployment; keeping it", "DeploymentId", id, "Error", err)
			}
		})
	}
}

// poolDown reports whether no deployment of the pool can take an item.
func (b *batch) poolDown() bool { return b.choose(nil) == nil }

// untilRecheck says how long until a down pool is checked again.
func (b *batch) untilRecheck(ctx workflow.Context) (time.Duration, bool) {
	if !b.rechecks || !b.poolDown() {
		return 0, false
	}
	next := recheckEvery
	for _, m := range b.st.Pool {
		if m.Preflight == nil {
			next = min(next, recheckEvery-workflow.Now(ctx).Sub(m.CheckedAt))
		}
	}
	return max(next, time.Second), true
}

func isRetryableApplicationError(err error) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && !appErr.NonRetryable()
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func (b *batch) pageSize() int {
	if b.in.PageSize > 0 {
		return b.in.PageSize
	}
	return DefaultBatchPageSize
}

// canStartMore says whether the window has room for another run.
func (b *batch) canStartMore() bool {
	return !b.st.Paused && b.st.StoppedBy == "" && !b.st.CancelAsked &&
		len(b.st.InFlight) < min(b.st.MaxConcurrency, MaxBatchConcurrency)
}

// canTake says whether an item can be taken now.
func (b *batch) canTake() bool {
	if !b.canStartMore() {
		return false
	}
	if b.rechecks && b.poolDown() {
		// Every deployment failed a re-check: hold the items until one
		// recovers (recheckPool) rather than fail them all at once.
		return false
	}
	if _, ok := b.readyRequeue(); ok {
		return true
	}
	return len(b.page) > 0 || !b.st.EOF
}

// done says whether nothing is running and nothing more will start.
func (b *batch) done() bool {
	if len(b.st.InFlight) > 0 || b.starting > 0 {
		return false
	}
	if b.st.StoppedBy != "" || b.st.CancelAsked {
		return true
	}
	return b.st.EOF && len(b.page) == 0 && len(b.st.Requeued) == 0
}

// takeAndStart takes the next item (a moved one first) and starts it or
// records why it cannot run. It reports false when no item was ready.
func (b *batch) takeAndStart() bool {
	if i, ok := b.readyRequeue(); ok {
		rq := b.st.Requeued[i]
		b.st.Requeued = slices.Delete(b.st.Requeued, i, i+1)
		b.start(rq.Flight, rq.Inputs, rq.StartTries, rq.Error)
		return true
	}
	if len(b.page) == 0 && !b.readPage() {
		return false
	}
	if len(b.page) == 0 {
		return false
	}
	item := b.page[0]
	b.page = b.page[1:]
	b.st.Taken++
	b.takenHere++
	if len(b.page) == 0 {
		b.st.Cursor, b.st.Taken, b.pageRead = b.pageNext, 0, false
		b.st.EOF = b.pageEOF
	}
	f := Flight{Index: item.Index, Line: item.Line, Dispatch: 1}
	if item.Error != "" {
		b.record(f, nil, activities.BatchItemResult{Status: activities.ItemFailed, Error: item.Error, ErrorType: preflight.KindInvalidInput})
		return true
	}
	b.start(f, mergeInputs(b.in.Defaults.Inputs, item.Inputs), 0, "")
	return true
}

// readPage loads the page that starts at st.Cursor, without the items of
// it already taken. Inline items are paged in the workflow; a source is
// read by an activity. It reports false when the source failed.
func (b *batch) readPage() bool {
	if b.pageRead {
		return true
	}
	var res activities.ReadBatchItemsResult
	if b.in.Source == nil {
		start := min(b.st.Cursor.Index, len(b.in.Items))
		end := min(start+b.pageSize(), len(b.in.Items))
		for i := start; i < end; i++ {
			res.Items = append(res.Items, activities.BatchItem{Index: i, Inputs: b.in.Items[i]})
		}
		res.Next, res.EOF = activities.BatchCursor{Index: end}, end == len(b.in.Items)
	} else {
		actx := workflow.WithActivityOptions(b.ctx, workflow.ActivityOptions{
			Summary:             fmt.Sprintf("Read items from %d", b.st.Cursor.Index),
			StartToCloseTimeout: 5 * time.Minute,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 2 * time.Second, MaximumInterval: time.Minute, MaximumAttempts: 8},
		})
		req := activities.ReadBatchItemsRequest{
			Source: *b.in.Source, Cursor: b.st.Cursor, Limit: b.pageSize(), CountTotal: b.st.Total == 0,
		}
		// The reader keeps columns the pool does not declare out of its
		// result, so a file never meant as a source stays out of history.
		if workflow.GetVersion(b.ctx, "source-only-declared-inputs", workflow.DefaultVersion, 1) == 1 {
			req.Declared, req.OnlyDeclared = declaredInputs(b.st.Pool)
		}
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
	}
	b.page, b.pageNext, b.pageEOF, b.pageRead = res.Items[min(b.st.Taken, len(res.Items)):], res.Next, res.EOF, true
	if len(b.page) == 0 {
		// Nothing left in this page: move on, or stop at the end.
		b.st.EOF = res.EOF || res.Next.Index == b.st.Cursor.Index && res.Next.Byte == b.st.Cursor.Byte
		b.st.Cursor, b.st.Taken, b.pageRead = res.Next, 0, false
	}
	return true
}

// start validates an item's inputs against the cached check of the chosen
// deployment and starts its ComfyRun; a bad item fails alone, before any
// API call.
func (b *batch) start(f Flight, inputs map[string]any, tries int, prevErr string) {
	m := b.choose(f.Tried)
	if m == nil {
		msg := "no deployment of the pool is ready"
		if len(f.Tried) > 0 {
			msg = "no other deployment of the pool is ready: " + prevErr
		}
		b.record(f, inputs, activities.BatchItemResult{Status: activities.ItemFailed, Error: msg, ErrorType: ErrTypeRunTimedOut})
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
	b.st.InFlight = append(b.st.InFlight, f)
	b.inputs[f.Index], b.unstarted[f.Index], b.watched[f.Index] = inputs, true, true
	b.starting++
	future := workflow.ExecuteChildWorkflow(cctx, ComfyRunWorkflow, child)
	workflow.Go(b.ctx, func(ctx workflow.Context) { b.watch(ctx, f, inputs, tries, future) })
}

// watch follows a child this run started: a refused start, and an end
// without a report (the child could not signal), are recorded from here.
func (b *batch) watch(ctx workflow.Context, f Flight, inputs map[string]any, tries int, future workflow.ChildWorkflowFuture) {
	err := future.GetChildWorkflowExecution().Get(ctx, nil)
	b.starting--
	delete(b.unstarted, f.Index)
	if err != nil {
		i := b.flightAt(f.Index, f.Dispatch)
		if i < 0 {
			return
		}
		b.st.InFlight = slices.Delete(b.st.InFlight, i, i+1)
		b.member(f.Deployment).Served--
		switch {
		case temporal.IsWorkflowExecutionAlreadyStartedError(err) && f.Dispatch > 1 && tries < maxStartTries:
			// The previous dispatch of this item has reported but not yet
			// closed: try again shortly.
			f.Deployment = ""
			b.st.Requeued = append(b.st.Requeued, Requeued{Flight: f, Inputs: inputs, NotBefore: workflow.Now(ctx).Add(requeueDelay), StartTries: tries + 1})
		case temporal.IsWorkflowExecutionAlreadyStartedError(err) && f.Dispatch == 1:
			b.record(f, inputs, activities.BatchItemResult{Status: activities.ItemSkipped,
				Error: "not submitted again: this item's run already succeeded in an earlier run of this batch (or is still running)"})
		default:
			b.record(f, inputs, activities.BatchItemResult{Status: activities.ItemFailed, Error: "could not start the item's run: " + err.Error()})
		}
		return
	}
	if b.cancelSent {
		b.cancelChild(f.Index) // cancel arrived while the start was pending
	}
	var res ComfyRunResult
	err = future.Get(ctx, &res)
	ended := func() {
		if err != nil {
			res = childResult(err)
			// Report what the child returned, as its own report would,
			// not the wrapper that says it was a child.
			var childErr *temporal.ChildWorkflowExecutionError
			if b.whenAsked && errors.As(err, &childErr) && childErr.Unwrap() != nil {
				err = childErr.Unwrap()
			}
		}
		rep := newItemReport(itemKey(f.Index, f.Dispatch), &res, err)
		rep.Inputs = inputs
		b.onReport(ctx, rep)
	}
	reported := b.flightAt(f.Index, f.Dispatch) < 0
	if !reported && b.whenAsked {
		ended() // the usual way: a child reports only when asked
		reported = true
	}
	// A moved item waits for this dispatch to close before it starts again
	// under the same workflow id; now it has.
	for i := range b.st.Requeued {
		if b.st.Requeued[i].Index == f.Index && b.st.Requeued[i].Dispatch == f.Dispatch+1 {
			b.st.Requeued[i].NotBefore = workflow.Now(ctx)
		}
	}
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

// onReport applies a child's report: the item ends, or moves to another
// deployment of the pool when its run waited past the queue deadline.
// Reports for items not in flight (duplicates, or a previous run's
// dispatch) are ignored.
func (b *batch) onReport(ctx workflow.Context, rep ItemReport) {
	index, dispatch, ok := parseItemKey(rep.Key)
	i := b.flightAt(index, dispatch)
	if !ok || i < 0 {
		b.logger.Debug("Ignoring a report for an item not in flight", "Key", rep.Key, "WorkflowId", rep.WorkflowID)
		return
	}
	b.reports++
	f := b.st.InFlight[i]
	b.st.InFlight = slices.Delete(b.st.InFlight, i, i+1)
	inputs := rep.Inputs
	if inputs == nil {
		inputs = b.inputs[index]
	}
	delete(b.inputs, index)
	b.addUsage(f.Deployment, rep)

	if rep.Status == activities.ItemFailed && rep.DeadlineExceeded == activities.DeadlineQueue && b.st.StoppedBy == "" && !b.st.CancelAsked {
		tried := append(slices.Clone(f.Tried), f.Deployment)
		if b.choose(tried) != nil {
			b.member(f.Deployment).Moved++
			b.st.Moved++
			next := Flight{Index: f.Index, Line: f.Line, Dispatch: f.Dispatch + 1, Tried: tried, RunIDs: append(slices.Clone(f.RunIDs), rep.RunIDs...)}
			b.st.Requeued = append(b.st.Requeued, Requeued{Flight: next, Inputs: inputs, NotBefore: workflow.Now(ctx).Add(requeueDelay), Error: rep.Error})
			b.logger.Info("Item waited past the queue deadline; moving it to another deployment", "Index", f.Index, "From", f.Deployment)
			return
		}
	}
	b.record(f, inputs, activities.BatchItemResult{
		Status: rep.Status, DeploymentID: rep.DeploymentID, RunIDs: append(slices.Clone(f.RunIDs), rep.RunIDs...),
		GPUSeconds: rep.GPUSeconds, Outputs: rep.Outputs, ManifestPath: rep.ManifestPath, Error: rep.Error, ErrorType: rep.ErrorType,
	})
}

// addUsage adds a run's GPU time and its estimated cost to the totals.
func (b *batch) addUsage(deployment string, rep ItemReport) {
	b.st.GPUSecs += rep.GPUSeconds
	if m := b.member(deployment); m != nil {
		m.GPUSecs += rep.GPUSeconds
	}
	b.st.CostUSD += rep.GPUSeconds / 3600 * b.in.Budget.GPUPricePerHour[b.gpuOf(deployment, rep.GPU)]
}

// gpuOf names the GPU a run used: as reported, else the deployment's,
// else the batch default.
func (b *batch) gpuOf(deployment, reported string) string {
	if reported != "" {
		return reported
	}
	if m := b.member(deployment); m != nil && m.Preflight != nil && m.Preflight.GPU != "" {
		return m.Preflight.GPU
	}
	return b.in.Defaults.GPU
}

// record ends an item: counters, its results line, and the stop policies.
func (b *batch) record(f Flight, inputs map[string]any, line activities.BatchItemResult) {
	line.Index, line.Line, line.Inputs, line.WorkflowID = f.Index, f.Line, inputs, b.childID(f.Index)
	if line.DeploymentID == "" {
		line.DeploymentID = f.Deployment
	}
	if len(f.Tried) > 0 {
		line.Deployments = append(slices.Clone(f.Tried), line.DeploymentID)
	}
	m := b.member(f.Deployment)
	switch line.Status {
	case activities.ItemSucceeded:
		b.st.Succeeded++
		if m != nil {
			m.Succeeded++
		}
	case activities.ItemSkipped:
		b.st.Skipped++
		line.WorkflowID, line.DeploymentID = b.childID(f.Index), ""
	case activities.ItemCancelled:
		b.st.Cancelled++
	default:
		line.Status = activities.ItemFailed
		b.st.Failed++
		if m != nil {
			m.Failed++
			// A run that failed for a reason other than its own inputs may
			// mean the machine changed state: check the deployment again.
			m.Recheck = m.Recheck || line.ErrorType != preflight.KindInvalidInput
		}
	}
	b.st.Unflushed = append(b.st.Unflushed, line)
	b.applyPolicies()
	if b.sinceShown++; b.sinceShown >= detailsEvery || b.done() {
		b.showDetails(b.ctx)
	}
}

// applyPolicies stops new items once the failure policy or the budget says so.
func (b *batch) applyPolicies() {
	if b.st.StoppedBy != "" || b.st.CancelAsked {
		return
	}
	fp, bu := b.in.FailurePolicy, b.in.Budget
	ended := b.st.Succeeded + b.st.Failed
	sample := fp.MinSample
	if sample == 0 {
		sample = DefaultFailureSample
	}
	switch {
	case fp.MaxFailures > 0 && b.st.Failed >= fp.MaxFailures,
		fp.MaxFailureRatio > 0 && ended >= sample && float64(b.st.Failed) > fp.MaxFailureRatio*float64(ended):
		b.st.StoppedBy = StoppedByFailures
	case bu.MaxGPUSeconds > 0 && b.st.GPUSecs >= bu.MaxGPUSeconds,
		bu.MaxCostUSD > 0 && b.st.CostUSD >= bu.MaxCostUSD:
		b.st.StoppedBy = StoppedByBudget
	default:
		return
	}
	b.logger.Info("Batch stops starting new items", "StoppedBy", b.st.StoppedBy, "Failed", b.st.Failed, "GPUSeconds", b.st.GPUSecs)
	b.setPhase(b.ctx, BatchPhaseStopping)
}

// choose picks the ready deployment with the fewest runs in flight relative
// to its concurrency limit (unknown limits count as equal), skipping the
// excluded ones; ties go to the earlier deployment in the pool.
func (b *batch) choose(exclude []string) *PoolMember {
	var best *PoolMember
	bestLoad, bestLimit := 0, 1
	for i := range b.st.Pool {
		m := &b.st.Pool[i]
		if m.Preflight == nil || slices.Contains(exclude, m.DeploymentID) {
			continue
		}
		load, limit := 0, max(m.Preflight.ConcurrencyLimit, 1)
		for _, f := range b.st.InFlight {
			if f.Deployment == m.DeploymentID {
				load++
			}
		}
		if best == nil || load*bestLimit < bestLoad*limit {
			best, bestLoad, bestLimit = m, load, limit
		}
	}
	return best
}

func (b *batch) member(deployment string) *PoolMember {
	for i := range b.st.Pool {
		if b.st.Pool[i].DeploymentID == deployment {
			return &b.st.Pool[i]
		}
	}
	return nil
}

func (b *batch) flightAt(index, dispatch int) int {
	for i, f := range b.st.InFlight {
		if f.Index == index && f.Dispatch == dispatch {
			return i
		}
	}
	return -1
}

// readyRequeue finds a moved item whose previous dispatch has closed.
func (b *batch) readyRequeue() (int, bool) {
	now := workflow.Now(b.ctx)
	for i, rq := range b.st.Requeued {
		if !rq.NotBefore.After(now) {
			return i, true
		}
	}
	return 0, false
}

// nextRequeue is how long until the next moved item may start.
func (b *batch) nextRequeue() (time.Duration, bool) {
	if len(b.st.Requeued) == 0 {
		return 0, false
	}
	first := b.st.Requeued[0].NotBefore
	for _, rq := range b.st.Requeued[1:] {
		if rq.NotBefore.Before(first) {
			first = rq.NotBefore
		}
	}
	return max(first.Sub(workflow.Now(b.ctx)), time.Second), true
}

func (b *batch) childID(index int) string { return b.id + "/" + strconv.Itoa(index) }

// itemKey identifies one dispatch of an item in reports: "<index>.<dispatch>".
func itemKey(index, dispatch int) string { return strconv.Itoa(index) + "." + strconv.Itoa(dispatch) }

func parseItemKey(key string) (index, dispatch int, ok bool) {
	i, d, found := strings.Cut(key, ".")
	index, err1 := strconv.Atoi(i)
	dispatch, err2 := strconv.Atoi(d)
	return index, dispatch, found && err1 == nil && err2 == nil
}

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

// cancelInFlight asks every running child to cancel (its remote run too);
// they report "cancelled" and the batch ends when all have. A child that
// ended meanwhile makes its request fail, which is fine.
func (b *batch) cancelInFlight() {
	b.cancelSent = true
	for _, f := range b.st.InFlight {
		if !b.unstarted[f.Index] {
			b.cancelChild(f.Index)
		}
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
	b.st.Parts = part
	// Lines recorded while the part was written stay for the next one.
	b.st.Unflushed = slices.Clone(b.st.Unflushed[len(lines):])
	return nil
}

func (b *batch) drainSignals() {
	for _, drain := range b.drains {
		drain()
	}
}

// continueAsNew hands the batch to a fresh run: it waits for pending child
// starts (their futures do not survive), applies buffered signals, writes
// the results so far, and lets update handlers finish.
func (b *batch) continueAsNew(ctx workflow.Context) (*ComfyBatchResult, error) {
	_ = workflow.Await(b.ctx, func() bool { return b.starting == 0 && b.rechecking == 0 })
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
	b.logger.Info("Continuing as new", "Taken", b.takenHere, "InFlight", len(b.st.InFlight), "Next", b.st.Cursor.Index+b.st.Taken)
	return nil, workflow.NewContinueAsNewError(ctx, ComfyBatchWorkflow, next)
}

// askToReport asks the children this run started, which report only when
// asked, to report by signal, and waits until each ask is delivered (the
// child will then report to the next run) or the child has ended (its
// completion reaches this run). Asks go out in chunks, to stay far below
// the limit of pending outgoing signals of one workflow.
func (b *batch) askToReport() {
	if !b.whenAsked {
		return
	}
	const chunk = 200
	var flights []Flight
	for _, f := range b.st.InFlight {
		if b.watched[f.Index] { // an earlier run's children report already
			flights = append(flights, f)
		}
	}
	for len(flights) > 0 {
		n := min(chunk, len(flights))
		pending := n
		for _, f := range flights[:n] {
			future := workflow.SignalExternalWorkflow(b.ctx, b.childID(f.Index), "", AskReportSignal, nil)
			workflow.Go(b.ctx, func(ctx workflow.Context) {
				defer func() { pending-- }()
				if err := future.Get(ctx, nil); err != nil {
					// The child ended meanwhile: wait for its completion.
					b.logger.Debug("Ask to report not delivered", "Index", f.Index, "Error", err)
					_ = workflow.Await(ctx, func() bool { return b.flightAt(f.Index, f.Dispatch) < 0 })
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

// finish records moved items that never restarted, writes the results
// manifest and returns the summary.
func (b *batch) finish(ctx workflow.Context) (*ComfyBatchResult, error) {
	for _, rq := range b.st.Requeued {
		status, msg := activities.ItemFailed, rq.Error
		if b.st.CancelAsked {
			status, msg = activities.ItemCancelled, "batch cancelled before the item moved to another deployment"
		}
		b.record(rq.Flight, rq.Inputs, activities.BatchItemResult{Status: status, RunIDs: rq.RunIDs, Error: msg, ErrorType: ErrTypeRunTimedOut})
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
	res := b.result(manifest.Path)
	b.setPhase(b.ctx, res.Status)
	if b.st.WorkflowCancelled {
		return nil, temporal.NewCanceledError(res)
	}
	return res, nil
}

func (b *batch) result(resultsPath string) *ComfyBatchResult {
	st := b.st
	res := &ComfyBatchResult{
		BatchID: b.id, StoppedBy: st.StoppedBy, Error: st.SourceError, Total: st.Total,
		Succeeded: st.Succeeded, Failed: st.Failed, Skipped: st.Skipped, Cancelled: st.Cancelled, Moved: st.Moved,
		GPUSeconds: st.GPUSecs, EstimatedCostUSD: st.CostUSD, ResultsPath: resultsPath,
		PerDeployment: []DeploymentSummary{},
	}
	if st.Total > 0 {
		res.NotStarted = max(st.Total-b.ended(), 0)
	}
	switch {
	case st.CancelAsked:
		res.Status = BatchCancelled
	case st.StoppedBy != "":
		res.Status = BatchStopped
	case st.Failed > 0 || st.Cancelled > 0:
		res.Status = BatchCompletedWithFailures
	default:
		res.Status = BatchSucceeded
	}
	for _, m := range st.Pool {
		s := DeploymentSummary{DeploymentID: m.DeploymentID, Error: m.Error, Served: m.Served,
			Succeeded: m.Succeeded, Failed: m.Failed, Moved: m.Moved, GPUSeconds: m.GPUSecs}
		if m.Preflight != nil {
			s.MachineName = m.Preflight.MachineName
		}
		res.PerDeployment = append(res.PerDeployment, s)
	}
	return res
}

func (b *batch) ended() int {
	return b.st.Succeeded + b.st.Failed + b.st.Skipped + b.st.Cancelled
}
