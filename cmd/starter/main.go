// Command starter starts and inspects ComfyRun, ComfyBatch and
// ComfyPipeline workflows: it is the command-line face of durable-comfy.
//
//	starter run       start a run (optionally -wait for it with a progress bar)
//	starter status    print a run's phase, progress, attempts and outputs
//	starter watch     follow a run until it ends, then print its result
//	starter cancel    cancel a run (and its ComfyDeploy run, where possible)
//	starter list      find runs by deployment, ComfyDeploy status or run id
//	starter batch     start a batch from a file; status, watch, pause, resume,
//	                  cancel, set-concurrency, retry-failed
//	starter pipeline  start a pipeline from a spec; status, watch
//	starter schedule  create, list and delete cron schedules of batches and
//	                  pipelines
//
// The Temporal connection follows Temporal's own conventions
// (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TLS settings and
// profiles in temporal.toml), exactly like the worker. TEMPORAL_UI_URL sets
// the Web UI base used in printed links (default http://localhost:8233).
//
// Exit codes, stable for scripts:
//
//	0  success (the run succeeded, or the request was made)
//	1  the workflow failed: the run failed or timed out, or preflight rejected it;
//	   a batch with failed items or that stopped early; a failed pipeline step
//	2  usage error or bad local input (flags, -f file, workflow id in use),
//	   or a request that does not apply (pausing an ended batch, retrying a
//	   running one)
//	3  the workflow was cancelled
//	4  Temporal is unreachable, misconfigured, or the workflow was not found
//	130 interrupted (Ctrl-C) while waiting; the workflow keeps running
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	temporalenv "go.temporal.io/sdk/contrib/envconfig"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/durable-comfy/durable-comfy/internal/logging"
	"github.com/durable-comfy/durable-comfy/workflows"
)

const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitCancelled   = 3
	exitTemporal    = 4
	exitInterrupted = 130
)

const (
	defaultTaskQueue = "comfy"
	defaultUIURL     = "http://localhost:8233"
	dialTimeout      = 10 * time.Second
)

// exitError carries the process exit code to main. A nil err means the
// outcome has already been printed and only the code remains to report.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &exitError{code: code, err: err} }

func usageErrorf(format string, args ...any) error {
	return withCode(exitUsage, fmt.Errorf(format, args...))
}

// env is everything the subcommands take from the process, so the
// commands stay testable and never reach for globals.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// stderrTTY says whether progress may redraw one line with \r.
	stderrTTY bool
	getenv    func(string) string
	now       func() time.Time
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	e := &env{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		stderrTTY: isTerminal(os.Stderr), getenv: os.Getenv, now: time.Now,
	}
	code := e.main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

type command struct {
	name, summary string
	run           func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"run", "start a ComfyRun (add -wait to follow it with a progress bar)", cmdRun},
		{"status", "print a run's phase, progress, attempts, outputs and error", cmdStatus},
		{"watch", "follow a run with a progress bar until it ends, then print its result", cmdWatch},
		{"cancel", "cancel a run and, where the machine allows, its ComfyDeploy run", cmdCancel},
		{"list", "list runs, filtered by deployment, ComfyDeploy status, run id or state", cmdList},
		{"batch", "start a ComfyBatch from a file; status, watch, pause, resume, cancel, set-concurrency, retry-failed", cmdBatch},
		{"pipeline", "start a ComfyPipeline from a YAML or JSON spec; status, watch", cmdPipeline},
		{"schedule", "run batches or pipelines on a cron schedule: create, list, delete", cmdSchedule},
		{"link", "print time-limited HTTPS links to stored outputs (s3://, gs://, azblob:// stores)", cmdLink},
	}
}

