package workflows

import (
	"fmt"
	"slices"
	"time"

	"github.com/durable-comfy/durable-comfy/activities"
)

// recheckEvery bounds how often a deployment with failing items is checked
// again, and how often a down pool's deployments are.
const recheckEvery = time.Minute

// pool is the batch's deployments and what it knows of them: which are
// ready (their cached check), which takes the next item, and which are due
// for another check. It never sees workflow.Context: the batch runs the
// checks it asks for and hands it their results.
type pool struct {
	// st holds the members (st.Pool, carried by continue-as-new); st.InFlight
	// is read to balance the load.
	st *BatchState
	// defaultGPU names the GPU of a deployment whose check did not say.
	defaultGPU string
	// rechecksOn is true once this run re-checks failing deployments
	// (batches started before re-checks existed replay without them).
	rechecksOn bool
	// recheckRunning marks the deployments whose re-check is in flight.
	recheckRunning map[string]bool
}

func newPool(st *BatchState, defaultGPU string) *pool {
	return &pool{st: st, defaultGPU: defaultGPU, recheckRunning: map[string]bool{}}
}

// choose picks the ready deployment with the fewest runs in flight relative
// to its concurrency limit (unknown limits count as equal), skipping the
// excluded ones; ties go to the earlier deployment in the pool.
func (p *pool) choose(exclude []string) *PoolMember {
	var best *PoolMember
	bestLoad, bestLimit := 0, 1
	for i := range p.st.Pool {
		m := &p.st.Pool[i]
		if m.Preflight == nil || slices.Contains(exclude, m.DeploymentID) {
			continue
		}
		load, limit := 0, max(m.Preflight.ConcurrencyLimit, 1)
		for _, f := range p.st.InFlight {
			if f.Deployment == m.DeploymentID {
				load++
			}
		}
		if best == nil || load*bestLimit < bestLoad*limit {
			best, bestLoad, bestLimit = m, load, limit
		}
	}
	return best
}

// member returns the deployment's entry, or nil for one not in the pool.
func (p *pool) member(deployment string) *PoolMember {
	for i := range p.st.Pool {
		if p.st.Pool[i].DeploymentID == deployment {
			return &p.st.Pool[i]
		}
	}
	return nil
}

// down reports whether no deployment of the pool can take an item.
func (p *pool) down() bool { return p.choose(nil) == nil }

// holding reports whether items are held back because every deployment
// failed a re-check: they wait for one to recover rather than all fail.
func (p *pool) holding() bool { return p.rechecksOn && p.down() }

// unchecked lists the members without a cached check, by position: all of
// them when the batch starts, the ones that failed after a continue-as-new.
func (p *pool) unchecked() []int {
	var members []int
	for i, m := range p.st.Pool {
		if m.Preflight == nil {
			members = append(members, i)
		}
	}
	return members
}

// setCheck caches a deployment check: a result makes it ready, an error
// takes it out of the pool with the error shown in the summary.
func (m *PoolMember) setCheck(pre *activities.PreflightResult, err error) {
	if err != nil {
		m.Preflight, m.Error = nil, err.Error()
		return
	}
	m.Preflight, m.Error = pre, ""
}

// dueRechecks marks and returns the deployments to check again now: at
// most once per recheckEvery, each one whose item failed for a reason other
// than its inputs (its machine may have changed state), and, while no
// deployment is ready, each failed one, so the batch resumes by itself when
// one recovers. The caller runs the checks and ends each with recheckEnded.
func (p *pool) dueRechecks(now time.Time) []string {
	down := p.down()
	var ids []string
	for i := range p.st.Pool {
		m := &p.st.Pool[i]
		due := now.Sub(m.CheckedAt) >= recheckEvery
		failing := m.Recheck && m.Preflight != nil
		recovering := down && m.Preflight == nil
		if !due || !(failing || recovering) || p.recheckRunning[m.DeploymentID] {
			continue
		}
		p.recheckRunning[m.DeploymentID] = true
		m.Recheck, m.CheckedAt = false, now
		ids = append(ids, m.DeploymentID)
	}
	return ids
}

// recheckEnded clears the in-flight mark dueRechecks set.
func (p *pool) recheckEnded(deployment string) { delete(p.recheckRunning, deployment) }

// rechecksRunning reports whether a re-check is in flight (continue-as-new
// waits for them: their futures do not survive it).
func (p *pool) rechecksRunning() bool { return len(p.recheckRunning) > 0 }

// untilRecheck says how long until a down pool is checked again.
func (p *pool) untilRecheck(now time.Time) (time.Duration, bool) {
	if !p.holding() {
		return 0, false
	}
	next := recheckEvery
	for _, m := range p.st.Pool {
		if m.Preflight == nil {
			next = min(next, recheckEvery-now.Sub(m.CheckedAt))
		}
	}
	return max(next, time.Second), true
}

// gpuOf names the GPU a run used: as reported, else the deployment's, else
// the batch default.
func (p *pool) gpuOf(deployment, reported string) string {
	if reported != "" {
		return reported
	}
	if m := p.member(deployment); m != nil && m.Preflight != nil && m.Preflight.GPU != "" {
		return m.Preflight.GPU
	}
	return p.defaultGPU
}

// unpriced says which ready deployment runs on a GPU without a price, as a
// sentence: with a cost cap, an unpriced GPU would cost nothing and never
// stop the batch.
func (p *pool) unpriced(prices map[string]float64) (string, bool) {
	for _, m := range p.st.Pool {
		if gpu := p.gpuOf(m.DeploymentID, ""); m.Preflight != nil && prices[gpu] <= 0 {
			return fmt.Sprintf("budget.max_cost_usd needs budget.gpu_price_per_hour[%q]: deployment %s runs on %s", gpu, m.DeploymentID, gpu), true
		}
	}
	return "", false
}
