// Command benchbatch measures a ComfyBatch against the ideal and against a
// plain goroutine pool that uses the same comfy client without Temporal,
// both in one process run, on the real Temporal dev server and the
// in-process simulator with a fixed run time. It prints a markdown report;
// `make bench-batch` runs it. It is a measurement, not a test: nothing here
// passes or fails on timing.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/devserver"
	"github.com/durable-comfy/durable-comfy/outputstore"
	"github.com/durable-comfy/durable-comfy/wakeup"
	"github.com/durable-comfy/durable-comfy/workflows"
)

type config struct {
	items        int
	concurrency  int
	runTime      time.Duration
	pollInterval time.Duration
	temporalCLI  string
	runners      []string
	trace        bool
	stockServer  bool
	serverArgs   []string
}

func main() {
	var cfg config
	flag.IntVar(&cfg.items, "n", 2000, "items in the batch")
	flag.IntVar(&cfg.concurrency, "c", 50, "runs in flight")
	flag.DurationVar(&cfg.runTime, "t", 3*time.Second, "simulated run time of every item")
	flag.DurationVar(&cfg.pollInterval, "poll", 250*time.Millisecond, "poll interval of both the workflow and the baseline")
	flag.StringVar(&cfg.temporalCLI, "temporal", "bin/temporal", "Temporal CLI binary (make temporal)")
	runners := flag.String("runners", "pool,polling,webhooks", "what to measure, comma-separated: pool (goroutine pool), polling (ComfyBatch), webhooks (ComfyBatch with webhook wake-ups)")
	flag.BoolVar(&cfg.trace, "trace", false, "print the event timeline of one item's ComfyRun, to see where time goes")
	flag.BoolVar(&cfg.stockServer, "stock-server", false, "run the dev server without our dynamic config (see package devserver)")
	flag.Func("server-arg", "extra `flag` for `temporal server start-dev` (repeatable)", func(v string) error {
		cfg.serverArgs = append(cfg.serverArgs, v)
		return nil
	})
	flag.Parse()
	cfg.runners = strings.Split(*runners, ",")
	for _, r := range cfg.runners {
		if !slices.Contains([]string{"pool", "polling", "webhooks"}, r) {
			fmt.Fprintf(os.Stderr, "benchbatch: unknown runner %q in -runners (pool, polling, webhooks)\n", r)
			os.Exit(2)
		}
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "benchbatch:", err)
		os.Exit(1)
	}
}

// phase is what one measured run used.
type phase struct {
	name      string
	wall      time.Duration
	cpu       time.Duration
	peakHeap  uint64
	succeeded int
	failed    int
}

func run(cfg config) error {
	ctx := context.Background()
	sim := comfytest.NewServer(comfytest.Options{
		Seed:   1,
		Timing: comfytest.Timing{ColdStart: time.Millisecond, Run: cfg.runTime},
		Deployments: map[string]comfytest.DeploymentSettings{
			comfytest.DeploymentTxt2Img: {ConcurrencyLimit: 4 * cfg.concurrency},
		},
	})
	defer sim.Close()
	cc, err := comfy.NewClient(comfy.WithBaseURL(sim.URL()), comfy.WithAPIKey(sim.APIKey()))
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "benchbatch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	var phases []phase
	for _, r := range cfg.runners {
		var p phase
		var err error
		switch r {
		case "pool":
			p, err = measure("goroutine pool", func(func()) (int, int, error) { return baseline(ctx, cfg, cc, filepath.Join(work, r)) })
		case "polling":
			p, err = measure("ComfyBatch on Temporal", func(restart func()) (int, int, error) {
				return temporalBatch(ctx, cfg, cc, filepath.Join(work, r), restart, false)
			})
		case "webhooks":
			p, err = measure("ComfyBatch on Temporal, webhook wake-ups", func(restart func()) (int, int, error) {
				return temporalBatch(ctx, cfg, cc, filepath.Join(work, r), restart, true)
			})
		}
		if err != nil {
			return fmt.Errorf("%s: %w", r, err)
		}
		phases = append(phases, p)
	}
	report(os.Stdout, cfg, phases)
	return nil
}

