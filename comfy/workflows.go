package comfy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// WorkflowsService reads workflows, their versions and their runs. These
// routes are in the internal spec only and may change.
type WorkflowsService service

// Workflow is a named ComfyUI graph with a version history.
type Workflow struct {
	ID                string `json:"id"`
	UserID            string `json:"user_id"`
	OrgID             string `json:"org_id"`
	Name              string `json:"name"`
	SelectedMachineID string `json:"selected_machine_id"`
	Description       string `json:"description"`
	CoverImage        string `json:"cover_image"`
	Pinned            bool   `json:"pinned"`
	Deleted           bool   `json:"deleted"`
	CreatedAt         Time   `json:"created_at"`
	UpdatedAt         Time   `json:"updated_at"`
	// Versions is filled by Get with the most recent versions.
	Versions []WorkflowVersion `json:"versions,omitempty"`
}

// WorkflowVersion is one saved revision of a workflow.
type WorkflowVersion struct {
	ID               string `json:"id"`
	WorkflowID       string `json:"workflow_id"`
	Version          int    `json:"version"`
	Comment          string `json:"comment"`
	MachineID        string `json:"machine_id"`
	MachineVersionID string `json:"machine_version_id"`
	// Dependencies lists what the graph needs: custom nodes, models, files.
	Dependencies *DependencyGraph `json:"dependencies,omitempty"`
	// Snapshot is the ComfyUI-Manager snapshot. It is read from "snapshot",
	// or from "comfyui_snapshot" when that is absent.
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	// Workflow is the UI graph and WorkflowAPI the API-format graph.
	Workflow    json.RawMessage `json:"workflow,omitempty"`
	WorkflowAPI json.RawMessage `json:"workflow_api,omitempty"`
	UserID      string          `json:"user_id,omitempty"`
	CreatedAt   Time            `json:"created_at"`
	UpdatedAt   Time            `json:"updated_at"`
}

// UnmarshalJSON accepts nested documents stored as JSON strings, and a
// version number sent as text.
func (v *WorkflowVersion) UnmarshalJSON(data []byte) error {
	type plain WorkflowVersion
	var aux struct {
		*plain
		Version         json.RawMessage `json:"version"`
		Dependencies    json.RawMessage `json:"dependencies"`
		Snapshot        json.RawMessage `json:"snapshot"`
		ComfyUISnapshot json.RawMessage `json:"comfyui_snapshot"`
		Workflow        json.RawMessage `json:"workflow"`
		WorkflowAPI     json.RawMessage `json:"workflow_api"`
	}
	*v = WorkflowVersion{}
	aux.plain = (*plain)(v)
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	v.Version = looseInt(aux.Version)
	if raw := unwrapJSONString(aux.Dependencies); raw != nil {
		var d DependencyGraph
		if json.Unmarshal(raw, &d) == nil {
			v.Dependencies = &d
		}
	}
	snap := unwrapJSONString(aux.Snapshot)
	if snap == nil {
		snap = unwrapJSONString(aux.ComfyUISnapshot)
	}
	if snap != nil {
		var s Snapshot
		if json.Unmarshal(snap, &s) == nil {
			v.Snapshot = &s
		}
	}
	v.Workflow = unwrapJSONString(aux.Workflow)
	v.WorkflowAPI = unwrapJSONString(aux.WorkflowAPI)
	return nil
}

// unwrapJSONString returns nil for absent or null values. A string that
// holds a JSON document becomes that document. Anything else is returned
// as it is.
func unwrapJSONString(raw json.RawMessage) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			inner := bytes.TrimSpace([]byte(s))
			if len(inner) == 0 {
				return nil
			}
			if json.Valid(inner) {
				return inner
			}
		}
	}
	return append(json.RawMessage(nil), raw...)
}

// DependencyGraph is what a workflow version needs from a machine.
type DependencyGraph struct {
	ComfyUI      string                          `json:"comfyui"`
	MissingNodes []string                        `json:"missing_nodes"`
	CustomNodes  map[string]CustomNodeDependency `json:"custom_nodes"`
	Models       any                             `json:"models,omitempty"`
	Files        any                             `json:"files,omitempty"`
}

// UnmarshalJSON tolerates a missing_nodes list holding non-strings.
func (g *DependencyGraph) UnmarshalJSON(data []byte) error {
	type plain DependencyGraph
	var aux struct {
		*plain
		MissingNodes []json.RawMessage `json:"missing_nodes"`
	}
	*g = DependencyGraph{}
	aux.plain = (*plain)(g)
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	for _, n := range aux.MissingNodes {
		if s := looseString(n); s != "" {
			g.MissingNodes = append(g.MissingNodes, s)
		} else if t := jsonText(n); t != "" {
			g.MissingNodes = append(g.MissingNodes, t)
		}
	}
	return nil
}

