// Command worker runs the durable-comfy Temporal worker: it executes the
// ComfyRun workflow and the activities that call the ComfyDeploy API.
//
// Configuration comes from the environment; run `worker -h` for the table.
// The Temporal connection follows Temporal's own conventions
// (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TLS settings and
// profiles in the temporal.toml config file), so the same binary runs against
// a local dev server or Temporal Cloud.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	temporalenv "go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/egress"
	"github.com/durable-comfy/durable-comfy/internal/logging"
	"github.com/durable-comfy/durable-comfy/outputstore"
	"github.com/durable-comfy/durable-comfy/wakeup"
	"github.com/durable-comfy/durable-comfy/workflows"
)

// config is read from COMFY_* environment variables. Keep the names stable:
// they are documented in the README.
type config struct {
	APIURL string `envconfig:"API_URL" default:"https://api.comfydeploy.com/api" desc:"ComfyDeploy API base URL (hosted, staging, self-hosted or the simulator)"`
	APIKey string `envconfig:"API_KEY" required:"true" desc:"ComfyDeploy API key; only ever read here, never sent to Temporal"`

	TaskQueue string `envconfig:"TASK_QUEUE" default:"comfy" desc:"Temporal task queue the worker polls"`

	PollInterval     time.Duration `envconfig:"POLL_INTERVAL" default:"2s" desc:"default interval between GET /run polls (jittered ±20%)"`
	QueueTimeout     time.Duration `envconfig:"QUEUE_TIMEOUT" default:"15m" desc:"default deadline for queueing and cold start"`
	ExecutionTimeout time.Duration `envconfig:"EXECUTION_TIMEOUT" default:"30m" desc:"default deadline for execution"`
	HTTPTimeout      time.Duration `envconfig:"HTTP_TIMEOUT" default:"90s" desc:"timeout of one ComfyDeploy API request (submits can be slow)"`

	WebhookURL    string `envconfig:"WEBHOOK_URL" desc:"public URL at which ComfyDeploy reaches this worker's webhook endpoint; when set, a run's end is noticed when ComfyDeploy calls back rather than at the next poll (polling stays the fallback)"`
	WebhookListen string `envconfig:"WEBHOOK_LISTEN" default:":8089" desc:"address the webhook endpoint listens on, serving the path of COMFY_WEBHOOK_URL"`
	WebhookSecret string `envconfig:"WEBHOOK_SECRET" desc:"HMAC secret that signs webhook URLs; required with COMFY_WEBHOOK_URL, at least 16 characters, the same on every worker"`

	SourceDirs     []string `envconfig:"SOURCE_DIRS" desc:"comma-separated directories below which batch sources given as a path are read; unset, path sources are refused"`
	SourceURLAllow string   `envconfig:"SOURCE_URL_ALLOW" desc:"comma-separated hosts (data.example.com, *.example.com, 10.0.0.5:8080) from which batch source URLs may be fetched even on loopback or private addresses; other URLs must be public"`
	OutputURLAllow string   `envconfig:"OUTPUT_URL_ALLOW" desc:"comma-separated extra hosts from which run outputs may be downloaded even on private addresses (the host of COMFY_API_URL is always allowed)"`

	OutputURL      string `envconfig:"OUTPUT_URL" desc:"output store URL: file:///abs/dir, s3://bucket/prefix?region=…[&endpoint=…&use_path_style=true], gs://bucket/prefix, azblob://container/prefix; credentials come from the storage SDK's standard environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT, …), never from the URL; default: the local directory COMFY_OUTPUT_DIR"`
	OutputDir      string `envconfig:"OUTPUT_DIR" desc:"local directory of the output store, shorthand for COMFY_OUTPUT_URL=file:///abs/dir (default out)"`
	MaxOutputBytes int64  `envconfig:"MAX_OUTPUT_BYTES" default:"2147483648" desc:"largest single output to download"`

	MaxConcurrentActivities    int `envconfig:"MAX_CONCURRENT_ACTIVITIES" default:"500" desc:"activities in flight on this worker (each waiting run holds one)"`
	MaxConcurrentWorkflowTasks int `envconfig:"MAX_CONCURRENT_WORKFLOW_TASKS" default:"50" desc:"workflow tasks in flight on this worker"`

	RegisterSearchAttributes bool `envconfig:"REGISTER_SEARCH_ATTRIBUTES" default:"true" desc:"create the Comfy* search attributes if missing (needs operator permission; off for Temporal Cloud)"`

	LogFormat string `envconfig:"LOG_FORMAT" default:"console" desc:"console (development) or json (production)"`
	LogLevel  string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
}

