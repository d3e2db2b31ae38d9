package workflows

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/outputstore"
	"github.com/durable-comfy/durable-comfy/preflight"
)

const (
	poolA   = "de000000-0000-4000-8000-00000000000a"
	poolB   = "de000000-0000-4000-8000-00000000000b"
	poolC   = "de000000-0000-4000-8000-00000000000c"
	batchID = "batch-1"
)

// outcome is what the fake ComfyRun does for one dispatch of an item.
type outcome struct {
	status   string // "success" (default), "failed"
	deadline string
	took     time.Duration
	gpuSecs  float64
	noReport bool
}

// fakeRuns plays ComfyRun in batch tests: it runs for a while in test time,
// ends as decide says, and reports to the batch through ComfyRun's own
// report code, so the signal path is the real one.
type fakeRuns struct {
	mu         sync.Mutex
	running    int
	maxRunning int
	started    []string // "<workflow id>@<deployment>"
	asked      []string // workflow ids the batch asked to report by signal
	decide     func(in ComfyRunInput, dispatch int) outcome
}

func (f *fakeRuns) run(ctx workflow.Context, in ComfyRunInput) (*ComfyRunResult, error) {
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	dispatch := 1
	if in.ReportTo != nil {
		_, dispatch, _ = parseItemKey(in.ReportTo.Key)
	}
	o := f.decide(in, dispatch)
	rp := newReporter(ctx, in.ReportTo)
	if rp != nil {
		workflow.Go(ctx, func(ctx workflow.Context) {
			if workflow.Await(ctx, func() bool { return rp.ask.Len() > 0 }) == nil {
				f.mu.Lock()
				f.asked = append(f.asked, id)
				f.mu.Unlock()
			}
		})
	}
	f.mu.Lock()
	f.running++
	f.maxRunning = max(f.maxRunning, f.running)
	f.started = append(f.started, id+"@"+in.DeploymentID)
	f.mu.Unlock()

	sleepErr := workflow.Sleep(ctx, max(o.took, time.Second))
	f.mu.Lock()
	f.running--
	f.mu.Unlock()

	status := o.status
	if status == "" {
		status = "success"
	}
	runID := fmt.Sprintf("run-%s-%d", id, dispatch)
	res := ComfyRunResult{WorkflowID: id, DeploymentID: in.DeploymentID, Status: status, RunID: runID,
		Attempts: []activities.Attempt{{Number: 1, RunID: runID, Status: status, DeadlineExceeded: o.deadline, RunSeconds: o.gpuSecs, GPU: "A10G"}}}
	var err error
	switch {
	case sleepErr != nil:
		res.Status = "cancelled"
		err = temporal.NewCanceledError(res)
	case status == "success":
		res.Outputs = []activities.StoredOutput{{Path: "/out/" + id + "/image.png", SHA256: "sha-" + id}}
		res.ManifestPath = "/out/" + id + "/manifest.json"
	default:
		res.Error = "run " + runID + " ended " + status
		err = temporal.NewNonRetryableApplicationError(res.Error, ErrTypeRunFailed, nil, res)
	}
	if !o.noReport {
		err = rp.result(&res, err)
		rp.report(ctx, &comfyRun{in: in, result: res}, err)
	}
	if err != nil {
		return nil, err
	}
	return &res, nil
}

func (f *fakeRuns) startedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.started)
}

type batchEnv struct {
	t     *testing.T
	env   *testsuite.TestWorkflowEnvironment
	runs  *fakeRuns
	store *outputstore.Bucket
	// preflights counts Preflight calls per deployment.
	preflights map[string]int
	// breaksAfter makes a deployment's checks fail (machine in error) after
	// that many successful ones, until recoversAt checks were made (0: never).
	breaksAfter map[string]int
	recoversAt  map[string]int
}

// txt2imgTypes mirrors the simulator's txt2img deployment.
func txt2imgTypes() []comfy.InputType {
	lo, hi, one, hundred := 0.0, 4294967295.0, 1.0, 100.0
	return []comfy.InputType{
		{InputID: "prompt", Type: comfy.InputString},
		{InputID: "negative_prompt", Type: comfy.InputString, DefaultValue: ""},
		{InputID: "steps", Type: comfy.InputInteger, DefaultValue: 20.0, MinValue: &one, MaxValue: &hundred},
		{InputID: "seed", Type: comfy.InputInteger, DefaultValue: 0.0, MinValue: &lo, MaxValue: &hi},
		{InputID: "size", Type: comfy.InputString, DefaultValue: "512x512", EnumOptions: []string{"512x512", "768x768", "1024x1024"}},
	}
}

