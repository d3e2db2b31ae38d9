package activities

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/comfy"
)

// ProgressSignal is the signal through which AwaitRun reports progress to
// its workflow. Updates are sent on status changes and at most once per
// ProgressStep of progress, so history grows by a bounded number of events
// per run however long it takes.
const ProgressSignal = "comfy-progress"

// ProgressStep is the progress increment that triggers a ProgressSignal.
const ProgressStep = 0.1

// ProgressUpdate is the payload of ProgressSignal.
type ProgressUpdate struct {
	RunID      string  `json:"run_id"`
	Status     string  `json:"status"`
	Progress   float64 `json:"progress"`
	LiveStatus string  `json:"live_status,omitempty"`
}

// AwaitRequest names a submitted run and how long to wait for it.
type AwaitRequest struct {
	RunID string `json:"run_id"`
	// SubmittedAt starts the queue deadline: cold start counts as queueing.
	SubmittedAt  time.Time     `json:"submitted_at"`
	PollInterval time.Duration `json:"poll_interval,omitempty"`
	// QueueTimeout bounds not-started/queued/started; ExecutionTimeout bounds
	// running. Zero means the worker's default.
	QueueTimeout     time.Duration `json:"queue_timeout,omitempty"`
	ExecutionTimeout time.Duration `json:"execution_timeout,omitempty"`
	// CanCancel says whether the machine type supports cancel, so a passed
	// deadline cancels the remote run instead of abandoning it.
	CanCancel bool `json:"can_cancel"`
	// QuietProgress turns the ProgressSignal off: each signal costs the
	// workflow a task, and a batch's items are watched through the batch.
	// Progress stays visible in the heartbeat details either way.
	QuietProgress bool `json:"quiet_progress,omitempty"`
}

// Deadline names which of our deadlines ended a wait.
const (
	DeadlineQueue     = "queue"
	DeadlineExecution = "execution"
)

// AwaitResult is the final state of a run.
type AwaitResult struct {
	RunID      string `json:"run_id"`
	Status     string `json:"status"`
	LiveStatus string `json:"live_status,omitempty"`
	// DeadlineExceeded is DeadlineQueue or DeadlineExecution when one of our
	// deadlines ended the wait; Status then says whether the cancel took.
	DeadlineExceeded string  `json:"deadline_exceeded,omitempty"`
	Message          string  `json:"message,omitempty"`
	GPU              string  `json:"gpu,omitempty"`
	QueueSeconds     float64 `json:"queue_seconds"`
	RunSeconds       float64 `json:"run_seconds"`
}

// PollState is the heartbeat detail of AwaitRun. A retried attempt, for
// example after a worker crash, resumes from it: same run, same deadlines.
type PollState struct {
	RunID        string    `json:"run_id"`
	Status       string    `json:"status"`
	Progress     float64   `json:"progress"`
	LiveStatus   string    `json:"live_status,omitempty"`
	RunningSince time.Time `json:"running_since,omitzero"`
	Polls        int       `json:"polls"`
	// Reported is the last state sent to the workflow.
	Reported ProgressUpdate `json:"reported"`
}

// AwaitRun polls GET /run/{id} until the run is terminal or a deadline
// passes, heartbeating its state on every poll; a webhook saying the run
// ended (see Wakeups) makes it poll at once. It is one long activity, so
// history stays constant however long the run takes; cancellation and worker
// loss reach it through the heartbeat.
func (a *Activities) AwaitRun(ctx context.Context, req AwaitRequest) (*AwaitResult, error) {
	if req.RunID == "" {
		return nil, temporal.NewNonRetryableApplicationError("run_id is required", ErrTypeInvalidRequest, nil)
	}
	interval := a.pollInterval(req.PollInterval)
	queueTimeout := firstPositive(req.QueueTimeout, a.QueueTimeout, DefaultQueueTimeout)
	execTimeout := firstPositive(req.ExecutionTimeout, a.ExecutionTimeout, DefaultExecutionTimeout)

	state := PollState{RunID: req.RunID}
	if activity.HasHeartbeatDetails(ctx) {
		var prev PollState
		if err := activity.GetHeartbeatDetails(ctx, &prev); err == nil && prev.RunID == req.RunID {
			state = prev
			activity.GetLogger(ctx).Info("Resuming run from heartbeat", "RunId", req.RunID, "Status", prev.Status, "Progress", prev.Progress)
		}
	}

	var wake <-chan struct{} // nil without webhooks: never ready
	if a.Wakeups != nil {
		var stop func()
		wake, stop = a.Wakeups.Watch(req.RunID)
		defer stop()
	}

	for {
		run, err := a.Comfy.Runs.Get(ctx, req.RunID, nil)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case comfy.IsNotFound(err):
			return nil, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("run %s is unknown to ComfyDeploy (deleted, or another organisation's key?)", req.RunID), ErrTypeRunNotFound, nil)
		case comfy.IsRetryable(err):
			// A blip in the API does not end a paid run's wait; keep polling
			// and let the heartbeat show the last good state.
			activity.GetLogger(ctx).Warn("Polling run failed; will retry", "RunId", req.RunID, "Error", err)
		default:
			return nil, classify("get run "+req.RunID, err)
		}

		now := time.Now()
		if run != nil {
			state.observe(run, now)
			if !req.QuietProgress {
				a.report(ctx, &state)
			}
			if run.Status.IsTerminal() {
				activity.RecordHeartbeat(ctx, state)
				return a.ended(ctx, run), nil
			}
		}
		activity.RecordHeartbeat(ctx, state)

		if deadline, limit := state.passedDeadline(req.SubmittedAt, now, queueTimeout, execTimeout); deadline != "" {
			return a.abandon(ctx, req, run, deadline, limit)
		}

		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(jitter(interval)):
		case <-wake:
		}
	}
}

