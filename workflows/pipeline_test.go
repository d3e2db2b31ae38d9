package workflows

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"github.com/stretchr/testify/suite"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/pipeline"
)

const (
	depUpscale   = "de000000-0000-4000-8000-000000000002"
	depImg2Video = "de000000-0000-4000-8000-000000000003"
)

type pipelineSuite struct {
	suite.Suite
	testsuite.WorkflowTestSuite
	env   *testsuite.TestWorkflowEnvironment
	shown *[]string
	// events records child starts and ends ("start a", "end a/1") in order.
	events []string
	// inputs records each child's input by child workflow id.
	inputs map[string]ComfyRunInput
	// behave decides, per step, how long a child runs and how it ends.
	behave map[string]func(ctx workflow.Context, item string) (time.Duration, error)
	// images is how many "image" outputs each run of a step produces.
	images                map[string]int
	inFlight, maxInFlight int
	// prepareErr, when set, is PreparePipeline's answer.
	prepareErr error
}

func TestComfyPipeline(t *testing.T) { suite.Run(t, new(pipelineSuite)) }

func (s *pipelineSuite) SetupTest() {
	s.env = s.NewTestWorkflowEnvironment()
	s.env.RegisterActivity(&activities.Activities{})
	s.env.RegisterWorkflowWithOptions(ComfyPipeline, workflow.RegisterOptions{Name: ComfyPipelineWorkflow})
	// The fake ComfyRun is registered rather than set with OnWorkflow: the
	// test environment reports a mocked child as started only once the mock
	// function returns, so a parent could never cancel a running one.
	s.env.RegisterWorkflowWithOptions(s.child, workflow.RegisterOptions{Name: ComfyRunWorkflow})
	s.shown = recordComfyStatus(s.env)
	s.events, s.inputs = nil, map[string]ComfyRunInput{}
	s.behave, s.images = map[string]func(workflow.Context, string) (time.Duration, error){}, map[string]int{}
	s.inFlight, s.maxInFlight, s.prepareErr = 0, 0, nil

	s.env.OnActivity(a.PreparePipeline, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.PreparePipelineRequest) (*activities.PipelinePlan, error) {
			if s.prepareErr != nil {
				return nil, s.prepareErr
			}
			return planFor(req.Spec)
		}).Maybe()
	s.env.OnActivity(a.OutputURLs, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.OutputURLsRequest) (*activities.RunOutputs, error) {
			step, _, _ := strings.Cut(strings.TrimPrefix(req.RunID, "run-"), "#")
			n := s.images[step]
			if n == 0 {
				n = 1
			}
			res := &activities.RunOutputs{RunID: req.RunID}
			for i := range n {
				res.Outputs = append(res.Outputs, pipeline.Output{OutputID: "image", Kind: "images", Value: fmt.Sprintf("https://cdn/%s/%d.png?sig=fresh", req.RunID, i)})
			}
			res.Outputs = append(res.Outputs, pipeline.Output{OutputID: "caption", Kind: pipeline.KindText, Value: "caption of " + req.RunID})
			return res, nil
		}).Maybe()
}

func (s *pipelineSuite) TearDownTest() { s.env.AssertExpectations(s.T()) }

// child stands in for ComfyRun (a stand-in child workflow): it records its start, runs for the time
// its step's behaviour says, and on cancellation takes a minute to cancel
// its remote run, as the real one does.
func (s *pipelineSuite) child(ctx workflow.Context, in ComfyRunInput) (*ComfyRunResult, error) {
	step, item := in.Labels["pipeline_step"], in.Labels["pipeline_item"]
	name := step
	if item != "" {
		name += "/" + item
	}
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	s.inputs[id] = in
	s.events = append(s.events, "start "+name)
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	defer func() { s.inFlight-- }()

	d, failure := time.Minute, error(nil)
	if b := s.behave[step]; b != nil {
		d, failure = b(ctx, item)
	}
	if err := workflow.Sleep(ctx, d); err != nil {
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		_ = workflow.Sleep(dctx, time.Minute)
		s.events = append(s.events, "cancelled "+name)
		return nil, temporal.NewCanceledError()
	}
	if failure != nil {
		s.events = append(s.events, "failed "+name)
		return nil, failure
	}
	s.events = append(s.events, "end "+name)
	runID := "run-" + step
	if item != "" {
		runID += "#" + item
	}
	return &ComfyRunResult{WorkflowID: id, DeploymentID: in.DeploymentID, Status: "success", RunID: runID,
		Outputs: []activities.StoredOutput{{OutputID: "image", Kind: "images", Path: "/out/" + runID + ".png"}}}, nil
}

