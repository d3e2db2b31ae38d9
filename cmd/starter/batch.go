package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/workflows"
)

var batchKind = kind{workflowType: workflows.ComfyBatchWorkflow, noun: "batch", sub: "batch "}

// updateTimeout bounds set-concurrency: an update waits for a worker.
const updateTimeout = 30 * time.Second

const batchFields = "deployments, defaults, items, source, max_concurrency, failure_policy, budget, page_size"

func batchSubcommands() []subcommand {
	return []subcommand{
		{"status", "[-json] BATCH_ID", "counts, GPU-seconds, cost, rate, ETA; the result once it has ended", cmdBatchStatus},
		{"watch", "[-json] BATCH_ID", "follow the batch's progress until it ends, then print the result", cmdBatchWatch},
		{"pause", "BATCH_ID", "start no new items (running ones go on)", cmdBatchPause},
		{"resume", "BATCH_ID", "start items again after a pause", cmdBatchResume},
		{"cancel", "[-wait] [-json] BATCH_ID", "start no new items and cancel the running ones", cmdBatchCancel},
		{"set-concurrency", "BATCH_ID N", "change the maximum of runs in flight (1 to 2000)", cmdBatchSetConcurrency},
		{"retry-failed", "[-wait] [-json] BATCH_ID", "re-run a finished batch: items that succeeded are skipped", cmdBatchRetryFailed},
	}
}

func cmdBatch(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "batch", batchSubcommands(), cmdBatchStart, args)
}

func cmdBatchStart(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "batch", "-f FILE [-id ID] [-task-queue Q] [-wait] [-json]", `
Starts a ComfyBatch: one ComfyRun per item, over one deployment or a pool,
at most max_concurrency at a time, with a JSONL results manifest. FILE is
a ComfyBatchInput as JSON or YAML (- for stdin); unknown fields are errors.

  starter batch -f examples/batch-catalog.json -wait
  starter batch -f batch.yaml -id spring-catalog

A batch id is used once: re-running one (which skips the items that
succeeded) is "starter batch retry-failed ID".

`+subcommandHelp("batch", batchSubcommands())+`
Exit codes with -wait: 0 all items succeeded, 1 some failed or the batch
stopped early (failure policy, budget, unreadable source) or failed,
3 cancelled.`)
	file := fs.String("f", "", "read the ComfyBatchInput from `FILE` (JSON or YAML; - for stdin)")
	id := fs.String("id", "", "workflow `ID` (default comfybatch-<yyyymmdd-hhmmss>-<6 hex>, UTC); an id used before is refused")
	taskQueue := fs.String("task-queue", "", "task queue of the worker (default $COMFY_TASK_QUEUE or \""+defaultTaskQueue+"\")")
	wait := fs.Bool("wait", false, "follow the batch's progress on stderr until it ends, then print the result")
	asJSON := fs.Bool("json", false, "print machine-readable JSON on stdout")
	dryRun := fs.Bool("dry-run", false, "validate the file and print the workflow input; start nothing")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q: the batch comes from -f FILE; the batch commands are %s", pos[0], subNames(batchSubcommands()))
	}
	in, err := loadBatchInput(e, *file)
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("invalid batch:\n%s", bullets(err)))
	}
	if w := sourceWarning(in); w != "" {
		fmt.Fprintln(e.stderr, "note: "+w)
	}
	tq := e.taskQueue(*taskQueue)
	wid, err := e.idOrNew(*id, "comfybatch")
	if err != nil {
		return err
	}
	if *dryRun {
		if !*asJSON {
			fmt.Fprintf(e.stdout, "Batch is valid (nothing started). Summary: %s\n\n", batchSummary(in))
		}
		return writeJSON(e.stdout, in)
	}

	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	opts := batchStartOptions(in, wid, tq)
	// A batch id is used once: reusing a closed one would silently skip
	// the items that succeeded under it (that is retry-failed's job).
	opts.WorkflowIDReusePolicy = enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE
	wr, err := c.ExecuteWorkflow(ctx, opts, workflows.ComfyBatchWorkflow, in)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return usageErrorf("batch id %q was already used (run %s): pass a different -id, or omit -id for a generated one; to re-run its failed items use `starter batch retry-failed %s`", wid, started.RunId, wid)
		}
		return c.temporalError("start workflow", "", err)
	}
	return afterStart(e, c, wr, tq, *wait, *asJSON, "Started ComfyBatch "+wr.GetID(), batchKind.sub, func() error {
		return finishBatch(ctx, c, e, wr.GetID(), *asJSON)
	})
}

