package workflows

import (
	"cmp"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/activities"
)

// acquireSlot waits for a slot of the deployment's gate when the input sets
// a shared limit. The gate signals the grant; cancellation stops the wait.
func (r *comfyRun) acquireSlot(ctx workflow.Context) error {
	lim := r.in.SharedLimit
	if lim == nil || lim.Max <= 0 {
		return nil
	}
	info := workflow.GetInfo(ctx)
	r.setPhase(ctx, PhaseGated)
	r.slotAsked = true
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             "Ask the gate of deployment " + r.in.DeploymentID + " for a slot",
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	})
	err := workflow.ExecuteActivity(actx, a.AcquireGate, activities.AcquireGateRequest{
		DeploymentID: r.in.DeploymentID,
		TaskQueue:    info.TaskQueueName,
		Request: activities.GateRequest{
			Holder: info.WorkflowExecution.ID,
			Group:  cmp.Or(lim.Group, info.WorkflowExecution.ID),
			Limit:  lim.Max,
		},
	}).Get(ctx, nil)
	if err != nil {
		return err
	}
	granted := workflow.GetSignalChannel(ctx, activities.GateGrantedSignal)
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(granted, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
	sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
	sel.Select(ctx)
	if ctx.Err() != nil {
		return temporal.NewCanceledError()
	}
	return nil
}

// releaseSlot returns the slot (or withdraws the request) so the gate can
// grant it to the next run; it is a no-op when no slot was asked for.
func (r *comfyRun) releaseSlot(ctx workflow.Context) {
	if !r.slotAsked {
		return
	}
	r.slotAsked = false
	holder := workflow.GetInfo(ctx).WorkflowExecution.ID
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	err := workflow.SignalExternalWorkflow(dctx, activities.GateID(r.in.DeploymentID), "", activities.GateReleaseSignal,
		activities.GateRequest{Holder: holder}).Get(dctx, nil)
	if err != nil {
		// The gate is gone (it completes when idle); it holds no slot then.
		r.logger.Warn("Could not release gate slot", "Error", err)
	}
}
