package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/durable-comfy/durable-comfy/workflows"
)

func cmdRun(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "run", "-deployment ID [-input key=value]... [flags]", `
Starts a ComfyRun workflow: one durable ComfyDeploy run with preflight,
deadlines, optional retries and output collection. The input comes from
flags, or from a ComfyRunInput JSON file (-f) with flags overriding its
fields. -input values are JSON when they parse as JSON (numbers, booleans,
lists, "quoted strings") and plain text otherwise:

  starter run -deployment de000000-0000-4000-8000-000000000001 \
      -input prompt="a cat in a hat" -input steps=20 -input seed=42 -wait
  starter run -f run.json -input seed=7 -label campaign=spring
  echo '{"deployment_id": "…", "inputs": {"prompt": "a cat"}}' | starter run -f -

Without -wait it prints the workflow id and returns; follow the run later
with "starter watch ID".`)
	var f runFlags
	fs.StringVar(&f.deployment, "deployment", "", "ComfyDeploy deployment `ID` (UUID from the dashboard); required unless the -f file has deployment_id")
	fs.Var(&f.inputs, "input", "deployment input as `key=value`; repeatable. The value is JSON if it parses (20, true, [1,2], \"\\\"text\\\"\"), else text")
	fs.Var(&f.labels, "label", "label `key=value` copied into the manifest; repeatable")
	fs.StringVar(&f.file, "f", "", "read a ComfyRunInput JSON document from `FILE` (- for stdin); other flags override its fields")
	fs.StringVar(&f.gpu, "gpu", "", "GPU `NAME`: "+strings.Join(workflows.KnownGPUs, ", ")+" (the deployment's own setting wins)")
	fs.DurationVar(&f.queueTimeout, "queue-timeout", 0, "deadline for queueing and cold start, e.g. 10m (default: the worker's, 15m)")
	fs.DurationVar(&f.executionTimeout, "execution-timeout", 0, "deadline for execution, e.g. 30m (default: the worker's, 30m)")
	fs.DurationVar(&f.pollInterval, "poll-interval", 0, "interval between ComfyDeploy status polls (default: the worker's, 2s)")
	fs.IntVar(&f.maxAttempts, "max-attempts", 0, "total paid runs allowed, 1 to 10 (default 1: no resubmission)")
	fs.StringVar(&f.retryOn, "retry-on", "", "outcomes that are resubmitted: `failed,timeout` (default both, when -max-attempts > 1)")
	fs.BoolVar(&f.skipOutputs, "skip-outputs", false, "leave outputs at ComfyDeploy instead of downloading them (their URLs expire in about an hour)")
	fs.StringVar(&f.outputFolder, "output-folder", "", "`NAME` of the run's folder in the output store (default: the workflow id)")
	id := fs.String("id", "", "workflow `ID` (default comfyrun-<yyyymmdd-hhmmss>-<6 hex>, UTC); the id of a running workflow is refused, a closed one's starts a new run")
	taskQueue := fs.String("task-queue", "", "task queue of the worker (default $COMFY_TASK_QUEUE or \""+defaultTaskQueue+"\")")
	wait := fs.Bool("wait", false, "follow the run with a progress bar on stderr until it ends, then print the result")
	asJSON := fs.Bool("json", false, "print machine-readable JSON on stdout")
	dryRun := fs.Bool("dry-run", false, "validate and print the workflow input and the equivalent temporal CLI command; start nothing")

	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q: pass inputs as -input key=value (quote values with spaces: -input prompt=\"a cat\")", pos[0])
	}
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })

	in, err := loadInput(e, f)
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("invalid input:\n%s", bullets(err)))
	}
	tq := e.taskQueue(*taskQueue)
	wid := strings.TrimSpace(*id)
	if wid == "" {
		if wid, err = newWorkflowID(e.now(), nil); err != nil {
			return withCode(exitUsage, err)
		}
	}

	if *dryRun {
		return printDryRun(e.stdout, in, wid, tq, *asJSON)
	}

	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	opts := client.StartWorkflowOptions{
		ID:        wid,
		TaskQueue: tq,
		// FAIL, with the error surfaced, so a reused -id never silently
		// attaches to someone else's run and its bill.
		WorkflowIDConflictPolicy:                 enums.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            staticSummary(in),
		StaticDetails:                            staticDetails(in),
		TypedSearchAttributes:                    workflows.StartSearchAttributes(in.DeploymentID),
	}
	wr, err := c.ExecuteWorkflow(ctx, opts, workflows.ComfyRunWorkflow, in)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return usageErrorf("workflow id %q is already in use (run %s): pass a different -id, or omit -id for a generated one; see the existing run with `starter status %s`", wid, started.RunId, wid)
		}
		return c.temporalError("start workflow", "", err)
	}

	return afterStart(e, c, wr, tq, *wait, *asJSON, "Started ComfyRun "+wr.GetID(), "", func() error {
		return finish(ctx, c, e, wr.GetID(), wr.GetRunID(), *asJSON, printReport)
	})
}

