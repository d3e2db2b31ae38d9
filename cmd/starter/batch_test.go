package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/workflows"
)

const testDeployment2 = "de000000-0000-4000-8000-000000000002"

func TestBatchSummaryAndDetails(t *testing.T) {
	inline := workflows.ComfyBatchInput{Deployments: []string{testDeployment}, Items: make([]map[string]any, 12)}
	assert.Equal(t, "ComfyBatch · 12 items · "+testDeployment+" · concurrency 10", batchSummary(inline), "default concurrency")

	src := workflows.ComfyBatchInput{
		Deployments:    []string{testDeployment, testDeployment2},
		Source:         &activities.BatchSource{Path: "examples/product-catalog.csv"},
		MaxConcurrency: 5,
		FailurePolicy:  workflows.FailurePolicy{MaxFailures: 5, MaxFailureRatio: 0.25},
		Budget:         workflows.Budget{MaxGPUSeconds: 3600, MaxCostUSD: 5},
		Defaults:       workflows.BatchDefaults{Inputs: map[string]any{"steps": json.Number("25"), "negative_prompt": "blurry"}},
	}
	assert.Equal(t, "ComfyBatch · source examples/product-catalog.csv · pool of 2 deployments · concurrency 5", batchSummary(src))
	d := batchDetails(src)
	for _, want := range []string{
		"- `" + testDeployment + "`\n- `" + testDeployment2 + "`",
		"**Items:** `examples/product-catalog.csv` (csv)",
		"**Concurrency:** 5",
		"**Stops at:** 5 failures · failure ratio above 0.25 · 3600 GPU-seconds · $5.00 estimated",
		"- `negative_prompt`: blurry\n- `steps`: 25",
	} {
		assert.Contains(t, d, want)
	}

	opts := batchStartOptions(src, "b-1", "comfy")
	assert.Equal(t, "b-1", opts.ID)
	assert.Equal(t, "comfy", opts.TaskQueue)
	assert.Equal(t, enums.WORKFLOW_ID_CONFLICT_POLICY_FAIL, opts.WorkflowIDConflictPolicy)
	first, ok := opts.TypedSearchAttributes.GetKeyword(workflows.DeploymentIDKey)
	require.True(t, ok)
	assert.Equal(t, testDeployment, first, "the first deployment of the pool")
	status, ok := opts.TypedSearchAttributes.GetKeyword(workflows.StatusKey)
	require.True(t, ok)
	assert.Equal(t, "pending", status)
}

func TestRetryInputClearsState(t *testing.T) {
	in := workflows.ComfyBatchInput{Deployments: []string{testDeployment}, Items: []map[string]any{{"prompt": "a"}},
		State: &workflows.BatchState{Succeeded: 7, Runs: 3}}
	got := retryInput(in)
	assert.Nil(t, got.State)
	assert.Equal(t, in.Deployments, got.Deployments)
	assert.Equal(t, in.Items, got.Items)
	assert.NotNil(t, in.State, "the caller's value is not changed")
}

func TestDecodeBatchPayloadKeepsNumbers(t *testing.T) {
	in := workflows.ComfyBatchInput{Deployments: []string{testDeployment},
		Items: []map[string]any{{"seed": json.Number("18446744073709551615")}}, State: &workflows.BatchState{Runs: 2}}
	p, err := converter.GetDefaultDataConverter().ToPayload(in)
	require.NoError(t, err)
	got, err := decodeBatchPayload(p)
	require.NoError(t, err)
	assert.Equal(t, json.Number("18446744073709551615"), got.Items[0]["seed"])
	require.NotNil(t, got.State, "decoded as sent; retryInput clears it")
	assert.Equal(t, 2, got.State.Runs)
}

func TestParseConcurrency(t *testing.T) {
	n, err := parseConcurrency(" 20 ")
	require.NoError(t, err)
	assert.Equal(t, 20, n)
	for _, bad := range []string{"0", "-1", "2001", "ten", "1.5", ""} {
		_, err := parseConcurrency(bad)
		assert.ErrorContains(t, err, "use a whole number from 1 to 2000", bad)
	}
}