func newBatchEnv(t *testing.T, store *outputstore.Bucket, limits map[string]int, notReady ...string) *batchEnv {
	t.Helper()
	var ts testsuite.WorkflowTestSuite
	b := &batchEnv{t: t, env: ts.NewTestWorkflowEnvironment(), runs: &fakeRuns{decide: func(ComfyRunInput, int) outcome { return outcome{took: time.Minute} }}, preflights: map[string]int{}}
	if store == nil {
		var err error
		store, err = outputstore.OpenDir(t.TempDir())
		require.NoError(t, err)
	}
	b.store = store
	// Path sources are read below the test's temporary directories and
	// the repository's examples.
	dirs, err := activities.OpenSourceDirs([]string{os.TempDir(), filepath.Join("..", "examples")})
	require.NoError(t, err)
	t.Cleanup(func() { dirs.Close() })
	b.env.RegisterActivity(&activities.Activities{Store: store, SourceDirs: dirs})
	b.env.RegisterWorkflowWithOptions(ComfyBatch, workflow.RegisterOptions{Name: ComfyBatchWorkflow})
	b.env.RegisterWorkflowWithOptions(b.runs.run, workflow.RegisterOptions{Name: ComfyRunWorkflow})
	b.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: batchID})
	var mu sync.Mutex
	b.env.OnActivity(a.Preflight, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.PreflightRequest) (*activities.PreflightResult, error) {
		mu.Lock()
		b.preflights[req.DeploymentID]++
		checks := b.preflights[req.DeploymentID]
		mu.Unlock()
		if !req.SkipInputCheck {
			return nil, errors.New("a batch must not check inputs at preflight")
		}
		if n, ok := b.breaksAfter[req.DeploymentID]; ok && checks > n && (b.recoversAt[req.DeploymentID] == 0 || checks < b.recoversAt[req.DeploymentID]) {
			return nil, temporal.NewNonRetryableApplicationError("machine of "+req.DeploymentID+" is in status \"error\"", preflight.KindMachineNotReady, nil)
		}
		if slices.Contains(notReady, req.DeploymentID) {
			return nil, temporal.NewNonRetryableApplicationError("machine of "+req.DeploymentID+" is building", preflight.KindMachineNotReady, nil)
		}
		return &activities.PreflightResult{DeploymentID: req.DeploymentID, ComfyWorkflowID: "wf-1", MachineName: "m-" + req.DeploymentID[len(req.DeploymentID)-1:],
			GPU: "A10G", CanCancel: true, ConcurrencyLimit: limits[req.DeploymentID], InputTypes: txt2imgTypes()}, nil
	}).Maybe()
	return b
}

func prompts(n int) []map[string]any {
	items := make([]map[string]any, n)
	for i := range items {
		items[i] = map[string]any{"prompt": fmt.Sprintf("item %d", i)}
	}
	return items
}

// itemOf returns the item index from a child's prompt ("item N").
func itemOf(in ComfyRunInput) int {
	var n int
	_, _ = fmt.Sscanf(fmt.Sprint(in.Inputs["prompt"]), "item %d", &n)
	return n
}

func (b *batchEnv) result() *ComfyBatchResult {
	b.t.Helper()
	require.True(b.t, b.env.IsWorkflowCompleted())
	require.NoError(b.t, b.env.GetWorkflowError())
	var res ComfyBatchResult
	require.NoError(b.t, b.env.GetWorkflowResult(&res))
	return &res
}

func (b *batchEnv) progress() BatchProgress {
	b.t.Helper()
	v, err := b.env.QueryWorkflow(ProgressQuery)
	require.NoError(b.t, err)
	var p BatchProgress
	require.NoError(b.t, v.Get(&p))
	return p
}

// readResults reads a results manifest, keyed by item index.
func readResults(t *testing.T, path string) map[int]activities.BatchItemResult {
	t.Helper()
	file, ok := outputstore.FilePath(path)
	require.True(t, ok, path)
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	lines := map[int]activities.BatchItemResult{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r activities.BatchItemResult
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		_, dup := lines[r.Index]
		require.False(t, dup, "item %d has two lines", r.Index)
		lines[r.Index] = r
	}
	require.NoError(t, sc.Err())
	return lines
}

