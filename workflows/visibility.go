package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Search attributes that make runs findable in the Temporal UI and CLI, for
// example: ComfyStatus = "failed" AND ComfyDeploymentId = "…". They must be
// registered on the namespace before a workflow upserts them; the dev
// tooling and the worker (where it has the permission) register them.
var (
	DeploymentIDKey = temporal.NewSearchAttributeKeyKeyword("ComfyDeploymentId")
	RunIDKey        = temporal.NewSearchAttributeKeyKeyword("ComfyRunId")
	StatusKey       = temporal.NewSearchAttributeKeyKeyword("ComfyStatus")
)

// searchAttributeKeys are every custom search attribute the workflows use.
var searchAttributeKeys = []temporal.SearchAttributeKeyKeyword{DeploymentIDKey, RunIDKey, StatusKey}

// SearchAttributes lists every custom search attribute the workflows use,
// with its type, for registration through the operator API.
func SearchAttributes() map[string]enums.IndexedValueType {
	attrs := make(map[string]enums.IndexedValueType, len(searchAttributeKeys))
	for _, k := range searchAttributeKeys {
		attrs[k.GetName()] = enums.INDEXED_VALUE_TYPE_KEYWORD
	}
	return attrs
}

// DevServerSearchAttributes is the same set in the form
// testsuite.DevServerOptions takes (only the keys and types matter).
func DevServerSearchAttributes() temporal.SearchAttributes {
	updates := make([]temporal.SearchAttributeUpdate, len(searchAttributeKeys))
	for i, k := range searchAttributeKeys {
		updates[i] = k.ValueSet("")
	}
	return temporal.NewSearchAttributes(updates...)
}

// StartSearchAttributes are a ComfyRun's search attributes at its start.
// Batches, pipelines and the starter set them, so a run can be found by
// deployment from the moment it exists. The run still upserts them in its
// first task: runs have always done so, and a run that skipped it would
// not replay on a worker that did not (during a rolling upgrade, either
// may run the first task).
func StartSearchAttributes(deploymentID string) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(DeploymentIDKey.ValueSet(deploymentID), StatusKey.ValueSet(statusPending))
}

// statusPending is ComfyStatus from the start until the run is submitted.
const statusPending = "pending"

// upsert records a phase change in the search attributes. Progress updates
// never come here: each upsert is a history event.
func (r *comfyRun) upsert(ctx workflow.Context, status string) {
	if status == r.shownStatus {
		return
	}
	updates := []temporal.SearchAttributeUpdate{StatusKey.ValueSet(status)}
	if r.shownStatus == "" {
		updates = append(updates, DeploymentIDKey.ValueSet(r.in.DeploymentID))
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
		r.logger.Warn("Could not upsert search attributes", "Error", err)
		return
	}
	r.shownStatus = status
}

func (r *comfyRun) upsertRun(ctx workflow.Context, runID, status string) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, RunIDKey.ValueSet(runID), StatusKey.ValueSet(status)); err != nil {
		r.logger.Warn("Could not upsert search attributes", "Error", err)
		return
	}
	r.shownStatus = status
}

// showDetails renders the short markdown view the Temporal UI shows as the
// workflow's current details.
func (r *comfyRun) showDetails(ctx workflow.Context) {
	workflow.SetCurrentDetails(ctx, renderDetails(r.status))
}

func renderDetails(s RunStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**ComfyRun** · deployment `%s`", s.DeploymentID)
	if s.MachineName != "" {
		fmt.Fprintf(&b, " on `%s`", s.MachineName)
	}
	fmt.Fprintf(&b, "\n\n**Phase:** %s", s.Phase)
	if s.Attempt > 0 {
		fmt.Fprintf(&b, " · attempt %d of %d", s.Attempt, s.MaxAttempts)
	}
	if s.RunID != "" {
		fmt.Fprintf(&b, "\n\n**Run:** `%s` · %s", s.RunID, s.Status)
		if s.Phase == PhaseWaiting {
			fmt.Fprintf(&b, " · %s %d%%", progressBar(s.Progress, 20), int(s.Progress*100+0.5))
			if s.LiveStatus != "" {
				fmt.Fprintf(&b, " · %s", s.LiveStatus)
			}
		}
	}
	if len(s.Outputs) > 0 {
		fmt.Fprintf(&b, "\n\n**Outputs:** %d stored · manifest `%s`", len(s.Outputs), s.ManifestPath)
	}
	if s.Error != "" {
		fmt.Fprintf(&b, "\n\n**Error:** %s", s.Error)
	}
	return b.String()
}

// progressBar draws a fraction in [0,1] as a fixed-width text bar.
func progressBar(fraction float64, width int) string {
	fraction = min(max(fraction, 0), 1)
	filled := int(fraction*float64(width) + 0.5)
	return strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
}