// planFor does what PreparePipeline does without the API calls.
func planFor(spec *pipeline.Spec) (*activities.PipelinePlan, error) {
	norm, err := pipeline.Normalize(spec)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrTypeInvalidPipeline, nil)
	}
	order, err := pipeline.Order(norm)
	if err != nil {
		return nil, err
	}
	plan := &activities.PipelinePlan{Spec: *norm, Order: order, Preflight: map[string]activities.PreflightResult{}}
	for _, st := range norm.Steps {
		plan.Preflight[st.Deployment] = activities.PreflightResult{DeploymentID: st.Deployment, ComfyWorkflowID: "wf-" + st.Deployment[len(st.Deployment)-1:], CanCancel: true}
	}
	return plan, nil
}

func clientStartOptions(id string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{ID: id}
}

func (s *pipelineSuite) start(spec *pipeline.Spec) {
	s.env.SetStartWorkflowOptions(clientStartOptions("pipe-1"))
	s.env.ExecuteWorkflow(ComfyPipelineWorkflow, ComfyPipelineInput{Spec: spec, Labels: map[string]string{"team": "art"}})
	s.Require().True(s.env.IsWorkflowCompleted())
}

func (s *pipelineSuite) result() ComfyPipelineResult {
	s.Require().NoError(s.env.GetWorkflowError())
	var res ComfyPipelineResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	return res
}

func (s *pipelineSuite) progress() ComfyPipelineResult {
	v, err := s.env.QueryWorkflow(PipelineProgressQuery)
	s.Require().NoError(err)
	var p ComfyPipelineResult
	s.Require().NoError(v.Get(&p))
	return p
}

func (s *pipelineSuite) at(event string) int {
	i := slices.Index(s.events, event)
	s.Require().GreaterOrEqual(i, 0, "event %q missing from %v", event, s.events)
	return i
}

func stepByName(res ComfyPipelineResult, name string) StepProgress {
	for _, st := range res.Steps {
		if st.Name == name {
			return st
		}
	}
	return StepProgress{}
}

func runFor(d time.Duration) func(workflow.Context, string) (time.Duration, error) {
	return func(workflow.Context, string) (time.Duration, error) { return d, nil }
}

// diamond: a and b are independent; c reads a; d needs b and c.
func diamond() *pipeline.Spec {
	return &pipeline.Spec{Name: "diamond", Defaults: pipeline.StepDefaults{QueueTimeout: "10m", Retry: &pipeline.Retry{MaxAttempts: 2}}, Steps: []pipeline.Step{
		{Name: "a", Deployment: testDeployment, Inputs: map[string]any{"prompt": "a fox"}},
		{Name: "b", Deployment: testDeployment, Inputs: map[string]any{"prompt": "a hare"}, GPU: "L40S"},
		{Name: "c", Deployment: depUpscale, Inputs: map[string]any{"image": "${a.outputs.image[0]}"}},
		{Name: "d", Deployment: depImg2Video, DependsOn: []string{"b"}, Inputs: map[string]any{"image": "${c.outputs.*[0]}", "note": "from ${a.outputs.caption[0]}"}},
	}}
}

