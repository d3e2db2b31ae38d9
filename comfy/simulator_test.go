package comfy_test

// Contract tests: the comfy client against the comfytest simulator. Both
// were written from /work/shared/comfydeploy-api.md; these tests prove they
// agree on the wire. Every endpoint of the reference is listed below with
// the client method that calls it and the test that drives it here.
//
// Endpoint (reference §)                          Client method                                   Test
// ----------------------------------------------  ----------------------------------------------  -----------------------------------------
// POST /run/deployment/queue (§2.1)               Runs.QueueDeployment                            TestSimRunToSuccessWithOutputs, TestSimRunErrors, TestSimQueueNotRetriedOn5xx, TestSimAmbiguousSubmit, TestSimWebhooksEndToEnd
// POST /run/deployment/sync (§2.1)                Runs.SyncDeployment                             TestSimSyncAndStream
// POST /run/deployment/stream (§2.1, §4.1)        Runs.StreamDeployment                           TestSimSyncAndStream
// POST /run/workflow/queue (§2.1)                 Runs.QueueWorkflow                              TestSimWorkflowRuns
// POST /run/workflow/sync (§2.1)                  Runs.SyncWorkflow                               TestSimWorkflowRuns
// POST /run/workflow/stream (§2.1, §4.1)          Runs.StreamWorkflow                             TestSimWorkflowRuns
// GET  /run/{run_id} (+queue_position) (§3.2)     Runs.Get                                        TestSimRunToSuccessWithOutputs, TestSimQueuePositionAndCancel, TestSimRunErrors
// GET  /run?run_id= (hidden alias)                Client.NewRequest + Client.Do                   TestSimDoEscapeHatch
// POST /run/{run_id}/cancel (§3.5)                Runs.Cancel                                     TestSimQueuePositionAndCancel, TestSimCancelUnsupportedOnClassic
// POST /run, /run/queue|sync|stream (legacy)      not wrapped (deprecated; Client.Do reaches it)  —
// GET  /v2/stream-progress (§4.2)                 Streams.Progress                                TestSimProgressStreamCaveats
// GET  /v2/stream-logs (§2.2)                     Streams.Logs                                    TestSimLogStream, TestSimWebhooksEndToEnd
// GET  /v2/clickhouse-run-logs/{run_id} (§2.2)    Runs.ArchivedLogs                               TestSimRunToSuccessWithOutputs
// GET  /deployments (§2.3)                        Deployments.List                                TestSimDeployments, TestSimRetriesThrough5xx
// GET  /deployment/{id} (§2.3, 500 quirk)         Deployments.Get                                 TestSimDeployments, TestSimRunErrors
// POST /deployment (§2.3)                         Deployments.Create                              TestSimDeployments
// PATCH /deployment/{id} (§2.3)                   Deployments.Update                              TestSimDeployments
// POST /deployment/{id}/deactivate (§2.3)         Deployments.Deactivate                          TestSimDeployments
// DELETE /deployment/{id} (§2.3, 500 quirk)       Deployments.Delete                              TestSimDeployments
// GET  /deployment/{id}/runs (§2.3)               Deployments.ListRuns                            TestSimRunToSuccessWithOutputs
// GET  /deployments/featured|community, share,    not wrapped (sharing UI helpers)                —
//      /deployment/{id}/v0-ui-spec
// GET  /machines (§2.4)                           Machines.List                                   TestSimMachines
// GET  /machine/{id} (§2.4, §7)                   Machines.Get (+ Machine.HasCustomNode[ID])      TestSimMachines
// GET  /machine/{id}/check-custom-nodes (§2.4)    Machines.CheckCustomNodes                       TestSimMachines
// GET  /machine/serverless/{id}/versions (§2.4)   Machines.ListServerlessVersions                 TestSimMachines
// GET  /machine/serverless/{id}/versions/{vid}    Machines.GetServerlessVersion                   TestSimMachines
// GET  /machine/serverless/{id}/versions/all      not wrapped (same rows as /versions)            —
// GET  /machine/{id}/events (§2.4)                Machines.Events                                 TestSimRunToSuccessWithOutputs
// machine helpers and management (§2.4)           not wrapped (out of scope for a run wrapper)    —
// GET  /workflows (§2.5)                          Workflows.List                                  TestSimWorkflows
// GET  /workflow/{id} (§2.5)                      Workflows.Get                                   TestSimWorkflows
// GET  /workflow/{id}/versions (§2.5)             Workflows.ListVersions                          TestSimWorkflows
// GET  /workflow/{id}/version/{n} (§2.5)          Workflows.GetVersion                            TestSimWorkflows
// GET  /workflow-version/{id} (§2.5, §7)          Workflows.GetVersionByID                        TestSimWorkflows, TestSimMachines
// POST /workflow (§2.5)                           Workflows.Create                                TestSimWorkflows
// POST /workflow/{id}/version (§2.5)              Workflows.CreateVersion                         TestSimWorkflows
// GET  /workflow/{id}/runs (§2.5, §8)             Workflows.ListRuns, FindRunByCorrelationToken   TestSimRunToSuccessWithOutputs, TestSimAmbiguousSubmit
// GET  /v2/workflow/{id}/runs (§2.5)              Workflows.ListRunsV2                            TestSimRunToSuccessWithOutputs
// GET  /runs/count (§2.5)                         Runs.Count                                      TestSimRunToSuccessWithOutputs
// POST /file/upload (§2.6, §6)                    Files.Upload                                    TestSimFilesAndAssets, TestSimImg2VideoGIF
// POST /file/{file_id}/rename (§2.6)              Files.Rename                                    TestSimFilesAndAssets
// GET  /assets (§2.6)                             Assets.List                                     TestSimFilesAndAssets
// POST /assets/folder (§2.6)                      Assets.CreateFolder                             TestSimFilesAndAssets
// POST /assets/upload (§2.6)                      Assets.Upload                                   TestSimFilesAndAssets
// GET  /assets/presigned-url (§2.6, §6)           Assets.PresignedURL (+ Assets.PutPresigned)     TestSimFilesAndAssets
// POST /assets/register (§2.6)                    Assets.Register                                 TestSimFilesAndAssets
// POST /assets/add (§2.6)                         Assets.AddByURL                                 TestSimFilesAndAssets
// GET  /assets/{id} (§2.6)                        Assets.Get                                      TestSimFilesAndAssets
// PATCH /assets/{id} (§2.6)                       Assets.Move                                     TestSimFilesAndAssets
// DELETE /assets/{id} (§2.6)                      Assets.Delete                                   TestSimFilesAndAssets
// GET  /assets/search (§2.6)                      Assets.Search                                   TestSimFilesAndAssets
// POST /file, /volume/* (model uploads) (§2.6)    not wrapped, not simulated                      —
// GET  /models, /search/model, /optimize/*,       not wrapped, not simulated (not run-related)    —
//      /session* (§2.7), POST /platform/api-keys,
//      /openapi.json, /internal/openapi.json (§1)
// legacy v1 API (§2.8)                            not wrapped (superseded)                        —
// webhook delivery to our URL (§5)                WebhookSigner, ParseWebhook, WebhookDeduper     TestSimWebhooksEndToEnd
// auth failures 401/403 (§1)                      IsUnauthorized, IsForbidden                     TestSimRunErrors
// 422 validation (§1)                             IsValidation                                    TestSimRunErrors, TestSimWorkflows

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
)