func TestBatchWindowNeverExceedsConcurrency(t *testing.T) {
	b := newBatchEnv(t, nil, nil)
	b.runs.decide = func(in ComfyRunInput, _ int) outcome {
		return outcome{took: time.Duration(itemOf(in)%5+1) * time.Minute, gpuSecs: 10}
	}

	b.env.ExecuteWorkflow(ComfyBatchWorkflow, ComfyBatchInput{Deployments: []string{poolA}, Items: prompts(25), MaxConcurrency: 4})

	res := b.result()
	require.Equal(t, BatchSucceeded, res.Status)
	require.Equal(t, 25, res.Succeeded)
	require.Equal(t, 25, res.Total)
	require.InDelta(t, 250, res.GPUSeconds, 1e-9)
	require.Equal(t, 4, b.runs.maxRunning, "the window is full but never larger than max_concurrency")
	require.Len(t, b.runs.startedIDs(), 25)
	require.Equal(t, 1, b.preflights[poolA], "one check per deployment per batch")
	require.Equal(t, b.store.Location(batchID+"/results.jsonl"), res.ResultsPath)
	lines := readResults(t, res.ResultsPath)
	require.Len(t, lines, 25)
	l := lines[7]
	require.Equal(t, activities.ItemSucceeded, l.Status)
	require.Equal(t, batchID+"/7", l.WorkflowID)
	require.Equal(t, poolA, l.DeploymentID)
	require.Equal(t, []string{"run-batch-1/7-1"}, l.RunIDs)
	require.Equal(t, "item 7", l.Inputs["prompt"])
	require.Equal(t, []activities.OutputRef{{Path: "/out/batch-1/7/image.png", SHA256: "sha-batch-1/7"}}, l.Outputs)
}

func TestBatchContinuesAsNewCarryingState(t *testing.T) {
	b := newBatchEnv(t, nil, nil)
	// Two items run at first; an update at 30 s widens the window and item
	// 2, the last of the page, starts. Items 0 and 1 end together at 1 min,
	// and the batch continues as new with item 2 in flight.
	b.runs.decide = func(in ComfyRunInput, _ int) outcome {
		if n := itemOf(in); n < 2 {
			return outcome{took: time.Minute, gpuSecs: 5}
		}
		return outcome{took: time.Hour}
	}
	b.env.RegisterDelayedCallback(func() {
		b.env.UpdateWorkflow(SetConcurrencyUpdate, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("update rejected: %v", err) }, OnComplete: func(any, error) {},
		}, 3)
	}, 30*time.Second)
	in := ComfyBatchInput{Deployments: []string{poolA}, Items: prompts(6), MaxConcurrency: 2, PageSize: 3}

	b.env.ExecuteWorkflow(ComfyBatchWorkflow, in)

	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, b.env.GetWorkflowError(), &can)
	var next ComfyBatchInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	st := next.State
	require.NotNil(t, st)
	require.Equal(t, 2, st.Succeeded, "both reports that arrived together are counted")
	require.Equal(t, 3, st.MaxConcurrency, "the update is carried over")
	require.Equal(t, 3, st.Cursor.Index+st.Taken, "items 0-2 were taken")
	require.Equal(t, []Flight{{Index: 2, Dispatch: 1, Deployment: poolA}}, st.InFlight)
	require.NotNil(t, st.Pool[0].Preflight, "the deployment check is cached, not repeated")
	require.Equal(t, 3, st.Pool[0].Served, "served counts items started on the deployment")
	require.InDelta(t, 10, st.GPUSecs, 1e-9)
	require.Equal(t, 1, st.Parts, "finished items are flushed before continue-as-new")
	b.runs.mu.Lock()
	require.Equal(t, []string{batchID + "/2"}, b.runs.asked, "the child still running is asked to report to the next run")
	b.runs.mu.Unlock()
	require.Empty(t, st.Unflushed)

	// The next run gets the report of the child the first run started (by
	// signal: futures do not survive continue-as-new) and finishes.
	b2 := newBatchEnv(t, b.store, nil)
	b2.runs.decide = func(ComfyRunInput, int) outcome { return outcome{took: time.Minute, gpuSecs: 5} }
	b2.env.RegisterDelayedCallback(func() {
		b2.env.SignalWorkflow(ItemDoneSignal, ItemReport{Key: itemKey(2, 1), WorkflowID: batchID + "/2",
			Status: activities.ItemSucceeded, DeploymentID: poolA, RunIDs: []string{"run-2"}, GPUSeconds: 5,
			Inputs: map[string]any{"prompt": "item 2"}})
	}, 2*time.Minute)
	b2.env.ExecuteWorkflow(ComfyBatchWorkflow, next)

	res := b2.result()
	require.Equal(t, BatchSucceeded, res.Status)
	require.Equal(t, 6, res.Succeeded)
	require.InDelta(t, 30, res.GPUSeconds, 1e-9)
	require.Zero(t, b2.preflights[poolA], "a continued batch reuses the cached check")
	require.ElementsMatch(t, []string{batchID + "/3@" + poolA, batchID + "/4@" + poolA, batchID + "/5@" + poolA}, b2.runs.startedIDs())
	lines := readResults(t, res.ResultsPath)
	require.Len(t, lines, 6)
	require.Equal(t, []string{"run-2"}, lines[2].RunIDs)
	require.Equal(t, "item 2", lines[2].Inputs["prompt"])
}

