// Package e2e runs durable-comfy end to end: the real Temporal dev server
// (the pinned CLI in bin/), the ComfyDeploy simulator and a worker in this
// process. `make test` builds the CLI and sets TEMPORAL_CLI_PATH; the S3
// store tests run versitygw (bin/versitygw, VERSITYGW_PATH) the same way.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/devserver"
	"github.com/durable-comfy/durable-comfy/egress"
	"github.com/durable-comfy/durable-comfy/outputstore"
	"github.com/durable-comfy/durable-comfy/wakeup"
	"github.com/durable-comfy/durable-comfy/workflows"
)

// Shared by the tests of this package; TestMain sets them up once.
var (
	devServer *testsuite.DevServer
	cliPath   string
	httpPort  int
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped by -short (needs the Temporal dev server)")
		return 0
	}
	cliPath = os.Getenv("TEMPORAL_CLI_PATH")
	if cliPath == "" {
		cliPath, _ = filepath.Abs("../bin/temporal")
	}
	if _, err := os.Stat(cliPath); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: Temporal CLI not found at %s: run `make test` (it builds bin/temporal) or set TEMPORAL_CLI_PATH\n", cliPath)
		return 1
	}
	httpPort = freePort()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var err error
	opts := devserver.TestOptions(cliPath,
		"--http-port", fmt.Sprint(httpPort),
		"--dynamic-config-value", "system.forceSearchAttributesCacheRefreshOnRead=true")
	opts.ClientOptions = &client.Options{
		HostPort: fmt.Sprintf("127.0.0.1:%d", freePort()),
		Logger:   quietLogger{},
	}
	devServer, err = testsuite.StartDevServer(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start dev server:", err)
		return 1
	}
	defer devServer.Stop()
	return m.Run()
}

// env is one test's world: its own simulator, task queue and worker.
type env struct {
	t         *testing.T
	sim       *comfytest.Server
	client    client.Client
	taskQueue string
	outDir    string
	// sourceDir is the worker's one source directory (COMFY_SOURCE_DIRS).
	sourceDir string
	// storeURL, when set, is the worker's COMFY_OUTPUT_URL (withStoreURL);
	// otherwise the store is the directory outDir.
	storeURL string
	store    *outputstore.Bucket
	worker   worker.Worker
	// hub, when set, receives the simulator's webhooks (withWebhooks).
	hub *wakeup.Hub
}

type envOption func(*env)

// withStoreURL gives the worker the output store at rawURL.
func withStoreURL(rawURL string) envOption {
	return func(e *env) { e.storeURL = rawURL }
}

// withWebhooks gives the worker a webhook endpoint that the simulator calls.
func withWebhooks() envOption {
	return func(e *env) {
		srv := httptest.NewUnstartedServer(nil)
		e.t.Cleanup(srv.Close)
		hub, err := wakeup.New("http://"+srv.Listener.Addr().String()+"/comfy/webhook", "e2e-webhook-secret-0123456789", nil)
		if err != nil {
			e.t.Fatal(err)
		}
		srv.Config.Handler = hub
		srv.Start()
		e.hub = hub
	}
}

// withWebhooksOnAnotherWorker makes every webhook land on another replica:
// the worker signs URLs that point at a second endpoint, which shares its
// secret but runs no waits and can only end them through WaitFinisher.
func withWebhooksOnAnotherWorker() envOption {
	return func(e *env) {
		const secret = "e2e-webhook-secret-0123456789"
		other := httptest.NewUnstartedServer(nil)
		e.t.Cleanup(other.Close)
		url := "http://" + other.Listener.Addr().String() + "/comfy/webhook"
		otherHub, err := wakeup.New(url, secret, nil)
		if err != nil {
			e.t.Fatal(err)
		}
		cc, err := comfy.NewClient(comfy.WithBaseURL(e.sim.URL()), comfy.WithAPIKey(e.sim.APIKey()))
		if err != nil {
			e.t.Fatal(err)
		}
		otherHub.Elsewhere = activities.WaitFinisher{Activities: &activities.Activities{Comfy: cc, Temporal: e.client}}.Finish
		other.Config.Handler = otherHub
		other.Start()
		if e.hub, err = wakeup.New(url, secret, nil); err != nil {
			e.t.Fatal(err)
		}
	}
}

