package comfy

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
)

// DeploymentsService reads and manages deployments.
type DeploymentsService service

// Deployment pins a workflow version to a machine. It is the thing that
// runs are queued against.
type Deployment struct {
	ID                string `json:"id"`
	Name              string `json:"name,omitempty"`
	WorkflowID        string `json:"workflow_id"`
	WorkflowVersionID string `json:"workflow_version_id"`
	MachineID         string `json:"machine_id"`
	MachineVersionID  string `json:"machine_version_id"`
	// Environment is one of staging, production, public-share,
	// private-share, community-share or preview.
	Environment string `json:"environment"`
	Description string `json:"description"`
	// GPU, when set, overrides the GPU asked for in run requests.
	GPU              string `json:"gpu"`
	ConcurrencyLimit int    `json:"concurrency_limit"`
	RunTimeout       int    `json:"run_timeout"`
	IdleTimeout      int    `json:"idle_timeout"`
	KeepWarm         int    `json:"keep_warm"`
	// ActivatedAt is zero after a deactivate. Runs are still accepted then:
	// the server redeploys the app inline, and that makes queueing slow.
	ActivatedAt Time `json:"activated_at"`
	// ModalImageID and ModalAppID are set for "fluid" deployments, which
	// List hides unless IsFluid is set.
	ModalImageID string       `json:"modal_image_id"`
	ModalAppID   string       `json:"modal_app_id"`
	InputTypes   []InputType  `json:"input_types"`
	OutputTypes  []OutputType `json:"output_types"`
	CreatedAt    Time         `json:"created_at"`
	UpdatedAt    Time         `json:"updated_at"`
}

// UnmarshalJSON reads the numeric settings loosely, because they are
// nullable in the database.
func (d *Deployment) UnmarshalJSON(data []byte) error {
	type plain Deployment
	var aux struct {
		*plain
		ConcurrencyLimit json.RawMessage `json:"concurrency_limit"`
		RunTimeout       json.RawMessage `json:"run_timeout"`
		IdleTimeout      json.RawMessage `json:"idle_timeout"`
		KeepWarm         json.RawMessage `json:"keep_warm"`
		InputTypes       json.RawMessage `json:"input_types"`
		OutputTypes      json.RawMessage `json:"output_types"`
	}
	*d = Deployment{}
	aux.plain = (*plain)(d)
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	d.ConcurrencyLimit = looseInt(aux.ConcurrencyLimit)
	d.RunTimeout = looseInt(aux.RunTimeout)
	d.IdleTimeout = looseInt(aux.IdleTimeout)
	d.KeepWarm = looseInt(aux.KeepWarm)
	d.InputTypes, _ = decodeList[InputType](aux.InputTypes)
	d.OutputTypes, _ = decodeList[OutputType](aux.OutputTypes)
	return nil
}

// looseInt reads a JSON number or numeric string. It returns 0 otherwise.
func looseInt(raw json.RawMessage) int {
	if f, ok := looseFloat(raw); ok && f >= math.MinInt32 && f <= math.MaxInt32 {
		return int(f)
	}
	return 0
}

func looseFloat(raw json.RawMessage) (float64, bool) {
	var f float64
	if json.Unmarshal(raw, &f) == nil && len(raw) > 0 && string(raw) != "null" {
		return f, true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		var g float64
		if _, err := fmt.Sscan(strings.TrimSpace(s), &g); err == nil {
			return g, true
		}
	}
	return 0, false
}

// InputValueType is the value type of a deployment input.
type InputValueType string

const (
	InputString  InputValueType = "string"
	InputInteger InputValueType = "integer"
	InputFloat   InputValueType = "float"
	InputBoolean InputValueType = "boolean"
	// InputBinary inputs take a URL, or a data: URI that the server
	// uploads. Batch inputs take a list of them.
	InputBinary InputValueType = "binary"
)

// InputType describes one external-input node of a deployment. InputID is
// the key to use in a run's inputs.
type InputType struct {
	InputID      string         `json:"input_id"`
	ClassType    string         `json:"class_type"`
	Type         InputValueType `json:"type"`
	DefaultValue any            `json:"default_value,omitempty"`
	MinValue     *float64       `json:"min_value,omitempty"`
	MaxValue     *float64       `json:"max_value,omitempty"`
	DisplayName  string         `json:"display_name,omitempty"`
	Description  string         `json:"description,omitempty"`
	EnumOptions  []string       `json:"enum_options,omitempty"`
	Required     *bool          `json:"required,omitempty"`
}

// UnmarshalJSON reads bounds that may arrive as strings, and enum
// options that may be numbers.
func (t *InputType) UnmarshalJSON(data []byte) error {
	type plain InputType
	var aux struct {
		*plain
		MinValue    json.RawMessage `json:"min_value"`
		MaxValue    json.RawMessage `json:"max_value"`
		EnumOptions json.RawMessage `json:"enum_options"`
		Required    json.RawMessage `json:"required"`
		InputID     json.RawMessage `json:"input_id"`
		DisplayName json.RawMessage `json:"display_name"`
		Description json.RawMessage `json:"description"`
	}
	*t = InputType{}
	aux.plain = (*plain)(t)
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	if f, ok := looseFloat(aux.MinValue); ok {
		t.MinValue = &f
	}
	if f, ok := looseFloat(aux.MaxValue); ok {
		t.MaxValue = &f
	}
	var opts []json.RawMessage
	if json.Unmarshal(aux.EnumOptions, &opts) == nil {
		for _, o := range opts {
			if s := looseString(o); s != "" {
				t.EnumOptions = append(t.EnumOptions, s)
			}
		}
	}
	var req bool
	if json.Unmarshal(aux.Required, &req) == nil && len(aux.Required) > 0 && string(aux.Required) != "null" {
		t.Required = &req
	}
	t.InputID = looseString(aux.InputID)
	t.DisplayName = looseString(aux.DisplayName)
	t.Description = looseString(aux.Description)
	return nil
}