func TestBatchProgressRendering(t *testing.T) {
	p := &workflows.BatchProgress{Total: 100, Succeeded: 40, Failed: 2, Running: 5, Pending: 53, MaxConcurrency: 10,
		GPUSeconds: 1234.4, EstimatedCostUSD: 0.38, RatePerMinute: 3.25, ETA: "17m50s", Phase: "running"}
	assert.Equal(t, "[4:05] running · 42/100 done · 40 succeeded · 2 failed · 5/10 running · 53 pending · GPU 1234s ~$0.38 · 3.2/min · ETA 17m50s",
		renderBatchLine(p, "", 245*time.Second))
	assert.Equal(t, "running · ████████░░░░░░░░░░░░ 42/100 · 40 succeeded · 2 failed · 5/10 running · 53 pending · GPU 1234s ~$0.38 · 3.2/min · ETA 17m50s · 4:05",
		renderBatchBar(p, "", 245*time.Second))

	paused := &workflows.BatchProgress{Succeeded: 3, Skipped: 1, Cancelled: 1, Paused: true, Phase: "paused", MaxConcurrency: 2, GPUSeconds: 7200}
	assert.Equal(t, "[0:01] paused · 5 done · 3 succeeded · 0 failed · 1 skipped · 1 cancelled · 0/2 running · 0 pending · GPU 7200s (2:00:00)",
		renderBatchLine(paused, "", time.Second), "total unknown; skipped and cancelled only when there are some")

	stopped := &workflows.BatchProgress{Total: 10, Failed: 5, Phase: "stopping", StoppedBy: "failures", MaxConcurrency: 10, Running: 2}
	assert.Contains(t, renderBatchLine(stopped, "", 0), "stopping · stopped by failures · 5/10 done")
	cancelling := &workflows.BatchProgress{Total: 10, Phase: "cancelling", StoppedBy: "cancel", MaxConcurrency: 10}
	assert.NotContains(t, renderBatchLine(cancelling, "", 0), "stopped by", "the phase says it")

	assert.Equal(t, "[0:07] no worker is polling task queue \"comfy\"", renderBatchLine(nil, `no worker is polling task queue "comfy"`, 7*time.Second))
	assert.Equal(t, "starting · 0:00", renderBatchBar(nil, "", 0))

	final := resultProgress(&workflows.ComfyBatchResult{Status: "succeeded", Total: 2, Succeeded: 2, GPUSeconds: 4})
	assert.Equal(t, "[0:03] succeeded · 2/2 done · 2 succeeded · 0 failed · GPU 4s", renderBatchLine(final, "", 3*time.Second), "a result has no window")
}

func TestBatchChangeKeyLogsWholePercents(t *testing.T) {
	p := &workflows.BatchProgress{Total: 1000, Phase: "running", MaxConcurrency: 10}
	keys := map[string]bool{}
	for i := 0; i <= 1000; i++ {
		p.Succeeded = i
		p.GPUSeconds = float64(i) // GPU time alone is not news
		keys[batchChangeKey(p, "")] = true
	}
	assert.Len(t, keys, 101, "one line per whole percent of 1000 items")

	base := batchChangeKey(p, "")
	p.Paused = true
	assert.NotEqual(t, base, batchChangeKey(p, ""), "pausing is news")
	p.Paused, p.MaxConcurrency = false, 20
	assert.NotEqual(t, base, batchChangeKey(p, ""), "a concurrency change is news")

	unknown := &workflows.BatchProgress{Phase: "running", Succeeded: 9}
	k9 := batchChangeKey(unknown, "")
	unknown.Succeeded = 10
	assert.NotEqual(t, k9, batchChangeKey(unknown, ""), "without a total, every ten items")
	assert.NotEqual(t, batchChangeKey(nil, "a"), batchChangeKey(nil, "b"))
}