// main dispatches to a subcommand and turns its error into an exit code.
func (e *env) main(ctx context.Context, args []string) int {
	if len(args) == 0 {
		e.usage(e.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		e.usage(e.stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		err := c.run(ctx, e, args[1:])
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		if err == nil {
			return exitOK
		}
		code := exitFailed
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
			if ee.err == nil {
				return code
			}
		}
		fmt.Fprintf(e.stderr, "starter %s: %v\n", name, err)
		return code
	}
	fmt.Fprintf(e.stderr, "starter: unknown command %q; the commands are run, status, watch, cancel, list, batch, pipeline and schedule (see `starter -h`)\n", name)
	return exitUsage
}

func (e *env) usage(w io.Writer) {
	fmt.Fprint(w, `Usage: starter <command> [flags] [args]

Starts and inspects ComfyRun workflows (durable ComfyDeploy runs on Temporal),
ComfyBatch workflows (many runs from a file) and ComfyPipeline workflows
(steps that feed each other), and schedules batches and pipelines.

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
Run "starter <command> -h" for the flags of a command.

Examples:
  starter run -deployment de000000-0000-4000-8000-000000000001 \
      -input prompt="a lighthouse at dawn" -input steps=24 -input seed=42 -wait
  starter run -f run.json -input seed=7 -max-attempts 3 -retry-on failed,timeout
  starter status comfyrun-20260101-120000-a1b2c3
  starter watch comfyrun-20260101-120000-a1b2c3
  starter cancel -wait comfyrun-20260101-120000-a1b2c3
  starter list -comfy-status failed -deployment de000000-0000-4000-8000-000000000001

  starter batch -f examples/batch-catalog.json -wait
  starter batch status comfybatch-20260101-120000-a1b2c3
  starter batch pause comfybatch-20260101-120000-a1b2c3
  starter batch set-concurrency comfybatch-20260101-120000-a1b2c3 20
  starter batch retry-failed -wait comfybatch-20260101-120000-a1b2c3
  starter pipeline -f examples/pipeline-hero.yaml -wait
  starter pipeline status comfypipeline-20260101-120000-a1b2c3
  starter schedule create -kind batch -f examples/batch-catalog.json -cron "0 3 * * *" -id nightly-catalog
  starter schedule list
  starter schedule delete nightly-catalog

The same start with the temporal CLI:
  temporal workflow start --type %s --task-queue %s \
      --input '{"deployment_id": "de000000-0000-4000-8000-000000000001", "inputs": {"prompt": "a lighthouse at dawn", "steps": 24}}'

Environment:
  TEMPORAL_ADDRESS     host:port of the Temporal frontend (default localhost:7233)
  TEMPORAL_NAMESPACE   namespace (default "default")
  TEMPORAL_API_KEY, TEMPORAL_TLS*, TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE
                       Temporal Cloud and TLS settings, as for the temporal CLI
  TEMPORAL_UI_URL      Web UI base for printed links (default %s)
  COMFY_TASK_QUEUE     default for -task-queue (default %q, as for the worker)

%s`, workflows.ComfyRunWorkflow, defaultTaskQueue, defaultUIURL, defaultTaskQueue, exitCodesHelp)
}

const exitCodesHelp = `Exit codes:
  0    success (the run succeeded, or the request was made)
  1    the workflow failed: the run failed or timed out, or preflight rejected it;
       a batch had failed items or stopped early; a pipeline step failed
  2    usage error or bad local input (flags, -f file, workflow id already in use),
       or a request that does not apply now (pausing an ended batch, retrying a running one)
  3    the workflow was cancelled
  4    Temporal unreachable or misconfigured, or the workflow was not found
  130  interrupted (Ctrl-C) while waiting; the workflow keeps running
`

// taskQueue is the -task-queue flag, else $COMFY_TASK_QUEUE, else the
// default: the same choice the worker makes, so both meet on one queue.
func (e *env) taskQueue(flagValue string) string {
	return firstNonEmpty(flagValue, e.getenv("COMFY_TASK_QUEUE"), defaultTaskQueue)
}

// newFlagSet builds a subcommand's flag set whose -h prints synopsis,
// description, flags and the exit codes.
func newFlagSet(e *env, name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: starter %s %s\n\n%s\n\nFlags:\n", name, synopsis, strings.TrimSpace(description))
		fs.PrintDefaults()
		fmt.Fprintf(w, "\n%s", exitCodesHelp)
	}
	return fs
}

// parseArgs parses flags anywhere on the command line, so both
// `status -json ID` and `status ID -json` work; the standard flag package
// alone stops at the first positional argument.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, withCode(exitUsage, nil) // flag has printed the problem and usage
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// oneWorkflowID reads the single positional workflow id of status, watch
// and cancel.
func oneWorkflowID(fs *flag.FlagSet, pos []string) (string, error) {
	switch len(pos) {
	case 1:
		if strings.TrimSpace(pos[0]) == "" {
			return "", usageErrorf("the workflow id is empty: pass the id printed by `starter run` (or find it with `starter list`)")
		}
		return pos[0], nil
	case 0:
		return "", usageErrorf("missing workflow id: use `starter %s WORKFLOW_ID` (find ids with `starter list`)", fs.Name())
	default:
		return "", usageErrorf("expected one workflow id, got %d arguments (%s): put flags before or after the id, quoted if they contain spaces", len(pos), strings.Join(pos, " "))
	}
}

