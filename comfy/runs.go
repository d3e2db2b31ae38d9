package comfy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"time"
)

// RunsService creates, inspects and cancels runs.
type RunsService service

// RunStatus is a run's lifecycle state. The usual order is
// not-started → queued → started → running → (uploading) → one of the
// terminal states. Runs on classic and runpod machines skip queued and
// started.
type RunStatus string

const (
	StatusNotStarted RunStatus = "not-started"
	StatusQueued     RunStatus = "queued"
	StatusStarted    RunStatus = "started"
	StatusRunning    RunStatus = "running"
	// StatusUploading is in the enum, but the node code that sends it is
	// commented out, so it is rarely or never seen.
	StatusUploading RunStatus = "uploading"
	StatusSuccess   RunStatus = "success"
	StatusFailed    RunStatus = "failed"
	StatusTimeout   RunStatus = "timeout"
	StatusCancelled RunStatus = "cancelled"
)

// IsTerminal reports whether the status is final. The server ignores later
// updates to cancelled and timeout runs. Late updates to success and failed
// runs can still trigger a webhook, but it repeats the same status.
func (s RunStatus) IsTerminal() bool {
	switch s {
	case StatusSuccess, StatusFailed, StatusTimeout, StatusCancelled:
		return true
	}
	return false
}

func (s RunStatus) rank() int {
	switch s {
	case "":
		return -1
	case StatusQueued:
		return 1
	case StatusStarted:
		return 2
	case StatusRunning:
		return 3
	case StatusUploading:
		return 4
	case StatusSuccess, StatusFailed, StatusTimeout, StatusCancelled:
		return 5
	default: // not-started, and statuses added later, sort first
		return 0
	}
}

// Supersedes reports whether a run seen at prev may move to s. Status only
// moves toward a terminal state, and a terminal state never changes.
// Webhooks arrive out of order and are duplicated, so a consumer should
// only act on an update whose status supersedes the last one it acted on.
// The empty status stands for "nothing seen yet".
func (s RunStatus) Supersedes(prev RunStatus) bool {
	if prev.IsTerminal() {
		return false
	}
	return s.rank() > prev.rank()
}

// GPU is a GPU type that can be asked for in a run request.
type GPU string

const (
	GPUCPU      GPU = "CPU"
	GPUT4       GPU = "T4"
	GPUL4       GPU = "L4"
	GPUA10G     GPU = "A10G"
	GPUL40S     GPU = "L40S"
	GPUA100     GPU = "A100"
	GPUA10080GB GPU = "A100-80GB"
	GPUH100     GPU = "H100"
	GPUH200     GPU = "H200"
	GPUB200     GPU = "B200"
)

// CorrelationInputKey is an extra key in a run's inputs. It matches no
// external-input node, so the workflow ignores it, but the server stores it
// in workflow_inputs. That lets a run be found again after a run-creation
// request timed out (§8 of the reference).
const CorrelationInputKey = "__cid"

// CorrelationQueryParam is the webhook URL query parameter that carries
// the same token. [WebhookSigner.SignURL] uses it as the signed subject.
const CorrelationQueryParam = "cid"

// DeploymentRunRequest is the body of the /run/deployment/* routes.
type DeploymentRunRequest struct {
	DeploymentID string `json:"deployment_id"`
	// Inputs maps the input_id of external-input nodes to strings,
	// numbers, bools or arrays. The server rejects nested objects with
	// 422 and ignores unknown keys, so check keys against the
	// deployment's InputTypes before sending.
	Inputs map[string]any `json:"inputs,omitempty"`
	// Webhook is stored verbatim, query string included.
	Webhook                   string `json:"webhook,omitempty"`
	WebhookIntermediateStatus bool   `json:"webhook_intermediate_status,omitempty"`
	// GPU is ignored when the deployment has its own GPU set.
	GPU   GPU      `json:"gpu,omitempty"`
	Flags []string `json:"flags,omitempty"`
}

// SetCorrelationToken stores token under [CorrelationInputKey] in Inputs.
func (r *DeploymentRunRequest) SetCorrelationToken(token string) {
	r.Inputs = withCorrelation(r.Inputs, token)
}

