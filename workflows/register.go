package workflows

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/activities"
)

// Register registers every workflow under its stable name.
func Register(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(ComfyRun, workflow.RegisterOptions{Name: ComfyRunWorkflow})
	r.RegisterWorkflowWithOptions(ComfyBatch, workflow.RegisterOptions{Name: ComfyBatchWorkflow})
	r.RegisterWorkflowWithOptions(ComfyPipeline, workflow.RegisterOptions{Name: ComfyPipelineWorkflow})
	r.RegisterWorkflowWithOptions(DeploymentGate, workflow.RegisterOptions{Name: activities.GateWorkflow})
}