// CustomNodeDependency is one custom node required by a workflow version.
type CustomNodeDependency struct {
	URL         string          `json:"url"`
	Hash        string          `json:"hash"`
	InstallType string          `json:"install_type"`
	Name        string          `json:"name"`
	Pip         json.RawMessage `json:"pip,omitempty"`
	Files       json.RawMessage `json:"files,omitempty"`
}

// UnmarshalJSON reads only the string fields strictly as strings. Any
// other shape decodes to "".
func (c *CustomNodeDependency) UnmarshalJSON(data []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		*c = CustomNodeDependency{}
		return nil
	}
	*c = CustomNodeDependency{
		URL:         looseString(m["url"]),
		Hash:        looseString(m["hash"]),
		InstallType: looseString(m["install_type"]),
		Name:        looseString(m["name"]),
		Pip:         m["pip"],
		Files:       m["files"],
	}
	return nil
}

// Snapshot is a ComfyUI-Manager snapshot.
type Snapshot struct {
	ComfyUI        string                     `json:"comfyui"`
	GitCustomNodes map[string]SnapshotGitNode `json:"git_custom_nodes,omitempty"`
	// CNRCustomNodes maps registry node ids to versions.
	CNRCustomNodes  map[string]string `json:"cnr_custom_nodes,omitempty"`
	FileCustomNodes json.RawMessage   `json:"file_custom_nodes,omitempty"`
	Pips            json.RawMessage   `json:"pips,omitempty"`
}

// UnmarshalJSON tolerates registry versions sent as numbers.
func (s *Snapshot) UnmarshalJSON(data []byte) error {
	type plain Snapshot
	var aux struct {
		*plain
		CNRCustomNodes map[string]json.RawMessage `json:"cnr_custom_nodes"`
	}
	*s = Snapshot{}
	aux.plain = (*plain)(s)
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	if len(aux.CNRCustomNodes) > 0 {
		s.CNRCustomNodes = make(map[string]string, len(aux.CNRCustomNodes))
		for k, v := range aux.CNRCustomNodes {
			s.CNRCustomNodes[k] = looseString(v)
		}
	}
	return nil
}

// SnapshotGitNode pins one git custom node in a snapshot.
type SnapshotGitNode struct {
	Hash     string          `json:"hash"`
	Disabled bool            `json:"disabled"`
	Pip      json.RawMessage `json:"pip,omitempty"`
}