// fastRetry keeps retry waits tiny; the simulator's injected 5xx are
// instantaneous.
var fastRetry = comfy.RetryPolicy{MaxAttempts: 4, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}

// newSim starts a simulator with tiny timings and a client pointed at it.
func newSim(t *testing.T, opts comfytest.Options) (*comfytest.Server, *comfy.Client) {
	t.Helper()
	if opts.Timing == (comfytest.Timing{}) {
		opts.Timing = comfytest.Timing{ColdStart: 50 * time.Millisecond, Run: 150 * time.Millisecond}
	}
	if opts.WebhookBackoff == 0 {
		opts.WebhookBackoff = 10 * time.Millisecond
	}
	sim := comfytest.NewServer(opts)
	t.Cleanup(sim.Close)
	return sim, simClient(t, sim, sim.APIKey())
}

func simClient(t *testing.T, sim *comfytest.Server, key string) *comfy.Client {
	t.Helper()
	c, err := comfy.NewClient(comfy.WithBaseURL(sim.URL()), comfy.WithAPIKey(key), comfy.WithRetry(fastRetry))
	require.NoError(t, err)
	require.Equal(t, sim.URL(), c.BaseURL())
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitRun polls GET /run/{id} until done reports true or the deadline passes.
func waitRun(t *testing.T, c *comfy.Client, id string, done func(*comfy.Run) bool) *comfy.Run {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		run, err := c.Runs.Get(context.Background(), id, nil)
		require.NoError(t, err)
		if done(run) {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still %s after deadline", id, run.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func terminal(r *comfy.Run) bool { return r.Status.IsTerminal() }

func calls(sim *comfytest.Server, pattern string) (total int, byCode map[int]int) {
	byCode = sim.Counters().Calls[pattern]
	for _, n := range byCode {
		total += n
	}
	return total, byCode
}

func download(t *testing.T, u string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

func pngBytes(t *testing.T) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, 16, 16))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	img.SetNRGBA(0, 0, color.NRGBA{255, 0, 0, 255})
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, img))
	return buf.Bytes()
}

func txt2imgRequest(token string) *comfy.DeploymentRunRequest {
	req := &comfy.DeploymentRunRequest{
		DeploymentID: comfytest.DeploymentTxt2Img,
		Inputs:       map[string]any{"prompt": "a lighthouse at dusk", "steps": 12, "size": "768x768"},
	}
	if token != "" {
		req.SetCorrelationToken(token)
	}
	return req
}

