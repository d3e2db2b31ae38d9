package workflows

import (
	"slices"
	"time"

	"github.com/durable-comfy/durable-comfy/activities"
)

// Stable names of the ComfyBatch workflow and its message handlers.
const (
	ComfyBatchWorkflow = "ComfyBatch"
	// Signals, without payload: pause stops starting new items (running
	// ones go on), resume undoes it, cancel stops starting new items and
	// cancels the running ones.
	PauseSignal  = "pause"
	ResumeSignal = "resume"
	CancelSignal = "cancel"
	// SetConcurrencyUpdate takes the new maximum of runs in flight (1 to
	// 2000) and returns the previous one.
	SetConcurrencyUpdate = "set-concurrency"
	// ProgressQuery returns a BatchProgress.
	ProgressQuery = "progress"
)

// Batch limits and defaults.
const (
	DefaultBatchConcurrency = 10
	// MaxBatchConcurrency is Temporal's limit of pending child workflows
	// per execution.
	MaxBatchConcurrency  = 2000
	DefaultBatchPageSize = 500
	// MaxBatchPageSize keeps the signals one run receives (about one per
	// item started by it or before it) far below the server's 10,000.
	MaxBatchPageSize = 2000
	// MaxInlineItems: larger batches come from a source file, so the
	// workflow input (repeated at every continue-as-new) stays small.
	MaxInlineItems = 1000
	// DefaultFailureSample is how many items must have ended before
	// FailurePolicy.MaxFailureRatio is applied.
	DefaultFailureSample = 20
)

// Why a batch stopped starting new items.
const (
	StoppedByFailures = "failures"
	StoppedByBudget   = "budget"
	StoppedByCancel   = "cancel"
	StoppedBySource   = "source" // the item source became unreadable
)

// Final statuses of a batch.
const (
	BatchSucceeded             = "succeeded"
	BatchCompletedWithFailures = "completed_with_failures"
	BatchStopped               = "stopped"
	BatchCancelled             = "cancelled"
)

// ComfyBatchInput is the JSON document that starts a ComfyBatch: many
// ComfyRuns, one per item, each with the batch's defaults merged with the
// item's inputs (the item wins).
type ComfyBatchInput struct {
	// Deployments is one deployment id, or a pool of equivalent ones (same
	// workflow and inputs on different machines) that share the items.
	Deployments []string      `json:"deployments"`
	Defaults    BatchDefaults `json:"defaults,omitzero"`
	// Items are inline item inputs, for small batches (up to 1000).
	Items []map[string]any `json:"items,omitempty"`
	// Source is a JSONL or CSV file of items, for batches of any size.
	Source *activities.BatchSource `json:"source,omitempty"`
	// MaxConcurrency caps the runs in flight (default 10, at most 2000);
	// the set-concurrency update changes it while the batch runs.
	MaxConcurrency int `json:"max_concurrency,omitempty"`
	// SharedDeploymentLimit caps the runs of each deployment in flight
	// across this and every other batch (and run) on the task queue that
	// sets it; slots rotate fairly between batches (0: no shared cap).
	SharedDeploymentLimit int           `json:"shared_deployment_limit,omitempty"`
	FailurePolicy         FailurePolicy `json:"failure_policy,omitzero"`
	Budget                Budget        `json:"budget,omitzero"`
	// PageSize is how many items are read per page and started per run of
	// the workflow before it continues as new (default 500, at most 2000).
	PageSize int `json:"page_size,omitempty"`

	// State is internal: continue-as-new carries the batch's progress in
	// it. Leave it empty when starting a batch.
	State *BatchState `json:"state,omitempty"`
}

// BatchDefaults are the ComfyRun settings every item shares.
type BatchDefaults struct {
	Inputs           map[string]any    `json:"inputs,omitempty"`
	GPU              string            `json:"gpu,omitempty"`
	QueueTimeout     Duration          `json:"queue_timeout,omitempty"`
	ExecutionTimeout Duration          `json:"execution_timeout,omitempty"`
	PollInterval     Duration          `json:"poll_interval,omitempty"`
	Retry            RetryPolicy       `json:"retry,omitzero"`
	Outputs          BatchOutputs      `json:"outputs,omitzero"`
	Labels           map[string]string `json:"labels,omitempty"`
}