func newEnv(t *testing.T, opts comfytest.Options, options ...envOption) *env {
	t.Helper()
	if opts.Timing == (comfytest.Timing{}) {
		opts.Timing = comfytest.Timing{ColdStart: 200 * time.Millisecond, Run: 600 * time.Millisecond}
	}
	sim := comfytest.NewServer(opts)
	t.Cleanup(sim.Close)
	e := &env{
		t:         t,
		sim:       sim,
		client:    devServer.Client(),
		taskQueue: "e2e-" + t.Name(),
		outDir:    t.TempDir(),
		sourceDir: t.TempDir(),
	}
	for _, o := range options {
		o(e)
	}
	e.startWorker()
	return e
}

func (e *env) startWorker() {
	e.t.Helper()
	cc, err := comfy.NewClient(comfy.WithBaseURL(e.sim.URL()), comfy.WithAPIKey(e.sim.APIKey()),
		comfy.WithHTTPClient(&http.Client{Timeout: 5 * time.Second}))
	if err != nil {
		e.t.Fatal(err)
	}
	store, err := outputstore.OpenDir(e.outDir)
	if e.storeURL != "" {
		store, err = outputstore.Open(context.Background(), e.storeURL)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	if err := store.Check(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.store = store
	sourceDirs, err := activities.OpenSourceDirs([]string{e.sourceDir})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { sourceDirs.Close() })
	// As the worker does: outputs from public addresses and the API host.
	var outputHosts egress.Allowlist
	if err := outputHosts.AddURLHost(e.sim.URL()); err != nil {
		e.t.Fatal(err)
	}
	w := worker.New(e.client, e.taskQueue, worker.Options{DeadlockDetectionTimeout: deadlockDetectionTimeout})
	workflows.Register(w)
	acts := &activities.Activities{
		Comfy: cc, Store: store, Signaler: e.client, Temporal: e.client,
		Downloader:   egress.NewClient(egress.Policy{Allow: outputHosts}),
		SourceDirs:   sourceDirs,
		SourceClient: egress.NewClient(egress.Policy{}),
		PollInterval: 100 * time.Millisecond, CancelWait: 30 * time.Second,
	}
	if e.hub != nil {
		acts.Wakeups = e.hub
	}
	w.RegisterActivity(acts)
	if err := w.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.worker = w
	e.t.Cleanup(w.Stop)
}

func (e *env) start(id string, in workflows.ComfyRunInput) client.WorkflowRun {
	e.t.Helper()
	run, err := e.client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: id, TaskQueue: e.taskQueue, WorkflowExecutionTimeout: 5 * time.Minute,
	}, workflows.ComfyRunWorkflow, in)
	if err != nil {
		e.t.Fatal(err)
	}
	return run
}

// readObject reads the object a store URL names, through the worker's store.
func (e *env) readObject(u string) []byte {
	e.t.Helper()
	key, ok := e.store.KeyForURL(u)
	if !ok {
		e.t.Fatalf("%s is not in the output store %s", u, e.store.URL())
	}
	r, err := e.store.Open(context.Background(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Close()
	body, err := io.ReadAll(r)
	if err != nil {
		e.t.Fatal(err)
	}
	return body
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// deadlockDetectionTimeout replaces the SDK's 1 s for the e2e workers.
// Under -race on a loaded 2-core machine a batch's root coroutine can run
// past 1 s while it starts a window of children; the SDK then fails the
// workflow task (TMPRL1101) but leaves the coroutine running, and that
// coroutine's workflow.Go races with the dispatcher on its coroutine list
// (temporalio/sdk-go#1240): "race detected" in the SDK, with our
// workflow.Go on the write side. A real deadlock still fails the task,
// later. The worker binary keeps the SDK default.
const deadlockDetectionTimeout = 10 * time.Second

// quietLogger keeps the SDK's routine logs out of test output;
// DC_E2E_LOG=1 prints its warnings and errors when debugging a test.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(msg string, kv ...any) {
	if os.Getenv("DC_E2E_LOG") != "" {
		fmt.Println("WARN", msg, kv)
	}
}
func (quietLogger) Error(msg string, kv ...any) {
	if os.Getenv("DC_E2E_LOG") != "" {
		fmt.Println("ERROR", msg, kv)
	}
}
