// Command comfysim serves the ComfyDeploy v2 API simulator from package
// comfytest on a fixed address, for local development and benchmarks.
//
//	go run ./cmd/comfysim
//	curl -H 'Authorization: Bearer sim-key' \
//	     -d '{"deployment_id":"de000000-0000-4000-8000-000000000001","inputs":{"prompt":"a cat"}}' \
//	     http://127.0.0.1:3011/api/run/deployment/queue
//
// Every flag can also be set through an environment variable named
// COMFYSIM_<FLAG> with dashes as underscores (e.g. COMFYSIM_ERROR_RATE=0.1).
// Flags win over the environment. Run with -h for the admin endpoints.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
)

const usageText = `comfysim: a simulator of the ComfyDeploy v2 HTTP API.

API (Bearer auth, like api.comfydeploy.com):  http://<addr>/api/...
Signed output files (no auth):                http://<addr>/files/...

Admin endpoints (no auth):
  GET  /healthz                        liveness
  GET  /admin/counters                 calls per route and status, runs per correlation token,
                                       runs created, cancels, webhook deliveries
  POST /admin/reset                    zero the counters
  GET  /admin/faults                   current faults
  PUT  /admin/faults                   replace faults, e.g.
                                       {"error_rate":{"GET /api/run/{run_id}":0.2,"*":0.01},
                                        "latency":"150ms","reset_rate":0.01,
                                        "ambiguous_submit_rate":0.1,"ambiguous_delay":"0s",
                                        "run_failure_rate":0.05,"run_timeout_rate":0.02,
                                        "never_finish_rate":0.01,"webhook_duplicate_rate":0.2,
                                        "webhook_reorder_rate":0.2,"webhook_reorder_delay":"300ms",
                                        "webhook_drop_rate":0.05}
  PUT  /admin/timing/{deployment_id}   {"cold_start":"1s","run":"3s"}
  PUT  /admin/deployments/{id}         {"concurrency_limit":50,"run_timeout":"2s"}
  GET  /admin/runs                     every run with its status, token and injected fate

Flags (each also read from COMFYSIM_<NAME>, e.g. COMFYSIM_ADDR):
`

func main() {
	fs := flag.NewFlagSet("comfysim", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	var (
		addr        = fs.String("addr", "127.0.0.1:3011", "listen address; the API base URL is http://<addr>/api")
		publicURL   = fs.String("public-url", "", "origin used in generated file URLs (default: the request's Host)")
		apiKey      = fs.String("api-key", comfytest.DefaultAPIKey, "accepted Bearer token ("+comfytest.NoCreditsAPIKey+" is also accepted, without GPU credits)")
		seed        = fs.Int64("seed", 1, "seed for fault decisions")
		coldStart   = fs.Duration("cold-start", time.Second, "default cold start of every deployment")
		runDur      = fs.Duration("run-duration", 3*time.Second, "default run duration of every deployment")
		ttl         = fs.Duration("output-url-ttl", time.Hour, "lifetime of signed output URLs")
		hookBackoff = fs.Duration("webhook-backoff", 500*time.Millisecond, "wait before the second webhook attempt (third waits 2x)")
		errorRate   = fs.String("error-rate", "", `5xx probability: a number for every route, or "PATTERN=P,..." (e.g. "GET /api/run/{run_id}=0.2,*=0.01")`)
		latency     = fs.Duration("latency", 0, "latency added to every /api request")
		resetRate   = fs.Float64("reset-rate", 0, "probability to close an /api connection without a response")
		ambRate     = fs.Float64("ambiguous-submit-rate", 0, "probability that a created run's response is lost")
		ambDelay    = fs.Duration("ambiguous-delay", 0, "with -ambiguous-submit-rate: delay the response by this instead of dropping it")
		failRate    = fs.Float64("run-failure-rate", 0, "probability that a run fails")
		timeoutRate = fs.Float64("run-timeout-rate", 0, "probability that a run ends in timeout")
		neverRate   = fs.Float64("never-finish-rate", 0, "probability that a run never finishes")
		dupRate     = fs.Float64("webhook-duplicate-rate", 0, "probability that a webhook is delivered twice")
		reorderRate = fs.Float64("webhook-reorder-rate", 0, "probability that a webhook is held back so later ones overtake it")
		reorderDur  = fs.Duration("webhook-reorder-delay", 300*time.Millisecond, "hold-back time of reordered webhooks")
		dropRate    = fs.Float64("webhook-drop-rate", 0, "probability that a webhook is never sent")
		concurrency = fs.Int("concurrency-limit", 0, "if > 0, concurrency_limit of every seeded deployment")
		quiet       = fs.Bool("quiet", false, "do not log simulator events")
	)
	if err := applyEnv(fs); err != nil {
		log.Fatal(err)
	}
	_ = fs.Parse(os.Args[1:])

	rates, err := parseErrorRate(*errorRate)
	if err != nil {
		log.Fatalf("comfysim: -error-rate: %v", err)
	}
	opts := comfytest.Options{
		APIKey: *apiKey, Seed: *seed, PublicURL: *publicURL,
		Timing:       comfytest.Timing{ColdStart: *coldStart, Run: *runDur},
		OutputURLTTL: *ttl, WebhookBackoff: *hookBackoff,
		Faults: comfytest.Faults{
			ErrorRate: rates, Latency: *latency, ResetRate: *resetRate,
			AmbiguousSubmitRate: *ambRate, AmbiguousDelay: *ambDelay,
			RunFailureRate: *failRate, RunTimeoutRate: *timeoutRate, NeverFinishRate: *neverRate,
			WebhookDuplicateRate: *dupRate, WebhookReorderRate: *reorderRate, WebhookReorderDelay: *reorderDur,
			WebhookDropRate: *dropRate,
		},
	}
	if !*quiet {
		opts.Logf = log.Printf
	}
	if *concurrency > 0 {
		opts.Deployments = map[string]comfytest.DeploymentSettings{}
		for _, id := range seededDeployments {
			opts.Deployments[id[0]] = comfytest.DeploymentSettings{ConcurrencyLimit: *concurrency}
		}
	}
	sim := comfytest.New(opts)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("comfysim: %v", err)
	}
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	printBanner(ln.Addr().String(), *publicURL, *apiKey)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("comfysim: %v", err)
		}
	case <-ctx.Done():
		log.Printf("comfysim: shutting down")
	}
	// Stop the simulator first so that open SSE streams and sync requests
	// return, then drain the HTTP server.
	sim.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
}

