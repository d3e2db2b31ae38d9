package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durable-comfy/durable-comfy/workflows"
)

const testDeployment = "de000000-0000-4000-8000-000000000001"

func TestParseInputValue(t *testing.T) {
	tests := []struct {
		raw  string
		want any
	}{
		{"20", json.Number("20")},
		{"7.5", json.Number("7.5")},
		{"-3", json.Number("-3")},
		{"18446744073709551615", json.Number("18446744073709551615")}, // a 64-bit seed must not round
		{"true", true},
		{"false", false},
		{"[1, 2]", []any{json.Number("1"), json.Number("2")}},
		{`["a","b"]`, []any{"a", "b"}},
		{`"42"`, "42"},
		{`"a cat"`, "a cat"},
		{"a cat", "a cat"},
		{"", ""},
		{"20 apples", "20 apples"},
		{"[1, 2", "[1, 2"},
		{`"unterminated`, `"unterminated`},
		{"True", "True"},
		{"https://example.com/a.png?x=1", "https://example.com/a.png?x=1"},
		{"  12  ", json.Number("12")},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got, err := parseInputValue("k", tt.raw)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseInputValueRejects(t *testing.T) {
	_, err := parseInputValue("opts", `{"a": 1}`)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "JSON object")
	assert.Contains(t, err.Error(), "opts")

	_, err = parseInputValue("neg", "null")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `neg="null"`, "the message must say how to send the text")
}

func TestParseInputs(t *testing.T) {
	got, err := parseInputs([]string{"prompt=a cat", "steps=20", "url=http://x/?a=b=c", "prompt=a dog"})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"prompt": "a dog", "steps": json.Number("20"), "url": "http://x/?a=b=c"}, got)

	_, err = parseInputs([]string{"noequals", "=value", "ok=1"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `-input "noequals": use key=value`)
	assert.Contains(t, err.Error(), `-input "=value": use key=value`)
}

func TestParseLabels(t *testing.T) {
	got, err := parseLabels([]string{"customer=acme", "note=steps=20", "empty="})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"customer": "acme", "note": "steps=20", "empty": ""}, got)

	_, err = parseLabels([]string{"customer"})
	require.ErrorContains(t, err, "-label customer=acme")
}

func TestParseRetryOn(t *testing.T) {
	got, err := parseRetryOn("failed, Timeout,failed")
	require.NoError(t, err)
	assert.Equal(t, []string{"failed", "timeout"}, got)

	got, err = parseRetryOn("")
	require.NoError(t, err)
	assert.Nil(t, got)

	_, err = parseRetryOn("failed,crashed")
	require.ErrorContains(t, err, `"failed" or "timeout"`)
}

// flags builds runFlags as flag.Visit would report them: set lists the
// flags given on the command line.
func flags(f runFlags, set ...string) runFlags {
	f.set = map[string]bool{}
	for _, s := range set {
		f.set[s] = true
	}
	return f
}

func TestBuildInputFromFlags(t *testing.T) {
	in, err := buildInput(workflows.ComfyRunInput{}, flags(runFlags{
		deployment:       testDeployment,
		inputs:           kvList{"prompt=a cat", "steps=20"},
		labels:           kvList{"source=cli"},
		gpu:              "A10G",
		queueTimeout:     10 * time.Minute,
		executionTimeout: 30 * time.Minute,
		maxAttempts:      3,
		retryOn:          "failed",
		skipOutputs:      true,
	}, "deployment", "input", "label", "gpu", "queue-timeout", "execution-timeout", "max-attempts", "retry-on", "skip-outputs"))
	require.NoError(t, err)
	assert.Equal(t, workflows.ComfyRunInput{
		DeploymentID:     testDeployment,
		Inputs:           map[string]any{"prompt": "a cat", "steps": json.Number("20")},
		GPU:              "A10G",
		QueueTimeout:     workflows.Duration(10 * time.Minute),
		ExecutionTimeout: workflows.Duration(30 * time.Minute),
		Retry:            workflows.RetryPolicy{MaxAttempts: 3, RetryOn: []string{"failed"}},
		Outputs:          workflows.OutputSettings{Skip: true},
		Labels:           map[string]string{"source": "cli"},
	}, in)
}