func TestSimRunToSuccessWithOutputs(t *testing.T) {
	_, c := newSim(t, comfytest.Options{})
	ctx := testCtx(t)
	start := time.Now().Add(-time.Minute)

	queued, err := c.Runs.QueueDeployment(ctx, txt2imgRequest("tok-success"))
	require.NoError(t, err)
	require.NotEmpty(t, queued.RunID)

	run := waitRun(t, c, queued.RunID, terminal)
	require.Equal(t, comfy.StatusSuccess, run.Status)
	assert.Equal(t, 1.0, run.Progress, "progress is a 0..1 fraction")
	assert.Equal(t, comfytest.WorkflowTxt2Img, run.WorkflowID)
	assert.Equal(t, comfytest.MachineGPUPoolA, run.MachineID)
	assert.Equal(t, comfy.MachineComfyDeployServerless, run.MachineType)
	assert.Empty(t, run.DeploymentID, "GET /run drops deployment_id")
	assert.Equal(t, "tok-success", comfy.CorrelationToken(run))
	assert.Nil(t, run.QueuePosition, "not asked for")
	for name, ts := range map[string]comfy.Time{"created": run.CreatedAt, "queued": run.QueuedAt, "started": run.StartedAt, "ended": run.EndedAt} {
		assert.False(t, ts.IsZero(), "%s_at", name)
	}
	require.NotNil(t, run.Duration)
	require.NotNil(t, run.RunDuration)
	assert.NotEmpty(t, run.ModalFunctionCallID)

	media := run.MediaItems()
	require.Len(t, media, 1)
	assert.Equal(t, "image", media[0].OutputID)
	assert.Equal(t, "images", media[0].Kind)
	assert.Equal(t, "output", media[0].Item.Type, "type is the ComfyUI folder, not a MIME type")
	require.NotNil(t, media[0].Item.IsPublic)
	assert.False(t, *media[0].Item.IsPublic)
	resp, body := download(t, media[0].Item.URL)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	img, err := png.Decode(bytes.NewReader(body))
	require.NoError(t, err)
	assert.Equal(t, 96, img.Bounds().Dx(), "size input 768x768 renders 96px")
	texts := run.Texts()
	require.Len(t, texts, 1)
	assert.Contains(t, texts[0], "a lighthouse at dusk")

	// Listings of the same run.
	depRuns, err := c.Deployments.ListRuns(ctx, comfytest.DeploymentTxt2Img, &comfy.ListOptions{Limit: 5})
	require.NoError(t, err)
	require.Len(t, depRuns, 1)
	assert.Equal(t, queued.RunID, depRuns[0].ID)
	assert.Equal(t, comfytest.DeploymentTxt2Img, depRuns[0].DeploymentID)
	assert.Empty(t, comfy.CorrelationToken(&depRuns[0]), "slim rows have no inputs or webhook")

	wfRuns, err := c.Workflows.ListRuns(ctx, comfytest.WorkflowTxt2Img, &comfy.WorkflowRunsOptions{Limit: 10})
	require.NoError(t, err)
	require.Len(t, wfRuns, 1)
	assert.Equal(t, comfytest.DeploymentTxt2Img, wfRuns[0].DeploymentID)
	assert.Equal(t, "tok-success", comfy.CorrelationToken(&wfRuns[0]))
	assert.Len(t, wfRuns[0].Outputs, 2)

	v2, err := c.Workflows.ListRunsV2(ctx, comfytest.WorkflowTxt2Img, &comfy.WorkflowRunsV2Options{
		Status: comfy.StatusSuccess, DeploymentID: comfytest.DeploymentTxt2Img, Since: start, Limit: 5})
	require.NoError(t, err)
	require.Len(t, v2, 1)
	assert.Equal(t, queued.RunID, v2[0].ID)
	v2, err = c.Workflows.ListRunsV2(ctx, comfytest.WorkflowTxt2Img, &comfy.WorkflowRunsV2Options{Since: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	assert.Empty(t, v2, "rf is a lower bound on created_at")

	count, err := c.Runs.Count(ctx, &comfy.RunCountOptions{StartTime: start, EndTime: time.Now().Add(time.Minute),
		DeploymentID: comfytest.DeploymentTxt2Img, Status: comfy.StatusSuccess})
	require.NoError(t, err)
	assert.Equal(t, 1, count.Count)
	assert.False(t, count.StartTime.IsZero())

	logs, err := c.Runs.ArchivedLogs(ctx, queued.RunID)
	require.NoError(t, err)
	require.NotEmpty(t, logs)
	assert.Equal(t, queued.RunID, logs[0].RunID)
	assert.True(t, slices.ContainsFunc(logs, func(l comfy.RunLog) bool { return strings.Contains(l.Log, "success") }))

	events, err := c.Machines.Events(ctx, comfytest.MachineGPUPoolA)
	require.NoError(t, err)
	require.Len(t, events, 1)
	assert.Equal(t, comfytest.MachineGPUPoolA, events[0].MachineID)
	assert.False(t, events[0].StartTime.IsZero())
	assert.NotEmpty(t, events[0].Raw)
}

func TestSimImg2VideoGIF(t *testing.T) {
	_, c := newSim(t, comfytest.Options{})
	ctx := testCtx(t)

	up, err := c.Files.Upload(ctx, "start.png", bytes.NewReader(pngBytes(t)))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(up.FileID, "img_"), up.FileID)

	queued, err := c.Runs.QueueDeployment(ctx, &comfy.DeploymentRunRequest{
		DeploymentID: comfytest.DeploymentImg2Video,
		Inputs:       map[string]any{"image": up.FileURL, "frames": 8, "fps": 10},
	})
	require.NoError(t, err)
	run := waitRun(t, c, queued.RunID, terminal)
	require.Equal(t, comfy.StatusSuccess, run.Status)

	media := run.MediaItems()
	require.Len(t, media, 1)
	assert.Equal(t, "files", media[0].Kind, "non-image uploads such as GIFs land under files")
	assert.Equal(t, "video", media[0].OutputID)
	assert.True(t, strings.HasSuffix(media[0].Item.Filename, ".gif"))
	resp, body := download(t, media[0].Item.URL)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	anim, err := gif.DecodeAll(bytes.NewReader(body))
	require.NoError(t, err)
	assert.Len(t, anim.Image, 8)
}

func TestSimSyncAndStream(t *testing.T) {
	_, c := newSim(t, comfytest.Options{})
	ctx := testCtx(t)

	outs, err := c.Runs.SyncDeployment(ctx, txt2imgRequest(""))
	require.NoError(t, err)
	require.Len(t, outs, 2)
	ids := []string{outs[0].OutputID, outs[1].OutputID}
	assert.ElementsMatch(t, []string{"image", "caption"}, ids)

	stream, err := c.Runs.StreamDeployment(ctx, txt2imgRequest(""))
	require.NoError(t, err)
	defer stream.Close()
	var (
		runID, fnCall string
		events        []string
		final         comfy.RunStatus
		sawLive       bool
	)
	for {
		ev, err := stream.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		events = append(events, ev.Kind+":"+ev.Event)
		if id := ev.PromptID(); id != "" && runID == "" {
			runID = id
		}
		if id, ok := ev.FunctionCallID(); ok {
			fnCall = id
		}
		if _, p, ok := ev.LiveStatus(); ok {
			sawLive = true
			assert.True(t, p >= 0 && p <= 1, "live progress %v", p)
		}
		if st, ok := ev.Status(); ok {
			final = st
		}
	}
	assert.Equal(t, "event_update:queuing", events[0], "the API's own first event")
	assert.Contains(t, events, "prompt:", "the prompt result has no event key")
	assert.NotEmpty(t, fnCall)
	assert.True(t, sawLive)
	assert.Equal(t, comfy.StatusSuccess, final)
	require.NotEmpty(t, runID)
	run, err := c.Runs.Get(ctx, runID, nil)
	require.NoError(t, err)
	assert.Equal(t, comfy.StatusSuccess, run.Status, "prompt_id is the run id")
	assert.Equal(t, fnCall, run.ModalFunctionCallID)

	// Sync and stream are Modal-only.
	classic := txt2imgRequest("")
	classic.DeploymentID = comfytest.DeploymentTxt2ImgClassic
	_, err = c.Runs.SyncDeployment(ctx, classic)
	require.Error(t, err)
	assert.True(t, comfy.IsValidation(err), "%v", err)
}

func TestSimWorkflowRuns(t *testing.T) {
	_, c := newSim(t, comfytest.Options{})
	ctx := testCtx(t)
	v, err := c.Workflows.GetVersionByID(ctx, comfytest.VersionTxt2Img)
	require.NoError(t, err)
	req := func() *comfy.WorkflowRunRequest {
		r := &comfy.WorkflowRunRequest{WorkflowID: comfytest.WorkflowTxt2Img, WorkflowAPIJSON: v.WorkflowAPI,
			MachineID: comfytest.MachineGPUPoolB, Inputs: map[string]any{"prompt": "ad-hoc"}}
		r.SetCorrelationToken("wf-tok")
		return r
	}

	queued, err := c.Runs.QueueWorkflow(ctx, req())
	require.NoError(t, err)
	run := waitRun(t, c, queued.RunID, terminal)
	assert.Equal(t, comfy.StatusSuccess, run.Status)
	assert.Equal(t, comfytest.MachineGPUPoolB, run.MachineID)

	outs, err := c.Runs.SyncWorkflow(ctx, req())
	require.NoError(t, err)
	assert.NotEmpty(t, outs)

	stream, err := c.Runs.StreamWorkflow(ctx, req())
	require.NoError(t, err)
	defer stream.Close()
	var final comfy.RunStatus
	for {
		ev, err := stream.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if st, ok := ev.Status(); ok {
			final = st
		}
	}
	assert.Equal(t, comfy.StatusSuccess, final)

	_, err = c.Runs.QueueWorkflow(ctx, &comfy.WorkflowRunRequest{WorkflowID: comfytest.WorkflowTxt2Img})
	assert.ErrorIs(t, err, comfy.ErrInvalidArgument, "workflow_api_json is required")
}

func TestSimQueuePositionAndCancel(t *testing.T) {
	sim, c := newSim(t, comfytest.Options{})
	ctx := testCtx(t)
	// A cold start that outlives the test keeps both runs in not-started.
	sim.SetTiming(comfytest.DeploymentTxt2Img, comfytest.Timing{ColdStart: time.Hour, Run: time.Hour})

	first, err := c.Runs.QueueDeployment(ctx, txt2imgRequest(""))
	require.NoError(t, err)
	second, err := c.Runs.QueueDeployment(ctx, txt2imgRequest(""))
	require.NoError(t, err)

	for i, id := range []string{first.RunID, second.RunID} {
		run, err := c.Runs.Get(ctx, id, &comfy.GetRunOptions{QueuePosition: true})
		require.NoError(t, err)
		assert.Equal(t, comfy.StatusNotStarted, run.Status)
		require.NotNil(t, run.QueuePosition)
		assert.Equal(t, i, *run.QueuePosition)
	}

	res, err := c.Runs.Cancel(ctx, second.RunID)
	require.NoError(t, err)
	assert.Equal(t, "success", res.Status)
	assert.Equal(t, "Function cancelled", res.Message)
	run := waitRun(t, c, second.RunID, terminal)
	assert.Equal(t, comfy.StatusCancelled, run.Status)
	assert.False(t, run.EndedAt.IsZero())

	// Cancelling a terminal run still answers success and changes nothing.
	res, err = c.Runs.Cancel(ctx, second.RunID)
	require.NoError(t, err)
	assert.Equal(t, "success", res.Status)
	assert.Equal(t, 1, sim.Counters().Cancels)

	_, err = c.Runs.Cancel(ctx, first.RunID)
	require.NoError(t, err)
	assert.Equal(t, comfy.StatusCancelled, waitRun(t, c, first.RunID, terminal).Status)
}

func TestSimCancelUnsupportedOnClassic(t *testing.T) {
	sim, c := newSim(t, comfytest.Options{})
	ctx := testCtx(t)
	req := txt2imgRequest("")
	req.DeploymentID = comfytest.DeploymentTxt2ImgClassic
	queued, err := c.Runs.QueueDeployment(ctx, req)
	require.NoError(t, err)

	_, err = c.Runs.Cancel(ctx, queued.RunID)
	require.Error(t, err)
	assert.True(t, comfy.IsCancelUnsupported(err), "%v", err)
	var apiErr *comfy.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusInternalServerError, apiErr.StatusCode)
	assert.False(t, comfy.IsRetryable(err))
	n, _ := calls(sim, "POST /api/run/{run_id}/cancel")
	assert.Equal(t, 1, n, "an unsupported cancel is not retried")

	// The run is unaffected and walks to success (no queued/started on classic).
	run := waitRun(t, c, queued.RunID, terminal)
	assert.Equal(t, comfy.StatusSuccess, run.Status)
	assert.True(t, run.QueuedAt.IsZero())

	// An unknown run gets the same 500, read as not found.
	_, err = c.Runs.Cancel(ctx, "00000000-0000-4000-8000-000000000000")
	assert.True(t, comfy.IsNotFound(err), "%v", err)
}

