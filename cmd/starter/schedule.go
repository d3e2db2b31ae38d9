package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/workflows"
)

// Memo keys of the schedules the starter creates: the server keeps cron
// expressions only as structured calendars, so the text is kept here.
const (
	memoCron = "cron"
	memoFile = "file"
)

func scheduleSubcommands() []subcommand {
	return []subcommand{
		{"create", "-kind batch|pipeline -f FILE -cron EXPR [flags]", "start a batch or pipeline on a cron schedule", cmdScheduleCreate},
		{"list", "[-json]", "list schedules: id, workflow type, cron, next run, paused", cmdScheduleList},
		{"delete", "SCHEDULE_ID", "delete a schedule (workflows it started keep running)", cmdScheduleDelete},
	}
}

func cmdSchedule(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprintf(e.stdout, "Usage: starter schedule <command> [flags]\n\nRuns batches and pipelines on a cron schedule (Temporal Schedules).\n\n%s\n%s", subcommandHelp("schedule", scheduleSubcommands()), exitCodesHelp)
		return nil
	}
	return dispatch(ctx, e, "schedule", scheduleSubcommands(), nil, args)
}

// cronFields bounds each field of a 5-field cron expression; names
// (JAN, MON) are accepted in month and day-of-week.
var cronFields = []struct {
	name     string
	min, max int
}{
	{"minute", 0, 59}, {"hour", 0, 23}, {"day of month", 1, 31}, {"month", 1, 12}, {"day of week", 0, 7},
}

// checkCron checks the shape of a standard 5-field cron expression
// (minute hour day-of-month month day-of-week): the field count, the
// characters, and the numbers' ranges. Temporal parses it for real.
func checkCron(expr string) error {
	fields := strings.Fields(expr)
	if len(fields) != 5 {
		return fmt.Errorf("-cron %q has %d fields; use the 5 fields minute hour day-of-month month day-of-week, for example \"0 3 * * *\" (every day at 03:00 UTC) or \"*/30 * * * 1-5\"", expr, len(fields))
	}
	for i, f := range fields {
		spec := cronFields[i]
		for part := range strings.SplitSeq(f, ",") {
			if err := checkCronPart(part, spec.min, spec.max, i >= 3); err != nil {
				return fmt.Errorf("-cron %q: %s field %q: %v", expr, spec.name, f, err)
			}
		}
	}
	return nil
}

func checkCronPart(part string, lo, hi int, names bool) error {
	if part == "" {
		return errors.New("empty list element")
	}
	rng, step, hasStep := strings.Cut(part, "/")
	if hasStep {
		if n, err := strconv.Atoi(step); err != nil || n < 1 {
			return fmt.Errorf("step %q must be a positive number", step)
		}
	}
	if rng == "*" || rng == "?" {
		return nil
	}
	a, b, isRange := strings.Cut(rng, "-")
	vals := []string{a}
	if isRange {
		vals = append(vals, b)
	}
	for _, v := range vals {
		if v == "" {
			return fmt.Errorf("%q is not a number, range (1-5) or *", part)
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			if names && len(v) == 3 && isLetters(v) {
				continue
			}
			return fmt.Errorf("%q is not a number from %d to %d", v, lo, hi)
		}
		if n < lo || n > hi {
			return fmt.Errorf("%d is outside %d to %d", n, lo, hi)
		}
	}
	return nil
}