func (s *pipelineSuite) TestStepsStartWhenTheirDependenciesSucceed() {
	s.behave["a"], s.behave["b"], s.behave["c"] = runFor(10*time.Minute), runFor(30*time.Minute), runFor(5*time.Minute)

	s.start(diamond())

	res := s.result()
	s.Equal(PipelineSucceeded, res.Status)
	s.Less(s.at("start b"), s.at("end a"), "independent steps run in parallel")
	s.Less(s.at("end a"), s.at("start c"), "c reads a's outputs")
	s.Less(s.at("end c"), s.at("start d"))
	s.Less(s.at("end b"), s.at("start d"), "d depends on b")
	s.Len(s.events, 8)

	c := s.inputs["pipe-1/c"]
	s.Equal("https://cdn/run-a/0.png?sig=fresh", c.Inputs["image"], "references resolve to freshly read URLs")
	s.Equal(depUpscale, c.DeploymentID)
	s.Require().NotNil(c.Preflight, "the plan's preflight is passed on, so the child does not repeat it")
	s.Equal(depUpscale, c.Preflight.DeploymentID)
	s.Equal(Duration(10*time.Minute), c.QueueTimeout, "defaults apply")
	s.Equal(2, c.Retry.MaxAttempts)
	s.Equal(map[string]string{"team": "art", "pipeline": "pipe-1", "pipeline_step": "c"}, c.Labels)
	s.Equal("L40S", s.inputs["pipe-1/b"].GPU)
	d := s.inputs["pipe-1/d"]
	s.Equal("https://cdn/run-c/0.png?sig=fresh", d.Inputs["image"])
	s.Equal("from caption of run-a", d.Inputs["note"])

	for _, st := range res.Steps {
		s.Equal(StepSucceeded, st.State, st.Name)
		s.Require().Len(st.Runs, 1)
		s.Equal("pipe-1/"+st.Name, st.Runs[0].WorkflowID)
		s.Equal("run-"+st.Name, st.Runs[0].RunID)
		s.Len(st.Runs[0].Outputs, 1)
	}
	s.Equal([]string{"a", "b", "c"}, stepByName(res, "d").DependsOn, "referenced steps are listed as dependencies")
	s.Equal([]string{PipelineRunning, PipelineSucceeded}, *s.shown)
}

func fanSpec() *pipeline.Spec {
	return &pipeline.Spec{Steps: []pipeline.Step{
		{Name: "gen", Deployment: testDeployment, Inputs: map[string]any{"prompt": "a fox"}},
		{Name: "anim", Deployment: depImg2Video, ForEach: "${gen.outputs.image}", Inputs: map[string]any{"image": "${item}", "frames": 16.0}},
		{Name: "reel", Deployment: depUpscale, Inputs: map[string]any{"clips": "${anim.outputs.image}", "cover": []any{"${gen.outputs.image[0]}", "${anim.outputs.*}"}}},
	}}
}

func (s *pipelineSuite) TestForEachFansOutAndFansInInItemOrder() {
	s.images["gen"] = 5
	// Later items finish first, so order cannot come from completion.
	s.behave["anim"] = func(_ workflow.Context, item string) (time.Duration, error) {
		return time.Duration(10-len(item)-int(item[0]-'0')) * time.Minute, nil
	}
	s.env.SetStartWorkflowOptions(clientStartOptions("pipe-1"))
	s.env.ExecuteWorkflow(ComfyPipelineWorkflow, ComfyPipelineInput{Spec: fanSpec(), MaxParallel: 2})

	var res ComfyPipelineResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	anim := stepByName(res, "anim")
	s.Require().Len(anim.Runs, 5)
	var clips []any
	for i, run := range anim.Runs {
		id := fmt.Sprintf("pipe-1/anim/%d", i)
		s.Equal(id, run.WorkflowID)
		s.Equal(fmt.Sprintf("https://cdn/run-gen/%d.png?sig=fresh", i), s.inputs[id].Inputs["image"], "item %d", i)
		s.Equal(16.0, s.inputs[id].Inputs["frames"])
		s.Equal(fmt.Sprint(i), s.inputs[id].Labels["pipeline_item"])
		clips = append(clips, fmt.Sprintf("https://cdn/run-anim#%d/0.png?sig=fresh", i))
	}
	s.Equal(2, s.maxInFlight, "max_parallel bounds the runs in flight")
	reel := s.inputs["pipe-1/reel"]
	s.Equal(clips, reel.Inputs["clips"], "fan-in lists every run's outputs in item order")
	s.Equal(append([]any{"https://cdn/run-gen/0.png?sig=fresh"}, clips...), reel.Inputs["cover"], "a list reference inside a list is spliced")
	s.Less(s.at("end anim/0"), s.at("start reel"))
}

