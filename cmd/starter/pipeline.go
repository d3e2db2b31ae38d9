package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/pipeline"
	"github.com/durable-comfy/durable-comfy/workflows"
)

var pipelineKind = kind{workflowType: workflows.ComfyPipelineWorkflow, noun: "pipeline", sub: "pipeline "}

// maxParallelLimit mirrors the workflow's (unexported) bound on
// ComfyPipelineInput.MaxParallel.
const maxParallelLimit = 200

func pipelineSubcommands() []subcommand {
	return []subcommand{
		{"status", "[-json] PIPELINE_ID", "every step's state, runs and outputs; the result once it has ended", cmdPipelineStatus},
		{"watch", "[-json] PIPELINE_ID", "follow the steps until the pipeline ends, then print the result", cmdPipelineWatch},
	}
}

func cmdPipeline(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "pipeline", pipelineSubcommands(), cmdPipelineStart, args)
}

func cmdPipelineStart(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "pipeline", "-f FILE [-id ID] [-max-parallel N] [-wait] [-json]", `
Starts a ComfyPipeline: named steps, each a ComfyRun of one deployment,
whose inputs may reference earlier steps' outputs. FILE is the pipeline
spec as YAML or JSON (- for stdin); it is parsed and validated here first
(unknown fields, step names, references, cycles), and sent as it is: the
workflow validates it again and preflights every deployment before any
run is paid for.

  starter pipeline -f examples/pipeline-hero.yaml -wait
  starter pipeline -f hero.yaml -id hero-1 -label campaign=spring

`+subcommandHelp("pipeline", pipelineSubcommands())+`
Exit codes with -wait: 0 every step succeeded, 1 a step (or the
pipeline's checks) failed, 3 cancelled.`)
	file := fs.String("f", "", "read the pipeline spec from `FILE` (YAML or JSON; - for stdin)")
	id := fs.String("id", "", "workflow `ID` (default comfypipeline-<yyyymmdd-hhmmss>-<6 hex>, UTC); the id of a running workflow is refused")
	taskQueue := fs.String("task-queue", "", "task queue of the worker (default $COMFY_TASK_QUEUE or \""+defaultTaskQueue+"\")")
	maxParallel := fs.Int("max-parallel", 0, fmt.Sprintf("step runs in flight at once, 1 to %d (default: the workflow's, 20)", maxParallelLimit))
	var labels kvList
	fs.Var(&labels, "label", "label `key=value` copied into every step's manifest; repeatable")
	wait := fs.Bool("wait", false, "follow the steps on stderr until the pipeline ends, then print the result")
	asJSON := fs.Bool("json", false, "print machine-readable JSON on stdout")
	dryRun := fs.Bool("dry-run", false, "validate the spec and print the workflow input; start nothing")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q: the pipeline comes from -f FILE; the pipeline commands are %s", pos[0], subNames(pipelineSubcommands()))
	}
	in, spec, err := loadPipelineInput(e, *file)
	if err == nil {
		in.MaxParallel = *maxParallel
		in.Labels, err = parseLabels(labels)
		if len(in.Labels) == 0 {
			in.Labels = nil
		}
		if err == nil && (in.MaxParallel < 0 || in.MaxParallel > maxParallelLimit) {
			err = fmt.Errorf("-max-parallel %d: use 1 to %d", in.MaxParallel, maxParallelLimit)
		}
	}
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("invalid pipeline:\n%s", bullets(err)))
	}
	tq := e.taskQueue(*taskQueue)
	wid, err := e.idOrNew(*id, "comfypipeline")
	if err != nil {
		return err
	}
	if *dryRun {
		if !*asJSON {
			fmt.Fprintf(e.stdout, "Pipeline is valid (nothing started). Summary: %s\n\n", pipelineSummary(spec))
		}
		return writeJSON(e.stdout, in)
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	wr, err := c.ExecuteWorkflow(ctx, pipelineStartOptions(spec, wid, tq), workflows.ComfyPipelineWorkflow, in)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return usageErrorf("workflow id %q is already in use (run %s): pass a different -id, or omit -id for a generated one; see it with `starter pipeline status %s`", wid, started.RunId, wid)
		}
		return c.temporalError("start workflow", "", err)
	}
	headline := fmt.Sprintf("Started ComfyPipeline %s (%s)", wr.GetID(), pipelineSummary(spec))
	return afterStart(e, c, wr, tq, *wait, *asJSON, headline, pipelineKind.sub, func() error {
		return finishPipeline(ctx, c, e, wr.GetID(), wr.GetRunID(), *asJSON)
	})
}

