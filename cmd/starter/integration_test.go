package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/devserver"
	"github.com/durable-comfy/durable-comfy/pipeline"
	"github.com/durable-comfy/durable-comfy/preflight"
	"github.com/durable-comfy/durable-comfy/workflows"
)

// Deployments the fake activities know: each drives the real ComfyRun
// workflow down one path the CLI must report.
const (
	depSucceeds = "de000000-0000-4000-8000-0000000000a1"
	depRejected = "de000000-0000-4000-8000-0000000000a2"
	depHangs    = "de000000-0000-4000-8000-0000000000a3"
	// depBatchHangs hangs like depHangs, for the batch's items.
	depBatchHangs = "de000000-0000-4000-8000-0000000000a4"
)

// fakeComfy stands in for the ComfyDeploy activities under their
// registered names, so the CLI is tested against the real workflow.
type fakeComfy struct {
	mu       sync.Mutex
	awaiting map[string]bool
}

func (f *fakeComfy) Preflight(_ context.Context, req activities.PreflightRequest) (*activities.PreflightResult, error) {
	if req.DeploymentID == depRejected {
		return nil, temporal.NewNonRetryableApplicationError("inputs do not match the deployment: steps must be a number",
			preflight.KindInvalidInput, nil, []string{"steps must be a number"})
	}
	// A declared input, so a batch's own check of its items' inputs passes.
	prompt := []comfy.InputType{{InputID: "prompt", Type: comfy.InputString, DefaultValue: ""}}
	return &activities.PreflightResult{DeploymentID: req.DeploymentID, ComfyWorkflowID: "wf", MachineID: "m", MachineName: "sim-machine", CanCancel: true, InputTypes: prompt}, nil
}

func (f *fakeComfy) Submit(_ context.Context, req activities.SubmitRequest) (*activities.SubmitResult, error) {
	return &activities.SubmitResult{RunID: "run-" + req.DeploymentID[len(req.DeploymentID)-2:]}, nil
}

