package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/pipeline"
	"github.com/durable-comfy/durable-comfy/preflight"
)

// ErrTypeInvalidPipeline is the application error type of a pipeline spec
// that is malformed, inconsistent, or refers to outputs its deployments do
// not declare. Deployment and input rejections keep their preflight kinds.
const ErrTypeInvalidPipeline = "InvalidPipeline"

// PreparePipelineRequest carries a pipeline spec, either decoded (Spec) or
// as the YAML or JSON document (SpecText), which is decoded strictly here:
// a JSON object that reaches a workflow has already lost unknown fields.
type PreparePipelineRequest struct {
	Spec     *pipeline.Spec `json:"spec,omitempty"`
	SpecText string         `json:"spec_text,omitempty"`
}

// PipelinePlan is a checked pipeline, ready to run.
type PipelinePlan struct {
	// Spec is normalised: each step lists all its dependencies and carries
	// the defaults it did not override.
	Spec pipeline.Spec `json:"spec"`
	// Order runs every step after its dependencies.
	Order []string `json:"order"`
	// Preflight holds the check of every deployment, by deployment id.
	Preflight map[string]PreflightResult `json:"preflight"`
}

// PreparePipeline validates a pipeline before any run is paid for: the
// spec itself (pipeline.Validate), each distinct deployment (the Preflight
// checks), each step's literal inputs against its deployment's input
// types, that every input fed by a reference exists, and that referenced
// output ids are declared. Every rejection is non-retryable and names the
// step(s) concerned.
func (a *Activities) PreparePipeline(ctx context.Context, req PreparePipelineRequest) (*PipelinePlan, error) {
	spec := req.Spec
	switch {
	case req.SpecText != "" && spec != nil:
		return nil, invalidPipeline(&pipeline.Error{Problems: []string{"give either spec or spec_text, not both"}})
	case req.SpecText != "":
		parsed, err := pipeline.Parse([]byte(req.SpecText))
		if err != nil {
			return nil, invalidPipeline(err)
		}
		spec = parsed
	case spec == nil:
		return nil, invalidPipeline(&pipeline.Error{Problems: []string{"spec is required"}})
	}
	norm, err := pipeline.Normalize(spec)
	if err != nil {
		return nil, invalidPipeline(err)
	}
	order, err := pipeline.Order(norm)
	if err != nil {
		return nil, invalidPipeline(err)
	}

	plan := &PipelinePlan{Spec: *norm, Order: order, Preflight: map[string]PreflightResult{}}
	declared := map[string][]string{}
	for _, st := range norm.Steps {
		if _, done := plan.Preflight[st.Deployment]; done {
			continue
		}
		// Inputs are checked per step below, where references are known.
		pre, err := a.Preflight(ctx, PreflightRequest{DeploymentID: st.Deployment, SkipInputCheck: true})
		if err != nil {
			return nil, forSteps(err, stepsUsing(norm, st.Deployment), st.Deployment)
		}
		plan.Preflight[st.Deployment] = *pre
		for _, o := range pre.OutputTypes {
			declared[st.Deployment] = append(declared[st.Deployment], o.OutputID)
		}
	}

	var problems []string
	for _, st := range norm.Steps {
		inputs, err := checkableInputs(st, plan.Preflight[st.Deployment].InputTypes)
		if err == nil {
			err = preflight.CheckInputs(plan.Preflight[st.Deployment].InputTypes, inputs)
		}
		var rej *preflight.Rejection
		switch {
		case errors.As(err, &rej):
			for _, p := range rej.Problems {
				problems = append(problems, fmt.Sprintf("step %q: %s", st.Name, p))
			}
		case err != nil:
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return nil, temporal.NewNonRetryableApplicationError("pipeline inputs do not match the deployments: "+strings.Join(problems, "; "),
			preflight.KindInvalidInput, nil, problems)
	}
	if err := pipeline.CheckOutputs(norm, declared); err != nil {
		return nil, invalidPipeline(err)
	}
	return plan, nil
}

// checkableInputs returns a step's inputs as preflight.CheckInputs can
// judge them before the pipeline runs: literals as they are, and each
// input fed by a reference replaced by a stand-in its type accepts, so
// only the input's existence is checked (its value is not known yet).
func checkableInputs(st pipeline.Step, types []comfy.InputType) (map[string]any, error) {
	literals := map[string]any{}
	var refs []string
	for name, v := range st.Inputs {
		if pipeline.IsReference(v) {
			refs = append(refs, name)
		} else {
			literals[name] = v
		}
	}
	// Resolving literals alone turns "$${" escapes into what will be sent.
	out, err := pipeline.Resolve(pipeline.Step{Name: st.Name, Inputs: literals}, nil, nil)
	if err != nil {
		return nil, err
	}
	for _, name := range refs {
		i := slices.IndexFunc(types, func(t comfy.InputType) bool { return t.InputID == name })
		if i < 0 {
			out[name] = st.Inputs[name] // unknown: CheckInputs names it
			continue
		}
		out[name] = standIn(types[i])
	}
	return out, nil
}

func standIn(t comfy.InputType) any {
	if t.DefaultValue != nil {
		return t.DefaultValue
	}
	switch t.Type {
	case comfy.InputInteger, comfy.InputFloat:
		if t.MinValue != nil {
			return *t.MinValue
		}
		return 0.0
	case comfy.InputBoolean:
		return false
	}
	if len(t.EnumOptions) > 0 {
		return t.EnumOptions[0]
	}
	return "https://pipeline.invalid/reference"
}

func invalidPipeline(err error) error {
	var perr *pipeline.Error
	if errors.As(err, &perr) {
		return temporal.NewNonRetryableApplicationError(perr.Error(), ErrTypeInvalidPipeline, nil, perr.Problems)
	}
	return temporal.NewNonRetryableApplicationError("invalid pipeline: "+err.Error(), ErrTypeInvalidPipeline, nil)
}

func stepsUsing(s *pipeline.Spec, deployment string) []string {
	var names []string
	for _, st := range s.Steps {
		if st.Deployment == deployment {
			names = append(names, fmt.Sprintf("%q", st.Name))
		}
	}
	return names
}

// forSteps names the steps of a deployment rejection; the error type stays
// the preflight kind, and retryable errors pass through to be retried.
func forSteps(err error, steps []string, deployment string) error {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !appErr.NonRetryable() {
		return err
	}
	label := "step"
	if len(steps) > 1 {
		label = "steps"
	}
	msg := fmt.Sprintf("%s %s (deployment %s): %s", label, strings.Join(steps, ", "), deployment, appErr.Message())
	return temporal.NewNonRetryableApplicationError(msg, appErr.Type(), err)
}

// OutputURLsRequest names a finished ComfyDeploy run.
type OutputURLsRequest struct {
	RunID string `json:"run_id"`
}

// RunOutputs are a run's outputs with fresh URLs.
type RunOutputs struct {
	RunID   string            `json:"run_id"`
	Outputs []pipeline.Output `json:"outputs"`
}

// OutputURLs reads a run's media outputs (URLs in output order) and text
// outputs. Private media URLs are presigned for about an hour from the
// read, so a pipeline calls this right before it submits the step that
// consumes them rather than keeping URLs from when the producer finished.
func (a *Activities) OutputURLs(ctx context.Context, req OutputURLsRequest) (*RunOutputs, error) {
	if req.RunID == "" {
		return nil, temporal.NewNonRetryableApplicationError("run_id is required", ErrTypeInvalidRequest, nil)
	}
	run, err := a.Comfy.Runs.Get(ctx, req.RunID, nil)
	if comfy.IsNotFound(err) {
		return nil, temporal.NewNonRetryableApplicationError("run "+req.RunID+" does not exist", ErrTypeRunNotFound, nil)
	}
	if err != nil {
		return nil, classify("get run "+req.RunID, err)
	}
	res := &RunOutputs{RunID: run.ID, Outputs: []pipeline.Output{}}
	for _, m := range run.MediaItems() {
		res.Outputs = append(res.Outputs, pipeline.Output{OutputID: m.OutputID, Kind: m.Kind, Value: m.Item.URL})
	}
	for _, o := range run.Outputs {
		for _, v := range o.Data["text"] {
			if v.Text != nil {
				res.Outputs = append(res.Outputs, pipeline.Output{OutputID: o.OutputID, Kind: pipeline.KindText, Value: *v.Text})
			}
		}
	}
	return res, nil
}
