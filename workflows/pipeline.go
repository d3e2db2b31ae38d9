package workflows

import (
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/pipeline"
)

// Stable names of the pipeline workflow.
const (
	ComfyPipelineWorkflow = "ComfyPipeline"
	// PipelineProgressQuery has the same name as a batch's progress query
	// (ProgressQuery); each workflow answers it with its own document.
	PipelineProgressQuery = "progress"
	// ErrTypeStepFailed is the application error type of a pipeline whose
	// step failed; the message names the step, the cause is the step's error.
	ErrTypeStepFailed = "StepFailed"
)

// States of a pipeline step, and of each of its runs.
const (
	StepPending   = "pending"
	StepRunning   = "running"
	StepSucceeded = "succeeded"
	StepFailed    = "failed"
	StepCancelled = "cancelled"
	StepSkipped   = "skipped" // never started: the pipeline failed or was cancelled first
)

// Pipeline statuses (ComfyPipelineResult.Status, and the ComfyStatus search
// attribute where it says so).
const (
	PipelinePreparing  = "preparing"
	PipelineRunning    = "running"    // ComfyStatus
	PipelineSucceeded  = "succeeded"  // ComfyStatus
	PipelineFailed     = "failed"     // ComfyStatus
	PipelineCancelling = "cancelling" //
	PipelineCancelled  = "cancelled"  // ComfyStatus
)

const (
	defaultMaxParallel = 20
	maxParallelLimit   = 200
	// urlFreshness is how long output URLs read for one step are reused for
	// another; ComfyDeploy signs private URLs for about an hour, and the
	// consuming run may queue a while before it downloads them.
	urlFreshness = 20 * time.Minute
)

// ComfyPipelineInput starts a ComfyPipeline. Give the spec either as a
// JSON object (Spec) or as YAML or JSON text (SpecText); the text is
// decoded strictly, so misspelt fields are reported rather than dropped.
type ComfyPipelineInput struct {
	Spec     *pipeline.Spec `json:"spec,omitempty"`
	SpecText string         `json:"spec_text,omitempty"`
	// Outputs applies to every step's runs. With Folder set, a step's
	// outputs go to "<folder>-<step>" ("<folder>-<step>-<i>" for the i-th
	// run of a for_each step); otherwise to a folder named after the step's
	// child workflow id.
	Outputs OutputSettings `json:"outputs,omitzero"`
	// Labels are copied to every step, with pipeline, pipeline_step and
	// (for for_each runs) pipeline_item added.
	Labels map[string]string `json:"labels,omitempty"`
	// MaxParallel bounds the step runs in flight at once (default 20).
	MaxParallel int `json:"max_parallel,omitempty"`
}

// ComfyPipelineResult is the pipeline's result, and (live) the answer to
// the progress query.
type ComfyPipelineResult struct {
	WorkflowID string `json:"workflow_id"`
	Name       string `json:"name,omitempty"`
	// Status is one of the Pipeline* values.
	Status string `json:"status"`
	// Steps are in spec order.
	Steps []StepProgress `json:"steps"`
	// FailedStep names the step whose failure failed the pipeline.
	FailedStep string `json:"failed_step,omitempty"`
	Error      string `json:"error,omitempty"`
}

