package workflows

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.temporal.io/sdk/temporal"
)

// placeholderDeployment stands in for the item's deployment when the
// defaults are checked with ComfyRunInput.Problems.
const placeholderDeployment = "00000000-0000-4000-8000-000000000000"

// Problems lists what is wrong with the shape of a ComfyBatchInput, one
// sentence each, sorted. It is pure: the workflow runs it first and a
// starter can run it before starting anything.
func (in *ComfyBatchInput) Problems() []string {
	var problems []string
	if len(in.Deployments) == 0 {
		problems = append(problems, "deployments needs at least one deployment id")
	}
	seen := map[string]bool{}
	for _, d := range in.Deployments {
		switch {
		case !uuidPattern.MatchString(d):
			problems = append(problems, fmt.Sprintf("deployment %q is not a UUID; copy it from the ComfyDeploy dashboard", d))
		case seen[d]:
			problems = append(problems, fmt.Sprintf("deployment %s is listed twice", d))
		}
		seen[d] = true
	}
	switch {
	case in.Source == nil && len(in.Items) == 0:
		problems = append(problems, "a batch needs items or a source")
	case in.Source != nil && len(in.Items) > 0:
		problems = append(problems, "a batch takes items or a source, not both")
	case len(in.Items) > MaxInlineItems:
		problems = append(problems, fmt.Sprintf("%d inline items are more than %d; put them in a JSONL or CSV source", len(in.Items), MaxInlineItems))
	}
	if in.Source != nil {
		if _, err := in.Source.ResolvedFormat(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if in.MaxConcurrency < 0 || in.MaxConcurrency > MaxBatchConcurrency {
		problems = append(problems, fmt.Sprintf("max_concurrency must be between 1 and %d", MaxBatchConcurrency))
	}
	if in.PageSize < 0 || in.PageSize > MaxBatchPageSize {
		problems = append(problems, fmt.Sprintf("page_size must be between 1 and %d", MaxBatchPageSize))
	}
	fp := in.FailurePolicy
	if fp.MaxFailures < 0 || fp.MinSample < 0 {
		problems = append(problems, "failure_policy.max_failures and min_sample must not be negative")
	}
	if fp.MaxFailureRatio < 0 || fp.MaxFailureRatio > 1 {
		problems = append(problems, "failure_policy.max_failure_ratio must be between 0 and 1")
	}
	if in.SharedDeploymentLimit < 0 || in.SharedDeploymentLimit > maxSharedLimit {
		problems = append(problems, fmt.Sprintf("shared_deployment_limit must be between 0 (none) and %d", maxSharedLimit))
	}
	bu := in.Budget
	if bu.MaxGPUSeconds < 0 || bu.MaxCostUSD < 0 {
		problems = append(problems, "budget caps must not be negative")
	}
	for _, gpu := range slices.Sorted(maps.Keys(bu.GPUPricePerHour)) {
		if !slices.Contains(KnownGPUs, gpu) {
			problems = append(problems, fmt.Sprintf("budget.gpu_price_per_hour names %q, which is not one of %s", gpu, strings.Join(KnownGPUs, ", ")))
		}
		if bu.GPUPricePerHour[gpu] < 0 {
			problems = append(problems, fmt.Sprintf("budget.gpu_price_per_hour[%q] must not be negative", gpu))
		}
	}
	defaults := in.itemInput("", placeholderDeployment, in.Defaults.Inputs)
	for _, p := range defaults.Problems() {
		problems = append(problems, "defaults: "+p)
	}
	slices.Sort(problems)
	return problems
}

func (in *ComfyBatchInput) validate() error {
	problems := in.Problems()
	if len(problems) == 0 {
		return nil
	}
	return temporal.NewNonRetryableApplicationError("invalid ComfyBatch input: "+strings.Join(problems, "; "), ErrTypeInvalidWorkflowInput, nil, problems)
}

// itemInput is the ComfyRun input of one item on one deployment.
func (in *ComfyBatchInput) itemInput(batchID, deployment string, inputs map[string]any) ComfyRunInput {
	d := in.Defaults
	run := ComfyRunInput{
		DeploymentID: deployment, Inputs: inputs, GPU: d.GPU,
		QueueTimeout: d.QueueTimeout, ExecutionTimeout: d.ExecutionTimeout, PollInterval: d.PollInterval,
		Retry: d.Retry, Outputs: OutputSettings{Skip: d.Outputs.Skip}, Labels: d.Labels,
	}
	if in.SharedDeploymentLimit > 0 {
		// The batch is the fairness group: its items share slots with other
		// batches round-robin, not first come first served.
		run.SharedLimit = &SharedLimit{Max: in.SharedDeploymentLimit, Group: batchID}
	}
	return run
}

// mergeInputs returns the defaults overlaid with the item's inputs.
func mergeInputs(defaults, item map[string]any) map[string]any {
	merged := make(map[string]any, len(defaults)+len(item))
	maps.Copy(merged, defaults)
	maps.Copy(merged, item)
	return merged
}
