//go:build cluster

package cluster

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/outputstore"
	"github.com/durable-comfy/durable-comfy/workflows"
)

// figures are what the test measured; they go to the log and to
// <run dir>/figures.json.
type figures struct {
	Items           int     `json:"items"`
	Workers         int     `json:"workers"`
	Succeeded       int     `json:"succeeded"`
	Failed          int     `json:"failed"`
	WorkerKills     int     `json:"worker_kills"`
	KilledAtEnded   int     `json:"killed_at_items_ended"`
	ServerRestarts  int     `json:"server_restarts"`
	RestartAtEnded  int     `json:"restart_at_items_ended"`
	RestartSeconds  float64 `json:"server_restart_seconds"`
	RestartMode     string  `json:"server_restart_mode"`
	RunsCreated     int     `json:"runs_created"`
	DuplicateRuns   int     `json:"duplicate_paid_runs"`
	LostOutputs     int     `json:"lost_outputs"`
	OutputsVerified int     `json:"outputs_verified"`
	WallSeconds     float64 `json:"wall_seconds"`
	ItemsPerMinute  float64 `json:"items_per_minute"`
	HistoryShards   int32   `json:"history_shards"`
	Persistence     string  `json:"persistence_store"`
	Visibility      string  `json:"visibility_store"`
	OutputStore     string  `json:"output_store"`
}

