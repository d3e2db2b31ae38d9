package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/workflows"
)

func TestBar(t *testing.T) {
	tests := []struct {
		fraction float64
		want     string
	}{
		{0, "░░░░░░░░░░"},
		{0.42, "████░░░░░░"},
		{0.45, "█████░░░░░"},
		{1, "██████████"},
		{1.7, "██████████"},
		{-1, "░░░░░░░░░░"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, bar(tt.fraction, 10), "fraction %v", tt.fraction)
	}
}

func TestRenderBar(t *testing.T) {
	s := snapshot{Phase: "waiting", Attempt: 2, MaxAttempts: 3, RunID: "r1", Status: "running", Progress: 0.42, LiveStatus: "KSampler 10/24", Elapsed: 65 * time.Second}
	assert.Equal(t, "waiting · attempt 2/3 · running ████████░░░░░░░░░░░░  42% · KSampler 10/24 · 1:05", renderBar(s, 200))

	single := snapshot{Phase: "preflight", Attempt: 0, MaxAttempts: 1, Elapsed: 3 * time.Second}
	assert.Equal(t, "preflight · 0:03", renderBar(single, 200), "no attempt counter for single-attempt runs, no bar before a run exists")

	assert.Equal(t, "starting · 0:00", renderBar(snapshot{}, 200))

	cut := renderBar(s, 40)
	assert.Equal(t, 39, len([]rune(cut)), "one column spare so the cursor never wraps")
	assert.True(t, strings.HasSuffix(cut, "…"))

	note := snapshot{Note: "no worker is polling task queue \"comfy\"", Elapsed: time.Hour + 2*time.Second}
	assert.Equal(t, "no worker is polling task queue \"comfy\" · 1:00:02", renderBar(note, 200))
}

func TestRenderLine(t *testing.T) {
	s := snapshot{Phase: "waiting", Attempt: 1, MaxAttempts: 1, RunID: "r1", Status: "running", Progress: 0.5, LiveStatus: "VAE\ndecode", Elapsed: 10 * time.Second}
	assert.Equal(t, "[0:10] waiting · running  50% · VAE decode", renderLine(s))
}

func TestProgressPrinterLogMode(t *testing.T) {
	var buf bytes.Buffer
	p := newProgressPrinter(&buf, false, "")
	steps := []snapshot{
		{Phase: "preflight"},
		{Phase: "preflight", Elapsed: time.Second}, // only time moved
		{Phase: "waiting", RunID: "r", Status: "queued"},
		{Phase: "waiting", RunID: "r", Status: "running", Progress: 0.01},
		{Phase: "waiting", RunID: "r", Status: "running", Progress: 0.05, LiveStatus: "node 2"}, // same decile
		{Phase: "waiting", RunID: "r", Status: "running", Progress: 0.12},
		{Phase: "waiting", RunID: "r", Status: "running", Progress: 0.19},
		{Phase: "collecting", RunID: "r", Status: "success", Progress: 1},
	}
	for _, s := range steps {
		p.update(s)
	}
	p.done()
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	assert.Equal(t, []string{
		"[0:00] preflight",
		"[0:00] waiting · queued   0%",
		"[0:00] waiting · running   1%",
		"[0:00] waiting · running  12%",
		"[0:00] collecting · success 100%",
	}, lines)
	assert.NotContains(t, buf.String(), "\r")
}

func TestProgressPrinterTerminalMode(t *testing.T) {
	var buf bytes.Buffer
	p := newProgressPrinter(&buf, true, "60")
	p.update(snapshot{Phase: "preflight"})
	p.update(snapshot{Phase: "preflight"})
	p.done()
	assert.Equal(t, "\rpreflight · 0:00\x1b[K\rpreflight · 0:00\x1b[K\n", buf.String(), "redraws in place every poll and ends the line once")
	assert.Equal(t, 60, p.width)

	buf.Reset()
	q := newProgressPrinter(&buf, true, "")
	q.done()
	assert.Empty(t, buf.String(), "nothing drawn, nothing to end")
	assert.Equal(t, 100, q.width)
}

