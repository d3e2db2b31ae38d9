package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/activities"
)

func newGateEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *[]string) {
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Activities{})
	env.RegisterWorkflowWithOptions(DeploymentGate, workflow.RegisterOptions{Name: activities.GateWorkflow})
	var granted []string
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", activities.GateGrantedSignal, mock.Anything).
		Return(func(_, holder, _, _ string, _ any) error {
			granted = append(granted, holder)
			return nil
		})
	return env, &granted
}

func acquireAt(env *testsuite.TestWorkflowEnvironment, at time.Duration, holder, group string, limit int) {
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(activities.GateAcquireSignal, activities.GateRequest{Holder: holder, Group: group, Limit: limit})
	}, at)
}

func releaseAt(env *testsuite.TestWorkflowEnvironment, at time.Duration, holder string) {
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(activities.GateReleaseSignal, activities.GateRequest{Holder: holder})
	}, at)
}

func TestGateSharesSlotsRoundRobinBetweenGroups(t *testing.T) {
	env, granted := newGateEnv(t)
	// Batch A queues two runs before batch B's one; with one slot B must not
	// wait for all of A.
	acquireAt(env, time.Second, "a/1", "a", 1)
	acquireAt(env, 2*time.Second, "a/2", "a", 1)
	acquireAt(env, 3*time.Second, "b/1", "b", 1)
	releaseAt(env, time.Minute, "a/1")
	releaseAt(env, 2*time.Minute, "b/1")
	var mid GateState
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(GateQuery)
		require.NoError(t, err)
		require.NoError(t, v.Get(&mid))
	}, 30*time.Second)
	releaseAt(env, 3*time.Minute, "a/2")

	env.ExecuteWorkflow(DeploymentGate, GateInput{DeploymentID: testDeployment})

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError(), "an idle gate completes")
	assert.Equal(t, []string{"a/1", "b/1", "a/2"}, *granted)
	require.Len(t, mid.Holders, 1)
	assert.Equal(t, "a/1", mid.Holders[0].Holder)
	assert.Len(t, mid.Waiting, 2)
	assert.Equal(t, 1, mid.Limit)
}

func TestGateRespectsTheLimitAndIgnoresRepeatedAcquires(t *testing.T) {
	env, granted := newGateEnv(t)
	for i, h := range []string{"r1", "r2", "r3"} {
		acquireAt(env, time.Duration(i+1)*time.Second, h, "", 2)
	}
	acquireAt(env, 4*time.Second, "r1", "", 2) // an activity retry
	releaseAt(env, time.Minute, "r1")
	releaseAt(env, 2*time.Minute, "r2")
	releaseAt(env, 2*time.Minute+time.Second, "r3")

	env.ExecuteWorkflow(DeploymentGate, GateInput{DeploymentID: testDeployment})

	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"r1", "r2", "r3"}, *granted, "r3 waits for a free slot; r1 is granted once")
}

func TestGateReclaimsSlotsOfClosedHolders(t *testing.T) {
	env, granted := newGateEnv(t)
	env.OnActivity(a.ClosedHolders, mock.Anything, []string{"dead"}).Return([]string{"dead"}, nil).Once()
	acquireAt(env, time.Second, "dead", "", 1)
	acquireAt(env, 2*time.Second, "next", "", 1)
	releaseAt(env, 20*time.Minute, "next")

	env.ExecuteWorkflow(DeploymentGate, GateInput{DeploymentID: testDeployment})

	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"dead", "next"}, *granted, "a terminated holder's slot is taken back by the lease check")
}

func TestGateChecksLeasesEvenWhenBusy(t *testing.T) {
	env, granted := newGateEnv(t)
	env.OnActivity(a.ClosedHolders, mock.Anything, []string{"dead"}).Return([]string{"dead"}, nil).Once()
	acquireAt(env, time.Second, "dead", "", 1)
	acquireAt(env, 2*time.Second, "next", "", 1)
	// Traffic every minute must not postpone the lease check: "next" gets
	// the dead holder's slot long before it gives up at minute 20.
	for i := 1; i <= 19; i++ {
		acquireAt(env, time.Duration(i)*time.Minute, "next", "", 1)
	}
	releaseAt(env, 20*time.Minute, "next")

	env.ExecuteWorkflow(DeploymentGate, GateInput{DeploymentID: testDeployment})

	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"dead", "next"}, *granted)
}
