// Command devstack runs the local development stack in one terminal: the
// Temporal dev server (with its Web UI), the ComfyDeploy simulator and the
// worker, each a real process with its output prefixed. With -demo it then
// drives an example run to completion through the starter. Ctrl-C stops
// everything. `make dev` and `make demo` call it.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/durable-comfy/durable-comfy/devserver"
)

type options struct {
	temporal, worker, simulator, starter string
	dataDir, outDir, sourceDir           string
	temporalPort, uiPort, httpPort       int
	simAddr, simKey                      string
	webhookAddr                          string
	demo, demoExit                       bool
	demoPrompt                           string
}

func main() {
	var o options
	flag.StringVar(&o.temporal, "temporal", "bin/temporal", "path of the Temporal CLI (built by `make temporal`)")
	flag.StringVar(&o.worker, "worker", "bin/worker", "path of the worker binary")
	flag.StringVar(&o.simulator, "simulator", "bin/comfysim", "path of the ComfyDeploy simulator binary")
	flag.StringVar(&o.starter, "starter", "bin/starter", "path of the starter binary (for -demo)")
	flag.StringVar(&o.dataDir, "data", ".data", "folder for the dev server's SQLite database (kept across restarts)")
	flag.StringVar(&o.outDir, "out", "out", "output store directory of the worker")
	flag.StringVar(&o.sourceDir, "sources", "examples", "directory the worker reads batch sources from (its COMFY_SOURCE_DIRS)")
	flag.IntVar(&o.temporalPort, "temporal-port", 7233, "Temporal frontend gRPC port")
	flag.IntVar(&o.uiPort, "ui-port", 8233, "Temporal Web UI port")
	flag.IntVar(&o.httpPort, "http-port", 7243, "Temporal HTTP API port")
	flag.StringVar(&o.simAddr, "sim-addr", "127.0.0.1:3011", "simulator listen address")
	flag.StringVar(&o.simKey, "sim-key", "sim-key", "API key the simulator accepts and the worker sends")
	flag.StringVar(&o.webhookAddr, "webhook-addr", "127.0.0.1:3012", "address of the worker's webhook endpoint, which the simulator calls back (empty: polling only)")
	flag.BoolVar(&o.demo, "demo", false, "after start-up, run an example ComfyRun with live progress")
	flag.StringVar(&o.demoPrompt, "demo-prompt", "a lighthouse on a cliff at dawn, oil painting", "prompt of the demo run")
	flag.Parse()
	o.demoExit = os.Getenv("DEMO_EXIT") == "1"

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func run(ctx context.Context, o options) (int, error) {
	for _, bin := range []string{o.temporal, o.worker, o.simulator} {
		if _, err := os.Stat(bin); err != nil {
			return 2, fmt.Errorf("%s is missing: run `make build temporal` (or `make dev`, which builds it)", bin)
		}
	}
	if err := os.MkdirAll(o.dataDir, 0o755); err != nil {
		return 1, err
	}
	temporalAddr := fmt.Sprintf("127.0.0.1:%d", o.temporalPort)
	addrs := []string{temporalAddr, fmt.Sprintf("127.0.0.1:%d", o.uiPort), o.simAddr}
	if o.webhookAddr != "" {
		addrs = append(addrs, o.webhookAddr)
	}
	for _, addr := range addrs {
		if portInUse(addr) {
			return 1, fmt.Errorf("%s is already in use: is another `make dev` running? Stop it or pass other ports", addr)
		}
	}

	s := &stack{}
	defer s.stopAll()

	args := []string{"server", "start-dev",
		"--ip", "127.0.0.1", "--port", fmt.Sprint(o.temporalPort), "--ui-port", fmt.Sprint(o.uiPort),
		"--http-port", fmt.Sprint(o.httpPort), "--db-filename", filepath.Join(o.dataDir, "temporal.db"),
		"--log-level", "warn"}
	args = append(args, devserver.Flags()...)
	if err := s.start("temporal", "\033[35m", o.temporal, args, nil); err != nil {
		return 1, err
	}
	if err := s.start("comfysim", "\033[36m", o.simulator, []string{"-addr", o.simAddr, "-api-key", o.simKey}, nil); err != nil {
		return 1, err
	}
	if err := waitFor(ctx, s, func() bool { return dialable(temporalAddr) }, 2*time.Minute, "Temporal dev server"); err != nil {
		return 1, err
	}
	simURL := "http://" + o.simAddr
	if err := waitFor(ctx, s, func() bool { return httpOK(simURL + "/healthz") }, 30*time.Second, "simulator"); err != nil {
		return 1, err
	}
	workerEnv := []string{
		"TEMPORAL_ADDRESS=" + temporalAddr,
		"COMFY_API_URL=" + simURL + "/api",
		"COMFY_API_KEY=" + o.simKey,
		"COMFY_OUTPUT_DIR=" + o.outDir,
		"COMFY_OUTPUT_URL=", // the dev stack's store is out/, whatever the shell says
		"COMFY_POLL_INTERVAL=1s",
		// The demo's batch reads examples/product-catalog.csv; batch
		// sources elsewhere are refused, as in production (docs/security.md).
		"COMFY_SOURCE_DIRS=" + o.sourceDir,
	}
	if o.webhookAddr != "" {
		// A fresh secret per start: webhooks of runs signed before a restart
		// are refused, and those runs are noticed by polling.
		secret := make([]byte, 16)
		_, _ = rand.Read(secret)
		workerEnv = append(workerEnv,
			"COMFY_WEBHOOK_URL=http://"+o.webhookAddr+"/comfy/webhook",
			"COMFY_WEBHOOK_LISTEN="+o.webhookAddr,
			"COMFY_WEBHOOK_SECRET="+hex.EncodeToString(secret))
	}
	if err := s.start("worker", "\033[33m", o.worker, nil, workerEnv); err != nil {
		return 1, err
	}

	ui := fmt.Sprintf("http://localhost:%d", o.uiPort)
	fmt.Printf("\n  Temporal UI      %s\n  Temporal gRPC    %s (TEMPORAL_ADDRESS)\n  Temporal HTTP    http://127.0.0.1:%d\n  ComfyDeploy sim  %s/api (key %q)\n  Outputs          %s\n\n",
		ui, temporalAddr, o.httpPort, simURL, o.simKey, o.outDir)

	if o.demo {
		code, err := runDemo(ctx, o, temporalAddr, ui)
		if err != nil || o.demoExit {
			return code, err
		}
	}
	fmt.Println("Stack is up. Press Ctrl-C to stop.")
	select {
	case <-ctx.Done():
		fmt.Println("\nStopping…")
		return 0, nil
	case err := <-s.exited:
		return 1, err
	}
}

func runDemo(ctx context.Context, o options, temporalAddr, ui string) (int, error) {
	stamp := time.Now().UTC().Format("20060102-150405")
	ids := struct{ run, batch, pipeline string }{"demo-run-" + stamp, "demo-batch-" + stamp, "demo-pipeline-" + stamp}
	steps := []struct {
		title string
		args  []string
	}{
		{"1/3 · a txt2img run, driven to completion by the ComfyRun workflow", []string{"run", "-id", ids.run,
			"-deployment", "de000000-0000-4000-8000-000000000001",
			"-input", "prompt=" + o.demoPrompt, "-input", "steps=24", "-input", "seed=42",
			"-max-attempts", "3", "-label", "source=make-demo", "-wait"}},
		{"2/3 · a 20-item product-catalog batch (examples/batch-catalog.json) over a pool of two deployments", []string{"batch", "-id", ids.batch,
			"-f", "examples/batch-catalog.json", "-wait"}},
		{"3/3 · a txt2img → upscale → img2video pipeline (examples/pipeline-hero.yaml)", []string{"pipeline", "-id", ids.pipeline,
			"-f", "examples/pipeline-hero.yaml", "-wait"}},
	}
	for _, step := range steps {
		fmt.Printf("\n\033[1mDemo %s\033[0m\n", step.title)
		cmd := exec.CommandContext(ctx, o.starter, step.args...)
		cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+temporalAddr, "TEMPORAL_UI_URL="+ui)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		err := cmd.Run()
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return exitErr.ExitCode(), fmt.Errorf("demo step %q did not succeed (exit %d)", step.args[0], exitErr.ExitCode())
		}
		if err != nil {
			return 1, fmt.Errorf("demo: %w", err)
		}
	}
	link := func(id string) string { return ui + "/namespaces/default/workflows/" + id }
	fmt.Printf(`
Demo finished. Everything landed under %s/:
  single run  %s/%s/  (outputs + manifest.json)     %s
  batch       %s/%s/results.jsonl  (one line per item) %s
  pipeline    one folder per step under %s/            %s
Search them in the UI, e.g. ComfyStatus = "success", or list them: bin/starter list

`, o.outDir, o.outDir, ids.run, link(ids.run), o.outDir, ids.batch, link(ids.batch), o.outDir, link(ids.pipeline))
	return 0, nil
}

