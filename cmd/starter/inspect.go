package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/preflight"
	"github.com/durable-comfy/durable-comfy/workflows"
)

// execution is what DescribeWorkflowExecution says about a workflow. It
// is embedded, untagged, as the first field of every -json report
// (report, batchReport, pipelineReport), so encoding/json inlines its
// fields at the front of each.
type execution struct {
	WorkflowID      string     `json:"workflow_id"`
	RunID           string     `json:"run_id"`
	ExecutionStatus string     `json:"execution_status"`
	TaskQueue       string     `json:"task_queue,omitempty"`
	StartTime       *time.Time `json:"start_time,omitempty"`
	CloseTime       *time.Time `json:"close_time,omitempty"`
}

// report is everything the CLI knows about one workflow; it is the -json
// shape of status, watch, run -wait and cancel -wait.
type report struct {
	execution
	// Live is the status query's answer; LiveError says why it is missing.
	Live      *workflows.RunStatus      `json:"live,omitempty"`
	LiveError string                    `json:"live_error,omitempty"`
	Heartbeat *activities.PollState     `json:"heartbeat,omitempty"`
	Result    *workflows.ComfyRunResult `json:"result,omitempty"`
	Error     *failureInfo              `json:"error,omitempty"`
	UIURL     string                    `json:"ui_url"`
}

// failureInfo is a workflow failure reduced to what a user can act on.
type failureInfo struct {
	Type     string   `json:"type"`
	Message  string   `json:"message"`
	Problems []string `json:"problems,omitempty"`
}

// exitCode maps the workflow's state to the documented exit codes; a
// running workflow counts as success for `status`. report and
// pipelineReport use it as is; batchReport refines it.
func (x *execution) exitCode() int {
	switch x.ExecutionStatus {
	case "Completed", "Running", "":
		return exitOK
	case "Canceled":
		return exitCancelled
	default:
		return exitFailed
	}
}

func executionStatus(s enums.WorkflowExecutionStatus) string {
	if s == enums.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED {
		return ""
	}
	return s.String()
}

// newReport fills what DescribeWorkflowExecution says.
func newReport(c *conn, workflowID string, desc *workflowservice.DescribeWorkflowExecutionResponse) *report {
	return &report{
		execution: newExecution(workflowID, desc),
		Heartbeat: awaitState(desc),
		UIURL:     c.uiLink(workflowID),
	}
}

// newExecution reads the common report fields from DescribeWorkflowExecution.
func newExecution(workflowID string, desc *workflowservice.DescribeWorkflowExecutionResponse) execution {
	info := desc.GetWorkflowExecutionInfo()
	x := execution{
		WorkflowID:      workflowID,
		RunID:           info.GetExecution().GetRunId(),
		ExecutionStatus: executionStatus(info.GetStatus()),
		TaskQueue:       info.GetTaskQueue(),
	}
	if t := info.GetStartTime(); t != nil {
		v := t.AsTime()
		x.StartTime = &v
	}
	if t := info.GetCloseTime(); t != nil {
		v := t.AsTime()
		x.CloseTime = &v
	}
	return x
}

// addOutcome reads the result of a closed workflow, or its failure and
// the partial result the workflow attaches to it.
func (r *report) addOutcome(ctx context.Context, c *conn) error {
	var res workflows.ComfyRunResult
	o, err := fetchOutcome(ctx, c, "", r.WorkflowID, r.RunID, &res, func() bool { return res.WorkflowID != "" || res.DeploymentID != "" })
	if err != nil {
		return err
	}
	if o.hasResult {
		r.Result = &res
	}
	if o.status == "Terminated" && o.fail != nil && o.fail.Type == "Terminated" {
		// Unlike a batch or pipeline, a terminated run leaves a paid
		// remote run behind, which the user must hear about.
		o.fail.Message += "; its ComfyDeploy run was not cancelled by it"
	}
	r.Error = o.fail
	r.ExecutionStatus = o.statusAfter(r.ExecutionStatus)
	return nil
}

