package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/durable-comfy/durable-comfy/workflows"
)

func batchEnded(p *workflows.BatchProgress) int {
	return p.Succeeded + p.Failed + p.Skipped + p.Cancelled
}

// formatGPU shows GPU time in seconds, the unit budgets use, with a
// readable duration once it is long.
func formatGPU(secs float64) string {
	s := fmt.Sprintf("GPU %.0fs", secs)
	if secs >= 3600 {
		s += " (" + formatElapsed(time.Duration(secs*float64(time.Second))) + ")"
	}
	return s
}

// batchParts is the text shared by the batch's terminal line, its log
// lines and the status view. note replaces the phase when the progress
// query cannot answer (p is nil then).
func batchParts(p *workflows.BatchProgress, note string, withBar bool) []string {
	if p == nil {
		if note == "" {
			note = "starting"
		}
		return []string{note}
	}
	phase := p.Phase
	if phase == "" {
		phase = "starting"
	}
	parts := []string{phase}
	if p.Paused && phase != workflows.BatchPhasePaused {
		parts = append(parts, "paused")
	}
	if p.StoppedBy != "" && p.StoppedBy != workflows.StoppedByCancel { // the phase says cancelling
		parts = append(parts, "stopped by "+p.StoppedBy)
	}
	ended := batchEnded(p)
	switch {
	case p.Total > 0 && withBar:
		parts = append(parts, fmt.Sprintf("%s %d/%d", bar(float64(ended)/float64(p.Total), barWidth), ended, p.Total))
	case p.Total > 0:
		parts = append(parts, fmt.Sprintf("%d/%d done", ended, p.Total))
	default:
		parts = append(parts, fmt.Sprintf("%d done", ended))
	}
	counts := fmt.Sprintf("%d succeeded · %d failed", p.Succeeded, p.Failed)
	if p.Skipped > 0 {
		counts += fmt.Sprintf(" · %d skipped", p.Skipped)
	}
	if p.Cancelled > 0 {
		counts += fmt.Sprintf(" · %d cancelled", p.Cancelled)
	}
	parts = append(parts, counts)
	if p.MaxConcurrency > 0 { // live (a final result has no window)
		parts = append(parts, fmt.Sprintf("%d/%d running", p.Running, p.MaxConcurrency), fmt.Sprintf("%d pending", p.Pending))
	}
	gpu := formatGPU(p.GPUSeconds)
	if p.EstimatedCostUSD > 0 {
		gpu += fmt.Sprintf(" ~$%.2f", p.EstimatedCostUSD)
	}
	parts = append(parts, gpu)
	if p.RatePerMinute > 0 {
		parts = append(parts, fmt.Sprintf("%.1f/min", p.RatePerMinute))
	}
	if p.ETA != "" {
		parts = append(parts, "ETA "+p.ETA)
	}
	return parts
}

// renderBatchBar is the redrawn terminal line; the printer cuts it to width.
func renderBatchBar(p *workflows.BatchProgress, note string, elapsed time.Duration) string {
	return strings.Join(batchParts(p, note, true), " · ") + " · " + formatElapsed(elapsed)
}

// renderBatchLine is the log line for pipes and CI.
func renderBatchLine(p *workflows.BatchProgress, note string, elapsed time.Duration) string {
	return "[" + formatElapsed(elapsed) + "] " + strings.Join(batchParts(p, note, false), " · ")
}

// batchChangeKey says when a log line is worth printing: the phase,
// pause, stop, concurrency or a whole percent of items ended changed (or,
// with the total unknown, another ten items ended). A large batch thus
// logs at most about a hundred progress lines.
func batchChangeKey(p *workflows.BatchProgress, note string) string {
	if p == nil {
		return "note|" + note
	}
	step := batchEnded(p) / 10
	if p.Total > 0 {
		step = batchEnded(p) * 100 / p.Total
	}
	return strings.Join([]string{p.Phase, strconv.FormatBool(p.Paused), p.StoppedBy, strconv.Itoa(p.MaxConcurrency), strconv.Itoa(p.Total), strconv.Itoa(step)}, "|")
}

// batchHeadline names how a batch stands in a few words.
func batchHeadline(r *batchReport) string {
	switch {
	case r.Result != nil:
		s := strings.ReplaceAll(r.Result.Status, "_", " ")
		if r.Result.StoppedBy != "" && r.Result.Status != workflows.BatchCancelled {
			s += " by " + r.Result.StoppedBy
		}
		return s
	case r.ExecutionStatus == "Running":
		if r.Progress != nil && r.Progress.Phase != "" {
			return "running (" + r.Progress.Phase + ")"
		}
		return "running"
	case r.ExecutionStatus == "Canceled":
		return "cancelled"
	case r.ExecutionStatus == "":
		return "unknown state"
	}
	return strings.ToLower(r.ExecutionStatus)
}

