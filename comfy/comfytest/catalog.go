package comfytest

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ---- deployments -----------------------------------------------------------------------

func (s *Server) deploymentJSONLocked(d *deployment) map[string]any {
	v := s.versions[d.VersionID]
	var inputs, outputs []any
	if v != nil && v.pipe != nil {
		inputs, outputs = v.pipe.inputTypes(), v.pipe.outputTypes()
	}
	var wf any
	if w := s.workflows[d.WorkflowID]; w != nil {
		wf = map[string]any{"id": w.ID, "name": w.Name}
	}
	return map[string]any{
		"id": d.ID, "user_id": SeedUserID, "org_id": SeedOrgID, "workflow_version_id": d.VersionID, "workflow_id": d.WorkflowID,
		"machine_id": d.MachineID, "machine_version_id": nullable(d.MachineVersionID), "share_slug": nil, "description": d.Description,
		"share_options": nil, "showcase_media": nil, "environment": d.Environment,
		"created_at": ormTime(d.Created), "updated_at": ormTime(d.Updated), "activated_at": timeOrNil(d.Activated, ormTime),
		"gpu": nullable(d.GPU), "concurrency_limit": d.ConcurrencyLimit, "run_timeout": int(math.Ceil(d.RunTimeout.Seconds())),
		"idle_timeout": d.IdleTimeout, "keep_warm": d.KeepWarm, "modal_app_id": nil, "modal_image_id": nil,
		"input_types": inputs, "output_types": outputs, "workflow": wf,
	}
}

func (s *Server) handleListDeployments(w http.ResponseWriter, r *http.Request) {
	env := r.URL.Query().Get("environment")
	limit, ok := queryInt(w, r, "page_size", -1)
	if !ok {
		return
	}
	offset, ok := queryInt(w, r, "offset", 0)
	if !ok {
		return
	}
	s.mu.Lock()
	var list []any
	for _, id := range s.deploymentOrder {
		d := s.deployments[id]
		if env == "" || d.Environment == env {
			list = append(list, s.deploymentJSONLocked(d))
		}
	}
	s.mu.Unlock()
	if list == nil {
		list = []any{}
	}
	writeJSON(w, http.StatusOK, page(list, offset, limit))
}

