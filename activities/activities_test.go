package activities_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/outputstore"
	"github.com/durable-comfy/durable-comfy/preflight"
)

// ---- harness ----------------------------------------------------------------------

// fastTiming keeps a simulated run well under a second.
var fastTiming = comfytest.Timing{ColdStart: 50 * time.Millisecond, Run: 150 * time.Millisecond}

// quickRetry keeps the client's own retries (for example of the 500 that
// GET /deployment/{id} uses for "not found") short.
var quickRetry = comfy.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}

type harness struct {
	t      *testing.T
	srv    *comfytest.Server
	client *comfy.Client // authenticated with the demo key
	acts   *activities.Activities
	store  *outputstore.Bucket
}

type harnessOpt func(*harnessConfig)

type harnessConfig struct {
	opts  comfytest.Options
	key   string
	retry comfy.RetryPolicy
}

func withSimOptions(f func(*comfytest.Options)) harnessOpt {
	return func(c *harnessConfig) { f(&c.opts) }
}

func withAPIKey(key string) harnessOpt { return func(c *harnessConfig) { c.key = key } }

func withClientRetry(p comfy.RetryPolicy) harnessOpt { return func(c *harnessConfig) { c.retry = p } }

func newHarness(t *testing.T, opts ...harnessOpt) *harness {
	t.Helper()
	cfg := harnessConfig{opts: comfytest.Options{Seed: 7, Timing: fastTiming}, retry: quickRetry}
	for _, o := range opts {
		o(&cfg)
	}
	srv := comfytest.NewServer(cfg.opts)
	t.Cleanup(srv.Close)
	if cfg.key == "" {
		cfg.key = srv.APIKey()
	}
	actsClient := newClient(t, srv, cfg.key, cfg.retry)
	client := newClient(t, srv, srv.APIKey(), quickRetry)
	store, err := outputstore.OpenDir(t.TempDir())
	require.NoError(t, err)
	return &harness{
		t: t, srv: srv, client: client, store: store,
		acts: &activities.Activities{
			Comfy:        actsClient,
			Store:        store,
			Downloader:   http.DefaultClient,
			PollInterval: 20 * time.Millisecond,
			CancelWait:   5 * time.Second,
			// Safety nets: no test may wait on a run for long.
			QueueTimeout:     15 * time.Second,
			ExecutionTimeout: 15 * time.Second,
		},
	}
}

func newClient(t *testing.T, srv *comfytest.Server, key string, retry comfy.RetryPolicy) *comfy.Client {
	t.Helper()
	c, err := comfy.NewClient(comfy.WithBaseURL(srv.URL()), comfy.WithAPIKey(key), comfy.WithRetry(retry))
	require.NoError(t, err)
	return c
}

// quietSuite is a test suite whose SDK logger discards records.
func quietSuite() *testsuite.WorkflowTestSuite {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	return &suite
}

func (h *harness) env() *testsuite.TestActivityEnvironment {
	suite := quietSuite()
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(h.acts)
	return env
}

// queue creates a run directly through the client (not through Submit).
func (h *harness) queue(deploymentID, token string, inputs map[string]any) string {
	h.t.Helper()
	req := &comfy.DeploymentRunRequest{DeploymentID: deploymentID, Inputs: map[string]any{}}
	for k, v := range inputs {
		req.Inputs[k] = v
	}
	if token != "" {
		req.SetCorrelationToken(token)
	}
	q, err := h.client.Runs.QueueDeployment(context.Background(), req)
	require.NoError(h.t, err)
	require.NotEmpty(h.t, q.RunID)
	return q.RunID
}