// OutputType describes one ComfyDeploy output node of a deployment.
type OutputType struct {
	ClassType string `json:"class_type"`
	OutputID  string `json:"output_id"`
}

// DeploymentListOptions filters List.
type DeploymentListOptions struct {
	Environment string
	// IsFluid includes "fluid" deployments, which have their own Modal
	// image. The server hides them by default.
	IsFluid  bool
	PageSize int
	Offset   int
}

// List lists deployments (GET /deployments).
func (s *DeploymentsService) List(ctx context.Context, opts *DeploymentListOptions) ([]Deployment, error) {
	q := url.Values{}
	if opts != nil {
		setStr(q, "environment", opts.Environment)
		if opts.IsFluid {
			q.Set("is_fluid", "true")
		}
		setInt(q, "page_size", opts.PageSize)
		setInt(q, "offset", opts.Offset)
	}
	return getList[Deployment](ctx, s.client, "/deployments", q)
}

// Get fetches one deployment with its input and output schema
// (GET /deployment/{id}). The server answers 500 when the deployment does
// not exist or belongs to someone else. After retries, that comes back as
// an error for which [IsNotFound] is true and NotFoundQuirk is set.
func (s *DeploymentsService) Get(ctx context.Context, id string) (*Deployment, error) {
	p, err := escapeID("deployment id", id)
	if err != nil {
		return nil, err
	}
	return doOne[Deployment](ctx, s.client, http.MethodGet, "/deployment/"+p, nil, nil, callOpts{quirk: quirkHidden404})
}

// ListRuns lists a deployment's recent runs (GET /deployment/{id}/runs),
// newest first. The rows are slim: they have no inputs, webhook or
// outputs. To find a run by correlation token, use
// [WorkflowsService.FindRunByCorrelationToken]. The server's default limit
// is 60.
func (s *DeploymentsService) ListRuns(ctx context.Context, id string, opts *ListOptions) ([]Run, error) {
	p, err := escapeID("deployment id", id)
	if err != nil {
		return nil, err
	}
	return getList[Run](ctx, s.client, "/deployment/"+p+"/runs", opts.values("limit"))
}

// CreateDeploymentRequest is the body of Create.
type CreateDeploymentRequest struct {
	WorkflowID        string `json:"workflow_id"`
	WorkflowVersionID string `json:"workflow_version_id"`
	Environment       string `json:"environment"`
	MachineID         string `json:"machine_id,omitempty"`
	MachineVersionID  string `json:"machine_version_id,omitempty"`
	Description       string `json:"description,omitempty"`
	DeploymentID      string `json:"deployment_id,omitempty"`
}

// Create creates a deployment (POST /deployment). It is not retried unless
// ctx is marked with [WithIdempotent].
func (s *DeploymentsService) Create(ctx context.Context, req *CreateDeploymentRequest) (*Deployment, error) {
	if req == nil || req.WorkflowID == "" || req.WorkflowVersionID == "" || req.Environment == "" {
		return nil, fmt.Errorf("%w: workflow_id, workflow_version_id and environment are required", ErrInvalidArgument)
	}
	return doOne[Deployment](ctx, s.client, http.MethodPost, "/deployment", nil, req, callOpts{})
}

// UpdateDeploymentRequest is the body of Update. Nil fields are left
// unchanged.
type UpdateDeploymentRequest struct {
	WorkflowVersionID *string `json:"workflow_version_id,omitempty"`
	MachineID         *string `json:"machine_id,omitempty"`
	MachineVersionID  *string `json:"machine_version_id,omitempty"`
	ConcurrencyLimit  *int    `json:"concurrency_limit,omitempty"`
	GPU               *GPU    `json:"gpu,omitempty"`
	RunTimeout        *int    `json:"run_timeout,omitempty"`
	IdleTimeout       *int    `json:"idle_timeout,omitempty"`
	KeepWarm          *int    `json:"keep_warm,omitempty"`
}

// Update changes a deployment (PATCH /deployment/{id}). The body holds
// absolute values, so it is safe to repeat and is retried.
func (s *DeploymentsService) Update(ctx context.Context, id string, req *UpdateDeploymentRequest) (*Deployment, error) {
	p, err := escapeID("deployment id", id)
	if err != nil {
		return nil, err
	}
	if req == nil {
		req = &UpdateDeploymentRequest{}
	}
	return doOne[Deployment](ctx, s.client, http.MethodPatch, "/deployment/"+p, nil, req, callOpts{idempotent: true})
}

// Deactivate stops the deployment's Modal app
// (POST /deployment/{id}/deactivate). The server refuses with 400 while
// the deployment has runs that are not terminal.
func (s *DeploymentsService) Deactivate(ctx context.Context, id string) (*Deployment, error) {
	p, err := escapeID("deployment id", id)
	if err != nil {
		return nil, err
	}
	return doOne[Deployment](ctx, s.client, http.MethodPost, "/deployment/"+p+"/deactivate", nil, nil, callOpts{idempotent: true})
}

// Delete deletes a deployment (DELETE /deployment/{id}). Only share
// environments can be deleted. As with Get, not-found comes back as a 500
// for which [IsNotFound] is true.
func (s *DeploymentsService) Delete(ctx context.Context, id string) error {
	p, err := escapeID("deployment id", id)
	if err != nil {
		return err
	}
	return s.client.call(ctx, http.MethodDelete, "/deployment/"+p, nil, nil, nil, callOpts{idempotent: true, quirk: quirkHidden404})
}