// loadPipelineInput reads the spec file, checks it with the pipeline
// package (strict parse, then Validate) and wraps its text, unchanged, as
// the workflow input.
func loadPipelineInput(e *env, path string) (workflows.ComfyPipelineInput, *pipeline.Spec, error) {
	data, name, err := readDocFile(e, path, "pipeline spec")
	if err != nil {
		return workflows.ComfyPipelineInput{}, nil, err
	}
	spec, err := checkPipelineSpec(data, name)
	if err != nil {
		return workflows.ComfyPipelineInput{}, nil, err
	}
	return workflows.ComfyPipelineInput{SpecText: string(data)}, spec, nil
}

// checkPipelineSpec parses and validates a spec; every problem is one
// line of the error.
func checkPipelineSpec(data []byte, name string) (*pipeline.Spec, error) {
	spec, err := pipeline.Parse(data)
	if err == nil {
		err = pipeline.Validate(spec)
	}
	var perr *pipeline.Error
	if errors.As(err, &perr) {
		lines := make([]string, len(perr.Problems))
		for i, p := range perr.Problems {
			lines[i] = "-f " + name + ": " + p
		}
		return nil, errors.New(strings.Join(lines, "\n"))
	}
	if err != nil {
		return nil, fmt.Errorf("-f %s: %w", name, err)
	}
	return spec, nil
}

func pipelineStartOptions(spec *pipeline.Spec, wid, tq string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                                       wid,
		TaskQueue:                                tq,
		WorkflowIDConflictPolicy:                 enums.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            pipelineSummary(spec),
		StaticDetails:                            pipelineDetails(spec),
		TypedSearchAttributes:                    temporal.NewSearchAttributes(workflows.StatusKey.ValueSet("pending")),
	}
}

// pipelineSummary is the one line the UI shows in lists.
func pipelineSummary(spec *pipeline.Spec) string {
	names := make([]string, len(spec.Steps))
	for i, st := range spec.Steps {
		names[i] = st.Name
	}
	s := "ComfyPipeline"
	if spec.Name != "" {
		s += " " + truncate(oneLine(spec.Name), 40)
	}
	return truncate(fmt.Sprintf("%s · %s: %s", s, plural(len(spec.Steps), "step"), strings.Join(names, " → ")), 180)
}

// pipelineDetails is the markdown table of steps on the UI's page.
func pipelineDetails(spec *pipeline.Spec) string {
	var b strings.Builder
	if spec.Name != "" {
		fmt.Fprintf(&b, "**Pipeline:** %s\n\n", oneLine(spec.Name))
	}
	b.WriteString("| Step | Deployment | After | For each |\n|---|---|---|---|\n")
	for _, st := range spec.Steps {
		after := strings.Join(pipeline.Dependencies(st), ", ")
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s |\n", st.Name, st.Deployment, dash(after), dash(st.ForEach))
	}
	return b.String()
}

// pipelineReport is the -json shape of pipeline status, watch and -wait.
// Live is the progress query's answer while running; Result the final
// document (also recovered from a failure's or cancellation's details).
// Its exitCode is execution's.
type pipelineReport struct {
	execution
	Live      *workflows.ComfyPipelineResult `json:"live,omitempty"`
	LiveError string                         `json:"live_error,omitempty"`
	Result    *workflows.ComfyPipelineResult `json:"result,omitempty"`
	Error     *failureInfo                   `json:"error,omitempty"`
	UIURL     string                         `json:"ui_url"`
}

func newPipelineReport(c *conn, id string, desc *workflowservice.DescribeWorkflowExecutionResponse) *pipelineReport {
	return &pipelineReport{execution: newExecution(id, desc), UIURL: c.uiLink(id)}
}