func TestSnapshotOf(t *testing.T) {
	st := &workflows.RunStatus{Phase: workflows.PhaseWaiting, Attempt: 1, MaxAttempts: 2, RunID: "r1", Status: "running", Progress: 0.1}
	hb := &activities.PollState{RunID: "r1", Status: "running", Progress: 0.37, LiveStatus: "KSampler"}

	s := snapshotOf(st, hb, time.Second)
	assert.Equal(t, snapshot{Phase: "waiting", Attempt: 1, MaxAttempts: 2, RunID: "r1", Status: "running", Progress: 0.37, LiveStatus: "KSampler", Elapsed: time.Second}, s, "the heartbeat is fresher")

	stale := &activities.PollState{RunID: "r0", Status: "failed", Progress: 0.9}
	assert.Equal(t, 0.1, snapshotOf(st, stale, 0).Progress, "a heartbeat of another run is ignored")

	collecting := *st
	collecting.Phase, collecting.Status, collecting.Progress = workflows.PhaseCollecting, "success", 1
	assert.Equal(t, "success", snapshotOf(&collecting, hb, 0).Status, "outside the waiting phase the query wins")

	behind := &activities.PollState{RunID: "r1", Status: "running", Progress: 0.05, LiveStatus: "old"}
	assert.Equal(t, 0.1, snapshotOf(st, behind, 0).Progress, "a throttled heartbeat behind the query's signal is ignored")
	queued := *st
	queued.Status, queued.Progress = "queued", 0
	assert.Equal(t, "running", snapshotOf(&queued, behind, 0).Status, "a later status wins whatever the progress")

	noQuery := snapshotOf(nil, hb, 0)
	assert.Equal(t, "waiting", noQuery.Phase, "without the query the heartbeat alone still shows progress")
	assert.Equal(t, 0.37, noQuery.Progress)
}

func TestChangeKeyDeciles(t *testing.T) {
	base := snapshot{Phase: "waiting", Status: "running"}
	a, b, c := base, base, base
	a.Progress, b.Progress, c.Progress = 0.30, 0.39, 0.40
	assert.Equal(t, changeKey(a), changeKey(b))
	assert.NotEqual(t, changeKey(b), changeKey(c))
	d := b
	d.LiveStatus = "other node"
	assert.Equal(t, changeKey(b), changeKey(d), "live status alone does not log a line")
}

func TestFormatElapsed(t *testing.T) {
	assert.Equal(t, "0:00", formatElapsed(0))
	assert.Equal(t, "0:59", formatElapsed(59*time.Second+400*time.Millisecond))
	assert.Equal(t, "12:05", formatElapsed(12*time.Minute+5*time.Second))
	assert.Equal(t, "2:03:04", formatElapsed(2*time.Hour+3*time.Minute+4*time.Second))
}

func TestAwaitState(t *testing.T) {
	ps := activities.PollState{RunID: "r1", Status: "running", Progress: 0.6, LiveStatus: "KSampler", Polls: 7}
	details, err := converter.GetDefaultDataConverter().ToPayloads(ps)
	require.NoError(t, err)
	other, err := converter.GetDefaultDataConverter().ToPayloads("x")
	require.NoError(t, err)
	desc := &workflowservice.DescribeWorkflowExecutionResponse{PendingActivities: []*workflow.PendingActivityInfo{
		{ActivityType: &common.ActivityType{Name: "Submit"}, HeartbeatDetails: other},
		{ActivityType: &common.ActivityType{Name: "AwaitRun"}},
		{ActivityType: &common.ActivityType{Name: "AwaitRun"}, HeartbeatDetails: details},
	}}
	got := awaitState(desc)
	require.NotNil(t, got)
	assert.Equal(t, ps.RunID, got.RunID)
	assert.Equal(t, 0.6, got.Progress)
	assert.Equal(t, "KSampler", got.LiveStatus)

	assert.Nil(t, awaitState(&workflowservice.DescribeWorkflowExecutionResponse{}))
}

func TestNoWorkerNote(t *testing.T) {
	now := time.Now()
	desc := func(state enums.PendingWorkflowTaskState, age time.Duration) *workflowservice.DescribeWorkflowExecutionResponse {
		return &workflowservice.DescribeWorkflowExecutionResponse{
			WorkflowExecutionInfo: &workflow.WorkflowExecutionInfo{TaskQueue: "comfy"},
			PendingWorkflowTask:   &workflow.PendingWorkflowTaskInfo{State: state, ScheduledTime: timestamppb.New(now.Add(-age))},
		}
	}
	assert.Contains(t, noWorkerNote(desc(enums.PENDING_WORKFLOW_TASK_STATE_SCHEDULED, time.Minute), now), `task queue "comfy"`)
	assert.Empty(t, noWorkerNote(desc(enums.PENDING_WORKFLOW_TASK_STATE_SCHEDULED, time.Second), now), "a fresh task is just being picked up")
	assert.Empty(t, noWorkerNote(desc(enums.PENDING_WORKFLOW_TASK_STATE_STARTED, time.Minute), now))
	assert.Empty(t, noWorkerNote(&workflowservice.DescribeWorkflowExecutionResponse{}, now))
}

