package main

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/durable-comfy/durable-comfy/preflight"
	"github.com/durable-comfy/durable-comfy/workflows"
)

// Deployments the fake activities know: each drives the real ComfyRun
// workflow down one path the CLI must report.
const (
	depSucceeds = "de000000-0000-4000-8000-0000000000a1"
	depRejected = "de000000-0000-4000-8000-0000000000a2"
	depHangs    = "de000000-0000-4000-8000-0000000000a3"
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
	return &activities.PreflightResult{DeploymentID: req.DeploymentID, ComfyWorkflowID: "wf", MachineID: "m", MachineName: "sim-machine", CanCancel: true}, nil
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
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath: cli, LogLevel: "error",
		ClientOptions: &client.Options{Namespace: "default"},
		// Only the keys matter: the dev server registers each with its type.
		SearchAttributes: temporal.NewSearchAttributes(
			workflows.DeploymentIDKey.ValueSet(""), workflows.RunIDKey.ValueSet(""), workflows.StatusKey.ValueSet(""),
		),
	})
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
		assert.Contains(t, out, "#1 run run-a3 · unfinished: canceled")

		code, out, _ = cliRun("list", "-json", "-deployment", depHangs)
		require.Equal(t, exitOK, code)
		var rows []listRow
		require.NoError(t, json.Unmarshal([]byte(out), &rows))
		require.Len(t, rows, 1)
		assert.Equal(t, "Canceled", rows[0].ExecutionStatus)
		assert.Equal(t, "cancelled", rows[0].ComfyStatus)
		assert.Equal(t, "run-a3", rows[0].ComfyRunID)
	})

	t.Run("unknown workflow exits 4", func(t *testing.T) {
		code, _, errOut := cliRun("status", "no-such-workflow")
		assert.Equal(t, exitTemporal, code)
		assert.Contains(t, errOut, `workflow "no-such-workflow" not found`)
	})
}