func TestSimRunErrors(t *testing.T) {
	sim, c := newSim(t, comfytest.Options{})
	ctx := testCtx(t)
	const missing = "de000000-0000-4000-8000-0000000000ff"

	// GET /deployment/{id} hides not-found behind a 500; the client retries
	// it (it may be a real failure) and then reports not-found.
	_, err := c.Deployments.Get(ctx, missing)
	require.Error(t, err)
	var apiErr *comfy.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusInternalServerError, apiErr.StatusCode)
	assert.True(t, apiErr.NotFoundQuirk)
	assert.True(t, comfy.IsNotFound(err))
	_, byCode := calls(sim, "GET /api/deployment/{deployment_id}")
	assert.Equal(t, fastRetry.MaxAttempts, byCode[http.StatusInternalServerError])

	// Run creation reports a real 404.
	req := txt2imgRequest("")
	req.DeploymentID = missing
	_, err = c.Runs.QueueDeployment(ctx, req)
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusNotFound, apiErr.StatusCode)
	assert.False(t, apiErr.NotFoundQuirk)
	assert.Equal(t, "Deployment not found", apiErr.Detail)
	assert.True(t, comfy.IsNotFound(err))

	// No GPU credits: reads work, run creation is forbidden.
	poor := simClient(t, sim, comfytest.NoCreditsAPIKey)
	_, err = poor.Deployments.List(ctx, nil)
	require.NoError(t, err)
	_, err = poor.Runs.QueueDeployment(ctx, txt2imgRequest(""))
	assert.True(t, comfy.IsForbidden(err), "%v", err)
	assert.False(t, comfy.IsRetryable(err))

	// A bad key.
	bad := simClient(t, sim, "not-a-key")
	_, err = bad.Runs.Get(ctx, "00000000-0000-4000-8000-000000000000", nil)
	assert.True(t, comfy.IsUnauthorized(err), "%v", err)
	_, err = bad.Runs.QueueDeployment(ctx, txt2imgRequest(""))
	assert.True(t, comfy.IsUnauthorized(err), "%v", err)

	// 422s: a nested input object, a non-uuid deployment id, a non-uuid run id.
	nested := txt2imgRequest("")
	nested.Inputs["prompt"] = map[string]any{"text": "nested objects are rejected"}
	_, err = c.Runs.QueueDeployment(ctx, nested)
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusUnprocessableEntity, apiErr.StatusCode)
	assert.True(t, comfy.IsValidation(err))
	assert.Contains(t, apiErr.Detail, "body.inputs.prompt")

	badID := txt2imgRequest("")
	badID.DeploymentID = "txt2img"
	_, err = c.Runs.QueueDeployment(ctx, badID)
	assert.True(t, comfy.IsValidation(err), "%v", err)

	_, err = c.Runs.Get(ctx, "not-a-uuid", nil)
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusUnprocessableEntity, apiErr.StatusCode)
	assert.True(t, comfy.IsValidation(err))
	_, err = c.Runs.Get(ctx, "00000000-0000-4000-8000-000000000000", nil)
	assert.True(t, comfy.IsNotFound(err), "%v", err)

	// Unsupported machine type: 400, and the committed row is left failed.
	legacy := txt2imgRequest("tok-legacy")
	legacy.DeploymentID = comfytest.DeploymentOnLegacyModal
	_, err = c.Runs.QueueDeployment(ctx, legacy)
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusBadRequest, apiErr.StatusCode)
	assert.Equal(t, "Invalid machine type", apiErr.Detail)
	found, err := c.Workflows.FindRunByCorrelationToken(ctx, comfytest.WorkflowTxt2Img, "tok-legacy", nil)
	require.NoError(t, err)
	require.True(t, found.Found())
	assert.Equal(t, comfy.StatusFailed, found.Run.Status)
}

func TestSimRetriesThrough5xx(t *testing.T) {
	const route = "GET /api/deployments"
	// With seed 29 this sequence of calls meets 500, 502 and 503 answers,
	// none with a Retry-After (which the client would honour for a whole
	// second) and never four in a row (which would exhaust the retries).
	sim, c := newSim(t, comfytest.Options{Seed: 29, Faults: comfytest.Faults{ErrorRate: map[string]float64{route: 0.5}}})
	ctx := testCtx(t)
	const n = 4
	for range n {
		deps, err := c.Deployments.List(ctx, nil)
		require.NoError(t, err)
		assert.Len(t, deps, 10)
	}
	total, byCode := calls(sim, route)
	assert.Equal(t, n, byCode[http.StatusOK])
	assert.Greater(t, total, n, "some calls failed and were retried: %v", byCode)
	assert.Positive(t, byCode[http.StatusBadGateway], "a proxy's HTML 502 is retried too")
}

func TestSimQueueNotRetriedOn5xx(t *testing.T) {
	const route = "POST /api/run/deployment/queue"
	sim, c := newSim(t, comfytest.Options{Faults: comfytest.Faults{ErrorRate: map[string]float64{route: 1}}})
	_, err := c.Runs.QueueDeployment(testCtx(t), txt2imgRequest("tok-5xx"))
	require.Error(t, err)
	assert.True(t, comfy.IsRetryable(err), "%v", err)
	total, _ := calls(sim, route)
	assert.Equal(t, 1, total, "run creation is never retried by the client")
	assert.Equal(t, 0, sim.Counters().RunsCreated)
}