func TestBatchPauseResumeCancelAndConcurrencyUpdate(t *testing.T) {
	b := newBatchEnv(t, nil, nil)
	b.runs.decide = func(ComfyRunInput, int) outcome { return outcome{took: 10 * time.Minute} }
	var paused BatchProgress
	var rejected error
	b.env.RegisterDelayedCallback(func() { b.env.SignalWorkflow(PauseSignal, nil) }, 5*time.Minute)
	b.env.RegisterDelayedCallback(func() { paused = b.progress() }, 30*time.Minute)
	b.env.RegisterDelayedCallback(func() { b.env.SignalWorkflow(ResumeSignal, nil) }, 40*time.Minute)
	b.env.RegisterDelayedCallback(func() {
		b.env.UpdateWorkflow(SetConcurrencyUpdate, "bad", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { rejected = err }, OnComplete: func(any, error) {},
		}, 0)
		b.env.UpdateWorkflow(SetConcurrencyUpdate, "good", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("update rejected: %v", err) }, OnComplete: func(any, error) {},
		}, 3)
	}, 45*time.Minute)
	b.env.RegisterDelayedCallback(func() { b.env.SignalWorkflow(CancelSignal, nil) }, 52*time.Minute)

	b.env.ExecuteWorkflow(ComfyBatchWorkflow, ComfyBatchInput{Deployments: []string{poolA}, Items: prompts(10), MaxConcurrency: 2})

	require.True(t, paused.Paused)
	require.Equal(t, 0, paused.Running, "paused: running items finished, none started")
	require.Equal(t, 2, paused.Succeeded)
	require.Equal(t, BatchPhasePaused, paused.Phase)
	require.ErrorContains(t, rejected, "between 1 and 2000")

	res := b.result()
	require.Equal(t, BatchCancelled, res.Status)
	require.Equal(t, StoppedByCancel, res.StoppedBy)
	// 0,1 (t0-10), 2,3 (t40-50), then 4 (t45), 5,6 (t50) were running at the cancel.
	require.Equal(t, 4, res.Succeeded)
	require.Equal(t, 3, res.Cancelled)
	require.Equal(t, 3, res.NotStarted)
	require.Len(t, b.runs.startedIDs(), 7)
	require.Equal(t, 3, b.runs.maxRunning, "the update raised the window to 3, not more")
	lines := readResults(t, res.ResultsPath)
	require.Equal(t, activities.ItemCancelled, lines[5].Status)
}

func TestBatchFailurePolicies(t *testing.T) {
	cases := []struct {
		name      string
		policy    FailurePolicy
		fail      []int
		succeeded int
		failed    int
	}{
		{"after K failures", FailurePolicy{MaxFailures: 2}, []int{2, 3, 5}, 2, 2},
		{"failure ratio after the sample", FailurePolicy{MaxFailureRatio: 0.5, MinSample: 4}, []int{0, 1, 4}, 2, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBatchEnv(t, nil, nil)
			b.runs.decide = func(in ComfyRunInput, _ int) outcome {
				if slices.Contains(tc.fail, itemOf(in)) {
					return outcome{status: "failed", took: time.Minute}
				}
				return outcome{took: time.Minute}
			}

			b.env.ExecuteWorkflow(ComfyBatchWorkflow, ComfyBatchInput{Deployments: []string{poolA}, Items: prompts(10), MaxConcurrency: 1, FailurePolicy: tc.policy})

			res := b.result()
			require.Equal(t, BatchStopped, res.Status)
			require.Equal(t, StoppedByFailures, res.StoppedBy)
			require.Equal(t, tc.succeeded, res.Succeeded)
			require.Equal(t, tc.failed, res.Failed)
			require.Len(t, b.runs.startedIDs(), tc.succeeded+tc.failed, "no item starts after the policy stops the batch")
			require.Equal(t, 10-tc.succeeded-tc.failed, res.NotStarted)
			for _, n := range tc.fail[:tc.failed] {
				line := readResults(t, res.ResultsPath)[n]
				require.Equal(t, activities.ItemFailed, line.Status)
				require.Equal(t, ErrTypeRunFailed, line.ErrorType)
				require.Contains(t, line.Error, "ended failed", "every failed item keeps its reason")
			}
		})
	}
}