// ended is the result of a run that reached a terminal status.
func (a *Activities) ended(ctx context.Context, run *comfy.Run) *AwaitResult {
	res := resultOf(run, "")
	if run.Status == comfy.StatusFailed || run.Status == comfy.StatusTimeout {
		res.Message = a.failureReason(ctx, run.ID)
	}
	return res
}

func (s *PollState) observe(run *comfy.Run, now time.Time) {
	s.Status = string(run.Status)
	s.Progress = run.Progress
	s.LiveStatus = run.LiveStatus
	s.Polls++
	if s.RunningSince.IsZero() && (run.Status == comfy.StatusRunning || run.Status == comfy.StatusUploading) {
		s.RunningSince = now
	}
}

// passedDeadline reports which deadline, if any, has passed. Time spent in
// cold start counts toward the queue deadline because ComfyDeploy bills
// nothing useful for it and users want it bounded separately.
func (s *PollState) passedDeadline(submitted, now time.Time, queueTimeout, execTimeout time.Duration) (string, time.Duration) {
	if s.RunningSince.IsZero() {
		if !submitted.IsZero() && now.Sub(submitted) > queueTimeout {
			return DeadlineQueue, queueTimeout
		}
		return "", 0
	}
	if now.Sub(s.RunningSince) > execTimeout {
		return DeadlineExecution, execTimeout
	}
	return "", 0
}

// abandon ends a wait whose deadline passed: it cancels the remote run where
// the machine type allows, so it stops billing, and reports what happened.
func (a *Activities) abandon(ctx context.Context, req AwaitRequest, run *comfy.Run, deadline string, limit time.Duration) (*AwaitResult, error) {
	msg := fmt.Sprintf("%s deadline of %s passed", deadline, limit)
	if !req.CanCancel {
		res := resultOf(run, deadline)
		res.RunID = req.RunID // run is nil when the last poll failed
		res.Message = msg + "; this machine type cannot cancel, so the run may keep going on ComfyDeploy"
		return res, nil
	}
	cancelled, err := a.cancelAndWait(ctx, req.RunID)
	if err != nil {
		return nil, err
	}
	res := resultOf(cancelled.run, deadline)
	res.Message = msg + "; " + cancelled.Message
	return res, nil
}

func resultOf(run *comfy.Run, deadline string) *AwaitResult {
	if run == nil {
		return &AwaitResult{DeadlineExceeded: deadline}
	}
	res := &AwaitResult{
		RunID:            run.ID,
		Status:           string(run.Status),
		LiveStatus:       run.LiveStatus,
		DeadlineExceeded: deadline,
		GPU:              run.GPU,
	}
	if run.ColdStartDurationTotal != nil {
		res.QueueSeconds = *run.ColdStartDurationTotal
	}
	if run.RunDuration != nil {
		res.RunSeconds = *run.RunDuration
	}
	return res
}

// report sends a ProgressUpdate when the status changed or progress moved by
// at least ProgressStep since the last report.
func (a *Activities) report(ctx context.Context, s *PollState) {
	if a.Signaler == nil {
		return
	}
	u := ProgressUpdate{RunID: s.RunID, Status: s.Status, Progress: s.Progress, LiveStatus: s.LiveStatus}
	last := s.Reported
	if u.Status == last.Status && u.Progress-last.Progress < ProgressStep && !(u.Progress == 1 && last.Progress < 1) {
		return
	}
	info := activity.GetInfo(ctx)
	sigCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := a.Signaler.SignalWorkflow(sigCtx, info.WorkflowExecution.ID, info.WorkflowExecution.RunID, ProgressSignal, u)
	if err != nil {
		// Progress is a view, not a result: a lost update must not fail the run.
		if !errors.Is(err, context.Canceled) {
			activity.GetLogger(ctx).Warn("Could not report progress", "Error", err)
		}
		return
	}
	s.Reported = u
}

// jitter spreads polls of many concurrent runs by ±20%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d - d/5 + rand.N(2*d/5+1)
}

// failureReason reads why a run failed from its logs, the only place
// ComfyDeploy keeps it (error payloads are dropped from outputs). It is
// best effort: a run's result never waits on or fails for its logs.
func (a *Activities) failureReason(ctx context.Context, runID string) string {
	logs, err := a.Comfy.Runs.ArchivedLogs(ctx, runID)
	if err != nil {
		return ""
	}
	var reasons []string
	for _, l := range logs {
		if l.LogType == "error" && strings.TrimSpace(l.Log) != "" {
			reasons = append(reasons, strings.TrimSpace(l.Log))
		}
	}
	if len(reasons) > 2 {
		reasons = reasons[len(reasons)-2:]
	}
	reason := strings.Join(reasons, " | ")
	if len(reason) > 400 {
		reason = reason[:400] + "…"
	}
	return reason
}
