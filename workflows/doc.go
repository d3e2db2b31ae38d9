// Package workflows holds the Temporal workflows of durable-comfy. They are
// deterministic and thin: every API call and all heavy work happen in
// package activities. Workflow names, query names, search attributes and the
// JSON input and result types here are public surfaces; keep them stable.
package workflows