func TestBatchBudgetStopsNewItems(t *testing.T) {
	for name, budget := range map[string]Budget{
		"gpu seconds": {MaxGPUSeconds: 250},
		"cost":        {MaxCostUSD: 0.25, GPUPricePerHour: map[string]float64{"A10G": 3.6}},
	} {
		t.Run(name, func(t *testing.T) {
			b := newBatchEnv(t, nil, nil)
			b.runs.decide = func(ComfyRunInput, int) outcome { return outcome{took: time.Minute, gpuSecs: 100} }

			b.env.ExecuteWorkflow(ComfyBatchWorkflow, ComfyBatchInput{Deployments: []string{poolA}, Items: prompts(10), MaxConcurrency: 1, Budget: budget})

			res := b.result()
			require.Equal(t, BatchStopped, res.Status)
			require.Equal(t, StoppedByBudget, res.StoppedBy)
			require.Equal(t, 3, res.Succeeded, "100 s per item: the third passes the cap")
			require.Len(t, b.runs.startedIDs(), 3)
			require.InDelta(t, 300, res.GPUSeconds, 1e-9)
			if budget.MaxCostUSD > 0 {
				require.InDelta(t, 0.3, res.EstimatedCostUSD, 1e-9)
			}
		})
	}
}

// rerunTwice runs the same batch id twice, as a person re-running a batch
// would; the second run sees the first run's children.
func rerunTwice(ctx workflow.Context, in ComfyBatchInput) ([]ComfyBatchResult, error) {
	var results []ComfyBatchResult
	for range 2 {
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: batchID})
		var res ComfyBatchResult
		if err := workflow.ExecuteChildWorkflow(cctx, ComfyBatchWorkflow, in).Get(ctx, &res); err != nil {
			return nil, err
		}
		results = append(results, res)
	}
	return results, nil
}

func TestBatchRerunSkipsSucceededItems(t *testing.T) {
	b := newBatchEnv(t, nil, nil)
	b.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: "harness"})
	b.env.RegisterWorkflow(rerunTwice)
	failedOnce := false
	var mu sync.Mutex
	b.runs.decide = func(in ComfyRunInput, _ int) outcome {
		mu.Lock()
		defer mu.Unlock()
		if itemOf(in) == 1 && !failedOnce {
			failedOnce = true
			return outcome{status: "failed", took: time.Minute}
		}
		return outcome{took: time.Minute}
	}

	b.env.ExecuteWorkflow(rerunTwice, ComfyBatchInput{Deployments: []string{poolA}, Items: prompts(3)})

	require.NoError(t, b.env.GetWorkflowError())
	var results []ComfyBatchResult
	require.NoError(t, b.env.GetWorkflowResult(&results))
	require.Equal(t, BatchCompletedWithFailures, results[0].Status)
	require.Equal(t, 1, results[0].Failed)
	second := results[1]
	require.Equal(t, BatchSucceeded, second.Status)
	require.Equal(t, 2, second.Skipped)
	require.Equal(t, 1, second.Succeeded)
	require.Equal(t, []string{
		batchID + "/0@" + poolA, batchID + "/1@" + poolA, batchID + "/2@" + poolA, // first run
		batchID + "/1@" + poolA, // second run: only the failed item
	}, sortedFirstRun(b.runs.startedIDs()))
	lines := readResults(t, second.ResultsPath)
	require.Len(t, lines, 3)
	for _, n := range []int{0, 2} {
		require.Equal(t, activities.ItemSucceeded, lines[n].Status, "the earlier success is kept in the new manifest")
		require.True(t, lines[n].PreviousRun)
		require.Equal(t, []string{fmt.Sprintf("run-%s/%d-1", batchID, n)}, lines[n].RunIDs)
	}
	require.Equal(t, activities.ItemSucceeded, lines[1].Status)
	require.False(t, lines[1].PreviousRun)
}

// sortedFirstRun sorts the first three starts, which run concurrently.
func sortedFirstRun(ids []string) []string {
	if len(ids) >= 3 {
		slices.Sort(ids[:3])
	}
	return ids
}

func TestBatchBadItemsFailAloneWithoutARun(t *testing.T) {
	b := newBatchEnv(t, nil, nil)
	items := []map[string]any{
		{"prompt": "item 0"},
		{"prompt": 5.0},
		{"prompt": "item 2", "size": "999x999"},
		{"prompt": "item 3", "colour": "red"},
		{"prompt": map[string]any{"nested": true}},
		{"seed": 3.0},
	}

	b.env.ExecuteWorkflow(ComfyBatchWorkflow, ComfyBatchInput{Deployments: []string{poolA}, Items: items, Defaults: BatchDefaults{Inputs: map[string]any{"size": "768x768"}}})

	res := b.result()
	require.Equal(t, BatchCompletedWithFailures, res.Status)
	require.Equal(t, 1, res.Succeeded)
	require.Equal(t, 5, res.Failed)
	require.Equal(t, []string{batchID + "/0@" + poolA}, b.runs.startedIDs(), "bad items cost no run")
	lines := readResults(t, res.ResultsPath)
	require.Equal(t, "768x768", lines[0].Inputs["size"], "defaults merge into the item's inputs")
	for n, want := range map[int]string{1: `"prompt" must be a string`, 2: `"size" is not one of`, 3: `"colour"`, 4: "is an object", 5: `"prompt" is required`} {
		require.Equal(t, activities.ItemFailed, lines[n].Status)
		require.Equal(t, preflight.KindInvalidInput, lines[n].ErrorType)
		require.Contains(t, lines[n].Error, want)
	}
}

