package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/workflows"
)

const txt2imgB = "de000000-0000-4000-8000-000000000004"

// TestBatchUnderFaultsAccountsForEveryItemWithoutDuplicates runs 300 items
// over a pool of two deployments while the simulator fails runs, answers
// 5xx and drops submit responses, and the batch continues as new several
// times.
func TestBatchUnderFaultsAccountsForEveryItemWithoutDuplicates(t *testing.T) {
	const items = 300
	e := newEnv(t, comfytest.Options{
		Seed:   11,
		Timing: comfytest.Timing{ColdStart: 50 * time.Millisecond, Run: 200 * time.Millisecond},
		Faults: comfytest.Faults{
			RunFailureRate:      0.1,
			AmbiguousSubmitRate: 0.1,
			ErrorRate:           map[string]float64{"GET /api/run/{run_id}": 0.05, "POST /api/run/deployment/queue": 0.05},
		},
	})
	source := filepath.Join(e.sourceDir, "items.jsonl")
	f, err := os.Create(source)
	require.NoError(t, err)
	enc := json.NewEncoder(f)
	for i := range items {
		require.NoError(t, enc.Encode(map[string]any{"prompt": fmt.Sprintf("item %d", i), "seed": i}))
	}
	require.NoError(t, f.Close())

	run, err := e.client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: "e2e-batch", TaskQueue: e.taskQueue},
		workflows.ComfyBatchWorkflow, workflows.ComfyBatchInput{
			Deployments:    []string{txt2img, txt2imgB},
			Source:         &activities.BatchSource{Path: source},
			MaxConcurrency: 40,
			PageSize:       100,
			Defaults: workflows.BatchDefaults{
				Retry:        workflows.RetryPolicy{MaxAttempts: 2},
				PollInterval: workflows.Duration(100 * time.Millisecond),
			},
		})
	require.NoError(t, err)
	var res workflows.ComfyBatchResult
	require.NoError(t, run.Get(context.Background(), &res))

	assert.Equal(t, items, res.Total)
	assert.Equal(t, items, res.Succeeded+res.Failed, "every item ends succeeded or failed: %+v", res)
	assert.Greater(t, res.Succeeded, items*3/4)
	desc, err := e.client.DescribeWorkflowExecution(context.Background(), "e2e-batch", "")
	require.NoError(t, err)
	info := desc.GetWorkflowExecutionInfo()
	assert.NotEqual(t, info.GetFirstRunId(), info.GetExecution().GetRunId(), "page_size 100 must have continued as new")

	// Zero duplicate submissions: one paid run per correlation token, and
	// every run the simulator created belongs to an item attempt.
	c := e.sim.Counters()
	for token, n := range c.RunsByToken {
		assert.Equal(t, 1, n, "token %s", token)
	}
	lines := readResults(t, e, res.ResultsPath)
	require.Len(t, lines, items, "one results line per item")
	runs, seen := 0, map[int]bool{}
	for _, l := range lines {
		assert.False(t, seen[l.Index], "item %d listed twice", l.Index)
		seen[l.Index] = true
		runs += len(l.RunIDs)
		if l.Status == "succeeded" {
			require.NotEmpty(t, l.Outputs, "item %d", l.Index)
		} else {
			assert.NotEmpty(t, l.Error, "a failed item keeps its reason")
		}
	}
	assert.Equal(t, c.RunsCreated, runs, "every created run is recorded against its item")
	assert.Equal(t, c.RunsCreated, len(c.RunsByToken))
	recordHistory(t, e, "e2e-batch", "comfybatch-faults-last-run")
}

func readResults(t *testing.T, e *env, u string) []activities.BatchItemResult {
	t.Helper()
	var out []activities.BatchItemResult
	sc := bufio.NewScanner(bytes.NewReader(e.readObject(u)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r activities.BatchItemResult
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		out = append(out, r)
	}
	require.NoError(t, sc.Err())
	return out
}