// waitStatus polls the run until pred holds or the deadline passes.
func (h *harness) waitStatus(runID string, within time.Duration, pred func(comfy.RunStatus) bool) *comfy.Run {
	h.t.Helper()
	deadline := time.Now().Add(within)
	for {
		run, err := h.client.Runs.Get(context.Background(), runID, nil)
		if err == nil && pred(run.Status) {
			return run
		}
		if time.Now().After(deadline) {
			status := comfy.RunStatus("?")
			if run != nil {
				status = run.Status
			}
			h.t.Fatalf("run %s: condition not reached within %s (last status %s, err %v)", runID, within, status, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) runToSuccess(deploymentID string, inputs map[string]any) string {
	h.t.Helper()
	id := h.queue(deploymentID, "", inputs)
	run := h.waitStatus(id, 10*time.Second, comfy.RunStatus.IsTerminal)
	require.Equal(h.t, comfy.StatusSuccess, run.Status)
	return id
}

// appErr unwraps the application error an activity failed with.
func appErr(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	require.Error(t, err)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "not an application error: %v", err)
	return ae
}

func problemsOf(t *testing.T, ae *temporal.ApplicationError) []string {
	t.Helper()
	var problems []string
	require.True(t, ae.HasDetails(), "rejection carries no problem list")
	require.NoError(t, ae.Details(&problems))
	return problems
}

// recordingSignaler stands in for client.Client.
type recordingSignaler struct {
	mu    sync.Mutex
	calls []signalCall
}

type signalCall struct {
	WorkflowID, RunID, Name string
	Update                  activities.ProgressUpdate
}

func (s *recordingSignaler) SignalWorkflow(_ context.Context, workflowID, runID, name string, arg any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, _ := arg.(activities.ProgressUpdate)
	s.calls = append(s.calls, signalCall{workflowID, runID, name, u})
	return nil
}

func (s *recordingSignaler) snapshot() []signalCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]signalCall(nil), s.calls...)
}

var txt2imgInputs = map[string]any{"prompt": "a lighthouse at dusk", "steps": 30, "size": "768x768"}

// ---- Preflight --------------------------------------------------------------------------

func TestPreflightAcceptsServerlessDeployment(t *testing.T) {
	h := newHarness(t)
	val, err := h.env().ExecuteActivity(h.acts.Preflight, activities.PreflightRequest{
		DeploymentID: comfytest.DeploymentTxt2Img,
		Inputs:       map[string]any{"prompt": "a cat", "steps": 30, "size": "768x768", "hires": true, comfy.CorrelationInputKey: "tok"},
	})
	require.NoError(t, err)
	var res activities.PreflightResult
	require.NoError(t, val.Get(&res))
	assert.Equal(t, comfytest.DeploymentTxt2Img, res.DeploymentID)
	assert.Equal(t, comfytest.WorkflowTxt2Img, res.ComfyWorkflowID)
	assert.Equal(t, comfytest.VersionTxt2Img, res.WorkflowVersionID)
	assert.Equal(t, comfytest.MachineGPUPoolA, res.MachineID)
	assert.Equal(t, "gpu-pool-a", res.MachineName)
	assert.Equal(t, string(comfy.MachineComfyDeployServerless), res.MachineType)
	assert.Equal(t, "A10G", res.GPU)
	assert.Equal(t, 300, res.RunTimeoutSeconds)
	assert.True(t, res.CanCancel)
	assert.Zero(t, h.srv.Counters().RunsCreated, "preflight must not create a run")
}

func TestPreflightClassicCannotCancel(t *testing.T) {
	h := newHarness(t)
	val, err := h.env().ExecuteActivity(h.acts.Preflight, activities.PreflightRequest{
		DeploymentID: comfytest.DeploymentTxt2ImgClassic,
		Inputs:       map[string]any{"prompt": "a cat"},
	})
	require.NoError(t, err, "classic machines have no build steps, so the custom-node check is skipped")
	var res activities.PreflightResult
	require.NoError(t, val.Get(&res))
	assert.Equal(t, "studio-classic", res.MachineName)
	assert.Equal(t, string(comfy.MachineClassic), res.MachineType)
	assert.False(t, res.CanCancel)
	assert.Zero(t, h.srv.Counters().RunsCreated)
}

func TestPreflightAcceptsPackInstalledFromRegistry(t *testing.T) {
	// gpu-pool-b installs VideoHelperSuite through a custom-node-manager
	// step (registry id, no git URL); img2video depends on it by URL.
	h := newHarness(t)
	val, err := h.env().ExecuteActivity(h.acts.Preflight, activities.PreflightRequest{
		DeploymentID: comfytest.DeploymentImg2Video,
		Inputs:       map[string]any{"image": "https://example.com/start.png", "frames": 16},
	})
	require.NoError(t, err)
	var res activities.PreflightResult
	require.NoError(t, val.Get(&res))
	assert.Equal(t, "gpu-pool-b", res.MachineName)
	assert.Equal(t, "L40S", res.GPU)
}