func (s *Server) handleGetDeployment(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	d := s.deployments[r.PathValue("deployment_id")]
	if d == nil {
		s.mu.Unlock()
		// Quirk: the catch-all turns "not found" into a 500.
		writeDetail(w, http.StatusInternalServerError, "Internal server error")
		return
	}
	body := s.deploymentJSONLocked(d)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) handlePatchDeployment(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err := json.Unmarshal(raw, &body); err != nil {
		write422(w, []validationError{{Type: "json_invalid", Loc: []any{"body", 0}, Msg: "JSON decode error", Input: map[string]any{}}})
		return
	}
	ints := map[string]int{}
	var errs []validationError
	for _, k := range []string{"concurrency_limit", "run_timeout", "idle_timeout", "keep_warm"} {
		if v, ok := body[k]; ok && v != nil {
			f, isNum := v.(float64)
			if !isNum || f != math.Trunc(f) {
				errs = append(errs, validationError{Type: "int_type", Loc: []any{"body", k}, Msg: "Input should be a valid integer", Input: v})
				continue
			}
			ints[k] = int(f)
		}
	}
	if g, ok := body["gpu"].(string); ok && !slices.Contains(gpuEnum, g) {
		errs = append(errs, validationError{Type: "enum", Loc: []any{"body", "gpu"}, Msg: "Input should be 'CPU', 'T4', 'L4', 'A10G', 'L40S', 'A100', 'A100-80GB', 'H100', 'H200' or 'B200'", Input: g})
	}
	if len(errs) > 0 {
		write422(w, errs)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.deployments[r.PathValue("deployment_id")]
	if d == nil {
		writeDetail(w, http.StatusNotFound, "Deployment not found")
		return
	}
	if v, ok := body["workflow_version_id"].(string); ok {
		wv := s.versions[v]
		if wv == nil {
			writeDetail(w, http.StatusNotFound, "Workflow version not found")
			return
		}
		d.VersionID, d.WorkflowID = wv.ID, wv.WorkflowID
	}
	if v, ok := body["machine_id"].(string); ok {
		m := s.machines[v]
		if m == nil {
			writeDetail(w, http.StatusNotFound, "Machine not found")
			return
		}
		d.MachineID, d.MachineVersionID = m.ID, m.VersionID
	}
	if v, ok := body["machine_version_id"].(string); ok {
		d.MachineVersionID = v
	}
	if g, ok := body["gpu"].(string); ok {
		d.GPU = g
	}
	if n, ok := ints["concurrency_limit"]; ok && n > 0 {
		d.ConcurrencyLimit = n
	}
	if n, ok := ints["run_timeout"]; ok && n > 0 {
		d.RunTimeout = time.Duration(n) * time.Second
	}
	if n, ok := ints["idle_timeout"]; ok {
		d.IdleTimeout = n
	}
	if n, ok := ints["keep_warm"]; ok {
		d.KeepWarm = n
	}
	d.Updated = time.Now()
	s.pumpLocked(d.ID)
	writeJSON(w, http.StatusOK, s.deploymentJSONLocked(d))
}

var shareEnvironments = []string{"public-share", "private-share", "community-share"}

// handleCreateDeployment serves POST /deployment (reference §2.3). With a
// deployment_id of an existing deployment it updates that one instead.
func (s *Server) handleCreateDeployment(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeBody(w, r, "workflow_version_id", "workflow_id", "environment")
	if !ok {
		return
	}
	env := str(body, "environment")
	if !slices.Contains([]string{"staging", "production", "public-share", "private-share", "community-share", "preview"}, env) {
		write422(w, []validationError{{Type: "enum", Loc: []any{"body", "environment"},
			Msg: "Input should be 'staging', 'production', 'public-share', 'private-share', 'community-share' or 'preview'", Input: env}})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.versions[str(body, "workflow_version_id")]
	if v == nil || v.WorkflowID != str(body, "workflow_id") {
		writeDetail(w, http.StatusNotFound, "Workflow version not found")
		return
	}
	machineID := str(body, "machine_id")
	if machineID == "" {
		machineID = v.MachineID
	}
	if machineID == "" {
		machineID = s.workflows[v.WorkflowID].SelectedMachineID
	}
	m := s.machines[machineID]
	if m == nil {
		writeDetail(w, http.StatusNotFound, "Machine not found")
		return
	}
	now := time.Now()
	d := s.deployments[str(body, "deployment_id")]
	if d == nil {
		d = &deployment{ID: newUUID(), ConcurrencyLimit: 2, RunTimeout: 300 * time.Second, IdleTimeout: 60, Created: now}
		s.deployments[d.ID] = d
		s.deploymentOrder = append(s.deploymentOrder, d.ID)
	}
	d.Environment, d.WorkflowID, d.VersionID = env, v.WorkflowID, v.ID
	d.MachineID, d.MachineVersionID, d.GPU = m.ID, m.VersionID, m.GPU
	if mv := str(body, "machine_version_id"); mv != "" {
		d.MachineVersionID = mv
	}
	if desc := str(body, "description"); desc != "" {
		d.Description = desc
	}
	d.Updated, d.Activated = now, now
	writeJSON(w, http.StatusOK, s.deploymentJSONLocked(d))
}

// handleDeactivateDeployment serves POST /deployment/{id}/deactivate. The
// service refuses while the deployment still has runs that are not terminal.
func (s *Server) handleDeactivateDeployment(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.deployments[r.PathValue("deployment_id")]
	if d == nil {
		writeDetail(w, http.StatusNotFound, "Deployment not found")
		return
	}
	for _, rn := range s.runList {
		if rn.DeploymentID == d.ID && !isTerminal(rn.Status) {
			writeDetail(w, http.StatusBadRequest, "Cannot deactivate deployment with active runs")
			return
		}
	}
	d.Activated, d.Updated = time.Time{}, time.Now()
	writeJSON(w, http.StatusOK, s.deploymentJSONLocked(d))
}

// handleDeleteDeployment serves DELETE /deployment/{id}. Only share
// environments can be deleted. The handler's catch-all turns every error it
// raises, including "not found", into a bare 500 (reference §1).
func (s *Server) handleDeleteDeployment(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.deployments[r.PathValue("deployment_id")]
	if d == nil || !slices.Contains(shareEnvironments, d.Environment) {
		writeDetail(w, http.StatusInternalServerError, "Internal server error")
		return
	}
	delete(s.deployments, d.ID)
	s.deploymentOrder = slices.DeleteFunc(s.deploymentOrder, func(id string) bool { return id == d.ID })
	writeJSON(w, http.StatusOK, map[string]any{"message": "Deployment deleted successfully"})
}

// ---- machines (raw SQL routes: zone-less isoformat timestamps) ---------------------------

func (s *Server) machineJSONLocked(m *machine, full, steps bool) map[string]any {
	hasWorkflows := false
	for _, id := range s.workflowOrder {
		if s.workflows[id].SelectedMachineID == m.ID {
			hasWorkflows = true
		}
	}
	out := map[string]any{
		"id": m.ID, "user_id": SeedUserID, "name": m.Name, "created_at": rawSQLTime(m.Created), "updated_at": rawSQLTime(m.Updated),
		"type": m.Type, "org_id": SeedOrgID, "status": m.Status, "gpu": nullable(m.GPU), "machine_version": nullable(strconv.Itoa(m.Version)),
		"machine_builder_version": m.BuilderVersion, "comfyui_version": m.ComfyUIVersion, "import_failed_logs": nullable(m.ImportFailedLogs),
		"machine_version_id": nullable(m.VersionID), "is_workspace": false, "has_workflows": hasWorkflows,
	}
	if m.Version == 0 {
		out["machine_version"] = nil
	}
	var dsteps any
	if m.Steps != nil {
		dsteps = map[string]any{"steps": m.Steps}
	}
	if steps || full {
		out["docker_command_steps"] = dsteps
	}
	if full {
		for k, v := range map[string]any{
			"endpoint": nullable(m.Endpoint), "concurrency_limit": m.ConcurrencyLimit, "run_timeout": m.RunTimeout,
			"idle_timeout": m.IdleTimeout, "keep_warm": m.KeepWarm, "allow_concurrent_inputs": 1,
			"base_docker_image": nil, "python_version": "3.11", "extra_args": nil, "prestart_command": nil,
			"install_custom_node_with_gpu": false, "optimized_runner": true, "disable_metadata": true,
			"cpu_request": nil, "cpu_limit": nil, "memory_request": nil, "memory_limit": nil, "models_to_cache": []any{},
			"enable_gpu_memory_snapshot": false, "deleted": false,
		} {
			out[k] = v
		}
	}
	return out
}

func (s *Server) handleListMachines(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, ok := queryInt(w, r, "limit", 100)
	if !ok {
		return
	}
	offset, ok := queryInt(w, r, "offset", 0)
	if !ok {
		return
	}
	flags := map[string]bool{}
	for _, k := range []string{"is_deleted", "is_docker", "is_self_hosted", "is_workspace", "include_docker_command_steps", "include_has_workflows"} {
		v, ok := queryBool(w, r, k, false)
		if !ok {
			return
		}
		flags[k] = v
	}
	search := strings.ToLower(q.Get("search"))
	s.mu.Lock()
	list := []any{}
	for _, id := range s.machineOrder {
		m := s.machines[id]
		switch {
		case flags["is_deleted"], flags["is_workspace"]:
			continue
		case flags["is_docker"] && m.Type != "comfy-deploy-serverless":
			continue
		case flags["is_self_hosted"] && m.Type != "classic" && m.Type != "runpod-serverless":
			continue
		case search != "" && !strings.Contains(strings.ToLower(m.Name), search):
			continue
		}
		list = append(list, s.machineJSONLocked(m, false, flags["include_docker_command_steps"]))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, page(list, offset, limit))
}

func (s *Server) machineOr404(w http.ResponseWriter, id string) *machine {
	m := s.machines[id]
	if m == nil {
		s.mu.Unlock()
		writeDetail(w, http.StatusNotFound, "Machine not found")
	}
	return m
}

func (s *Server) handleGetMachine(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	m := s.machineOr404(w, r.PathValue("machine_id"))
	if m == nil {
		return
	}
	body := s.machineJSONLocked(m, true, true)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) handleCheckCustomNodes(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	m := s.machineOr404(w, r.PathValue("machine_id"))
	if m == nil {
		return
	}
	local := m.LocalCommit
	s.mu.Unlock()
	if local == "" {
		writeDetail(w, http.StatusBadRequest, "ComfyUI Deploy custom node not found in machine's docker steps")
		return
	}
	commit := func(hash, msg string, at time.Time) map[string]any {
		return map[string]any{"hash": hash, "message": msg, "date": at.UTC().Format(time.RFC3339)}
	}
	latest := commit(comfyDeployLatestCommit, "fix: wait for pending uploads before reporting success", seedTime.AddDate(0, 10, 6))
	localC := latest
	if local != comfyDeployLatestCommit {
		localC = commit(local, "feat: stream live_status over websocket", seedTime.AddDate(0, 2, 1))
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "local_commit": localC, "latest_commit": latest,
		"is_up_to_date": local == comfyDeployLatestCommit})
}

func (s *Server) handleMachineEvents(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	m := s.machineOr404(w, r.PathValue("machine_id"))
	if m == nil {
		return
	}
	events := []any{}
	cutoff := time.Now().Add(-24 * time.Hour)
	for _, rn := range s.runsNewestFirstLocked(func(rn *run) bool { return rn.MachineID == m.ID && rn.GPUEventID != "" }) {
		if rn.Queued.Before(cutoff) {
			continue
		}
		var cost any
		if !rn.Ended.IsZero() {
			cost = pyFloat(math.Round(rn.Ended.Sub(rn.Queued).Seconds()*0.000306*1e6) / 1e6)
		}
		events = append(events, map[string]any{
			"id": rn.GPUEventID, "user_id": rn.UserID, "org_id": rn.OrgID, "machine_id": m.ID,
			"start_time": rawSQLTime(rn.Queued), "end_time": timeOrNil(rn.Ended, rawSQLTime), "gpu": rn.GPU, "ws_gpu": nil,
			"gpu_provider": "modal", "created_at": rawSQLTime(rn.Queued), "updated_at": rawSQLTime(rn.Updated),
			"session_timeout": nil, "session_id": nil, "modal_function_id": nullable(rn.FnCallID), "tunnel_url": nil,
			"cost_item_title": nil, "cost": cost, "environment": "production",
		})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, events)
}

func machineVersionJSON(v *machineVersion) map[string]any {
	return map[string]any{"id": v.ID, "machine_id": v.MachineID, "version": v.Version, "user_id": SeedUserID,
		"created_at": rawSQLTime(v.Created), "updated_at": rawSQLTime(v.Updated), "comfyui_version": v.ComfyUI,
		"gpu": v.GPU, "status": v.Status, "org_id": SeedOrgID}
}

func (s *Server) handleMachineVersions(w http.ResponseWriter, r *http.Request) {
	limit, ok := queryInt(w, r, "limit", -1)
	if !ok {
		return
	}
	offset, ok := queryInt(w, r, "offset", 0)
	if !ok {
		return
	}
	s.mu.Lock()
	m := s.machineOr404(w, r.PathValue("machine_id"))
	if m == nil {
		return
	}
	list := []any{}
	vs := s.machineVersions[m.ID]
	for i := len(vs) - 1; i >= 0; i-- {
		list = append(list, machineVersionJSON(vs[i]))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, page(list, offset, limit))
}

func (s *Server) handleMachineVersion(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.machineVersions[r.PathValue("machine_id")] {
		if v.ID == r.PathValue("version_id") {
			writeJSON(w, http.StatusOK, machineVersionJSON(v))
			return
		}
	}
	writeDetail(w, http.StatusNotFound, "Machine version not found")
}

// ---- workflows --------------------------------------------------------------------------

func workflowJSON(wf *workflow) map[string]any {
	return map[string]any{"id": wf.ID, "user_id": SeedUserID, "org_id": SeedOrgID, "name": wf.Name,
		"selected_machine_id": nullable(wf.SelectedMachineID), "created_at": ormTime(wf.Created), "updated_at": ormTime(wf.Updated),
		"pinned": false, "deleted": false, "description": wf.Description, "cover_image": nil}
}

func versionJSON(v *workflowVersion, tf func(time.Time) string) map[string]any {
	return map[string]any{"id": v.ID, "workflow_id": v.WorkflowID, "workflow": v.Workflow, "workflow_api": v.WorkflowAPI,
		"user_id": SeedUserID, "comment": v.Comment, "version": v.Version, "snapshot": v.Snapshot, "dependencies": v.Dependencies,
		"created_at": tf(v.Created), "updated_at": tf(v.Updated), "machine_id": nullable(v.MachineID),
		"machine_version_id": nullable(v.MachineVersionID), "comfyui_snapshot": nil}
}

func (s *Server) handleListWorkflows(w http.ResponseWriter, r *http.Request) {
	limit, ok := queryInt(w, r, "limit", -1)
	if !ok {
		return
	}
	offset, ok := queryInt(w, r, "offset", 0)
	if !ok {
		return
	}
	search := strings.ToLower(r.URL.Query().Get("search"))
	machineID := r.URL.Query().Get("machine_id")
	s.mu.Lock()
	list := []any{}
	for i := len(s.workflowOrder) - 1; i >= 0; i-- { // most recently updated first
		wf := s.workflows[s.workflowOrder[i]]
		if search != "" && !strings.Contains(strings.ToLower(wf.Name), search) {
			continue
		}
		if machineID != "" && wf.SelectedMachineID != machineID {
			continue
		}
		list = append(list, workflowJSON(wf))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, page(list, offset, limit))
}

func (s *Server) workflowOr404(w http.ResponseWriter, id string) *workflow {
	wf := s.workflows[id]
	if wf == nil {
		s.mu.Unlock()
		writeDetail(w, http.StatusNotFound, "Workflow not found")
	}
	return wf
}

func (s *Server) newestVersionsLocked(workflowID string) []*workflowVersion {
	vs := slices.Clone(s.versionsByWorkflow[workflowID])
	slices.Reverse(vs)
	return vs
}

func (s *Server) handleGetWorkflow(w http.ResponseWriter, r *http.Request) {
	limit, ok := queryInt(w, r, "limit", 1)
	if !ok {
		return
	}
	s.mu.Lock()
	wf := s.workflowOr404(w, r.PathValue("workflow_id"))
	if wf == nil {
		return
	}
	body := workflowJSON(wf)
	versions := []any{}
	for _, v := range page(s.newestVersionsLocked(wf.ID), 0, limit) {
		versions = append(versions, versionJSON(v, ormTime))
	}
	body["versions"] = versions
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) handleWorkflowVersions(w http.ResponseWriter, r *http.Request) {
	limit, ok := queryInt(w, r, "limit", -1)
	if !ok {
		return
	}
	offset, ok := queryInt(w, r, "offset", 0)
	if !ok {
		return
	}
	search := strings.ToLower(r.URL.Query().Get("search"))
	s.mu.Lock()
	wf := s.workflowOr404(w, r.PathValue("workflow_id"))
	if wf == nil {
		return
	}
	list := []any{}
	for _, v := range s.newestVersionsLocked(wf.ID) {
		if search != "" && !strings.Contains(strings.ToLower(v.Comment), search) {
			continue
		}
		j := versionJSON(v, ormTime)
		j["user_icon"] = nil
		list = append(list, j)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, page(list, offset, limit))
}

func (s *Server) handleWorkflowVersionByNumber(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.PathValue("version"))
	if err != nil {
		write422(w, []validationError{{Type: "int_parsing", Loc: []any{"path", "version"},
			Msg: "Input should be a valid integer, unable to parse string as an integer", Input: r.PathValue("version")}})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.versionsByWorkflow[r.PathValue("workflow_id")] {
		if v.Version == n {
			writeJSON(w, http.StatusOK, versionJSON(v, pydanticTime))
			return
		}
	}
	writeDetail(w, http.StatusNotFound, "Workflow version not found")
}

func (s *Server) handleWorkflowVersionByID(w http.ResponseWriter, r *http.Request) {
	if uuid422(w, "path", "version", r.PathValue("version_id")) {
		return
	}
	id, _ := parseUUID(r.PathValue("version_id"))
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.versions[id]
	if v == nil {
		writeDetail(w, http.StatusNotFound, "Workflow version not found")
		return
	}
	writeJSON(w, http.StatusOK, versionJSON(v, pydanticTime))
}

func (s *Server) handleCreateWorkflowVersion(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 32<<20))
	if err := json.Unmarshal(raw, &body); err != nil {
		write422(w, []validationError{{Type: "json_invalid", Loc: []any{"body", 0}, Msg: "JSON decode error", Input: map[string]any{}}})
		return
	}
	var errs []validationError
	for _, k := range []string{"workflow", "workflow_api"} {
		if _, ok := body[k].(map[string]any); !ok {
			if body[k] == nil {
				errs = append(errs, validationError{Type: "missing", Loc: []any{"body", k}, Msg: "Field required", Input: body})
			} else {
				errs = append(errs, validationError{Type: "dict_type", Loc: []any{"body", k}, Msg: "Input should be a valid dictionary", Input: body[k]})
			}
		}
	}
	if len(errs) > 0 {
		write422(w, errs)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	wf := s.workflows[r.PathValue("workflow_id")]
	if wf == nil {
		writeDetail(w, http.StatusNotFound, "Workflow not found")
		return
	}
	prev := s.versionsByWorkflow[wf.ID]
	now := time.Now()
	v := &workflowVersion{ID: newUUID(), WorkflowID: wf.ID, Version: len(prev) + 1, Workflow: body["workflow"].(map[string]any),
		WorkflowAPI: body["workflow_api"].(map[string]any), Created: now, Updated: now}
	v.Comment, _ = body["comment"].(string)
	v.MachineID, _ = body["machine_id"].(string)
	v.MachineVersionID, _ = body["machine_version_id"].(string)
	if len(prev) > 0 {
		last := prev[len(prev)-1]
		v.pipe, v.Dependencies, v.Snapshot = last.pipe, last.Dependencies, last.Snapshot
	} else {
		v.pipe = txt2imgPipeline()
	}
	s.versions[v.ID] = v
	s.versionsByWorkflow[wf.ID] = append(prev, v)
	wf.Updated = now
	if m := s.machines[v.MachineID]; m != nil {
		// Creating a version with a machine auto-creates a preview deployment.
		d := &deployment{ID: newUUID(), Description: wf.Name + " (preview v" + strconv.Itoa(v.Version) + ")", Environment: "preview",
			WorkflowID: wf.ID, VersionID: v.ID, MachineID: m.ID, MachineVersionID: m.VersionID, GPU: m.GPU,
			ConcurrencyLimit: 2, RunTimeout: 300 * time.Second, IdleTimeout: 60, Created: now, Updated: now, Activated: now}
		s.deployments[d.ID] = d
		s.deploymentOrder = append(s.deploymentOrder, d.ID)
	}
	writeJSON(w, http.StatusOK, versionJSON(v, ormTime))
}