func TestSimAmbiguousSubmit(t *testing.T) {
	sim, c := newSim(t, comfytest.Options{Faults: comfytest.Faults{AmbiguousSubmitRate: 1}})
	ctx := testCtx(t)
	const token = "tok-ambiguous"

	_, err := c.Runs.QueueDeployment(ctx, txt2imgRequest(token))
	require.Error(t, err)
	assert.True(t, comfy.IsRetryable(err), "%v", err)
	counters := sim.Counters()
	assert.Equal(t, 1, counters.RunsByToken[token], "exactly one run behind the lost response")
	assert.Equal(t, 1, counters.Calls["POST /api/run/deployment/queue"][0])

	sim.SetFaults(comfytest.Faults{})
	lookup, err := c.Workflows.FindRunByCorrelationToken(ctx, comfytest.WorkflowTxt2Img, token, nil)
	require.NoError(t, err)
	require.True(t, lookup.Found())
	run := lookup.Run
	assert.Equal(t, comfytest.DeploymentTxt2Img, run.DeploymentID)
	assert.Equal(t, token, comfy.CorrelationToken(run))
	assert.Empty(t, run.Outputs, "outputs are skipped by default")
	assert.Equal(t, 1, lookup.Pages)

	lookup, err = c.Workflows.FindRunByCorrelationToken(ctx, comfytest.WorkflowTxt2Img, "no-such-token", nil)
	require.NoError(t, err)
	assert.False(t, lookup.Found())
}

func TestSimDeployments(t *testing.T) {
	sim, c := newSim(t, comfytest.Options{})
	ctx := testCtx(t)

	all, err := c.Deployments.List(ctx, nil)
	require.NoError(t, err)
	require.Len(t, all, 10)
	paged, err := c.Deployments.List(ctx, &comfy.DeploymentListOptions{Environment: "production", PageSize: 3, Offset: 1})
	require.NoError(t, err)
	require.Len(t, paged, 3)
	assert.Equal(t, all[1].ID, paged[0].ID)

	d, err := c.Deployments.Get(ctx, comfytest.DeploymentTxt2Img)
	require.NoError(t, err)
	assert.Equal(t, comfytest.WorkflowTxt2Img, d.WorkflowID)
	assert.Equal(t, comfytest.VersionTxt2Img, d.WorkflowVersionID)
	assert.Equal(t, comfytest.MachineGPUPoolA, d.MachineID)
	assert.Equal(t, "production", d.Environment)
	assert.Equal(t, 300, d.RunTimeout)
	assert.False(t, d.ActivatedAt.IsZero())
	// Seeded rows have whole-second times, which ORM routes print without
	// seconds ("2025-01-12T09:40Z").
	assert.Equal(t, 0, d.CreatedAt.Second())
	assert.Equal(t, 2025, d.CreatedAt.Year())
	inputs := map[string]comfy.InputType{}
	for _, it := range d.InputTypes {
		inputs[it.InputID] = it
	}
	require.Contains(t, inputs, "prompt")
	assert.Equal(t, comfy.InputInteger, inputs["steps"].Type)
	require.NotNil(t, inputs["steps"].MaxValue)
	assert.Equal(t, 100.0, *inputs["steps"].MaxValue)
	assert.Equal(t, []string{"512x512", "768x768", "1024x1024"}, inputs["size"].EnumOptions)
	assert.Len(t, d.OutputTypes, 2)

	limit := 7
	gpu := comfy.GPUL40S
	upd, err := c.Deployments.Update(ctx, comfytest.DeploymentUpscale, &comfy.UpdateDeploymentRequest{ConcurrencyLimit: &limit, GPU: &gpu})
	require.NoError(t, err)
	assert.Equal(t, 7, upd.ConcurrencyLimit)
	assert.Equal(t, "L40S", upd.GPU)

	created, err := c.Deployments.Create(ctx, &comfy.CreateDeploymentRequest{WorkflowID: comfytest.WorkflowUpscale,
		WorkflowVersionID: comfytest.VersionUpscale, Environment: "public-share", Description: "shared upscaler"})
	require.NoError(t, err)
	assert.Equal(t, "public-share", created.Environment)
	assert.Equal(t, comfytest.MachineGPUPoolA, created.MachineID, "defaults to the version's machine")
	got, err := c.Deployments.Get(ctx, created.ID)
	require.NoError(t, err)
	assert.Equal(t, "shared upscaler", got.Description)

	// Deactivate refuses while a run is live, then clears activated_at.
	sim.SetTiming(created.ID, comfytest.Timing{ColdStart: time.Hour})
	queued, err := c.Runs.QueueDeployment(ctx, &comfy.DeploymentRunRequest{DeploymentID: created.ID, Inputs: map[string]any{"image": "https://example.com/a.png"}})
	require.NoError(t, err)
	_, err = c.Deployments.Deactivate(ctx, created.ID)
	assert.True(t, comfy.IsValidation(err), "400 while runs are live: %v", err)
	_, err = c.Runs.Cancel(ctx, queued.RunID)
	require.NoError(t, err)
	deact, err := c.Deployments.Deactivate(ctx, created.ID)
	require.NoError(t, err)
	assert.True(t, deact.ActivatedAt.IsZero())

	// Delete: share environments only; everything else is the catch-all 500.
	err = c.Deployments.Delete(ctx, comfytest.DeploymentTxt2Img)
	assert.Error(t, err, "production deployments cannot be deleted")
	require.NoError(t, c.Deployments.Delete(ctx, created.ID))
	err = c.Deployments.Delete(ctx, created.ID)
	assert.True(t, comfy.IsNotFound(err), "%v", err)
	_, err = c.Deployments.Get(ctx, created.ID)
	assert.True(t, comfy.IsNotFound(err), "%v", err)
}

