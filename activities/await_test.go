package activities_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
)

func await(t *testing.T, env *testsuite.TestActivityEnvironment, a *activities.Activities, req activities.AwaitRequest) activities.AwaitResult {
	t.Helper()
	val, err := env.ExecuteActivity(a.AwaitRun, req)
	require.NoError(t, err)
	var res activities.AwaitResult
	require.NoError(t, val.Get(&res))
	return res
}

// heartbeats records the PollState of the heartbeats that reach the test
// environment (it throttles them, so usually only the first).
type heartbeats struct {
	mu     sync.Mutex
	states []activities.PollState
}

func (hb *heartbeats) listen(_ *activity.Info, details converter.EncodedValues) {
	var ps activities.PollState
	if details.Get(&ps) == nil && ps.RunID != "" {
		hb.mu.Lock()
		hb.states = append(hb.states, ps)
		hb.mu.Unlock()
	}
}

func (hb *heartbeats) all() []activities.PollState {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return append([]activities.PollState(nil), hb.states...)
}

func TestAwaitRunSuccess(t *testing.T) {
	h := newHarness(t)
	submitted := time.Now()
	id := h.queue(comfytest.DeploymentTxt2Img, "tok-await", txt2imgInputs)
	env := h.env()
	var hb heartbeats
	env.SetOnActivityHeartbeatListener(hb.listen)
	res := await(t, env, h.acts, activities.AwaitRequest{RunID: id, SubmittedAt: submitted, CanCancel: true})

	assert.Equal(t, id, res.RunID)
	assert.Equal(t, string(comfy.StatusSuccess), res.Status)
	assert.Empty(t, res.DeadlineExceeded)
	assert.Equal(t, "A10G", res.GPU)
	assert.Greater(t, res.QueueSeconds, 0.0, "cold start should be reported")
	assert.Greater(t, res.RunSeconds, 0.0, "run duration should be reported")

	// The test environment throttles heartbeats (30s without a heartbeat
	// timeout, not configurable there), so only the first one is seen.
	states := hb.all()
	require.NotEmpty(t, states)
	assert.Equal(t, id, states[0].RunID)
	assert.Equal(t, 1, states[0].Polls)
	assert.Zero(t, h.srv.Counters().Cancels)
}

func TestAwaitRunFailedRun(t *testing.T) {
	h := newHarness(t, withSimOptions(func(o *comfytest.Options) {
		o.Faults = comfytest.Faults{RunFailureRate: 1}
	}))
	id := h.queue(comfytest.DeploymentTxt2Img, "", txt2imgInputs)
	res := await(t, h.env(), h.acts, activities.AwaitRequest{RunID: id, SubmittedAt: time.Now(), CanCancel: true})
	assert.Equal(t, id, res.RunID)
	assert.Equal(t, string(comfy.StatusFailed), res.Status)
	assert.Empty(t, res.DeadlineExceeded)
	assert.Contains(t, res.Message, "Error occurred when executing", "the reason comes from the run's error logs")
}

func TestAwaitRunDeploymentTimeout(t *testing.T) {
	h := newHarness(t)
	// The seeded slow deployment renders for 10s against a 2s run_timeout;
	// a shorter run_timeout keeps the test fast with the same outcome.
	require.NoError(t, h.srv.ConfigureDeployment(comfytest.DeploymentSlowTimeout, comfytest.DeploymentSettings{RunTimeout: 300 * time.Millisecond}))
	id := h.queue(comfytest.DeploymentSlowTimeout, "", map[string]any{"prompt": "slow"})
	res := await(t, h.env(), h.acts, activities.AwaitRequest{RunID: id, SubmittedAt: time.Now(), CanCancel: true})
	assert.Equal(t, string(comfy.StatusTimeout), res.Status)
	assert.Empty(t, res.DeadlineExceeded, "ComfyDeploy's own run_timeout is not one of our deadlines")
	assert.Zero(t, h.srv.Counters().Cancels)
}

