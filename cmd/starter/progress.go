package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/workflows"
)

const (
	pollEvery    = time.Second
	queryTimeout = 3 * time.Second
	// noWorkerAfter is how long a workflow task may sit unclaimed before
	// the bar says that no worker is polling the task queue.
	noWorkerAfter = 5 * time.Second
	barWidth      = 20
)

// snapshot is what one progress line shows: the workflow's phase and
// attempt from the status query, and the freshest run state available.
type snapshot struct {
	Phase       string
	Attempt     int
	MaxAttempts int
	RunID       string
	Status      string
	Progress    float64
	LiveStatus  string
	Elapsed     time.Duration
	// Note replaces the phase when the query cannot answer, e.g. "no worker".
	Note string
}

// statusRank orders ComfyDeploy statuses along a run's life, so the
// fresher of two observations of the same run can be told apart.
var statusRank = map[string]int{"not-started": 1, "queued": 2, "started": 3, "running": 4, "uploading": 5}

func rank(status string) int {
	if status == "" {
		return 0
	}
	if r, ok := statusRank[status]; ok {
		return r
	}
	return 6 // terminal
}

// ahead reports whether heartbeat hb has seen more of the run than the
// workflow has. The heartbeat is recorded on every poll but reaches the
// server throttled (to 80% of the heartbeat timeout), while the workflow
// hears of each ProgressStep through a signal; either can be the fresher.
func ahead(hb *activities.PollState, st *workflows.RunStatus) bool {
	if st == nil {
		return true
	}
	if rank(hb.Status) != rank(st.Status) {
		return rank(hb.Status) > rank(st.Status)
	}
	return hb.Progress >= st.Progress
}

// snapshotOf merges the status query (authoritative for phase and
// attempt) with AwaitRun's last heartbeat, whichever is further along.
func snapshotOf(st *workflows.RunStatus, hb *activities.PollState, elapsed time.Duration) snapshot {
	s := snapshot{Elapsed: elapsed}
	if st != nil {
		s.Phase, s.Attempt, s.MaxAttempts = st.Phase, st.Attempt, st.MaxAttempts
		s.RunID, s.Status, s.Progress, s.LiveStatus = st.RunID, st.Status, st.Progress, st.LiveStatus
	}
	if hb != nil && hb.Status != "" && (st == nil || st.Phase == workflows.PhaseWaiting) && (s.RunID == "" || hb.RunID == s.RunID) && ahead(hb, st) {
		s.RunID, s.Status, s.Progress, s.LiveStatus = hb.RunID, hb.Status, hb.Progress, hb.LiveStatus
		if s.Phase == "" {
			s.Phase = workflows.PhaseWaiting
		}
	}
	return s
}

func percent(p float64) int {
	return int(min(max(p, 0), 1)*100 + 0.5)
}

// bar draws a fraction in [0,1] as a fixed-width text bar.
func bar(fraction float64, width int) string {
	fraction = min(max(fraction, 0), 1)
	filled := int(fraction*float64(width) + 0.5)
	return strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
}

// parts is the text shared by the terminal bar and the log line.
func (s snapshot) parts(withBar bool) []string {
	var parts []string
	switch {
	case s.Note != "":
		parts = append(parts, s.Note)
	case s.Phase != "":
		parts = append(parts, s.Phase)
	default:
		parts = append(parts, "starting")
	}
	if s.Attempt > 0 && s.MaxAttempts > 1 {
		parts = append(parts, fmt.Sprintf("attempt %d/%d", s.Attempt, s.MaxAttempts))
	}
	if s.Status != "" {
		st := s.Status
		if s.RunID != "" || s.Phase == workflows.PhaseWaiting {
			if withBar {
				st += " " + bar(s.Progress, barWidth)
			}
			st += fmt.Sprintf(" %3d%%", percent(s.Progress))
		}
		parts = append(parts, st)
	}
	if s.LiveStatus != "" {
		parts = append(parts, oneLine(s.LiveStatus))
	}
	return parts
}