func TestPreflightRejections(t *testing.T) {
	valid := map[string]any{"prompt": "a cat"}
	cases := []struct {
		name       string
		key        string // API key; empty means the demo key
		deployment string
		inputs     map[string]any
		kind       string
		contains   []string // in the message
		problems   []string // each must appear in one problem
	}{
		{name: "unknown deployment", deployment: "de000000-0000-4000-8000-0000000000ff", inputs: valid,
			kind: preflight.KindDeploymentNotFound, contains: []string{"does not exist"}},
		{name: "machine building", deployment: comfytest.DeploymentOnBuilding, inputs: valid,
			kind: preflight.KindMachineNotReady, contains: []string{"gpu-building", `"building"`}},
		{name: "machine error", deployment: comfytest.DeploymentOnBroken, inputs: valid,
			kind: preflight.KindMachineNotReady, contains: []string{"gpu-broken", `"error"`, "segment_anything"}},
		{name: "modal machine", deployment: comfytest.DeploymentOnLegacyModal, inputs: valid,
			kind: preflight.KindMachineTypeUnsupported, contains: []string{"modal-serverless"}},
		{name: "missing custom nodes", deployment: comfytest.DeploymentNeedsMissingNode, inputs: valid,
			kind: preflight.KindMissingCustomNodes, problems: []string{"ComfyUI-KJNodes", `"SomeMissingNode"`}},
		{name: "unknown input with suggestion", deployment: comfytest.DeploymentTxt2Img,
			inputs: map[string]any{"prompt": "x", "stesp": 30},
			kind:   preflight.KindInvalidInput, problems: []string{`"stesp" is not declared`, `did you mean "steps"?`}},
		{name: "wrong type", deployment: comfytest.DeploymentTxt2Img,
			inputs: map[string]any{"prompt": "x", "steps": "many"},
			kind:   preflight.KindInvalidInput, problems: []string{`"steps" must be a number`}},
		{name: "enum outside options", deployment: comfytest.DeploymentTxt2Img,
			inputs: map[string]any{"prompt": "x", "size": "999x999"},
			kind:   preflight.KindInvalidInput, problems: []string{`"size" is not one of`}},
		{name: "above maximum", deployment: comfytest.DeploymentTxt2Img,
			inputs: map[string]any{"prompt": "x", "cfg": 50},
			kind:   preflight.KindInvalidInput, problems: []string{`"cfg" is above the maximum 20`}},
		{name: "below minimum", deployment: comfytest.DeploymentTxt2Img,
			inputs: map[string]any{"prompt": "x", "steps": 0},
			kind:   preflight.KindInvalidInput, problems: []string{`"steps" is below the minimum 1`}},
		{name: "missing required prompt", deployment: comfytest.DeploymentTxt2Img,
			inputs: map[string]any{"steps": 10},
			kind:   preflight.KindInvalidInput, problems: []string{`input "prompt" is required`}},
		{name: "bad key", key: "not-a-key", deployment: comfytest.DeploymentTxt2Img, inputs: valid,
			kind: activities.ErrTypeUnauthorized, contains: []string{"COMFY_API_KEY"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var opts []harnessOpt
			if tc.key != "" {
				opts = append(opts, withAPIKey(tc.key))
			}
			h := newHarness(t, opts...)
			_, err := h.env().ExecuteActivity(h.acts.Preflight, activities.PreflightRequest{DeploymentID: tc.deployment, Inputs: tc.inputs})
			ae := appErr(t, err)
			assert.Equal(t, tc.kind, ae.Type())
			assert.True(t, ae.NonRetryable(), "a preflight rejection must not be retried")
			for _, want := range tc.contains {
				assert.Contains(t, ae.Error(), want)
			}
			if len(tc.problems) > 0 {
				joined := strings.Join(problemsOf(t, ae), "\n")
				for _, want := range tc.problems {
					assert.Contains(t, joined, want)
				}
			}
			assert.Zero(t, h.srv.Counters().RunsCreated, "a rejected preflight must not create a run")
		})
	}
}

func TestPreflightRequiresDeploymentID(t *testing.T) {
	h := newHarness(t)
	_, err := h.env().ExecuteActivity(h.acts.Preflight, activities.PreflightRequest{})
	ae := appErr(t, err)
	assert.Equal(t, activities.ErrTypeInvalidRequest, ae.Type())
	assert.True(t, ae.NonRetryable())
}

// ---- Submit --------------------------------------------------------------------------------

func submitReq(token string) activities.SubmitRequest {
	return activities.SubmitRequest{
		DeploymentID:     comfytest.DeploymentTxt2Img,
		ComfyWorkflowID:  comfytest.WorkflowTxt2Img,
		CorrelationToken: token,
		Inputs:           map[string]any{"prompt": "a cat"},
	}
}

