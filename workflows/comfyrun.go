package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/activities"
)

// Stable names: callers start, query and search by them.
const (
	ComfyRunWorkflow = "ComfyRun"
	StatusQuery      = "status"
)

// Application error types with which a ComfyRun fails after its run(s)
// ended without success. Preflight rejections keep their own types
// (preflight.Kind*), and malformed input fails with ErrTypeInvalidWorkflowInput.
const (
	ErrTypeRunFailed    = "RunFailed"
	ErrTypeRunTimedOut  = "RunTimedOut"
	ErrTypeRunCancelled = "RunCancelled" // cancelled outside this workflow, e.g. in the dashboard
)

// a refers to the activities; Temporal resolves the methods by name.
var a *activities.Activities

// ComfyRun drives one ComfyDeploy run durably: preflight, submit once,
// wait with heartbeats, resubmit failed or timed-out runs per the retry
// policy, and collect outputs before their URLs expire. Cancelling the
// workflow cancels the remote run.
func ComfyRun(ctx workflow.Context, in ComfyRunInput) (*ComfyRunResult, error) {
	r := &comfyRun{in: in}
	rp := newReporter(ctx, in.ReportTo)
	res, err := r.execute(ctx)
	err = rp.result(&r.result, err)
	rp.report(ctx, r, err)
	return res, err
}

func (r *comfyRun) execute(ctx workflow.Context) (*ComfyRunResult, error) {
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	return r.run(ctx)
}

type comfyRun struct {
	in     ComfyRunInput
	logger log.Logger
	status RunStatus
	result ComfyRunResult
	pre    *activities.PreflightResult
	// pending is the submission whose outcome is not yet known; a cancel
	// looks it up by its correlation token.
	pending *activities.Attempt
	// shownStatus is the ComfyStatus search attribute last upserted.
	shownStatus string
	// slotAsked is true from asking the deployment gate for a slot until
	// the slot is released.
	slotAsked bool
}

func (r *comfyRun) setup(ctx workflow.Context) error {
	info := workflow.GetInfo(ctx)
	r.logger = log.With(workflow.GetLogger(ctx), "DeploymentId", r.in.DeploymentID)
	r.status = RunStatus{
		Phase:        PhasePreflight,
		DeploymentID: r.in.DeploymentID,
		MaxAttempts:  r.in.Retry.maxAttempts(),
		Attempts:     []activities.Attempt{},
	}
	r.result = ComfyRunResult{WorkflowID: info.WorkflowExecution.ID, DeploymentID: r.in.DeploymentID, Attempts: []activities.Attempt{}}

	err := workflow.SetQueryHandlerWithOptions(ctx, StatusQuery, func() (RunStatus, error) { return r.status, nil },
		workflow.QueryHandlerOptions{Description: "Phase, ComfyDeploy run id, status, progress, live status, attempts and outputs"})
	if err != nil {
		return err
	}
	if err := r.in.validate(); err != nil {
		r.status.Phase, r.status.Error = PhaseFailed, err.Error()
		r.upsert(ctx, "rejected") // findable like any other rejected run
		return err
	}

	progress := workflow.GetSignalChannel(ctx, activities.ProgressSignal)
	workflow.Go(ctx, func(ctx workflow.Context) {
		var u activities.ProgressUpdate
		for progress.Receive(ctx, &u) {
			r.onProgress(ctx, u)
		}
	})
	r.upsert(ctx, statusPending)
	r.showDetails(ctx)
	return nil
}

func (r *comfyRun) run(ctx workflow.Context) (*ComfyRunResult, error) {
	pre, err := r.preflight(ctx)
	if err != nil {
		if temporal.IsCanceledError(err) {
			return r.cancelled(ctx)
		}
		r.upsert(ctx, "rejected")
		return nil, r.fail(ctx, err)
	}
	r.pre = pre
	r.status.MachineName = pre.MachineName
	r.result.MachineID, r.result.MachineName = pre.MachineID, pre.MachineName

	for n := 1; ; n++ {
		err := r.acquireSlot(ctx)
		var att *activities.Attempt
		if err == nil {
			att, err = r.attempt(ctx, n)
			r.releaseSlot(ctx)
		}
		if err != nil {
			if temporal.IsCanceledError(err) || errors.Is(ctx.Err(), workflow.ErrCanceled) {
				return r.cancelled(ctx)
			}
			return nil, r.fail(ctx, err)
		}
		if att.Status == "success" {
			break
		}
		if n >= r.in.Retry.maxAttempts() || !r.in.Retry.retries(att.Status, att.DeadlineExceeded) {
			return nil, r.fail(ctx, r.unsuccessful(att))
		}
		r.logger.Info("Run did not succeed; resubmitting", "Attempt", n, "Status", att.Status, "Deadline", att.DeadlineExceeded)
	}

	if !r.in.Outputs.Skip {
		if err := r.collect(ctx); err != nil {
			if temporal.IsCanceledError(err) {
				return r.cancelled(ctx)
			}
			return nil, r.fail(ctx, err)
		}
	}
	r.setPhase(ctx, PhaseSucceeded)
	return &r.result, nil
}