// StepProgress is one step's state and runs.
type StepProgress struct {
	Name         string   `json:"name"`
	DeploymentID string   `json:"deployment_id"`
	State        string   `json:"state"`
	DependsOn    []string `json:"depends_on,omitempty"`
	ForEach      string   `json:"for_each,omitempty"`
	// Runs has one entry, or one per item of a for_each step, in item order.
	Runs      []StepRun `json:"runs"`
	StartedAt time.Time `json:"started_at,omitzero"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	Error     string    `json:"error,omitempty"`
}

// StepRun is one child ComfyRun of a step.
type StepRun struct {
	Index      int    `json:"index"`
	WorkflowID string `json:"workflow_id"`
	State      string `json:"state"`
	// RunID is the ComfyDeploy run of the child's last attempt.
	RunID        string                    `json:"run_id,omitempty"`
	Outputs      []activities.StoredOutput `json:"outputs,omitempty"`
	ManifestPath string                    `json:"manifest_path,omitempty"`
	Error        string                    `json:"error,omitempty"`
}

// ComfyPipeline runs a pipeline spec: it checks the whole spec and every
// deployment first, then runs each step as a child ComfyRun as soon as its
// dependencies have succeeded, independent steps in parallel and for_each
// steps fanned out. A step failure cancels the running steps and fails the
// pipeline naming the step; cancelling the pipeline cancels every running
// step and waits until their remote runs are cancelled.
func ComfyPipeline(ctx workflow.Context, in ComfyPipelineInput) (*ComfyPipelineResult, error) {
	p := &comfyPipeline{in: in}
	if err := p.setup(ctx); err != nil {
		return nil, err
	}
	return p.run(ctx)
}

type comfyPipeline struct {
	in     ComfyPipelineInput
	logger log.Logger
	status ComfyPipelineResult
	plan   *activities.PipelinePlan
	steps  map[string]*pipeline.Step
	// progress points into status.Steps by step name.
	progress map[string]*StepProgress
	// outputs caches fresh output URLs per step, read at fetchedAt.
	outputs   map[string]pipeline.StepOutputs
	fetchedAt map[string]time.Time
	// running counts step goroutines; active counts child runs in flight.
	running, active int
	// version changes whenever a step changes state; the scheduler waits on it.
	version int
	// failure is the first step failure; cancelRun stops the other steps.
	failure   error
	cancelRun workflow.CancelFunc
	shown     string
}

func (p *comfyPipeline) setup(ctx workflow.Context) error {
	p.logger = workflow.GetLogger(ctx)
	p.status = ComfyPipelineResult{WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID, Status: PipelinePreparing, Steps: []StepProgress{}}
	p.outputs, p.fetchedAt = map[string]pipeline.StepOutputs{}, map[string]time.Time{}
	err := workflow.SetQueryHandlerWithOptions(ctx, PipelineProgressQuery, func() (ComfyPipelineResult, error) { return p.status, nil },
		workflow.QueryHandlerOptions{Description: "Pipeline status and every step's state, child workflows, ComfyDeploy runs and outputs"})
	if err != nil {
		return err
	}
	if problems := p.in.problems(); len(problems) > 0 {
		msg := "invalid ComfyPipeline input: " + strings.Join(problems, "; ")
		p.status.Status, p.status.Error = PipelineFailed, msg
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeInvalidWorkflowInput, nil, problems)
	}
	p.upsert(ctx, PipelineRunning)
	p.showDetails(ctx)
	return nil
}

func (in *ComfyPipelineInput) problems() []string {
	var problems []string
	if (in.Spec == nil) == (in.SpecText == "") {
		problems = append(problems, "give the pipeline as either spec (a JSON object) or spec_text (YAML or JSON text)")
	}
	if in.MaxParallel < 0 || in.MaxParallel > maxParallelLimit {
		problems = append(problems, fmt.Sprintf("max_parallel must be between 1 and %d", maxParallelLimit))
	}
	if f := in.Outputs.Folder; f != "" && (!folderPattern.MatchString(f) || len(f) > 60) {
		problems = append(problems, fmt.Sprintf("outputs.folder %q must be one path segment of at most 60 letters, digits, '.', '-' and '_'", f))
	}
	return problems
}

func (p *comfyPipeline) run(ctx workflow.Context) (*ComfyPipelineResult, error) {
	if err := p.prepare(ctx); err != nil {
		if temporal.IsCanceledError(err) {
			return p.cancelled(ctx)
		}
		return nil, p.fail(ctx, err)
	}
	p.setStatus(ctx, PipelineRunning)

	runCtx, cancelRun := workflow.WithCancel(ctx)
	p.cancelRun = cancelRun
	for {
		p.startReady(runCtx)
		if p.running == 0 {
			break // nothing runs and nothing more can start
		}
		seen := p.version
		if err := workflow.Await(ctx, func() bool { return p.version != seen }); err != nil {
			break // the pipeline was cancelled; runCtx is cancelled with it
		}
	}
	// Children are started with WaitForCancellation, so this waits until
	// every cancelled step has cancelled its remote run; ending earlier
	// would terminate the children before they could.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	_ = workflow.Await(dctx, func() bool { return p.running == 0 })
	for i := range p.status.Steps {
		if p.status.Steps[i].State == StepPending {
			p.status.Steps[i].State = StepSkipped
		}
	}

	switch {
	case ctx.Err() != nil:
		return p.cancelled(ctx)
	case p.failure != nil:
		return nil, p.fail(ctx, p.failure)
	}
	p.setStatus(ctx, PipelineSucceeded)
	p.upsert(ctx, PipelineSucceeded)
	return &p.status, nil
}

// prepare checks the spec and every deployment in one activity, then the
// shape of each step's ComfyRun input, before any run is paid for.
func (p *comfyPipeline) prepare(ctx workflow.Context) error {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             "Validate pipeline and preflight its deployments",
		StartToCloseTimeout: 5 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 10},
	})
	var plan activities.PipelinePlan
	err := workflow.ExecuteActivity(actx, a.PreparePipeline, activities.PreparePipelineRequest{Spec: p.in.Spec, SpecText: p.in.SpecText}).Get(actx, &plan)
	if err != nil {
		return err
	}
	p.plan = &plan
	p.status.Name = plan.Spec.Name
	p.steps, p.progress = map[string]*pipeline.Step{}, map[string]*StepProgress{}
	var problems []string
	for i := range plan.Spec.Steps {
		st := &plan.Spec.Steps[i]
		p.steps[st.Name] = st
		p.status.Steps = append(p.status.Steps, StepProgress{
			Name: st.Name, DeploymentID: st.Deployment, State: StepPending, DependsOn: st.DependsOn, ForEach: st.ForEach, Runs: []StepRun{},
		})
		child := p.childInput(st, -1, nil)
		for _, problem := range child.Problems() {
			problems = append(problems, fmt.Sprintf("step %q: %s", st.Name, problem))
		}
	}
	for i := range p.status.Steps {
		p.progress[p.status.Steps[i].Name] = &p.status.Steps[i]
	}
	if len(problems) > 0 {
		return temporal.NewNonRetryableApplicationError("invalid pipeline: "+strings.Join(problems, "; "), activities.ErrTypeInvalidPipeline, nil, problems)
	}
	return nil
}

// startReady starts every pending step whose dependencies all succeeded,
// unless a step has failed.
func (p *comfyPipeline) startReady(ctx workflow.Context) {
	if p.failure != nil || ctx.Err() != nil {
		return
	}
	for _, name := range p.plan.Order {
		sp := p.progress[name]
		if sp.State != StepPending {
			continue
		}
		ready := true
		for _, dep := range sp.DependsOn {
			ready = ready && p.progress[dep].State == StepSucceeded
		}
		if !ready {
			continue
		}
		sp.State, sp.StartedAt = StepRunning, workflow.Now(ctx)
		p.running++
		st := p.steps[name]
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer func() {
				p.running--
				p.version++
				p.showDetails(ctx)
			}()
			p.runStep(ctx, st)
		})
	}
	p.showDetails(ctx)
}

func (p *comfyPipeline) runStep(ctx workflow.Context, st *pipeline.Step) {
	sp := p.progress[st.Name]
	n := 1
	if st.ForEach != "" {
		results, err := p.fresh(ctx, st)
		var items []string
		if err == nil {
			items, err = pipeline.ForEachItems(*st, results)
		}
		if err == nil && len(items) == 0 {
			err = fmt.Errorf("for_each %s has no elements, so the step has nothing to run", st.ForEach)
		}
		if err != nil {
			p.endStep(ctx, sp, err, -1)
			return
		}
		n = len(items)
	}
	sp.Runs = make([]StepRun, n)
	for i := range sp.Runs {
		sp.Runs[i] = StepRun{Index: i, WorkflowID: p.childID(st, i), State: StepPending}
	}
	p.showDetails(ctx)

	// Each run reports its outcome here, so the step ends when all have.
	done, failedAt := 0, -1
	var firstErr error
	for i := range n {
		workflow.Go(ctx, func(ctx workflow.Context) {
			if err := p.runOne(ctx, st, i); err != nil && firstErr == nil {
				firstErr, failedAt = err, i
				// Fail now, so the step's other runs are cancelled too.
				p.failStep(ctx, sp, err, i)
			}
			done++
		})
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	_ = workflow.Await(dctx, func() bool { return done == n })
	p.endStep(ctx, sp, firstErr, failedAt)
}

// runOne runs the i-th child of a step: it waits for a slot, reads fresh
// URLs of the outputs the step consumes, resolves the inputs and runs the
// child to its end.
func (p *comfyPipeline) runOne(ctx workflow.Context, st *pipeline.Step, i int) error {
	run := &p.progress[st.Name].Runs[i]
	if err := workflow.Await(ctx, func() bool { return p.active < p.maxParallel() }); err != nil {
		run.State = StepCancelled
		return err
	}
	p.active++
	defer func() { p.active-- }()

	inputs, err := p.inputs(ctx, st, i)
	if err != nil {
		run.State, run.Error = p.endState(ctx, err), err.Error()
		return err
	}
	summary := fmt.Sprintf("Step %s · deployment %s", st.Name, st.Deployment)
	if st.ForEach != "" {
		summary = fmt.Sprintf("Step %s item %d · deployment %s", st.Name, i, st.Deployment)
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            run.WorkflowID,
		StaticSummary:         summary,
		TypedSearchAttributes: StartSearchAttributes(st.Deployment),
		// Cancelling a step must end with its remote run cancelled; the
		// pipeline waits for that instead of terminating the child.
		WaitForCancellation: true,
	})
	run.State = StepRunning
	p.showDetails(ctx)
	var res ComfyRunResult
	err = workflow.ExecuteChildWorkflow(cctx, ComfyRunWorkflow, p.childInput(st, i, inputs)).Get(cctx, &res)
	if err != nil {
		run.State, run.Error = p.endState(ctx, err), errorMessage(err)
		return err
	}
	run.State, run.RunID, run.Outputs, run.ManifestPath = StepSucceeded, res.RunID, res.Outputs, res.ManifestPath
	return nil
}

// inputs resolves the i-th run's inputs against fresh outputs.
func (p *comfyPipeline) inputs(ctx workflow.Context, st *pipeline.Step, i int) (map[string]any, error) {
	results, err := p.fresh(ctx, st)
	if err != nil {
		return nil, err
	}
	var item *string
	if st.ForEach != "" {
		items, err := pipeline.ForEachItems(*st, results)
		if err != nil {
			return nil, err
		}
		if i >= len(items) {
			return nil, fmt.Errorf("for_each %s now has %d elements, fewer than when the step started", st.ForEach, len(items))
		}
		item = &items[i]
	}
	return pipeline.Resolve(*st, results, item)
}

// fresh returns the outputs of the steps st reads, with URLs read at most
// urlFreshness ago.
func (p *comfyPipeline) fresh(ctx workflow.Context, st *pipeline.Step) (map[string]pipeline.StepOutputs, error) {
	results := map[string]pipeline.StepOutputs{}
	for _, name := range pipeline.Reads(*st) {
		if at, ok := p.fetchedAt[name]; !ok || workflow.Now(ctx).Sub(at) > urlFreshness {
			outs, err := p.readOutputs(ctx, name)
			if err != nil {
				return nil, err
			}
			p.outputs[name], p.fetchedAt[name] = outs, workflow.Now(ctx)
		}
		results[name] = p.outputs[name]
	}
	return results, nil
}

// readOutputs reads the outputs of every run of a finished step, in item
// order, in parallel.
func (p *comfyPipeline) readOutputs(ctx workflow.Context, name string) (pipeline.StepOutputs, error) {
	runs := p.progress[name].Runs
	futures := make([]workflow.Future, len(runs))
	for i, run := range runs {
		actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			Summary:             fmt.Sprintf("Read output URLs of step %s run %s", name, run.RunID),
			StartToCloseTimeout: time.Minute,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 10},
		})
		futures[i] = workflow.ExecuteActivity(actx, a.OutputURLs, activities.OutputURLsRequest{RunID: run.RunID})
	}
	outs := pipeline.StepOutputs{}
	for _, f := range futures {
		var res activities.RunOutputs
		if err := f.Get(ctx, &res); err != nil {
			return nil, err
		}
		outs = append(outs, res.Outputs...)
	}
	return outs, nil
}

func (p *comfyPipeline) childID(st *pipeline.Step, i int) string {
	id := p.status.WorkflowID + "/" + st.Name
	if st.ForEach != "" {
		id += "/" + strconv.Itoa(i)
	}
	return id
}

// childInput builds the ComfyRun input of a step's i-th run (i < 0: the
// shape only, for checking before the pipeline starts).
func (p *comfyPipeline) childInput(st *pipeline.Step, i int, inputs map[string]any) ComfyRunInput {
	labels := maps.Clone(p.in.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels["pipeline"], labels["pipeline_step"] = p.status.WorkflowID, st.Name
	folder := ""
	if p.in.Outputs.Folder != "" {
		folder = p.in.Outputs.Folder + "-" + st.Name
	}
	if st.ForEach != "" && i >= 0 {
		labels["pipeline_item"] = strconv.Itoa(i)
		if folder != "" {
			folder += "-" + strconv.Itoa(i)
		}
	}
	in := ComfyRunInput{
		DeploymentID:     st.Deployment,
		Inputs:           inputs,
		GPU:              st.GPU,
		QueueTimeout:     Duration(st.QueueTimeout.D()),
		ExecutionTimeout: Duration(st.ExecutionTimeout.D()),
		Outputs:          OutputSettings{Skip: p.in.Outputs.Skip, Folder: folder},
		Labels:           labels,
	}
	if st.Retry != nil {
		in.Retry = RetryPolicy{MaxAttempts: st.Retry.MaxAttempts, RetryOn: st.Retry.RetryOn}
	}
	if pre, ok := p.plan.Preflight[st.Deployment]; ok {
		in.Preflight = &pre
	}
	return in
}

// endStep records a step's outcome.
func (p *comfyPipeline) endStep(ctx workflow.Context, sp *StepProgress, err error, item int) {
	sp.EndedAt = workflow.Now(ctx)
	if err == nil {
		sp.State = StepSucceeded
		return
	}
	sp.State, sp.Error = p.endState(ctx, err), errorMessage(err)
	p.failStep(ctx, sp, err, item)
}

// failStep fails the pipeline for the first step that failed on its own;
// cancelling runCtx stops every other step.
func (p *comfyPipeline) failStep(ctx workflow.Context, sp *StepProgress, err error, item int) {
	if p.failure != nil || p.endState(ctx, err) != StepFailed {
		return
	}
	what := fmt.Sprintf("step %q", sp.Name)
	if sp.ForEach != "" && item >= 0 {
		what = fmt.Sprintf("step %q (item %d)", sp.Name, item)
	}
	msg := fmt.Sprintf("%s failed: %s", what, errorMessage(err))
	p.status.FailedStep = sp.Name
	p.failure = temporal.NewNonRetryableApplicationError(msg, ErrTypeStepFailed, err)
	p.logger.Info("Step failed; cancelling the others", "Step", sp.Name, "Error", msg)
	p.cancelRun()
}

// endState tells a step that was stopped by the pipeline (cancelled) from
// one that failed on its own, including a child cancelled from outside.
func (p *comfyPipeline) endState(ctx workflow.Context, err error) string {
	if ctx.Err() != nil && (temporal.IsCanceledError(err) || errors.Is(err, workflow.ErrCanceled)) {
		return StepCancelled
	}
	return StepFailed
}

// errorMessage is the innermost application error's message and type, or
// else the error's text: a child's error chain repeats workflow ids.
func errorMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		if appErr.Type() != "" {
			return fmt.Sprintf("%s (%s)", appErr.Message(), appErr.Type())
		}
		return appErr.Message()
	}
	var canceled *temporal.CanceledError
	if errors.As(err, &canceled) {
		return "cancelled"
	}
	return err.Error()
}

func (p *comfyPipeline) maxParallel() int {
	if p.in.MaxParallel > 0 {
		return p.in.MaxParallel
	}
	return defaultMaxParallel
}

func (p *comfyPipeline) fail(ctx workflow.Context, err error) error {
	p.status.Error = err.Error()
	p.setStatus(ctx, PipelineFailed)
	p.upsert(ctx, PipelineFailed)
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == ErrTypeStepFailed {
		// Rebuilt so the details carry the final state of every step.
		return temporal.NewNonRetryableApplicationError(appErr.Message(), ErrTypeStepFailed, errors.Unwrap(err), p.status)
	}
	return err
}

// cancelled ends a cancelled pipeline after its steps have ended, with the
// final state as the cancellation's details.
func (p *comfyPipeline) cancelled(ctx workflow.Context) (*ComfyPipelineResult, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	for i := range p.status.Steps {
		if p.status.Steps[i].State == StepPending {
			p.status.Steps[i].State = StepSkipped
		}
	}
	p.setStatus(dctx, PipelineCancelled)
	p.upsert(dctx, PipelineCancelled)
	return nil, temporal.NewCanceledError(p.status)
}

func (p *comfyPipeline) setStatus(ctx workflow.Context, status string) {
	p.status.Status = status
	p.showDetails(ctx)
}

// upsert records a pipeline phase in ComfyStatus; step changes are not
// upserted, since each upsert is a history event.
func (p *comfyPipeline) upsert(ctx workflow.Context, status string) {
	if status == p.shown {
		return
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, StatusKey.ValueSet(status)); err != nil {
		p.logger.Warn("Could not upsert search attributes", "Error", err)
		return
	}
	p.shown = status
}

func (p *comfyPipeline) showDetails(ctx workflow.Context) {
	workflow.SetCurrentDetails(ctx, renderPipeline(p.status))
}

func renderPipeline(s ComfyPipelineResult) string {
	var b strings.Builder
	b.WriteString("**ComfyPipeline**")
	if s.Name != "" {
		fmt.Fprintf(&b, " · `%s`", s.Name)
	}
	fmt.Fprintf(&b, "\n\n**Status:** %s", s.Status)
	if len(s.Steps) > 0 {
		b.WriteString("\n\n| Step | Deployment | State | Runs | Outputs |\n|---|---|---|---|---|")
		for _, st := range s.Steps {
			ended, outputs := 0, 0
			for _, r := range st.Runs {
				if r.State == StepSucceeded {
					ended++
				}
				outputs += len(r.Outputs)
			}
			fmt.Fprintf(&b, "\n| %s | `%s` | %s | %d/%d | %d |", st.Name, st.DeploymentID, st.State, ended, len(st.Runs), outputs)
		}
	}
	if s.Error != "" {
		fmt.Fprintf(&b, "\n\n**Error:** %s", s.Error)
	}
	return b.String()
}