func TestBatchPoolBalancesByConcurrencyLimit(t *testing.T) {
	b := newBatchEnv(t, nil, map[string]int{poolA: 2, poolB: 4}, poolC)
	b.runs.decide = func(ComfyRunInput, int) outcome { return outcome{took: time.Hour} }

	b.env.ExecuteWorkflow(ComfyBatchWorkflow, ComfyBatchInput{Deployments: []string{poolA, poolB, poolC}, Items: prompts(6), MaxConcurrency: 6})

	res := b.result()
	require.Equal(t, 6, res.Succeeded)
	served := map[string]int{}
	for _, s := range res.PerDeployment {
		served[s.DeploymentID] = s.Served
	}
	require.Equal(t, map[string]int{poolA: 2, poolB: 4, poolC: 0}, served, "load follows each deployment's concurrency limit")
	require.Contains(t, res.PerDeployment[2].Error, "building", "a deployment whose machine is not ready takes no items")
	lines := readResults(t, res.ResultsPath)
	for _, s := range b.runs.startedIDs() {
		id, dep, _ := strings.Cut(s, "@")
		var n int
		_, _ = fmt.Sscanf(id, batchID+"/%d", &n)
		require.Equal(t, dep, lines[n].DeploymentID, "the result records the deployment that served the item")
	}
}

func TestBatchQueueDeadlineMovesItemToAnotherDeployment(t *testing.T) {
	b := newBatchEnv(t, nil, nil)
	b.runs.decide = func(in ComfyRunInput, _ int) outcome {
		if in.DeploymentID == poolA {
			return outcome{status: "failed", deadline: activities.DeadlineQueue, took: 15 * time.Minute}
		}
		return outcome{took: time.Minute, gpuSecs: 7}
	}

	b.env.ExecuteWorkflow(ComfyBatchWorkflow, ComfyBatchInput{Deployments: []string{poolA, poolB}, Items: prompts(1), MaxConcurrency: 1})

	res := b.result()
	require.Equal(t, BatchSucceeded, res.Status)
	require.Equal(t, 1, res.Succeeded)
	require.Equal(t, 1, res.Moved)
	require.Equal(t, []string{batchID + "/0@" + poolA, batchID + "/0@" + poolB}, b.runs.startedIDs())
	line := readResults(t, res.ResultsPath)[0]
	require.Equal(t, poolB, line.DeploymentID)
	require.Equal(t, []string{poolA, poolB}, line.Deployments)
	require.Equal(t, []string{"run-batch-1/0-1", "run-batch-1/0-2"}, line.RunIDs)
}

func TestBatchFailsWhenNoDeploymentIsReady(t *testing.T) {
	b := newBatchEnv(t, nil, nil, poolA, poolB)

	b.env.ExecuteWorkflow(ComfyBatchWorkflow, ComfyBatchInput{Deployments: []string{poolA, poolB}, Items: prompts(3)})

	var appErr *temporal.ApplicationError
	require.ErrorAs(t, b.env.GetWorkflowError(), &appErr)
	require.Equal(t, preflight.KindMachineNotReady, appErr.Type())
	require.Empty(t, b.runs.startedIDs())
}

func TestBatchInvalidInputFailsBeforeAnyActivity(t *testing.T) {
	b := newBatchEnv(t, nil, nil)

	b.env.ExecuteWorkflow(ComfyBatchWorkflow, ComfyBatchInput{
		Deployments: []string{"txt2img"}, Items: prompts(1), Source: &activities.BatchSource{Path: "items.txt"}, MaxConcurrency: 5000,
		Budget: Budget{GPUPricePerHour: map[string]float64{"RTX9090": 1}},
	})

	var appErr *temporal.ApplicationError
	require.ErrorAs(t, b.env.GetWorkflowError(), &appErr)
	require.Equal(t, ErrTypeInvalidWorkflowInput, appErr.Type())
	for _, want := range []string{`deployment "txt2img" is not a UUID`, "items or a source, not both", "max_concurrency", `"RTX9090"`, "items.txt"} {
		require.Contains(t, appErr.Error(), want)
	}
	require.Empty(t, b.preflights)
}

