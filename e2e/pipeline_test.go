package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/workflows"
)

func TestExamplePipelineRunsEndToEnd(t *testing.T) {
	e := newEnv(t, comfytest.Options{})
	spec, err := os.ReadFile("../examples/pipeline-hero.yaml")
	require.NoError(t, err)

	run, err := e.client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: "e2e-pipeline", TaskQueue: e.taskQueue},
		workflows.ComfyPipelineWorkflow, workflows.ComfyPipelineInput{SpecText: string(spec)})
	require.NoError(t, err)
	var res workflows.ComfyPipelineResult
	require.NoError(t, run.Get(context.Background(), &res))

	assert.Equal(t, workflows.PipelineSucceeded, res.Status)
	require.Len(t, res.Steps, 3)
	for i, name := range []string{"txt2img", "upscale", "img2video"} {
		step := res.Steps[i]
		assert.Equal(t, name, step.Name)
		require.Len(t, step.Runs, 1, name)
		require.NotEmpty(t, step.Runs[0].Outputs, name)
		for _, out := range step.Runs[0].Outputs {
			body := e.readObject(out.Path)
			sum := sha256.Sum256(body)
			assert.Equal(t, hex.EncodeToString(sum[:]), out.SHA256, out.Path)
		}
	}
	assert.Equal(t, "image/gif", res.Steps[2].Runs[0].Outputs[0].ContentType, "img2video renders an animation")
	assert.Equal(t, 3, e.sim.Counters().RunsCreated, "one paid run per step")
	recordHistory(t, e, "e2e-pipeline", "comfypipeline-hero")

	// Each step consumed the previous step's output: a run's image input is
	// a URL of the previous run's file.
	cc, err := comfy.NewClient(comfy.WithBaseURL(e.sim.URL()), comfy.WithAPIKey(e.sim.APIKey()))
	require.NoError(t, err)
	for i := 1; i < 3; i++ {
		run, err := cc.Runs.Get(context.Background(), res.Steps[i].Runs[0].RunID, nil)
		require.NoError(t, err)
		assert.Contains(t, run.WorkflowInputs["image"], res.Steps[i-1].Runs[0].RunID, res.Steps[i].Name)
	}
}