func (r *comfyRun) preflight(ctx workflow.Context) (*activities.PreflightResult, error) {
	if r.in.Preflight != nil && r.in.Preflight.DeploymentID == r.in.DeploymentID {
		return r.in.Preflight, nil
	}
	ctx = workflow.WithActivityOptions(ctx, preflightOptions("Preflight deployment "+r.in.DeploymentID, preflightAttempts))
	var pre activities.PreflightResult
	err := workflow.ExecuteActivity(ctx, a.Preflight, activities.PreflightRequest{
		DeploymentID: r.in.DeploymentID, Inputs: r.in.Inputs,
	}).Get(ctx, &pre)
	return &pre, err
}

// attempt submits one run and waits for it to end. The run id is recorded
// in workflow state (and so in history) the moment submit returns, so no
// later step ever submits it again.
func (r *comfyRun) attempt(ctx workflow.Context, n int) (*activities.Attempt, error) {
	info := workflow.GetInfo(ctx)
	att := activities.Attempt{
		Number:           n,
		CorrelationToken: activities.CorrelationToken(info.WorkflowExecution.ID, info.WorkflowExecution.RunID, n),
		SubmittedAt:      workflow.Now(ctx),
	}
	r.status.Attempt, r.status.RunID, r.status.Status, r.status.Progress, r.status.LiveStatus = n, "", "", 0, ""
	r.pending = &att
	r.setPhase(ctx, PhaseSubmitting)

	submitCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             fmt.Sprintf("Submit attempt %d to deployment %s", n, r.in.DeploymentID),
		StartToCloseTimeout: 2 * time.Minute,
		// Wait for a cancelled submit to finish, so a run it created is
		// known and can be cancelled rather than left running.
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			// Longer than the server's dispatch retries (about 25 s), so a
			// slow submission has landed before the next attempt looks for it.
			InitialInterval: 5 * time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 6,
		},
	})
	var sub activities.SubmitResult
	err := workflow.ExecuteActivity(submitCtx, a.Submit, activities.SubmitRequest{
		DeploymentID: r.in.DeploymentID, Inputs: r.in.Inputs, GPU: r.in.GPU,
		ComfyWorkflowID: r.pre.ComfyWorkflowID, CorrelationToken: att.CorrelationToken, SubmittedAt: att.SubmittedAt,
	}).Get(submitCtx, &sub)
	if err != nil {
		att.Error = err.Error()
		r.recordAttempt(att)
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == activities.ErrTypeSubmitUnconfirmed {
			// Every try's outcome stayed unknown: a run may exist that no
			// one waits for. Cancel it by its token rather than pay for it.
			r.cancelRemote(ctx, "submission outcome unknown")
		}
		return nil, err
	}
	att.RunID, att.Reconciled, att.Status = sub.RunID, sub.Reconciled, "not-started"
	r.pending = nil
	r.status.RunID, r.status.Status = sub.RunID, att.Status
	r.result.RunID = sub.RunID
	r.recordAttempt(att)
	r.upsertRun(ctx, sub.RunID, att.Status)
	r.setPhase(ctx, PhaseWaiting)

	awaitCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             "Wait for run " + sub.RunID,
		StartToCloseTimeout: 48 * time.Hour,
		HeartbeatTimeout:    r.heartbeatTimeout(),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
		},
	})
	var res activities.AwaitResult
	err = workflow.ExecuteActivity(awaitCtx, a.AwaitRun, activities.AwaitRequest{
		RunID: sub.RunID, SubmittedAt: att.SubmittedAt,
		PollInterval: r.in.PollInterval.D(), QueueTimeout: r.in.QueueTimeout.D(), ExecutionTimeout: r.in.ExecutionTimeout.D(),
		CanCancel: r.pre.CanCancel,
		// A batch item reports to its batch; per-item progress signals would
		// cost thousands of workflow tasks for a view nobody watches.
		QuietProgress: r.in.ReportTo != nil,
	}).Get(awaitCtx, &res)
	if err != nil {
		att.Error = err.Error()
		r.recordAttempt(att)
		return nil, err
	}
	att.Status, att.DeadlineExceeded, att.Error = res.Status, res.DeadlineExceeded, res.Message
	att.EndedAt, att.QueueSeconds, att.RunSeconds, att.GPU = workflow.Now(ctx), res.QueueSeconds, res.RunSeconds, res.GPU
	r.status.Status, r.status.LiveStatus = res.Status, res.LiveStatus
	if res.Status == "success" {
		r.status.Progress = 1
	}
	r.result.Status = res.Status
	r.recordAttempt(att)
	r.upsert(ctx, res.Status)
	return &att, nil
}

// heartbeatTimeout lets a few polls be missed before a lost worker is
// noticed, and never less than 20 s so heartbeat throttling stays sane.
func (r *comfyRun) heartbeatTimeout() time.Duration {
	return max(3*r.in.PollInterval.D(), 20*time.Second)
}