func TestBatchReadsItemsFromACSVSource(t *testing.T) {
	b := newBatchEnv(t, nil, nil)
	src := filepath.Join(t.TempDir(), "items.csv")
	require.NoError(t, os.WriteFile(src, []byte("prompt,seed,size\nitem 0,1,512x512\nitem 1,2\n\nitem 2,3,768x768\n"), 0o644))
	b.runs.decide = func(ComfyRunInput, int) outcome { return outcome{took: time.Minute} }

	b.env.ExecuteWorkflow(ComfyBatchWorkflow, ComfyBatchInput{Deployments: []string{poolA}, Source: &activities.BatchSource{Path: src}, PageSize: 2})

	// PageSize 2: the batch continues as new after two items; the state
	// says where the source is to be read on.
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, b.env.GetWorkflowError(), &can)
	var next ComfyBatchInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, 3, next.State.Total)
	require.Equal(t, 2, next.State.Cursor.Index)
	require.Equal(t, 1, next.State.Failed, "the short row fails alone")
	require.Equal(t, []string{"prompt", "seed", "size"}, next.State.Cursor.Header)

	b2 := newBatchEnv(t, b.store, nil)
	b2.runs.decide = func(ComfyRunInput, int) outcome { return outcome{took: time.Minute} }
	for _, f := range next.State.InFlight { // item 0, started by the first run
		b2.env.RegisterDelayedCallback(func() {
			b2.env.SignalWorkflow(ItemDoneSignal, ItemReport{Key: itemKey(f.Index, f.Dispatch), Status: activities.ItemSucceeded, DeploymentID: poolA})
		}, time.Minute)
	}
	b2.env.ExecuteWorkflow(ComfyBatchWorkflow, next)
	res := b2.result()
	require.Equal(t, 2, res.Succeeded)
	require.Equal(t, 1, res.Failed)
	require.Equal(t, []string{batchID + "/2@" + poolA}, b2.runs.startedIDs())
	lines := readResults(t, res.ResultsPath)
	require.Contains(t, lines[1].Error, "line 3 has 2 fields")
	require.Equal(t, map[string]any{"prompt": "item 2", "seed": 3.0, "size": "768x768"}, lines[2].Inputs, "CSV cells are typed")
}

func TestBatchCostCapNeedsAPriceForEveryGPU(t *testing.T) {
	b := newBatchEnv(t, nil, nil)

	b.env.ExecuteWorkflow(ComfyBatchWorkflow, ComfyBatchInput{Deployments: []string{poolA}, Items: prompts(2),
		Budget: Budget{MaxCostUSD: 1, GPUPricePerHour: map[string]float64{"L40S": 2}}})

	var appErr *temporal.ApplicationError
	require.ErrorAs(t, b.env.GetWorkflowError(), &appErr)
	require.Equal(t, ErrTypeInvalidWorkflowInput, appErr.Type())
	require.Contains(t, appErr.Error(), `gpu_price_per_hour["A10G"]`)
	require.Empty(t, b.runs.startedIDs())
}

// TestBatchExampleIsValid keeps examples/batch-catalog.json and its CSV in
// step with the input shape and the simulator's txt2img inputs.
func TestBatchExampleIsValid(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "examples", "batch-catalog.json"))
	require.NoError(t, err)
	var in ComfyBatchInput
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&in))
	require.Empty(t, in.Problems())
	require.Len(t, in.Deployments, 2)
	require.Equal(t, 5, in.MaxConcurrency)

	b := newBatchEnv(t, nil, nil)
	b.runs.decide = func(ComfyRunInput, int) outcome { return outcome{took: time.Minute, gpuSecs: 10} }
	in.Source.Path, err = filepath.Abs(filepath.Join("..", in.Source.Path))
	require.NoError(t, err)
	in.Budget = Budget{MaxGPUSeconds: in.Budget.MaxGPUSeconds}
	b.env.ExecuteWorkflow(ComfyBatchWorkflow, in)

	res := b.result()
	require.Equal(t, BatchSucceeded, res.Status)
	require.Equal(t, 20, res.Succeeded, "every row of the example is valid for txt2img")
	require.Equal(t, 20, res.Total)
}

func TestBatchChecksAFailingDeploymentAgainAndStopsUsingIt(t *testing.T) {
	b := newBatchEnv(t, nil, nil)
	// Pool A's machine breaks after the batch started: its items fail, and
	// its re-check says the machine is in error.
	b.breaksAfter = map[string]int{poolA: 1}
	b.runs.decide = func(in ComfyRunInput, _ int) outcome {
		if in.DeploymentID == poolA {
			return outcome{status: "failed", took: 2 * time.Minute}
		}
		return outcome{took: 2 * time.Minute}
	}

	b.env.ExecuteWorkflow(ComfyBatchWorkflow, ComfyBatchInput{Deployments: []string{poolA, poolB}, Items: prompts(12), MaxConcurrency: 2})

	res := b.result()
	require.Equal(t, 12, res.Succeeded+res.Failed)
	served := map[string]int{}
	for _, s := range b.runs.startedIDs() {
		_, dep, _ := strings.Cut(s, "@")
		served[dep]++
	}
	// The re-check runs beside the window, so at most one more item may go
	// to the deployment before the check returns.
	require.LessOrEqual(t, served[poolA], 2, "after its first failure and re-check, the broken deployment takes no more items")
	require.Equal(t, 12, served[poolA]+served[poolB])
	require.Equal(t, 2, b.preflights[poolA], "one check at the start, one after the failure")
	require.Contains(t, res.PerDeployment[0].Error, "error")
}

