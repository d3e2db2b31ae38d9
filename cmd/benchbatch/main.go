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
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/outputstore"
	"github.com/durable-comfy/durable-comfy/workflows"
)

type config struct {
	items        int
	concurrency  int
	runTime      time.Duration
	pollInterval time.Duration
	temporalCLI  string
	skipBaseline bool
	trace        bool
	serverArgs   []string
}

func main() {
	var cfg config
	flag.IntVar(&cfg.items, "n", 2000, "items in the batch")
	flag.IntVar(&cfg.concurrency, "c", 50, "runs in flight")
	flag.DurationVar(&cfg.runTime, "t", 3*time.Second, "simulated run time of every item")
	flag.DurationVar(&cfg.pollInterval, "poll", 250*time.Millisecond, "poll interval of both the workflow and the baseline")
	flag.StringVar(&cfg.temporalCLI, "temporal", "bin/temporal", "Temporal CLI binary (make temporal)")
	flag.BoolVar(&cfg.skipBaseline, "skip-baseline", false, "measure only the ComfyBatch")
	flag.BoolVar(&cfg.trace, "trace", false, "print the event timeline of one item's ComfyRun, to see where time goes")
	eager := flag.Bool("eager-activities", true, "enable eager activity execution on the dev server (system.enableActivityEagerExecution)")
	flag.Parse()
	if *eager {
		cfg.serverArgs = append(cfg.serverArgs, "--dynamic-config-value", "system.enableActivityEagerExecution=true")
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
	if !cfg.skipBaseline {
		p, err := measure("goroutine pool", func(func()) (int, int, error) { return baseline(ctx, cfg, cc, filepath.Join(work, "pool")) })
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		phases = append(phases, p)
	}
	p, err := measure("ComfyBatch on Temporal", func(restart func()) (int, int, error) { return temporalBatch(ctx, cfg, cc, work, restart) })
	if err != nil {
		return fmt.Errorf("ComfyBatch: %w", err)
	}
	phases = append(phases, p)
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
	store, err := outputstore.NewDir(dir)
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

func baselineItem(ctx context.Context, cfg config, cc *comfy.Client, store *outputstore.Dir, i int) error {
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

func temporalBatch(ctx context.Context, cfg config, cc *comfy.Client, work string, restart func()) (int, int, error) {
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath: cfg.temporalCLI,
		LogLevel:     "error",
		ClientOptions: &client.Options{
			Logger: log.NewStructuredLogger(slog.New(slog.DiscardHandler)),
		},
		SearchAttributes: workflows.DevServerSearchAttributes(),
		ExtraArgs:        cfg.serverArgs,
	})
	if err != nil {
		return 0, 0, fmt.Errorf("start dev server (build it with `make temporal`): %w", err)
	}
	defer srv.Stop()
	tc := srv.Client()

	store, err := outputstore.NewDir(filepath.Join(work, "temporal"))
	if err != nil {
		return 0, 0, err
	}
	const queue = "bench"
	w := worker.New(tc, queue, worker.Options{
		MaxConcurrentActivityExecutionSize:     4 * cfg.concurrency,
		MaxConcurrentWorkflowTaskExecutionSize: 4 * cfg.concurrency,
		MaxConcurrentWorkflowTaskPollers:       32,
		MaxConcurrentActivityTaskPollers:       32,
	})
	workflows.Register(w)
	w.RegisterActivity(&activities.Activities{
		Comfy: cc, Store: store, Downloader: http.DefaultClient, Signaler: tc, Temporal: tc,
		PollInterval: cfg.pollInterval,
	})
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
	var res workflows.ComfyBatchResult
	if err := run.Get(ctx, &res); err != nil {
		return 0, 0, err
	}
	if cfg.trace {
		traceChild(ctx, tc, fmt.Sprintf("bench-batch/%d", cfg.items/2))
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
	fmt.Fprintf(w, "\n## ComfyBatch benchmark\n\nN=%d items, C=%d in flight, T=%s per run, poll every %s (±20%% jitter in the workflow), %d CPUs, dev server args %q. Ideal N×T/C = %s.\n\n",
		cfg.items, cfg.concurrency, cfg.runTime, cfg.pollInterval, runtime.NumCPU(), cfg.serverArgs, ideal.Round(time.Millisecond))
	fmt.Fprintln(w, "| runner | wall | × ideal | succeeded | failed | CPU (this process) | peak heap |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, p := range phases {
		fmt.Fprintf(w, "| %s | %s | %.3f | %d | %d | %s | %s |\n", p.name, p.wall.Round(time.Millisecond),
			float64(p.wall)/float64(ideal), p.succeeded, p.failed, p.cpu.Round(time.Millisecond), bytesIEC(p.peakHeap))
	}
	fmt.Fprintln(w, "\nCPU and heap are this process's (worker + simulator); the dev server is a separate process.")
	if len(phases) == 2 {
		fmt.Fprintf(w, "ComfyBatch / goroutine pool = %.3f\n", float64(phases[1].wall)/float64(phases[0].wall))
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