func (r *comfyRun) collect(ctx workflow.Context) error {
	r.setPhase(ctx, PhaseCollecting)
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             "Collect outputs of run " + r.result.RunID,
		StartToCloseTimeout: 30 * time.Minute,
		HeartbeatTimeout:    2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 2 * time.Second, MaximumInterval: time.Minute, MaximumAttempts: 8},
	})
	var out activities.CollectResult
	err := workflow.ExecuteActivity(ctx, a.CollectOutputs, activities.CollectRequest{
		RunID: r.result.RunID, Folder: r.in.Outputs.Folder, WorkflowID: r.result.WorkflowID,
		DeploymentID: r.in.DeploymentID, MachineID: r.pre.MachineID, MachineName: r.pre.MachineName,
		Inputs: r.in.Inputs, Labels: r.in.Labels, Attempts: r.result.Attempts,
	}).Get(ctx, &out)
	if err != nil {
		return err
	}
	r.result.Outputs, r.result.Texts = out.Outputs, out.Texts
	r.result.OutputFolder, r.result.ManifestPath = out.Folder, out.ManifestPath
	r.status.Outputs, r.status.ManifestPath = out.Outputs, out.ManifestPath
	return nil
}

// cancelled runs after the workflow was cancelled: it cancels the remote
// run on a disconnected context (the workflow's own context is already
// cancelled) and ends the workflow as cancelled, with the report as details.
func (r *comfyRun) cancelled(ctx workflow.Context) (*ComfyRunResult, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	defer r.releaseSlot(dctx)
	r.setPhase(dctx, PhaseCancelling)
	r.cancelRemote(dctx, "workflow cancelled")
	if r.result.Status == "" {
		r.result.Status = "cancelled"
	}
	r.upsert(dctx, "cancelled")
	r.setPhase(dctx, PhaseCancelled)
	return nil, temporal.NewCanceledError(r.result)
}

// cancelRemote cancels the current attempt's ComfyDeploy run, found by its
// run id or, when the submission's outcome is unknown, by its correlation
// token. It runs on a disconnected context so it works after cancellation.
func (r *comfyRun) cancelRemote(ctx workflow.Context, why string) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	req := activities.CancelRequest{RunID: r.status.RunID}
	if req.RunID == "" && r.pending != nil && r.pre != nil {
		req.ComfyWorkflowID, req.CorrelationToken = r.pre.ComfyWorkflowID, r.pending.CorrelationToken
	}
	if req.RunID != "" || req.CorrelationToken != "" {
		actx := workflow.WithActivityOptions(dctx, workflow.ActivityOptions{
			Summary:             "Cancel run " + req.RunID,
			StartToCloseTimeout: 5 * time.Minute,
			HeartbeatTimeout:    r.heartbeatTimeout(),
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 2 * time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 5},
		})
		var res activities.CancelResult
		if err := workflow.ExecuteActivity(actx, a.CancelRun, req).Get(actx, &res); err != nil {
			res = activities.CancelResult{RunID: req.RunID, Message: "cancelling the remote run failed: " + err.Error()}
		}
		r.result.Cancel = &res
		if res.FinalStatus != "" {
			r.status.Status, r.result.Status = res.FinalStatus, res.FinalStatus
		}
		if n := len(r.result.Attempts); n > 0 {
			last := &r.result.Attempts[n-1]
			last.Status = cmp.Or(res.FinalStatus, last.Status)
			last.Error = why + ": " + res.Message
		}
		r.logger.Info("Cancelled the remote run", "RunId", res.RunID, "CancelSupported", res.Supported, "FinalStatus", res.FinalStatus)
	}
}

func (r *comfyRun) unsuccessful(att *activities.Attempt) error {
	kind := ErrTypeRunFailed
	switch {
	case att.DeadlineExceeded != "" || att.Status == "timeout":
		kind = ErrTypeRunTimedOut
	case att.Status == "cancelled":
		kind = ErrTypeRunCancelled
	}
	msg := fmt.Sprintf("run %s ended %q after %d attempt(s)", att.RunID, att.Status, att.Number)
	if att.Error != "" {
		msg += ": " + att.Error
	}
	r.result.Error = msg
	return temporal.NewNonRetryableApplicationError(msg, kind, nil, r.result)
}

func (r *comfyRun) fail(ctx workflow.Context, err error) error {
	r.status.Error = err.Error()
	r.result.Error = err.Error()
	r.setPhase(ctx, PhaseFailed)
	return err
}

func (r *comfyRun) recordAttempt(att activities.Attempt) {
	if i := att.Number - 1; i < len(r.result.Attempts) {
		r.result.Attempts[i] = att
	} else {
		r.result.Attempts = append(r.result.Attempts, att)
	}
	r.status.Attempts = r.result.Attempts
}

func (r *comfyRun) onProgress(ctx workflow.Context, u activities.ProgressUpdate) {
	if u.RunID != r.status.RunID || r.status.Phase != PhaseWaiting {
		return // a late update from an earlier attempt
	}
	r.status.Status, r.status.Progress, r.status.LiveStatus = u.Status, u.Progress, u.LiveStatus
	r.showDetails(ctx)
}

func (r *comfyRun) setPhase(ctx workflow.Context, phase string) {
	r.status.Phase = phase
	r.showDetails(ctx)
}
