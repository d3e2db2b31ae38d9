package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/durable-comfy/durable-comfy/activities"
)

func TestBatchNextStep(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	base := func() *BatchState {
		return &BatchState{MaxConcurrency: 2, Pool: []PoolMember{ready(poolA, 0, "")}}
	}
	cases := []struct {
		name       string
		edit       func(*batchParts)
		suggested  bool
		want       step
		wantNoTake step
	}{
		{"items left and room: take", func(*batchParts) {}, false, stepTake, stepWait},
		{"the server suggests continue-as-new before a take", func(*batchParts) {}, true, stepContinueAsNew, stepContinueAsNew},
		{"a run that took its page continues as new", func(p *batchParts) { p.pager.takenHere = p.pager.size }, false, stepContinueAsNew, stepWait},
		{"window full: wait", func(p *batchParts) { p.st.InFlight = flightsOn(poolA, 2) }, false, stepWait, stepWait},
		{"window full, lines to write: flush", func(p *batchParts) {
			p.st.InFlight = flightsOn(poolA, 2)
			p.st.Unflushed = make([]activities.BatchItemResult, flushEvery)
		}, false, stepFlush, stepFlush},
		{"all taken, nothing running: finish", func(p *batchParts) { p.st.EOF = true }, false, stepFinish, stepFinish},
		{"finish wins over continue-as-new", func(p *batchParts) { p.st.EOF = true }, true, stepFinish, stepFinish},
		{"all taken, a start pending: wait", func(p *batchParts) { p.st.EOF = true; p.window.starting = 1 }, false, stepWait, stepWait},
		{"all taken, a moved item waiting: wait", func(p *batchParts) {
			p.st.EOF = true
			p.st.Requeued = []Requeued{{NotBefore: now.Add(time.Minute)}}
		}, false, stepWait, stepWait},
		{"a moved item ready: take", func(p *batchParts) {
			p.st.EOF = true
			p.st.Requeued = []Requeued{{NotBefore: now}}
		}, false, stepTake, stepWait},
		{"stopped and idle: finish", func(p *batchParts) { p.st.StoppedBy = StoppedByBudget }, false, stepFinish, stepFinish},
		{"stopped with runs in flight: wait", func(p *batchParts) {
			p.st.StoppedBy = StoppedByBudget
			p.st.InFlight = flightsOn(poolA, 1)
		}, false, stepWait, stepWait},
		{"paused: wait", func(p *batchParts) { p.st.Paused = true; p.st.InFlight = flightsOn(poolA, 1) }, false, stepWait, stepWait},
		{"a down pool before re-checks: take (and fail the item)", func(p *batchParts) { p.st.Pool[0].Preflight = nil }, false, stepTake, stepWait},
		{"a down pool with re-checks holds items", func(p *batchParts) {
			p.st.Pool[0].Preflight = nil
			p.pool.rechecksOn = true
		}, false, stepWait, stepWait},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newBatchParts(&ComfyBatchInput{}, base())
			tc.edit(&p)
			require.Equal(t, tc.want, p.next(now, tc.suggested), "next: %s", p.next(now, tc.suggested))
			require.Equal(t, tc.wantNoTake, p.nextWithoutTaking(tc.suggested))
		})
	}
}