// WorkflowRunRequest is the body of the /run/workflow/* routes, which run
// an ad-hoc workflow instead of a deployment.
type WorkflowRunRequest struct {
	WorkflowID string `json:"workflow_id"`
	// WorkflowAPIJSON is the ComfyUI API-format graph (required).
	WorkflowAPIJSON json.RawMessage `json:"workflow_api_json"`
	// Workflow is the optional UI-format graph.
	Workflow                  json.RawMessage `json:"workflow,omitempty"`
	MachineID                 string          `json:"machine_id,omitempty"`
	Inputs                    map[string]any  `json:"inputs,omitempty"`
	Webhook                   string          `json:"webhook,omitempty"`
	WebhookIntermediateStatus bool            `json:"webhook_intermediate_status,omitempty"`
	GPU                       GPU             `json:"gpu,omitempty"`
	Flags                     []string        `json:"flags,omitempty"`
}

// SetCorrelationToken stores token under [CorrelationInputKey] in Inputs.
func (r *WorkflowRunRequest) SetCorrelationToken(token string) {
	r.Inputs = withCorrelation(r.Inputs, token)
}

func withCorrelation(inputs map[string]any, token string) map[string]any {
	if inputs == nil {
		inputs = map[string]any{}
	}
	inputs[CorrelationInputKey] = token
	return inputs
}

// CorrelationToken returns the token stored by SetCorrelationToken, or
// else the [CorrelationQueryParam] of the run's webhook URL. It returns ""
// if there is neither. GET /deployment/{id}/runs rows hold neither field.
func CorrelationToken(r *Run) string {
	if r == nil {
		return ""
	}
	switch v := r.WorkflowInputs[CorrelationInputKey].(type) {
	case string:
		if v != "" {
			return v
		}
	case float64, bool:
		return fmt.Sprint(v)
	}
	if r.Webhook != "" {
		if u, err := url.Parse(r.Webhook); err == nil {
			return u.Query().Get(CorrelationQueryParam)
		}
	}
	return ""
}

// QueuedRun is the answer to a queue request.
type QueuedRun struct {
	RunID string `json:"run_id"`
}

// CancelResult is the answer to a cancel. The server returns success even
// when the run was already terminal, and then leaves its status unchanged.
type CancelResult struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func (r *DeploymentRunRequest) validate() error {
	if r == nil {
		return fmt.Errorf("%w: nil DeploymentRunRequest", ErrInvalidArgument)
	}
	if r.DeploymentID == "" {
		return fmt.Errorf("%w: deployment_id is required", ErrInvalidArgument)
	}
	return nil
}

func (r *WorkflowRunRequest) validate() error {
	if r == nil {
		return fmt.Errorf("%w: nil WorkflowRunRequest", ErrInvalidArgument)
	}
	if r.WorkflowID == "" {
		return fmt.Errorf("%w: workflow_id is required", ErrInvalidArgument)
	}
	if len(bytes.TrimSpace(r.WorkflowAPIJSON)) == 0 {
		return fmt.Errorf("%w: workflow_api_json is required", ErrInvalidArgument)
	}
	return nil
}

// Run creation is never retried: the server has no idempotency key and
// commits the run before dispatching it, so a request that timed out may
// already have a GPU working on it.
var createRun = callOpts{noRetry: true}

func (s *RunsService) queue(ctx context.Context, path string, body any) (*QueuedRun, error) {
	out, err := doOne[QueuedRun](ctx, s.client, http.MethodPost, path, nil, body, createRun)
	if err != nil {
		return nil, err
	}
	if out.RunID == "" {
		// A batch answer ({status, batch_id}) or something new. Either way
		// the caller cannot track it, but a run may exist.
		return nil, fmt.Errorf("%w: POST %s: no run_id in response", ErrUnexpectedResponse, path)
	}
	return out, nil
}

// QueueDeployment creates an asynchronous run of a deployment
// (POST /run/deployment/queue). The request is never retried: after a
// timeout or 5xx, look for the run (see CorrelationToken) before sending
// it again. The server checks neither the machine status nor whether the
// deployment is active; see [MachineType.CanQueue].
func (s *RunsService) QueueDeployment(ctx context.Context, req *DeploymentRunRequest) (*QueuedRun, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	return s.queue(ctx, "/run/deployment/queue", req)
}

// QueueWorkflow creates an asynchronous run of an ad-hoc workflow
// (POST /run/workflow/queue). It is never retried.
func (s *RunsService) QueueWorkflow(ctx context.Context, req *WorkflowRunRequest) (*QueuedRun, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	return s.queue(ctx, "/run/workflow/queue", req)
}

