package comfy

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// MachinesService reads machines. These routes are in the internal spec
// only and may change.
type MachinesService service

// MachineType is where and how a machine runs ComfyUI.
type MachineType string

const (
	// MachineClassic is a self-hosted ComfyUI reached at Machine.Endpoint.
	MachineClassic MachineType = "classic"
	// MachineRunpodServerless needs an auth token on the machine.
	MachineRunpodServerless MachineType = "runpod-serverless"
	// MachineModalServerless is legacy. The v2 run path rejects it with 400.
	MachineModalServerless MachineType = "modal-serverless"
	// MachineComfyDeployServerless is ComfyDeploy-managed Modal. It is the
	// only type that supports sync, stream and cancel.
	MachineComfyDeployServerless MachineType = "comfy-deploy-serverless"
	MachineWorkspace             MachineType = "workspace"
	MachineWorkspaceV2           MachineType = "workspace-v2"
)

// CanQueue reports whether the v2 run path dispatches to this type. Other
// types get 400 "Invalid machine type", and the run is left failed.
func (t MachineType) CanQueue() bool {
	switch t {
	case MachineClassic, MachineRunpodServerless, MachineComfyDeployServerless:
		return true
	}
	return false
}

// CanCancel reports whether runs on this type can be cancelled. Others get
// a 500 ([IsCancelUnsupported]), because only Modal calls can be cancelled.
func (t MachineType) CanCancel() bool { return t == MachineComfyDeployServerless }

// CanSyncOrStream reports whether /run/*/sync and /run/*/stream work. They
// always go through the Modal runner.
func (t MachineType) CanSyncOrStream() bool { return t == MachineComfyDeployServerless }

// MachineStatus is a machine's build and run state.
type MachineStatus string

const (
	MachineNotStarted MachineStatus = "not-started"
	MachineReady      MachineStatus = "ready"
	MachineBuilding   MachineStatus = "building"
	MachineError      MachineStatus = "error"
	MachineRunning    MachineStatus = "running"
	MachinePaused     MachineStatus = "paused"
	MachineStarting   MachineStatus = "starting"
)

// IsReady reports whether runs can be expected to execute: ready or
// running. Run creation does not check the status, so a run queued on a
// machine that is building or in error just never makes progress.
func (s MachineStatus) IsReady() bool { return s == MachineReady || s == MachineRunning }

// Machine is a ComfyUI environment that runs execute on.
type Machine struct {
	ID               string        `json:"id"`
	UserID           string        `json:"user_id"`
	OrgID            string        `json:"org_id"`
	Name             string        `json:"name"`
	Type             MachineType   `json:"type"`
	Status           MachineStatus `json:"status"`
	GPU              string        `json:"gpu"`
	MachineVersionID string        `json:"machine_version_id"`
	// MachineVersion and MachineBuilderVersion are numbers on some rows and
	// strings on others. Both decode to text.
	MachineVersion        string `json:"machine_version"`
	MachineBuilderVersion string `json:"machine_builder_version"`
	ComfyUIVersion        string `json:"comfyui_version"`
	// ImportFailedLogs holds custom-node import failures from the build.
	// The server sends text or JSON; anything that is not a string is kept
	// as its JSON text. An empty list or object reads as "".
	ImportFailedLogs      string              `json:"import_failed_logs"`
	Endpoint              string              `json:"endpoint"`
	ConcurrencyLimit      int                 `json:"concurrency_limit"`
	RunTimeout            int                 `json:"run_timeout"`
	IdleTimeout           int                 `json:"idle_timeout"`
	KeepWarm              int                 `json:"keep_warm"`
	AllowConcurrentInputs int                 `json:"allow_concurrent_inputs"`
	DockerCommandSteps    *DockerCommandSteps `json:"docker_command_steps,omitempty"`
	IsWorkspace           bool                `json:"is_workspace"`
	Deleted               bool                `json:"deleted"`
	CreatedAt             Time                `json:"created_at"`
	UpdatedAt             Time                `json:"updated_at"`
}

