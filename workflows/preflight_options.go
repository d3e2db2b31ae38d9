package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// How many times the Preflight activity is tried. A run's or a batch's
// first check of a deployment gets preflightAttempts; a batch's re-check of
// a deployment it is already using gets fewer, since a re-check that
// cannot be made keeps the deployment as it was.
const (
	preflightAttempts = 10
	recheckAttempts   = 5
)

// preflightOptions are the activity options of every Preflight call: the
// check reads the deployment, its machine and its workflow version, so a
// minute is ample, and a busy API is retried with backoff up to 30 s.
func preflightOptions(summary string, attempts int32) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		Summary:             summary,
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: attempts},
	}
}