// SyncDeployment runs a deployment and blocks until it finishes
// (POST /run/deployment/sync). It only works on comfy-deploy-serverless
// machines. The call lasts as long as the run, so give ctx a deadline that
// covers it. It is never retried.
func (s *RunsService) SyncDeployment(ctx context.Context, req *DeploymentRunRequest) ([]Output, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	var out listOf[Output]
	if err := s.client.call(ctx, http.MethodPost, "/run/deployment/sync", nil, req, &out, createRun); err != nil {
		return nil, err
	}
	return out, nil
}

// SyncWorkflow is SyncDeployment for an ad-hoc workflow.
func (s *RunsService) SyncWorkflow(ctx context.Context, req *WorkflowRunRequest) ([]Output, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	var out listOf[Output]
	if err := s.client.call(ctx, http.MethodPost, "/run/workflow/sync", nil, req, &out, createRun); err != nil {
		return nil, err
	}
	return out, nil
}

// StreamDeployment runs a deployment and returns its event stream
// (POST /run/deployment/stream). It only works on comfy-deploy-serverless
// machines. It is never retried. The run id first appears as the prompt
// event's PromptID. Server-side errors just end the stream (Next returns
// [ErrStreamEnded]), so fall back to Get. Final outputs are only reliable
// from Get.
func (s *RunsService) StreamDeployment(ctx context.Context, req *DeploymentRunRequest) (*RunStream, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	return s.stream(ctx, "/run/deployment/stream", req)
}

// StreamWorkflow is StreamDeployment for an ad-hoc workflow.
func (s *RunsService) StreamWorkflow(ctx context.Context, req *WorkflowRunRequest) (*RunStream, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	return s.stream(ctx, "/run/workflow/stream", req)
}

func (s *RunsService) stream(ctx context.Context, path string, body any) (*RunStream, error) {
	es, err := s.client.openStream(ctx, http.MethodPost, path, nil, body, createRun)
	if err != nil {
		return nil, err
	}
	return &RunStream{es: es}, nil
}

// GetRunOptions are the query options of Get.
type GetRunOptions struct {
	// QueuePosition asks for Run.QueuePosition. The server only fills it
	// for not-started and queued runs.
	QueuePosition bool
}

// Get fetches a run's status, progress and outputs (GET /run/{run_id}).
// URLs of private outputs are presigned for one hour when read, so
// download them promptly or call Get again.
func (s *RunsService) Get(ctx context.Context, runID string, opts *GetRunOptions) (*Run, error) {
	id, err := escapeID("run id", runID)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if opts != nil && opts.QueuePosition {
		q.Set("queue_position", "true")
	}
	return doOne[Run](ctx, s.client, http.MethodGet, "/run/"+id, q, nil, callOpts{})
}

// Cancel cancels a run (POST /run/{run_id}/cancel). It is retried on
// transient errors, because repeating a cancel is harmless. Only
// comfy-deploy-serverless runs can be cancelled. For other runs the server
// answers 500 ([IsCancelUnsupported]), and the same 500 is returned for an
// unknown run ([IsNotFound], with NotFoundQuirk set). After a successful
// cancel, poll Get until the status is cancelled.
func (s *RunsService) Cancel(ctx context.Context, runID string) (*CancelResult, error) {
	id, err := escapeID("run id", runID)
	if err != nil {
		return nil, err
	}
	return doOne[CancelResult](ctx, s.client, http.MethodPost, "/run/"+id+"/cancel", nil, nil,
		callOpts{idempotent: true, quirk: quirkCancel})
}

// RunCountOptions filters Count. Zero values are left out.
type RunCountOptions struct {
	StartTime, EndTime time.Time
	GPU                string
	Status             RunStatus
	Origin             string
	WorkflowID         string
	MachineID          string
	DeploymentID       string
}

// RunCount is the answer of GET /runs/count.
type RunCount struct {
	Count     int            `json:"count"`
	StartTime Time           `json:"start_time"`
	EndTime   Time           `json:"end_time"`
	Filters   map[string]any `json:"filters"`
}