func TestSimMachines(t *testing.T) {
	_, c := newSim(t, comfytest.Options{})
	ctx := testCtx(t)

	all, err := c.Machines.List(ctx, nil)
	require.NoError(t, err)
	require.Len(t, all, 6)
	assert.Nil(t, all[0].DockerCommandSteps, "steps only on request")
	yes := true
	docker, err := c.Machines.List(ctx, &comfy.MachineListOptions{IsDocker: &yes, IncludeDockerCommandSteps: &yes})
	require.NoError(t, err)
	require.Len(t, docker, 4)
	for _, m := range docker {
		assert.Equal(t, comfy.MachineComfyDeployServerless, m.Type)
		assert.NotNil(t, m.DockerCommandSteps)
	}
	selfHosted, err := c.Machines.List(ctx, &comfy.MachineListOptions{IsSelfHosted: &yes})
	require.NoError(t, err)
	require.Len(t, selfHosted, 1)
	assert.Equal(t, comfy.MachineClassic, selfHosted[0].Type)

	a, err := c.Machines.Get(ctx, comfytest.MachineGPUPoolA)
	require.NoError(t, err)
	assert.Equal(t, comfy.MachineReady, a.Status)
	assert.True(t, a.Status.IsReady())
	assert.True(t, a.Type.CanCancel())
	assert.Equal(t, 50, a.ConcurrencyLimit)
	assert.False(t, a.CreatedAt.IsZero(), "zone-less raw SQL timestamps parse")
	assert.True(t, a.HasCustomNode("https://github.com/BennyKok/comfyui-deploy"))
	assert.True(t, a.HasCustomNode("git@github.com:bennykok/comfyui-deploy.git"), "URL forms are normalised")
	assert.True(t, a.HasCustomNode("https://github.com/ltdrdata/ComfyUI-Impact-Pack/"))
	assert.False(t, a.HasCustomNode("https://github.com/kijai/ComfyUI-KJNodes"))
	assert.True(t, a.HasCustomNodeID("comfyui-videohelpersuite"))
	assert.Len(t, a.CustomNodes(), 3)

	// The client-side dependency check of §7: the version needs KJNodes.
	v, err := c.Workflows.GetVersionByID(ctx, comfytest.VersionMissingNode)
	require.NoError(t, err)
	var lacking []string
	for _, u := range v.CustomNodeURLs() {
		if !a.HasCustomNode(u) {
			lacking = append(lacking, u)
		}
	}
	assert.Equal(t, []string{"https://github.com/kijai/ComfyUI-KJNodes"}, lacking)
	require.NotNil(t, v.Dependencies)
	assert.Equal(t, []string{"SomeMissingNode"}, v.Dependencies.MissingNodes)

	classic, err := c.Machines.Get(ctx, comfytest.MachineStudioClassic)
	require.NoError(t, err)
	assert.Equal(t, comfy.MachineClassic, classic.Type)
	assert.False(t, classic.Type.CanCancel())
	assert.NotEmpty(t, classic.Endpoint)
	assert.False(t, classic.HasCustomNode("https://github.com/BennyKok/comfyui-deploy"))
	broken, err := c.Machines.Get(ctx, comfytest.MachineGPUBroken)
	require.NoError(t, err)
	assert.Equal(t, comfy.MachineError, broken.Status)
	assert.Contains(t, broken.ImportFailedLogs, "segment_anything")
	legacy, err := c.Machines.Get(ctx, comfytest.MachineLegacyModal)
	require.NoError(t, err)
	assert.False(t, legacy.Type.CanQueue())
	_, err = c.Machines.Get(ctx, "ac000000-0000-4000-8000-0000000000ff")
	assert.True(t, comfy.IsNotFound(err), "%v", err)

	versions, err := c.Machines.ListServerlessVersions(ctx, comfytest.MachineGPUBuilding, nil)
	require.NoError(t, err)
	require.Len(t, versions, 2)
	assert.Equal(t, 2, versions[0].Version, "newest first")
	assert.Equal(t, comfy.MachineBuilding, versions[0].Status)
	one, err := c.Machines.GetServerlessVersion(ctx, comfytest.MachineGPUBuilding, versions[1].ID)
	require.NoError(t, err)
	assert.Equal(t, comfy.MachineReady, one.Status)
	assert.Equal(t, "A10G", one.GPU)

	check, err := c.Machines.CheckCustomNodes(ctx, comfytest.MachineGPUPoolA)
	require.NoError(t, err)
	assert.True(t, check.IsUpToDate)
	require.NotNil(t, check.LatestCommit)
	assert.False(t, check.LatestCommit.Date.IsZero())
	check, err = c.Machines.CheckCustomNodes(ctx, comfytest.MachineGPUPoolB)
	require.NoError(t, err)
	assert.False(t, check.IsUpToDate)
	assert.NotEqual(t, check.LocalCommit.Hash, check.LatestCommit.Hash)
}

func TestSimWorkflows(t *testing.T) {
	_, c := newSim(t, comfytest.Options{})
	ctx := testCtx(t)

	list, err := c.Workflows.List(ctx, &comfy.WorkflowListOptions{Search: "txt2"})
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, comfytest.WorkflowTxt2Img, list[0].ID)
	byMachine, err := c.Workflows.List(ctx, &comfy.WorkflowListOptions{MachineID: comfytest.MachineGPUPoolB})
	require.NoError(t, err)
	require.Len(t, byMachine, 1)
	assert.Equal(t, comfytest.WorkflowImg2Video, byMachine[0].ID)

	wf, err := c.Workflows.Get(ctx, comfytest.WorkflowTxt2Img)
	require.NoError(t, err)
	assert.Equal(t, "txt2img", wf.Name)
	require.Len(t, wf.Versions, 1)
	assert.Equal(t, comfytest.VersionTxt2Img, wf.Versions[0].ID)

	byNumber, err := c.Workflows.GetVersion(ctx, comfytest.WorkflowTxt2Img, 1)
	require.NoError(t, err)
	assert.Equal(t, comfytest.VersionTxt2Img, byNumber.ID)
	require.NotNil(t, byNumber.Snapshot)
	assert.NotEmpty(t, byNumber.Snapshot.GitCustomNodes)
	assert.True(t, json.Valid(byNumber.WorkflowAPI))
	_, err = c.Workflows.GetVersion(ctx, comfytest.WorkflowTxt2Img, 9)
	assert.True(t, comfy.IsNotFound(err), "%v", err)
	_, err = c.Workflows.GetVersionByID(ctx, "v1")
	assert.True(t, comfy.IsValidation(err), "%v", err)

	created, err := c.Workflows.CreateVersion(ctx, comfytest.WorkflowTxt2Img, &comfy.CreateVersionRequest{
		Workflow: byNumber.Workflow, WorkflowAPI: byNumber.WorkflowAPI, Comment: "tweak sampler", MachineID: comfytest.MachineGPUPoolB})
	require.NoError(t, err)
	assert.Equal(t, 2, created.Version)
	assert.Equal(t, comfytest.WorkflowTxt2Img, created.WorkflowID)
	versions, err := c.Workflows.ListVersions(ctx, comfytest.WorkflowTxt2Img, &comfy.VersionListOptions{Search: "sampler"})
	require.NoError(t, err)
	require.Len(t, versions, 1)
	assert.Equal(t, created.ID, versions[0].ID)
	versions, err = c.Workflows.ListVersions(ctx, comfytest.WorkflowTxt2Img, nil)
	require.NoError(t, err)
	require.Len(t, versions, 2)
	assert.Equal(t, 2, versions[0].Version, "newest first")
	previews, err := c.Deployments.List(ctx, &comfy.DeploymentListOptions{Environment: "preview"})
	require.NoError(t, err)
	require.Len(t, previews, 1, "a version with a machine creates a preview deployment")
	assert.Equal(t, created.ID, previews[0].WorkflowVersionID)

	newWF, err := c.Workflows.Create(ctx, &comfy.CreateWorkflowRequest{Name: "scratch",
		WorkflowJSON: string(byNumber.Workflow), WorkflowAPI: string(byNumber.WorkflowAPI), MachineID: comfytest.MachineGPUPoolA})
	require.NoError(t, err)
	assert.Equal(t, "scratch", newWF.Name)
	got, err := c.Workflows.Get(ctx, newWF.ID)
	require.NoError(t, err)
	require.Len(t, got.Versions, 1)
	assert.Equal(t, 1, got.Versions[0].Version)
}