// loadBatchInput reads and checks the -f document with the workflow's own
// shape checks, so the starter refuses exactly what the workflow would.
func loadBatchInput(e *env, path string) (workflows.ComfyBatchInput, error) {
	var in workflows.ComfyBatchInput
	data, name, err := readDocFile(e, path, "ComfyBatchInput")
	if err != nil {
		return in, err
	}
	if in, err = decodeBatchInput(data, name); err != nil {
		return in, err
	}
	return in, checkBatchInput(in)
}

func decodeBatchInput(data []byte, name string) (workflows.ComfyBatchInput, error) {
	var in workflows.ComfyBatchInput
	err := decodeStrict(data, name, "ComfyBatchInput", batchFields, &in)
	return in, err
}

func checkBatchInput(in workflows.ComfyBatchInput) error {
	var errs []error
	if in.State != nil {
		errs = append(errs, errors.New("state is internal (continue-as-new carries progress in it): remove it from the file"))
	}
	for _, p := range in.Problems() {
		errs = append(errs, errors.New(p))
	}
	return errors.Join(errs...)
}

// sourceWarning points out a relative source path missing here: the
// worker reads it relative to its own working directory.
func sourceWarning(in workflows.ComfyBatchInput) string {
	if in.Source == nil || in.Source.Path == "" {
		return ""
	}
	if _, err := os.Stat(in.Source.Path); err == nil {
		return ""
	}
	if filepath.IsAbs(in.Source.Path) {
		return fmt.Sprintf("source %s does not exist on this machine; the worker must be able to read it", in.Source.Path)
	}
	return fmt.Sprintf("source %s does not exist relative to this directory; the worker reads it relative to its own working directory", in.Source.Path)
}

// batchStartOptions are the start options shared by start, retry-failed
// and schedules: summary and details for the UI, and the search
// attributes (the first deployment, ComfyStatus "pending").
func batchStartOptions(in workflows.ComfyBatchInput, wid, tq string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:        wid,
		TaskQueue: tq,
		// FAIL, with the error surfaced, so a reused -id never attaches
		// to a running batch.
		WorkflowIDConflictPolicy:                 enums.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            batchSummary(in),
		StaticDetails:                            batchDetails(in),
		TypedSearchAttributes:                    batchSearchAttributes(in),
	}
}

func batchSearchAttributes(in workflows.ComfyBatchInput) temporal.SearchAttributes {
	updates := []temporal.SearchAttributeUpdate{workflows.StatusKey.ValueSet("pending")}
	if len(in.Deployments) > 0 {
		updates = append(updates, workflows.DeploymentIDKey.ValueSet(in.Deployments[0]))
	}
	return temporal.NewSearchAttributes(updates...)
}

func concurrencyOf(in workflows.ComfyBatchInput) int {
	if in.MaxConcurrency > 0 {
		return in.MaxConcurrency
	}
	return workflows.DefaultBatchConcurrency
}

// itemSource says where the items come from, in a few words.
func itemSource(in workflows.ComfyBatchInput) string {
	switch {
	case in.Source != nil && in.Source.URL != "":
		return "source " + in.Source.URL
	case in.Source != nil:
		return "source " + in.Source.Path
	default:
		return fmt.Sprintf("%d items", len(in.Items))
	}
}

// batchSummary is the one line the Temporal UI shows in lists.
func batchSummary(in workflows.ComfyBatchInput) string {
	deps := ""
	switch len(in.Deployments) {
	case 0:
	case 1:
		deps = in.Deployments[0]
	default:
		deps = fmt.Sprintf("pool of %d deployments", len(in.Deployments))
	}
	src := itemSource(in)
	if in.Source != nil {
		src = truncate(src, 80)
	}
	return fmt.Sprintf("ComfyBatch · %s · %s · concurrency %d", src, deps, concurrencyOf(in))
}

