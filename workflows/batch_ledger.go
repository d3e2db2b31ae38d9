package workflows

import (
	"slices"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/preflight"
)

// flushEvery bounds the result lines held in workflow state (and the size
// of one WriteBatchResults payload).
const flushEvery = 200

// ledger is the batch's account: the result line of each ended item, the
// counters per status and per deployment, GPU time and estimated cost, the
// failure and budget policies that stop new items, and the final result.
// Everything it counts lives in st, which continue-as-new carries.
type ledger struct {
	st     *BatchState
	pool   *pool
	policy FailurePolicy
	budget Budget
}

// addUsage adds a run's GPU time and its estimated cost to the totals.
func (l *ledger) addUsage(deployment string, rep ItemReport) {
	l.st.GPUSecs += rep.GPUSeconds
	if m := l.pool.member(deployment); m != nil {
		m.GPUSecs += rep.GPUSeconds
	}
	l.st.CostUSD += rep.GPUSeconds / 3600 * l.budget.GPUPricePerHour[l.pool.gpuOf(deployment, rep.GPU)]
}

// record ends an item: its results line (completed from the flight), the
// counters, and the stop policies. It reports whether the policies stopped
// the batch just now.
func (l *ledger) record(f Flight, workflowID string, inputs map[string]any, line activities.BatchItemResult) (stopped bool) {
	line.Index, line.Line, line.Inputs, line.WorkflowID = f.Index, f.Line, inputs, workflowID
	if line.DeploymentID == "" {
		line.DeploymentID = f.Deployment
	}
	if len(f.Tried) > 0 {
		line.Deployments = append(slices.Clone(f.Tried), line.DeploymentID)
	}
	m := l.pool.member(f.Deployment)
	switch line.Status {
	case activities.ItemSucceeded:
		l.st.Succeeded++
		if m != nil {
			m.Succeeded++
		}
	case activities.ItemSkipped:
		l.st.Skipped++
		line.DeploymentID = ""
	case activities.ItemCancelled:
		l.st.Cancelled++
	default:
		line.Status = activities.ItemFailed
		l.st.Failed++
		if m != nil {
			m.Failed++
			// A run that failed for a reason other than its own inputs may
			// mean the machine changed state: check the deployment again.
			m.Recheck = m.Recheck || line.ErrorType != preflight.KindInvalidInput
		}
	}
	l.st.Unflushed = append(l.st.Unflushed, line)
	return l.applyPolicies()
}

// applyPolicies stops new items once the failure policy or the budget says
// so, and reports whether it did just now.
func (l *ledger) applyPolicies() bool {
	if l.st.StoppedBy != "" || l.st.CancelAsked {
		return false
	}
	fp, bu := l.policy, l.budget
	ended := l.st.Succeeded + l.st.Failed
	sample := fp.MinSample
	if sample == 0 {
		sample = DefaultFailureSample
	}
	switch {
	case fp.MaxFailures > 0 && l.st.Failed >= fp.MaxFailures,
		fp.MaxFailureRatio > 0 && ended >= sample && float64(l.st.Failed) > fp.MaxFailureRatio*float64(ended):
		l.st.StoppedBy = StoppedByFailures
	case bu.MaxGPUSeconds > 0 && l.st.GPUSecs >= bu.MaxGPUSeconds,
		bu.MaxCostUSD > 0 && l.st.CostUSD >= bu.MaxCostUSD:
		l.st.StoppedBy = StoppedByBudget
	default:
		return false
	}
	return true
}

// stopped says whether the batch starts no more items (a policy, the
// source, or a cancel).
func (l *ledger) stopped() bool { return l.st.StoppedBy != "" || l.st.CancelAsked }

// flushDue says whether enough lines wait to be written as a results part.
func (l *ledger) flushDue() bool { return len(l.st.Unflushed) >= flushEvery }

// flushed drops the first n waiting lines, written as results part part;
// lines recorded while it was written stay for the next one.
func (l *ledger) flushed(part, n int) {
	l.st.Parts = part
	l.st.Unflushed = slices.Clone(l.st.Unflushed[n:])
}

// ended counts the items that have a results line.
func (l *ledger) ended() int {
	return l.st.Succeeded + l.st.Failed + l.st.Skipped + l.st.Cancelled
}

// result is the batch's summary, with its results manifest.
func (l *ledger) result(batchID, resultsPath string) *ComfyBatchResult {
	st := l.st
	res := &ComfyBatchResult{
		BatchID: batchID, StoppedBy: st.StoppedBy, Error: st.SourceError, Total: st.Total,
		Succeeded: st.Succeeded, Failed: st.Failed, Skipped: st.Skipped, Cancelled: st.Cancelled, Moved: st.Moved,
		GPUSeconds: st.GPUSecs, EstimatedCostUSD: st.CostUSD, ResultsPath: resultsPath,
		PerDeployment: []DeploymentSummary{},
	}
	if st.Total > 0 {
		res.NotStarted = max(st.Total-l.ended(), 0)
	}
	switch {
	case st.CancelAsked:
		res.Status = BatchCancelled
	case st.StoppedBy != "":
		res.Status = BatchStopped
	case st.Failed > 0 || st.Cancelled > 0:
		res.Status = BatchCompletedWithFailures
	default:
		res.Status = BatchSucceeded
	}
	for _, m := range st.Pool {
		s := DeploymentSummary{DeploymentID: m.DeploymentID, Error: m.Error, Served: m.Served,
			Succeeded: m.Succeeded, Failed: m.Failed, Moved: m.Moved, GPUSeconds: m.GPUSecs}
		if m.Preflight != nil {
			s.MachineName = m.Preflight.MachineName
		}
		res.PerDeployment = append(res.PerDeployment, s)
	}
	return res
}
