// Package comfytest is an in-process simulator of the ComfyDeploy v2 HTTP
// API, in the spirit of net/http/httptest.
//
// The simulator speaks the wire format described in
// /work/shared/comfydeploy-api.md, including the service's quirks: routes live
// under /api and need "Authorization: Bearer <key>"; errors are
// {"detail": "..."}; bad bodies give FastAPI-style 422s; GET /deployment/{id}
// turns "not found" into a 500; cancel works only on comfy-deploy-serverless
// machines; timestamps come in several formats (milliseconds with "Z" and the
// seconds-cut quirk on ORM routes, Pydantic microseconds with "Z" on
// GET /run/{id}, zone-less isoformat on machine routes); progress is a float
// in 0..1; webhooks are unsigned, retried up to three times, and may arrive
// twice or out of order.
//
// It is deliberately independent of package comfy: every response is built
// from its own maps and structs, so that decoding bugs in the client show up.
//
// A run's life is driven by the clock. Each run gets a goroutine that waits
// for a concurrency slot of its deployment (runs beyond concurrency_limit stay
// in "not-started"), then walks not-started → queued → started → running
// (progress and live_status advance per workflow node) → success, or ends in
// failed / timeout / cancelled. Every status change is published to
// webhooks, the SSE streams and the run's log.
//
// Outputs are real files rendered by the simulator (deterministic PNGs, an
// animated GIF for video), served from /files/... URLs that carry an expiry
// and an HMAC signature and are re-signed on every read of the run.
//
// Faults (5xx responses, latency, connection resets, ambiguous run
// submissions, failing/timing-out/never-finishing runs, duplicate and
// reordered webhooks) are injected with a seeded random source and can be
// changed at run time through [Server.SetFaults] or the admin endpoints:
//
//	GET  /healthz                       liveness
//	GET  /admin/counters                Counters as JSON
//	POST /admin/reset                   zero the counters
//	GET  /admin/faults                  current Faults as JSON
//	PUT  /admin/faults                  replace the Faults (JSON, durations as "150ms")
//	PUT  /admin/timing/{deployment_id}  {"cold_start":"1s","run":"3s"}
//	PUT  /admin/deployments/{id}        {"concurrency_limit":N,"run_timeout":"2s"}
//	GET  /admin/runs                    every run with status, token and injected fate
//
// Admin endpoints need no token. The seeded demo organisation (machines,
// workflows, deployments) is described in seed.go and by the exported ID
// constants.
package comfytest