// CustomNodeURLs returns the git URLs of the custom nodes this version
// needs, from its dependency graph and its snapshot, without duplicates
// and sorted. Disabled snapshot nodes are left out. Check each against
// [Machine.HasCustomNode]. Registry nodes from the snapshot are returned by
// CustomNodeIDs.
func (v *WorkflowVersion) CustomNodeURLs() []string {
	if v == nil {
		return nil
	}
	seen := map[string]string{}
	add := func(u string) {
		if n := NormalizeGitURL(u); n != "" {
			if _, ok := seen[n]; !ok {
				seen[n] = u
			}
		}
	}
	if v.Dependencies != nil {
		for key, dep := range v.Dependencies.CustomNodes {
			if dep.URL != "" {
				add(dep.URL)
			} else {
				add(key)
			}
		}
	}
	if v.Snapshot != nil {
		for u, n := range v.Snapshot.GitCustomNodes {
			if !n.Disabled {
				add(u)
			}
		}
	}
	out := make([]string, 0, len(seen))
	for _, u := range seen {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// CustomNodeIDs returns the ComfyUI-Manager registry ids in the snapshot,
// sorted. Check each against [Machine.HasCustomNodeID].
func (v *WorkflowVersion) CustomNodeIDs() []string {
	if v == nil || v.Snapshot == nil {
		return nil
	}
	out := make([]string, 0, len(v.Snapshot.CNRCustomNodes))
	for id := range v.Snapshot.CNRCustomNodes {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// WorkflowListOptions filters List.
type WorkflowListOptions struct {
	Search string
	Limit  int
	Offset int
	// UserIDs is sent comma-separated.
	UserIDs   []string
	MachineID string
}

// List lists workflows (GET /workflows).
func (s *WorkflowsService) List(ctx context.Context, opts *WorkflowListOptions) ([]Workflow, error) {
	q := url.Values{}
	if opts != nil {
		setStr(q, "search", opts.Search)
		setInt(q, "limit", opts.Limit)
		setInt(q, "offset", opts.Offset)
		setStr(q, "user_ids", strings.Join(opts.UserIDs, ","))
		setStr(q, "machine_id", opts.MachineID)
	}
	return getList[Workflow](ctx, s.client, "/workflows", q)
}

// Get fetches a workflow and its most recent version
// (GET /workflow/{id}).
func (s *WorkflowsService) Get(ctx context.Context, workflowID string) (*Workflow, error) {
	p, err := escapeID("workflow id", workflowID)
	if err != nil {
		return nil, err
	}
	return doOne[Workflow](ctx, s.client, http.MethodGet, "/workflow/"+p, nil, nil, callOpts{})
}

// VersionListOptions filters ListVersions.
type VersionListOptions struct {
	// Search matches version comments.
	Search string
	Limit  int
	Offset int
}

// ListVersions lists a workflow's versions, newest first
// (GET /workflow/{id}/versions).
func (s *WorkflowsService) ListVersions(ctx context.Context, workflowID string, opts *VersionListOptions) ([]WorkflowVersion, error) {
	p, err := escapeID("workflow id", workflowID)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if opts != nil {
		setStr(q, "search", opts.Search)
		setInt(q, "limit", opts.Limit)
		setInt(q, "offset", opts.Offset)
	}
	return getList[WorkflowVersion](ctx, s.client, "/workflow/"+p+"/versions", q)
}

// GetVersion fetches a version by its number
// (GET /workflow/{id}/version/{number}).
func (s *WorkflowsService) GetVersion(ctx context.Context, workflowID string, number int) (*WorkflowVersion, error) {
	p, err := escapeID("workflow id", workflowID)
	if err != nil {
		return nil, err
	}
	return doOne[WorkflowVersion](ctx, s.client, http.MethodGet, "/workflow/"+p+"/version/"+strconv.Itoa(number), nil, nil, callOpts{})
}

// GetVersionByID fetches a version by its id (GET /workflow-version/{id}),
// such as a deployment's WorkflowVersionID.
func (s *WorkflowsService) GetVersionByID(ctx context.Context, versionID string) (*WorkflowVersion, error) {
	p, err := escapeID("workflow version id", versionID)
	if err != nil {
		return nil, err
	}
	return doOne[WorkflowVersion](ctx, s.client, http.MethodGet, "/workflow-version/"+p, nil, nil, callOpts{})
}

// CreateVersionRequest is the body of CreateVersion.
type CreateVersionRequest struct {
	Workflow         json.RawMessage `json:"workflow"`
	WorkflowAPI      json.RawMessage `json:"workflow_api"`
	Comment          string          `json:"comment,omitempty"`
	MachineID        string          `json:"machine_id,omitempty"`
	MachineVersionID string          `json:"machine_version_id,omitempty"`
	ComfyUISnapshot  json.RawMessage `json:"comfyui_snapshot,omitempty"`
}

// CreateVersion saves a new version (POST /workflow/{id}/version). When
// MachineID is set, the server also creates a "preview" deployment. It is
// not retried unless ctx is marked with [WithIdempotent].
func (s *WorkflowsService) CreateVersion(ctx context.Context, workflowID string, req *CreateVersionRequest) (*WorkflowVersion, error) {
	p, err := escapeID("workflow id", workflowID)
	if err != nil {
		return nil, err
	}
	if req == nil || len(req.Workflow) == 0 || len(req.WorkflowAPI) == 0 {
		return nil, fmt.Errorf("%w: workflow and workflow_api are required", ErrInvalidArgument)
	}
	return doOne[WorkflowVersion](ctx, s.client, http.MethodPost, "/workflow/"+p+"/version", nil, req, callOpts{})
}

// CreateWorkflowRequest is the body of Create. The graphs are JSON text,
// as the server expects.
type CreateWorkflowRequest struct {
	Name             string `json:"name"`
	WorkflowJSON     string `json:"workflow_json"`
	WorkflowAPI      string `json:"workflow_api,omitempty"`
	MachineID        string `json:"machine_id,omitempty"`
	MachineVersionID string `json:"machine_version_id,omitempty"`
	ComfyUISnapshot  string `json:"comfyui_snapshot,omitempty"`
}

// Create creates a workflow (POST /workflow). It is not retried unless ctx
// is marked with [WithIdempotent].
func (s *WorkflowsService) Create(ctx context.Context, req *CreateWorkflowRequest) (*Workflow, error) {
	if req == nil || req.Name == "" || req.WorkflowJSON == "" {
		return nil, fmt.Errorf("%w: name and workflow_json are required", ErrInvalidArgument)
	}
	return doOne[Workflow](ctx, s.client, http.MethodPost, "/workflow", nil, req, callOpts{})
}

// WorkflowRunsOptions filters ListRuns. Nil booleans keep the server
// defaults, which are true for both.
type WorkflowRunsOptions struct {
	Limit       int
	Offset      int
	WithOutputs *bool
	WithInputs  *bool
}

// ListRuns lists a workflow's runs, newest first, as full rows with
// workflow_inputs, webhook, deployment_id and outputs
// (GET /workflow/{id}/runs). The server's default limit is 100.
func (s *WorkflowsService) ListRuns(ctx context.Context, workflowID string, opts *WorkflowRunsOptions) ([]Run, error) {
	p, err := escapeID("workflow id", workflowID)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if opts != nil {
		setInt(q, "limit", opts.Limit)
		setInt(q, "offset", opts.Offset)
		setBoolPtr(q, "with_outputs", opts.WithOutputs)
		setBoolPtr(q, "with_inputs", opts.WithInputs)
	}
	return getList[Run](ctx, s.client, "/workflow/"+p+"/runs", q)
}

// WorkflowRunsV2Options filters ListRunsV2.
type WorkflowRunsV2Options struct {
	Status       RunStatus
	DeploymentID string
	// Since is sent as "rf", a lower bound on created_at in Unix seconds.
	Since  time.Time
	Limit  int
	Offset int
}

// ListRunsV2 lists a workflow's runs as slim rows, with ids, status,
// timestamps and timings but no inputs or webhook
// (GET /v2/workflow/{id}/runs).
func (s *WorkflowsService) ListRunsV2(ctx context.Context, workflowID string, opts *WorkflowRunsV2Options) ([]Run, error) {
	p, err := escapeID("workflow id", workflowID)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if opts != nil {
		setStr(q, "status", string(opts.Status))
		setStr(q, "deployment_id", opts.DeploymentID)
		if !opts.Since.IsZero() {
			q.Set("rf", strconv.FormatInt(opts.Since.Unix(), 10))
		}
		setInt(q, "limit", opts.Limit)
		setInt(q, "offset", opts.Offset)
	}
	return getList[Run](ctx, s.client, "/v2/workflow/"+p+"/runs", q)
}

// FindRunOptions bound a [WorkflowsService.FindRunByCorrelationToken]
// lookup. A busy workflow creates hundreds of runs a minute, so a fixed
// number of newest runs is not enough to find a submission: bound the
// lookup by time (Since) and by pages (MaxPages) instead.
type FindRunOptions struct {
	// PageSize is the number of runs per page (default 100).
	PageSize int
	// MaxPages bounds the pages read (default 1).
	MaxPages int
	// Since ends the lookup after the first page that reaches back before
	// it (runs are listed newest first); zero leaves only MaxPages. Allow
	// for clock skew: pass a little before the submission began.
	Since time.Time
	// WithOutputs asks for the runs' outputs too (they are skipped by
	// default; the lookup only needs inputs).
	WithOutputs bool
}

// RunLookup is the outcome of a correlation token lookup and its cost.
type RunLookup struct {
	// Run is the run that carries the token, nil if none was found within
	// the bounds.
	Run *Run
	// Pages is how many pages of GET /workflow/{id}/runs were read, and
	// Runs how many runs they held.
	Pages int
	Runs  int
}

// Found reports whether a run carries the token.
func (l RunLookup) Found() bool { return l.Run != nil }

// FindRunByCorrelationToken looks for the run whose [CorrelationToken]
// equals token among the workflow's runs, newest first, page by page
// within the bounds of opts (nil: the newest 100 runs). This is how to
// find out whether a timed-out or failed queue request created a run
// before sending it again. The lookup is returned with its page count also
// when it fails part way.
func (s *WorkflowsService) FindRunByCorrelationToken(ctx context.Context, workflowID, token string, opts *FindRunOptions) (RunLookup, error) {
	var lookup RunLookup
	if token == "" {
		return lookup, fmt.Errorf("%w: empty correlation token", ErrInvalidArgument)
	}
	var o FindRunOptions
	if opts != nil {
		o = *opts
	}
	if o.PageSize <= 0 {
		o.PageSize = 100
	}
	if o.MaxPages <= 0 {
		o.MaxPages = 1
	}
	withInputs, withOutputs := true, o.WithOutputs
	for page := range o.MaxPages {
		runs, err := s.ListRuns(ctx, workflowID, &WorkflowRunsOptions{
			Limit: o.PageSize, Offset: page * o.PageSize, WithInputs: &withInputs, WithOutputs: &withOutputs,
		})
		if err != nil {
			return lookup, err
		}
		lookup.Pages++
		lookup.Runs += len(runs)
		for i := range runs {
			if CorrelationToken(&runs[i]) == token {
				lookup.Run = &runs[i]
				return lookup, nil
			}
		}
		if len(runs) < o.PageSize {
			return lookup, nil // the workflow has no older runs
		}
		oldest := runs[len(runs)-1].CreatedAt.Time
		if !o.Since.IsZero() && !oldest.IsZero() && oldest.Before(o.Since) {
			return lookup, nil // older runs were created before the submission
		}
	}
	return lookup, nil
}