// BatchOutputs controls output collection for every item. Each item's
// outputs go to its own folder, named after its workflow id.
type BatchOutputs struct {
	Skip bool `json:"skip,omitempty"`
}

// FailurePolicy says when failures stop the batch from starting new items.
// The zero policy continues past every failure. Runs already in flight
// finish either way: they are paid for.
type FailurePolicy struct {
	// MaxFailures stops the batch once this many items failed (0: no limit).
	MaxFailures int `json:"max_failures,omitempty"`
	// MaxFailureRatio stops the batch once failed/(ended) exceeds it
	// (0: no limit), evaluated from MinSample ended items on.
	MaxFailureRatio float64 `json:"max_failure_ratio,omitempty"`
	MinSample       int     `json:"min_sample,omitempty"`
}

// Budget stops the batch from starting new items once a cap is passed.
type Budget struct {
	// MaxGPUSeconds caps the summed execution time of the items' runs.
	MaxGPUSeconds float64 `json:"max_gpu_seconds,omitempty"`
	// MaxCostUSD caps the estimated cost: GPU-seconds priced by
	// GPUPricePerHour, which then must price every GPU the pool uses.
	MaxCostUSD      float64            `json:"max_cost_usd,omitempty"`
	GPUPricePerHour map[string]float64 `json:"gpu_price_per_hour,omitempty"`
}

// BatchState is what continue-as-new carries from one run of a batch to the
// next. It is internal and bounded: counters, the items in flight (without
// their inputs), the read position, and the deployments' cached checks;
// finished items are in the results files, not here.
type BatchState struct {
	Cursor activities.BatchCursor `json:"cursor"`
	// Taken is how many items of the page that starts at Cursor were taken.
	Taken int  `json:"taken,omitempty"`
	EOF   bool `json:"eof,omitempty"`
	Total int  `json:"total,omitempty"`

	Succeeded int     `json:"succeeded,omitempty"`
	Failed    int     `json:"failed,omitempty"`
	Skipped   int     `json:"skipped,omitempty"`
	Cancelled int     `json:"cancelled,omitempty"`
	Moved     int     `json:"moved,omitempty"`
	GPUSecs   float64 `json:"gpu_seconds,omitempty"`
	CostUSD   float64 `json:"cost_usd,omitempty"`

	InFlight []Flight   `json:"in_flight,omitempty"`
	Requeued []Requeued `json:"requeued,omitempty"`
	// Unflushed are result lines not yet written to a results part.
	Unflushed []activities.BatchItemResult `json:"unflushed,omitempty"`
	Parts     int                          `json:"parts,omitempty"`

	Pool           []PoolMember `json:"pool"`
	MaxConcurrency int          `json:"max_concurrency"`
	Paused         bool         `json:"paused,omitempty"`
	CancelAsked    bool         `json:"cancel_asked,omitempty"`
	// WorkflowCancelled: the batch workflow itself was cancelled (not just
	// signalled), so it must end Canceled even after a continue-as-new.
	WorkflowCancelled bool      `json:"workflow_cancelled,omitempty"`
	StoppedBy         string    `json:"stopped_by,omitempty"`
	SourceError       string    `json:"source_error,omitempty"`
	StartedAt         time.Time `json:"started_at"`
	Runs              int       `json:"runs"`
}

// Flight is an item whose ComfyRun is running.
type Flight struct {
	Index      int    `json:"index"`
	Line       int    `json:"line,omitempty"`
	Dispatch   int    `json:"dispatch"`
	Deployment string `json:"deployment"`
	// Tried lists the deployments of earlier dispatches, and RunIDs their
	// ComfyDeploy runs.
	Tried  []string `json:"tried,omitempty"`
	RunIDs []string `json:"run_ids,omitempty"`
}

// Requeued is an item waiting to move to another deployment of the pool.
type Requeued struct {
	Flight
	Inputs    map[string]any `json:"inputs,omitempty"`
	NotBefore time.Time      `json:"not_before"`
	// StartTries counts starts refused because the previous dispatch (same
	// workflow id) had not closed yet.
	StartTries int `json:"start_tries,omitempty"`
	// Error is the previous dispatch's, kept in case the item cannot move.
	Error string `json:"error,omitempty"`
}