func (r *pipelineReport) addOutcome(ctx context.Context, c *conn) error {
	var res workflows.ComfyPipelineResult
	o, err := fetchOutcome(ctx, c, pipelineKind.sub, r.WorkflowID, r.RunID, &res, func() bool { return res.WorkflowID != "" || len(res.Steps) > 0 })
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

func queryPipeline(ctx context.Context, c *conn, id, runID string) (*workflows.ComfyPipelineResult, error) {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	v, err := c.QueryWorkflow(qctx, id, runID, workflows.PipelineProgressQuery)
	if err != nil {
		return nil, err
	}
	var p workflows.ComfyPipelineResult
	if err := v.Get(&p); err != nil {
		return nil, fmt.Errorf("decode the progress query answer: %w", err)
	}
	return &p, nil
}

func cmdPipelineStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "pipeline status", "[-json] PIPELINE_ID", `
Prints a pipeline's status and every step: state, child workflows,
ComfyDeploy run ids, stored outputs (path and sha256) and errors. While it
runs this comes from its "progress" query (which needs a running worker).

The exit code reflects the pipeline: 0 running or succeeded, 1 failed,
3 cancelled, 4 not found.`)
	asJSON := fs.Bool("json", false, "print the report as JSON on stdout")
	id, c, desc, err := pipelineKind.open(ctx, e, fs, args)
	if err != nil {
		return err
	}
	defer c.Close()
	r := newPipelineReport(c, id, desc)
	if r.ExecutionStatus == "Running" {
		live, qerr := queryPipeline(ctx, c, id, r.RunID)
		if qerr != nil {
			r.LiveError = queryProblem(qerr, desc, e.now())
		}
		r.Live = live
	} else if err := r.addOutcome(ctx, c); err != nil {
		return err
	}
	return writeReport(e, *asJSON, r, printPipelineReport)
}

func cmdPipelineWatch(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "pipeline watch", "[-json] PIPELINE_ID", `
Follows a pipeline on stderr until it ends (on a terminal one redrawn
line with every step's state; otherwise a line per step whenever its
state changes), then prints the result like "pipeline status". Ctrl-C
stops watching; the pipeline goes on.`)
	asJSON := fs.Bool("json", false, "print the final report as JSON on stdout")
	id, c, desc, err := pipelineKind.open(ctx, e, fs, args)
	if err != nil {
		return err
	}
	defer c.Close()
	return finishPipeline(ctx, c, e, id, desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(), *asJSON)
}

func finishPipeline(ctx context.Context, c *conn, e *env, id, runID string, asJSON bool) error {
	t := &pipelineTracker{}
	p, desc, err := e.watch(ctx, c, pipelineKind.sub, id, runID, true, func(p *progressPrinter, desc *workflowservice.DescribeWorkflowExecutionResponse, runID string, elapsed time.Duration) {
		live, qerr := queryPipeline(ctx, c, id, runID)
		note := ""
		if qerr != nil {
			note = noWorkerNote(desc, e.now())
		}
		p.show(renderPipelineBar(live, note, elapsed), t.lines(live, note, elapsed)...)
	})
	if err != nil {
		return err
	}
	r := newPipelineReport(c, id, desc)
	if err := r.addOutcome(ctx, c); err != nil {
		return err
	}
	if r.Result != nil && !e.stderrTTY {
		// The log ends with each step's final state, which the last poll
		// may not have seen.
		p.show("", t.lines(r.Result, "", ranFor(r.StartTime, r.CloseTime))...)
	}
	return writeReport(e, asJSON, r, printPipelineReport)
}