func TestBuildInputMergesFileAndFlags(t *testing.T) {
	file := `{
		"deployment_id": "` + testDeployment + `",
		"inputs": {"prompt": "from file", "steps": 30, "seed": 1},
		"gpu": "T4",
		"queue_timeout": "5m",
		"execution_timeout": 600,
		"retry": {"max_attempts": 2, "retry_on": ["timeout"]},
		"outputs": {"folder": "batch-1"},
		"labels": {"campaign": "spring", "source": "file"}
	}`
	base, err := decodeInputFile(strings.NewReader(file), "run.json")
	require.NoError(t, err)

	tests := []struct {
		name  string
		flags runFlags
		check func(t *testing.T, in workflows.ComfyRunInput)
	}{
		{
			name:  "no flags keep the file",
			flags: flags(runFlags{}),
			check: func(t *testing.T, in workflows.ComfyRunInput) {
				assert.Equal(t, base, in)
				assert.Equal(t, workflows.Duration(10*time.Minute), in.ExecutionTimeout, "numbers are seconds")
			},
		},
		{
			name:  "zero values of unset flags do not erase file fields",
			flags: flags(runFlags{gpu: "", maxAttempts: 0, skipOutputs: false}, "wait"),
			check: func(t *testing.T, in workflows.ComfyRunInput) {
				assert.Equal(t, "T4", in.GPU)
				assert.Equal(t, 2, in.Retry.MaxAttempts)
			},
		},
		{
			name:  "inputs and labels merge key by key",
			flags: flags(runFlags{inputs: kvList{"seed=7", "cfg=4.5"}, labels: kvList{"source=cli"}}),
			check: func(t *testing.T, in workflows.ComfyRunInput) {
				assert.Equal(t, map[string]any{"prompt": "from file", "steps": json.Number("30"), "seed": json.Number("7"), "cfg": json.Number("4.5")}, in.Inputs)
				assert.Equal(t, map[string]string{"campaign": "spring", "source": "cli"}, in.Labels)
			},
		},
		{
			name: "scalar flags override",
			flags: flags(runFlags{deployment: "de000000-0000-4000-8000-000000000002", gpu: "L4", queueTimeout: time.Minute,
				maxAttempts: 4, retryOn: "failed,timeout", skipOutputs: true, outputFolder: "other"},
				"deployment", "gpu", "queue-timeout", "max-attempts", "retry-on", "skip-outputs", "output-folder"),
			check: func(t *testing.T, in workflows.ComfyRunInput) {
				assert.Equal(t, "de000000-0000-4000-8000-000000000002", in.DeploymentID)
				assert.Equal(t, "L4", in.GPU)
				assert.Equal(t, workflows.Duration(time.Minute), in.QueueTimeout)
				assert.Equal(t, workflows.Duration(10*time.Minute), in.ExecutionTimeout)
				assert.Equal(t, workflows.RetryPolicy{MaxAttempts: 4, RetryOn: []string{"failed", "timeout"}}, in.Retry)
				assert.Equal(t, workflows.OutputSettings{Skip: true, Folder: "other"}, in.Outputs)
			},
		},
		{
			name:  "an explicit empty -retry-on restores the default",
			flags: flags(runFlags{retryOn: ""}, "retry-on"),
			check: func(t *testing.T, in workflows.ComfyRunInput) {
				assert.Nil(t, in.Retry.RetryOn)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Deep-copy base so one case cannot leak into the next.
			fresh, err := decodeInputFile(strings.NewReader(file), "run.json")
			require.NoError(t, err)
			in, err := buildInput(fresh, tt.flags)
			require.NoError(t, err)
			tt.check(t, in)
		})
	}
}

func TestDecodeInputFileErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"empty", "", "the file is empty"},
		{"typo", `{"deploymentId": "x"}`, `unknown field "deploymentId"`},
		{"not an object", `[1]`, "ComfyRunInput"},
		{"two documents", `{} {}`, "extra data"},
		{"bad duration", `{"queue_timeout": "ten minutes"}`, "15m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeInputFile(strings.NewReader(tt.doc), "run.json")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), "-f run.json")
		})
	}
}