func TestSimFilesAndAssets(t *testing.T) {
	_, c := newSim(t, comfytest.Options{})
	ctx := testCtx(t)
	data := pngBytes(t)

	// Run input files.
	up, err := c.Files.Upload(ctx, "input.png", bytes.NewReader(data))
	require.NoError(t, err)
	assert.Equal(t, "input.png", up.FileName)
	resp, body := download(t, up.FileURL)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, data, body)
	_, err = c.Files.Upload(ctx, "notes.txt", strings.NewReader("hi"))
	assert.True(t, comfy.IsValidation(err), "text/plain is not accepted: %v", err)

	// Model file rename.
	renamed, err := c.Files.Rename(ctx, comfytest.ModelFileSDXL, "sdxl_base.safetensors")
	require.NoError(t, err)
	assert.Equal(t, "sdxl_base.safetensors", renamed.ModelName)
	assert.Equal(t, "checkpoints", renamed.FolderPath)
	_, err = c.Files.Rename(ctx, comfytest.ModelFileSDXL, "../evil")
	assert.ErrorIs(t, err, comfy.ErrInvalidArgument)
	_, err = c.Files.Rename(ctx, "d0000000-0000-4000-8000-0000000000ff", "x.safetensors")
	assert.True(t, comfy.IsNotFound(err), "%v", err)

	// Asset library.
	folder, err := c.Assets.CreateFolder(ctx, "refs", "")
	require.NoError(t, err)
	assert.True(t, folder.IsFolder)
	_, err = c.Assets.CreateFolder(ctx, "refs", "/")
	assert.True(t, comfy.IsValidation(err), "400 when the folder exists: %v", err)

	uploaded, err := c.Assets.Upload(ctx, "/refs", "cat.png", bytes.NewReader(data))
	require.NoError(t, err)
	assert.Equal(t, "/refs", uploaded.Path)
	assert.Equal(t, int64(len(data)), uploaded.FileSize)
	resp, _ = download(t, uploaded.URL)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "upload returns the raw unsigned URL of a private bucket")
	fetched, err := c.Assets.Get(ctx, uploaded.ID)
	require.NoError(t, err)
	resp, body = download(t, fetched.URL)
	require.Equal(t, http.StatusOK, resp.StatusCode, "Get signs the URL")
	assert.Equal(t, data, body)

	pre, err := c.Assets.PresignedURL(ctx, &comfy.PresignedURLRequest{FileName: "dog.png", ContentType: "image/png",
		ParentPath: "/refs", Size: int64(len(data))})
	require.NoError(t, err)
	require.NotEmpty(t, pre.FileID)
	assert.Error(t, c.Assets.PutPresigned(ctx, pre, "image/jpeg", bytes.NewReader(data), int64(len(data))),
		"the PUT must send the signed content type")
	require.NoError(t, c.Assets.PutPresigned(ctx, pre, "image/png", bytes.NewReader(data), int64(len(data))))
	listed, err := c.Assets.List(ctx, "/refs")
	require.NoError(t, err)
	assert.Len(t, listed, 1, "not listed before Register")
	reg, err := c.Assets.Register(ctx, &comfy.RegisterAssetRequest{FileID: pre.FileID, FileName: "dog.png",
		FileSize: int64(len(data)), DBPath: pre.DBPath, URL: pre.DownloadURL, MimeType: "image/png"})
	require.NoError(t, err)
	assert.Equal(t, pre.FileID, reg.ID)
	fetched, err = c.Assets.Get(ctx, reg.ID)
	require.NoError(t, err)
	_, body = download(t, fetched.URL)
	assert.Equal(t, data, body)

	added, err := c.Assets.AddByURL(ctx, "https://example.com/images/cat-remote.png", "/refs")
	require.NoError(t, err)
	assert.Equal(t, "cat-remote.png", added.Name)
	assert.Equal(t, "image/png", added.MimeType)

	root, err := c.Assets.List(ctx, "")
	require.NoError(t, err)
	require.Len(t, root, 1)
	assert.Equal(t, folder.ID, root[0].ID)
	listed, err = c.Assets.List(ctx, "/refs")
	require.NoError(t, err)
	assert.Len(t, listed, 3)

	moved, err := c.Assets.Move(ctx, uploaded.ID, "/")
	require.NoError(t, err)
	assert.Equal(t, "/", moved.Path)
	_, err = c.Assets.Move(ctx, uploaded.ID, "/nowhere")
	assert.True(t, comfy.IsNotFound(err), "%v", err)
	_, err = c.Assets.Move(ctx, folder.ID, "/")
	assert.True(t, comfy.IsValidation(err), "folders cannot be moved: %v", err)

	found, err := c.Assets.Search(ctx, "cat", 0)
	require.NoError(t, err)
	names := []string{}
	for _, a := range found {
		names = append(names, a.Name)
	}
	assert.ElementsMatch(t, []string{"cat.png", "cat-remote.png"}, names)

	require.NoError(t, c.Assets.Delete(ctx, uploaded.ID))
	_, err = c.Assets.Get(ctx, uploaded.ID)
	assert.True(t, comfy.IsNotFound(err), "%v", err)
	require.NoError(t, c.Assets.Delete(ctx, folder.ID))
	_, err = c.Assets.Get(ctx, reg.ID)
	assert.True(t, comfy.IsNotFound(err), "deleting a folder removes its children's rows: %v", err)
}

func TestSimLogStream(t *testing.T) {
	_, c := newSim(t, comfytest.Options{})
	ctx := testCtx(t)
	queued, err := c.Runs.QueueDeployment(ctx, txt2imgRequest(""))
	require.NoError(t, err)

	// Live: the stream follows the run and ends after stream_complete.
	stream, err := c.Streams.Logs(ctx, comfy.LogStreamOptions{RunID: queued.RunID})
	require.NoError(t, err)
	defer stream.Close()
	var msgs []string
	var last *comfy.LogEvent
	for {
		ev, err := stream.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		msgs = append(msgs, ev.Message)
		last = ev
	}
	require.NotNil(t, last)
	assert.Equal(t, "stream_complete", last.Type)
	assert.Contains(t, msgs, "Run status: success")

	// Archived: a finished run replays its log and completes at once.
	archived, err := c.Streams.Logs(ctx, comfy.LogStreamOptions{RunID: queued.RunID, LogLevel: "info"})
	require.NoError(t, err)
	defer archived.Close()
	n := 0
	for {
		ev, err := archived.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if ev.Type == "" {
			assert.Equal(t, "info", ev.Level)
			assert.False(t, ev.Timestamp.IsZero())
			n++
		}
	}
	assert.Positive(t, n)

	_, err = c.Streams.Logs(ctx, comfy.LogStreamOptions{})
	assert.ErrorIs(t, err, comfy.ErrInvalidArgument)
}

