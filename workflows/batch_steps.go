package workflows

import "time"

// batchParts are the deterministic parts of a batch, all over one
// BatchState: they decide, the workflow shell (batch) calls Temporal.
type batchParts struct {
	st     *BatchState
	pool   *pool
	window *window
	pager  *pager
	ledger *ledger
}

func newBatchParts(in *ComfyBatchInput, st *BatchState) batchParts {
	pl := newPool(st, in.Defaults.GPU)
	return batchParts{
		st: st, pool: pl, window: newWindow(st), pager: newPager(st, in.PageSize),
		ledger: &ledger{st: st, pool: pl, policy: in.FailurePolicy, budget: in.Budget},
	}
}

// step is what the batch's loop does next without waiting for anything.
type step int

const (
	// stepWait: nothing to do until a signal, a child, or a timer.
	stepWait step = iota
	// stepTake: take the next item (a moved one first) and start it.
	stepTake
	// stepFinish: nothing runs and nothing more will start.
	stepFinish
	// stepContinueAsNew: this run took its page, or the server suggests it.
	stepContinueAsNew
	// stepFlush: enough result lines wait to be written.
	stepFlush
)

func (s step) String() string {
	return [...]string{"wait", "take", "finish", "continue-as-new", "flush"}[s]
}

// next says what the loop does now, in the order it decides. The loop's
// wake-up condition is built from it too (see batch.wakeUp), so the two
// cannot disagree.
func (p *batchParts) next(now time.Time, continueAsNewSuggested bool) step {
	if p.canTake(now) {
		if p.pager.runFull() || continueAsNewSuggested {
			return stepContinueAsNew
		}
		return stepTake
	}
	return p.nextWithoutTaking(continueAsNewSuggested)
}

// nextWithoutTaking is next once taking an item turned out impossible (the
// source had nothing at the cursor, or could not be read).
func (p *batchParts) nextWithoutTaking(continueAsNewSuggested bool) step {
	switch {
	case p.done():
		return stepFinish
	case continueAsNewSuggested:
		return stepContinueAsNew
	case p.ledger.flushDue():
		return stepFlush
	}
	return stepWait
}

// canTake says whether an item can be taken now: the window has room, the
// pool is not holding items back, and a moved item is ready or items are
// left.
func (p *batchParts) canTake(now time.Time) bool {
	if !p.window.hasRoom() || p.pool.holding() {
		return false
	}
	if _, ok := p.window.readyRequeue(now); ok {
		return true
	}
	return p.pager.more()
}

// done says whether nothing is running and nothing more will start.
func (p *batchParts) done() bool {
	if !p.window.idle() {
		return false
	}
	if p.ledger.stopped() {
		return true
	}
	return p.pager.exhausted() && len(p.st.Requeued) == 0
}