func (s *pipelineSuite) TestStepFailureFailsThePipelineNamingTheStepAndCancelsTheOthers() {
	s.behave["a"] = func(workflow.Context, string) (time.Duration, error) {
		return 5 * time.Minute, temporal.NewNonRetryableApplicationError(`run r1 ended "failed" after 1 attempt(s)`, ErrTypeRunFailed, nil)
	}
	s.behave["b"] = runFor(time.Hour)

	s.start(diamond())

	var appErr *temporal.ApplicationError
	s.Require().ErrorAs(s.env.GetWorkflowError(), &appErr)
	s.Equal(ErrTypeStepFailed, appErr.Type())
	s.Contains(appErr.Error(), `step "a" failed: run r1 ended "failed" after 1 attempt(s) (RunFailed)`)
	var cause *temporal.ApplicationError
	s.Require().ErrorAs(appErr.Unwrap(), &cause)
	s.Equal(ErrTypeRunFailed, cause.Type(), "the child's error is the cause")

	var res ComfyPipelineResult
	s.Require().NoError(appErr.Details(&res))
	s.Equal("a", res.FailedStep)
	s.Equal(StepFailed, stepByName(res, "a").State)
	s.Equal(StepCancelled, stepByName(res, "b").State)
	s.Equal(StepSkipped, stepByName(res, "c").State)
	s.Equal(StepSkipped, stepByName(res, "d").State)
	s.Contains(s.events, "cancelled b", "b's remote run was cancelled before the pipeline ended")
	s.NotContains(s.events, "start c")
	s.Equal(PipelineFailed, last(s.shown))
	s.Equal(PipelineFailed, s.progress().Status)
}

func (s *pipelineSuite) TestFailedForEachItemCancelsItsSiblings() {
	s.images["gen"] = 3
	s.behave["anim"] = func(_ workflow.Context, item string) (time.Duration, error) {
		if item == "1" {
			return time.Minute, temporal.NewNonRetryableApplicationError("run timed out", ErrTypeRunTimedOut, nil)
		}
		return time.Hour, nil
	}

	s.start(fanSpec())

	var appErr *temporal.ApplicationError
	s.Require().ErrorAs(s.env.GetWorkflowError(), &appErr)
	s.Equal(ErrTypeStepFailed, appErr.Type())
	s.Contains(appErr.Error(), `step "anim" (item 1) failed: run timed out (RunTimedOut)`)
	s.Contains(s.events, "cancelled anim/0")
	s.Contains(s.events, "cancelled anim/2")
	anim := stepByName(s.progress(), "anim")
	s.Equal(StepFailed, anim.State)
	s.Equal([]string{StepCancelled, StepFailed, StepCancelled}, []string{anim.Runs[0].State, anim.Runs[1].State, anim.Runs[2].State})
}

func (s *pipelineSuite) TestUnresolvableReferenceFailsTheStep() {
	spec := diamond()
	spec.Steps[2].Inputs["image"] = "${a.outputs.image[3]}"

	s.start(spec)

	var appErr *temporal.ApplicationError
	s.Require().ErrorAs(s.env.GetWorkflowError(), &appErr)
	s.Equal(ErrTypeStepFailed, appErr.Type())
	s.Contains(appErr.Error(), `step "c" failed: step "c": input "image": ${a.outputs.image[3]}: step "a" produced 1 "image" output(s)`)
	s.NotContains(s.events, "start c")
}

func (s *pipelineSuite) TestCancelCancelsEveryRunningStepAndWaitsForThem() {
	s.behave["a"], s.behave["b"] = runFor(time.Hour), runFor(time.Hour)
	s.env.RegisterDelayedCallback(s.env.CancelWorkflow, 10*time.Minute)

	s.start(diamond())

	var canceled *temporal.CanceledError
	s.Require().ErrorAs(s.env.GetWorkflowError(), &canceled)
	var res ComfyPipelineResult
	s.Require().NoError(canceled.Details(&res))
	s.Equal(PipelineCancelled, res.Status)
	s.Equal(StepCancelled, stepByName(res, "a").State)
	s.Equal(StepCancelled, stepByName(res, "b").State)
	s.Equal(StepSkipped, stepByName(res, "c").State)
	s.ElementsMatch([]string{"start a", "start b", "cancelled a", "cancelled b"}, s.events, "both children finished cancelling")
	s.Equal(PipelineCancelled, last(s.shown))
}