// batchDetails is the markdown on the batch's page in the UI.
func batchDetails(in workflows.ComfyBatchInput) string {
	var b strings.Builder
	b.WriteString("**Deployments**\n\n")
	for _, d := range in.Deployments {
		fmt.Fprintf(&b, "- `%s`\n", d)
	}
	b.WriteString("\n**Items:** ")
	switch {
	case in.Source != nil:
		where := in.Source.Path
		if in.Source.URL != "" {
			where = in.Source.URL
		}
		format, err := in.Source.ResolvedFormat()
		if err != nil {
			format = in.Source.Format
		}
		fmt.Fprintf(&b, "`%s` (%s)\n", where, format)
	default:
		fmt.Fprintf(&b, "%d inline\n", len(in.Items))
	}
	fmt.Fprintf(&b, "\n**Concurrency:** %d", concurrencyOf(in))
	if in.PageSize > 0 {
		fmt.Fprintf(&b, " · page size %d", in.PageSize)
	}
	b.WriteString("\n")
	var stops []string
	if fp := in.FailurePolicy; fp.MaxFailures > 0 {
		stops = append(stops, fmt.Sprintf("%d failures", fp.MaxFailures))
	}
	if fp := in.FailurePolicy; fp.MaxFailureRatio > 0 {
		stops = append(stops, fmt.Sprintf("failure ratio above %g", fp.MaxFailureRatio))
	}
	if in.Budget.MaxGPUSeconds > 0 {
		stops = append(stops, fmt.Sprintf("%g GPU-seconds", in.Budget.MaxGPUSeconds))
	}
	if in.Budget.MaxCostUSD > 0 {
		stops = append(stops, fmt.Sprintf("$%.2f estimated", in.Budget.MaxCostUSD))
	}
	if len(stops) > 0 {
		fmt.Fprintf(&b, "\n**Stops at:** %s\n", strings.Join(stops, " · "))
	}
	if len(in.Defaults.Inputs) > 0 {
		b.WriteString("\n**Default inputs**\n\n")
		for _, k := range sortedKeys(in.Defaults.Inputs) {
			fmt.Fprintf(&b, "- `%s`: %s\n", k, truncate(oneLine(renderValue(in.Defaults.Inputs[k])), 200))
		}
	}
	return b.String()
}

// batchReport is the -json shape of batch status, watch and -wait.
type batchReport struct {
	execution
	Progress      *workflows.BatchProgress    `json:"progress,omitempty"`
	ProgressError string                      `json:"progress_error,omitempty"`
	Result        *workflows.ComfyBatchResult `json:"result,omitempty"`
	Error         *failureInfo                `json:"error,omitempty"`
	UIURL         string                      `json:"ui_url"`
}

func newBatchReport(c *conn, id string, desc *workflowservice.DescribeWorkflowExecutionResponse) *batchReport {
	return &batchReport{execution: newExecution(id, desc), UIURL: c.uiLink(id)}
}

// exitCode: a workflow that completed may still report failed items or an
// early stop; those exit 1, a cancelled batch 3.
func (r *batchReport) exitCode() int {
	switch r.ExecutionStatus {
	case "Running", "":
		return exitOK
	case "Canceled":
		return exitCancelled
	case "Completed":
	default:
		return exitFailed
	}
	if r.Result == nil {
		return exitOK
	}
	switch r.Result.Status {
	case workflows.BatchSucceeded:
		return exitOK
	case workflows.BatchCancelled:
		return exitCancelled
	default:
		return exitFailed
	}
}

func (r *batchReport) addOutcome(ctx context.Context, c *conn) error {
	var res workflows.ComfyBatchResult
	o, err := fetchOutcome(ctx, c, batchKind.sub, r.WorkflowID, "", &res, func() bool { return res.BatchID != "" || res.Status != "" })
	if err != nil {
		return err
	}
	if o.hasResult {
		r.Result = &res
	}
	r.Error = o.fail
	r.ExecutionStatus = o.statusAfter(r.ExecutionStatus)
	return nil
}