func TestAwaitRunQueueDeadlineCancels(t *testing.T) {
	h := newHarness(t)
	h.srv.SetTiming(comfytest.DeploymentTxt2Img, comfytest.Timing{ColdStart: time.Hour, Run: 150 * time.Millisecond})
	submitted := time.Now()
	id := h.queue(comfytest.DeploymentTxt2Img, "", txt2imgInputs)
	res := await(t, h.env(), h.acts, activities.AwaitRequest{
		RunID: id, SubmittedAt: submitted, QueueTimeout: 100 * time.Millisecond, CanCancel: true,
	})
	assert.Equal(t, id, res.RunID)
	assert.Equal(t, activities.DeadlineQueue, res.DeadlineExceeded)
	assert.Equal(t, string(comfy.StatusCancelled), res.Status)
	assert.Contains(t, res.Message, "queue deadline")
	assert.Contains(t, res.Message, "cancelled")
	assert.Equal(t, 1, h.srv.Counters().Cancels)

	run := h.waitStatus(id, time.Second, comfy.RunStatus.IsTerminal)
	assert.Equal(t, comfy.StatusCancelled, run.Status, "the remote run must be cancelled")
}

func TestAwaitRunExecutionDeadlineCancels(t *testing.T) {
	h := newHarness(t)
	// The started → running gap is a slice of the run phase, so the run
	// phase must be short enough to reach "running" but far longer than the
	// execution deadline.
	h.srv.SetTiming(comfytest.DeploymentTxt2Img, comfytest.Timing{ColdStart: 20 * time.Millisecond, Run: 3 * time.Second})
	id := h.queue(comfytest.DeploymentTxt2Img, "", txt2imgInputs)
	res := await(t, h.env(), h.acts, activities.AwaitRequest{
		RunID: id, SubmittedAt: time.Now(), QueueTimeout: time.Minute, ExecutionTimeout: 100 * time.Millisecond, CanCancel: true,
	})
	assert.Equal(t, activities.DeadlineExecution, res.DeadlineExceeded)
	assert.Equal(t, string(comfy.StatusCancelled), res.Status)
	assert.Contains(t, res.Message, "execution deadline")
	assert.Equal(t, 1, h.srv.Counters().Cancels)
}

func TestAwaitRunDeadlineOnClassicCannotCancel(t *testing.T) {
	h := newHarness(t)
	h.srv.SetTiming(comfytest.DeploymentTxt2ImgClassic, comfytest.Timing{ColdStart: time.Hour, Run: time.Second})
	submitted := time.Now()
	id := h.queue(comfytest.DeploymentTxt2ImgClassic, "", txt2imgInputs)
	res := await(t, h.env(), h.acts, activities.AwaitRequest{
		RunID: id, SubmittedAt: submitted, QueueTimeout: 100 * time.Millisecond, CanCancel: false,
	})
	assert.Equal(t, id, res.RunID)
	assert.Equal(t, activities.DeadlineQueue, res.DeadlineExceeded)
	assert.False(t, comfy.RunStatus(res.Status).IsTerminal(), "the run keeps going: %s", res.Status)
	assert.Contains(t, res.Message, "cannot cancel")
	assert.Zero(t, h.srv.Counters().Cancels)
}

func TestAwaitRunDeadlineOnClassicEvenIfCanCancelClaimed(t *testing.T) {
	// A stale CanCancel must not turn into an error: the cancel's 500 is
	// recognised and reported plainly.
	h := newHarness(t)
	h.srv.SetTiming(comfytest.DeploymentTxt2ImgClassic, comfytest.Timing{ColdStart: time.Hour, Run: time.Second})
	id := h.queue(comfytest.DeploymentTxt2ImgClassic, "", txt2imgInputs)
	res := await(t, h.env(), h.acts, activities.AwaitRequest{
		RunID: id, SubmittedAt: time.Now(), QueueTimeout: 100 * time.Millisecond, CanCancel: true,
	})
	assert.Equal(t, activities.DeadlineQueue, res.DeadlineExceeded)
	assert.Contains(t, res.Message, "cannot cancel")
	assert.Zero(t, h.srv.Counters().Cancels)
}