// UnmarshalJSON reads fields of varying type (numbers stored as text, logs
// as text or JSON) without failing the machine.
func (m *Machine) UnmarshalJSON(data []byte) error {
	type plain Machine
	var aux struct {
		*plain
		MachineVersion        json.RawMessage `json:"machine_version"`
		MachineBuilderVersion json.RawMessage `json:"machine_builder_version"`
		ImportFailedLogs      json.RawMessage `json:"import_failed_logs"`
		ConcurrencyLimit      json.RawMessage `json:"concurrency_limit"`
		RunTimeout            json.RawMessage `json:"run_timeout"`
		IdleTimeout           json.RawMessage `json:"idle_timeout"`
		KeepWarm              json.RawMessage `json:"keep_warm"`
		AllowConcurrentInputs json.RawMessage `json:"allow_concurrent_inputs"`
		DockerCommandSteps    json.RawMessage `json:"docker_command_steps"`
		IsWorkspace           json.RawMessage `json:"is_workspace"`
		Deleted               json.RawMessage `json:"deleted"`
	}
	*m = Machine{}
	aux.plain = (*plain)(m)
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	m.MachineVersion = looseString(aux.MachineVersion)
	m.MachineBuilderVersion = looseString(aux.MachineBuilderVersion)
	m.ImportFailedLogs = jsonText(aux.ImportFailedLogs)
	m.ConcurrencyLimit = looseInt(aux.ConcurrencyLimit)
	m.RunTimeout = looseInt(aux.RunTimeout)
	m.IdleTimeout = looseInt(aux.IdleTimeout)
	m.KeepWarm = looseInt(aux.KeepWarm)
	m.AllowConcurrentInputs = looseInt(aux.AllowConcurrentInputs)
	m.IsWorkspace = looseBool(aux.IsWorkspace)
	m.Deleted = looseBool(aux.Deleted)
	if t := bytes.TrimSpace(aux.DockerCommandSteps); len(t) > 0 && string(t) != "null" {
		var steps DockerCommandSteps
		if steps.UnmarshalJSON(t) == nil {
			m.DockerCommandSteps = &steps
		}
	}
	return nil
}

func looseBool(raw json.RawMessage) bool {
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return b
	}
	return looseInt(raw) != 0
}

// jsonText returns a JSON string's value, "" for null and empty
// containers, and the compact JSON text of anything else.
func jsonText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	switch string(raw) {
	case "", "null", "[]", "{}", `""`:
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		return buf.String()
	}
	return string(raw)
}

// DockerCommandSteps is a machine's build recipe.
type DockerCommandSteps struct {
	Steps []DockerStep `json:"steps"`
}

// UnmarshalJSON also accepts the recipe as a JSON-encoded string, or as a
// bare list of steps.
func (d *DockerCommandSteps) UnmarshalJSON(data []byte) error {
	*d = DockerCommandSteps{}
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		data = []byte(s)
	}
	if len(data) > 0 && data[0] == '[' {
		return json.Unmarshal(data, &d.Steps)
	}
	var aux struct {
		Steps []DockerStep `json:"steps"`
	}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	d.Steps = aux.Steps
	return nil
}

// DockerStep is one build step. Type is "custom-node", "custom-node-manager"
// or a command step.
type DockerStep struct {
	Type string         `json:"type"`
	Data DockerStepData `json:"data"`
}

// DockerStepData holds the fields of the custom-node step kinds. Raw keeps
// the whole data value (pip, files, command text) for other uses.
type DockerStepData struct {
	// URL, Hash, InstallType and Name are set for "custom-node" steps.
	URL         string `json:"url,omitempty"`
	Hash        string `json:"hash,omitempty"`
	InstallType string `json:"install_type,omitempty"`
	Name        string `json:"name,omitempty"`
	// NodeID and Version are set for "custom-node-manager" steps.
	NodeID  string          `json:"node_id,omitempty"`
	Version string          `json:"version,omitempty"`
	Raw     json.RawMessage `json:"-"`
}

// UnmarshalJSON accepts data of any shape. Command steps carry a string.
func (s *DockerStepData) UnmarshalJSON(data []byte) error {
	*s = DockerStepData{Raw: append(json.RawMessage(nil), data...)}
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	s.URL = looseString(m["url"])
	s.Hash = looseString(m["hash"])
	s.InstallType = looseString(m["install_type"])
	s.Name = looseString(m["name"])
	s.NodeID = looseString(m["node_id"])
	s.Version = looseString(m["version"])
	return nil
}

// MarshalJSON writes Raw back when there is one. The typed fields are only
// a view of it, and command steps exist only in Raw. This keeps a Machine
// whole when it is serialised, for example as a Temporal activity result.
func (s DockerStepData) MarshalJSON() ([]byte, error) {
	if len(s.Raw) > 0 && json.Valid(s.Raw) {
		return s.Raw, nil
	}
	type plain DockerStepData
	return json.Marshal(plain(s))
}