func TestProgressPrinterShow(t *testing.T) {
	var buf bytes.Buffer
	p := newProgressPrinter(&buf, false, "")
	p.show("bar ignored", "line 1", "line 2")
	p.show("bar ignored")
	p.done()
	assert.Equal(t, "line 1\nline 2\n", buf.String(), "log mode prints the lines it is given")

	buf.Reset()
	tty := newProgressPrinter(&buf, true, "30")
	tty.show(strings.Repeat("x", 40), "not printed")
	tty.done()
	assert.Equal(t, "\r"+strings.Repeat("x", 28)+"…\x1b[K\n", buf.String(), "terminal mode redraws the bar cut to the width")
}

func TestBatchReportExitCode(t *testing.T) {
	tests := []struct {
		exec, status string
		want         int
	}{
		{"Running", "", exitOK},
		{"Completed", workflows.BatchSucceeded, exitOK},
		{"Completed", workflows.BatchCompletedWithFailures, exitFailed},
		{"Completed", workflows.BatchStopped, exitFailed},
		{"Completed", workflows.BatchCancelled, exitCancelled},
		{"Canceled", "", exitCancelled},
		{"Failed", "", exitFailed},
		{"Terminated", "", exitFailed},
		{"TimedOut", "", exitFailed},
	}
	for _, tt := range tests {
		r := &batchReport{execution: execution{ExecutionStatus: tt.exec}}
		if tt.status != "" {
			r.Result = &workflows.ComfyBatchResult{Status: tt.status}
		}
		assert.Equal(t, tt.want, r.exitCode(), "%s/%s", tt.exec, tt.status)
	}
}

func TestPrintBatchReport(t *testing.T) {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.Local)
	end := start.Add(90 * time.Second)
	r := &batchReport{
		execution: execution{WorkflowID: "b-1", RunID: "r-1", ExecutionStatus: "Completed", StartTime: &start, CloseTime: &end},
		UIURL:     "http://ui/b-1",
		Result: &workflows.ComfyBatchResult{
			BatchID: "b-1", Status: workflows.BatchStopped, StoppedBy: workflows.StoppedByBudget, Total: 10,
			Succeeded: 6, Failed: 1, NotStarted: 3, GPUSeconds: 3600, EstimatedCostUSD: 1.1, ResultsPath: "out/b-1/results.jsonl",
			PerDeployment: []workflows.DeploymentSummary{
				{DeploymentID: testDeployment, MachineName: "m1", Served: 7, Succeeded: 6, Failed: 1, GPUSeconds: 3600},
				{DeploymentID: testDeployment2, Error: "machine not ready"},
			},
		},
	}
	var buf bytes.Buffer
	printBatchReport(&buf, r)
	out := buf.String()
	for _, want := range []string{
		"ComfyBatch b-1 stopped by budget\n",
		"  items        10 in all · 6 succeeded · 1 failed · 0 skipped · 0 cancelled · 3 not started\n",
		"  gpu time     3600s (1:00:00) · ~$1.10 estimated\n",
		"  deployments  " + testDeployment + " on m1 · served 7 · 6 succeeded · 1 failed · GPU 3600s\n",
		"               check failed, took no items: machine not ready\n",
		"  results      out/b-1/results.jsonl\n",
		"  next         see why items failed in the results manifest; then re-run the items that did not succeed with `starter batch retry-failed b-1`\n",
		"  web ui       http://ui/b-1\n",
	} {
		assert.Contains(t, out, want)
	}

	live := &batchReport{execution: execution{WorkflowID: "b-2", ExecutionStatus: "Running"}, UIURL: "u",
		Progress: &workflows.BatchProgress{Total: 4, Succeeded: 1, Running: 2, Pending: 1, MaxConcurrency: 2, Paused: true, Phase: "paused", RatePerMinute: 2, ETA: "1m30s"}}
	buf.Reset()
	printBatchReport(&buf, live)
	out = buf.String()
	assert.Contains(t, out, "ComfyBatch b-2 running (paused)\n")
	assert.Contains(t, out, "  items        █████░░░░░░░░░░░░░░░ 1/4 · 1 succeeded · 0 failed · 0 skipped · 0 cancelled\n")
	assert.Contains(t, out, "  in flight    2 running (at most 2) · 1 pending\n")
	assert.Contains(t, out, "  paused       yes: resume with `starter batch resume b-2`\n")
	assert.Contains(t, out, "  rate         2.0 items/min · ETA 1m30s\n")

	failed := &batchReport{execution: execution{WorkflowID: "b-3", ExecutionStatus: "Failed"}, UIURL: "u",
		Error: &failureInfo{Type: workflows.ErrTypeInvalidWorkflowInput, Message: "invalid ComfyBatch input", Problems: []string{"a batch needs items or a source"}}}
	buf.Reset()
	printBatchReport(&buf, failed)
	assert.Contains(t, buf.String(), "ComfyBatch b-3 failed\n")
	assert.Contains(t, buf.String(), "- a batch needs items or a source")
}