func TestAwaitRunResumesFromHeartbeatAfterCrash(t *testing.T) {
	h := newHarness(t)
	h.srv.SetTiming(comfytest.DeploymentTxt2Img, comfytest.Timing{ColdStart: time.Hour, Run: time.Second})
	id := h.queue(comfytest.DeploymentTxt2Img, "tok-crash", txt2imgInputs)

	env := h.env()
	var hb heartbeats
	env.SetOnActivityHeartbeatListener(hb.listen)
	// The previous attempt saw the run running for an hour before the
	// worker died. The retried attempt must keep that clock.
	env.SetHeartbeatDetails(activities.PollState{
		RunID: id, Status: string(comfy.StatusRunning), RunningSince: time.Now().Add(-time.Hour), Polls: 3,
	})
	res := await(t, env, h.acts, activities.AwaitRequest{
		RunID: id, SubmittedAt: time.Now(), QueueTimeout: time.Hour, ExecutionTimeout: time.Minute, CanCancel: true,
	})
	assert.Equal(t, id, res.RunID)
	assert.Equal(t, activities.DeadlineExecution, res.DeadlineExceeded, "a carried RunningSince must make the execution deadline fire")
	assert.Equal(t, string(comfy.StatusCancelled), res.Status)

	c := h.srv.Counters()
	assert.Equal(t, 1, c.RunsCreated, "resuming must not create a run")
	assert.Equal(t, 1, c.RunsByToken["tok-crash"])
	assert.Equal(t, 1, c.Cancels)

	states := hb.all()
	require.NotEmpty(t, states)
	assert.Equal(t, 4, states[0].Polls, "the poll count continues from the heartbeat")
	assert.Equal(t, id, states[0].RunID)
}

func TestAwaitRunResumesToCompletion(t *testing.T) {
	h := newHarness(t)
	id := h.queue(comfytest.DeploymentTxt2Img, "tok-resume", txt2imgInputs)
	env := h.env()
	var hb heartbeats
	env.SetOnActivityHeartbeatListener(hb.listen)
	env.SetHeartbeatDetails(activities.PollState{RunID: id, Status: string(comfy.StatusQueued), Polls: 3})
	res := await(t, env, h.acts, activities.AwaitRequest{RunID: id, SubmittedAt: time.Now(), CanCancel: true})
	assert.Equal(t, id, res.RunID)
	assert.Equal(t, string(comfy.StatusSuccess), res.Status)
	assert.Equal(t, 1, h.srv.Counters().RunsCreated)
	states := hb.all()
	require.NotEmpty(t, states)
	assert.Greater(t, states[0].Polls, 3)
}

func TestAwaitRunIgnoresHeartbeatOfAnotherRun(t *testing.T) {
	h := newHarness(t)
	id := h.queue(comfytest.DeploymentTxt2Img, "", txt2imgInputs)
	env := h.env()
	env.SetHeartbeatDetails(activities.PollState{
		RunID: "00000000-0000-4000-8000-000000000000", Status: string(comfy.StatusRunning), RunningSince: time.Now().Add(-time.Hour),
	})
	res := await(t, env, h.acts, activities.AwaitRequest{
		RunID: id, SubmittedAt: time.Now(), ExecutionTimeout: time.Minute, CanCancel: true,
	})
	assert.Equal(t, string(comfy.StatusSuccess), res.Status, "another run's clock must not apply")
	assert.Empty(t, res.DeadlineExceeded)
}

func TestAwaitRunReportsBoundedProgress(t *testing.T) {
	h := newHarness(t)
	sig := &recordingSignaler{}
	h.acts.Signaler = sig
	h.acts.PollInterval = 5 * time.Millisecond // many polls, few signals
	h.srv.SetTiming(comfytest.DeploymentTxt2Img, comfytest.Timing{ColdStart: 50 * time.Millisecond, Run: 400 * time.Millisecond})
	id := h.queue(comfytest.DeploymentTxt2Img, "", txt2imgInputs)
	res := await(t, h.env(), h.acts, activities.AwaitRequest{RunID: id, SubmittedAt: time.Now(), CanCancel: true})
	require.Equal(t, string(comfy.StatusSuccess), res.Status)

	calls := sig.snapshot()
	require.NotEmpty(t, calls)
	polls := h.srv.Counters().Calls["GET /api/run/{run_id}"][200]
	statuses := map[string]bool{}
	prev := activities.ProgressUpdate{}
	for i, c := range calls {
		assert.Equal(t, activities.ProgressSignal, c.Name)
		assert.Equal(t, id, c.Update.RunID, "every update names the run")
		assert.GreaterOrEqual(t, c.Update.Progress, prev.Progress, "progress never goes back")
		if i > 0 {
			assert.False(t, c.Update.Status == prev.Status && c.Update.Progress-prev.Progress < activities.ProgressStep && c.Update.Progress < 1,
				"update %d repeats the previous one: %+v after %+v", i, c.Update, prev)
		}
		statuses[c.Update.Status] = true
		prev = c.Update
	}
	assert.Equal(t, string(comfy.StatusSuccess), calls[len(calls)-1].Update.Status)
	// not-started, queued, started, running, success, plus at most one
	// update per ProgressStep.
	assert.LessOrEqual(t, len(calls), len(statuses)+11, "signals: %d, statuses: %v", len(calls), statuses)
	assert.Less(t, len(calls), polls, "signals should be far fewer than polls (%d)", polls)
	t.Logf("%d polls, %d signals, statuses %v", polls, len(calls), statuses)
}