// stepLine is a step's compact state: "upscale running · 1/3 runs
// succeeded", "txt2img succeeded · run r-1 · 1 output".
func stepLine(sp workflows.StepProgress) string {
	parts := []string{sp.Name + " " + sp.State}
	done, outputs := 0, 0
	for _, r := range sp.Runs {
		if r.State == workflows.StepSucceeded {
			done++
		}
		outputs += len(r.Outputs)
	}
	switch {
	case sp.ForEach != "" || len(sp.Runs) > 1:
		parts = append(parts, fmt.Sprintf("%d/%d runs succeeded", done, len(sp.Runs)))
	case len(sp.Runs) == 1 && sp.Runs[0].RunID != "":
		parts = append(parts, "run "+sp.Runs[0].RunID)
	}
	if outputs > 0 {
		parts = append(parts, plural(outputs, "output"))
	}
	if sp.Error != "" && sp.State != workflows.StepRunning {
		parts = append(parts, truncate(oneLine(sp.Error), 160))
	}
	return strings.Join(parts, " · ")
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// renderPipelineBar is the redrawn terminal line: the status and each
// step's state in a word (with run counts for fan-outs).
func renderPipelineBar(res *workflows.ComfyPipelineResult, note string, elapsed time.Duration) string {
	if res == nil {
		return firstNonEmpty(note, "starting") + " · " + formatElapsed(elapsed)
	}
	parts := []string{res.Status}
	for _, sp := range res.Steps {
		s := sp.Name + " " + sp.State
		if sp.ForEach != "" || len(sp.Runs) > 1 {
			done := 0
			for _, r := range sp.Runs {
				if r.State == workflows.StepSucceeded {
					done++
				}
			}
			s += fmt.Sprintf(" %d/%d", done, len(sp.Runs))
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " · ") + " · " + formatElapsed(elapsed)
}

// pipelineTracker turns successive progress answers into log lines: one
// when the pipeline's status changes and one per step whose compact state
// changed since the last answer.
type pipelineTracker struct {
	status string
	steps  map[string]string
}

func (t *pipelineTracker) lines(res *workflows.ComfyPipelineResult, note string, elapsed time.Duration) []string {
	stamp := "[" + formatElapsed(elapsed) + "] "
	if res == nil {
		key := "note:" + firstNonEmpty(note, "starting")
		if key == t.status {
			return nil
		}
		t.status = key
		return []string{stamp + firstNonEmpty(note, "starting")}
	}
	var out []string
	if res.Status != t.status {
		t.status = res.Status
		out = append(out, stamp+"pipeline "+res.Status)
	}
	if t.steps == nil {
		t.steps = map[string]string{}
	}
	for _, sp := range res.Steps {
		line := stepLine(sp)
		if t.steps[sp.Name] == line {
			continue
		}
		// A step still pending at the start is not news.
		if _, seen := t.steps[sp.Name]; !seen && sp.State == workflows.StepPending {
			t.steps[sp.Name] = line
			continue
		}
		t.steps[sp.Name] = line
		out = append(out, stamp+line)
	}
	return out
}

func pipelineHeadline(r *pipelineReport, doc *workflows.ComfyPipelineResult) string {
	switch r.ExecutionStatus {
	case "Completed":
		return "succeeded"
	case "Canceled":
		return "cancelled"
	case "Running":
		if doc != nil && doc.Status != "" {
			return doc.Status
		}
		return "running"
	case "":
		return "unknown state"
	}
	return strings.ToLower(r.ExecutionStatus)
}

// printPipelineReport is the human view of pipeline status, watch and -wait.
func printPipelineReport(w io.Writer, r *pipelineReport) {
	doc := r.Result
	if doc == nil {
		doc = r.Live
	}
	head := "ComfyPipeline " + r.WorkflowID
	if doc != nil && doc.Name != "" {
		head += " (" + doc.Name + ")"
	}
	fmt.Fprintf(w, "%s %s\n", head, pipelineHeadline(r, doc))
	field(w, "temporal run", "%s", r.RunID)
	timeField(w, r.StartTime, r.CloseTime)
	if r.LiveError != "" && r.ExecutionStatus == "Running" {
		field(w, "progress", "unavailable: %s", r.LiveError)
	}
	if doc != nil {
		for _, sp := range doc.Steps {
			state := sp.State
			if sp.ForEach != "" {
				state += " · for each " + sp.ForEach
			}
			field(w, sp.Name, "%s · %s", state, sp.DeploymentID)
			for _, run := range sp.Runs {
				line := run.WorkflowID + " · " + run.State
				if run.RunID != "" {
					line += " · run " + run.RunID
				}
				if sp.ForEach != "" {
					line = fmt.Sprintf("#%d ", run.Index) + line
				}
				fmt.Fprintf(w, "%s%s\n", continuation, line)
				for _, o := range run.Outputs {
					fmt.Fprintf(w, "%s  %s · sha256 %s\n", continuation, o.Path, o.SHA256)
				}
				if run.ManifestPath != "" {
					fmt.Fprintf(w, "%s  manifest %s\n", continuation, run.ManifestPath)
				}
				if run.Error != "" && run.Error != sp.Error {
					fmt.Fprintf(w, "%s  error: %s\n", continuation, oneLine(run.Error))
				}
			}
			if sp.Error != "" {
				fmt.Fprintf(w, "%serror: %s\n", continuation, oneLine(sp.Error))
			}
		}
		if doc.FailedStep != "" {
			field(w, "failed step", "%s", doc.FailedStep)
		}
	}
	if r.Error != nil {
		printFailure(w, r.Error)
	} else if doc != nil && doc.Error != "" {
		field(w, "error", "%s", doc.Error)
	}
	field(w, "web ui", "%s", r.UIURL)
}
