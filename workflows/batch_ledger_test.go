package workflows

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/preflight"
)

func newTestLedger(st *BatchState, policy FailurePolicy, budget Budget) *ledger {
	return &ledger{st: st, pool: newPool(st, "A10G"), policy: policy, budget: budget}
}

func TestLedgerRecord(t *testing.T) {
	st := &BatchState{Pool: []PoolMember{ready(poolA, 0, ""), ready(poolB, 0, "")}}
	l := newTestLedger(st, FailurePolicy{}, Budget{})
	moved := Flight{Index: 4, Line: 6, Dispatch: 2, Deployment: poolB, Tried: []string{poolA}}
	l.record(moved, "b/4", map[string]any{"p": 1}, activities.BatchItemResult{Status: activities.ItemSucceeded})
	l.record(Flight{Index: 5, Deployment: poolA}, "b/5", nil, activities.BatchItemResult{Status: "weird", ErrorType: ErrTypeRunFailed})
	l.record(Flight{Index: 6, Deployment: poolB}, "b/6", nil, activities.BatchItemResult{Status: activities.ItemFailed, ErrorType: preflight.KindInvalidInput})
	l.record(Flight{Index: 7, Deployment: poolA}, "b/7", nil, activities.BatchItemResult{Status: activities.ItemSkipped, DeploymentID: poolA})
	l.record(Flight{Index: 8, Deployment: poolA}, "b/8", nil, activities.BatchItemResult{Status: activities.ItemCancelled})

	require.Equal(t, 1, st.Succeeded)
	require.Equal(t, 2, st.Failed)
	require.Equal(t, 1, st.Skipped)
	require.Equal(t, 1, st.Cancelled)
	require.Equal(t, 5, l.ended())
	lines := st.Unflushed
	require.Len(t, lines, 5)
	require.Equal(t, activities.BatchItemResult{Index: 4, Line: 6, Inputs: map[string]any{"p": 1}, WorkflowID: "b/4", Status: activities.ItemSucceeded,
		DeploymentID: poolB, Deployments: []string{poolA, poolB}}, lines[0])
	require.Equal(t, activities.ItemFailed, lines[1].Status, "an unknown status counts as failed")
	require.Equal(t, "", lines[3].DeploymentID, "a skipped item ran nowhere in this batch")
	require.True(t, st.Pool[0].Recheck, "a failure not caused by the inputs asks for a re-check")
	require.False(t, st.Pool[1].Recheck, "invalid inputs say nothing about the machine")
	require.Equal(t, 1, st.Pool[0].Failed)
	require.Equal(t, 1, st.Pool[1].Succeeded)

	require.False(t, l.flushDue())
	l.flushed(1, 3)
	require.Equal(t, 1, st.Parts)
	require.Len(t, st.Unflushed, 2, "lines recorded during the write stay")
}

func TestLedgerPolicies(t *testing.T) {
	cases := []struct {
		name      string
		policy    FailurePolicy
		budget    Budget
		succeeded int
		failed    int
		gpuSecs   float64
		costUSD   float64
		want      string
	}{
		{"no policy", FailurePolicy{}, Budget{}, 1, 100, 1e6, 1e6, ""},
		{"max failures", FailurePolicy{MaxFailures: 3}, Budget{}, 10, 3, 0, 0, StoppedByFailures},
		{"below max failures", FailurePolicy{MaxFailures: 3}, Budget{}, 10, 2, 0, 0, ""},
		{"ratio before the default sample", FailurePolicy{MaxFailureRatio: 0.1}, Budget{}, 9, 10, 0, 0, ""},
		{"ratio from the default sample", FailurePolicy{MaxFailureRatio: 0.1}, Budget{}, 10, 10, 0, 0, StoppedByFailures},
		{"ratio from a set sample", FailurePolicy{MaxFailureRatio: 0.5, MinSample: 4}, Budget{}, 1, 3, 0, 0, StoppedByFailures},
		{"ratio not exceeded", FailurePolicy{MaxFailureRatio: 0.5, MinSample: 4}, Budget{}, 2, 2, 0, 0, ""},
		{"gpu seconds", FailurePolicy{}, Budget{MaxGPUSeconds: 100}, 1, 0, 100, 0, StoppedByBudget},
		{"cost", FailurePolicy{}, Budget{MaxCostUSD: 1}, 1, 0, 0, 1, StoppedByBudget},
		{"failures before budget", FailurePolicy{MaxFailures: 1}, Budget{MaxGPUSeconds: 1}, 0, 1, 5, 0, StoppedByFailures},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := &BatchState{Succeeded: tc.succeeded, Failed: tc.failed, GPUSecs: tc.gpuSecs, CostUSD: tc.costUSD}
			l := newTestLedger(st, tc.policy, tc.budget)
			require.Equal(t, tc.want != "", l.applyPolicies())
			require.Equal(t, tc.want, st.StoppedBy)
			require.False(t, l.applyPolicies(), "a stopped batch stops once")
		})
	}
	st := &BatchState{Failed: 5, CancelAsked: true, StoppedBy: StoppedByCancel}
	require.False(t, newTestLedger(st, FailurePolicy{MaxFailures: 1}, Budget{}).applyPolicies())
	require.Equal(t, StoppedByCancel, st.StoppedBy, "a cancel is not overwritten")
}

func TestLedgerUsageAndResult(t *testing.T) {
	st := &BatchState{Total: 10, Pool: []PoolMember{ready(poolA, 0, "L40S"), {DeploymentID: poolB, Error: "building"}}}
	st.Pool[0].Preflight.MachineName = "m-a"
	l := newTestLedger(st, FailurePolicy{}, Budget{GPUPricePerHour: map[string]float64{"L40S": 3.6, "H100": 36}})
	l.addUsage(poolA, ItemReport{GPUSeconds: 100})
	l.addUsage(poolA, ItemReport{GPUSeconds: 10, GPU: "H100"})
	require.InDelta(t, 110, st.GPUSecs, 1e-9)
	require.InDelta(t, 110, st.Pool[0].GPUSecs, 1e-9)
	require.InDelta(t, 0.1+0.1, st.CostUSD, 1e-9)

	cases := []struct {
		name string
		edit func(*BatchState)
		want string
	}{
		{"succeeded", func(*BatchState) {}, BatchSucceeded},
		{"with failures", func(s *BatchState) { s.Failed = 1 }, BatchCompletedWithFailures},
		{"with cancelled items", func(s *BatchState) { s.Cancelled = 1 }, BatchCompletedWithFailures},
		{"stopped", func(s *BatchState) { s.StoppedBy = StoppedBySource; s.SourceError = "gone" }, BatchStopped},
		{"cancelled", func(s *BatchState) { s.StoppedBy, s.CancelAsked = StoppedByCancel, true }, BatchCancelled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := *st
			s.Succeeded = 4
			tc.edit(&s)
			res := (&ledger{st: &s, pool: newPool(&s, "")}).result("b", "/out/b/results.jsonl")
			require.Equal(t, tc.want, res.Status)
			require.Equal(t, 10-s.Succeeded-s.Failed-s.Cancelled, res.NotStarted)
			require.Equal(t, s.SourceError, res.Error)
			require.Equal(t, "/out/b/results.jsonl", res.ResultsPath)
			require.Equal(t, []DeploymentSummary{
				{DeploymentID: poolA, MachineName: "m-a", GPUSeconds: 110},
				{DeploymentID: poolB, Error: "building"},
			}, res.PerDeployment)
		})
	}
}