func TestBatchCommandsUsage(t *testing.T) {
	file := writeTemp(t, "b.yaml", "deployments: ["+testDeployment+"]\nitems: [{prompt: a}]\nsource: {path: x.csv}\n")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"batch"}, exitUsage, "missing -f FILE"},
		{[]string{"batch", "-h"}, exitOK, "starter batch set-concurrency BATCH_ID N"},
		{[]string{"batch", "-f", file}, exitUsage, "a batch takes items or a source, not both"},
		{[]string{"batch", "-f", file, "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"batch", "frob"}, exitUsage, `unknown batch command "frob"`},
		{[]string{"batch", "status"}, exitUsage, "missing batch id: use `starter batch status BATCH_ID`"},
		{[]string{"batch", "watch", "a", "b"}, exitUsage, "expected one batch id"},
		{[]string{"batch", "pause", "-h"}, exitOK, "starts no new items"},
		{[]string{"batch", "set-concurrency", "b-1"}, exitUsage, "expected BATCH_ID N"},
		{[]string{"batch", "set-concurrency", "b-1", "0"}, exitUsage, "use a whole number from 1 to 2000"},
		{[]string{"batch", "retry-failed", "-h"}, exitOK, "A running batch is refused (exit 2)"},
		{[]string{"batch", "cancel", "-h"}, exitOK, "-wait"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out := runMain(tt.args...)
			assert.Equal(t, tt.code, code, out)
			assert.Contains(t, out, tt.want)
		})
	}
}

func TestBatchDryRunFromStdin(t *testing.T) {
	var out, errOut bytes.Buffer
	e := testEnv("deployments: ["+testDeployment+"]\nitems:\n  - {prompt: a cat, seed: 18446744073709551615}\n", &out, &errOut)
	code := e.main(context.Background(), []string{"batch", "-f", "-", "-dry-run", "-json"})
	require.Equal(t, exitOK, code, errOut.String())
	assert.JSONEq(t, `{"deployments": ["`+testDeployment+`"], "items": [{"prompt": "a cat", "seed": 18446744073709551615}]}`, out.String())
	assert.Contains(t, out.String(), "18446744073709551615")
}

// testEnv is a process without environment variables or a terminal, for
// commands that must not depend on the machine running the tests.
func testEnv(stdin string, stdout, stderr io.Writer) *env {
	return &env{stdin: strings.NewReader(stdin), stdout: stdout, stderr: stderr, getenv: func(string) string { return "" }, now: time.Now}
}

// runMain runs the starter as main would, with stdout and stderr in one
// buffer, which is what a user reading the terminal sees.
func runMain(args ...string) (int, string) {
	var out bytes.Buffer
	code := testEnv("", &out, &out).main(context.Background(), args)
	return code, out.String()
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}