func TestBatchRecordsAnItemWhoseRunClosedWithoutReporting(t *testing.T) {
	b := newBatchEnv(t, nil, nil)
	// A previous run of the batch started item 0 and continued as new; the
	// item's workflow was then terminated, so no report will ever come.
	b.env.OnActivity(a.ClosedHolders, mock.Anything, []string{batchID + "/0"}).Return([]string{batchID + "/0"}, nil).Once()
	pre := &activities.PreflightResult{DeploymentID: poolA, ComfyWorkflowID: "wf-1", GPU: "A10G", CanCancel: true, InputTypes: txt2imgTypes()}

	b.env.ExecuteWorkflow(ComfyBatchWorkflow, ComfyBatchInput{
		Deployments: []string{poolA}, Items: prompts(1), MaxConcurrency: 1,
		State: &BatchState{
			Taken: 1, EOF: true, Total: 1, Runs: 1, MaxConcurrency: 1,
			InFlight: []Flight{{Index: 0, Dispatch: 1, Deployment: poolA}},
			Pool:     []PoolMember{{DeploymentID: poolA, Preflight: pre, Served: 1}},
		},
	})

	res := b.result()
	require.Equal(t, 1, res.Failed, "the batch ends instead of waiting forever")
	line := readResults(t, res.ResultsPath)[0]
	require.Contains(t, line.Error, "closed without reporting")
	require.Empty(t, b.runs.startedIDs(), "the item is not submitted again")
}

func TestBatchHoldsItemsWhileNoDeploymentIsReadyAndResumes(t *testing.T) {
	b := newBatchEnv(t, nil, nil)
	// The only deployment's machine fails once and recovers: its second check
	// fails, its third (a minute later) passes.
	b.breaksAfter, b.recoversAt = map[string]int{poolA: 1}, map[string]int{poolA: 3}
	failed := false
	b.runs.decide = func(ComfyRunInput, int) outcome {
		if !failed {
			failed = true
			return outcome{status: "failed", took: 2 * time.Minute}
		}
		return outcome{took: 2 * time.Minute}
	}

	b.env.ExecuteWorkflow(ComfyBatchWorkflow, ComfyBatchInput{Deployments: []string{poolA}, Items: prompts(4), MaxConcurrency: 1})

	res := b.result()
	require.Equal(t, 1, res.Failed, "only the item that really failed")
	require.Equal(t, 3, res.Succeeded, "the others waited for the deployment to recover")
	require.Equal(t, 3, b.preflights[poolA])
	for _, line := range readResults(t, res.ResultsPath) {
		require.NotContains(t, line.Error, "no deployment of the pool is ready")
	}
}

func TestBatchSourceColumnsOutsideThePoolStopTheBatchUnread(t *testing.T) {
	b := newBatchEnv(t, nil, nil)
	const secret = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
	src := filepath.Join(t.TempDir(), "items.csv")
	require.NoError(t, os.WriteFile(src, []byte("prompt,"+secret+"\nitem 0,x\n"), 0o644))

	b.env.ExecuteWorkflow(ComfyBatchWorkflow, ComfyBatchInput{Deployments: []string{poolA}, Source: &activities.BatchSource{Path: src}})

	res := b.result()
	require.Equal(t, StoppedBySource, res.StoppedBy)
	require.Contains(t, res.Error, `column 2: input "ghp_16C7e42F"… is not declared`)
	require.NotContains(t, res.Error, secret)
	require.Empty(t, b.runs.startedIDs(), "no item started")
}

func TestDeclaredInputsIsTheUnionOfCheckedDeployments(t *testing.T) {
	pre := func(ids ...string) *activities.PreflightResult {
		p := &activities.PreflightResult{}
		for _, id := range ids {
			p.InputTypes = append(p.InputTypes, comfy.InputType{InputID: id})
		}
		return p
	}
	names, checked := declaredInputs([]PoolMember{{Preflight: pre("seed", "prompt")}, {Preflight: nil}, {Preflight: pre("prompt", "lora")}})
	require.True(t, checked)
	require.Equal(t, []string{"lora", "prompt", "seed"}, names)
	_, checked = declaredInputs([]PoolMember{{}})
	require.False(t, checked, "no checked deployment: nothing to keep to")
}