func TestSimProgressStreamCaveats(t *testing.T) {
	sim, c := newSim(t, comfytest.Options{})
	ctx := testCtx(t)
	// Runs of this deployment never get past their cold start during the test.
	sim.SetTiming(comfytest.DeploymentUpscale, comfytest.Timing{ColdStart: time.Hour})
	slow, err := c.Runs.QueueDeployment(ctx, &comfy.DeploymentRunRequest{DeploymentID: comfytest.DeploymentUpscale,
		Inputs: map[string]any{"image": "https://example.com/a.png"}})
	require.NoError(t, err)

	// Caveat 1: a run_id stream carries every run of the org and ends at the
	// first terminal status of ANY run. The client hides the other run's
	// events, so the watched run's stream just ends early.
	stream, err := c.Streams.Progress(ctx, comfy.ProgressStreamOptions{RunID: slow.RunID})
	require.NoError(t, err)
	ev, err := stream.Next()
	require.NoError(t, err)
	assert.Equal(t, "connection_established", ev.Type)
	require.NotEmpty(t, ev.Channels)
	ev, err = stream.Next()
	require.NoError(t, err)
	assert.Equal(t, "subscribed", ev.Type)
	_, err = c.Runs.QueueDeployment(ctx, txt2imgRequest(""))
	require.NoError(t, err)
	for {
		ev, err = stream.Next()
		if err != nil {
			break
		}
		assert.Equal(t, slow.RunID, ev.RunID, "events of other runs are dropped by the client")
	}
	assert.ErrorIs(t, err, comfy.ErrStreamEnded)
	stream.Close()
	run, err := c.Runs.Get(ctx, slow.RunID, nil)
	require.NoError(t, err)
	assert.False(t, run.Status.IsTerminal(), "the watched run is still %s", run.Status)

	// Caveat 2: an API cancel publishes an event without a status, so a
	// run_id stream does not end when its run is cancelled. The plain stream
	// is watched for a bounded time; a return_run stream, whose messages are
	// full run rows, shows the new status.
	plainCtx, cancelPlain := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelPlain()
	plain, err := c.Streams.Progress(plainCtx, comfy.ProgressStreamOptions{RunID: slow.RunID})
	require.NoError(t, err)
	defer plain.Close()
	rows, err := c.Streams.Progress(ctx, comfy.ProgressStreamOptions{MachineID: comfytest.MachineGPUPoolA, ReturnRun: true})
	require.NoError(t, err)
	defer rows.Close()
	for _, s := range []*comfy.ProgressStream{plain, rows} {
		for range 2 { // connection_established, subscribed
			_, err = s.Next()
			require.NoError(t, err)
		}
	}
	_, err = c.Runs.Cancel(ctx, slow.RunID)
	require.NoError(t, err)

	ev, err = plain.Next()
	require.NoError(t, err)
	assert.Equal(t, slow.RunID, ev.RunID)
	assert.Empty(t, ev.Status, "the cancel event carries no status")
	_, err = plain.Next()
	assert.ErrorIs(t, err, context.DeadlineExceeded, "the stream does not end on cancel")

	ev, err = rows.Next()
	require.NoError(t, err)
	require.NotNil(t, ev.Run, "return_run rows decode into Run")
	assert.Equal(t, slow.RunID, ev.RunID)
	assert.Equal(t, comfy.StatusCancelled, ev.Run.Status)

	_, err = c.Streams.Progress(ctx, comfy.ProgressStreamOptions{RunID: "a", MachineID: "b"})
	assert.ErrorIs(t, err, comfy.ErrInvalidArgument)
}

func TestSimWebhooksEndToEnd(t *testing.T) {
	signer := comfy.WebhookSigner{Secret: []byte("test-webhook-secret")}
	type delivery struct {
		ev      *comfy.WebhookEvent
		subject string
	}
	var (
		mu         sync.Mutex
		deliveries []delivery
		failures   []string
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		subject, verr := signer.Verify(r.URL, time.Now())
		ev, perr := comfy.ParseWebhook(body)
		mu.Lock()
		defer mu.Unlock()
		if verr != nil || perr != nil {
			failures = append(failures, errors.Join(verr, perr).Error())
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		deliveries = append(deliveries, delivery{ev, subject})
	}))
	defer receiver.Close()

	sim, c := newSim(t, comfytest.Options{Seed: 3, Faults: comfytest.Faults{
		WebhookDuplicateRate: 1, WebhookReorderRate: 0.5, WebhookReorderDelay: 30 * time.Millisecond}})
	ctx := testCtx(t)

	const token = "tok-webhook"
	hook, err := signer.SignURL(receiver.URL+"/hook?target_events=run.output", token, time.Now().Add(time.Hour))
	require.NoError(t, err)
	req := txt2imgRequest("")
	req.Webhook = hook
	queued, err := c.Runs.QueueDeployment(ctx, req)
	require.NoError(t, err)
	run := waitRun(t, c, queued.RunID, terminal)
	require.Equal(t, comfy.StatusSuccess, run.Status)
	assert.Equal(t, hook, run.Webhook, "stored verbatim")
	assert.Equal(t, token, comfy.CorrelationToken(run))

	// Wait for the duplicated terminal deliveries (the simulator re-sends a
	// terminal status late, like a runner update after success).
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		successes := 0
		for _, d := range deliveries {
			if d.ev.Status == comfy.StatusSuccess && d.ev.EventType == comfy.WebhookRunUpdated {
				successes++
			}
		}
		mu.Unlock()
		if successes >= 2 {
			break
		}
		require.False(t, time.Now().After(deadline), "no duplicate terminal delivery")
		time.Sleep(10 * time.Millisecond)
	}

	mu.Lock()
	got := slices.Clone(deliveries)
	require.Empty(t, failures)
	mu.Unlock()

	dedupe := comfy.NewWebhookDeduper(64)
	var (
		seen    comfy.RunStatus
		dupes   int
		outputs []comfy.Output
	)
	for _, d := range got {
		assert.Equal(t, token, d.subject)
		assert.Equal(t, queued.RunID, d.ev.RunID)
		if dedupe.Seen(d.ev) {
			dupes++
			continue
		}
		switch d.ev.EventType {
		case comfy.WebhookRunOutput:
			outputs = append(outputs, d.ev.Outputs...)
		case comfy.WebhookRunUpdated:
			if d.ev.Supersedes(seen) {
				seen = d.ev.Status
			}
		}
	}
	assert.Positive(t, dupes, "duplicates were delivered and dropped")
	assert.Equal(t, comfy.StatusSuccess, seen, "final status seen")
	require.Len(t, outputs, 2, "one run.output per stored output")
	var items []comfy.MediaItem
	for _, o := range outputs {
		for _, v := range o.Data["images"] {
			if v.Media != nil {
				items = append(items, *v.Media)
			}
		}
	}
	require.Len(t, items, 1)
	assert.Equal(t, "image", items[0].OutputID, "webhooks keep the item-level output_id")
	assert.Equal(t, "image/png", items[0].Format)

	assert.Equal(t, 1, sim.Counters().RunsByToken[token], "the cid in the webhook URL is the correlation token")

	// Each delivery is logged at level "webhook".
	logs, err := c.Streams.Logs(ctx, comfy.LogStreamOptions{RunID: queued.RunID, LogLevel: "webhook"})
	require.NoError(t, err)
	defer logs.Close()
	ev, err := logs.Next()
	require.NoError(t, err)
	assert.Equal(t, "webhook", ev.Level)
	assert.Contains(t, ev.Message, "Webhook")
}

func TestSimDoEscapeHatch(t *testing.T) {
	_, c := newSim(t, comfytest.Options{})
	ctx := testCtx(t)
	queued, err := c.Runs.QueueDeployment(ctx, txt2imgRequest(""))
	require.NoError(t, err)

	// The hidden GET /run?run_id= alias is not wrapped; Do reaches it.
	req, err := c.NewRequest(ctx, http.MethodGet, "/run?run_id="+queued.RunID, nil)
	require.NoError(t, err)
	var run comfy.Run
	resp, err := c.Do(ctx, req, &run)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, queued.RunID, run.ID)
}
