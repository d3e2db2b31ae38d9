package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/preflight"
	"github.com/durable-comfy/durable-comfy/workflows"
)

// Seeded simulator deployments (see comfy/comfytest).
const (
	txt2img        = "de000000-0000-4000-8000-000000000001"
	txt2imgClassic = "de000000-0000-4000-8000-000000000005"
	onBuilding     = "de000000-0000-4000-8000-000000000006"
)

func TestRunToSuccessStoresVerifiedOutputs(t *testing.T) {
	e := newEnv(t, comfytest.Options{})
	run := e.start("e2e-success", workflows.ComfyRunInput{
		DeploymentID: txt2img,
		Inputs:       map[string]any{"prompt": "a red fox", "seed": 7},
		Labels:       map[string]string{"suite": "e2e"},
	})

	var res workflows.ComfyRunResult
	require.NoError(t, run.Get(context.Background(), &res))

	assert.Equal(t, "success", res.Status)
	require.Len(t, res.Attempts, 1)
	require.NotEmpty(t, res.Outputs)
	for _, out := range res.Outputs {
		body := e.readObject(out.Path)
		sum := sha256.Sum256(body)
		assert.Equal(t, hex.EncodeToString(sum[:]), out.SHA256, out.Path)
		assert.Equal(t, int64(len(body)), out.Size)
		if out.ContentType == "image/png" {
			_, err := png.Decode(bytes.NewReader(body))
			assert.NoError(t, err, "stored PNG must decode")
		}
	}
	var manifest activities.Manifest
	raw := e.readObject(res.ManifestPath)
	require.NoError(t, json.Unmarshal(raw, &manifest))
	assert.Equal(t, res.RunID, manifest.RunID)
	assert.Equal(t, txt2img, manifest.DeploymentID)
	assert.Equal(t, "a red fox", manifest.Inputs["prompt"])
	assert.Equal(t, res.Outputs, manifest.Outputs)
	assert.Equal(t, 1, e.sim.Counters().RunsByToken[res.Attempts[0].CorrelationToken])

	// The UI-facing surfaces: search attributes and the status query.
	desc, err := e.client.DescribeWorkflowExecution(context.Background(), "e2e-success", "")
	require.NoError(t, err)
	sa := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()
	assert.Contains(t, string(sa[workflows.RunIDKey.GetName()].GetData()), res.RunID)
	assert.Contains(t, string(sa[workflows.StatusKey.GetName()].GetData()), "success")
	status := queryStatus(t, e, "e2e-success")
	assert.Equal(t, workflows.PhaseSucceeded, status.Phase)
	recordHistory(t, e, "e2e-success", "comfyrun-success")
}

func TestAmbiguousSubmitIsReconciledWithoutASecondRun(t *testing.T) {
	e := newEnv(t, comfytest.Options{Faults: comfytest.Faults{AmbiguousSubmitRate: 1}})
	run := e.start("e2e-ambiguous", workflows.ComfyRunInput{DeploymentID: txt2img, Inputs: map[string]any{"prompt": "lost response"}})

	var res workflows.ComfyRunResult
	require.NoError(t, run.Get(context.Background(), &res))

	require.Len(t, res.Attempts, 1)
	assert.True(t, res.Attempts[0].Reconciled, "the run must be found by its correlation token")
	c := e.sim.Counters()
	assert.Equal(t, 1, c.RunsByToken[res.Attempts[0].CorrelationToken])
	assert.Equal(t, 1, c.RunsCreated)
	recordHistory(t, e, "e2e-ambiguous", "comfyrun-reconciled")
}

func TestCancelStopsTheRemoteRun(t *testing.T) {
	e := newEnv(t, comfytest.Options{Timing: comfytest.Timing{ColdStart: 200 * time.Millisecond, Run: time.Minute}})
	run := e.start("e2e-cancel", workflows.ComfyRunInput{DeploymentID: txt2img, Inputs: map[string]any{"prompt": "long"}})
	waitForPhase(t, e, "e2e-cancel", workflows.PhaseWaiting)

	require.NoError(t, e.client.CancelWorkflow(context.Background(), "e2e-cancel", ""))

	err := run.Get(context.Background(), nil)
	var canceled *temporal.CanceledError
	require.ErrorAs(t, err, &canceled)
	var res workflows.ComfyRunResult
	require.NoError(t, canceled.Details(&res))
	require.NotNil(t, res.Cancel)
	assert.True(t, res.Cancel.Supported)
	assert.Equal(t, "cancelled", res.Cancel.FinalStatus)
	assert.Equal(t, 1, e.sim.Counters().Cancels)
	recordHistory(t, e, "e2e-cancel", "comfyrun-cancel")
}

func TestCancelOnClassicMachineSaysItCannot(t *testing.T) {
	e := newEnv(t, comfytest.Options{Timing: comfytest.Timing{ColdStart: 200 * time.Millisecond, Run: time.Minute}})
	run := e.start("e2e-cancel-classic", workflows.ComfyRunInput{DeploymentID: txt2imgClassic, Inputs: map[string]any{"prompt": "long"}})
	waitForPhase(t, e, "e2e-cancel-classic", workflows.PhaseWaiting)

	require.NoError(t, e.client.CancelWorkflow(context.Background(), "e2e-cancel-classic", ""))

	var canceled *temporal.CanceledError
	require.ErrorAs(t, run.Get(context.Background(), nil), &canceled)
	var res workflows.ComfyRunResult
	require.NoError(t, canceled.Details(&res))
	require.NotNil(t, res.Cancel)
	assert.False(t, res.Cancel.Supported)
	assert.Contains(t, res.Cancel.Message, "cannot cancel")
}

