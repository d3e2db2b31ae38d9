package workflows

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/durable-comfy/durable-comfy/activities"
)

func ready(id string, limit int, gpu string) PoolMember {
	return PoolMember{DeploymentID: id, Preflight: &activities.PreflightResult{DeploymentID: id, ConcurrencyLimit: limit, GPU: gpu}}
}

func flightsOn(deployment string, n int) []Flight {
	var fs []Flight
	for i := range n {
		fs = append(fs, Flight{Index: len(deployment)*100 + i, Dispatch: 1, Deployment: deployment})
	}
	return fs
}

func TestPoolChoose(t *testing.T) {
	cases := []struct {
		name     string
		members  []PoolMember
		inFlight []Flight
		exclude  []string
		want     string // "" for none
	}{
		{"empty pool", nil, nil, nil, ""},
		{"only unready members", []PoolMember{{DeploymentID: poolA}}, nil, nil, ""},
		{"tie goes to the earlier member", []PoolMember{ready(poolA, 0, ""), ready(poolB, 0, "")}, nil, nil, poolA},
		{"fewest in flight", []PoolMember{ready(poolA, 0, ""), ready(poolB, 0, "")}, flightsOn(poolA, 1), nil, poolB},
		{"relative to the limit", []PoolMember{ready(poolA, 2, ""), ready(poolB, 4, "")}, append(flightsOn(poolA, 1), flightsOn(poolB, 2)...), nil, poolA},
		{"limit favours the larger", []PoolMember{ready(poolA, 2, ""), ready(poolB, 4, "")}, append(flightsOn(poolA, 1), flightsOn(poolB, 1)...), nil, poolB},
		{"excluded members are skipped", []PoolMember{ready(poolA, 0, ""), ready(poolB, 0, "")}, nil, []string{poolA}, poolB},
		{"unready skipped", []PoolMember{{DeploymentID: poolA}, ready(poolB, 0, "")}, nil, nil, poolB},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(&BatchState{Pool: tc.members, InFlight: tc.inFlight}, "")
			got := p.choose(tc.exclude)
			if tc.want == "" {
				require.Nil(t, got)
				require.True(t, p.down())
				return
			}
			require.NotNil(t, got)
			require.Equal(t, tc.want, got.DeploymentID)
			require.False(t, p.down())
		})
	}
}

func TestPoolDueRechecks(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	long, recent := now.Add(-2*recheckEvery), now.Add(-recheckEvery/2)
	failing := func(id string, checked time.Time) PoolMember {
		m := ready(id, 0, "")
		m.Recheck, m.CheckedAt = true, checked
		return m
	}
	cases := []struct {
		name    string
		members []PoolMember
		running []string
		want    []string
	}{
		{"nothing failed", []PoolMember{ready(poolA, 0, ""), ready(poolB, 0, "")}, nil, nil},
		{"a failing member is checked again", []PoolMember{failing(poolA, long), ready(poolB, 0, "")}, nil, []string{poolA}},
		{"at most once per recheckEvery", []PoolMember{failing(poolA, recent)}, nil, nil},
		{"not while its check runs", []PoolMember{failing(poolA, long)}, []string{poolA}, nil},
		{"a down pool checks its failed members", []PoolMember{{DeploymentID: poolA, CheckedAt: long}, {DeploymentID: poolB, CheckedAt: recent}}, nil, []string{poolA}},
		{"failed members wait while another is ready", []PoolMember{{DeploymentID: poolA, CheckedAt: long}, ready(poolB, 0, "")}, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := &BatchState{Pool: tc.members}
			p := newPool(st, "")
			for _, id := range tc.running {
				p.recheckRunning[id] = true
			}
			got := p.dueRechecks(now)
			require.Equal(t, tc.want, got)
			for _, id := range got {
				m := p.member(id)
				require.False(t, m.Recheck)
				require.Equal(t, now, m.CheckedAt)
				require.True(t, p.rechecksRunning())
				require.Empty(t, p.dueRechecks(now), "a running re-check is not started twice")
				p.recheckEnded(id)
			}
			require.Equal(t, len(tc.running) > 0, p.rechecksRunning())
		})
	}
}

func TestPoolUntilRecheckAndHolding(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := &BatchState{Pool: []PoolMember{{DeploymentID: poolA, CheckedAt: now.Add(-40 * time.Second)}, {DeploymentID: poolB, CheckedAt: now.Add(-10 * time.Second)}}}
	p := newPool(st, "")
	_, ok := p.untilRecheck(now)
	require.False(t, ok, "before re-checks are on the pool holds nothing back")
	require.False(t, p.holding())
	p.rechecksOn = true
	require.True(t, p.holding())
	d, ok := p.untilRecheck(now)
	require.True(t, ok)
	require.Equal(t, 20*time.Second, d, "the earliest member due")
	d, _ = p.untilRecheck(now.Add(time.Hour))
	require.Equal(t, time.Second, d, "never less than a second")
	st.Pool[1].setCheck(&activities.PreflightResult{}, nil)
	require.False(t, p.holding())
	st.Pool[1].setCheck(nil, errors.New("machine in error"))
	require.True(t, p.holding())
	require.Equal(t, "machine in error", st.Pool[1].Error)
}

func TestPoolGPUAndPrices(t *testing.T) {
	st := &BatchState{Pool: []PoolMember{ready(poolA, 0, "L40S"), ready(poolB, 0, ""), {DeploymentID: poolC}}}
	p := newPool(st, "A10G")
	require.Equal(t, "H100", p.gpuOf(poolA, "H100"), "the reported GPU wins")
	require.Equal(t, "L40S", p.gpuOf(poolA, ""))
	require.Equal(t, "A10G", p.gpuOf(poolB, ""), "the batch default otherwise")
	require.Equal(t, "A10G", p.gpuOf("unknown", ""))

	_, missing := p.unpriced(map[string]float64{"L40S": 2, "A10G": 1})
	require.False(t, missing, "an unready member's GPU needs no price")
	msg, missing := p.unpriced(map[string]float64{"L40S": 2})
	require.True(t, missing)
	require.Equal(t, `budget.max_cost_usd needs budget.gpu_price_per_hour["A10G"]: deployment `+poolB+` runs on A10G`, msg)
}
