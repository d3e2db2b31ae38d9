package activities

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/durable-comfy/durable-comfy/comfy"
)

// CorrelationToken names submission attempt n of one workflow run:
// "<workflow id>/<run id>/<n>". It is unique per attempt, stable across
// activity retries, and tells a webhook's receiver which workflow waits.
func CorrelationToken(workflowID, runID string, attempt int) string {
	return workflowID + "/" + runID + "/" + strconv.Itoa(attempt)
}

// parseCorrelationToken reads a CorrelationToken from the right, because
// workflow ids may contain slashes (a batch item's is "<batch id>/<index>").
func parseCorrelationToken(token string) (workflowID, runID string, ok bool) {
	rest, attempt, ok := cutLast(token)
	if !ok {
		return "", "", false
	}
	if _, err := strconv.Atoi(attempt); err != nil {
		return "", "", false
	}
	workflowID, runID, ok = cutLast(rest)
	return workflowID, runID, ok && workflowID != "" && runID != ""
}

func cutLast(s string) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// AwaitRunActivity is the name AwaitRun is registered under.
const AwaitRunActivity = "AwaitRun"

// PendingWait finds the AwaitRun among a workflow's pending activities and
// decodes its last heartbeat. ok is false when none is pending or it has
// not heartbeated yet (it heartbeats on its first poll).
func PendingWait(desc *workflowservice.DescribeWorkflowExecutionResponse) (pending *workflowpb.PendingActivityInfo, state PollState, ok bool) {
	for _, pa := range desc.GetPendingActivities() {
		if pa.GetActivityType().GetName() != AwaitRunActivity || pa.GetHeartbeatDetails() == nil {
			continue
		}
		if err := converter.GetDefaultDataConverter().FromPayloads(pa.GetHeartbeatDetails(), &state); err != nil {
			continue // an older payload shape
		}
		return pa, state, true
	}
	return nil, PollState{}, false
}

// WaitFinisher ends waits from webhooks. It uses the Activities' clients but
// is a type of its own, so that registering Activities does not make Finish
// an activity.
type WaitFinisher struct {
	Activities *Activities
}

// Finish ends, from any worker, the AwaitRun that waits on runID for
// the submission with correlationToken, once the run has ended. It serves
// webhooks that reach a worker other than the one running the wait: with
// several workers behind one webhook URL, most land elsewhere. The wait is
// found among the workflow's pending activities by the run id in its
// heartbeat, the run is read again (the webhook is only a hint), and the
// activity is completed by id with the result AwaitRun would have returned.
// The worker still polling learns of it at its next poll or heartbeat. It
// reports whether it completed a wait.
func (f WaitFinisher) Finish(ctx context.Context, correlationToken, runID string) (bool, error) {
	a := f.Activities
	workflowID, workflowRunID, ok := parseCorrelationToken(correlationToken)
	if !ok || a.Temporal == nil {
		return false, nil
	}
	desc, err := a.Temporal.DescribeWorkflowExecution(ctx, workflowID, workflowRunID)
	if err != nil {
		return false, fmt.Errorf("describe workflow %s: %w", workflowID, err)
	}
	pending, state, ok := PendingWait(desc)
	if !ok || state.RunID != runID || pending.GetState() != enumspb.PENDING_ACTIVITY_STATE_STARTED {
		// No wait on this run; or it has not polled yet, or waits to be
		// retried: its next poll sees the end.
		return false, nil
	}
	run, err := a.Comfy.Runs.Get(ctx, runID, nil)
	if err != nil {
		return false, fmt.Errorf("get run %s: %w", runID, err)
	}
	// A cancelled run is left to the wait itself: it may be cancelling it
	// because a deadline passed, and only it knows which.
	if !run.Status.IsTerminal() || run.Status == comfy.StatusCancelled {
		return false, nil
	}
	err = a.Temporal.CompleteActivityByID(ctx, cmp.Or(a.Namespace, "default"), workflowID, workflowRunID, pending.GetActivityId(), a.ended(ctx, run), nil)
	if err != nil {
		return false, fmt.Errorf("complete the wait of run %s: %w", runID, err)
	}
	return true, nil
}