func isLetters(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// scheduleAction builds the workflow action of a schedule from its file:
// a ComfyBatch or a ComfyPipeline, checked as `batch` and `pipeline` would.
func scheduleAction(e *env, kindName, file, scheduleID, tq string) (*client.ScheduleWorkflowAction, error) {
	act := &client.ScheduleWorkflowAction{ID: scheduleID + "-run", TaskQueue: tq}
	switch kindName {
	case "batch":
		in, err := loadBatchInput(e, file)
		if err != nil {
			return nil, fmt.Errorf("invalid batch:\n%s", bullets(err))
		}
		act.Workflow, act.Args = workflows.ComfyBatchWorkflow, []any{in}
		act.StaticSummary, act.StaticDetails = batchSummary(in), batchDetails(in)
		act.TypedSearchAttributes = batchSearchAttributes(in)
	case "pipeline":
		in, spec, err := loadPipelineInput(e, file)
		if err != nil {
			return nil, fmt.Errorf("invalid pipeline:\n%s", bullets(err))
		}
		act.Workflow, act.Args = workflows.ComfyPipelineWorkflow, []any{in}
		act.StaticSummary, act.StaticDetails = pipelineSummary(spec), pipelineDetails(spec)
		act.TypedSearchAttributes = temporal.NewSearchAttributes(workflows.StatusKey.ValueSet("pending"))
	case "":
		return nil, errors.New("missing -kind: use -kind batch (a ComfyBatchInput file) or -kind pipeline (a pipeline spec)")
	default:
		return nil, fmt.Errorf("-kind %q: use batch or pipeline", kindName)
	}
	return act, nil
}

func cmdScheduleCreate(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "schedule create", "-kind batch|pipeline -f FILE -cron EXPR [-id SCHEDULE_ID] [flags]", `
Creates a Temporal Schedule that starts a ComfyBatch or a ComfyPipeline
from FILE (checked now, as "starter batch" and "starter pipeline" check
it) on a 5-field cron expression, in UTC unless -tz says otherwise. A
start due while the previous one still runs is skipped (overlap SKIP).
Each start's workflow id is "<schedule id>-run-<time>".

  starter schedule create -kind batch -f examples/batch-catalog.json -cron "0 3 * * *"
  starter schedule create -kind pipeline -f examples/pipeline-hero.yaml \
      -cron "30 6 * * 1-5" -tz Europe/Berlin -id hero-weekdays -paused

Exit codes: 0 created, 2 bad flags or file, or the schedule id exists,
4 Temporal unreachable.`)
	kindName := fs.String("kind", "", "what to start: `batch` or pipeline")
	file := fs.String("f", "", "the ComfyBatchInput or pipeline spec `FILE` (JSON or YAML; - for stdin)")
	cron := fs.String("cron", "", "5-field cron `EXPR`: minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\"")
	id := fs.String("id", "", "schedule `ID` (default comfy<kind>-schedule-<yyyymmdd-hhmmss>-<6 hex>)")
	taskQueue := fs.String("task-queue", "", "task queue of the worker (default $COMFY_TASK_QUEUE or \""+defaultTaskQueue+"\")")
	tz := fs.String("tz", "", "IANA time zone `NAME` the cron expression is read in (default UTC)")
	paused := fs.Bool("paused", false, "create the schedule paused (unpause it in the Web UI or with `temporal schedule toggle --unpause`)")
	note := fs.String("note", "", "note `TEXT` shown with the schedule (why it exists, who owns it)")
	asJSON := fs.Bool("json", false, "print machine-readable JSON on stdout")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q: quote the cron expression, for example -cron \"0 3 * * *\"", pos[0])
	}
	var problems []error
	if strings.TrimSpace(*cron) == "" {
		problems = append(problems, errors.New("missing -cron: pass a 5-field cron expression such as -cron \"0 3 * * *\" (every day at 03:00)"))
	} else if err := checkCron(*cron); err != nil {
		problems = append(problems, err)
	}
	if *tz != "" {
		if _, err := time.LoadLocation(*tz); err != nil {
			problems = append(problems, fmt.Errorf("-tz %q: not a known IANA time zone (for example UTC, Europe/Berlin, America/New_York)", *tz))
		}
	}
	sid := strings.TrimSpace(*id)
	if sid == "" && *kindName != "" {
		if sid, err = newID("comfy"+*kindName+"-schedule", e.now(), nil); err != nil {
			return withCode(exitUsage, err)
		}
	}
	tq := e.taskQueue(*taskQueue)
	act, err := scheduleAction(e, *kindName, *file, sid, tq)
	if err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return withCode(exitUsage, errors.Join(problems...))
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	expr := strings.Join(strings.Fields(*cron), " ")
	opts := client.ScheduleOptions{
		ID:      sid,
		Spec:    client.ScheduleSpec{CronExpressions: []string{expr}, TimeZoneName: *tz},
		Action:  act,
		Overlap: enums.SCHEDULE_OVERLAP_POLICY_SKIP,
		Paused:  *paused,
		Note:    *note,
		Memo:    map[string]any{memoCron: expr, memoFile: *file},
	}
	h, err := c.ScheduleClient().Create(ctx, opts)
	if err != nil {
		if errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
			return usageErrorf("schedule %q already exists: pass a different -id, or delete it first with `starter schedule delete %s`", sid, sid)
		}
		return c.temporalError("create schedule", "", err)
	}
	var next []time.Time
	if d, err := h.Describe(ctx); err == nil {
		next = d.Info.NextActionTimes
	}
	if *asJSON {
		out := scheduleRow{ID: sid, WorkflowType: act.Workflow.(string), Cron: expr, TimeZone: *tz, Paused: *paused, Note: *note}
		if len(next) > 0 {
			out.NextRun = &next[0]
		}
		return writeJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Created schedule %s: %s on \"%s\"%s\n", sid, act.Workflow, expr, prefixed(" in ", *tz))
	switch {
	case *paused:
		field(e.stdout, "state", "paused: unpause with `temporal schedule toggle --schedule-id %s --unpause --reason ...`", sid)
	case len(next) > 0:
		field(e.stdout, "next run", "%s", next[0].Local().Format(time.DateTime+" MST"))
	}
	field(e.stdout, "workflow ids", "%s-<time>", act.ID)
	field(e.stdout, "web ui", "%s/namespaces/%s/schedules/%s", c.uiBase, c.namespace, sid)
	return nil
}