// queryBatch asks a batch for its progress, briefly: a query needs a worker.
func queryBatch(ctx context.Context, c *conn, id string) (*workflows.BatchProgress, error) {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	v, err := c.QueryWorkflow(qctx, id, "", workflows.ProgressQuery)
	if err != nil {
		return nil, err
	}
	var p workflows.BatchProgress
	if err := v.Get(&p); err != nil {
		return nil, fmt.Errorf("decode the progress query answer: %w", err)
	}
	return &p, nil
}

// batchReportOf describes, queries (while running) and reads the outcome
// (once closed) of a batch.
func batchReportOf(ctx context.Context, c *conn, e *env, id string, desc *workflowservice.DescribeWorkflowExecutionResponse) (*batchReport, error) {
	r := newBatchReport(c, id, desc)
	if r.ExecutionStatus == "Running" {
		p, err := queryBatch(ctx, c, id)
		if err != nil {
			r.ProgressError = queryProblem(err, desc, e.now())
		}
		r.Progress = p
		return r, nil
	}
	return r, r.addOutcome(ctx, c)
}

func cmdBatchStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "batch status", "[-json] BATCH_ID", `
Prints a batch's counts (succeeded, failed, skipped, cancelled, running,
pending), GPU-seconds, estimated cost, rate and ETA from its "progress"
query (which needs a running worker), or its result once it has ended:
status, why it stopped, per-deployment counts and the results manifest.

The exit code reflects the batch: 0 running or all succeeded, 1 some items
failed or it stopped early, 3 cancelled, 4 not found.`)
	asJSON := fs.Bool("json", false, "print the report as JSON on stdout")
	id, c, desc, err := batchKind.open(ctx, e, fs, args)
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := batchReportOf(ctx, c, e, id, desc)
	if err != nil {
		return err
	}
	return writeReport(e, *asJSON, r, printBatchReport)
}

func cmdBatchWatch(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "batch watch", "[-json] BATCH_ID", `
Follows a batch's progress on stderr (a redrawn line on a terminal, a line
per change otherwise) until it ends, then prints the result like
"batch status". Ctrl-C stops watching; the batch goes on.`)
	asJSON := fs.Bool("json", false, "print the final report as JSON on stdout")
	id, c, _, err := batchKind.open(ctx, e, fs, args)
	if err != nil {
		return err
	}
	defer c.Close()
	return finishBatch(ctx, c, e, id, *asJSON)
}

// finishBatch follows a batch across continue-as-new until it closes,
// then prints its result.
func finishBatch(ctx context.Context, c *conn, e *env, id string, asJSON bool) error {
	var last string
	p, desc, err := e.watch(ctx, c, batchKind.sub, id, "", false, func(p *progressPrinter, desc *workflowservice.DescribeWorkflowExecutionResponse, _ string, elapsed time.Duration) {
		bp, qerr := queryBatch(ctx, c, id)
		note := ""
		if qerr != nil {
			note = noWorkerNote(desc, e.now())
		}
		var lines []string
		if k := batchChangeKey(bp, note); k != last {
			last = k
			lines = append(lines, renderBatchLine(bp, note, elapsed))
		}
		p.show(renderBatchBar(bp, note, elapsed), lines...)
	})
	if err != nil {
		return err
	}
	r := newBatchReport(c, id, desc)
	if err := r.addOutcome(ctx, c); err != nil {
		return err
	}
	if r.Result != nil && !e.stderrTTY {
		// The log ends with the final counts, which the last poll may
		// not have seen.
		final := resultProgress(r.Result)
		if k := batchChangeKey(final, ""); k != last {
			p.show("", renderBatchLine(final, "", ranFor(r.StartTime, r.CloseTime)))
		}
	}
	return writeReport(e, asJSON, r, printBatchReport)
}

// resultProgress shows a final result in the shape of the progress query.
func resultProgress(res *workflows.ComfyBatchResult) *workflows.BatchProgress {
	return &workflows.BatchProgress{
		Total: res.Total, Succeeded: res.Succeeded, Failed: res.Failed, Skipped: res.Skipped, Cancelled: res.Cancelled,
		GPUSeconds: res.GPUSeconds, EstimatedCostUSD: res.EstimatedCostUSD, StoppedBy: res.StoppedBy, Phase: res.Status,
	}
}