// renderBar is the one-line terminal view, cut to width so that \r can
// redraw it: a wrapped line would leave its first row behind.
func renderBar(s snapshot, width int) string {
	line := strings.Join(s.parts(true), " · ") + " · " + formatElapsed(s.Elapsed)
	if width > 1 {
		line = truncate(line, width-1)
	}
	return line
}

// renderLine is the log view for pipes and CI: no bar, elapsed first so
// lines read as a timeline.
func renderLine(s snapshot) string {
	return "[" + formatElapsed(s.Elapsed) + "] " + strings.Join(s.parts(false), " · ")
}

// changeKey says when a log line is worth printing: phase, attempt,
// status or progress decile changed. Live status is left out because it
// changes on every node and would flood CI logs.
func changeKey(s snapshot) string {
	return strings.Join([]string{s.Note, s.Phase, strconv.Itoa(s.Attempt), s.RunID, s.Status, strconv.Itoa(int(min(max(s.Progress, 0), 1) * 10))}, "|")
}

func formatElapsed(d time.Duration) string {
	d = d.Round(time.Second)
	if d < time.Hour {
		return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
}

// progressPrinter draws snapshots on stderr: a redrawn bar on a terminal,
// otherwise a new line only when something worth logging changed.
type progressPrinter struct {
	w     io.Writer
	tty   bool
	width int
	last  string
	drawn bool
}

func newProgressPrinter(w io.Writer, tty bool, columns string) *progressPrinter {
	width := 100
	if n, err := strconv.Atoi(strings.TrimSpace(columns)); err == nil && n > 20 {
		width = n
	}
	return &progressPrinter{w: w, tty: tty, width: width}
}

func (p *progressPrinter) update(s snapshot) {
	if p.tty {
		p.redraw(renderBar(s, p.width))
		return
	}
	if k := changeKey(s); k != p.last {
		p.last = k
		fmt.Fprintln(p.w, renderLine(s))
	}
}

// redraw replaces the terminal line with line, which must fit the width.
func (p *progressPrinter) redraw(line string) {
	// \x1b[K clears what a longer previous line left behind.
	fmt.Fprint(p.w, "\r"+line+"\x1b[K")
	p.drawn = true
}

// show is update for views other than a ComfyRun's: on a terminal it
// redraws bar (cut to the width); otherwise it prints each log line, which
// the caller has already reduced to the ones worth logging.
func (p *progressPrinter) show(bar string, lines ...string) {
	if p.tty {
		if p.width > 1 {
			bar = truncate(bar, p.width-1)
		}
		p.redraw(bar)
		return
	}
	for _, l := range lines {
		fmt.Fprintln(p.w, l)
	}
}

// done ends the bar's line so later output starts on a fresh one.
func (p *progressPrinter) done() {
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// awaitState is the last heartbeat of the pending AwaitRun, or nil.
func awaitState(desc *workflowservice.DescribeWorkflowExecutionResponse) *activities.PollState {
	if _, ps, ok := activities.PendingWait(desc); ok {
		return &ps
	}
	return nil
}

// noWorkerNote explains a workflow task nobody has picked up: the usual
// reason a fresh run sits at "starting" is that no worker is running.
func noWorkerNote(desc *workflowservice.DescribeWorkflowExecutionResponse, now time.Time) string {
	wt := desc.GetPendingWorkflowTask()
	if wt == nil || wt.GetState() != enums.PENDING_WORKFLOW_TASK_STATE_SCHEDULED {
		return ""
	}
	if st := wt.GetScheduledTime(); st == nil || now.Sub(st.AsTime()) < noWorkerAfter {
		return ""
	}
	tq := desc.GetWorkflowExecutionInfo().GetTaskQueue()
	return fmt.Sprintf("no worker is polling task queue %q: start one with `make dev` or bin/worker", tq)
}

// follow polls a running workflow every second, drawing progress, until it
// closes. It pins the run id so a later run reusing the id is not followed.
func follow(ctx context.Context, c *conn, e *env, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	_, desc, err := e.watch(ctx, c, "", workflowID, runID, true, func(p *progressPrinter, desc *workflowservice.DescribeWorkflowExecutionResponse, runID string, elapsed time.Duration) {
		st, _ := queryStatus(ctx, c, workflowID, runID)
		s := snapshotOf(st, awaitState(desc), elapsed)
		if st == nil {
			s.Note = noWorkerNote(desc, e.now())
		}
		p.update(s)
	})
	return desc, err
}

// watch is the follow loop of watch and -wait for every kind: poll (see
// there for sub, runID and pin) with a progress printer on stderr, which
// tick draws on with how long the workflow has run. The printer comes
// back with its line ended, for log lines the last poll missed.
func (e *env) watch(ctx context.Context, c *conn, sub, workflowID, runID string, pin bool,
	tick func(p *progressPrinter, desc *workflowservice.DescribeWorkflowExecutionResponse, runID string, elapsed time.Duration),
) (*progressPrinter, *workflowservice.DescribeWorkflowExecutionResponse, error) {
	p := newProgressPrinter(e.stderr, e.stderrTTY, e.getenv("COLUMNS"))
	desc, err := poll(ctx, c, e, sub, workflowID, runID, pin, func(desc *workflowservice.DescribeWorkflowExecutionResponse, runID string) {
		tick(p, desc, runID, e.now().Sub(desc.GetWorkflowExecutionInfo().GetStartTime().AsTime()))
	})
	p.done()
	return p, desc, err
}

// ranFor is how long a closed workflow ran, for the final log line; 0
// when the times are unknown.
func ranFor(start, closed *time.Time) time.Duration {
	if start == nil || closed == nil {
		return 0
	}
	return closed.Sub(*start)
}

// poll describes a workflow every second and calls tick while it runs,
// until it closes; it returns the closed workflow's description. With pin
// it sticks to the first run it sees (or runID); without, it follows the
// id's latest run, which is how a workflow that continues as new (a
// batch) is followed to its end. sub is the command group ("", "batch ",
// "pipeline ") whose watch and cancel an interruption names.
func poll(ctx context.Context, c *conn, e *env, sub, workflowID, runID string, pin bool,
	tick func(desc *workflowservice.DescribeWorkflowExecutionResponse, runID string)) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	var lastErr error
	var failingSince time.Time
	for {
		desc, err := c.DescribeWorkflowExecution(ctx, workflowID, runID)
		switch {
		case err == nil:
			failingSince = time.Time{}
		case ctx.Err() != nil:
			return nil, interruptedIn(sub, workflowID)
		case isNotFound(err):
			return nil, c.temporalError("describe workflow", workflowID, err)
		default:
			// A Temporal restart or network blip should not end a long
			// watch; give up only after it lasts.
			if failingSince.IsZero() {
				failingSince = e.now()
			}
			lastErr = err
			if e.now().Sub(failingSince) > 30*time.Second {
				return nil, c.temporalError("describe workflow", workflowID, lastErr)
			}
		}
		if desc != nil {
			info := desc.GetWorkflowExecutionInfo()
			current := info.GetExecution().GetRunId()
			if pin && runID == "" {
				runID = current
			}
			if info.GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
				return desc, nil
			}
			tick(desc, current)
		}
		select {
		case <-ctx.Done():
			return nil, interruptedIn(sub, workflowID)
		case <-time.After(pollEvery):
		}
	}
}

// queryStatus asks the workflow for its RunStatus with a short timeout: a
// query waits for a worker, and the bar must keep moving without one.
func queryStatus(ctx context.Context, c *conn, workflowID, runID string) (*workflows.RunStatus, error) {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	v, err := c.QueryWorkflow(qctx, workflowID, runID, workflows.StatusQuery)
	if err != nil {
		return nil, err
	}
	var st workflows.RunStatus
	if err := v.Get(&st); err != nil {
		return nil, fmt.Errorf("decode the status query answer: %w", err)
	}
	return &st, nil
}

func interrupted(workflowID string) error { return interruptedIn("", workflowID) }

// interruptedIn is interrupted for the commands of group sub ("batch ").
func interruptedIn(sub, workflowID string) error {
	return withCode(exitInterrupted, fmt.Errorf("stopped watching; workflow %s keeps running: follow it again with `starter %swatch %s`, or cancel it with `starter %scancel %s`", workflowID, sub, workflowID, sub, workflowID))
}
