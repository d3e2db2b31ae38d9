package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/workflows"
)

func TestDecodeBatchInputJSONAndYAMLAgree(t *testing.T) {
	js := `{"deployments": ["` + testDeployment + `"], "items": [{"prompt": "a cat", "seed": 18446744073709551615}],
		"defaults": {"queue_timeout": "10m", "inputs": {"steps": 20}}, "max_concurrency": 3}`
	yml := `
deployments: [` + testDeployment + `]
items:
  - prompt: a cat
    seed: 18446744073709551615
defaults:
  queue_timeout: 10m
  inputs: {steps: 20}
max_concurrency: 3
`
	fromJSON, err := decodeBatchInput([]byte(js), "b.json")
	require.NoError(t, err)
	fromYAML, err := decodeBatchInput([]byte(yml), "b.yaml")
	require.NoError(t, err)
	assert.Equal(t, fromJSON, fromYAML)
	assert.Equal(t, json.Number("18446744073709551615"), fromYAML.Items[0]["seed"], "a 64-bit seed keeps every digit")
	assert.Equal(t, json.Number("20"), fromYAML.Defaults.Inputs["steps"])
	assert.Equal(t, 10*time.Minute, fromYAML.Defaults.QueueTimeout.D())
	assert.Equal(t, 3, fromYAML.MaxConcurrency)
	require.NoError(t, checkBatchInput(fromYAML))
}

func TestDecodeStrictErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"unknown JSON field", `{"deployments": [], "max_concurency": 3}`, []string{`unknown field "max_concurency"`, "remove or correct it", "max_concurrency"}},
		{"unknown YAML field", "deployments: []\nmax_concurency: 3\n", []string{`unknown field "max_concurency"`}},
		{"unknown nested field", "deployments: []\nfailure_policy: {max_failure: 3}\n", []string{`unknown field "max_failure"`}},
		{"duplicate YAML key", "deployments: []\ndeployments: []\n", []string{"not valid YAML or JSON", "deployments"}},
		{"empty", "  \n", []string{"the file is empty"}},
		{"YAML list", "- a\n- b\n", []string{"not an object"}},
		{"YAML scalar", "hello\n", []string{"not an object"}},
		{"wrong type", `{"max_concurrency": "ten"}`, []string{"max_concurrency", "string"}},
		{"two JSON documents", `{"deployments": []} {"deployments": []}`, []string{"extra data after the first document"}},
		{"bad YAML", "deployments: [\n", []string{"not valid YAML or JSON"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeBatchInput([]byte(tt.doc), "f")
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "-f f: "), err.Error())
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestCheckBatchInput(t *testing.T) {
	in := workflows.ComfyBatchInput{Deployments: []string{"not-a-uuid"}}
	err := checkBatchInput(in)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `deployment "not-a-uuid" is not a UUID`)
	assert.Contains(t, err.Error(), "a batch needs items or a source")

	err = checkBatchInput(workflows.ComfyBatchInput{})
	assert.Contains(t, err.Error(), "deployments needs at least one deployment id")

	ok := workflows.ComfyBatchInput{Deployments: []string{testDeployment}, Items: []map[string]any{{"prompt": "a"}}}
	require.NoError(t, checkBatchInput(ok))
	ok.State = &workflows.BatchState{Succeeded: 3}
	err = checkBatchInput(ok)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "state is internal")
}

func TestNewID(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	id, err := newID("comfybatch", now, bytes.NewReader([]byte{0xab, 0xcd, 0xef}))
	require.NoError(t, err)
	assert.Equal(t, "comfybatch-20260102-020405-abcdef", id, "UTC time, 6 hex digits")

	_, err = newID("comfybatch", now, bytes.NewReader(nil))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "pass -id")

	a, _ := newID("x", now, nil)
	b, _ := newID("x", now, nil)
	assert.NotEqual(t, a, b)
}

func TestReadDocFile(t *testing.T) {
	e := &env{stdin: strings.NewReader("from stdin")}
	data, name, err := readDocFile(e, "-", "pipeline spec")
	require.NoError(t, err)
	assert.Equal(t, "from stdin", string(data))
	assert.Equal(t, "(stdin)", name)

	_, _, err = readDocFile(e, "", "pipeline spec")
	assert.ErrorContains(t, err, "missing -f FILE")

	_, _, err = readDocFile(e, "/nonexistent/p.yaml", "pipeline spec")
	assert.ErrorContains(t, err, "pass the path of a pipeline spec JSON or YAML file")

	path := filepath.Join(t.TempDir(), "p.yaml")
	require.NoError(t, os.WriteFile(path, []byte("x: 1"), 0o600))
	data, name, err = readDocFile(e, path, "pipeline spec")
	require.NoError(t, err)
	assert.Equal(t, "x: 1", string(data))
	assert.Equal(t, path, name)
}

func TestSourceWarning(t *testing.T) {
	assert.Empty(t, sourceWarning(workflows.ComfyBatchInput{}))
	assert.Empty(t, sourceWarning(workflows.ComfyBatchInput{Source: &activities.BatchSource{URL: "https://example.com/a.csv"}}))
	assert.Empty(t, sourceWarning(workflows.ComfyBatchInput{Source: &activities.BatchSource{Path: "docfile_test.go"}}), "exists here")
	w := sourceWarning(workflows.ComfyBatchInput{Source: &activities.BatchSource{Path: "nope/items.csv"}})
	assert.Contains(t, w, "relative to its own working directory")
}

func TestDispatch(t *testing.T) {
	subs := []subcommand{
		{name: "status", run: func(context.Context, *env, []string) error { return usageErrorf("status ran") }},
		{name: "watch"},
	}
	start := func(_ context.Context, _ *env, args []string) error { return usageErrorf("start ran with %v", args) }
	ctx := context.Background()
	assert.ErrorContains(t, dispatch(ctx, nil, "batch", subs, start, []string{"status", "x"}), "status ran")
	assert.ErrorContains(t, dispatch(ctx, nil, "batch", subs, start, []string{"-f", "x"}), "start ran with [-f x]")
	assert.ErrorContains(t, dispatch(ctx, nil, "batch", subs, start, nil), "start ran with []")
	assert.ErrorContains(t, dispatch(ctx, nil, "batch", subs, start, []string{"stats"}), `unknown batch command "stats"; start one with `+"`starter batch -f FILE`, or use status and watch")
	assert.ErrorContains(t, dispatch(ctx, nil, "schedule", subs, nil, nil), "missing schedule command: use one of status and watch")
}