func TestSubmitCreatesOneRunCarryingToken(t *testing.T) {
	h := newHarness(t)
	env := h.env()
	val, err := env.ExecuteActivity(h.acts.Submit, submitReq("tok-submit-1"))
	require.NoError(t, err)
	var res activities.SubmitResult
	require.NoError(t, val.Get(&res))
	assert.NotEmpty(t, res.RunID)
	assert.False(t, res.Reconciled)

	c := h.srv.Counters()
	assert.Equal(t, 1, c.RunsCreated)
	assert.Equal(t, 1, c.RunsByToken["tok-submit-1"])

	run, err := h.client.Runs.Get(context.Background(), res.RunID, nil)
	require.NoError(t, err)
	assert.Equal(t, "tok-submit-1", run.WorkflowInputs[comfy.CorrelationInputKey])
	assert.Equal(t, "tok-submit-1", comfy.CorrelationToken(run))
	assert.Equal(t, "a cat", run.WorkflowInputs["prompt"])

	// A second token is a second submission.
	_, err = env.ExecuteActivity(h.acts.Submit, submitReq("tok-submit-2"))
	require.NoError(t, err)
	c = h.srv.Counters()
	assert.Equal(t, 2, c.RunsCreated)
	assert.Equal(t, 1, c.RunsByToken["tok-submit-1"])
	assert.Equal(t, 1, c.RunsByToken["tok-submit-2"])
}

func TestSubmitReconcilesAmbiguousSubmit(t *testing.T) {
	h := newHarness(t, withSimOptions(func(o *comfytest.Options) {
		o.Faults = comfytest.Faults{AmbiguousSubmitRate: 1}
	}))
	val, err := h.env().ExecuteActivity(h.acts.Submit, submitReq("tok-ambiguous"))
	require.NoError(t, err)
	var res activities.SubmitResult
	require.NoError(t, val.Get(&res))
	assert.True(t, res.Reconciled, "the run was found by its token, not returned by the queue call")

	c := h.srv.Counters()
	assert.Equal(t, 1, c.RunsCreated)
	assert.Equal(t, 1, c.RunsByToken["tok-ambiguous"])
	assert.Equal(t, 1, c.Calls["POST /api/run/deployment/queue"][0], "the response should have been dropped")

	run, err := h.client.Runs.Get(context.Background(), res.RunID, nil)
	require.NoError(t, err)
	assert.Equal(t, "tok-ambiguous", comfy.CorrelationToken(run))
}

func TestSubmit5xxIsUnconfirmedAndCreatesNoRun(t *testing.T) {
	h := newHarness(t, withSimOptions(func(o *comfytest.Options) {
		o.Faults = comfytest.Faults{ErrorRate: map[string]float64{"POST /api/run/deployment/queue": 1}}
	}))
	_, err := h.env().ExecuteActivity(h.acts.Submit, submitReq("tok-5xx"))
	ae := appErr(t, err)
	assert.Equal(t, activities.ErrTypeSubmitUnconfirmed, ae.Type())
	assert.False(t, ae.NonRetryable(), "an unconfirmed submit must be retried")
	assert.Contains(t, ae.Error(), "tok-5xx")
	c := h.srv.Counters()
	assert.LessOrEqual(t, c.RunsByToken["tok-5xx"], 1)
	assert.Zero(t, c.RunsCreated, "an injected 5xx answers before the handler runs")
}

func TestSubmitWithoutCreditsIsForbidden(t *testing.T) {
	h := newHarness(t, withAPIKey(comfytest.NoCreditsAPIKey))
	_, err := h.env().ExecuteActivity(h.acts.Submit, submitReq("tok-broke"))
	ae := appErr(t, err)
	assert.Equal(t, activities.ErrTypeForbidden, ae.Type())
	assert.True(t, ae.NonRetryable())
	assert.Zero(t, h.srv.Counters().RunsCreated)
}

func TestSubmitRequiresToken(t *testing.T) {
	h := newHarness(t)
	req := submitReq("")
	_, err := h.env().ExecuteActivity(h.acts.Submit, req)
	ae := appErr(t, err)
	assert.Equal(t, activities.ErrTypeInvalidRequest, ae.Type())
	assert.True(t, ae.NonRetryable())
	assert.Zero(t, h.srv.Counters().RunsCreated)
}

// The test activity environment always runs attempt 1 and has no way to set
// activity.Info.Attempt, so the attempt>1 look-up is exercised through a
// test workflow environment, which retries activities with real attempt
// numbers.

const submitLosingReply = "SubmitLosingReply"

