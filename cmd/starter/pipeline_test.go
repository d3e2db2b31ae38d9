package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/pipeline"
	"github.com/durable-comfy/durable-comfy/workflows"
)

func TestCheckPipelineSpec(t *testing.T) {
	hero, err := os.ReadFile("../../examples/pipeline-hero.yaml")
	require.NoError(t, err)
	spec, err := checkPipelineSpec(hero, "hero.yaml")
	require.NoError(t, err)
	assert.Equal(t, "ComfyPipeline hero · 3 steps: txt2img → upscale → img2video", pipelineSummary(spec))
	d := pipelineDetails(spec)
	assert.Contains(t, d, "| txt2img | `de000000-0000-4000-8000-000000000001` | - | - |")
	assert.Contains(t, d, "| upscale | `de000000-0000-4000-8000-000000000002` | txt2img | - |", "referenced steps are dependencies")

	tests := []struct {
		name, doc string
		want      []string
	}{
		{"unknown field", "steps:\n  - name: a\n    deployment: " + testDeployment + "\n    inptus: {}\n", []string{"-f p.yaml: ", `unknown field "inptus"`}},
		{"empty", "", []string{"-f p.yaml: the spec is empty"}},
		{"no steps", "name: x\n", []string{"no steps"}},
		{"cycle", "steps:\n  - name: a\n    deployment: " + testDeployment + "\n    depends_on: [b]\n  - name: b\n    deployment: " + testDeployment + "\n    depends_on: [a]\n",
			[]string{"cycle"}},
		{"every problem", "steps:\n  - name: a\n    deployment: nope\n  - name: b\n    deployment: " + testDeployment + "\n    inputs: {image: '${nope.outputs.image[0]}'}\n",
			[]string{"\n", `unknown step "nope"`, "deployment"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkPipelineSpec([]byte(tt.doc), "p.yaml")
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			for line := range strings.SplitSeq(err.Error(), "\n") {
				assert.True(t, strings.HasPrefix(line, "-f p.yaml: "), "each problem names the file: %q", line)
			}
		})
	}
}

func TestPipelineStartOptions(t *testing.T) {
	spec := &pipeline.Spec{Steps: []pipeline.Step{{Name: "only", Deployment: testDeployment}}}
	opts := pipelineStartOptions(spec, "p-1", "q")
	assert.Equal(t, "ComfyPipeline · 1 step: only", opts.StaticSummary)
	status, ok := opts.TypedSearchAttributes.GetKeyword(workflows.StatusKey)
	require.True(t, ok)
	assert.Equal(t, "pending", status)
	assert.Equal(t, "p-1", opts.ID)
}

func fanOut() workflows.ComfyPipelineResult {
	return workflows.ComfyPipelineResult{WorkflowID: "p", Name: "hero", Status: workflows.PipelineRunning, Steps: []workflows.StepProgress{
		{Name: "txt2img", DeploymentID: testDeployment, State: workflows.StepSucceeded, Runs: []workflows.StepRun{
			{WorkflowID: "p/txt2img", State: workflows.StepSucceeded, RunID: "r-1", Outputs: []activities.StoredOutput{{Path: "out/a.png", SHA256: "aa"}, {Path: "out/b.png", SHA256: "bb"}}},
		}},
		{Name: "upscale", DeploymentID: testDeployment2, State: workflows.StepRunning, ForEach: "${txt2img.outputs.image}", Runs: []workflows.StepRun{
			{Index: 0, WorkflowID: "p/upscale/0", State: workflows.StepSucceeded, RunID: "r-2", Outputs: []activities.StoredOutput{{Path: "out/u0.png", SHA256: "cc"}}},
			{Index: 1, WorkflowID: "p/upscale/1", State: workflows.StepRunning},
		}},
		{Name: "video", DeploymentID: testDeployment, State: workflows.StepPending},
	}}
}

func TestStepLineAndBar(t *testing.T) {
	res := fanOut()
	assert.Equal(t, "txt2img succeeded · run r-1 · 2 outputs", stepLine(res.Steps[0]))
	assert.Equal(t, "upscale running · 1/2 runs succeeded · 1 output", stepLine(res.Steps[1]))
	assert.Equal(t, "video pending", stepLine(res.Steps[2]))
	failed := workflows.StepProgress{Name: "x", State: workflows.StepFailed, Error: "run failed\n(RunFailed)", Runs: []workflows.StepRun{{State: workflows.StepFailed}}}
	assert.Equal(t, "x failed · run failed (RunFailed)", stepLine(failed))

	assert.Equal(t, "running · txt2img succeeded · upscale running 1/2 · video pending · 1:05", renderPipelineBar(&res, "", 65*time.Second))
	assert.Equal(t, "no worker · 0:03", renderPipelineBar(nil, "no worker", 3*time.Second))
}