// Count counts runs (GET /runs/count). This route is in the internal spec
// only and may change.
func (s *RunsService) Count(ctx context.Context, opts *RunCountOptions) (*RunCount, error) {
	q := url.Values{}
	if opts != nil {
		if !opts.StartTime.IsZero() {
			q.Set("start_time", opts.StartTime.UTC().Format(time.RFC3339))
		}
		if !opts.EndTime.IsZero() {
			q.Set("end_time", opts.EndTime.UTC().Format(time.RFC3339))
		}
		setStr(q, "gpu", opts.GPU)
		setStr(q, "status", string(opts.Status))
		setStr(q, "origin", opts.Origin)
		setStr(q, "workflow_id", opts.WorkflowID)
		setStr(q, "machine_id", opts.MachineID)
		setStr(q, "deployment_id", opts.DeploymentID)
	}
	return doOne[RunCount](ctx, s.client, http.MethodGet, "/runs/count", q, nil, callOpts{})
}

// RunLog is one archived log line.
type RunLog struct {
	RunID     string `json:"run_id"`
	Timestamp Time   `json:"timestamp"`
	Log       string `json:"log"`
	UserID    string `json:"user_id"`
	OrgID     string `json:"org_id"`
	LogType   string `json:"log_type"`
}

// ArchivedLogs returns the stored logs of a finished run
// (GET /v2/clickhouse-run-logs/{run_id}). Logs are kept for 30 days. They
// are the only place that explains why a run failed, because error
// payloads are dropped from outputs.
func (s *RunsService) ArchivedLogs(ctx context.Context, runID string) ([]RunLog, error) {
	id, err := escapeID("run id", runID)
	if err != nil {
		return nil, err
	}
	return getList[RunLog](ctx, s.client, "/v2/clickhouse-run-logs/"+id, nil)
}

// Run is a workflow run. GET /run/{id} omits DeploymentID. The
// workflow-runs list routes include it.
type Run struct {
	ID                string    `json:"id"`
	WorkflowID        string    `json:"workflow_id"`
	WorkflowVersionID string    `json:"workflow_version_id"`
	MachineID         string    `json:"machine_id"`
	UserID            string    `json:"user_id"`
	OrgID             string    `json:"org_id"`
	Origin            string    `json:"origin"`
	DeploymentID      string    `json:"deployment_id,omitempty"`
	Status            RunStatus `json:"status"`
	// LiveStatus is a note such as "Executing KSampler". It is "" when null.
	LiveStatus string `json:"live_status"`
	// Progress is the fraction of nodes done, from 0 to 1. It is not a
	// percentage, whatever the public docs say.
	Progress  float64 `json:"progress"`
	CreatedAt Time    `json:"created_at"`
	UpdatedAt Time    `json:"updated_at"`
	QueuedAt  Time    `json:"queued_at"`
	StartedAt Time    `json:"started_at"`
	EndedAt   Time    `json:"ended_at"`
	// Durations in seconds, derived by the server. They are nil until
	// their end points exist.
	Duration               *float64 `json:"duration,omitempty"`
	ColdStartDuration      *float64 `json:"cold_start_duration,omitempty"`
	ColdStartDurationTotal *float64 `json:"cold_start_duration_total,omitempty"`
	RunDuration            *float64 `json:"run_duration,omitempty"`
	// QueuePosition is set only when asked for, and only for not-started
	// and queued runs.
	QueuePosition             *int           `json:"queue_position,omitempty"`
	GPU                       string         `json:"gpu"`
	GPUEventID                string         `json:"gpu_event_id"`
	MachineType               MachineType    `json:"machine_type"`
	MachineVersion            string         `json:"machine_version"`
	ModalFunctionCallID       string         `json:"modal_function_call_id"`
	IsRealtime                bool           `json:"is_realtime"`
	WorkflowInputs            map[string]any `json:"workflow_inputs"`
	Webhook                   string         `json:"webhook"`
	WebhookIntermediateStatus bool           `json:"webhook_intermediate_status"`
	Outputs                   []Output       `json:"outputs"`
}