// runningBatch describes id and refuses a batch that has already ended.
func runningBatch(ctx context.Context, c *conn, id, action string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	desc, err := batchKind.describe(ctx, c, id)
	if err != nil {
		return nil, err
	}
	return desc, requireRunning(desc, id, action)
}

// requireRunning refuses, with exit 2, a batch that has already ended:
// what can a signal or an update change then.
func requireRunning(desc *workflowservice.DescribeWorkflowExecutionResponse, id, action string) error {
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return usageErrorf("batch %s has already ended (%s): there is nothing to %s; see its result with `starter batch status %s`, or re-run its failed items with `starter batch retry-failed %s`", id, executionStatus(st), action, id, id)
	}
	return nil
}

func cmdBatchPause(ctx context.Context, e *env, args []string) error {
	return batchSignal(ctx, e, args, workflows.PauseSignal, `
Pauses a batch: it starts no new items; the running ones go on and are
recorded as they end. Resume with "starter batch resume BATCH_ID".`)
}

func cmdBatchResume(ctx context.Context, e *env, args []string) error {
	return batchSignal(ctx, e, args, workflows.ResumeSignal, `
Resumes a paused batch: it starts items again, up to its concurrency.`)
}

// batchSignal sends pause or resume, then shows the progress the batch
// answers with once the signal is applied.
func batchSignal(ctx context.Context, e *env, args []string, signal, description string) error {
	fs := newFlagSet(e, "batch "+signal, "[-json] BATCH_ID", description+`

Exit codes: 0 sent, 2 the batch has already ended, 4 not found.`)
	asJSON := fs.Bool("json", false, "print the progress after the signal as JSON on stdout")
	id, c, desc, err := batchKind.open(ctx, e, fs, args)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := requireRunning(desc, id, signal); err != nil {
		return err
	}
	if err := c.SignalWorkflow(ctx, id, "", signal, nil); err != nil {
		return c.temporalError("signal "+signal, id, err)
	}
	// A query sent after the signal is answered once the signal's
	// workflow task has run, so this shows its effect.
	p, qerr := queryBatch(ctx, c, id)
	if *asJSON {
		out := map[string]any{"workflow_id": id, "signal": signal, "progress": p}
		if qerr != nil {
			out["progress_error"] = queryProblem(qerr, desc, e.now())
		}
		return writeJSON(e.stdout, out)
	}
	switch {
	case qerr != nil:
		fmt.Fprintf(e.stdout, "%s sent to batch %s; it applies once a worker runs the batch (%s).\n", capitalize(signal), id, queryProblem(qerr, desc, e.now()))
	case signal == workflows.PauseSignal && p.Paused:
		fmt.Fprintf(e.stdout, "Batch %s paused: no new items start; %d running go on. Resume with `starter batch resume %s`.\n", id, p.Running, id)
	case signal == workflows.PauseSignal:
		fmt.Fprintf(e.stdout, "Pause sent to batch %s, but it is %s (a cancelling batch stays so).\n", id, p.Phase)
	case !p.Paused:
		fmt.Fprintf(e.stdout, "Batch %s resumed (%s): up to %d items run at once.\n", id, p.Phase, p.MaxConcurrency)
	default:
		fmt.Fprintf(e.stdout, "Resume sent to batch %s, but it is still paused.\n", id)
	}
	if p != nil {
		field(e.stdout, "progress", "%s", strings.Join(batchParts(p, "", false), " · "))
	}
	return nil
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func cmdBatchCancel(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "batch cancel", "[-wait] [-json] BATCH_ID", `
Cancels a batch with its "cancel" signal: it starts no new items, cancels
the running ones (their ComfyDeploy runs where the machine allows), waits
for them to report, writes the results manifest and ends with status
"cancelled". -wait follows it until then and prints the result.

Without -wait the exit code is 0 once the signal is sent. With -wait it
reflects the result: 3 cancelled (the expected outcome), 0 if it finished
before the cancel took effect, 1 if items failed.`)
	wait := fs.Bool("wait", false, "wait until the batch has ended and print its result")
	asJSON := fs.Bool("json", false, "print JSON on stdout")
	id, c, desc, err := batchKind.open(ctx, e, fs, args)
	if err != nil {
		return err
	}
	defer c.Close()
	if desc.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		r, err := batchReportOf(ctx, c, e, id, desc)
		if err != nil {
			return err
		}
		if !*asJSON {
			fmt.Fprintf(e.stdout, "Nothing to cancel: batch %s has already ended (%s).\n\n", id, r.ExecutionStatus)
		}
		return writeReport(e, *asJSON, r, printBatchReport)
	}
	if err := c.SignalWorkflow(ctx, id, "", workflows.CancelSignal, nil); err != nil {
		return c.temporalError("signal cancel", id, err)
	}
	if !*wait {
		if *asJSON {
			return writeJSON(e.stdout, map[string]string{"workflow_id": id, "cancel": "requested", "ui_url": c.uiLink(id)})
		}
		fmt.Fprintf(e.stdout, "Cancellation requested for batch %s: no new items start and the running ones are cancelled.\n", id)
		field(e.stdout, "follow", "starter batch watch %s   (or: starter batch cancel -wait %s)", id, id)
		field(e.stdout, "web ui", "%s", c.uiLink(id))
		return nil
	}
	return finishBatch(ctx, c, e, id, *asJSON)
}