// handleCreateWorkflow serves POST /workflow: a workflow with its first
// version. The graphs arrive as JSON text. Failures of this handler use the
// {"error": "..."} shape rather than {"detail": ...} (reference §1).
func (s *Server) handleCreateWorkflow(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeBody(w, r, "name", "workflow_json")
	if !ok {
		return
	}
	graph := func(k string) (map[string]any, bool) {
		var m map[string]any
		if str(body, k) == "" {
			return nil, true
		}
		return m, json.Unmarshal([]byte(str(body, k)), &m) == nil
	}
	ui, ok1 := graph("workflow_json")
	api, ok2 := graph("workflow_api")
	if !ok1 || !ok2 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "workflow_json and workflow_api must be JSON objects"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	machineID := str(body, "machine_id")
	if machineID != "" && s.machines[machineID] == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "Machine not found"})
		return
	}
	now := time.Now()
	wf := &workflow{ID: newUUID(), Name: str(body, "name"), SelectedMachineID: machineID, Created: now, Updated: now}
	v := &workflowVersion{ID: newUUID(), WorkflowID: wf.ID, Version: 1, Workflow: ui, WorkflowAPI: api,
		MachineID: machineID, MachineVersionID: str(body, "machine_version_id"), Created: now, Updated: now, pipe: txt2imgPipeline()}
	s.workflows[wf.ID] = wf
	s.workflowOrder = append(s.workflowOrder, wf.ID)
	s.versions[v.ID] = v
	s.versionsByWorkflow[wf.ID] = []*workflowVersion{v}
	writeJSON(w, http.StatusOK, workflowJSON(wf))
}