// printBatchReport is the human view of batch status, watch and -wait.
func printBatchReport(w io.Writer, r *batchReport) {
	fmt.Fprintf(w, "ComfyBatch %s %s\n", r.WorkflowID, batchHeadline(r))
	field(w, "temporal run", "%s", r.RunID)
	timeField(w, r.StartTime, r.CloseTime)
	if p := r.Progress; p != nil && r.Result == nil {
		ended := batchEnded(p)
		items := fmt.Sprintf("%d done", ended)
		if p.Total > 0 {
			items = fmt.Sprintf("%s %d/%d", bar(float64(ended)/float64(p.Total), barWidth), ended, p.Total)
		}
		field(w, "items", "%s · %d succeeded · %d failed · %d skipped · %d cancelled", items, p.Succeeded, p.Failed, p.Skipped, p.Cancelled)
		field(w, "in flight", "%d running (at most %d) · %d pending", p.Running, p.MaxConcurrency, p.Pending)
		if p.Paused {
			field(w, "paused", "yes: resume with `starter batch resume %s`", r.WorkflowID)
		}
		if p.StoppedBy != "" {
			field(w, "stopped by", "%s: no new items start; running ones finish", p.StoppedBy)
		}
		gpu := strings.TrimPrefix(formatGPU(p.GPUSeconds), "GPU ")
		if p.EstimatedCostUSD > 0 {
			gpu += fmt.Sprintf(" · ~$%.2f estimated", p.EstimatedCostUSD)
		}
		field(w, "gpu time", "%s", gpu)
		if p.RatePerMinute > 0 {
			rate := fmt.Sprintf("%.1f items/min", p.RatePerMinute)
			if p.ETA != "" {
				rate += " · ETA " + p.ETA
			}
			field(w, "rate", "%s", rate)
		}
	}
	if r.ProgressError != "" && r.ExecutionStatus == "Running" {
		field(w, "progress", "unavailable: %s", r.ProgressError)
	}
	if res := r.Result; res != nil {
		items := fmt.Sprintf("%d succeeded · %d failed · %d skipped · %d cancelled", res.Succeeded, res.Failed, res.Skipped, res.Cancelled)
		if res.Total > 0 {
			items = fmt.Sprintf("%d in all · ", res.Total) + items
		}
		if res.NotStarted > 0 {
			items += fmt.Sprintf(" · %d not started", res.NotStarted)
		}
		field(w, "items", "%s", items)
		if res.Moved > 0 {
			field(w, "moved", "%d item(s) moved to another deployment after waiting past the queue deadline", res.Moved)
		}
		gpu := strings.TrimPrefix(formatGPU(res.GPUSeconds), "GPU ")
		if res.EstimatedCostUSD > 0 {
			gpu += fmt.Sprintf(" · ~$%.2f estimated", res.EstimatedCostUSD)
		}
		field(w, "gpu time", "%s", gpu)
		for i, d := range res.PerDeployment {
			label := ""
			if i == 0 {
				label = "deployments"
			}
			line := d.DeploymentID
			if d.MachineName != "" {
				line += " on " + d.MachineName
			}
			line += fmt.Sprintf(" · served %d · %d succeeded · %d failed", d.Served, d.Succeeded, d.Failed)
			if d.Moved > 0 {
				line += fmt.Sprintf(" · %d moved", d.Moved)
			}
			line += fmt.Sprintf(" · GPU %.0fs", d.GPUSeconds)
			field(w, label, "%s", line)
			if d.Error != "" {
				fmt.Fprintf(w, "%scheck failed, took no items: %s\n", continuation, oneLine(d.Error))
			}
		}
		if res.ResultsPath != "" {
			field(w, "results", "%s", res.ResultsPath)
		}
		if res.Error != "" {
			field(w, "error", "%s", res.Error)
		}
		if res.Failed > 0 || res.Cancelled > 0 || res.NotStarted > 0 {
			fix := "re-run the items that did not succeed with `starter batch retry-failed " + r.WorkflowID + "`"
			if res.Failed > 0 {
				fix = "see why items failed in the results manifest; then " + fix
			}
			field(w, "next", "%s", fix)
		}
	}
	if r.Error != nil {
		printFailure(w, r.Error)
	}
	field(w, "web ui", "%s", r.UIURL)
}
