package workflows

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.temporal.io/sdk/temporal"
)

// ErrTypeInvalidWorkflowInput is the application error type for a workflow
// input that is malformed before any API call is made.
const ErrTypeInvalidWorkflowInput = "InvalidWorkflowInput"

// Outcomes a RetryPolicy can name.
const (
	RetryOnFailed  = "failed"
	RetryOnTimeout = "timeout"
)

const maxAttemptsLimit = 10

// maxSharedLimit matches Temporal's cap on a workflow's pending signals.
const maxSharedLimit = 2000

var (
	uuidPattern   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	folderPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,119}$`)
	// KnownGPUs are the GPU names ComfyDeploy accepts.
	KnownGPUs = []string{"CPU", "T4", "L4", "A10G", "L40S", "A100", "A100-80GB", "H100", "H200", "B200"}
)

// Problems lists what is wrong with the shape of a ComfyRunInput, one
// actionable sentence each, sorted; the deployment-specific checks happen in
// the Preflight activity. It is pure, so the workflow runs it first and the
// starter runs the same checks before starting anything.
func (in *ComfyRunInput) Problems() []string {
	var problems []string
	if in.DeploymentID == "" {
		problems = append(problems, "deployment_id is required (the UUID from the ComfyDeploy dashboard)")
	} else if !uuidPattern.MatchString(in.DeploymentID) {
		problems = append(problems, fmt.Sprintf("deployment_id %q is not a UUID; copy it from the ComfyDeploy dashboard", in.DeploymentID))
	}
	if in.GPU != "" && !slices.Contains(KnownGPUs, in.GPU) {
		problems = append(problems, fmt.Sprintf("gpu %q is not one of %s", in.GPU, strings.Join(KnownGPUs, ", ")))
	}
	for name, d := range map[string]Duration{"queue_timeout": in.QueueTimeout, "execution_timeout": in.ExecutionTimeout, "poll_interval": in.PollInterval} {
		if d < 0 {
			problems = append(problems, fmt.Sprintf("%s must not be negative", name))
		}
	}
	if in.Retry.MaxAttempts < 0 || in.Retry.MaxAttempts > maxAttemptsLimit {
		problems = append(problems, fmt.Sprintf("retry.max_attempts must be between 1 and %d", maxAttemptsLimit))
	}
	for _, on := range in.Retry.RetryOn {
		if on != RetryOnFailed && on != RetryOnTimeout {
			problems = append(problems, fmt.Sprintf("retry.retry_on value %q must be %q or %q", on, RetryOnFailed, RetryOnTimeout))
		}
	}
	if in.SharedLimit != nil && (in.SharedLimit.Max < 1 || in.SharedLimit.Max > maxSharedLimit) {
		problems = append(problems, fmt.Sprintf("shared_limit.max must be between 1 and %d", maxSharedLimit))
	}
	if in.Outputs.Folder != "" && !folderPattern.MatchString(in.Outputs.Folder) {
		problems = append(problems, fmt.Sprintf("outputs.folder %q must be one path segment of letters, digits, '.', '-' and '_'", in.Outputs.Folder))
	}
	if in.ReportTo != nil && in.ReportTo.WorkflowID == "" {
		problems = append(problems, "report_to.workflow_id is required when report_to is set")
	}
	for name, v := range in.Inputs {
		switch v.(type) {
		case map[string]any:
			problems = append(problems, fmt.Sprintf("input %q is an object; ComfyDeploy accepts strings, numbers, booleans and lists", name))
		case nil:
			problems = append(problems, fmt.Sprintf("input %q is null; remove it to use the deployment's default", name))
		}
	}
	slices.Sort(problems) // map iteration order must not leak into the result
	return problems
}

// validate fails the workflow with ErrTypeInvalidWorkflowInput when the
// input has problems; the details carry the list.
func (in *ComfyRunInput) validate() error {
	problems := in.Problems()
	if len(problems) == 0 {
		return nil
	}
	return temporal.NewNonRetryableApplicationError("invalid ComfyRun input: "+strings.Join(problems, "; "), ErrTypeInvalidWorkflowInput, nil, problems)
}

func (p RetryPolicy) maxAttempts() int {
	if p.MaxAttempts <= 0 {
		return 1
	}
	return p.MaxAttempts
}

// retries reports whether an attempt that ended with status (and possibly
// one of our deadlines) may be resubmitted under p.
func (p RetryPolicy) retries(status, deadline string) bool {
	outcome := ""
	switch {
	case deadline != "" || status == "timeout":
		outcome = RetryOnTimeout
	case status == "failed":
		outcome = RetryOnFailed
	default:
		return false
	}
	if len(p.RetryOn) == 0 {
		return true
	}
	return slices.Contains(p.RetryOn, outcome)
}