// PoolMember is one deployment of the batch and what is known about it.
type PoolMember struct {
	DeploymentID string                      `json:"deployment_id"`
	Preflight    *activities.PreflightResult `json:"preflight,omitempty"`
	// Error is why the deployment's check failed; it takes no items then.
	Error     string  `json:"error,omitempty"`
	Served    int     `json:"served,omitempty"`
	Succeeded int     `json:"succeeded,omitempty"`
	Failed    int     `json:"failed,omitempty"`
	Moved     int     `json:"moved,omitempty"`
	GPUSecs   float64 `json:"gpu_seconds,omitempty"`
	// Recheck asks for a new check of the deployment: one of its items
	// failed, perhaps because its machine changed state. CheckedAt is when
	// it was last checked.
	Recheck   bool      `json:"recheck,omitempty"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
}

// ComfyBatchResult is the JSON result of a ComfyBatch.
type ComfyBatchResult struct {
	BatchID string `json:"batch_id"`
	// Status is "succeeded", "completed_with_failures", "stopped" or
	// "cancelled".
	Status string `json:"status"`
	// StoppedBy is "failures", "budget", "cancel" or "source" when the batch
	// stopped starting new items early.
	StoppedBy string `json:"stopped_by,omitempty"`
	Error     string `json:"error,omitempty"`
	// Total is the number of items, when known (a stopped batch may not
	// have read its whole source).
	Total     int `json:"total,omitempty"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
	Cancelled int `json:"cancelled"`
	// NotStarted counts items never started because the batch stopped.
	NotStarted       int     `json:"not_started,omitempty"`
	Moved            int     `json:"moved,omitempty"`
	GPUSeconds       float64 `json:"gpu_seconds"`
	EstimatedCostUSD float64 `json:"estimated_cost_usd,omitempty"`
	// ResultsPath is the JSONL results manifest, one line per item.
	ResultsPath   string              `json:"results_path,omitempty"`
	PerDeployment []DeploymentSummary `json:"per_deployment"`
}

// DeploymentSummary is what one deployment of the pool did.
type DeploymentSummary struct {
	DeploymentID string  `json:"deployment_id"`
	MachineName  string  `json:"machine_name,omitempty"`
	Error        string  `json:"error,omitempty"`
	Served       int     `json:"served"`
	Succeeded    int     `json:"succeeded"`
	Failed       int     `json:"failed"`
	Moved        int     `json:"moved,omitempty"`
	GPUSeconds   float64 `json:"gpu_seconds"`
}

// BatchProgress is the answer to the progress query.
type BatchProgress struct {
	// Total is 0 until known (a source file is counted when it is local,
	// otherwise once read to the end).
	Total            int     `json:"total"`
	Succeeded        int     `json:"succeeded"`
	Failed           int     `json:"failed"`
	Skipped          int     `json:"skipped"`
	Cancelled        int     `json:"cancelled"`
	Running          int     `json:"running"`
	Pending          int     `json:"pending"`
	Paused           bool    `json:"paused"`
	MaxConcurrency   int     `json:"max_concurrency"`
	GPUSeconds       float64 `json:"gpu_seconds"`
	EstimatedCostUSD float64 `json:"estimated_cost_usd"`
	// RatePerMinute is items ended per minute since the batch started.
	RatePerMinute float64 `json:"rate_per_minute"`
	// ETA is the estimated time left, e.g. "12m30s" ("" when unknown).
	ETA       string `json:"eta,omitempty"`
	StoppedBy string `json:"stopped_by,omitempty"`
	Phase     string `json:"phase"`
}

// declaredInputs is the union of the input names the checked deployments
// of the pool declare, sorted, and whether any deployment was checked (only
// then does the list say anything).
func declaredInputs(pool []PoolMember) ([]string, bool) {
	seen := map[string]bool{}
	names, checked := []string{}, false
	for _, m := range pool {
		if m.Preflight == nil {
			continue
		}
		checked = true
		for _, t := range m.Preflight.InputTypes {
			if !seen[t.InputID] {
				seen[t.InputID] = true
				names = append(names, t.InputID)
			}
		}
	}
	slices.Sort(names)
	return names, checked
}