// conn is a dialled Temporal client and what the links and messages need
// to know about it.
type conn struct {
	client.Client
	hostPort  string
	namespace string
	uiBase    string
}

// dial connects with Temporal's standard environment configuration. The
// SDK's default logger is replaced because it writes INFO lines that
// would corrupt -json output and the progress bar.
func (e *env) dial(ctx context.Context) (*conn, error) {
	opts, err := temporalenv.LoadDefaultClientOptions()
	if err != nil {
		return nil, withCode(exitUsage, fmt.Errorf("temporal client configuration: %w (check TEMPORAL_* variables and the temporal.toml profile)", err))
	}
	zl, err := logging.New("console", "error")
	if err != nil {
		return nil, err
	}
	opts.Logger = logging.Temporal(zl)
	c := &conn{hostPort: opts.HostPort, namespace: opts.Namespace, uiBase: e.getenv("TEMPORAL_UI_URL")}
	if c.hostPort == "" {
		c.hostPort = client.DefaultHostPort
	}
	if c.namespace == "" {
		c.namespace = client.DefaultNamespace
	}
	if c.uiBase == "" {
		c.uiBase = defaultUIURL
	}
	c.uiBase = strings.TrimRight(c.uiBase, "/")

	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	tc, err := client.DialContext(dctx, opts)
	if err != nil {
		var nsErr *serviceerror.NamespaceNotFound
		if errors.As(err, &nsErr) {
			return nil, withCode(exitTemporal, fmt.Errorf("namespace %q does not exist at %s: set TEMPORAL_NAMESPACE, or create it with `temporal operator namespace create --namespace %s`", c.namespace, c.hostPort, c.namespace))
		}
		return nil, withCode(exitTemporal, fmt.Errorf("cannot reach Temporal at %s: start it with `make dev` or set TEMPORAL_ADDRESS (%v)", c.hostPort, err))
	}
	c.Client = tc
	return c, nil
}

// uiLink is the Web UI page of a workflow.
func (c *conn) uiLink(workflowID string) string {
	return uiLink(c.uiBase, c.namespace, workflowID)
}

func uiLink(base, namespace, workflowID string) string {
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s", strings.TrimRight(base, "/"), url.PathEscape(namespace), url.PathEscape(workflowID))
}

// temporalError explains a failed Temporal call about workflowID and picks
// its exit code; what says which call, for the message.
func (c *conn) temporalError(what, workflowID string, err error) error {
	var (
		notFound   *serviceerror.NotFound
		nsNotFound *serviceerror.NamespaceNotFound
		denied     *serviceerror.PermissionDenied
		invalid    *serviceerror.InvalidArgument
	)
	switch {
	case errors.As(err, &nsNotFound):
		return withCode(exitTemporal, fmt.Errorf("%s: namespace %q does not exist: set TEMPORAL_NAMESPACE", what, c.namespace))
	case errors.As(err, &notFound) && workflowID != "":
		return withCode(exitTemporal, fmt.Errorf("workflow %q not found in namespace %q at %s: check the id with `starter list`, or set TEMPORAL_NAMESPACE", workflowID, c.namespace, c.hostPort))
	case errors.As(err, &denied), status.Code(err) == codes.Unauthenticated:
		return withCode(exitTemporal, fmt.Errorf("%s: %v: check TEMPORAL_API_KEY or the TLS client certificate for namespace %q", what, err, c.namespace))
	case errors.As(err, &invalid) && strings.Contains(strings.ToLower(err.Error()), "search attribute"):
		return withCode(exitTemporal, fmt.Errorf("%s: %v: the Comfy* search attributes are not registered on namespace %q; start the worker once (it registers them) or run `%s`", what, err, c.namespace, registerCommand(c.namespace)))
	case errors.Is(err, context.Canceled):
		return withCode(exitInterrupted, fmt.Errorf("%s: interrupted", what))
	default:
		return withCode(exitTemporal, fmt.Errorf("%s at %s: %v (is Temporal running? start it with `make dev` or set TEMPORAL_ADDRESS)", what, c.hostPort, err))
	}
}

// registerCommand is the temporal CLI line that creates the search
// attributes the workflows use.
func registerCommand(namespace string) string {
	var b strings.Builder
	b.WriteString("temporal operator search-attribute create --namespace " + namespace)
	for _, name := range sortedKeys(workflows.SearchAttributes()) {
		b.WriteString(" --name " + name + " --type " + workflows.SearchAttributes()[name].String())
	}
	return b.String()
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}

func isInvalidArgument(err error) bool {
	var ia *serviceerror.InvalidArgument
	return errors.As(err, &ia)
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
