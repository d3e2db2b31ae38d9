package workflows

import (
	"slices"
	"time"
)

const (
	// requeueDelay is how long a moved item waits for its previous dispatch
	// (same workflow id) to close when this run did not start it and so has
	// no future to tell; maxStartTries bounds how often it tries.
	requeueDelay  = 30 * time.Second
	maxStartTries = 5
)

// window is the sliding window of items in flight, and the moved items
// waiting to start again on another deployment. st.InFlight and st.Requeued
// travel across continue-as-new; the rest covers children this run started.
type window struct {
	st *BatchState
	// startedHere marks the items this run started: it has their futures.
	// Items in flight that an earlier run started are "carried".
	startedHere map[int]bool
	// inputs are those items' inputs (the state carries none).
	inputs map[int]map[string]any
	// unconfirmed marks the items whose child start is not yet confirmed,
	// and starting counts those starts: continue-as-new waits for them.
	unconfirmed map[int]bool
	starting    int
	// cancelSent is true once the children in flight were asked to cancel.
	cancelSent bool
}

func newWindow(st *BatchState) *window {
	return &window{st: st, startedHere: map[int]bool{}, inputs: map[int]map[string]any{}, unconfirmed: map[int]bool{}}
}

// hasRoom says whether the window may take another item: not paused,
// stopped or cancelled, and fewer runs in flight than the concurrency.
func (w *window) hasRoom() bool {
	return !w.st.Paused && w.st.StoppedBy == "" && !w.st.CancelAsked &&
		len(w.st.InFlight) < min(w.st.MaxConcurrency, MaxBatchConcurrency)
}

// cancelDue says whether a cancel was asked and not yet sent to the children.
func (w *window) cancelDue() bool { return w.st.CancelAsked && !w.cancelSent }

// idle says whether no child runs and no start is pending.
func (w *window) idle() bool { return len(w.st.InFlight) == 0 && w.starting == 0 }

// started adds a dispatch whose child start was just issued.
func (w *window) started(f Flight, inputs map[string]any) {
	w.st.InFlight = append(w.st.InFlight, f)
	w.inputs[f.Index], w.unconfirmed[f.Index], w.startedHere[f.Index] = inputs, true, true
	w.starting++
}

// startAnswered ends the wait for a child start, confirmed or refused.
func (w *window) startAnswered(index int) {
	w.starting--
	delete(w.unconfirmed, index)
}

// flightAt is the position in st.InFlight of one dispatch of an item, or -1.
func (w *window) flightAt(index, dispatch int) int {
	for i, f := range w.st.InFlight {
		if f.Index == index && f.Dispatch == dispatch {
			return i
		}
	}
	return -1
}

// inFlight says whether the dispatch is still in flight.
func (w *window) inFlight(index, dispatch int) bool { return w.flightAt(index, dispatch) >= 0 }

// remove takes the flight at position i out of the window.
func (w *window) remove(i int) Flight {
	f := w.st.InFlight[i]
	w.st.InFlight = slices.Delete(w.st.InFlight, i, i+1)
	return f
}

// removeItem takes every dispatch of an item out of the window.
func (w *window) removeItem(index int) {
	w.st.InFlight = slices.DeleteFunc(w.st.InFlight, func(f Flight) bool { return f.Index == index })
}

// takeInputs returns and forgets the inputs of an item started here (nil
// for a carried one).
func (w *window) takeInputs(index int) map[string]any {
	inputs := w.inputs[index]
	delete(w.inputs, index)
	return inputs
}

// carried lists the items in flight that an earlier run started: only
// their report signal tells this run that they ended.
func (w *window) carried() []Flight {
	var flights []Flight
	for _, f := range w.st.InFlight {
		if !w.startedHere[f.Index] {
			flights = append(flights, f)
		}
	}
	return flights
}

// startedHereInFlight lists the items in flight that this run started.
func (w *window) startedHereInFlight() []Flight {
	var flights []Flight
	for _, f := range w.st.InFlight {
		if w.startedHere[f.Index] {
			flights = append(flights, f)
		}
	}
	return flights
}

// cancellable lists the items in flight whose child start is confirmed (a
// pending one is cancelled once confirmed).
func (w *window) cancellable() []int {
	var indexes []int
	for _, f := range w.st.InFlight {
		if !w.unconfirmed[f.Index] {
			indexes = append(indexes, f.Index)
		}
	}
	return indexes
}

// requeue adds a moved item, to start again from rq.NotBefore on.
func (w *window) requeue(rq Requeued) { w.st.Requeued = append(w.st.Requeued, rq) }

// readyRequeue finds a moved item whose previous dispatch has closed.
func (w *window) readyRequeue(now time.Time) (int, bool) {
	for i, rq := range w.st.Requeued {
		if !rq.NotBefore.After(now) {
			return i, true
		}
	}
	return 0, false
}

// takeRequeued removes and returns the moved item at position i.
func (w *window) takeRequeued(i int) Requeued {
	rq := w.st.Requeued[i]
	w.st.Requeued = slices.Delete(w.st.Requeued, i, i+1)
	return rq
}

// nextRequeue is how long until the next moved item may start.
func (w *window) nextRequeue(now time.Time) (time.Duration, bool) {
	if len(w.st.Requeued) == 0 {
		return 0, false
	}
	first := w.st.Requeued[0].NotBefore
	for _, rq := range w.st.Requeued[1:] {
		if rq.NotBefore.Before(first) {
			first = rq.NotBefore
		}
	}
	return max(first.Sub(now), time.Second), true
}

// dispatchClosed lets the next dispatch of a moved item start now: the one
// before it (same workflow id) has closed.
func (w *window) dispatchClosed(f Flight, now time.Time) {
	for i := range w.st.Requeued {
		if w.st.Requeued[i].Index == f.Index && w.st.Requeued[i].Dispatch == f.Dispatch+1 {
			w.st.Requeued[i].NotBefore = now
		}
	}
}
