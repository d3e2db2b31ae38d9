package e2e

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/workflows"
)

// lockedBuffer collects the worker's log lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// withCapturedLogs gives the worker a Temporal client whose logger (which
// workflows and activities log through) writes into logs.
func withCapturedLogs(logs *lockedBuffer) envOption {
	return func(e *env) {
		c, err := client.Dial(client.Options{
			HostPort: devServer.FrontendHostPort(), Namespace: "default",
			Logger: log.NewStructuredLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		})
		require.NoError(e.t, err)
		e.t.Cleanup(c.Close)
		e.client = c
	}
}

// historyJSON exports a workflow's whole history.
func historyJSON(t *testing.T, e *env, workflowID string) string {
	t.Helper()
	var out bytes.Buffer
	iter := e.client.GetWorkflowHistory(context.Background(), workflowID, "", false, 0)
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		raw, err := protojson.Marshal(ev)
		require.NoError(t, err)
		out.Write(raw)
		out.WriteByte('\n')
	}
	require.NotZero(t, out.Len(), "history of %s", workflowID)
	return out.String()
}

// A secret in a source column that the deployments do not declare reaches
// no history event (of the batch or its children), no result line and no
// log line: the reader keeps it out of its result, and errors show a
// short prefix at most. Payloads are JSON, unencoded, so a substring
// search of the exported history finds any copy.
func TestSourceSecretsStayOutOfHistoryResultsAndLogs(t *testing.T) {
	logs := &lockedBuffer{}
	e := newEnv(t, comfytest.Options{Seed: 13, Timing: comfytest.Timing{ColdStart: 20 * time.Millisecond, Run: 50 * time.Millisecond}}, withCapturedLogs(logs))
	const (
		headerSecret = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"           // a CSV's first line
		keySecret    = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"   // a JSON key
		valueSecret  = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY0042" // a value of an undeclared key
	)
	write := func(name, body string) string {
		p := filepath.Join(e.sourceDir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	csvSource := write("env.csv", "prompt,"+headerSecret+"\na red chair,x\n")
	jsonlSource := write("items.jsonl", `{"prompt":"a red chair","seed":1}`+"\n"+
		`{"prompt":"a blue chair","`+keySecret+`":1}`+"\n"+
		`{"prompt":"a green chair","api_token":"`+valueSecret+`"}`+"\n")

	runBatch := func(id, source string) workflows.ComfyBatchResult {
		run, err := e.client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: id, TaskQueue: e.taskQueue},
			workflows.ComfyBatchWorkflow, workflows.ComfyBatchInput{
				Deployments: []string{txt2img},
				Source:      &activities.BatchSource{Path: source},
				Defaults:    workflows.BatchDefaults{PollInterval: workflows.Duration(100 * time.Millisecond)},
			})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var res workflows.ComfyBatchResult
		require.NoError(t, run.Get(ctx, &res))
		return res
	}

	csvRes := runBatch("e2e-secret-csv", csvSource)
	assert.Equal(t, workflows.StoppedBySource, csvRes.StoppedBy)
	assert.Contains(t, csvRes.Error, `column 2: input "sk_live_4eC3"… is not declared`)
	assert.Zero(t, csvRes.Succeeded)

	jsonlRes := runBatch("e2e-secret-jsonl", jsonlSource)
	assert.Equal(t, 1, jsonlRes.Succeeded)
	assert.Equal(t, 2, jsonlRes.Failed)
	lines := readResults(t, e, jsonlRes.ResultsPath)
	require.Len(t, lines, 3)
	slices.SortFunc(lines, func(a, b activities.BatchItemResult) int { return a.Index - b.Index })
	assert.Contains(t, lines[1].Error, `input "ghp_16C7e42F"… is not declared`)
	assert.Contains(t, lines[2].Error, `input "api_token" is not declared`)

	results := e.readObject(jsonlRes.ResultsPath)
	everything := map[string]string{
		"results.jsonl":    string(results),
		"worker log":       logs.String(),
		"csv batch":        historyJSON(t, e, "e2e-secret-csv"),
		"jsonl batch":      historyJSON(t, e, "e2e-secret-jsonl"),
		"jsonl item 0 run": historyJSON(t, e, "e2e-secret-jsonl/0"),
	}
	require.NotEmpty(t, everything["worker log"], "the worker logged")
	for where, text := range everything {
		for _, secret := range []string{headerSecret, keySecret, valueSecret} {
			// Beyond the 12-character prefix an error may show.
			assert.NotContains(t, text, secret[12:], "%s holds a secret of the source", where)
		}
	}
	for i := 1; i <= 2; i++ {
		_, err := e.client.DescribeWorkflowExecution(context.Background(), "e2e-secret-jsonl/"+strconv.Itoa(i), "")
		assert.Error(t, err, "item %d failed without a run", i)
	}
}