// NormalizeGitURL gives one form to the ways a custom-node repository is
// written. It ignores case, scheme, "www.", a "git@host:" prefix, a
// trailing ".git" and trailing slashes.
func NormalizeGitURL(u string) string {
	s := strings.ToLower(strings.TrimSpace(u))
	for _, p := range []string{"https://", "http://", "git://", "ssh://"} {
		s = strings.TrimPrefix(s, p)
	}
	s = strings.TrimPrefix(s, "git@")
	s = strings.TrimPrefix(s, "www.")
	if i := strings.IndexByte(s, ':'); i >= 0 && !strings.Contains(s[:i], "/") {
		s = s[:i] + "/" + s[i+1:] // git@github.com:owner/repo
	}
	for {
		t := strings.TrimSuffix(strings.TrimSuffix(s, "/"), ".git")
		if t == s {
			return s
		}
		s = t
	}
}

// CustomNodes returns the "custom-node" and "custom-node-manager" steps.
func (m *Machine) CustomNodes() []DockerStepData {
	if m == nil || m.DockerCommandSteps == nil {
		return nil
	}
	var out []DockerStepData
	for _, st := range m.DockerCommandSteps.Steps {
		if st.Type == "custom-node" || st.Type == "custom-node-manager" {
			out = append(out, st.Data)
		}
	}
	return out
}

// HasCustomNode reports whether the machine installs the repository at
// url. It compares normalised forms (see [NormalizeGitURL]).
func (m *Machine) HasCustomNode(url string) bool {
	want := NormalizeGitURL(url)
	if want == "" {
		return false
	}
	for _, n := range m.CustomNodes() {
		if n.URL != "" && NormalizeGitURL(n.URL) == want {
			return true
		}
	}
	return false
}

// HasCustomNodeID reports whether the machine installs a ComfyUI-Manager
// registry node with this id (case-insensitive).
func (m *Machine) HasCustomNodeID(nodeID string) bool {
	for _, n := range m.CustomNodes() {
		if n.NodeID != "" && strings.EqualFold(n.NodeID, strings.TrimSpace(nodeID)) {
			return true
		}
	}
	return false
}

// MachineListOptions filters List. Nil booleans are left out.
type MachineListOptions struct {
	Search string
	Limit  int
	Offset int
	// IsDeleted lists deleted machines instead.
	IsDeleted           *bool
	IncludeHasWorkflows *bool
	// IsDocker selects comfy-deploy-serverless machines.
	IsDocker *bool
	// IsSelfHosted selects classic and runpod-serverless machines.
	IsSelfHosted              *bool
	IsWorkspace               *bool
	IncludeDockerCommandSteps *bool
}

// List lists machines (GET /machines). The server's default limit is 100.
func (s *MachinesService) List(ctx context.Context, opts *MachineListOptions) ([]Machine, error) {
	q := url.Values{}
	if opts != nil {
		setStr(q, "search", opts.Search)
		setInt(q, "limit", opts.Limit)
		setInt(q, "offset", opts.Offset)
		setBoolPtr(q, "is_deleted", opts.IsDeleted)
		setBoolPtr(q, "include_has_workflows", opts.IncludeHasWorkflows)
		setBoolPtr(q, "is_docker", opts.IsDocker)
		setBoolPtr(q, "is_self_hosted", opts.IsSelfHosted)
		setBoolPtr(q, "is_workspace", opts.IsWorkspace)
		setBoolPtr(q, "include_docker_command_steps", opts.IncludeDockerCommandSteps)
	}
	return getList[Machine](ctx, s.client, "/machines", q)
}

// Get fetches one machine (GET /machine/{id}), including its build steps.
// Deleted machines return 404.
func (s *MachinesService) Get(ctx context.Context, id string) (*Machine, error) {
	p, err := escapeID("machine id", id)
	if err != nil {
		return nil, err
	}
	return doOne[Machine](ctx, s.client, http.MethodGet, "/machine/"+p, nil, nil, callOpts{})
}