func statusOfError(err error) string {
	var canceledErr *temporal.CanceledError
	var timeoutErr *temporal.TimeoutError
	var termErr *temporal.TerminatedError
	switch {
	case errors.As(err, &canceledErr):
		return "Canceled"
	case errors.As(err, &termErr):
		return "Terminated"
	case errors.As(err, &timeoutErr):
		return "TimedOut"
	default:
		return "Failed"
	}
}

// describe fetches a workflow's description, mapping errors to exit codes.
func describe(ctx context.Context, c *conn, workflowID string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		return nil, c.temporalError("describe workflow", workflowID, err)
	}
	// A batch or pipeline id gets pointed at its own commands.
	if t := desc.GetWorkflowExecutionInfo().GetType().GetName(); t != "" && t != workflows.ComfyRunWorkflow {
		return nil, usageErrorf("workflow %s is a %s, not a %s: %s", workflowID, t, workflows.ComfyRunWorkflow, commandFor(t, workflowID))
	}
	return desc, nil
}

// finish follows a workflow until it closes and prints its result.
func finish(ctx context.Context, c *conn, e *env, workflowID, runID string, asJSON bool, print func(io.Writer, *report)) error {
	desc, err := follow(ctx, c, e, workflowID, runID)
	if err != nil {
		return err
	}
	r := newReport(c, workflowID, desc)
	if err := r.addOutcome(ctx, c); err != nil {
		return err
	}
	return writeReport(e, asJSON, r, print)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "status", "[-json] WORKFLOW_ID", `
Prints a run's phase, ComfyDeploy run id and status, progress, attempts,
stored outputs (path, sha256, size), manifest path and error. The live part
comes from the workflow's "status" query, which needs a running worker;
without one the rest is still shown.

The exit code reflects the workflow: 0 running or succeeded, 1 failed,
3 cancelled, 4 not found.`)
	asJSON := fs.Bool("json", false, "print the report as JSON on stdout")
	id, c, desc, err := openRun(ctx, e, fs, args)
	if err != nil {
		return err
	}
	defer c.Close()
	r := newReport(c, id, desc)
	st, qerr := queryStatus(ctx, c, id, r.RunID)
	if qerr != nil {
		r.LiveError = queryProblem(qerr, desc, e.now())
	}
	r.Live = st
	if r.ExecutionStatus != "Running" {
		if err := r.addOutcome(ctx, c); err != nil {
			return err
		}
	}
	return writeReport(e, *asJSON, r, printReport)
}

// queryProblem explains a failed status query in terms of its usual cause.
func queryProblem(err error, desc *workflowservice.DescribeWorkflowExecutionResponse, now time.Time) string {
	if note := noWorkerNote(desc, now); note != "" {
		return note
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "the status query timed out: is a worker running on task queue " + desc.GetWorkflowExecutionInfo().GetTaskQueue() + "? (start one with `make dev` or bin/worker)"
	}
	return "the status query failed: " + err.Error()
}

func cmdWatch(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "watch", "[-json] WORKFLOW_ID", `
Follows a run with a progress bar on stderr (one line per change when
stderr is not a terminal) until the workflow ends, then prints the result
like "run -wait". Ctrl-C stops watching; the run continues.`)
	asJSON := fs.Bool("json", false, "print the final report as JSON on stdout")
	id, c, desc, err := openRun(ctx, e, fs, args)
	if err != nil {
		return err
	}
	defer c.Close()
	return finish(ctx, c, e, id, desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(), *asJSON, printReport)
}