// loadInput reads the -f document, if any, and lays the flags over it.
func loadInput(e *env, f runFlags) (workflows.ComfyRunInput, error) {
	var base workflows.ComfyRunInput
	if f.file != "" {
		var r io.Reader
		name := f.file
		if f.file == "-" {
			r, name = e.stdin, "(stdin)"
		} else {
			file, err := os.Open(f.file)
			if err != nil {
				return base, fmt.Errorf("-f: %w: pass the path of a ComfyRunInput JSON file, or - for stdin", err)
			}
			defer file.Close()
			r = file
		}
		var err error
		if base, err = decodeInputFile(r, name); err != nil {
			return base, err
		}
	}
	return buildInput(base, f)
}

// bullets formats a (joined) error as an indented list, one fix a line.
func bullets(err error) string {
	var b strings.Builder
	for line := range strings.SplitSeq(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			b.WriteString("  - " + line + "\n")
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// startedInfo is what every start prints once the workflow exists.
type startedInfo struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
	Namespace  string `json:"namespace"`
	TaskQueue  string `json:"task_queue"`
	UIURL      string `json:"ui_url"`
}

// print leads with headline and, unless the command goes on to wait,
// says how to follow the workflow with the watch of group sub ("batch ").
func (s startedInfo) print(w io.Writer, headline, sub string, waiting bool) {
	fmt.Fprintln(w, headline)
	field(w, "temporal run", "%s", s.RunID)
	field(w, "web ui", "%s", s.UIURL)
	if !waiting {
		field(w, "follow", "starter %swatch %s", sub, s.WorkflowID)
	}
}

// afterStart is the end of run, batch, pipeline and retry-failed: print
// what was started (JSON only when not waiting, since -wait's JSON is the
// final report) and, with wait, follow it to the end with finish.
func afterStart(e *env, c *conn, wr client.WorkflowRun, tq string, wait, asJSON bool, headline, sub string, finish func() error) error {
	started := startedInfo{WorkflowID: wr.GetID(), RunID: wr.GetRunID(), Namespace: c.namespace, TaskQueue: tq, UIURL: c.uiLink(wr.GetID())}
	switch {
	case asJSON && !wait:
		return writeJSON(e.stdout, started)
	case !asJSON:
		started.print(e.stdout, headline, sub, wait)
	}
	if !wait {
		return nil
	}
	return finish()
}

// printDryRun shows exactly what would be sent, and the temporal CLI line
// that sends the same thing, which is handy for scripts and bug reports.
func printDryRun(w io.Writer, in workflows.ComfyRunInput, wid, tq string, asJSON bool) error {
	if asJSON {
		return writeJSON(w, in)
	}
	cmd, err := temporalCommand(in, wid, tq)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Input is valid (nothing started). Summary: %s\n\n", staticSummary(in))
	if err := writeJSON(w, in); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nThe same start with the temporal CLI:\n  %s\n", cmd)
	return nil
}