// scheduleRow is one line of `schedule list` and its -json element.
type scheduleRow struct {
	ID           string     `json:"schedule_id"`
	WorkflowType string     `json:"workflow_type"`
	Cron         string     `json:"cron"`
	TimeZone     string     `json:"time_zone,omitempty"`
	NextRun      *time.Time `json:"next_run,omitempty"`
	Paused       bool       `json:"paused"`
	Note         string     `json:"note,omitempty"`
}

// memoString reads a string memo field ("" when absent or not a string).
func memoString(m *common.Memo, key string) string {
	p := m.GetFields()[key]
	if p == nil {
		return ""
	}
	var s string
	if converter.GetDefaultDataConverter().FromPayload(p, &s) != nil {
		return ""
	}
	return s
}

// scheduleRowOf reads a list entry. The cron text comes from the memo the
// starter writes; other schedules show their calendars in cron form.
func scheduleRowOf(en *client.ScheduleListEntry) scheduleRow {
	row := scheduleRow{ID: en.ID, WorkflowType: en.WorkflowType.Name, Paused: en.Paused, Note: en.Note, Cron: memoString(en.Memo, memoCron)}
	if en.Spec != nil {
		row.TimeZone = en.Spec.TimeZoneName
		if row.Cron == "" {
			row.Cron = specCron(en.Spec)
		}
	}
	if len(en.NextActionTimes) > 0 {
		t := en.NextActionTimes[0]
		row.NextRun = &t
	}
	return row
}

// specCron renders a schedule spec compactly: cron expressions, calendars
// in cron form, intervals as "every 1h".
func specCron(s *client.ScheduleSpec) string {
	var out []string
	out = append(out, s.CronExpressions...)
	for _, c := range s.Calendars {
		out = append(out, strings.Join([]string{ranges(c.Minute), ranges(c.Hour), ranges(c.DayOfMonth), ranges(c.Month), ranges(c.DayOfWeek)}, " "))
	}
	for _, iv := range s.Intervals {
		out = append(out, "every "+iv.Every.String())
	}
	return strings.Join(out, "; ")
}

// ranges renders calendar ranges as a cron field; none is "*".
func ranges(rs []client.ScheduleRange) string {
	if len(rs) == 0 {
		return "*"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		s := strconv.Itoa(r.Start)
		if r.End > r.Start {
			s += "-" + strconv.Itoa(r.End)
		}
		if r.Step > 1 {
			s += "/" + strconv.Itoa(r.Step)
		}
		parts[i] = s
	}
	return strings.Join(parts, ",")
}

func cmdScheduleList(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "schedule list", "[-json]", `
Lists the namespace's schedules: id, the workflow type each starts, its
cron expression, next run and whether it is paused. The list comes from
Temporal's visibility store, so a schedule created a moment ago may take
a second to appear.`)
	asJSON := fs.Bool("json", false, "print a JSON array on stdout")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q: schedule list takes only -json", pos[0])
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	it, err := c.ScheduleClient().List(ctx, client.ScheduleListOptions{PageSize: 100})
	if err != nil {
		return c.temporalError("list schedules", "", err)
	}
	rows := []scheduleRow{}
	for it.HasNext() {
		en, err := it.Next()
		if err != nil {
			return c.temporalError("list schedules", "", err)
		}
		rows = append(rows, scheduleRowOf(en))
	}
	if *asJSON {
		return writeJSON(e.stdout, rows)
	}
	printSchedules(e.stdout, rows)
	return nil
}

func printSchedules(w io.Writer, rows []scheduleRow) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "No schedules. Create one with `starter schedule create -kind batch|pipeline -f FILE -cron \"0 3 * * *\"`.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEDULE ID\tWORKFLOW\tCRON\tNEXT RUN\tPAUSED")
	for _, r := range rows {
		next := "-"
		if r.NextRun != nil && !r.Paused {
			next = r.NextRun.Local().Format(time.DateTime)
		}
		cron := dash(r.Cron)
		if r.TimeZone != "" {
			cron += " (" + r.TimeZone + ")"
		}
		paused := "no"
		if r.Paused {
			paused = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, dash(r.WorkflowType), cron, next, paused)
	}
	_ = tw.Flush()
}

func cmdScheduleDelete(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "schedule delete", "SCHEDULE_ID", `
Deletes a schedule. Workflows it already started are not affected: cancel
them with "starter batch cancel" or "temporal workflow cancel".

Exit codes: 0 deleted, 2 no id given, 4 not found or Temporal unreachable.`)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || strings.TrimSpace(pos[0]) == "" {
		return usageErrorf("expected one schedule id, got %d arguments: use `starter schedule delete SCHEDULE_ID` (find ids with `starter schedule list`)", len(pos))
	}
	sid := pos[0]
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.ScheduleClient().GetHandle(ctx, sid).Delete(ctx); err != nil {
		if isNotFound(err) {
			return withCode(exitTemporal, fmt.Errorf("schedule %q not found in namespace %q: check the id with `starter schedule list`", sid, c.namespace))
		}
		return c.temporalError("delete schedule", "", err)
	}
	fmt.Fprintf(e.stdout, "Deleted schedule %s; workflows it started keep running.\n", sid)
	return nil
}