var seededDeployments = [][2]string{
	{comfytest.DeploymentTxt2Img, "txt2img on gpu-pool-a (A10G)"},
	{comfytest.DeploymentUpscale, "upscale on gpu-pool-a"},
	{comfytest.DeploymentImg2Video, "img2video on gpu-pool-b (L40S), GIF output"},
	{comfytest.DeploymentTxt2ImgB, "txt2img-b on gpu-pool-b"},
	{comfytest.DeploymentTxt2ImgClassic, "txt2img-classic on studio-classic (no cancel/sync/stream)"},
	{comfytest.DeploymentOnBuilding, "on gpu-building (runs fail after cold start)"},
	{comfytest.DeploymentOnBroken, "on gpu-broken (status error, import_failed_logs)"},
	{comfytest.DeploymentOnLegacyModal, "on legacy-modal (400 Invalid machine type)"},
	{comfytest.DeploymentNeedsMissingNode, "needs-missing-node (KJNodes missing, runs fail)"},
	{comfytest.DeploymentSlowTimeout, "slow-timeout (run_timeout 2s, render 10s)"},
}

func printBanner(addr, publicURL, apiKey string) {
	base := "http://" + addr
	if publicURL != "" {
		base = strings.TrimRight(publicURL, "/")
	}
	fmt.Printf("comfysim listening on %s\n", addr)
	fmt.Printf("  base URL:  %s/api\n", base)
	fmt.Printf("  API key:   %s   (no-credits key: %s)\n", apiKey, comfytest.NoCreditsAPIKey)
	fmt.Printf("  admin:     %s/admin/counters, %s/admin/faults\n", base, base)
	fmt.Println("  deployments:")
	for _, d := range seededDeployments {
		fmt.Printf("    %s  %s\n", d[0], d[1])
	}
}

// applyEnv sets flags from COMFYSIM_* environment variables.
func applyEnv(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := "COMFYSIM_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", name, e)
			}
		}
	})
	return err
}

// parseErrorRate accepts "0.1" (every route) or "PATTERN=P,PATTERN=P".
func parseErrorRate(s string) (map[string]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]float64{}
	var p float64
	if _, err := fmt.Sscanf(s, "%g", &p); err == nil && !strings.Contains(s, "=") {
		out["*"] = p
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("want PATTERN=P, got %q", part)
		}
		if _, err := fmt.Sscanf(strings.TrimSpace(v), "%g", &p); err != nil {
			return nil, fmt.Errorf("bad probability in %q", part)
		}
		out[strings.TrimSpace(k)] = p
	}
	return out, nil
}