// hints add the next step for failures whose message says what happened
// but not what to do.
var hints = map[string]string{
	workflows.ErrTypeRunFailed:            "see the run's logs in the ComfyDeploy dashboard; pass -max-attempts N to resubmit failed runs automatically",
	workflows.ErrTypeRunTimedOut:          "raise -queue-timeout or -execution-timeout, or pass -max-attempts N -retry-on timeout",
	workflows.ErrTypeRunCancelled:         "the run was cancelled outside this workflow (for example in the ComfyDeploy dashboard); start it again if that was a mistake",
	workflows.ErrTypeInvalidWorkflowInput: "fix the input listed above and start again",
	workflows.ErrTypeStepFailed:           "fix the cause in the failed step's error above, then start the pipeline again",
	preflight.KindInvalidInput:            "fix the inputs listed above (names and types must match the deployment's external inputs) and start again",
	preflight.KindDeploymentNotFound:      "check -deployment, and that the worker's COMFY_API_KEY belongs to the deployment's organisation",
	preflight.KindMachineNotReady:         "wait for the machine to finish building, or check it in the ComfyDeploy dashboard",
	preflight.KindMissingCustomNodes:      "install the listed custom nodes on the machine and rebuild it",
	preflight.KindMachineTypeUnsupported:  "use a deployment on a supported machine type",
	activities.ErrTypeUnauthorized:        "set a valid COMFY_API_KEY for the worker and restart it",
	activities.ErrTypeForbidden:           "check the ComfyDeploy account's credits and the API key's scope",
	activities.ErrTypeOutputTooLarge:      "raise COMFY_MAX_OUTPUT_BYTES on the worker, or pass -skip-outputs",
	activities.ErrTypeRejectedByAPI:       "ComfyDeploy rejected the request; check the deployment id and inputs",
	activities.ErrTypeRunNotFound:         "the run is unknown to ComfyDeploy; check that the worker uses the organisation's API key",
}

const labelWidth = 12

func field(w io.Writer, label, format string, args ...any) {
	fmt.Fprintf(w, "  %-*s %s\n", labelWidth, label, fmt.Sprintf(format, args...))
}

// timeField is the "time" line of every report: start, and once closed
// the close time and duration.
func timeField(w io.Writer, start, closed *time.Time) {
	if start == nil {
		return
	}
	s := start.Local().Format(time.DateTime)
	if closed != nil {
		s += fmt.Sprintf(" → %s (%s)", closed.Local().Format(time.TimeOnly), closed.Sub(*start).Round(time.Second))
	}
	field(w, "time", "%s", s)
}

// continuation indents follow-up lines under a field's value.
var continuation = strings.Repeat(" ", labelWidth+3)