func cmdBatchSetConcurrency(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "batch set-concurrency", "[-json] BATCH_ID N", fmt.Sprintf(`
Changes the maximum number of a batch's runs in flight, 1 to %d, with the
batch's "set-concurrency" update; it prints the previous and the new
value. Lowering it lets running items finish; it starts fewer new ones.

Exit codes: 0 changed, 2 bad N or the batch has ended, 4 not found or no
worker answered within %s.`, workflows.MaxBatchConcurrency, updateTimeout))
	asJSON := fs.Bool("json", false, "print {\"previous\": …, \"concurrency\": …} on stdout")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageErrorf("expected BATCH_ID N, got %d arguments: for example `starter batch set-concurrency comfybatch-20260101-120000-a1b2c3 20`", len(pos))
	}
	id := pos[0]
	n, err := parseConcurrency(pos[1])
	if err != nil {
		return withCode(exitUsage, err)
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	desc, err := runningBatch(ctx, c, id, "change")
	if err != nil {
		return err
	}
	uctx, cancel := context.WithTimeout(ctx, updateTimeout)
	defer cancel()
	h, err := c.UpdateWorkflow(uctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: workflows.SetConcurrencyUpdate, Args: []any{n},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var prev int
	if err == nil {
		err = h.Get(uctx, &prev)
	}
	if err != nil {
		var appErr *temporal.ApplicationError
		switch {
		case errors.As(err, &appErr):
			return usageErrorf("the batch refused concurrency %d: %s", n, appErr.Message())
		case uctx.Err() != nil && ctx.Err() == nil:
			return withCode(exitTemporal, fmt.Errorf("no answer within %s: is a worker running on task queue %q? (start one with `make dev` or bin/worker)", updateTimeout, desc.GetWorkflowExecutionInfo().GetTaskQueue()))
		}
		return c.temporalError("update set-concurrency", id, err)
	}
	if *asJSON {
		return writeJSON(e.stdout, map[string]any{"workflow_id": id, "previous": prev, "concurrency": n})
	}
	fmt.Fprintf(e.stdout, "Batch %s concurrency: %d → %d\n", id, prev, n)
	return nil
}

func parseConcurrency(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > workflows.MaxBatchConcurrency {
		return 0, fmt.Errorf("concurrency %q: use a whole number from 1 to %d", s, workflows.MaxBatchConcurrency)
	}
	return n, nil
}

func cmdBatchRetryFailed(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "batch retry-failed", "[-wait] [-json] [-task-queue Q] BATCH_ID", `
Re-runs a batch that has ended, under the same id and with the input it
was started with: items whose run succeeded before are skipped (their
ComfyRun ids cannot be reused), the failed, cancelled and never-started
ones run again. The new run rewrites the batch's results.jsonl, copying the
lines of the items that succeeded before, so it stays complete.

A running batch is refused (exit 2): wait for it, or cancel it first.`)
	wait := fs.Bool("wait", false, "follow the new run until it ends, then print the result")
	asJSON := fs.Bool("json", false, "print JSON on stdout")
	taskQueue := fs.String("task-queue", "", "task queue of the worker (default: the batch's own)")
	id, c, desc, err := batchKind.open(ctx, e, fs, args)
	if err != nil {
		return err
	}
	defer c.Close()
	info := desc.GetWorkflowExecutionInfo()
	if info.GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return usageErrorf("batch %s is still running: wait for it (`starter batch watch %s`) or cancel it (`starter batch cancel -wait %s`), then retry its failed items", id, id, id)
	}
	in, err := originalBatchInput(ctx, c, id, info.GetFirstRunId(), info.GetExecution().GetRunId())
	if err != nil {
		return err
	}
	tq := e.taskQueue(firstNonEmpty(*taskQueue, info.GetTaskQueue()))
	opts := batchStartOptions(in, id, tq)
	opts.StaticSummary = truncate("Retry of failed items · "+opts.StaticSummary, 200)
	opts.WorkflowIDReusePolicy = enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE
	wr, err := c.ExecuteWorkflow(ctx, opts, workflows.ComfyBatchWorkflow, in)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return usageErrorf("batch %s started again meanwhile (run %s): follow it with `starter batch watch %s`", id, started.RunId, id)
		}
		return c.temporalError("start workflow", id, err)
	}
	headline := fmt.Sprintf("Re-running batch %s with its original input; items that succeeded before are skipped.", wr.GetID())
	return afterStart(e, c, wr, tq, *wait, *asJSON, headline, batchKind.sub, func() error {
		return finishBatch(ctx, c, e, wr.GetID(), *asJSON)
	})
}

