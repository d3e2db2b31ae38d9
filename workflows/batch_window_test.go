package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWindowHasRoom(t *testing.T) {
	cases := []struct {
		name string
		st   BatchState
		want bool
	}{
		{"room", BatchState{MaxConcurrency: 2, InFlight: flightsOn(poolA, 1)}, true},
		{"full", BatchState{MaxConcurrency: 2, InFlight: flightsOn(poolA, 2)}, false},
		{"paused", BatchState{MaxConcurrency: 2, Paused: true}, false},
		{"stopped", BatchState{MaxConcurrency: 2, StoppedBy: StoppedByBudget}, false},
		{"cancelled", BatchState{MaxConcurrency: 2, CancelAsked: true}, false},
		{"capped at MaxBatchConcurrency", BatchState{MaxConcurrency: MaxBatchConcurrency + 5, InFlight: make([]Flight, MaxBatchConcurrency)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, newWindow(&tc.st).hasRoom())
		})
	}
}

func TestWindowStartsAndCarriedItems(t *testing.T) {
	st := &BatchState{InFlight: []Flight{{Index: 0, Dispatch: 1, Deployment: poolA}}} // carried from an earlier run
	w := newWindow(st)
	require.False(t, w.idle())
	w.started(Flight{Index: 1, Dispatch: 1, Deployment: poolA}, map[string]any{"prompt": "one"})
	w.started(Flight{Index: 2, Dispatch: 1, Deployment: poolA}, nil)
	require.Equal(t, 2, w.starting)
	require.Equal(t, []int{0}, w.cancellable(), "unconfirmed starts are cancelled once confirmed")
	w.startAnswered(1)
	require.Equal(t, []int{0, 1}, w.cancellable())
	require.Equal(t, []Flight{{Index: 0, Dispatch: 1, Deployment: poolA}}, w.carried())
	require.Len(t, w.startedHereInFlight(), 2)

	require.True(t, w.inFlight(1, 1))
	require.False(t, w.inFlight(1, 2), "another dispatch of the item is not in flight")
	f := w.remove(w.flightAt(1, 1))
	require.Equal(t, 1, f.Index)
	require.Equal(t, map[string]any{"prompt": "one"}, w.takeInputs(1))
	require.Nil(t, w.takeInputs(1), "inputs are handed out once")
	w.removeItem(0)
	w.startAnswered(2)
	w.removeItem(2)
	require.True(t, w.idle())

	require.False(t, w.cancelDue())
	st.CancelAsked = true
	require.True(t, w.cancelDue())
	w.cancelSent = true
	require.False(t, w.cancelDue())
}

func TestWindowRequeue(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	w := newWindow(&BatchState{})
	_, ok := w.nextRequeue(now)
	require.False(t, ok)
	w.requeue(Requeued{Flight: Flight{Index: 3, Dispatch: 2}, NotBefore: now.Add(requeueDelay)})
	w.requeue(Requeued{Flight: Flight{Index: 4, Dispatch: 3}, NotBefore: now.Add(10 * time.Second)})
	_, ok = w.readyRequeue(now)
	require.False(t, ok)
	d, ok := w.nextRequeue(now)
	require.True(t, ok)
	require.Equal(t, 10*time.Second, d, "the earliest moved item")
	d, _ = w.nextRequeue(now.Add(time.Hour))
	require.Equal(t, time.Second, d)

	w.dispatchClosed(Flight{Index: 3, Dispatch: 1}, now)
	i, ok := w.readyRequeue(now)
	require.True(t, ok, "the closed dispatch lets the next one start now")
	require.Equal(t, 3, w.takeRequeued(i).Index)
	w.dispatchClosed(Flight{Index: 4, Dispatch: 1}, now)
	_, ok = w.readyRequeue(now)
	require.False(t, ok, "only the dispatch right after the closed one")
}