func TestBuildInputValidation(t *testing.T) {
	tests := []struct {
		name  string
		base  workflows.ComfyRunInput
		flags runFlags
		want  []string
	}{
		{"missing deployment", workflows.ComfyRunInput{}, flags(runFlags{}), []string{"deployment_id is required"}},
		{"deployment not a uuid", workflows.ComfyRunInput{}, flags(runFlags{deployment: "my-deployment"}, "deployment"), []string{"not a UUID"}},
		{"all problems at once", workflows.ComfyRunInput{}, flags(runFlags{
			deployment: testDeployment, gpu: "RTX4090", maxAttempts: 11, queueTimeout: -time.Second, outputFolder: "a/b",
			inputs: kvList{"bad"}, retryOn: "sometimes",
		}, "deployment", "gpu", "max-attempts", "queue-timeout", "output-folder", "retry-on"), []string{
			`gpu "RTX4090" is not one of`, "retry.max_attempts must be between 1 and 10", "queue_timeout must not be negative", `outputs.folder "a/b"`,
			`-input "bad"`, `-retry-on "sometimes"`,
		}},
		{"object and null inputs from a file", workflows.ComfyRunInput{DeploymentID: testDeployment, Inputs: map[string]any{"o": map[string]any{}, "n": nil}},
			flags(runFlags{}), []string{`input "o" is an object`, `input "n" is null`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := buildInput(tt.base, tt.flags)
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestNewWorkflowID(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))
	id, err := newWorkflowID(now, bytes.NewReader([]byte{0xab, 0xcd, 0xef}))
	require.NoError(t, err)
	assert.Equal(t, "comfyrun-20260304-040607-abcdef", id, "UTC time and the random bytes in hex")

	id, err = newWorkflowID(time.Now(), nil)
	require.NoError(t, err)
	assert.Regexp(t, regexp.MustCompile(`^comfyrun-\d{8}-\d{6}-[0-9a-f]{6}$`), id)

	other, err := newWorkflowID(time.Now(), nil)
	require.NoError(t, err)
	assert.NotEqual(t, id, other)

	_, err = newWorkflowID(now, bytes.NewReader(nil))
	require.ErrorContains(t, err, "pass -id")
}

func TestStaticSummary(t *testing.T) {
	long := strings.Repeat("word ", 30)
	tests := []struct {
		name   string
		inputs map[string]any
		want   string
	}{
		{"no inputs", nil, "ComfyRun · " + testDeployment},
		{"prompt", map[string]any{"prompt": "a cat", "steps": 20}, "ComfyRun · " + testDeployment + " · prompt: a cat"},
		{"other prompt name", map[string]any{"negative_prompt": "blurry", "positive_prompt": "a dog"}, "ComfyRun · " + testDeployment + " · positive_prompt: a dog"},
		{"non-string prompt ignored", map[string]any{"prompt": 3}, "ComfyRun · " + testDeployment},
		{"newlines collapse", map[string]any{"prompt": "a\n  cat"}, "ComfyRun · " + testDeployment + " · prompt: a cat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, staticSummary(workflows.ComfyRunInput{DeploymentID: testDeployment, Inputs: tt.inputs}))
		})
	}
	got := staticSummary(workflows.ComfyRunInput{DeploymentID: testDeployment, Inputs: map[string]any{"prompt": long}})
	prompt := strings.TrimPrefix(got, "ComfyRun · "+testDeployment+" · prompt: ")
	assert.Equal(t, 60, len([]rune(prompt)))
	assert.True(t, strings.HasSuffix(prompt, "…"))
}

func TestStaticDetails(t *testing.T) {
	md := staticDetails(workflows.ComfyRunInput{
		DeploymentID: testDeployment,
		Inputs:       map[string]any{"steps": json.Number("20"), "prompt": "a cat", "sizes": []any{1, 2}},
		GPU:          "L4",
		Retry:        workflows.RetryPolicy{MaxAttempts: 3},
		Labels:       map[string]string{"b": "2", "a": "1"},
	})
	assert.Contains(t, md, "**Deployment:** `"+testDeployment+"`")
	assert.Contains(t, md, "- `prompt`: a cat\n- `sizes`: [1,2]\n- `steps`: 20\n", "inputs sorted, non-strings as JSON")
	assert.Contains(t, md, "GPU L4")
	assert.Contains(t, md, "up to 3 attempts (retry on failed, timeout)")
	assert.Contains(t, md, "`a=1` · `b=2`")
}

func TestTemporalCommand(t *testing.T) {
	cmd, err := temporalCommand(workflows.ComfyRunInput{DeploymentID: testDeployment, Inputs: map[string]any{"prompt": "it's"}}, "comfyrun-x", "comfy")
	require.NoError(t, err)
	assert.Equal(t, `temporal workflow start --type ComfyRun --task-queue comfy --workflow-id comfyrun-x --input '{"deployment_id":"`+testDeployment+`","inputs":{"prompt":"it'\''s"}}'`, cmd)
}

func TestKVListIsAFlagValue(t *testing.T) {
	var l kvList
	require.NoError(t, l.Set("a=1"))
	require.NoError(t, l.Set("b=2"))
	assert.Equal(t, kvList{"a=1", "b=2"}, l)
	assert.Equal(t, "a=1, b=2", l.String())
}

func TestBulletsListsEachProblem(t *testing.T) {
	got := bullets(errors.Join(errors.New("first"), errors.New("second")))
	assert.Equal(t, "  - first\n  - second", got)
}