// originalBatchInput reads the input a batch was started with: the start
// event of its chain's first run. A later run's input (after
// continue-as-new) is the same plus the internal State, so it serves when
// the first run's history is gone (retention); State is cleared either way.
func originalBatchInput(ctx context.Context, c *conn, id, firstRunID, lastRunID string) (workflows.ComfyBatchInput, error) {
	var lastErr error
	for _, runID := range []string{firstRunID, lastRunID} {
		if runID == "" {
			continue
		}
		in, err := startInput(ctx, c, id, runID)
		if err == nil {
			return retryInput(in), nil
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = errors.New("the server did not name the batch's runs")
	}
	return workflows.ComfyBatchInput{}, withCode(exitTemporal, fmt.Errorf("read the input of batch %s: %v; start it again with `starter batch -f FILE -id NEW_ID`", id, lastErr))
}

// startInput decodes the input of one run from its first history event.
func startInput(ctx context.Context, c *conn, id, runID string) (workflows.ComfyBatchInput, error) {
	var in workflows.ComfyBatchInput
	it := c.GetWorkflowHistory(ctx, id, runID, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return in, fmt.Errorf("run %s has no history", runID)
	}
	ev, err := it.Next()
	if err != nil {
		return in, err
	}
	attrs := ev.GetWorkflowExecutionStartedEventAttributes()
	if attrs == nil || len(attrs.GetInput().GetPayloads()) == 0 {
		return in, fmt.Errorf("run %s: the first event holds no workflow input", runID)
	}
	in, err = decodeBatchPayload(attrs.GetInput().GetPayloads()[0])
	if err != nil {
		return in, fmt.Errorf("run %s: decode the input: %w", runID, err)
	}
	return in, nil
}

// decodeBatchPayload decodes a started event's ComfyBatchInput. JSON is
// decoded here rather than by the converter so numbers stay json.Number:
// a 64-bit seed must come back with every digit.
func decodeBatchPayload(p *commonpb.Payload) (workflows.ComfyBatchInput, error) {
	var in workflows.ComfyBatchInput
	if string(p.GetMetadata()[converter.MetadataEncoding]) == converter.MetadataEncodingJSON {
		dec := json.NewDecoder(bytes.NewReader(p.GetData()))
		dec.UseNumber()
		err := dec.Decode(&in)
		return in, err
	}
	err := converter.GetDefaultDataConverter().FromPayload(p, &in)
	return in, err
}

// retryInput is the input of a retry: the original without the state a
// continued run carries.
func retryInput(in workflows.ComfyBatchInput) workflows.ComfyBatchInput {
	in.State = nil
	return in
}
