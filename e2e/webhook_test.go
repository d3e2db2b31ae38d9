package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/workflows"
)

// hourly polls once an hour: within a test's lifetime only a webhook can
// make a wait notice that its run ended.
const hourly = workflows.Duration(time.Hour)

// runPollingHourly runs a ComfyRun that polls once an hour and fails the
// test unless it ends within a minute, which only a webhook can make it do.
func (e *env) runPollingHourly(id string) workflows.ComfyRunResult {
	e.t.Helper()
	run := e.start(id, workflows.ComfyRunInput{
		DeploymentID: txt2img, Inputs: map[string]any{"prompt": "woken by a webhook: " + id}, PollInterval: hourly,
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var res workflows.ComfyRunResult
	require.NoError(e.t, run.Get(ctx, &res), "a webhook must have ended the run's wait")
	return res
}

func TestWebhookEndsTheWaitOfARun(t *testing.T) {
	e := newEnv(t, comfytest.Options{Faults: comfytest.Faults{WebhookDuplicateRate: 1}}, withWebhooks())
	res := e.runPollingHourly("e2e-webhook-run")
	assert.Equal(t, "success", res.Status)
	assert.NotEmpty(t, res.Outputs)
	c := e.sim.Counters()
	assert.Equal(t, 1, c.RunsCreated)
	assert.Positive(t, c.WebhookDeliveries)
	assert.Zero(t, c.WebhookFailures, "the worker must accept the URLs it signed")
}

func TestWebhookOnAnotherWorkerEndsTheWait(t *testing.T) {
	e := newEnv(t, comfytest.Options{}, withWebhooksOnAnotherWorker())
	res := e.runPollingHourly("e2e-webhook-elsewhere")
	assert.Equal(t, "success", res.Status)
	require.Len(t, res.Attempts, 1)
	assert.Positive(t, res.Attempts[0].RunSeconds, "the result is the run's, read again by the other worker")
	assert.NotEmpty(t, res.Outputs)
	assert.Equal(t, 1, e.sim.Counters().RunsCreated)
}

func TestWebhooksEndEveryItemOfABatch(t *testing.T) {
	e := newEnv(t, comfytest.Options{Faults: comfytest.Faults{WebhookDuplicateRate: 0.5, WebhookReorderRate: 0.5}}, withWebhooks())
	const n = 12
	items := make([]map[string]any, n)
	for i := range items {
		items[i] = map[string]any{"prompt": fmt.Sprintf("item %d", i)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, err := e.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "e2e-webhook-batch", TaskQueue: e.taskQueue},
		workflows.ComfyBatchWorkflow, workflows.ComfyBatchInput{
			Deployments: []string{txt2img}, Items: items, MaxConcurrency: 4,
			Defaults: workflows.BatchDefaults{PollInterval: hourly},
		})
	require.NoError(t, err)
	var res workflows.ComfyBatchResult
	require.NoError(t, run.Get(ctx, &res), "every item's wait must have been ended by its webhook")
	assert.Equal(t, n, res.Succeeded)
	assert.Equal(t, n, e.sim.Counters().RunsCreated)
}
