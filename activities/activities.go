// Package activities wraps the ComfyDeploy API for Temporal workflows: one
// method per step of a run's lifecycle (preflight, submit, await, cancel,
// collect). Activities hold their dependencies in the Activities struct;
// workflows refer to them through a typed nil pointer. Errors are classified
// here, where their cause is known: a rejection that repeating cannot fix is
// a non-retryable application error with a stable type.
package activities

import (
	"context"
	"net/http"
	"time"

	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/outputstore"
)

// Signaler delivers progress updates to the workflow that runs an activity.
// client.Client satisfies it.
type Signaler interface {
	SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg any) error
}

// Wakeups signs webhook URLs and wakes the waits of runs they report on.
type Wakeups interface {
	// URL is the webhook URL for the submission with this correlation token.
	URL(correlationToken string) (string, error)
	// Watch returns a channel that receives when the run may have ended,
	// and a function that stops watching.
	Watch(runID string) (wake <-chan struct{}, stop func())
}

// Activities holds what the ComfyDeploy activities need. The API key lives
// inside Comfy and never appears in an activity's input or output.
type Activities struct {
	Comfy *comfy.Client
	Store outputstore.Store
	// Downloader fetches output URLs. They are presigned object-store URLs
	// that the provider chose, so this client must not add the ComfyDeploy
	// key nor reach internal addresses: build it with egress.NewClient,
	// allowing the provider's own hosts. Nil means egress's default rules
	// (public addresses only).
	Downloader *http.Client
	// SourceDirs confines path batch sources; nil refuses them all.
	SourceDirs *SourceDirs
	// SourceClient fetches URL batch sources, which whoever starts a batch
	// chooses: build it with egress.NewClient. Nil means egress's default
	// rules (public addresses only).
	SourceClient *http.Client
	// Signaler, when set, reports run progress to the workflow; without it
	// the workflow still completes, only its live view is coarser.
	Signaler Signaler
	// Temporal, when set, lets AcquireGate start deployment gates and
	// WaitFinisher complete waits; Namespace is the namespace it works in
	// ("" is "default").
	Temporal  TemporalClient
	Namespace string
	// Wakeups, when set, gives every submitted run a signed webhook URL and
	// lets AwaitRun poll as soon as ComfyDeploy calls back that the run
	// ended, instead of at its next interval. Polling stays the source of
	// truth and the fallback for lost webhooks. *wakeup.Hub satisfies it.
	Wakeups Wakeups

	// Defaults used when a request leaves them zero. They are worker
	// configuration, which is why activities (not workflows) apply them.
	PollInterval     time.Duration
	QueueTimeout     time.Duration
	ExecutionTimeout time.Duration
	// MaxOutputBytes caps one downloaded output.
	MaxOutputBytes int64
	// CancelWait bounds how long a cancel waits for the run to show "cancelled".
	CancelWait time.Duration
}

// Defaults for the fields above.
const (
	DefaultPollInterval     = 2 * time.Second
	DefaultQueueTimeout     = 15 * time.Minute
	DefaultExecutionTimeout = 30 * time.Minute
	DefaultMaxOutputBytes   = 2 << 30
	DefaultCancelWait       = 2 * time.Minute
)

func (a *Activities) pollInterval(req time.Duration) time.Duration {
	return firstPositive(req, a.PollInterval, DefaultPollInterval)
}

func firstPositive(ds ...time.Duration) time.Duration {
	for _, d := range ds {
		if d > 0 {
			return d
		}
	}
	return 0
}