const envPrefix = "COMFY"

func main() {
	flag.Usage = usage
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func usage() {
	out := flag.CommandLine.Output()
	fmt.Fprintf(out, `Usage: worker

Runs the durable-comfy Temporal worker (workflow %q and its ComfyDeploy
activities). It takes no flags; it is configured by the environment:

`, workflows.ComfyRunWorkflow)
	var cfg config
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	_ = envconfig.Usagef(envPrefix, &cfg, tw, "  VARIABLE\tDEFAULT\tMEANING\n{{range .}}  {{usage_key .}}\t{{usage_default .}}\t{{usage_description .}}\n{{end}}")
	_ = tw.Flush()
	fmt.Fprint(out, `
Temporal connection (Temporal's conventions, also read by the temporal CLI):
  TEMPORAL_ADDRESS         host:port of the frontend (default localhost:7233)
  TEMPORAL_NAMESPACE       namespace (default "default")
  TEMPORAL_API_KEY         API key for Temporal Cloud
  TEMPORAL_TLS, TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH, …
  TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE   profile in the temporal.toml config file

Example (local dev server and the simulator):
  COMFY_API_URL=http://127.0.0.1:3011/api COMFY_API_KEY=sim-key worker
`)
}

func run() error {
	var cfg config
	if err := envconfig.Process(envPrefix, &cfg); err != nil {
		return fmt.Errorf("configuration: %w (run `worker -h` for the variables)", err)
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	zl, err := logging.New(cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	defer zl.Sync() //nolint:errcheck // nothing to do about a failed flush at exit

	// Checked before dialing Temporal, so a bad setting fails fast.
	var hub *wakeup.Hub
	if cfg.WebhookURL != "" {
		hub, err = wakeup.New(cfg.WebhookURL, cfg.WebhookSecret, logging.Slog(zl.Named("webhook")))
		if err != nil {
			return fmt.Errorf("configuration: COMFY_WEBHOOK_URL/COMFY_WEBHOOK_SECRET: %w", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	store, storeVar, err := openStore(ctx, cfg)
	if err != nil {
		return fmt.Errorf("configuration: %s: %w", storeVar, err)
	}
	defer store.Close()

	opts, err := temporalenv.LoadDefaultClientOptions()
	if err != nil {
		return fmt.Errorf("temporal client configuration: %w", err)
	}
	opts.Logger = logging.Temporal(zl)
	tc, err := client.DialContext(ctx, opts)
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s: %w (set TEMPORAL_ADDRESS, or start a dev server with `make dev`)", hostPort(opts), err)
	}
	defer tc.Close()

	if cfg.RegisterSearchAttributes {
		if err := ensureSearchAttributes(ctx, tc, opts.Namespace); err != nil {
			zl.Warn("Could not register search attributes; register them once with `temporal operator search-attribute create`", zap.Error(err))
		}
	}

	comfyClient, err := comfy.NewClient(
		comfy.WithBaseURL(cfg.APIURL),
		comfy.WithAPIKey(cfg.APIKey),
		comfy.WithHTTPClient(&http.Client{Timeout: cfg.HTTPTimeout}),
		comfy.WithUserAgent("durable-comfy-worker"),
		comfy.WithLogger(logging.Slog(zl.Named("comfy"))),
	)
	if err != nil {
		return fmt.Errorf("configuration: COMFY_API_URL: %w", err)
	}
	sourceDirs, err := activities.OpenSourceDirs(cfg.SourceDirs)
	if err != nil {
		return fmt.Errorf("configuration: COMFY_SOURCE_DIRS: %w", err)
	}
	defer sourceDirs.Close()
	sourceClient, downloader, err := cfg.egressClients()
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}

	w := worker.New(tc, cfg.TaskQueue, worker.Options{
		MaxConcurrentActivityExecutionSize:     cfg.MaxConcurrentActivities,
		MaxConcurrentWorkflowTaskExecutionSize: cfg.MaxConcurrentWorkflowTasks,
	})
	workflows.Register(w)
	acts := &activities.Activities{
		Comfy:            comfyClient,
		Store:            store,
		Downloader:       downloader,
		SourceDirs:       sourceDirs,
		SourceClient:     sourceClient,
		Signaler:         tc,
		Temporal:         tc,
		Namespace:        namespace(opts),
		PollInterval:     cfg.PollInterval,
		QueueTimeout:     cfg.QueueTimeout,
		ExecutionTimeout: cfg.ExecutionTimeout,
		MaxOutputBytes:   cfg.MaxOutputBytes,
	}
	if hub != nil {
		acts.Wakeups = hub // a nil *Hub in the interface would not read as "off"
		hub.Elsewhere = activities.WaitFinisher{Activities: acts}.Finish
		stopHooks, err := serveWebhooks(cfg.WebhookListen, cfg.WebhookURL, hub, zl)
		if err != nil {
			return fmt.Errorf("configuration: COMFY_WEBHOOK_LISTEN: %w", err)
		}
		defer stopHooks()
		zl.Info("Receiving ComfyDeploy webhooks", zap.String("url", cfg.WebhookURL), zap.String("listen", cfg.WebhookListen))
	}
	w.RegisterActivity(acts)

	zl.Info("Worker starting",
		zap.String("task_queue", cfg.TaskQueue), zap.String("temporal", hostPort(opts)),
		zap.String("namespace", namespace(opts)), zap.String("comfy_api", cfg.APIURL), zap.String("output_store", store.URL()),
		zap.Strings("source_dirs", sourceDirs.Dirs()))
	if err := w.Run(interruptOn(ctx)); err != nil {
		return fmt.Errorf("worker stopped: %w", err)
	}
	zl.Info("Worker stopped")
	return nil
}

// egressClients builds the clients for URLs chosen by others: batch
// sources (chosen by whoever starts a batch) and outputs (chosen by the
// provider). Both reach public addresses only, plus the allowed hosts; the
// provider's own API host is allowed for outputs, which is where the
// simulator and self-hosted ComfyDeploy serve them.
func (c *config) egressClients() (source, outputs *http.Client, err error) {
	sourceAllow, err := egress.ParseAllow(c.SourceURLAllow)
	if err != nil {
		return nil, nil, fmt.Errorf("COMFY_SOURCE_URL_ALLOW: %w", err)
	}
	outputAllow, err := egress.ParseAllow(c.OutputURLAllow)
	if err != nil {
		return nil, nil, fmt.Errorf("COMFY_OUTPUT_URL_ALLOW: %w", err)
	}
	if err := outputAllow.AddURLHost(c.APIURL); err != nil {
		return nil, nil, fmt.Errorf("COMFY_API_URL: %w", err)
	}
	source = egress.NewClient(egress.Policy{Allow: sourceAllow, Timeout: 5 * time.Minute})
	outputs = egress.NewClient(egress.Policy{Allow: outputAllow, Timeout: 10 * time.Minute})
	return source, outputs, nil
}

// serveWebhooks serves hub at the path of publicURL on addr until the
// returned function shuts it down.
func serveWebhooks(addr, publicURL string, hub http.Handler, logger *zap.Logger) (func(), error) {
	u, err := url.Parse(publicURL)
	if err != nil {
		return nil, err
	}
	path := u.Path
	if path == "" {
		path = "/"
	}
	mux := http.NewServeMux()
	mux.Handle(path, hub)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("Webhook endpoint stopped; runs are noticed by polling", zap.Error(err))
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

func (c *config) validate() error {
	var errs []error
	if c.APIKey == "" {
		errs = append(errs, errors.New("COMFY_API_KEY is empty; create a key in the ComfyDeploy dashboard (Settings → API keys)"))
	}
	for name, d := range map[string]time.Duration{
		"COMFY_POLL_INTERVAL": c.PollInterval, "COMFY_QUEUE_TIMEOUT": c.QueueTimeout,
		"COMFY_EXECUTION_TIMEOUT": c.ExecutionTimeout, "COMFY_HTTP_TIMEOUT": c.HTTPTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be a positive duration such as 2s or 15m", name))
		}
	}
	if c.WebhookURL == "" && c.WebhookSecret != "" {
		errs = append(errs, errors.New("COMFY_WEBHOOK_SECRET is set but COMFY_WEBHOOK_URL is not: set the public URL of this worker's webhook endpoint, or unset the secret"))
	}
	if c.OutputURL != "" && c.OutputDir != "" {
		errs = append(errs, errors.New("COMFY_OUTPUT_URL and COMFY_OUTPUT_DIR are both set: COMFY_OUTPUT_DIR is a shorthand for COMFY_OUTPUT_URL=file:///abs/dir; keep one"))
	}
	if c.MaxConcurrentActivities <= 0 || c.MaxConcurrentWorkflowTasks <= 0 {
		errs = append(errs, errors.New("COMFY_MAX_CONCURRENT_ACTIVITIES and COMFY_MAX_CONCURRENT_WORKFLOW_TASKS must be positive"))
	}
	return errors.Join(errs...)
}

// storeCheckTimeout bounds the start-up probe of the output store (the
// storage SDKs retry a refused connection a few times within it).
const storeCheckTimeout = 30 * time.Second

// openStore opens the output store the configuration names and proves it
// usable (write, read back, delete a probe object), so that a missing
// bucket or bad credentials stop the worker at start-up rather than fail
// the first collect. It returns the variable to blame for an error.
func openStore(ctx context.Context, cfg config) (*outputstore.Bucket, string, error) {
	var (
		store *outputstore.Bucket
		err   error
		which = "COMFY_OUTPUT_URL"
	)
	if cfg.OutputURL != "" {
		store, err = outputstore.Open(ctx, cfg.OutputURL)
	} else {
		which = "COMFY_OUTPUT_DIR"
		store, err = outputstore.OpenDir(cmp.Or(cfg.OutputDir, "out"))
	}
	if err != nil {
		return nil, which, err
	}
	cctx, cancel := context.WithTimeout(ctx, storeCheckTimeout)
	defer cancel()
	if err := store.Check(cctx); err != nil {
		_ = store.Close()
		return nil, which, fmt.Errorf("output store %s is not usable: %w", store.URL(), err)
	}
	return store, which, nil
}

// ensureSearchAttributes creates the workflows' search attributes when they
// are missing, which is what a fresh self-hosted namespace needs.
func ensureSearchAttributes(ctx context.Context, tc client.Client, ns string) error {
	if ns == "" {
		ns = client.DefaultNamespace
	}
	want := workflows.SearchAttributes()
	have, err := tc.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	if err != nil {
		return err
	}
	for name := range want {
		if _, ok := have.GetCustomAttributes()[name]; ok {
			delete(want, name)
		}
	}
	if len(want) == 0 {
		return nil
	}
	_, err = tc.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: ns, SearchAttributes: want})
	var exists *serviceerror.AlreadyExists
	if errors.As(err, &exists) {
		return nil
	}
	return err
}

func interruptOn(ctx context.Context) <-chan any {
	ch := make(chan any)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch
}

func hostPort(o client.Options) string {
	if o.HostPort == "" {
		return client.DefaultHostPort
	}
	return o.HostPort
}

func namespace(o client.Options) string {
	if o.Namespace == "" {
		return client.DefaultNamespace
	}
	return o.Namespace
}