// stack supervises child processes: one exiting on its own stops the rest.
type stack struct {
	mu     sync.Mutex
	procs  []*child
	exited chan error
}

// stopping silences children's output during shutdown, where their
// connection-refused noise would bury the demo's summary.
var stopping atomic.Bool

type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (s *stack) start(name, color, bin string, args, env []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exited == nil {
		s.exited = make(chan error, 8)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	// Own process group: the terminal's Ctrl-C reaches only devstack, which
	// then stops the children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	prefix := fmt.Sprintf("%s%-9s\033[0m│ ", color, name)
	go copyLines(prefix, stdout)
	go copyLines(prefix, stderr)
	c := &child{cmd: cmd, done: make(chan struct{})}
	s.procs = append(s.procs, c)
	go func() {
		err := cmd.Wait()
		close(c.done)
		s.exited <- fmt.Errorf("%s exited: %v", name, err)
	}()
	return nil
}

// stopAll stops children in reverse start order, killing any that does not
// exit within 10 s.
func (s *stack) stopAll() {
	stopping.Store(true)
	s.mu.Lock()
	procs := append([]*child(nil), s.procs...)
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		c := procs[i]
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
}

func copyLines(prefix string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if !stopping.Load() {
			fmt.Fprintln(os.Stderr, prefix+sc.Text())
		}
	}
}

func waitFor(ctx context.Context, s *stack, ready func() bool, limit time.Duration, what string) error {
	deadline := time.Now().Add(limit)
	for !ready() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-s.exited:
			return fmt.Errorf("while waiting for the %s: %w", what, err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the %s did not become ready within %s", what, limit)
		}
	}
	return nil
}

func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func portInUse(addr string) bool { return dialable(addr) }

func httpOK(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