func TestPipelineTrackerLogsChangesOnly(t *testing.T) {
	var tr pipelineTracker
	res := fanOut()
	res.Status = workflows.PipelinePreparing
	for i := range res.Steps {
		res.Steps[i].State, res.Steps[i].Runs = workflows.StepPending, nil
	}
	assert.Equal(t, []string{"[0:00] starting"}, tr.lines(nil, "", 0))
	assert.Empty(t, tr.lines(nil, "", time.Second), "same note, no line")
	assert.Equal(t, []string{"[0:01] pipeline preparing"}, tr.lines(&res, "", time.Second), "pending steps are not news")

	res = fanOut()
	assert.Equal(t, []string{
		"[0:10] pipeline running",
		"[0:10] txt2img succeeded · run r-1 · 2 outputs",
		"[0:10] upscale running · 1/2 runs succeeded · 1 output",
	}, tr.lines(&res, "", 10*time.Second))
	assert.Empty(t, tr.lines(&res, "", 11*time.Second), "nothing changed")

	res.Steps[1].Runs[1].State = workflows.StepSucceeded
	res.Steps[1].State = workflows.StepSucceeded
	assert.Equal(t, []string{"[0:12] upscale succeeded · 2/2 runs succeeded · 1 output"}, tr.lines(&res, "", 12*time.Second))
}

func TestPrintPipelineReport(t *testing.T) {
	res := fanOut()
	res.Status = workflows.PipelineFailed
	res.FailedStep = "upscale"
	res.Steps[1].State = workflows.StepFailed
	res.Steps[1].Error = "step failed"
	res.Steps[1].Runs[1] = workflows.StepRun{Index: 1, WorkflowID: "p/upscale/1", State: workflows.StepFailed, Error: "run failed (RunFailed)"}
	res.Steps[2].State = workflows.StepSkipped
	r := &pipelineReport{execution: execution{WorkflowID: "p", RunID: "t-1", ExecutionStatus: "Failed"}, UIURL: "http://ui/p", Result: &res,
		Error: &failureInfo{Type: workflows.ErrTypeStepFailed, Message: `step "upscale" (item 1) failed: run failed (RunFailed)`}}
	var buf bytes.Buffer
	printPipelineReport(&buf, r)
	want := `ComfyPipeline p (hero) failed
  temporal run t-1
  txt2img      succeeded · ` + testDeployment + `
               p/txt2img · succeeded · run r-1
                 out/a.png · sha256 aa
                 out/b.png · sha256 bb
  upscale      failed · for each ${txt2img.outputs.image} · ` + testDeployment2 + `
               #0 p/upscale/0 · succeeded · run r-2
                 out/u0.png · sha256 cc
               #1 p/upscale/1 · failed
                 error: run failed (RunFailed)
               error: step failed
  video        skipped · ` + testDeployment + `
  failed step  upscale
  error        StepFailed: step "upscale" (item 1) failed: run failed (RunFailed)
  fix          fix the cause in the failed step's error above, then start the pipeline again
  web ui       http://ui/p
`
	assert.Equal(t, want, buf.String())
	assert.Equal(t, exitFailed, r.exitCode())
	assert.Equal(t, exitCancelled, (&pipelineReport{execution: execution{ExecutionStatus: "Canceled"}}).exitCode())
	assert.Equal(t, exitOK, (&pipelineReport{execution: execution{ExecutionStatus: "Completed"}}).exitCode())
}

func TestPipelineCommandsUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"pipeline"}, exitUsage, "missing -f FILE"},
		{[]string{"pipeline", "-h"}, exitOK, "starter pipeline watch [-json] PIPELINE_ID"},
		{[]string{"pipeline", "-f", "../../examples/pipeline-hero.yaml", "-max-parallel", "201"}, exitUsage, "-max-parallel 201: use 1 to 200"},
		{[]string{"pipeline", "-f", "../../examples/pipeline-hero.yaml", "-label", "nokey"}, exitUsage, "use key=value"},
		{[]string{"pipeline", "status"}, exitUsage, "missing pipeline id: use `starter pipeline status PIPELINE_ID`"},
		{[]string{"pipeline", "cancel", "x"}, exitUsage, `unknown pipeline command "cancel"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out := runMain(tt.args...)
			assert.Equal(t, tt.code, code, out)
			assert.Contains(t, out, tt.want)
		})
	}
}

func TestPipelineDryRunSendsTheTextUnchanged(t *testing.T) {
	spec := "# comment kept\nsteps:\n  - name: a\n    deployment: " + testDeployment + "\n"
	var out, errOut bytes.Buffer
	e := testEnv(spec, &out, &errOut)
	code := e.main(context.Background(), []string{"pipeline", "-f", "-", "-max-parallel", "4", "-label", "campaign=spring", "-dry-run", "-json"})
	require.Equal(t, exitOK, code, errOut.String())
	var in workflows.ComfyPipelineInput
	require.NoError(t, decodeStrict(out.Bytes(), "out", "ComfyPipelineInput", "", &in))
	assert.Equal(t, spec, in.SpecText)
	assert.Equal(t, 4, in.MaxParallel)
	assert.Equal(t, map[string]string{"campaign": "spring"}, in.Labels)
}