// submitWorkflow runs one Submit-like activity with retries.
func submitWorkflow(ctx workflow.Context, activityName string, req activities.SubmitRequest, maxAttempts int32) (*activities.SubmitResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    10 * time.Millisecond,
			BackoffCoefficient: 1,
			MaximumAttempts:    maxAttempts,
		},
	})
	var res activities.SubmitResult
	if err := workflow.ExecuteActivity(ctx, activityName, req).Get(ctx, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

func (h *harness) workflowEnv() *testsuite.TestWorkflowEnvironment {
	suite := quietSuite()
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(submitWorkflow)
	env.RegisterActivity(h.acts)
	// Submit whose first attempt creates the run but whose completion is
	// lost, as when the worker dies right after the queue call returned.
	env.RegisterActivityWithOptions(func(ctx context.Context, req activities.SubmitRequest) (*activities.SubmitResult, error) {
		res, err := h.acts.Submit(ctx, req)
		if err == nil && activity.GetInfo(ctx).Attempt == 1 {
			return nil, temporal.NewApplicationError("worker lost before reporting completion", "SimulatedCrash")
		}
		return res, err
	}, activity.RegisterOptions{Name: submitLosingReply})
	return env
}

func TestSubmitRetryAttemptReconcilesInsteadOfResubmitting(t *testing.T) {
	h := newHarness(t)
	env := h.workflowEnv()
	var attempts []int32
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		attempts = append(attempts, info.Attempt)
	})
	env.ExecuteWorkflow(submitWorkflow, submitLosingReply, submitReq("tok-retry"), int32(3))
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res activities.SubmitResult
	require.NoError(t, env.GetWorkflowResult(&res))

	assert.Equal(t, []int32{1, 2}, attempts)
	assert.True(t, res.Reconciled, "attempt 2 must find the run of attempt 1")
	c := h.srv.Counters()
	assert.Equal(t, 1, c.RunsCreated)
	assert.Equal(t, 1, c.RunsByToken["tok-retry"])
	run, err := h.client.Runs.Get(context.Background(), res.RunID, nil)
	require.NoError(t, err)
	assert.Equal(t, "tok-retry", comfy.CorrelationToken(run))
}

func TestSubmitUnconfirmedThenReconciledOnRetry(t *testing.T) {
	// Attempt 1: the run is created but the response is lost, and the
	// immediate look-up fails too, so the attempt ends SubmitUnconfirmed.
	// Attempt 2 (faults cleared) must find the run instead of creating one.
	h := newHarness(t, withSimOptions(func(o *comfytest.Options) {
		o.Faults = comfytest.Faults{
			AmbiguousSubmitRate: 1,
			ErrorRate:           map[string]float64{"GET /api/workflow/{workflow_id}/runs": 1},
		}
	}), withClientRetry(comfy.RetryPolicy{MaxAttempts: 1}))
	env := h.workflowEnv()
	var attempts []int32
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		attempts = append(attempts, info.Attempt)
		if info.Attempt > 1 {
			h.srv.SetFaults(comfytest.Faults{})
		}
	})
	env.ExecuteWorkflow(submitWorkflow, "Submit", submitReq("tok-unconfirmed"), int32(3))
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res activities.SubmitResult
	require.NoError(t, env.GetWorkflowResult(&res))
	assert.Equal(t, []int32{1, 2}, attempts)
	assert.True(t, res.Reconciled)
	c := h.srv.Counters()
	assert.Equal(t, 1, c.RunsCreated)
	assert.Equal(t, 1, c.RunsByToken["tok-unconfirmed"])
}

func TestSubmitNeverCreatesTwoRunsUnderChaos(t *testing.T) {
	h := newHarness(t, withSimOptions(func(o *comfytest.Options) {
		o.Faults = comfytest.Faults{
			AmbiguousSubmitRate: 0.4,
			ErrorRate: map[string]float64{
				"POST /api/run/deployment/queue":       0.4,
				"GET /api/workflow/{workflow_id}/runs": 0.3,
			},
		}
	}), withClientRetry(comfy.RetryPolicy{MaxAttempts: 1}))
	tokens := []string{"chaos-1", "chaos-2", "chaos-3", "chaos-4", "chaos-5", "chaos-6"}
	for _, tok := range tokens {
		env := h.workflowEnv()
		env.ExecuteWorkflow(submitWorkflow, "Submit", submitReq(tok), int32(6))
		require.True(t, env.IsWorkflowCompleted())
		if err := env.GetWorkflowError(); err != nil {
			// Running out of attempts is allowed; a duplicate run is not.
			t.Logf("token %s: %v", tok, err)
		}
	}
	c := h.srv.Counters()
	for _, tok := range tokens {
		assert.LessOrEqual(t, c.RunsByToken[tok], 1, "token %s created more than one run", tok)
	}
}