func (f *fakeComfy) AwaitRun(ctx context.Context, req activities.AwaitRequest) (*activities.AwaitResult, error) {
	f.mu.Lock()
	f.awaiting[req.RunID] = true
	f.mu.Unlock()
	st := activities.PollState{RunID: req.RunID, Status: "running"}
	for i := 0; ; i++ {
		st.Progress = min(float64(i)/4, 1)
		st.LiveStatus = "KSampler"
		activity.RecordHeartbeat(ctx, st)
		if req.RunID == "run-a1" && i == 4 {
			return &activities.AwaitResult{RunID: req.RunID, Status: "success", QueueSeconds: 1, RunSeconds: 2}, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func (f *fakeComfy) CollectOutputs(_ context.Context, req activities.CollectRequest) (*activities.CollectResult, error) {
	return &activities.CollectResult{
		Folder: req.Folder, ManifestPath: "out/" + req.WorkflowID + "/manifest.json",
		Outputs: []activities.StoredOutput{{Kind: "image", Filename: "a.png", Path: "out/" + req.WorkflowID + "/a.png", SHA256: "deadbeef", Size: 2048}},
	}, nil
}

func (f *fakeComfy) CancelRun(_ context.Context, req activities.CancelRequest) (*activities.CancelResult, error) {
	return &activities.CancelResult{RunID: req.RunID, Supported: true, FinalStatus: "cancelled", Message: "cancelled at ComfyDeploy"}, nil
}

func (f *fakeComfy) WriteBatchResults(_ context.Context, req activities.WriteBatchResultsRequest) (*activities.WriteBatchResultsResult, error) {
	return &activities.WriteBatchResultsResult{Path: fmt.Sprintf("out/%s/results/part-%05d.jsonl", req.BatchID, req.Part), Lines: len(req.Lines)}, nil
}

func (f *fakeComfy) FinalizeBatchResults(_ context.Context, req activities.FinalizeBatchResultsRequest) (*activities.FinalizeBatchResultsResult, error) {
	return &activities.FinalizeBatchResultsResult{Path: "out/" + req.BatchID + "/results.jsonl"}, nil
}

// PreparePipeline checks the spec as the real activity does, without
// ComfyDeploy: every deployment passes the fake preflight.
func (f *fakeComfy) PreparePipeline(ctx context.Context, req activities.PreparePipelineRequest) (*activities.PipelinePlan, error) {
	spec, err := pipeline.Parse([]byte(req.SpecText))
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidPipeline", nil)
	}
	norm, err := pipeline.Normalize(spec)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidPipeline", nil)
	}
	order, err := pipeline.Order(norm)
	if err != nil {
		return nil, err
	}
	plan := &activities.PipelinePlan{Spec: *norm, Order: order, Preflight: map[string]activities.PreflightResult{}}
	for _, st := range norm.Steps {
		pre, err := f.Preflight(ctx, activities.PreflightRequest{DeploymentID: st.Deployment})
		if err != nil {
			return nil, err
		}
		plan.Preflight[st.Deployment] = *pre
	}
	return plan, nil
}

func (f *fakeComfy) isAwaiting(runID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.awaiting[runID]
}

// TestAgainstDevServer drives the CLI against a real Temporal dev server.
// It needs the pinned CLI binary (`make test` sets TEMPORAL_CLI_PATH).
func TestAgainstDevServer(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs the Temporal dev server")
	}
	cli := os.Getenv("TEMPORAL_CLI_PATH")
	if cli == "" {
		cli, _ = filepath.Abs("../../bin/temporal")
	}
	if _, err := os.Stat(cli); err != nil {
		t.Fatalf("Temporal CLI not found at %s: run `make test` (it builds bin/temporal) or set TEMPORAL_CLI_PATH", cli)
	}
	ctx := context.Background()
	opts := devserver.TestOptions(cli)
	opts.ClientOptions = &client.Options{Namespace: "default"}
	srv, err := testsuite.StartDevServer(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })

	fake := &fakeComfy{awaiting: map[string]bool{}}
	w := worker.New(srv.Client(), "comfy-cli-test", worker.Options{})
	workflows.Register(w)
	w.RegisterActivity(fake)
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	t.Setenv("TEMPORAL_ADDRESS", srv.FrontendHostPort())
	t.Setenv("TEMPORAL_NAMESPACE", "default")
	cliRun := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: os.Getenv, now: time.Now}
		code := e.main(ctx, args)
		return code, out.String(), errOut.String()
	}
	q := []string{"-task-queue", "comfy-cli-test"}

	t.Run("run -wait succeeds and prints outputs", func(t *testing.T) {
		code, out, errOut := cliRun(append([]string{"run", "-id", "cli-ok", "-deployment", depSucceeds, "-input", "prompt=a cat", "-wait"}, q...)...)
		require.Equal(t, exitOK, code, out+errOut)
		t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
		assert.Contains(t, out, "ComfyRun cli-ok succeeded")
		assert.Contains(t, out, "out/cli-ok/a.png")
		assert.Contains(t, out, "sha256 deadbeef · 2.0 KiB")
		assert.Contains(t, out, "manifest     out/cli-ok/manifest.json")
		assert.Contains(t, out, "/namespaces/default/workflows/cli-ok")
		assert.Contains(t, errOut, "waiting", "progress lines on stderr")

		code, out, _ = cliRun("status", "-json", "cli-ok")
		require.Equal(t, exitOK, code)
		var r report
		require.NoError(t, json.Unmarshal([]byte(out), &r))
		assert.Equal(t, "Completed", r.ExecutionStatus)
		require.NotNil(t, r.Result)
		assert.Equal(t, "run-a1", r.Result.RunID)
	})

	t.Run("preflight rejection exits 1 with the problems", func(t *testing.T) {
		code, out, errOut := cliRun(append([]string{"run", "-id", "cli-rejected", "-deployment", depRejected, "-input", "steps=x", "-wait"}, q...)...)
		require.Equal(t, exitFailed, code, out+errOut)
		t.Logf("rejected:\n%s", out)
		assert.Contains(t, out, "InvalidInput: inputs do not match the deployment")
		assert.Contains(t, out, "- steps must be a number")
	})

	t.Run("cancel -wait reports the remote cancel", func(t *testing.T) {
		code, out, errOut := cliRun(append([]string{"run", "-id", "cli-cancel", "-deployment", depHangs, "-json"}, q...)...)
		require.Equal(t, exitOK, code, out+errOut)
		require.Eventually(t, func() bool { return fake.isAwaiting("run-a3") }, 20*time.Second, 100*time.Millisecond)

		code, _, errOut = cliRun(append([]string{"run", "-id", "cli-cancel", "-deployment", depHangs}, q...)...)
		assert.Equal(t, exitUsage, code, "a running workflow's id is refused")
		assert.Contains(t, errOut, "already in use")

		code, out, errOut = cliRun("status", "cli-cancel")
		require.Equal(t, exitOK, code, out+errOut)
		t.Logf("status:\n%s", out)
		assert.Contains(t, out, "ComfyRun cli-cancel running")
		assert.Contains(t, out, "comfy run    run-a3 · running")
		assert.Contains(t, out, "#1 run run-a3 · in progress")

		code, out, errOut = cliRun("cancel", "-wait", "cli-cancel")
		require.Equal(t, exitCancelled, code, out+errOut)
		t.Logf("cancel:\n%s", out)
		assert.Contains(t, out, "ComfyDeploy run run-a3 was cancelled")
		assert.Contains(t, out, "#1 run run-a3 · cancelled")

		code, out, _ = cliRun("list", "-json", "-deployment", depHangs)
		require.Equal(t, exitOK, code)
		var rows []listRow
		require.NoError(t, json.Unmarshal([]byte(out), &rows))
		require.Len(t, rows, 1)
		assert.Equal(t, "Canceled", rows[0].ExecutionStatus)
		assert.Equal(t, "cancelled", rows[0].ComfyStatus)
		assert.Equal(t, "run-a3", rows[0].ComfyRunID)
	})

	writeFile := func(t *testing.T, name, content string) string {
		path := filepath.Join(t.TempDir(), name)
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		return path
	}

	t.Run("batch pause, set-concurrency, resume and cancel", func(t *testing.T) {
		file := writeFile(t, "batch.yaml", "deployments: ["+depBatchHangs+"]\nmax_concurrency: 1\nitems:\n  - {prompt: a}\n  - {prompt: b}\n  - {prompt: c}\n")
		code, out, errOut := cliRun(append([]string{"batch", "-f", file, "-id", "cli-batch", "-json"}, q...)...)
		require.Equal(t, exitOK, code, out+errOut)
		require.Eventually(t, func() bool { return fake.isAwaiting("run-a4") }, 20*time.Second, 100*time.Millisecond)

		code, _, errOut = cliRun("batch", "retry-failed", "cli-batch")
		assert.Equal(t, exitUsage, code)
		assert.Contains(t, errOut, "batch cli-batch is still running")

		code, out, errOut = cliRun("batch", "pause", "cli-batch")
		require.Equal(t, exitOK, code, out+errOut)
		assert.Contains(t, out, "Batch cli-batch paused: no new items start; 1 running go on")

		code, out, errOut = cliRun("batch", "status", "-json", "cli-batch")
		require.Equal(t, exitOK, code, out+errOut)
		var r batchReport
		require.NoError(t, json.Unmarshal([]byte(out), &r))
		require.NotNil(t, r.Progress, r.ProgressError)
		assert.True(t, r.Progress.Paused)
		assert.Equal(t, 3, r.Progress.Total)
		assert.Equal(t, 1, r.Progress.Running)
		assert.Equal(t, 2, r.Progress.Pending)

		code, out, errOut = cliRun("batch", "set-concurrency", "cli-batch", "2")
		require.Equal(t, exitOK, code, out+errOut)
		assert.Equal(t, "Batch cli-batch concurrency: 1 → 2\n", out)

		code, out, errOut = cliRun("batch", "resume", "cli-batch")
		require.Equal(t, exitOK, code, out+errOut)
		assert.Contains(t, out, "Batch cli-batch resumed (running): up to 2 items run at once")

		code, out, errOut = cliRun("status", "cli-batch")
		assert.Equal(t, exitUsage, code, out)
		assert.Contains(t, errOut, "use `starter batch status cli-batch`")

		code, out, errOut = cliRun("batch", "cancel", "-wait", "cli-batch")
		require.Equal(t, exitCancelled, code, out+errOut)
		t.Logf("batch cancel:\n%s\nstderr:\n%s", out, errOut)
		assert.Contains(t, out, "ComfyBatch cli-batch cancelled")
		assert.Contains(t, out, "results      out/cli-batch/results.jsonl")
		assert.Contains(t, out, "retry-failed cli-batch")

		code, _, errOut = cliRun("batch", "pause", "cli-batch")
		assert.Equal(t, exitUsage, code)
		assert.Contains(t, errOut, "has already ended")
	})

	t.Run("batch retry-failed skips the items that succeeded", func(t *testing.T) {
		// Item 1 fails in the workflow (an object input) without a run;
		// page_size 1 makes the batch continue as new after each item, so
		// -wait follows the chain and retry-failed reads the first run's input.
		file := writeFile(t, "batch.json", `{"deployments": ["`+depSucceeds+`"], "items": [{"prompt": "a"}, {"opts": {"a": 1}}], "page_size": 1}`)
		code, out, errOut := cliRun(append([]string{"batch", "-f", file, "-id", "cli-retry", "-wait"}, q...)...)
		require.Equal(t, exitFailed, code, out+errOut)
		t.Logf("batch:\n%s\nstderr:\n%s", out, errOut)
		assert.Contains(t, out, "ComfyBatch cli-retry completed with failures")
		assert.Contains(t, out, "2 in all · 1 succeeded · 1 failed · 0 skipped · 0 cancelled")
		assert.Contains(t, errOut, "2/2 done")

		code, _, errOut = cliRun(append([]string{"batch", "-f", file, "-id", "cli-retry"}, q...)...)
		assert.Equal(t, exitUsage, code)
		assert.Contains(t, errOut, "starter batch retry-failed cli-retry")

		code, out, errOut = cliRun("batch", "retry-failed", "-wait", "-json", "cli-retry")
		require.Equal(t, exitFailed, code, out+errOut)
		var r batchReport
		require.NoError(t, json.Unmarshal([]byte(out), &r))
		require.NotNil(t, r.Result)
		assert.Equal(t, workflows.BatchCompletedWithFailures, r.Result.Status)
		assert.Equal(t, 1, r.Result.Skipped, "the item that succeeded is not run again")
		assert.Equal(t, 1, r.Result.Failed)
		assert.Equal(t, 0, r.Result.Succeeded)
	})

	t.Run("pipeline -wait prints each step", func(t *testing.T) {
		file := writeFile(t, "p.yaml", "name: one\nsteps:\n  - name: txt2img\n    deployment: "+depSucceeds+"\n    inputs: {prompt: a lighthouse}\n")
		code, out, errOut := cliRun(append([]string{"pipeline", "-f", file, "-id", "cli-pipe", "-wait"}, q...)...)
		require.Equal(t, exitOK, code, out+errOut)
		t.Logf("pipeline:\n%s\nstderr:\n%s", out, errOut)
		assert.Contains(t, out, "ComfyPipeline cli-pipe (one) succeeded")
		assert.Contains(t, out, "txt2img      succeeded · "+depSucceeds)
		assert.Contains(t, out, "cli-pipe/txt2img · succeeded · run run-a1")
		assert.Contains(t, out, "/a.png · sha256 deadbeef")
		assert.Contains(t, errOut, "txt2img succeeded · run run-a1 · 1 output")

		code, out, _ = cliRun("pipeline", "status", "-json", "cli-pipe")
		require.Equal(t, exitOK, code)
		var r pipelineReport
		require.NoError(t, json.Unmarshal([]byte(out), &r))
		require.NotNil(t, r.Result)
		assert.Equal(t, workflows.PipelineSucceeded, r.Result.Status)
	})

	t.Run("schedule create, list and delete", func(t *testing.T) {
		args := []string{"schedule", "create", "-kind", "pipeline", "-f", "../../examples/pipeline-hero.yaml", "-cron", "0 3 * * *", "-id", "cli-sched", "-paused", "-note", "nightly hero"}
		code, out, errOut := cliRun(append(args, q...)...)
		require.Equal(t, exitOK, code, out+errOut)
		assert.Contains(t, out, `Created schedule cli-sched: ComfyPipeline on "0 3 * * *"`)

		code, _, errOut = cliRun(append(args, q...)...)
		assert.Equal(t, exitUsage, code)
		assert.Contains(t, errOut, `schedule "cli-sched" already exists`)

		var row *scheduleRow
		require.Eventually(t, func() bool { // the list is read from visibility
			_, out, _ := cliRun("schedule", "list", "-json")
			var rows []scheduleRow
			if json.Unmarshal([]byte(out), &rows) != nil {
				return false
			}
			for i := range rows {
				if rows[i].ID == "cli-sched" {
					row = &rows[i]
				}
			}
			return row != nil
		}, 20*time.Second, 200*time.Millisecond)
		assert.Equal(t, workflows.ComfyPipelineWorkflow, row.WorkflowType)
		assert.Equal(t, "0 3 * * *", row.Cron)
		assert.True(t, row.Paused)

		code, out, errOut = cliRun("schedule", "delete", "cli-sched")
		require.Equal(t, exitOK, code, out+errOut)
		code, _, errOut = cliRun("schedule", "delete", "cli-sched")
		assert.Equal(t, exitTemporal, code)
		assert.Contains(t, errOut, `schedule "cli-sched" not found`)
	})

	t.Run("unknown workflow exits 4", func(t *testing.T) {
		code, _, errOut := cliRun("status", "no-such-workflow")
		assert.Equal(t, exitTemporal, code)
		assert.Contains(t, errOut, `workflow "no-such-workflow" not found`)
	})
}
