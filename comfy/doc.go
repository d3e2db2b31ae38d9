// Package comfy is a client for the ComfyDeploy v2 HTTP API
// (https://api.comfydeploy.com/api), written for a Temporal worker that
// queues GPU runs and tracks them until they reach a terminal status.
//
// # Usage
//
//	client, err := comfy.NewClient(comfy.WithAPIKey(os.Getenv("COMFY_API_KEY")))
//	if err != nil { ... }
//	queued, err := client.Runs.QueueDeployment(ctx, &comfy.DeploymentRunRequest{
//		DeploymentID: "…",
//		Inputs:       map[string]any{"prompt": "a cat"},
//	})
//	run, err := client.Runs.Get(ctx, queued.RunID, nil)
//
// The API is grouped into services on [Client] (Runs, Deployments, Machines,
// Workflows, Files, Assets, Streams), following the layout of
// google/go-github. [Client.NewRequest] and [Client.Do] reach routes this
// package does not wrap.
//
// # Server behaviour this package works around
//
// The behaviour described here comes from the backend's source code, not
// from its public docs, which are wrong in places:
//
//   - Progress is a fraction from 0 to 1, not a percentage.
//   - Timestamps come in several ISO-8601 variants, some without a zone or
//     without seconds. [Time] accepts all of them and assumes UTC.
//   - Some routes hide "not found" behind a 500. [IsNotFound] reports those
//     too and sets [APIError.NotFoundQuirk].
//   - The server has no rate limiter and no idempotency keys. Run creation
//     is therefore never retried by this package: a timed-out POST may still
//     have created a run. Put a correlation token in the run
//     ([CorrelationInputKey], [CorrelationQueryParam]) and look for it with
//     [WorkflowsService.FindRunByCorrelationToken] before trying again.
//   - Webhooks are unsigned, duplicated and unordered. [WebhookSigner],
//     [WebhookDeduper] and [RunStatus.Supersedes] cover that.
//
// # Retries
//
// All retrying happens in one place, the request executor. It only retries
// requests that are safe to repeat: GET requests, and requests whose context
// was marked with [WithIdempotent]. Run creation is never retried, even if
// the context is marked. Waits use exponential backoff with full jitter and
// honour Retry-After.
//
// # Errors
//
// A non-2xx response becomes an [*APIError]. Classify errors with
// [IsNotFound], [IsUnauthorized], [IsForbidden], [IsValidation],
// [IsRetryable] and [IsCancelUnsupported]. Context cancellation is returned
// unchanged, so errors.Is(err, context.Canceled) works. The API key is
// removed from every error, log line and formatted value.
package comfy
