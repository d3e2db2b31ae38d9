package activities_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/pipeline"
	"github.com/durable-comfy/durable-comfy/preflight"
)

func heroSpec(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../examples/pipeline-hero.yaml")
	require.NoError(t, err)
	return string(raw)
}

func prepare(t *testing.T, h *harness, req activities.PreparePipelineRequest) (*activities.PipelinePlan, error) {
	t.Helper()
	v, err := h.env().ExecuteActivity(h.acts.PreparePipeline, req)
	if err != nil {
		return nil, err
	}
	var plan activities.PipelinePlan
	require.NoError(t, v.Get(&plan))
	return &plan, nil
}

func TestPreparePipelineAcceptsTheHeroExample(t *testing.T) {
	h := newHarness(t)
	plan, err := prepare(t, h, activities.PreparePipelineRequest{SpecText: heroSpec(t)})
	require.NoError(t, err)

	assert.Equal(t, []string{"txt2img", "upscale", "img2video"}, plan.Order)
	require.Len(t, plan.Preflight, 3)
	up := plan.Preflight[comfytest.DeploymentUpscale]
	assert.Equal(t, "gpu-pool-a", up.MachineName)
	assert.NotEmpty(t, up.InputTypes)
	assert.Equal(t, []string{"txt2img"}, plan.Spec.Steps[1].DependsOn, "normalised")
	assert.Equal(t, pipeline.Duration("15m"), plan.Spec.Steps[2].QueueTimeout, "defaults applied")
}

func TestPreparePipelineRejections(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name, from, to, kind string
		want                 []string
	}{
		{"unknown output", "${txt2img.outputs.image[0]}", "${txt2img.outputs.picture[0]}", activities.ErrTypeInvalidPipeline,
			[]string{`step "upscale": input "image" refers to output "picture" of step "txt2img"`}},
		{"bad literal", "scale: 2x", "scale: 3x", preflight.KindInvalidInput,
			[]string{`step "upscale": input "scale" is not one of`}},
		{"reference into unknown input", "      image: ${upscale.outputs.image[0]}", "      picture: ${upscale.outputs.image[0]}", preflight.KindInvalidInput,
			[]string{`step "img2video": input "picture"`, `step "img2video": input "image" is required`}},
		{"machine not ready", comfytest.DeploymentUpscale, comfytest.DeploymentOnBuilding, preflight.KindMachineNotReady,
			[]string{`step "upscale" (deployment ` + comfytest.DeploymentOnBuilding + `)`}},
		{"unknown step", "${upscale.outputs.image[0]}", "${upscaled.outputs.image[0]}", activities.ErrTypeInvalidPipeline,
			[]string{`step "img2video": input "image" refers to unknown step "upscaled"`}},
		{"unknown field", "depends_on", "depends", activities.ErrTypeInvalidPipeline, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := heroSpec(t)
			if c.name == "unknown field" {
				spec += "    deps: [txt2img]\n"
				c.want = []string{`unknown field "deps"`}
			} else {
				require.Contains(t, spec, c.from)
				spec = strings.Replace(spec, c.from, c.to, 1)
			}
			_, err := prepare(t, h, activities.PreparePipelineRequest{SpecText: spec})
			ae := appErr(t, err)
			assert.Equal(t, c.kind, ae.Type())
			assert.False(t, ae.NonRetryable() == false, "rejections are final")
			for _, w := range c.want {
				assert.Contains(t, ae.Error(), w)
			}
		})
	}
}

func TestPreparePipelineNeedsASpec(t *testing.T) {
	h := newHarness(t)
	_, err := prepare(t, h, activities.PreparePipelineRequest{})
	assert.Equal(t, activities.ErrTypeInvalidPipeline, appErr(t, err).Type())
}

func TestOutputURLsReadsMediaAndTexts(t *testing.T) {
	h := newHarness(t)
	runID := h.runToSuccess(comfytest.DeploymentTxt2Img, map[string]any{"prompt": "a fox"})

	v, err := h.env().ExecuteActivity(h.acts.OutputURLs, activities.OutputURLsRequest{RunID: runID})
	require.NoError(t, err)
	var res activities.RunOutputs
	require.NoError(t, v.Get(&res))

	assert.Equal(t, runID, res.RunID)
	images := pipeline.StepOutputs(res.Outputs).Select("image")
	require.Len(t, images, 1)
	assert.True(t, strings.HasPrefix(images[0], "http"), images[0])
	captions := pipeline.StepOutputs(res.Outputs).Select("caption")
	require.Len(t, captions, 1)
	assert.Contains(t, captions[0], "a fox")
}