func TestBuildListQuery(t *testing.T) {
	tests := []struct {
		name string
		f    listFlags
		want string
	}{
		{"no filters", listFlags{}, "WorkflowType = 'ComfyRun'"},
		{"deployment", listFlags{deployment: testDeployment}, "WorkflowType = 'ComfyRun' AND ComfyDeploymentId = '" + testDeployment + "'"},
		{"all", listFlags{deployment: "d", comfyStatus: "failed", runID: "r", status: "Cancelled", raw: "StartTime > '2026-01-01T00:00:00Z'"},
			"WorkflowType = 'ComfyRun' AND ComfyDeploymentId = 'd' AND ComfyStatus = 'failed' AND ComfyRunId = 'r' AND ExecutionStatus = 'Canceled' AND (StartTime > '2026-01-01T00:00:00Z')"},
		{"raw or is parenthesised", listFlags{raw: "ComfyStatus = 'a' OR ComfyStatus = 'b'"}, "WorkflowType = 'ComfyRun' AND (ComfyStatus = 'a' OR ComfyStatus = 'b')"},
		{"timed out spellings", listFlags{status: "timed-out"}, "WorkflowType = 'ComfyRun' AND ExecutionStatus = 'TimedOut'"},
		{"succeeded is completed", listFlags{status: "succeeded"}, "WorkflowType = 'ComfyRun' AND ExecutionStatus = 'Completed'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := buildListQuery(tt.f)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}

	_, err := buildListQuery(listFlags{status: "paused"})
	require.ErrorContains(t, err, "use running, completed")
	_, err = buildListQuery(listFlags{deployment: "x' OR '1'='1"})
	require.ErrorContains(t, err, "use -query")
}

func TestReportExitCode(t *testing.T) {
	for status, want := range map[string]int{
		"Completed": exitOK, "Running": exitOK, "Canceled": exitCancelled,
		"Failed": exitFailed, "TimedOut": exitFailed, "Terminated": exitFailed,
	} {
		assert.Equal(t, want, (&report{execution: execution{ExecutionStatus: status}}).exitCode(), status)
	}
}

func TestDecodeDetails(t *testing.T) {
	dc := converter.GetDefaultDataConverter()
	get := func(v any) func(...any) error {
		p, err := dc.ToPayloads(v)
		require.NoError(t, err)
		return func(out ...any) error { return dc.FromPayloads(p, out...) }
	}
	var res workflows.ComfyRunResult
	isRun := func() bool { return res.WorkflowID != "" || res.DeploymentID != "" }
	ok, problems := decodeDetails(get(workflows.ComfyRunResult{WorkflowID: "w", RunID: "r"}), &res, isRun)
	require.True(t, ok)
	assert.Equal(t, "r", res.RunID)
	assert.Nil(t, problems)

	res = workflows.ComfyRunResult{}
	ok, problems = decodeDetails(get([]string{"input steps must be a number"}), &res, isRun)
	assert.False(t, ok)
	assert.Equal(t, []string{"input steps must be a number"}, problems)
}

func TestPrintReportFinal(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	end := start.Add(95 * time.Second)
	r := &report{
		execution: execution{WorkflowID: "comfyrun-x", RunID: "tr", ExecutionStatus: "Completed", StartTime: &start, CloseTime: &end},
		Result: &workflows.ComfyRunResult{
			DeploymentID: testDeployment, MachineName: "sim", Status: "success", RunID: "cd-run-2",
			Attempts: []activities.Attempt{
				{Number: 1, RunID: "cd-run-1", Status: "failed", RunSeconds: 12, Error: "OOM"},
				{Number: 2, RunID: "cd-run-2", Status: "success", QueueSeconds: 3.25, RunSeconds: 20, GPU: "A10G"},
				{Number: 3, RunID: "cd-run-3", Status: "not-started", Error: "canceled"},
			},
			Outputs:      []activities.StoredOutput{{Path: "out/comfyrun-x/img.png", SHA256: "abc123", Size: 1536, ContentType: "image/png"}},
			ManifestPath: "out/comfyrun-x/manifest.json",
		},
		UIURL: uiLink("http://localhost:8233/", "default", "comfyrun-x"),
	}
	var buf bytes.Buffer
	printReport(&buf, r)
	out := buf.String()
	for _, want := range []string{
		"ComfyRun comfyrun-x succeeded\n",
		"deployment   " + testDeployment + " on sim",
		"comfy run    cd-run-2 · success\n",
		"attempts     #1 run cd-run-1 · failed (ran 12s): OOM",
		"#3 run cd-run-3 · unfinished: canceled",
		"#2 run cd-run-2 · success (queued 3.3s, ran 20s, A10G)",
		"outputs      out/comfyrun-x/img.png\n",
		"sha256 abc123 · 1.5 KiB · image/png",
		"manifest     out/comfyrun-x/manifest.json",
		"web ui       http://localhost:8233/namespaces/default/workflows/comfyrun-x",
		"(1m35s)",
	} {
		assert.Contains(t, out, want)
	}
}

func TestPrintReportFailureAndRunning(t *testing.T) {
	var buf bytes.Buffer
	printReport(&buf, &report{execution: execution{WorkflowID: "w", ExecutionStatus: "Failed"}, Error: &failureInfo{
		Type: "InvalidInput", Message: "inputs do not match the deployment", Problems: []string{"steps: expected a number"},
	}})
	assert.Contains(t, buf.String(), "error        InvalidInput: inputs do not match the deployment\n")
	assert.Contains(t, buf.String(), "- steps: expected a number")
	assert.Contains(t, buf.String(), "fix          fix the inputs listed above")

	buf.Reset()
	printReport(&buf, &report{
		execution: execution{WorkflowID: "w", ExecutionStatus: "Running"},
		Live:      &workflows.RunStatus{Phase: "waiting", Attempt: 1, MaxAttempts: 3, RunID: "r", Status: "queued", DeploymentID: "d"},
		Heartbeat: &activities.PollState{RunID: "r", Status: "running", Progress: 0.5, LiveStatus: "KSampler"},
	})
	assert.Contains(t, buf.String(), "phase        waiting · attempt 1 of 3")
	assert.Contains(t, buf.String(), "comfy run    r · running · ██████████░░░░░░░░░░ 50% · KSampler")
}

func TestCancelSummary(t *testing.T) {
	assert.Equal(t, "ComfyDeploy run r was cancelled", cancelSummary(&activities.CancelResult{RunID: "r", Supported: true, FinalStatus: "cancelled"}))
	assert.Equal(t, `ComfyDeploy run r ended "success" before the cancel took effect`, cancelSummary(&activities.CancelResult{RunID: "r", Supported: true, FinalStatus: "success"}))
	assert.Contains(t, cancelSummary(&activities.CancelResult{RunID: "r", Message: "classic machines cannot cancel"}), "could NOT be cancelled")
	assert.Contains(t, cancelSummary(&activities.CancelResult{RunID: "r", Message: "classic machines cannot cancel"}), "(classic machines cannot cancel)")
}

func TestFormatSize(t *testing.T) {
	assert.Equal(t, "512 B", formatSize(512))
	assert.Equal(t, "1.5 KiB", formatSize(1536))
	assert.Equal(t, "2.0 MiB", formatSize(2<<20))
}

func TestUILink(t *testing.T) {
	assert.Equal(t, "https://cloud.example/namespaces/ns.acct/workflows/a%2Fb", uiLink("https://cloud.example/", "ns.acct", "a/b"))
}

// The dispatcher must settle usage problems before any network call, so
// these run without a Temporal server.
func TestMainUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "Usage: starter"},
		{[]string{"-h"}, exitOK, "Commands:"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"run"}, exitUsage, "deployment_id is required"},
		{[]string{"run", "-input", "steps"}, exitUsage, "use key=value"},
		{[]string{"run", "-deployment", testDeployment, "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"run", "-nope"}, exitUsage, "flag provided but not defined"},
		{[]string{"run", "-h"}, exitOK, "-queue-timeout"},
		{[]string{"run", "-f", "/nonexistent/run.json"}, exitUsage, "-f: open /nonexistent/run.json"},
		{[]string{"status"}, exitUsage, "missing workflow id"},
		{[]string{"watch", "a", "b"}, exitUsage, "expected one workflow id"},
		{[]string{"cancel", "-h"}, exitOK, "-wait"},
		{[]string{"list", "-status", "paused"}, exitUsage, "-status"},
		{[]string{"list", "-limit", "0"}, exitUsage, "-limit 0"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out := runMain(tt.args...)
			assert.Equal(t, tt.code, code)
			assert.Contains(t, out, tt.want)
		})
	}
}

func TestRunDryRunReadsStdin(t *testing.T) {
	var out, errOut bytes.Buffer
	e := testEnv(`{"deployment_id": "`+testDeployment+`", "inputs": {"prompt": "from stdin", "steps": 10}}`, &out, &errOut)
	code := e.main(context.Background(), []string{"run", "-f", "-", "-input", "steps=20", "-dry-run", "-json"})
	require.Equal(t, exitOK, code, errOut.String())
	assert.JSONEq(t, `{"deployment_id": "`+testDeployment+`", "inputs": {"prompt": "from stdin", "steps": 20}}`, out.String())
}
