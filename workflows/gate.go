package workflows

import (
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/activities"
)

// GateQuery returns a gate's GateState.
const GateQuery = "gate"

const (
	// gateEventsPerRun bounds a gate's history: it continues as new after
	// this many signals.
	gateEventsPerRun = 1000
	// gateIdle is how long an empty gate lingers before it completes; the
	// next acquire starts it again.
	gateIdle = 10 * time.Minute
	// gateLeaseCheck is how often a gate with holders checks that they are
	// still running, to take back slots of terminated workflows.
	gateLeaseCheck = 5 * time.Minute
)

// GateInput starts a deployment gate (activities.GateStart is the same
// JSON without State).
type GateInput struct {
	DeploymentID string `json:"deployment_id"`
	// State is carried across continue-as-new; internal.
	State *GateState `json:"state,omitempty"`
}

// GateState is what a gate holds.
type GateState struct {
	Limit   int                      `json:"limit"`
	Holders []activities.GateRequest `json:"holders"`
	Waiting []activities.GateRequest `json:"waiting"`
	// LastGroup is the group served last; the next grant goes to the next
	// group in name order, so one large batch cannot starve another.
	LastGroup string `json:"last_group,omitempty"`
	// NextLeaseCheck is when the holders are next checked for having ended.
	NextLeaseCheck time.Time `json:"next_lease_check,omitzero"`
}

// DeploymentGate is a fair counting semaphore for one deployment: runs that
// set shared_limit acquire a slot before they submit and release it when
// their run ends. Slots rotate between groups (batches) round-robin.
func DeploymentGate(ctx workflow.Context, in GateInput) error {
	st := in.State
	if st == nil {
		st = &GateState{Holders: []activities.GateRequest{}, Waiting: []activities.GateRequest{}}
	}
	if err := workflow.SetQueryHandler(ctx, GateQuery, func() (GateState, error) { return *st, nil }); err != nil {
		return err
	}
	acquire := workflow.GetSignalChannel(ctx, activities.GateAcquireSignal)
	release := workflow.GetSignalChannel(ctx, activities.GateReleaseSignal)
	logger := workflow.GetLogger(ctx)

	for handled := 0; handled < gateEventsPerRun; handled++ {
		timerCtx, cancelTimer := workflow.WithCancel(ctx)
		wait := gateIdle
		if len(st.Holders) > 0 {
			// The lease check has its own schedule: on a busy gate every
			// signal would otherwise restart the wait and it would never run.
			if st.NextLeaseCheck.IsZero() {
				st.NextLeaseCheck = workflow.Now(ctx).Add(gateLeaseCheck)
			}
			wait = max(st.NextLeaseCheck.Sub(workflow.Now(ctx)), time.Second)
		} else {
			st.NextLeaseCheck = time.Time{}
		}
		timedOut := false
		sel := workflow.NewSelector(ctx)
		// Releases before acquires: a holder's new acquire must not be
		// taken for a retry of the one its pending release ends.
		sel.AddReceive(release, func(c workflow.ReceiveChannel, _ bool) {
			var r activities.GateRequest
			c.Receive(ctx, &r)
			st.remove(r.Holder)
		})
		sel.AddReceive(acquire, func(c workflow.ReceiveChannel, _ bool) {
			var r activities.GateRequest
			c.Receive(ctx, &r)
			st.enqueue(r)
		})
		sel.AddFuture(workflow.NewTimer(timerCtx, wait), func(workflow.Future) { timedOut = true })
		sel.Select(ctx)
		cancelTimer()

		if timedOut {
			switch {
			case len(st.Holders) == 0 && len(st.Waiting) == 0:
				// Idle: complete, but not before taking any signal that raced in.
				if !drain(ctx, acquire, release, st) {
					return nil
				}
			case !workflow.Now(ctx).Before(st.NextLeaseCheck):
				reclaimClosedHolders(ctx, st)
				st.NextLeaseCheck = workflow.Now(ctx).Add(gateLeaseCheck)
			}
		}
		st.grant(ctx)
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			break
		}
	}
	// grant yields while it signals holders, and signals that arrive then
	// would be lost by continue-as-new: repeat until none is left.
	for {
		drain(ctx, acquire, release, st)
		st.grant(ctx)
		if acquire.Len() == 0 && release.Len() == 0 {
			break
		}
	}
	logger.Info("Gate continues as new", "Holders", len(st.Holders), "Waiting", len(st.Waiting))
	return workflow.NewContinueAsNewError(ctx, DeploymentGate, GateInput{DeploymentID: in.DeploymentID, State: st})
}

