package workflows

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/durable-comfy/durable-comfy/activities"
)

// ComfyRunInput is the JSON document that starts a ComfyRun. Field names
// are a public, stable surface: any Temporal SDK or the temporal CLI can
// send it. Durations are strings such as "90s" or "15m" (numbers are read
// as seconds).
type ComfyRunInput struct {
	DeploymentID string         `json:"deployment_id"`
	Inputs       map[string]any `json:"inputs,omitempty"`
	// GPU is a ComfyDeploy GPU name (T4, L4, A10G, L40S, A100, A100-80GB,
	// H100, H200, B200, CPU). The deployment's own GPU setting wins.
	GPU string `json:"gpu,omitempty"`
	// QueueTimeout bounds waiting in the queue and cold start; ExecutionTimeout
	// bounds execution. When one passes, the run is cancelled (where the
	// machine allows) and counted as a timed-out attempt. Zero means the
	// worker's configured default.
	QueueTimeout     Duration `json:"queue_timeout,omitempty"`
	ExecutionTimeout Duration `json:"execution_timeout,omitempty"`
	// PollInterval overrides the worker's poll interval for this run.
	PollInterval Duration       `json:"poll_interval,omitempty"`
	Retry        RetryPolicy    `json:"retry,omitzero"`
	Outputs      OutputSettings `json:"outputs,omitzero"`
	// Labels are free-form key/values copied into the manifest, for example
	// {"customer": "acme", "campaign": "spring"}.
	Labels map[string]string `json:"labels,omitempty"`
	// Preflight carries a check of this deployment that a batch or pipeline
	// already made; ComfyRun then does not check the deployment again (the
	// parent validated the inputs against Preflight.InputTypes).
	Preflight *activities.PreflightResult `json:"preflight,omitempty"`
	// ReportTo makes the run signal its outcome to a parent workflow as its
	// last step (see ItemDoneSignal), or with WhenAsked only if the parent
	// asked. A batch sets it: the parent may have continued as new since it
	// started the run, so the child future no longer reaches it, but a
	// signal by workflow id does.
	ReportTo *ReportTo `json:"report_to,omitempty"`
	// SharedLimit caps the runs of this deployment in flight across every
	// workflow on the task queue that sets it (see DeploymentGate).
	SharedLimit *SharedLimit `json:"shared_limit,omitempty"`
}

// SharedLimit asks for a slot of the deployment's gate before each
// submission and returns it when the run ends.
type SharedLimit struct {
	// Max is the cap on runs in flight; the latest request sets it.
	Max int `json:"max"`
	// Group is the fairness unit: slots rotate between groups, so a large
	// batch cannot starve a small one. Default: the workflow id.
	Group string `json:"group,omitempty"`
}

// ReportTo names the workflow a run reports its outcome to.
type ReportTo struct {
	WorkflowID string `json:"workflow_id"`
	// Key is echoed in the report so the parent can tell which of its items
	// (and which dispatch of it) ended.
	Key string `json:"key"`
	// WhenAsked makes the run report only if the parent asks first
	// (AskReportSignal), which a batch does just before it continues as new;
	// until then the parent learns the outcome from the run's completion,
	// so failures carry the whole result in their error.
	WhenAsked bool `json:"when_asked,omitempty"`
}

// RetryPolicy says when a finished but unsuccessful run is resubmitted.
// Each resubmission is a new, paid ComfyDeploy run, so the default is one
// attempt. Invalid input is never resubmitted.
type RetryPolicy struct {
	// MaxAttempts is the total number of runs allowed, 1 to 10 (default 1).
	MaxAttempts int `json:"max_attempts,omitempty"`
	// RetryOn lists the outcomes that are resubmitted: "failed", "timeout"
	// (ComfyDeploy's run_timeout or our deadlines). Default: both.
	RetryOn []string `json:"retry_on,omitempty"`
}

// OutputSettings controls output collection.
type OutputSettings struct {
	// Skip leaves outputs at ComfyDeploy (their URLs expire after about an
	// hour); by default every media output is downloaded and checksummed.
	Skip bool `json:"skip,omitempty"`
	// Folder names the run's folder in the output store (one path segment);
	// default: the workflow id.
	Folder string `json:"folder,omitempty"`
}

// ComfyRunResult is the JSON result of a ComfyRun.
type ComfyRunResult struct {
	WorkflowID   string `json:"workflow_id"`
	DeploymentID string `json:"deployment_id"`
	MachineID    string `json:"machine_id,omitempty"`
	MachineName  string `json:"machine_name,omitempty"`
	// Status is the final ComfyDeploy status of the last attempt.
	Status string `json:"status"`
	// RunID is the ComfyDeploy run of the last attempt.
	RunID    string                    `json:"run_id,omitempty"`
	Attempts []activities.Attempt      `json:"attempts"`
	Outputs  []activities.StoredOutput `json:"outputs,omitempty"`
	Texts    []activities.TextOutput   `json:"texts,omitempty"`
	// OutputFolder and ManifestPath say where collected outputs landed.
	OutputFolder string `json:"output_folder,omitempty"`
	ManifestPath string `json:"manifest_path,omitempty"`
	// Cancel reports what happened to the remote run when the workflow was
	// cancelled; it is carried in the cancellation's details.
	Cancel *activities.CancelResult `json:"cancel,omitempty"`
	Error  string                   `json:"error,omitempty"`
}

// Phases of a ComfyRun, reported by the status query.
const (
	PhasePreflight  = "preflight"
	PhaseGated      = "waiting-for-slot"
	PhaseSubmitting = "submitting"
	PhaseWaiting    = "waiting"
	PhaseCollecting = "collecting"
	PhaseCancelling = "cancelling"
	PhaseSucceeded  = "succeeded"
	PhaseFailed     = "failed"
	PhaseCancelled  = "cancelled"
)

// RunStatus is the answer to the StatusQuery.
type RunStatus struct {
	Phase        string                    `json:"phase"`
	DeploymentID string                    `json:"deployment_id"`
	MachineName  string                    `json:"machine_name,omitempty"`
	RunID        string                    `json:"run_id,omitempty"`
	Status       string                    `json:"status,omitempty"`
	Progress     float64                   `json:"progress"`
	LiveStatus   string                    `json:"live_status,omitempty"`
	Attempt      int                       `json:"attempt"`
	MaxAttempts  int                       `json:"max_attempts"`
	Attempts     []activities.Attempt      `json:"attempts"`
	Outputs      []activities.StoredOutput `json:"outputs,omitempty"`
	ManifestPath string                    `json:"manifest_path,omitempty"`
	Error        string                    `json:"error,omitempty"`
}

// Duration is a time.Duration that reads "90s"-style strings or seconds
// from JSON and writes strings, so plain-JSON callers need no nanoseconds.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" {
		*d = 0
		return nil
	}
	if strings.HasPrefix(s, `"`) {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		if str == "" {
			*d = 0
			return nil
		}
		v, err := time.ParseDuration(str)
		if err != nil {
			return fmt.Errorf("duration %q: use a value such as \"90s\", \"15m\" or \"1h30m\"", str)
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration %s: use a string such as \"90s\" or a number of seconds", s)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