// UnmarshalJSON reads fields whose type varies between routes without
// failing the whole run: machine_version may be a number, and
// workflow_inputs may be null.
func (r *Run) UnmarshalJSON(data []byte) error {
	type plain Run
	var aux struct {
		*plain
		MachineVersion json.RawMessage `json:"machine_version"`
		WorkflowInputs json.RawMessage `json:"workflow_inputs"`
		QueuePosition  json.RawMessage `json:"queue_position"`
		Outputs        json.RawMessage `json:"outputs"`
	}
	*r = Run{}
	aux.plain = (*plain)(r)
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	r.MachineVersion = looseString(aux.MachineVersion)
	_ = json.Unmarshal(aux.WorkflowInputs, &r.WorkflowInputs)
	var qp float64
	if json.Unmarshal(aux.QueuePosition, &qp) == nil && len(aux.QueuePosition) > 0 && string(aux.QueuePosition) != "null" {
		n := int(qp)
		r.QueuePosition = &n
	}
	// Output decoding never fails, so only a non-list "outputs" can fail
	// here. It is dropped rather than hiding the run's status.
	r.Outputs, _ = decodeList[Output](aux.Outputs)
	return nil
}

// looseString turns a JSON string, number or bool into a string. It
// returns "" for null, objects and arrays.
func looseString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	switch raw[0] {
	case '{', '[', 'n':
		return ""
	}
	return string(raw)
}

// Output is what one output-producing node stored.
type Output struct {
	ID string `json:"id"`
	// RunID is the run the output belongs to.
	RunID string `json:"run_id"`
	// OutputID is the user-chosen id of a ComfyDeploy output node. It is
	// copied from the first media item that has one, and is "" otherwise.
	OutputID  string         `json:"output_id"`
	Data      OutputData     `json:"data"`
	NodeMeta  map[string]any `json:"node_meta,omitempty"`
	CreatedAt Time           `json:"created_at"`
	UpdatedAt Time           `json:"updated_at"`
}

// UnmarshalJSON never fails. Fields of unexpected type are left empty, so
// that one strange output cannot hide the others.
func (o *Output) UnmarshalJSON(data []byte) error {
	*o = Output{}
	var raw map[string]json.RawMessage
	if json.Unmarshal(data, &raw) != nil {
		return nil
	}
	o.ID = looseString(raw["id"])
	o.RunID = looseString(raw["run_id"])
	o.OutputID = looseString(raw["output_id"])
	_ = o.Data.UnmarshalJSON(raw["data"])
	_ = json.Unmarshal(raw["node_meta"], &o.NodeMeta)
	_ = o.CreatedAt.UnmarshalJSON(raw["created_at"])
	_ = o.UpdatedAt.UnmarshalJSON(raw["updated_at"])
	return nil
}

// OutputData maps a ComfyUI UI key ("images", "files", "gifs", "mesh",
// "text", or any custom node's key) to its values. A key whose value is
// not a list is read as a one-element list.
type OutputData map[string][]OutputValue

// UnmarshalJSON tolerates values that are not lists, so that one custom
// node with an unusual UI payload cannot make the whole run unreadable.
func (d *OutputData) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || raw == nil {
		// Not an object: nothing usable, but the rest of the run still is.
		*d = nil
		return nil
	}
	out := make(OutputData, len(raw))
	for k, v := range raw {
		v = bytes.TrimSpace(v)
		if len(v) > 0 && v[0] == '[' {
			var vals []OutputValue
			if err := json.Unmarshal(v, &vals); err != nil {
				return err // unreachable: OutputValue accepts anything
			}
			out[k] = vals
			continue
		}
		var one OutputValue
		_ = one.UnmarshalJSON(v)
		out[k] = []OutputValue{one}
	}
	*d = out
	return nil
}

// mediaKinds come first, in this order, when outputs are flattened.
// Other keys follow in alphabetical order, because map order is random
// and callers want stable results.
var mediaKinds = []string{"images", "files", "gifs", "mesh"}