// MachineVersion is one built image of a serverless machine. A
// deployment's MachineVersionID should point at a version whose status is
// ready.
type MachineVersion struct {
	ID             string        `json:"id"`
	MachineID      string        `json:"machine_id"`
	Version        int           `json:"version"`
	UserID         string        `json:"user_id"`
	OrgID          string        `json:"org_id"`
	ComfyUIVersion string        `json:"comfyui_version"`
	GPU            string        `json:"gpu"`
	Status         MachineStatus `json:"status"`
	CreatedAt      Time          `json:"created_at"`
	UpdatedAt      Time          `json:"updated_at"`
}

// UnmarshalJSON accepts a version number sent as a string.
func (v *MachineVersion) UnmarshalJSON(data []byte) error {
	type plain MachineVersion
	var aux struct {
		*plain
		Version json.RawMessage `json:"version"`
	}
	*v = MachineVersion{}
	aux.plain = (*plain)(v)
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	v.Version = looseInt(aux.Version)
	return nil
}

// ListServerlessVersions lists a serverless machine's image versions
// (GET /machine/serverless/{id}/versions), newest first.
func (s *MachinesService) ListServerlessVersions(ctx context.Context, machineID string, opts *ListOptions) ([]MachineVersion, error) {
	p, err := escapeID("machine id", machineID)
	if err != nil {
		return nil, err
	}
	return getList[MachineVersion](ctx, s.client, "/machine/serverless/"+p+"/versions", opts.values("limit"))
}

// GetServerlessVersion fetches one image version
// (GET /machine/serverless/{id}/versions/{version_id}).
func (s *MachinesService) GetServerlessVersion(ctx context.Context, machineID, versionID string) (*MachineVersion, error) {
	p, err := escapeID("machine id", machineID)
	if err != nil {
		return nil, err
	}
	v, err := escapeID("machine version id", versionID)
	if err != nil {
		return nil, err
	}
	return doOne[MachineVersion](ctx, s.client, http.MethodGet, "/machine/serverless/"+p+"/versions/"+v, nil, nil, callOpts{})
}

// CustomNodeCheck says whether a machine's comfyui-deploy node, which
// reports run status, matches the latest upstream commit.
type CustomNodeCheck struct {
	Status       string      `json:"status"`
	LocalCommit  *CommitInfo `json:"local_commit,omitempty"`
	LatestCommit *CommitInfo `json:"latest_commit,omitempty"`
	IsUpToDate   bool        `json:"is_up_to_date"`
}

// CommitInfo identifies a git commit.
type CommitInfo struct {
	Hash    string `json:"hash"`
	Message string `json:"message"`
	Date    Time   `json:"date"`
}

// CheckCustomNodes compares the machine's comfyui-deploy node with GitHub
// (GET /machine/{id}/check-custom-nodes).
func (s *MachinesService) CheckCustomNodes(ctx context.Context, machineID string) (*CustomNodeCheck, error) {
	p, err := escapeID("machine id", machineID)
	if err != nil {
		return nil, err
	}
	return doOne[CustomNodeCheck](ctx, s.client, http.MethodGet, "/machine/"+p+"/check-custom-nodes", nil, nil, callOpts{})
}

// GPUEvent is a GPU usage record. The reference names the model
// (GPUEventModel) but not its fields, so only likely fields are decoded.
// Raw holds the full object.
type GPUEvent struct {
	ID          string          `json:"id"`
	MachineID   string          `json:"machine_id"`
	GPU         string          `json:"gpu"`
	GPUProvider string          `json:"gpu_provider"`
	SessionID   string          `json:"session_id"`
	StartTime   Time            `json:"start_time"`
	EndTime     Time            `json:"end_time"`
	CreatedAt   Time            `json:"created_at"`
	Raw         json.RawMessage `json:"-"`
}

// UnmarshalJSON keeps the raw object next to the decoded fields.
func (e *GPUEvent) UnmarshalJSON(data []byte) error {
	type plain GPUEvent
	var aux struct {
		*plain
		GPU json.RawMessage `json:"gpu"`
	}
	*e = GPUEvent{}
	aux.plain = (*plain)(e)
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	e.GPU = looseString(aux.GPU)
	e.Raw = append(json.RawMessage(nil), data...)
	return nil
}

// Events lists the machine's GPU events of the last 24 hours
// (GET /machine/{id}/events).
func (s *MachinesService) Events(ctx context.Context, machineID string) ([]GPUEvent, error) {
	p, err := escapeID("machine id", machineID)
	if err != nil {
		return nil, err
	}
	return getList[GPUEvent](ctx, s.client, "/machine/"+p+"/events", nil)
}