// TestBatchSurvivesWorkerKillAndServerRestart runs a 500-item ComfyBatch
// on three worker processes sharing one task queue and one output store (a
// bucket on a real S3 server unless CLUSTER_TEST_OUTPUT_URL says otherwise),
// against the simulator's fault profile (failed runs, lost submit
// responses, 5xx answers). A fifth of the way in one worker is killed with
// SIGKILL and not restarted, so the other two take over its workflow tasks
// and, after their heartbeat timeouts, its activities; half-way the
// Temporal server process is restarted on the same database. Every item
// must end with one results line and a final status, no item may be paid
// twice, and every output must be stored with the sha256 its line names.
func TestBatchSurvivesWorkerKillAndServerRestart(t *testing.T) {
	items := envInt(t, "CLUSTER_TEST_ITEMS", 500)
	const workers = 3
	c := loadCluster(t)
	began := time.Now()

	runDir := filepath.Join(c.Dir, "test-run")
	require.NoError(t, os.RemoveAll(runDir))
	require.NoError(t, os.MkdirAll(runDir, 0o755))
	t.Logf("logs, items and outputs of this run: %s", runDir)

	// The cluster must be there: an unreachable cluster fails the test.
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	dialCtx, dialCancel := context.WithTimeout(ctx, 15*time.Second)
	tc, err := client.DialContext(dialCtx, client.Options{HostPort: c.FrontendAddr, Namespace: c.Namespace, Logger: quietLogger{}})
	dialCancel()
	if err != nil {
		t.Fatalf("the cluster's frontend %s is not reachable: %v (start it with `make cluster`)", c.FrontendAddr, err)
	}
	defer tc.Close()
	info, err := tc.WorkflowService().GetClusterInfo(ctx, &workflowservice.GetClusterInfoRequest{})
	require.NoError(t, err)
	fig := figures{Items: items, Workers: workers, HistoryShards: info.GetHistoryShardCount(),
		Persistence: info.GetPersistenceStore(), Visibility: info.GetVisibilityStore()}
	require.EqualValues(t, c.Shards, fig.HistoryShards, "history shards of the running cluster")
	require.Contains(t, fig.Visibility, "postgres", "SQL advanced visibility on PostgreSQL")

	// The simulator is a process of its own, like the provider.
	simAddr := freeAddr(t)
	sim := startProc(t, "comfysim", runDir, filepath.Join(c.BinDir, "comfysim"), baseEnv(),
		"-addr", simAddr, "-quiet", "-seed", "8",
		"-cold-start", "100ms", "-run-duration", "700ms",
		"-run-failure-rate", "0.1", "-ambiguous-submit-rate", "0.1",
		"-error-rate", "GET /api/run/{run_id}=0.05,POST /api/run/deployment/queue=0.05")
	simBase := "http://" + simAddr
	waitHTTP(t, sim, simBase+"/healthz")

	// One output store shared by every worker: a bucket on a versitygw S3
	// server the test starts, unless CLUSTER_TEST_OUTPUT_URL names another
	// store (a file:// directory, or an s3:// bucket whose credentials are in
	// the caller's AWS environment).
	storeURL := os.Getenv("CLUSTER_TEST_OUTPUT_URL")
	var storeEnv []string
	if storeURL == "" {
		storeURL = startS3(t, c, runDir)
		storeEnv = s3Env
	}
	fig.OutputStore = outputstore.Redact(storeURL)
	store, err := outputstore.Open(ctx, storeURL)
	require.NoError(t, err, "CLUSTER_TEST_OUTPUT_URL")
	defer store.Close()
	require.NoError(t, store.Check(ctx), "output store %s", fig.OutputStore)

	taskQueue := fmt.Sprintf("cluster-test-%d", began.Unix())
	workerEnv := baseEnv(
		"TEMPORAL_ADDRESS="+c.FrontendAddr, "TEMPORAL_NAMESPACE="+c.Namespace,
		"COMFY_API_URL="+simBase+"/api", "COMFY_API_KEY="+comfytest.DefaultAPIKey,
		"COMFY_TASK_QUEUE="+taskQueue, "COMFY_POLL_INTERVAL=250ms", "COMFY_HTTP_TIMEOUT=10s",
		"COMFY_LOG_FORMAT=json", "COMFY_OUTPUT_URL="+storeURL, "COMFY_SOURCE_DIRS="+runDir)
	workerEnv = append(workerEnv, storeEnv...)
	var ws []*proc
	for i := range workers {
		ws = append(ws, startProc(t, fmt.Sprintf("worker-%d", i+1), runDir, filepath.Join(c.BinDir, "worker"), workerEnv))
	}

	source := filepath.Join(runDir, "items.jsonl")
	writeItems(t, source, items)
	batchID := "cluster-batch-" + strconv.FormatInt(began.Unix(), 10)
	_, err = tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: batchID, TaskQueue: taskQueue},
		workflows.ComfyBatchWorkflow, workflows.ComfyBatchInput{
			Deployments:    []string{comfytest.DeploymentTxt2Img, comfytest.DeploymentTxt2ImgB},
			Source:         &activities.BatchSource{Path: source},
			MaxConcurrency: 50,
			PageSize:       100,
			Defaults: workflows.BatchDefaults{
				Retry:        workflows.RetryPolicy{MaxAttempts: 2},
				PollInterval: workflows.Duration(250 * time.Millisecond),
			},
		})
	require.NoError(t, err)
	t.Logf("batch %s started: %d items on task queue %s, %d workers, cluster %s (%d shards, visibility %s)",
		batchID, items, taskQueue, workers, c.FrontendAddr, fig.HistoryShards, fig.Visibility)

	// The server restart is a crash (SIGKILL) unless
	// CLUSTER_TEST_SERVER_RESTART=graceful asks for a rolling restart.
	restartArgs := []string{"restart-server", "-kill"}
	switch mode := os.Getenv("CLUSTER_TEST_SERVER_RESTART"); mode {
	case "", "kill":
		fig.RestartMode = "kill"
	case "graceful":
		restartArgs, fig.RestartMode = restartArgs[:1], mode
	default:
		t.Fatalf("CLUSTER_TEST_SERVER_RESTART=%q: want kill or graceful", mode)
	}

	// Faults at a fifth and at half of the items ended.
	resCh := make(chan batchOutcome, 1)
	go func() { resCh <- waitBatch(ctx, tc, batchID) }()
	var out batchOutcome
	lastLog := time.Now()