// drain applies every buffered signal and reports whether there were any.
func drain(ctx workflow.Context, acquire, release workflow.ReceiveChannel, st *GateState) bool {
	got := false
	for {
		var r activities.GateRequest
		switch {
		case release.ReceiveAsync(&r):
			st.remove(r.Holder)
		case acquire.ReceiveAsync(&r):
			st.enqueue(r)
		default:
			return got
		}
		got = true
	}
}

func (st *GateState) enqueue(r activities.GateRequest) {
	if r.Limit > 0 {
		st.Limit = r.Limit
	}
	if r.Group == "" {
		r.Group = r.Holder
	}
	if st.holds(r.Holder) || slices.ContainsFunc(st.Waiting, func(w activities.GateRequest) bool { return w.Holder == r.Holder }) {
		return // a retried acquire
	}
	st.Waiting = append(st.Waiting, r)
}

func (st *GateState) remove(holder string) {
	st.Holders = slices.DeleteFunc(st.Holders, func(h activities.GateRequest) bool { return h.Holder == holder })
	st.Waiting = slices.DeleteFunc(st.Waiting, func(w activities.GateRequest) bool { return w.Holder == holder })
}

func (st *GateState) holds(holder string) bool {
	return slices.ContainsFunc(st.Holders, func(h activities.GateRequest) bool { return h.Holder == holder })
}

// grant hands out free slots, telling each new holder by signal.
func (st *GateState) grant(ctx workflow.Context) {
	for len(st.Waiting) > 0 && len(st.Holders) < max(st.Limit, 1) {
		i := st.nextIndex()
		r := st.Waiting[i]
		st.Waiting = slices.Delete(st.Waiting, i, i+1)
		err := workflow.SignalExternalWorkflow(ctx, r.Holder, "", activities.GateGrantedSignal, nil).Get(ctx, nil)
		if err != nil {
			// The holder is gone (completed, terminated): the slot stays free.
			workflow.GetLogger(ctx).Warn("Could not grant gate slot; dropping holder", "Holder", r.Holder, "Error", err)
			continue
		}
		st.Holders = append(st.Holders, r)
		st.LastGroup = r.Group
	}
}

// nextIndex picks the oldest waiter of the first group after LastGroup in
// name order, wrapping around: round-robin between groups, FIFO within one.
func (st *GateState) nextIndex() int {
	groups := make([]string, 0, len(st.Waiting))
	for _, w := range st.Waiting {
		if !slices.Contains(groups, w.Group) {
			groups = append(groups, w.Group)
		}
	}
	slices.Sort(groups)
	next := groups[0]
	for _, g := range groups {
		if g > st.LastGroup {
			next = g
			break
		}
	}
	return slices.IndexFunc(st.Waiting, func(w activities.GateRequest) bool { return w.Group == next })
}

func reclaimClosedHolders(ctx workflow.Context, st *GateState) {
	ids := make([]string, len(st.Holders))
	for i, h := range st.Holders {
		ids[i] = h.Holder
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             "Check that gate holders are still running",
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var closed []string
	if err := workflow.ExecuteActivity(actx, a.ClosedHolders, ids).Get(ctx, &closed); err != nil {
		workflow.GetLogger(ctx).Warn("Could not check gate holders", "Error", err)
		return
	}
	for _, id := range closed {
		st.remove(id)
	}
}