func (s *pipelineSuite) TestProgressQueryShowsStepsRunsAndOutputs() {
	s.behave["a"], s.behave["b"], s.behave["c"] = runFor(10*time.Minute), runFor(time.Hour), runFor(time.Hour)
	var mid ComfyPipelineResult
	s.env.RegisterDelayedCallback(func() { mid = s.progress() }, 20*time.Minute)

	s.start(diamond())

	s.result()
	s.Equal(PipelineRunning, mid.Status)
	s.Equal("diamond", mid.Name)
	s.Equal([]string{"a", "b", "c", "d"}, []string{mid.Steps[0].Name, mid.Steps[1].Name, mid.Steps[2].Name, mid.Steps[3].Name})
	a := stepByName(mid, "a")
	s.Equal(StepSucceeded, a.State)
	s.Equal("run-a", a.Runs[0].RunID)
	s.Equal("/out/run-a.png", a.Runs[0].Outputs[0].Path)
	s.Equal(StepRunning, stepByName(mid, "b").State)
	c := stepByName(mid, "c")
	s.Equal(StepRunning, c.State)
	s.Equal("pipe-1/c", c.Runs[0].WorkflowID)
	s.Equal(StepRunning, c.Runs[0].State)
	s.Equal(StepPending, stepByName(mid, "d").State)
	s.Empty(stepByName(mid, "d").Runs)
}

func (s *pipelineSuite) TestRejectedPipelineStartsNoChild() {
	s.prepareErr = temporal.NewNonRetryableApplicationError(`steps "a", "b" (deployment x): machine is building`, "MachineNotReady", nil)

	s.start(diamond())

	var appErr *temporal.ApplicationError
	s.Require().ErrorAs(s.env.GetWorkflowError(), &appErr)
	s.Equal("MachineNotReady", appErr.Type())
	s.Empty(s.events)
	s.Equal(PipelineFailed, s.progress().Status)
}

func (s *pipelineSuite) TestChildInputProblemsAreFoundBeforeAnyChild() {
	spec := diamond()
	spec.Steps[1].GPU = "RTX9090"
	spec.Steps[3].Retry = &pipeline.Retry{MaxAttempts: 99}

	s.start(spec)

	var appErr *temporal.ApplicationError
	s.Require().ErrorAs(s.env.GetWorkflowError(), &appErr)
	s.Equal(activities.ErrTypeInvalidPipeline, appErr.Type())
	s.Contains(appErr.Error(), `step "b": gpu "RTX9090"`)
	s.Contains(appErr.Error(), `step "d": retry.max_attempts`)
	s.Empty(s.events)
}

func TestPipelineInputNeedsExactlyOneSpec(t *testing.T) {
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(ComfyPipeline, workflow.RegisterOptions{Name: ComfyPipelineWorkflow})

	env.ExecuteWorkflow(ComfyPipelineWorkflow, ComfyPipelineInput{SpecText: "steps: []", Spec: &pipeline.Spec{}, MaxParallel: 1000})

	var appErr *temporal.ApplicationError
	require.ErrorAs(t, env.GetWorkflowError(), &appErr)
	require.Equal(t, ErrTypeInvalidWorkflowInput, appErr.Type())
	require.Contains(t, appErr.Error(), "either spec")
	require.Contains(t, appErr.Error(), "max_parallel")
}

func TestRenderPipelineTable(t *testing.T) {
	md := renderPipeline(ComfyPipelineResult{Name: "hero", Status: PipelineRunning, Steps: []StepProgress{
		{Name: "txt2img", DeploymentID: testDeployment, State: StepSucceeded, Runs: []StepRun{{State: StepSucceeded, Outputs: make([]activities.StoredOutput, 2)}}},
		{Name: "animate", DeploymentID: depImg2Video, State: StepRunning, Runs: []StepRun{{State: StepSucceeded}, {State: StepRunning}}},
	}})
	require.Contains(t, md, "**ComfyPipeline** · `hero`")
	require.Contains(t, md, "| txt2img | `"+testDeployment+"` | succeeded | 1/1 | 2 |")
	require.Contains(t, md, "| animate | `"+depImg2Video+"` | running | 1/2 | 0 |")
}