watch:
	for {
		select {
		case out = <-resCh:
			break watch
		case <-time.After(time.Second):
		}
		p, err := progress(ctx, tc, batchID)
		if err != nil {
			continue // the server is restarting, or no worker answered in time
		}
		ended := p.Succeeded + p.Failed + p.Skipped + p.Cancelled
		if time.Since(lastLog) > 15*time.Second {
			t.Logf("%s: %d/%d ended, %d running, %.0f items/min", time.Since(began).Round(time.Second), ended, items, p.Running, p.RatePerMinute)
			lastLog = time.Now()
		}
		if fig.WorkerKills == 0 && ended >= items/5 {
			ws[0].kill()
			fig.WorkerKills, fig.KilledAtEnded = 1, ended
			t.Logf("%s: killed %s with SIGKILL at %d items ended (not restarted)", time.Since(began).Round(time.Second), ws[0].name, ended)
		}
		if fig.WorkerKills == 1 && fig.ServerRestarts == 0 && ended >= items/2 {
			rs := time.Now()
			outText, err := devcluster(ctx, c, restartArgs...)
			require.NoError(t, err)
			fig.ServerRestarts, fig.RestartAtEnded, fig.RestartSeconds = 1, ended, time.Since(rs).Seconds()
			t.Logf("%s: restarted the Temporal server (%s) at %d items ended in %.1fs:\n%s", time.Since(began).Round(time.Second), fig.RestartMode, ended, fig.RestartSeconds, strings.TrimSpace(outText))
		}
	}
	require.NoError(t, out.err, "batch %s", batchID)
	res := out.result
	fig.WallSeconds = time.Since(began).Seconds()
	fig.ItemsPerMinute = float64(items) / fig.WallSeconds * 60
	require.Equal(t, 1, fig.WorkerKills, "the batch ended before a worker could be killed: raise CLUSTER_TEST_ITEMS")
	require.Equal(t, 1, fig.ServerRestarts, "the batch ended before the server could be restarted: raise CLUSTER_TEST_ITEMS")
	for _, w := range ws[1:] {
		assert.False(t, w.exited(), "%s kept running; see %s", w.name, w.log)
	}

	// Every item accounted for, once, with a final status.
	fig.Succeeded, fig.Failed = res.Succeeded, res.Failed
	assert.Equal(t, items, res.Total)
	assert.Equal(t, items, res.Succeeded+res.Failed, "every item ends succeeded or failed: %+v", res)
	assert.Greater(t, res.Succeeded, items*9/10, "the fault profile fails about 1%% of items (10%% of runs, 2 attempts)")
	require.True(t, strings.HasPrefix(res.ResultsPath, store.URL()+"/"), "results manifest %s is in the store %s", res.ResultsPath, store.URL())
	lines := readResults(ctx, t, store, res.ResultsPath)
	require.Len(t, lines, items, "one results line per item")
	seen := map[int]bool{}
	runsRecorded := 0
	for _, l := range lines {
		assert.False(t, seen[l.Index], "item %d listed twice", l.Index)
		assert.True(t, l.Index >= 0 && l.Index < items, "item index %d", l.Index)
		seen[l.Index] = true
		runsRecorded += len(l.RunIDs)
		switch l.Status {
		case activities.ItemSucceeded:
			if assert.NotEmpty(t, l.Outputs, "item %d succeeded without outputs", l.Index) {
				for _, o := range l.Outputs {
					if err := verifyOutput(ctx, store, o); err != nil {
						fig.LostOutputs++
						t.Errorf("item %d: %v", l.Index, err)
					} else {
						fig.OutputsVerified++
					}
				}
			} else {
				fig.LostOutputs++
			}
		case activities.ItemFailed:
			assert.NotEmpty(t, l.Error, "item %d failed without a reason", l.Index)
		default:
			t.Errorf("item %d ended %q, want succeeded or failed", l.Index, l.Status)
		}
	}

	// No duplicate paid run: one run per correlation token, and every run
	// the simulator created is recorded against its item.
	counters := simCounters(t, simBase)
	fig.RunsCreated = counters.RunsCreated
	for token, n := range counters.RunsByToken {
		if n > 1 {
			fig.DuplicateRuns += n - 1
			t.Errorf("token %s was paid %d times", token, n)
		}
	}
	assert.Equal(t, counters.RunsCreated, len(counters.RunsByToken), "runs without a correlation token")
	assert.Equal(t, counters.RunsCreated, runsRecorded, "every created run is recorded against its item")

	// SQL visibility answers queries on our search attributes.
	query := fmt.Sprintf("TaskQueue = '%s' AND WorkflowType = '%s' AND %s IN ('%s', '%s')", taskQueue, workflows.ComfyRunWorkflow,
		workflows.DeploymentIDKey.GetName(), comfytest.DeploymentTxt2Img, comfytest.DeploymentTxt2ImgB)
	assert.Eventually(t, func() bool {
		n, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: c.Namespace, Query: query})
		return err == nil && n.GetCount() >= int64(items)
	}, time.Minute, time.Second, "visibility lists every item's run: %s", query)

	t.Logf("FIGURES items=%d workers=%d succeeded=%d failed=%d worker_kills=%d (at %d ended) server_restarts=%d (%s, at %d ended, %.1fs) runs_created=%d duplicate_paid_runs=%d lost_outputs=%d outputs_verified=%d wall=%.1fs (%.0f items/min) shards=%d persistence=%s visibility=%s store=%s",
		fig.Items, fig.Workers, fig.Succeeded, fig.Failed, fig.WorkerKills, fig.KilledAtEnded, fig.ServerRestarts, fig.RestartMode, fig.RestartAtEnded,
		fig.RestartSeconds, fig.RunsCreated, fig.DuplicateRuns, fig.LostOutputs, fig.OutputsVerified, fig.WallSeconds, fig.ItemsPerMinute,
		fig.HistoryShards, fig.Persistence, fig.Visibility, fig.OutputStore)
	if b, err := json.MarshalIndent(fig, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(runDir, "figures.json"), append(b, '\n'), 0o644)
	}
	assert.Zero(t, fig.DuplicateRuns, "duplicate paid runs")
	assert.Zero(t, fig.LostOutputs, "lost outputs")
}