func (d OutputData) orderedKeys(first ...string) []string {
	keys := make([]string, 0, len(d))
	for k := range d {
		if !slices.Contains(first, k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var head []string
	for _, k := range first {
		if _, ok := d[k]; ok {
			head = append(head, k)
		}
	}
	return append(head, keys...)
}

// OutputValue is one element of an output list. Exactly one field is set:
// Media for objects that look like a media item, Text for strings, Bool
// for booleans, and Raw for anything else.
type OutputValue struct {
	Media *MediaItem
	Text  *string
	Bool  *bool
	Raw   json.RawMessage
}

// UnmarshalJSON accepts any JSON value and never fails.
func (v *OutputValue) UnmarshalJSON(data []byte) error {
	*v = OutputValue{}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case '"':
		var s string
		if json.Unmarshal(data, &s) == nil {
			v.Text = &s
			return nil
		}
	case 't', 'f':
		var b bool
		if json.Unmarshal(data, &b) == nil {
			v.Bool = &b
			return nil
		}
	case '{':
		var probe map[string]json.RawMessage
		if json.Unmarshal(data, &probe) == nil {
			_, hasURL := probe["url"]
			_, hasName := probe["filename"]
			var m MediaItem
			if (hasURL || hasName) && json.Unmarshal(data, &m) == nil {
				v.Media = &m
				return nil
			}
		}
	}
	v.Raw = append(json.RawMessage(nil), data...)
	return nil
}

// MarshalJSON writes the value back in its original shape.
func (v OutputValue) MarshalJSON() ([]byte, error) {
	switch {
	case v.Media != nil:
		return json.Marshal(v.Media)
	case v.Text != nil:
		return json.Marshal(*v.Text)
	case v.Bool != nil:
		return json.Marshal(*v.Bool)
	case len(v.Raw) > 0 && json.Valid(v.Raw):
		return v.Raw, nil
	}
	return []byte("null"), nil
}

// MediaItem is a stored file (image, video, mesh…) produced by a run.
type MediaItem struct {
	URL string `json:"url"`
	// Type is ComfyUI's folder type, such as "output" or "temp". It is
	// not a MIME type.
	Type     string `json:"type"`
	Filename string `json:"filename"`
	// IsPublic false means URL is a presigned GET that expires one hour
	// after the run was read.
	IsPublic       *bool    `json:"is_public,omitempty"`
	Subfolder      string   `json:"subfolder,omitempty"`
	UploadDuration *float64 `json:"upload_duration,omitempty"`
	// OutputID and Format appear in webhook payloads. GET /run drops them.
	OutputID string `json:"output_id,omitempty"`
	Format   string `json:"format,omitempty"`
}

// UnmarshalJSON keeps a stray type in an optional field (a numeric
// subfolder, say) from rejecting the item.
func (m *MediaItem) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*m = MediaItem{
		URL:       looseString(raw["url"]),
		Type:      looseString(raw["type"]),
		Filename:  looseString(raw["filename"]),
		Subfolder: looseString(raw["subfolder"]),
		OutputID:  looseString(raw["output_id"]),
		Format:    looseString(raw["format"]),
	}
	var b bool
	if json.Unmarshal(raw["is_public"], &b) == nil && len(raw["is_public"]) > 0 && string(raw["is_public"]) != "null" {
		m.IsPublic = &b
	}
	var f float64
	if json.Unmarshal(raw["upload_duration"], &f) == nil && len(raw["upload_duration"]) > 0 && string(raw["upload_duration"]) != "null" {
		m.UploadDuration = &f
	}
	return nil
}

// OutputMedia is a media item together with where it came from.
type OutputMedia struct {
	// OutputID is the output's id, or else the item's own output_id.
	OutputID string
	// Kind is the data key that held the item: "images", "files", "gifs",
	// "mesh" or a custom node's key.
	Kind string
	Item MediaItem
}

// MediaItems flattens every media item of every output, in output order.
// Within one output, images, files, gifs and mesh come first and other
// keys follow alphabetically.
func (r *Run) MediaItems() []OutputMedia {
	if r == nil {
		return nil
	}
	var out []OutputMedia
	for _, o := range r.Outputs {
		for _, kind := range o.Data.orderedKeys(mediaKinds...) {
			for _, v := range o.Data[kind] {
				if v.Media == nil {
					continue
				}
				id := o.OutputID
				if id == "" {
					id = v.Media.OutputID
				}
				out = append(out, OutputMedia{OutputID: id, Kind: kind, Item: *v.Media})
			}
		}
	}
	return out
}

// Texts returns every string of every output, in output order. Within one
// output, the "text" list comes first and other keys follow alphabetically.
func (r *Run) Texts() []string {
	if r == nil {
		return nil
	}
	var out []string
	for _, o := range r.Outputs {
		for _, key := range o.Data.orderedKeys("text") {
			for _, v := range o.Data[key] {
				if v.Text != nil {
					out = append(out, *v.Text)
				}
			}
		}
	}
	return out
}