// printReport is the human view shared by status, watch and run -wait.
func printReport(w io.Writer, r *report) {
	head := r.ExecutionStatus
	switch r.ExecutionStatus {
	case "Completed":
		head = "succeeded"
	case "Canceled":
		head = "cancelled"
	case "Running":
		head = "running"
	case "":
		head = "unknown state"
	default:
		head = strings.ToLower(head)
	}
	fmt.Fprintf(w, "ComfyRun %s %s\n", r.WorkflowID, head)
	field(w, "temporal run", "%s", r.RunID)
	timeField(w, r.StartTime, r.CloseTime)

	st := r.Live
	var res *workflows.ComfyRunResult = r.Result
	if st != nil && r.ExecutionStatus == "Running" {
		phase := st.Phase
		if st.Attempt > 0 {
			phase += fmt.Sprintf(" · attempt %d of %d", st.Attempt, st.MaxAttempts)
		}
		field(w, "phase", "%s", phase)
	}
	if r.LiveError != "" && r.ExecutionStatus == "Running" {
		field(w, "live status", "unavailable: %s", r.LiveError)
	}

	// The ComfyDeploy run line: the heartbeat is freshest while running,
	// the result is final once closed.
	runID, status, deployment, machine := "", "", "", ""
	progress, live := -1.0, ""
	if res != nil {
		runID, status, deployment, machine = res.RunID, res.Status, res.DeploymentID, res.MachineName
	}
	if st != nil {
		deployment = firstNonEmpty(deployment, st.DeploymentID)
		machine = firstNonEmpty(machine, st.MachineName)
		if res == nil {
			runID, status, progress, live = st.RunID, st.Status, st.Progress, st.LiveStatus
		}
	}
	if hb := r.Heartbeat; hb != nil && r.ExecutionStatus == "Running" && (runID == "" || hb.RunID == runID) && hb.Status != "" &&
		ahead(hb, &workflows.RunStatus{Status: status, Progress: max(progress, 0)}) {
		runID, status, progress, live = hb.RunID, hb.Status, hb.Progress, hb.LiveStatus
	}
	if deployment != "" {
		d := deployment
		if machine != "" {
			d += " on " + machine
		}
		field(w, "deployment", "%s", d)
	}
	if runID != "" {
		line := runID
		if status != "" {
			line += " · " + status
		}
		if progress >= 0 && r.ExecutionStatus == "Running" {
			line += fmt.Sprintf(" · %s %d%%", bar(progress, barWidth), percent(progress))
		}
		if live != "" {
			line += " · " + oneLine(live)
		}
		field(w, "comfy run", "%s", line)
	}

	attempts := []activities.Attempt(nil)
	if res != nil {
		attempts = res.Attempts
	} else if st != nil {
		attempts = st.Attempts
	}
	for i, a := range attempts {
		label := ""
		if i == 0 {
			label = "attempts"
		}
		field(w, label, "%s", formatAttempt(a, r.ExecutionStatus == "Running"))
	}

	outputs, manifest := []activities.StoredOutput(nil), ""
	if res != nil {
		outputs, manifest = res.Outputs, res.ManifestPath
	} else if st != nil {
		outputs, manifest = st.Outputs, st.ManifestPath
	}
	for i, o := range outputs {
		label := ""
		if i == 0 {
			label = "outputs"
		}
		field(w, label, "%s", o.Path)
		fmt.Fprintf(w, "%ssha256 %s · %s%s\n", continuation, o.SHA256, formatSize(o.Size), prefixed(" · ", o.ContentType))
	}
	if res != nil && len(res.Texts) > 0 {
		field(w, "texts", "%d text output(s), in the manifest", len(res.Texts))
	}
	if manifest != "" {
		field(w, "manifest", "%s", manifest)
	}
	if res != nil && res.Cancel != nil {
		field(w, "cancel", "%s", cancelSummary(res.Cancel))
	}
	if r.Error != nil {
		printFailure(w, r.Error)
	} else if st != nil && st.Error != "" {
		field(w, "error", "%s", st.Error)
	} else if res != nil && res.Error != "" {
		field(w, "error", "%s", res.Error)
	}
	field(w, "web ui", "%s", r.UIURL)
}

func printFailure(w io.Writer, f *failureInfo) {
	field(w, "error", "%s: %s", f.Type, f.Message)
	for _, p := range f.Problems {
		fmt.Fprintf(w, "%s- %s\n", continuation, p)
	}
	if h := hints[f.Type]; h != "" {
		field(w, "fix", "%s", h)
	}
}

// formatAttempt shows one attempt. An attempt without an end time still
// carries the "not-started" it was submitted with, which would read as a
// ComfyDeploy status; it is shown as in progress or unfinished instead.
func formatAttempt(a activities.Attempt, running bool) string {
	s := fmt.Sprintf("#%d", a.Number)
	if a.RunID != "" {
		s += " run " + a.RunID
	} else {
		s += " (no run id)"
	}
	status := a.Status
	if a.EndedAt.IsZero() && (status == "" || status == "not-started") {
		status = "unfinished"
		if running {
			status = "in progress"
		}
	}
	s += " · " + status
	if a.DeadlineExceeded != "" {
		s += " · " + a.DeadlineExceeded + " deadline passed"
	}
	var times []string
	if a.QueueSeconds > 0 {
		times = append(times, "queued "+secs(a.QueueSeconds))
	}
	if a.RunSeconds > 0 {
		times = append(times, "ran "+secs(a.RunSeconds))
	}
	if a.GPU != "" {
		times = append(times, a.GPU)
	}
	if len(times) > 0 {
		s += " (" + strings.Join(times, ", ") + ")"
	}
	if a.Error != "" {
		s += ": " + oneLine(a.Error)
	}
	return s
}