type batchOutcome struct {
	result workflows.ComfyBatchResult
	err    error
}

// waitBatch waits for the batch's last run (it continues as new), riding
// out the server restart: a lost connection is retried, a workflow failure
// is returned.
func waitBatch(ctx context.Context, tc client.Client, id string) batchOutcome {
	for {
		var res workflows.ComfyBatchResult
		err := tc.GetWorkflow(ctx, id, "").Get(ctx, &res)
		var wfErr *temporal.WorkflowExecutionError
		if err == nil || errors.As(err, &wfErr) || ctx.Err() != nil {
			return batchOutcome{res, err}
		}
		time.Sleep(time.Second)
	}
}

func progress(ctx context.Context, tc client.Client, id string) (workflows.BatchProgress, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var p workflows.BatchProgress
	v, err := tc.QueryWorkflow(qctx, id, "", workflows.ProgressQuery)
	if err == nil {
		err = v.Get(&p)
	}
	return p, err
}

func writeItems(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	enc := json.NewEncoder(f)
	for i := range n {
		require.NoError(t, enc.Encode(map[string]any{"prompt": fmt.Sprintf("cluster item %d", i), "seed": i}))
	}
	require.NoError(t, f.Close())
}

// openStored opens an object by the location a results line names, through
// the store: an s3:// URL is read from the bucket, a file:// URL or an
// absolute path from the directory. A location outside the store is lost.
func openStored(ctx context.Context, store *outputstore.Bucket, loc string) (io.ReadCloser, error) {
	if filepath.IsAbs(loc) {
		loc = (&url.URL{Scheme: "file", Path: filepath.ToSlash(loc)}).String()
	}
	key, ok := store.KeyForURL(loc)
	if !ok {
		return nil, fmt.Errorf("%s is not in the output store %s", loc, store.URL())
	}
	return store.Open(ctx, key)
}

func verifyOutput(ctx context.Context, store *outputstore.Bucket, o activities.OutputRef) error {
	r, err := openStored(ctx, store, o.Path)
	if err != nil {
		return fmt.Errorf("output lost: %w", err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("output %s unreadable: %w", o.Path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != o.SHA256 {
		return fmt.Errorf("output %s has sha256 %s, its results line says %s", o.Path, got, o.SHA256)
	}
	return nil
}

func readResults(ctx context.Context, t *testing.T, store *outputstore.Bucket, loc string) []activities.BatchItemResult {
	t.Helper()
	r, err := openStored(ctx, store, loc)
	require.NoError(t, err, "results manifest")
	defer r.Close()
	var out []activities.BatchItemResult
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l activities.BatchItemResult
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		out = append(out, l)
	}
	require.NoError(t, sc.Err())
	return out
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, name)
	return n
}

// quietLogger keeps the SDK's reconnect warnings during the server restart
// out of the test log.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