func TestPreflightFailuresSpendNothing(t *testing.T) {
	e := newEnv(t, comfytest.Options{})
	cases := map[string]struct {
		in   workflows.ComfyRunInput
		kind string
	}{
		"machine building": {workflows.ComfyRunInput{DeploymentID: onBuilding, Inputs: map[string]any{"prompt": "x"}}, preflight.KindMachineNotReady},
		"bad inputs":       {workflows.ComfyRunInput{DeploymentID: txt2img, Inputs: map[string]any{"promt": "x", "steps": 500}}, preflight.KindInvalidInput},
		"no deployment":    {workflows.ComfyRunInput{DeploymentID: "de000000-0000-4000-8000-0000000000ff"}, preflight.KindDeploymentNotFound},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := e.start("e2e-preflight-"+tc.kind, tc.in).Get(context.Background(), nil)
			var appErr *temporal.ApplicationError
			require.ErrorAs(t, err, &appErr)
			assert.Equal(t, tc.kind, appErr.Type(), appErr.Error())
		})
	}
	assert.Zero(t, e.sim.Counters().RunsCreated, "a rejected run must cost nothing")
}

func TestStartFromTheTemporalCLI(t *testing.T) {
	e := newEnv(t, comfytest.Options{})
	input := fmt.Sprintf(`{"deployment_id":%q,"inputs":{"prompt":"from the CLI"},"outputs":{"skip":true}}`, txt2img)
	cmd := exec.Command(cliPath, "workflow", "start",
		"--address", devServer.FrontendHostPort(), "--namespace", "default",
		"--type", workflows.ComfyRunWorkflow, "--task-queue", e.taskQueue,
		"--workflow-id", "e2e-cli", "--input", input)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))

	var res workflows.ComfyRunResult
	require.NoError(t, e.client.GetWorkflow(context.Background(), "e2e-cli", "").Get(context.Background(), &res))
	assert.Equal(t, "success", res.Status)
}

func TestStartFromTheHTTPAPI(t *testing.T) {
	e := newEnv(t, comfytest.Options{})
	body := fmt.Sprintf(`{
	  "workflowType": {"name": %q},
	  "taskQueue": {"name": %q},
	  "input": [{"deployment_id": %q, "inputs": {"prompt": "from plain HTTP"}, "outputs": {"skip": true}}]
	}`, workflows.ComfyRunWorkflow, e.taskQueue, txt2img)
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/namespaces/default/workflows/e2e-http", httpPort)
	resp, err := http.Post(url, "application/json", bytes.NewBufferString(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var started struct {
		RunID string `json:"runId"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&started))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotEmpty(t, started.RunID)

	var res workflows.ComfyRunResult
	require.NoError(t, e.client.GetWorkflow(context.Background(), "e2e-http", started.RunID).Get(context.Background(), &res))
	assert.Equal(t, "success", res.Status)
}

func queryStatus(t *testing.T, e *env, id string) workflows.RunStatus {
	t.Helper()
	v, err := e.client.QueryWorkflow(context.Background(), id, "", workflows.StatusQuery)
	require.NoError(t, err)
	var st workflows.RunStatus
	require.NoError(t, v.Get(&st))
	return st
}

func waitForPhase(t *testing.T, e *env, id, phase string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var st workflows.RunStatus
	for time.Now().Before(deadline) {
		v, err := e.client.QueryWorkflow(context.Background(), id, "", workflows.StatusQuery)
		if err == nil && v.Get(&st) == nil && st.Phase == phase {
			return
		}
		if st.Phase == workflows.PhaseFailed {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("workflow %s never reached phase %s; last status: %+v", id, phase, st)
}

func TestWorkerCrashMidPollResumesTheSameRun(t *testing.T) {
	e := newEnv(t, comfytest.Options{Timing: comfytest.Timing{ColdStart: 200 * time.Millisecond, Run: 20 * time.Second}})
	run := e.start("e2e-crash", workflows.ComfyRunInput{DeploymentID: txt2img, Inputs: map[string]any{"prompt": "survives"}})
	waitForPhase(t, e, "e2e-crash", workflows.PhaseWaiting)

	// The worker dies mid-poll; a new one takes over once the heartbeat
	// timeout notices, and resumes from the heartbeat details.
	e.worker.Stop()
	e.startWorker()

	var res workflows.ComfyRunResult
	require.NoError(t, run.Get(context.Background(), &res))
	assert.Equal(t, "success", res.Status)
	require.Len(t, res.Attempts, 1)
	c := e.sim.Counters()
	assert.Equal(t, 1, c.RunsCreated, "the resumed poll must not submit again")
	assert.Equal(t, 1, c.RunsByToken[res.Attempts[0].CorrelationToken])
}