// measure runs f and records its wall time, process CPU time and peak heap
// from the moment f calls restart (set-up before it is not measured).
func measure(name string, f func(restart func()) (int, int, error)) (phase, error) {
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	runtime.GC()
	cpu0, start := cpuTime(), time.Now()
	restart := func() {
		peak.Store(0)
		cpu0, start = cpuTime(), time.Now()
	}
	ok, failed, err := f(restart)
	wall, cpu := time.Since(start), cpuTime()-cpu0
	close(stop)
	wg.Wait()
	return phase{name: name, wall: wall, cpu: cpu, peakHeap: peak.Load(), succeeded: ok, failed: failed}, err
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func itemInputs(i int) map[string]any {
	return map[string]any{"prompt": "catalog item " + strconv.Itoa(i), "seed": i}
}

// baseline is what a careful script without Temporal does: a pool of
// workers that submit, poll and download each item with the same client.
func baseline(ctx context.Context, cfg config, cc *comfy.Client, dir string) (int, int, error) {
	store, err := outputstore.OpenDir(dir)
	if err != nil {
		return 0, 0, err
	}
	items := make(chan int)
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for range cfg.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range items {
				if err := baselineItem(ctx, cfg, cc, store, i); err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	for i := range cfg.items {
		items <- i
	}
	close(items)
	wg.Wait()
	return int(ok.Load()), int(failed.Load()), nil
}

func baselineItem(ctx context.Context, cfg config, cc *comfy.Client, store *outputstore.Bucket, i int) error {
	q, err := cc.Runs.QueueDeployment(ctx, &comfy.DeploymentRunRequest{DeploymentID: comfytest.DeploymentTxt2Img, Inputs: itemInputs(i)})
	if err != nil {
		return err
	}
	for {
		time.Sleep(cfg.pollInterval)
		run, err := cc.Runs.Get(ctx, q.RunID, nil)
		if err != nil {
			continue
		}
		if !run.Status.IsTerminal() {
			continue
		}
		if run.Status != comfy.StatusSuccess {
			return fmt.Errorf("run %s ended %s", run.ID, run.Status)
		}
		for j, m := range run.MediaItems() {
			resp, err := http.Get(m.Item.URL)
			if err != nil {
				return err
			}
			_, err = store.Put(ctx, fmt.Sprintf("%d/%d.png", i, j), resp.Body) // Put computes sha256
			resp.Body.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// temporalBatch runs the batch on a fresh dev server with an in-process
// worker; with webhooks the worker receives the simulator's webhooks.
func temporalBatch(ctx context.Context, cfg config, cc *comfy.Client, work string, restart func(), webhooks bool) (int, int, error) {
	opts := devserver.TestOptions(cfg.temporalCLI)
	if cfg.stockServer {
		opts.ExtraArgs = nil
	}
	opts.ExtraArgs = append(opts.ExtraArgs, cfg.serverArgs...)
	opts.ClientOptions = &client.Options{Logger: log.NewStructuredLogger(slog.New(slog.DiscardHandler))}
	srv, err := testsuite.StartDevServer(ctx, opts)
	if err != nil {
		return 0, 0, fmt.Errorf("start dev server (build it with `make temporal`): %w", err)
	}
	defer srv.Stop()
	tc := srv.Client()

	store, err := outputstore.OpenDir(filepath.Join(work, "out"))
	if err != nil {
		return 0, 0, err
	}
	sourceDirs, err := activities.OpenSourceDirs([]string{work})
	if err != nil {
		return 0, 0, err
	}
	defer sourceDirs.Close()
	acts := &activities.Activities{
		Comfy: cc, Store: store, Downloader: http.DefaultClient, Signaler: tc, Temporal: tc,
		SourceDirs: sourceDirs, PollInterval: cfg.pollInterval,
	}
	if webhooks {
		hooks := httptest.NewUnstartedServer(nil)
		defer hooks.Close()
		hub, err := wakeup.New("http://"+hooks.Listener.Addr().String()+"/comfy/webhook", "benchbatch-webhook-secret", nil)
		if err != nil {
			return 0, 0, err
		}
		hooks.Config.Handler = hub
		hooks.Start()
		acts.Wakeups = hub
	}
	const queue = "bench"
	w := worker.New(tc, queue, worker.Options{
		MaxConcurrentActivityExecutionSize:     4 * cfg.concurrency,
		MaxConcurrentWorkflowTaskExecutionSize: 4 * cfg.concurrency,
		MaxConcurrentWorkflowTaskPollers:       32,
		MaxConcurrentActivityTaskPollers:       32,
	})
	workflows.Register(w)
	w.RegisterActivity(acts)
	if err := w.Start(); err != nil {
		return 0, 0, err
	}
	defer w.Stop()

	source := filepath.Join(work, "items.jsonl")
	if err := writeItems(source, cfg.items); err != nil {
		return 0, 0, err
	}
	restart() // the dev server's and worker's start-up are not part of the batch
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "bench-batch", TaskQueue: queue}, workflows.ComfyBatchWorkflow,
		workflows.ComfyBatchInput{
			Deployments:    []string{comfytest.DeploymentTxt2Img},
			Source:         &activities.BatchSource{Path: source},
			MaxConcurrency: cfg.concurrency,
			Defaults:       workflows.BatchDefaults{PollInterval: workflows.Duration(cfg.pollInterval)},
		})
	if err != nil {
		return 0, 0, err
	}
	firstRunID := run.GetRunID() // Get follows continue-as-new and moves it
	var res workflows.ComfyBatchResult
	if err := run.Get(ctx, &res); err != nil {
		return 0, 0, err
	}
	if cfg.trace {
		traceChild(ctx, tc, fmt.Sprintf("bench-batch/%d", cfg.items/2))
		initiated, learned := traceBatch(ctx, tc, "bench-batch", firstRunID)
		traceItems(ctx, tc, "bench-batch", cfg.items, cfg.runTime, initiated, learned)
	}
	return res.Succeeded, res.Failed, nil
}

func writeItems(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	for i := range n {
		if err := enc.Encode(itemInputs(i)); err != nil {
			f.Close()
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func report(w io.Writer, cfg config, phases []phase) {
	ideal := time.Duration(float64(cfg.runTime) * float64(cfg.items) / float64(cfg.concurrency))
	server := "dynamic config of package devserver"
	if cfg.stockServer {
		server = "stock dynamic config"
	}
	fmt.Fprintf(w, "\n## ComfyBatch benchmark\n\nN=%d items, C=%d in flight, T=%s per run, poll every %s (±20%% jitter in the workflow), %d CPUs, dev server with %s. Ideal N×T/C = %s.\n\n",
		cfg.items, cfg.concurrency, cfg.runTime, cfg.pollInterval, runtime.NumCPU(), server, ideal.Round(time.Millisecond))
	fmt.Fprintln(w, "| runner | wall | × ideal | succeeded | failed | CPU (this process) | peak heap |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, p := range phases {
		fmt.Fprintf(w, "| %s | %s | %.3f | %d | %d | %s | %s |\n", p.name, p.wall.Round(time.Millisecond),
			float64(p.wall)/float64(ideal), p.succeeded, p.failed, p.cpu.Round(time.Millisecond), bytesIEC(p.peakHeap))
	}
	fmt.Fprintln(w, "\nCPU and heap are this process's (worker + simulator); the dev server is a separate process.")
	if len(phases) > 1 && phases[0].name == "goroutine pool" {
		for _, p := range phases[1:] {
			fmt.Fprintf(w, "%s / goroutine pool = %.3f\n", p.name, float64(p.wall)/float64(phases[0].wall))
		}
	}
}

func bytesIEC(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.1f", v), "0"), ".") + " " + units[i]
}

// traceChild prints when each history event of one item happened, relative
// to the item's start.
func traceChild(ctx context.Context, tc client.Client, workflowID string) {
	it := tc.GetWorkflowHistory(ctx, workflowID, "", false, 0)
	var start time.Time
	fmt.Printf("\nTimeline of %s:\n", workflowID)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			fmt.Println("  history:", err)
			return
		}
		at := ev.GetEventTime().AsTime()
		if start.IsZero() {
			start = at
		}
		fmt.Printf("  %6dms  %s\n", at.Sub(start).Milliseconds(), ev.GetEventType())
	}
}

// traceItems splits the lifetime of about 100 items' ComfyRuns into the
// steps of an item: start to submitted, the wait beyond the run time T,
// collecting outputs, and reporting to the batch.
func traceItems(ctx context.Context, tc client.Client, batchID string, n int, runTime time.Duration, initiated, learned map[string]time.Time) {
	var create, submit, wait, collect, report []time.Duration
	for i := 0; i < n; i += max(n/100, 1) {
		id := fmt.Sprintf("%s/%d", batchID, i)
		it := tc.GetWorkflowHistory(ctx, id, "", false, 0)
		var marks []time.Time // start, then each completed activity
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				fmt.Println("  history:", err)
				return
			}
			switch ev.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
				marks = append(marks, ev.GetEventTime().AsTime())
			}
		}
		end, ok := learned[id]
		if len(marks) != 4 || !ok { // start, submit, await, collect
			continue
		}
		if at, ok := initiated[id]; ok {
			create = append(create, marks[0].Sub(at))
		}
		submit = append(submit, marks[1].Sub(marks[0]))
		wait = append(wait, marks[2].Sub(marks[1])-runTime)
		collect = append(collect, marks[3].Sub(marks[2]))
		report = append(report, end.Sub(marks[3]))
	}
	fmt.Printf("\nItems (%d sampled), p50 / p90 / mean:\n", len(submit))
	for _, row := range []struct {
		name string
		d    []time.Duration
	}{{"batch → child start", create}, {"start → submitted", submit}, {"wait beyond T", wait}, {"collect outputs", collect}, {"batch learns of it", report}} {
		fmt.Printf("  %-18s %7s %7s %7s\n", row.name, percentile(row.d, .5), percentile(row.d, .9), mean(row.d))
	}
}

func mean(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return (sum / time.Duration(len(d))).Round(time.Millisecond)
}

// traceBatch summarises the batch's own workflow tasks over all its runs:
// how long they wait for a worker, how long the worker takes, how long a
// report signal waits until a task has applied it, and how many items were
// in flight on average.
// It returns when each child was last asked to start, and when the batch
// learned that it ended (its report, or its completion, whichever came first).
func traceBatch(ctx context.Context, tc client.Client, workflowID, runID string) (initiatedAt, learnedAt map[string]time.Time) {
	byChild, learned := map[string]time.Time{}, map[string]time.Time{}
	var scheduled, started time.Time
	var waits, works, applied []time.Duration
	var signals []time.Time
	events, tasks := 0, 0
	// inFlight integrates the children between their start and their report.
	var first, last time.Time
	inFlight, peak := 0, 0
	var area float64
	runs := 0
	// A freed slot is refilled by the next child start.
	var freed []time.Time
	var refills, starts []time.Duration
	failed := map[string]int{} // workflow task failures by cause
	ended := func(child string, at time.Time) {
		if _, ok := learned[child]; ok {
			return
		}
		learned[child] = at
		inFlight--
		freed = append(freed, at)
	}
	for ; runID != ""; runs++ {
		initiated := map[int64]time.Time{} // event ids count per run
		it := tc.GetWorkflowHistory(ctx, workflowID, runID, false, 0)
		runID = ""
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				fmt.Println("  history:", err)
				return byChild, learned
			}
			events++
			at := ev.GetEventTime().AsTime()
			if !last.IsZero() {
				area += float64(inFlight) * at.Sub(last).Seconds()
			}
			if first.IsZero() {
				first = at
			}
			last = at
			switch ev.GetEventType() {
			case enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
				inFlight++
				peak = max(peak, inFlight)
				initiated[ev.GetEventId()] = at
				byChild[ev.GetStartChildWorkflowExecutionInitiatedEventAttributes().GetWorkflowId()] = at
				if len(freed) > 0 {
					refills = append(refills, at.Sub(freed[0]))
					freed = freed[1:]
				}
			case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED, enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED,
				enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED, enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED,
				enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT:
				ended(childOf(ev), at)
			case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
				if t, ok := initiated[ev.GetChildWorkflowExecutionStartedEventAttributes().GetInitiatedEventId()]; ok {
					starts = append(starts, at.Sub(t))
				}
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
				scheduled = at
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
				started = at
				waits = append(waits, at.Sub(scheduled))
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
				tasks++
				works = append(works, at.Sub(started))
				for _, s := range signals {
					applied = append(applied, at.Sub(s))
				}
				signals = signals[:0]
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
				signals = append(signals, at)
				sig := ev.GetWorkflowExecutionSignaledEventAttributes()
				var rep workflows.ItemReport
				if sig.GetSignalName() == workflows.ItemDoneSignal && converter.GetDefaultDataConverter().FromPayloads(sig.GetInput(), &rep) == nil {
					ended(rep.WorkflowID, at)
				}
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
				runID = ev.GetWorkflowExecutionContinuedAsNewEventAttributes().GetNewExecutionRunId()
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED:
				failed[ev.GetWorkflowTaskFailedEventAttributes().GetCause().String()]++
			}
		}
	}
	fmt.Printf("\nBatch %s, %d runs: %d events, %d workflow tasks\n", workflowID, runs, events, tasks)
	if len(failed) > 0 {
		fmt.Printf("  workflow task failures     %v\n", failed)
	}
	fmt.Printf("  task scheduled → started   p50 %s  p90 %s\n", percentile(waits, .5), percentile(waits, .9))
	fmt.Printf("  task started → completed   p50 %s  p90 %s\n", percentile(works, .5), percentile(works, .9))
	fmt.Printf("  report signal → applied    p50 %s  p90 %s  (%d reports)\n", percentile(applied, .5), percentile(applied, .9), len(applied))
	fmt.Printf("  report → next child start  p50 %s  p90 %s\n", percentile(refills, .5), percentile(refills, .9))
	fmt.Printf("  child start → started      p50 %s  p90 %s\n", percentile(starts, .5), percentile(starts, .9))
	if d := last.Sub(first).Seconds(); d > 0 {
		fmt.Printf("  items in flight            mean %.1f  peak %d over %s\n", area/d, peak, last.Sub(first).Round(time.Millisecond))
	}
	return byChild, learned
}

// childOf names the child of a child-closed event.
func childOf(ev *historypb.HistoryEvent) string {
	for _, x := range []interface {
		GetWorkflowExecution() *commonpb.WorkflowExecution
	}{
		ev.GetChildWorkflowExecutionCompletedEventAttributes(), ev.GetChildWorkflowExecutionFailedEventAttributes(),
		ev.GetChildWorkflowExecutionCanceledEventAttributes(), ev.GetChildWorkflowExecutionTerminatedEventAttributes(),
		ev.GetChildWorkflowExecutionTimedOutEventAttributes(),
	} {
		if id := x.GetWorkflowExecution().GetWorkflowId(); id != "" {
			return id
		}
	}
	return ""
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[int(float64(len(d)-1)*p)].Round(time.Millisecond)
}