func TestAwaitRunSurvivesTransientPollErrors(t *testing.T) {
	// No client retries: the activity's own loop must absorb the 5xx.
	h := newHarness(t, withClientRetry(comfy.RetryPolicy{MaxAttempts: 1}), withSimOptions(func(o *comfytest.Options) {
		o.Timing = comfytest.Timing{ColdStart: 50 * time.Millisecond, Run: 300 * time.Millisecond}
	}))
	id := h.queue(comfytest.DeploymentTxt2Img, "", txt2imgInputs)
	h.srv.SetFaults(comfytest.Faults{ErrorRate: map[string]float64{"GET /api/run/{run_id}": 0.5}})
	res := await(t, h.env(), h.acts, activities.AwaitRequest{RunID: id, SubmittedAt: time.Now(), CanCancel: true})
	assert.Equal(t, id, res.RunID)
	assert.Equal(t, string(comfy.StatusSuccess), res.Status)

	calls := h.srv.Counters().Calls["GET /api/run/{run_id}"]
	failures := calls[500] + calls[502] + calls[503]
	assert.Positive(t, failures, "the fault should have fired at least once: %v", calls)
	assert.Positive(t, calls[200])
}

func TestAwaitRunUnknownRun(t *testing.T) {
	h := newHarness(t)
	_, err := h.env().ExecuteActivity(h.acts.AwaitRun, activities.AwaitRequest{RunID: "00000000-0000-4000-8000-000000000000", SubmittedAt: time.Now()})
	ae := appErr(t, err)
	assert.Equal(t, activities.ErrTypeRunNotFound, ae.Type())
	assert.True(t, ae.NonRetryable())
}

func TestAwaitRunDeadlineWhilePollsFailKeepsRunID(t *testing.T) {
	// Every poll fails, so the deadline passes without a fresh run
	// document; the result must still name the run.
	h := newHarness(t, withClientRetry(comfy.RetryPolicy{MaxAttempts: 1}))
	h.srv.SetTiming(comfytest.DeploymentTxt2ImgClassic, comfytest.Timing{ColdStart: time.Hour, Run: time.Second})
	submitted := time.Now()
	id := h.queue(comfytest.DeploymentTxt2ImgClassic, "", txt2imgInputs)
	h.srv.SetFaults(comfytest.Faults{ErrorRate: map[string]float64{"GET /api/run/{run_id}": 1}})
	res := await(t, h.env(), h.acts, activities.AwaitRequest{
		RunID: id, SubmittedAt: submitted, QueueTimeout: 100 * time.Millisecond, CanCancel: false,
	})
	assert.Equal(t, id, res.RunID)
	assert.Equal(t, activities.DeadlineQueue, res.DeadlineExceeded)
	assert.Contains(t, res.Message, "cannot cancel")
}

func TestAwaitRunWithQuietProgressSendsNoSignals(t *testing.T) {
	h := newHarness(t)
	sig := &recordingSignaler{}
	h.acts.Signaler = sig
	id := h.queue(comfytest.DeploymentTxt2Img, "", txt2imgInputs)

	res := await(t, h.env(), h.acts, activities.AwaitRequest{RunID: id, SubmittedAt: time.Now(), CanCancel: true, QuietProgress: true})

	require.Equal(t, string(comfy.StatusSuccess), res.Status)
	assert.Empty(t, sig.snapshot(), "a batch item's progress goes to its batch, not to per-item signals")
}
