package e2e

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/workflows"
)

// TestSharedDeploymentLimitCapsTwoBatchesTogether runs two batches that
// each allow 6 runs in flight against one deployment whose shared cap is 2:
// together they never run more than 2 at once, and both make progress.
func TestSharedDeploymentLimitCapsTwoBatchesTogether(t *testing.T) {
	e := newEnv(t, comfytest.Options{Timing: comfytest.Timing{ColdStart: 20 * time.Millisecond, Run: 400 * time.Millisecond}})
	var runs []client.WorkflowRun
	for _, id := range []string{"e2e-gate-a", "e2e-gate-b"} {
		items := make([]map[string]any, 6)
		for i := range items {
			items[i] = map[string]any{"prompt": fmt.Sprintf("%s %d", id, i)}
		}
		run, err := e.client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: id, TaskQueue: e.taskQueue},
			workflows.ComfyBatchWorkflow, workflows.ComfyBatchInput{
				Deployments: []string{txt2img}, Items: items, MaxConcurrency: 6, SharedDeploymentLimit: 2,
				Defaults: workflows.BatchDefaults{Outputs: workflows.BatchOutputs{Skip: true}, PollInterval: workflows.Duration(50 * time.Millisecond)},
			})
		require.NoError(t, err)
		runs = append(runs, run)
	}
	cc, err := comfy.NewClient(comfy.WithBaseURL(e.sim.URL()), comfy.WithAPIKey(e.sim.APIKey()))
	require.NoError(t, err)

	type span struct {
		batch      int
		start, end time.Time
	}
	var spans []span
	for b, run := range runs {
		var res workflows.ComfyBatchResult
		require.NoError(t, run.Get(context.Background(), &res))
		require.Equal(t, 6, res.Succeeded)
		for _, line := range readResults(t, e, res.ResultsPath) {
			for _, id := range line.RunIDs {
				r, err := cc.Runs.Get(context.Background(), id, nil)
				require.NoError(t, err)
				spans = append(spans, span{b, r.CreatedAt.Time, r.EndedAt.Time})
			}
		}
	}
	require.Len(t, spans, 12)

	// The most runs alive at once, over every run's creation time.
	most := 0
	for _, s := range spans {
		alive := 0
		for _, o := range spans {
			if !o.start.After(s.start) && o.end.After(s.start) {
				alive++
			}
		}
		most = max(most, alive)
	}
	assert.LessOrEqual(t, most, 2, "the shared cap holds across both batches")

	// Fairness: slots alternate between the batches, so neither finishes
	// all of its items before the other has started half of its own.
	sort.Slice(spans, func(i, j int) bool { return spans[i].start.Before(spans[j].start) })
	firstSix := map[int]int{}
	for _, s := range spans[:6] {
		firstSix[s.batch]++
	}
	assert.GreaterOrEqual(t, firstSix[0], 2, "batch a got slots early")
	assert.GreaterOrEqual(t, firstSix[1], 2, "batch b got slots early")
	recordHistory(t, e, "comfy-gate/"+txt2img, "gate")
	recordHistory(t, e, "e2e-gate-a/0", "comfyrun-shared-limit-item")
}