func secs(f float64) string {
	return (time.Duration(f * float64(time.Second))).Round(100 * time.Millisecond).String()
}

func formatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// listFlags are the filters of `list`.
type listFlags struct {
	deployment  string
	comfyStatus string
	runID       string
	status      string
	raw         string
}

// executionStatuses maps the -status spellings people type to the
// visibility query's ExecutionStatus values.
var executionStatuses = map[string]string{
	"running":          "Running",
	"completed":        "Completed",
	"succeeded":        "Completed",
	"failed":           "Failed",
	"canceled":         "Canceled",
	"cancelled":        "Canceled",
	"terminated":       "Terminated",
	"timedout":         "TimedOut",
	"timed-out":        "TimedOut",
	"timed_out":        "TimedOut",
	"continuedasnew":   "ContinuedAsNew",
	"continued-as-new": "ContinuedAsNew",
}

// buildListQuery turns the list filters into a visibility query. It always
// restricts to ComfyRun so other workflows in the namespace stay out.
func buildListQuery(f listFlags) (string, error) {
	clauses := []string{fmt.Sprintf("WorkflowType = '%s'", workflows.ComfyRunWorkflow)}
	add := func(flagName, attr, v string) error {
		v = strings.TrimSpace(v)
		if v == "" {
			return nil
		}
		if strings.ContainsAny(v, `'"\`) {
			return fmt.Errorf("-%s %q: quotes and backslashes are not allowed; use -query for a custom expression", flagName, v)
		}
		clauses = append(clauses, fmt.Sprintf("%s = '%s'", attr, v))
		return nil
	}
	if err := add("deployment", workflows.DeploymentIDKey.GetName(), f.deployment); err != nil {
		return "", err
	}
	if err := add("comfy-status", workflows.StatusKey.GetName(), f.comfyStatus); err != nil {
		return "", err
	}
	if err := add("run-id", workflows.RunIDKey.GetName(), f.runID); err != nil {
		return "", err
	}
	if s := strings.TrimSpace(f.status); s != "" {
		v, ok := executionStatuses[strings.ToLower(s)]
		if !ok {
			return "", fmt.Errorf("-status %q: use running, completed, failed, canceled, terminated, timed-out or continued-as-new", s)
		}
		clauses = append(clauses, fmt.Sprintf("ExecutionStatus = '%s'", v))
	}
	if raw := strings.TrimSpace(f.raw); raw != "" {
		clauses = append(clauses, "("+raw+")")
	}
	return strings.Join(clauses, " AND "), nil
}

// listRow is one line of `list` and one element of its -json array.
type listRow struct {
	WorkflowID      string    `json:"workflow_id"`
	RunID           string    `json:"run_id"`
	ExecutionStatus string    `json:"execution_status"`
	ComfyStatus     string    `json:"comfy_status,omitempty"`
	ComfyRunID      string    `json:"comfy_run_id,omitempty"`
	DeploymentID    string    `json:"deployment_id,omitempty"`
	StartTime       time.Time `json:"start_time"`
	CloseTime       time.Time `json:"close_time,omitzero"`
	UIURL           string    `json:"ui_url"`
}

func keyword(sa *common.SearchAttributes, name string) string {
	p := sa.GetIndexedFields()[name]
	if p == nil {
		return ""
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &s); err != nil {
		return ""
	}
	return s
}

func cmdList(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "list", "[flags]", `
Lists ComfyRun workflows, newest first, filtered with the Comfy* search
attributes. Filters combine with AND.

Examples:
  starter list -comfy-status failed
  starter list -deployment de000000-0000-4000-8000-000000000001 -status running
  starter list -query "StartTime > '2026-01-01T00:00:00Z'" -limit 100 -json`)
	var f listFlags
	fs.StringVar(&f.deployment, "deployment", "", "only runs of this ComfyDeploy deployment id (ComfyDeploymentId)")
	fs.StringVar(&f.comfyStatus, "comfy-status", "", "only runs whose ComfyDeploy status is this (ComfyStatus changes with the phase: pending, not-started, success, failed, timeout, cancelled, rejected; use -status running for runs in flight)")
	fs.StringVar(&f.runID, "run-id", "", "only the workflow of this ComfyDeploy run id (ComfyRunId)")
	fs.StringVar(&f.status, "status", "", "only workflows in this state: running, completed, failed, canceled, terminated, timed-out")
	fs.StringVar(&f.raw, "query", "", "extra visibility query, ANDed with the filters (see Temporal's List Filter docs)")
	limit := fs.Int("limit", 20, "show at most this many workflows")
	asJSON := fs.Bool("json", false, "print a JSON array on stdout")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q: list takes only flags (filters such as -deployment, -comfy-status, -query)", pos[0])
	}
	if *limit <= 0 {
		return usageErrorf("-limit %d: use a positive number", *limit)
	}
	query, err := buildListQuery(f)
	if err != nil {
		return withCode(exitUsage, err)
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	var rows []listRow
	var token []byte
	for len(rows) < *limit {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: c.namespace, PageSize: int32(min(*limit-len(rows), 1000)), NextPageToken: token, Query: query,
		})
		if err != nil {
			return listError(c, query, err)
		}
		for _, ex := range resp.GetExecutions() {
			sa := ex.GetSearchAttributes()
			row := listRow{
				WorkflowID:      ex.GetExecution().GetWorkflowId(),
				RunID:           ex.GetExecution().GetRunId(),
				ExecutionStatus: executionStatus(ex.GetStatus()),
				ComfyStatus:     keyword(sa, workflows.StatusKey.GetName()),
				ComfyRunID:      keyword(sa, workflows.RunIDKey.GetName()),
				DeploymentID:    keyword(sa, workflows.DeploymentIDKey.GetName()),
				StartTime:       ex.GetStartTime().AsTime(),
				UIURL:           c.uiLink(ex.GetExecution().GetWorkflowId()),
			}
			if ex.GetCloseTime() != nil {
				row.CloseTime = ex.GetCloseTime().AsTime()
			}
			rows = append(rows, row)
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			break
		}
	}
	rows = rows[:min(len(rows), *limit)]
	if *asJSON {
		if rows == nil {
			rows = []listRow{}
		}
		return writeJSON(e.stdout, rows)
	}
	printList(e.stdout, rows)
	return nil
}

func printList(w io.Writer, rows []listRow) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "No ComfyRun workflows match.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKFLOW ID\tSTATUS\tCOMFY STATUS\tCOMFY RUN ID\tSTARTED")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.WorkflowID, r.ExecutionStatus, dash(r.ComfyStatus), dash(r.ComfyRunID), r.StartTime.Local().Format(time.DateTime))
	}
	_ = tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// listError separates a bad -query (the user's to fix, exit 2) from
// Temporal being unreachable or unconfigured.
func listError(c *conn, query string, err error) error {
	msg := strings.ToLower(err.Error())
	if strings.Contains(msg, "search attribute") || strings.Contains(msg, "not defined") {
		return c.temporalError("list workflows", "", err)
	}
	if isInvalidArgument(err) {
		return usageErrorf("the visibility query was rejected: %v\n  query: %s\n  fix -query (Temporal's List Filter syntax, e.g. \"StartTime > '2026-01-01T00:00:00Z'\")", err, query)
	}
	return c.temporalError("list workflows", "", err)
}
