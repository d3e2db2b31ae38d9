package comfytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Run statuses (reference §3.1).
const (
	statusNotStarted = "not-started"
	statusQueued     = "queued"
	statusStarted    = "started"
	statusRunning    = "running"
	statusSuccess    = "success"
	statusFailed     = "failed"
	statusTimeout    = "timeout"
	statusCancelled  = "cancelled"
)

func isTerminal(status string) bool {
	switch status {
	case statusSuccess, statusFailed, statusTimeout, statusCancelled:
		return true
	}
	return false
}

// Per-run fates decided at creation.
const (
	fateSuccess = "success"
	fateFail    = "fail"
	fateTimeout = "timeout"
	fateNever   = "never"
)

var gpuEnum = []string{"CPU", "T4", "L4", "A10G", "L40S", "A100", "A100-80GB", "H100", "H200", "B200"}

type run struct {
	ID, WorkflowID, VersionID, MachineID, DeploymentID string
	UserID, OrgID                                      string
	MachineType, GPU, MachineVersion                   string
	FnCallID, GPUEventID                               string
	Inputs                                             map[string]any
	Webhook                                            string
	Intermediate                                       bool
	Token                                              string
	Mode                                               string
	baseURL                                            string // origin for URLs in webhooks

	pipe       *pipeline
	eff        map[string]any
	missing    []string
	timing     Timing
	runTimeout time.Duration
	fate       string
	broken     string // status of a machine that cannot serve the run

	Status, LiveStatus                       string
	Progress                                 float64
	Created, Queued, Started, Ended, Updated time.Time
	outputs                                  []*output
	logs                                     []logLine
	subs                                     map[chan runEvent]struct{}
	preSub                                   chan runEvent // stream mode: subscribed at creation

	slotKey    string
	holdsSlot  bool
	admittedAt time.Time
	admitted   chan struct{} // closed when a concurrency slot is granted
	done       chan struct{} // closed when the run reaches a terminal status
}

type logLine struct {
	Message, Level string
	Time           time.Time
}

// runEvent is what a run publishes to its stream subscribers.
type runEvent struct {
	Kind       string // status | progress | output | log
	Status     string
	LiveStatus string
	Progress   float64
	Node       int
	Output     *output
	Log        logLine
}

type slotQueue struct {
	active  int
	waiting []*run
}

// ---- creation ---------------------------------------------------------------------

type runRequest struct {
	kind                     string // deployment | workflow
	mode                     string // queue | sync | stream (+ sync_first_result via execution_mode)
	deploymentID, workflowID string
	machineID                string
	inputs                   map[string]any
	webhook                  string
	intermediate             bool
	gpu                      string
}

// parseRunRequest validates a run-creation body like FastAPI/Pydantic would.
func parseRunRequest(body []byte, kind, mode string) (*runRequest, []validationError) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, []validationError{{Type: "json_invalid", Loc: []any{"body", 0}, Msg: "JSON decode error", Input: map[string]any{}}}
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, []validationError{{Type: "model_attributes_type", Loc: []any{"body"},
			Msg: "Input should be a valid dictionary or object to extract fields from", Input: raw}}
	}
	if kind == "legacy" {
		kind = "deployment"
		if _, ok := obj["deployment_id"]; !ok {
			if _, ok := obj["workflow_api_json"]; ok {
				kind = "workflow"
			}
		}
	}
	req := &runRequest{kind: kind, mode: mode, inputs: map[string]any{}}
	var errs []validationError
	uuidField := func(name string, required bool) string {
		v, ok := obj[name]
		if !ok || v == nil {
			if required {
				errs = append(errs, validationError{Type: "missing", Loc: []any{"body", name}, Msg: "Field required", Input: obj})
			}
			return ""
		}
		s, isStr := v.(string)
		if !isStr {
			errs = append(errs, validationError{Type: "uuid_type", Loc: []any{"body", name}, Msg: "UUID input should be a string, bytes or UUID object", Input: v})
			return ""
		}
		id, msg := parseUUID(s)
		if msg != "" {
			errs = append(errs, validationError{Type: "uuid_parsing", Loc: []any{"body", name}, Msg: msg, Input: s})
		}
		return id
	}
	if kind == "deployment" {
		req.deploymentID = uuidField("deployment_id", true)
	} else {
		req.workflowID = uuidField("workflow_id", true)
		req.machineID = uuidField("machine_id", false)
		switch v := obj["workflow_api_json"].(type) {
		case map[string]any:
		case nil:
			errs = append(errs, validationError{Type: "missing", Loc: []any{"body", "workflow_api_json"}, Msg: "Field required", Input: obj})
		default:
			errs = append(errs, validationError{Type: "dict_type", Loc: []any{"body", "workflow_api_json"}, Msg: "Input should be a valid dictionary", Input: v})
		}
	}
	switch v := obj["inputs"].(type) {
	case nil:
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch v[k].(type) {
			case string, json.Number, bool, []any:
			default:
				loc := func(t string) []any { return []any{"body", "inputs", k, t} }
				errs = append(errs,
					validationError{Type: "string_type", Loc: loc("str"), Msg: "Input should be a valid string", Input: v[k]},
					validationError{Type: "int_type", Loc: loc("int"), Msg: "Input should be a valid integer", Input: v[k]},
					validationError{Type: "float_type", Loc: loc("float"), Msg: "Input should be a valid number", Input: v[k]},
					validationError{Type: "bool_type", Loc: loc("bool"), Msg: "Input should be a valid boolean", Input: v[k]},
					validationError{Type: "list_type", Loc: loc("list[any]"), Msg: "Input should be a valid list", Input: v[k]})
			}
		}
		req.inputs = v
	default:
		errs = append(errs, validationError{Type: "dict_type", Loc: []any{"body", "inputs"}, Msg: "Input should be a valid dictionary", Input: v})
	}
	switch v := obj["webhook"].(type) {
	case nil:
	case string:
		req.webhook = v
	default:
		errs = append(errs, validationError{Type: "string_type", Loc: []any{"body", "webhook"}, Msg: "Input should be a valid string", Input: v})
	}
	switch v := obj["webhook_intermediate_status"].(type) {
	case nil:
	case bool:
		req.intermediate = v
	default:
		errs = append(errs, validationError{Type: "bool_parsing", Loc: []any{"body", "webhook_intermediate_status"},
			Msg: "Input should be a valid boolean, unable to interpret input", Input: v})
	}
	switch v := obj["gpu"].(type) {
	case nil:
	case string:
		if !slices.Contains(gpuEnum, v) {
			errs = append(errs, validationError{Type: "enum", Loc: []any{"body", "gpu"},
				Msg: "Input should be 'CPU', 'T4', 'L4', 'A10G', 'L40S', 'A100', 'A100-80GB', 'H100', 'H200' or 'B200'", Input: v})
		}
		req.gpu = v
	default:
		errs = append(errs, validationError{Type: "enum", Loc: []any{"body", "gpu"}, Msg: "Input should be 'CPU', 'T4', 'L4', 'A10G', 'L40S', 'A100', 'A100-80GB', 'H100', 'H200' or 'B200'", Input: v})
	}
	if v, ok := obj["flags"]; ok && v != nil {
		if _, ok := v.([]any); !ok {
			errs = append(errs, validationError{Type: "list_type", Loc: []any{"body", "flags"}, Msg: "Input should be a valid list", Input: v})
		}
	}
	if v, ok := obj["execution_mode"].(string); ok && v == "sync_first_result" && mode == "sync" {
		req.mode = "sync_first_result"
	}
	return req, errs
}

func (s *Server) createRunHandler(kind, mode string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
		if err != nil {
			writeDetail(w, http.StatusBadRequest, "Could not read request body")
			return
		}
		req, errs := parseRunRequest(body, kind, mode)
		if len(errs) > 0 {
			write422(w, errs)
			return
		}
		rn, status, detail := s.createRun(req, caller(r), s.origin(r))
		if status != 0 {
			writeDetail(w, status, detail)
			return
		}
		if rn.preSub != nil {
			defer func() {
				s.mu.Lock()
				delete(rn.subs, rn.preSub)
				s.mu.Unlock()
			}()
		}
		// Ambiguous submit: the run exists, but the client never learns its id.
		f := s.Faults()
		if s.chance(f.AmbiguousSubmitRate) {
			if f.AmbiguousDelay <= 0 {
				s.logf("fault: ambiguous submit, dropping response for run %s", rn.ID)
				w.(*recorder).drop()
				return
			}
			s.logf("fault: ambiguous submit, delaying response for run %s by %s", rn.ID, f.AmbiguousDelay)
			select {
			case <-time.After(f.AmbiguousDelay):
			case <-r.Context().Done():
				w.(*recorder).dropped = true
				return
			case <-s.ctx.Done():
				return
			}
		}
		switch req.mode {
		case "stream":
			s.streamRun(w, r, rn)
		case "sync", "sync_first_result":
			s.syncRun(w, r, rn, req.mode)
		default:
			writeJSON(w, http.StatusOK, map[string]any{"run_id": rn.ID})
		}
	}
}

// createRun applies the service's checks in order and inserts the run.
// On failure it returns an HTTP status and detail.
func (s *Server) createRun(req *runRequest, p principal, origin string) (*run, int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, http.StatusServiceUnavailable, "Service Unavailable"
	}
	var (
		m          *machine
		v          *workflowVersion
		deployID   string
		gpu        = req.gpu
		timing     = s.opts.Timing
		runTimeout = 300 * time.Second
		slotKey    string
		pipe       *pipeline
		workflowID string
	)
	if req.kind == "deployment" {
		d := s.deployments[req.deploymentID]
		if d == nil {
			return nil, http.StatusNotFound, "Deployment not found"
		}
		if v = s.versions[d.VersionID]; v == nil {
			return nil, http.StatusNotFound, "Workflow version not found for this deployment"
		}
		if s.workflows[d.WorkflowID] == nil {
			return nil, http.StatusNotFound, "Workflow not found"
		}
		if m = s.machines[d.MachineID]; m == nil {
			return nil, http.StatusNotFound, "Machine not found for this deployment"
		}
		deployID, workflowID, pipe, slotKey, runTimeout = d.ID, d.WorkflowID, v.pipe, d.ID, d.RunTimeout
		if d.GPU != "" {
			gpu = d.GPU
		}
		if d.timing != nil {
			if d.timing.ColdStart > 0 {
				timing.ColdStart = d.timing.ColdStart
			}
			if d.timing.Run > 0 {
				timing.Run = d.timing.Run
			}
		}
	} else {
		wf := s.workflows[req.workflowID]
		if wf == nil {
			return nil, http.StatusNotFound, "Workflow not found"
		}
		machineID := req.machineID
		if machineID == "" {
			machineID = wf.SelectedMachineID
		}
		if m = s.machines[machineID]; m == nil {
			return nil, http.StatusNotFound, "Machine not found"
		}
		if vs := s.versionsByWorkflow[wf.ID]; len(vs) > 0 {
			v = vs[len(vs)-1]
			pipe = v.pipe
		}
		if pipe == nil {
			pipe = txt2imgPipeline()
		}
		workflowID, slotKey = wf.ID, "machine:"+m.ID
		runTimeout = time.Duration(m.RunTimeout) * time.Second
	}
	if gpu == "" {
		gpu = m.GPU
	}
	if !p.credits {
		return nil, http.StatusForbidden, "Insufficient your GPU credits to create run"
	}
	if req.mode != "queue" && m.Type != "comfy-deploy-serverless" {
		return nil, http.StatusBadRequest, fmt.Sprintf("Execution mode %q is only supported on comfy-deploy-serverless machines, this machine is %q", req.mode, m.Type)
	}

	now := time.Now()
	rn := &run{
		ID: newUUID(), WorkflowID: workflowID, MachineID: m.ID, DeploymentID: deployID,
		UserID: p.userID, OrgID: p.orgID, MachineType: m.Type, GPU: gpu, MachineVersion: m.VersionID,
		Inputs: req.inputs, Webhook: req.webhook, Intermediate: req.intermediate, Mode: req.mode,
		baseURL: origin, pipe: pipe, timing: timing, runTimeout: runTimeout, slotKey: slotKey,
		Status: statusNotStarted, Created: now, Updated: now, fate: fateSuccess,
		subs: map[chan runEvent]struct{}{}, admitted: make(chan struct{}), done: make(chan struct{}),
	}
	if v != nil {
		rn.VersionID = v.ID
	}
	if req.mode == "stream" {
		rn.preSub = make(chan runEvent, 1024)
		rn.subs[rn.preSub] = struct{}{}
	}
	rn.eff, rn.missing = pipe.effectiveInputs(req.inputs)
	rn.Token = correlationToken(req.inputs, req.webhook)
	s.runs[rn.ID] = rn
	s.runList = append(s.runList, rn)
	s.counters.RunsCreated++
	if rn.Token != "" {
		s.counters.RunsByToken[rn.Token]++
	}
	s.publishProgressLocked(rn, "input", -1, "")
	s.logf("run %s created on %s (%s) token=%q", rn.ID, m.Name, m.Type, rn.Token)

	switch m.Type {
	case "comfy-deploy-serverless", "classic", "runpod-serverless":
	default:
		// The row is committed before dispatch; a failed dispatch marks it
		// failed and sends no webhook.
		rn.Status, rn.Ended, rn.Updated = statusFailed, now, now
		close(rn.done)
		s.appendLogLocked(rn, "error", "Invalid machine type: "+m.Type)
		return nil, http.StatusBadRequest, "Invalid machine type"
	}
	if m.Type == "comfy-deploy-serverless" && req.mode != "stream" {
		rn.FnCallID = modalCallID()
	}
	if m.Status != "ready" && m.Status != "running" {
		rn.broken = m.Status
	}
	f := s.faults
	switch x := s.rng.Float64(); {
	case x < f.RunFailureRate:
		rn.fate = fateFail
	case x < f.RunFailureRate+f.RunTimeoutRate:
		rn.fate = fateTimeout
	case x < f.RunFailureRate+f.RunTimeoutRate+f.NeverFinishRate:
		rn.fate = fateNever
	}
	q := s.slots[slotKey]
	if q == nil {
		q = &slotQueue{}
		s.slots[slotKey] = q
	}
	q.waiting = append(q.waiting, rn)
	s.pumpLocked(slotKey)
	s.wg.Add(1)
	go s.drive(rn)
	return rn, 0, ""
}

func modalCallID() string { return "fc-" + strings.ToUpper(randomHex(13)) }

// correlationToken is inputs["__cid"] (a string) or the cid query parameter
// of the webhook URL.
func correlationToken(inputs map[string]any, webhook string) string {
	if s, ok := inputs["__cid"].(string); ok && s != "" {
		return s
	}
	if u, err := url.Parse(webhook); err == nil && webhook != "" {
		return u.Query().Get("cid")
	}
	return ""
}

// ---- concurrency slots -------------------------------------------------------------------

func (s *Server) limitLocked(key string) int {
	if d := s.deployments[key]; d != nil {
		return max(1, d.ConcurrencyLimit)
	}
	if m := s.machines[strings.TrimPrefix(key, "machine:")]; m != nil {
		return max(1, m.ConcurrencyLimit)
	}
	return 2
}

// pumpLocked admits waiting runs while the slot key is below its limit.
func (s *Server) pumpLocked(key string) {
	q := s.slots[key]
	if q == nil {
		return
	}
	limit := s.limitLocked(key)
	for q.active < limit && len(q.waiting) > 0 {
		rn := q.waiting[0]
		q.waiting = q.waiting[1:]
		if isTerminal(rn.Status) {
			continue
		}
		q.active++
		rn.holdsSlot, rn.admittedAt = true, time.Now()
		close(rn.admitted)
	}
}

func (s *Server) releaseLocked(rn *run) {
	q := s.slots[rn.slotKey]
	if q == nil {
		return
	}
	if rn.holdsSlot {
		rn.holdsSlot = false
		q.active--
	} else {
		q.waiting = slices.DeleteFunc(q.waiting, func(x *run) bool { return x == rn })
	}
	s.pumpLocked(rn.slotKey)
}

// ---- lifecycle -----------------------------------------------------------------------------

// waitUntil sleeps until t. It returns false when the run ended meanwhile
// (cancelled) or the server is closing.
func (s *Server) waitUntil(rn *run, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		select {
		case <-rn.done:
			return false
		case <-s.ctx.Done():
			return false
		default:
			return true
		}
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-rn.done:
		return false
	case <-s.ctx.Done():
		return false
	}
}

// drive walks one run through its lifecycle.
func (s *Server) drive(rn *run) {
	defer s.wg.Done()
	select {
	case <-rn.admitted:
	case <-rn.done:
		return
	case <-s.ctx.Done():
		return
	}
	s.mu.Lock()
	admitted := rn.admittedAt
	s.mu.Unlock()
	t := rn.timing
	serverless := rn.MachineType == "comfy-deploy-serverless"

	s.appendLog(rn, "info", "Requesting a "+rn.GPU+" container")
	if rn.broken != "" {
		if !s.waitUntil(rn, admitted.Add(t.ColdStart)) {
			return
		}
		s.failBroken(rn)
		return
	}
	if serverless {
		if !s.waitUntil(rn, admitted.Add(t.ColdStart/2)) {
			return
		}
		s.mu.Lock()
		rn.GPUEventID = newUUID()
		s.mu.Unlock()
		s.appendLog(rn, "info", "Container started, loading ComfyUI and custom nodes")
		s.setStatus(rn, statusQueued)
		if !s.waitUntil(rn, admitted.Add(t.ColdStart)) {
			return
		}
		s.appendLog(rn, "info", "To see the GUI go to: http://127.0.0.1:8188")
		s.setStatus(rn, statusStarted)
	} else {
		if !s.waitUntil(rn, admitted.Add(t.ColdStart)) {
			return
		}
		s.mu.Lock()
		rn.Started = time.Now()
		s.mu.Unlock()
		s.setStatus(rn, statusRunning)
	}

	s.mu.Lock()
	start := rn.Started
	s.mu.Unlock()
	classes := rn.pipe.nodeClasses()
	n := len(classes)
	nodeStart := rn.pipe.schedule(start, t.Run)
	deadline := start.Add(rn.runTimeout)
	end := start.Add(t.Run)

	if serverless {
		if !s.waitUntil(rn, start.Add(nodeStart[0].Sub(start)/2)) {
			return
		}
		s.setStatus(rn, statusRunning)
	}
	if len(rn.missing) > 0 || rn.pipe.MissingNode != "" {
		s.failPrompt(rn)
		return
	}
	// Render outputs up front (outside the lock); store them when their
	// output node executes.
	rendered := s.render(rn)
	stall := n / 2
	for i, class := range classes {
		at := nodeStart[i]
		if i == stall && rn.fate != fateSuccess && at.Before(deadline) {
			if !s.waitUntil(rn, at) {
				return
			}
			s.setProgress(rn, i, n, class)
			switch rn.fate {
			case fateFail: // execution_error in this node
				s.failExecution(rn, i, class)
			case fateTimeout: // hangs until the run would have finished
				if s.waitUntil(rn, earliest(end, deadline)) {
					s.timeoutRun(rn)
				}
			case fateNever: // hangs; only a cancel or Close ends it
				s.waitUntil(rn, time.Now().Add(1000*time.Hour))
			}
			return
		}
		if at.After(deadline) {
			if s.waitUntil(rn, deadline) {
				s.timeoutRun(rn)
			}
			return
		}
		if !s.waitUntil(rn, at) {
			return
		}
		s.setProgress(rn, i, n, class)
		if o := rendered[i]; o != nil {
			s.addOutput(rn, o)
		}
	}
	if end.After(deadline) {
		if s.waitUntil(rn, deadline) {
			s.timeoutRun(rn)
		}
		return
	}
	if !s.waitUntil(rn, end) {
		return
	}
	s.appendLog(rn, "info", fmt.Sprintf("Prompt executed in %.2f seconds", time.Since(start).Seconds()))
	s.mu.Lock()
	rn.Progress = 1
	s.mu.Unlock()
	s.setStatus(rn, statusSuccess)
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (s *Server) failBroken(rn *run) {
	s.mu.Lock()
	m := s.machines[rn.MachineID]
	logs := ""
	if m != nil {
		logs = m.ImportFailedLogs
	}
	s.mu.Unlock()
	if rn.broken == "building" {
		s.appendLog(rn, "error", "Machine image is still building; no ready image for machine version "+rn.MachineVersion)
	} else {
		if logs != "" {
			s.appendLog(rn, "error", logs)
		}
		s.appendLog(rn, "error", "Container crashed during startup: machine status is "+rn.broken)
	}
	s.setStatus(rn, statusFailed)
}

func (s *Server) failPrompt(rn *run) {
	if rn.pipe.MissingNode != "" {
		s.appendLog(rn, "error", "invalid prompt: Cannot execute because node "+rn.pipe.MissingNode+" does not exist.")
	}
	for _, id := range rn.missing {
		s.appendLog(rn, "error", "Prompt outputs failed validation: Required input is missing: "+id)
	}
	s.setStatus(rn, statusFailed)
}

func (s *Server) failExecution(rn *run, node int, class string) {
	s.appendLog(rn, "error", fmt.Sprintf("!!! Exception during processing !!! Error occurred when executing %s (node %d): "+
		"CUDA out of memory. Tried to allocate 2.50 GiB", class, node+1))
	s.setStatus(rn, statusFailed)
}

func (s *Server) timeoutRun(rn *run) {
	s.appendLog(rn, "error", fmt.Sprintf("Run exceeded run_timeout of %s, interrupting ComfyUI", rn.runTimeout))
	s.setStatus(rn, statusTimeout)
}

// setStatus records a status change and publishes it (log, progress stream,
// run subscribers, webhook). Updates to terminal runs are dropped.
func (s *Server) setStatus(rn *run, status string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setStatusLocked(rn, status)
}

func (s *Server) setStatusLocked(rn *run, status string) bool {
	if isTerminal(rn.Status) {
		return false
	}
	now := time.Now()
	rn.Status, rn.Updated = status, now
	switch status {
	case statusQueued:
		rn.Queued = now
	case statusStarted:
		rn.Started = now
	}
	if isTerminal(status) {
		rn.Ended = now
	}
	s.appendLogLocked(rn, "info", "Run status: "+status)
	if status != statusCancelled {
		// API cancels publish their own status-less event (see handleCancel).
		s.publishProgressLocked(rn, status, rn.Progress, "")
	}
	s.notifyLocked(rn, runEvent{Kind: "status", Status: status, Progress: rn.Progress, LiveStatus: rn.LiveStatus})
	s.webhookLocked(rn, "run.updated", nil, isTerminal(status))
	if isTerminal(status) {
		close(rn.done)
		s.releaseLocked(rn)
		s.logf("run %s %s", rn.ID, status)
	}
	return true
}

func (s *Server) setProgress(rn *run, node, total int, class string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if isTerminal(rn.Status) {
		return
	}
	rn.Progress = round2(float64(node) / float64(total))
	rn.LiveStatus = "Executing " + class
	rn.Updated = time.Now()
	s.appendLogLocked(rn, "info", fmt.Sprintf("Executing node %d (%s)", node+1, class))
	s.notifyLocked(rn, runEvent{Kind: "progress", Progress: rn.Progress, LiveStatus: rn.LiveStatus, Node: node})
	if rn.Intermediate {
		s.webhookLocked(rn, "run.updated", []*output{}, false)
	}
}

func (s *Server) addOutput(rn *run, o *output) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if isTerminal(rn.Status) {
		return
	}
	o.Created = time.Now()
	rn.outputs = append(rn.outputs, o)
	rn.Updated = o.Created
	s.appendLogLocked(rn, "info", "Uploaded output "+o.OutputID)
	s.publishProgressLocked(rn, "output", rn.Progress, o.NodeClass)
	s.notifyLocked(rn, runEvent{Kind: "output", Output: o})
	if wantsOutputEvents(rn.Webhook) {
		s.webhookLocked(rn, "run.output", []*output{o}, false)
	}
}

func (s *Server) appendLog(rn *run, level, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appendLogLocked(rn, level, msg)
}

func (s *Server) appendLogLocked(rn *run, level, msg string) {
	l := logLine{Message: msg, Level: level, Time: time.Now()}
	rn.logs = append(rn.logs, l)
	s.notifyLocked(rn, runEvent{Kind: "log", Log: l})
}

// notifyLocked delivers an event to the run's stream subscribers without
// blocking; a subscriber that falls far behind loses events.
func (s *Server) notifyLocked(rn *run, ev runEvent) {
	for ch := range rn.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (s *Server) subscribeRun(rn *run) (chan runEvent, func()) {
	ch := make(chan runEvent, 1024)
	s.mu.Lock()
	rn.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(rn.subs, ch)
		s.mu.Unlock()
	}
}

// ---- reads ---------------------------------------------------------------------------------

func (s *Server) lookupRun(id string) *run {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs[id]
}

func (s *Server) handleGetRun(w http.ResponseWriter, r *http.Request) {
	s.getRun(w, r, r.PathValue("run_id"), "path")
}

func (s *Server) handleGetRunAlias(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("run_id")
	if id == "" {
		write422(w, []validationError{{Type: "missing", Loc: []any{"query", "run_id"}, Msg: "Field required", Input: nil}})
		return
	}
	s.getRun(w, r, id, "query")
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, rawID, where string) {
	if uuid422(w, where, "run_id", rawID) {
		return
	}
	qp, ok := queryBool(w, r, "queue_position", false)
	if !ok {
		return
	}
	id, _ := parseUUID(rawID)
	s.mu.Lock()
	rn := s.runs[id]
	if rn == nil {
		s.mu.Unlock()
		writeDetail(w, http.StatusNotFound, "Run not found")
		return
	}
	body := s.runModelLocked(rn, s.origin(r), qp)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// readStatus applies the read-time 24 h timeout rule (not persisted).
func readStatus(rn *run, now time.Time) string {
	if !isTerminal(rn.Status) && now.Sub(rn.Updated) > 24*time.Hour {
		return statusTimeout
	}
	return rn.Status
}

// runModelLocked is the WorkflowRunModel served by GET /run/{id}: Pydantic
// timestamps, no deployment_id, private output URLs freshly signed.
func (s *Server) runModelLocked(rn *run, origin string, queuePosition bool) map[string]any {
	now := time.Now()
	status := readStatus(rn, now)
	m := map[string]any{
		"id": rn.ID, "workflow_version_id": nullable(rn.VersionID), "workflow_inputs": rn.Inputs,
		"workflow_id": rn.WorkflowID, "workflow_api": nil, "machine_id": rn.MachineID, "origin": "api",
		"status": status, "ended_at": timeOrNil(rn.Ended, pydanticTime), "created_at": pydanticTime(rn.Created),
		"updated_at": pydanticTime(rn.Updated), "queued_at": timeOrNil(rn.Queued, pydanticTime),
		"started_at": timeOrNil(rn.Started, pydanticTime), "gpu_event_id": nullable(rn.GPUEventID), "gpu": rn.GPU,
		"machine_version": nullable(rn.MachineVersion), "machine_type": rn.MachineType,
		"modal_function_call_id": nullable(rn.FnCallID), "user_id": rn.UserID, "org_id": rn.OrgID,
		"live_status": nullable(rn.LiveStatus), "progress": pyFloat(rn.Progress), "is_realtime": false,
		"webhook": nullable(rn.Webhook), "webhook_status": nil, "webhook_intermediate_status": rn.Intermediate,
		"outputs": s.outputsJSONLocked(rn.outputs, origin, pydanticTime, false), "number": 0,
		"duration": secondsBetween(rn.Created, rn.Ended), "cold_start_duration": secondsBetween(rn.Queued, rn.Started),
		"cold_start_duration_total": secondsBetween(rn.Created, rn.Started), "run_duration": secondsBetween(rn.Started, rn.Ended),
		"queue_position": nil,
	}
	if queuePosition && (status == statusNotStarted || status == statusQueued) {
		pos := 0
		for _, o := range s.runList {
			if o == rn {
				break
			}
			if o.MachineID == rn.MachineID && (o.Status == statusNotStarted || o.Status == statusQueued) && now.Sub(o.Created) < 24*time.Hour {
				pos++
			}
		}
		m["queue_position"] = pos
	}
	return m
}

// runRowLocked is the full ORM row used by list routes (ORM timestamps).
func (s *Server) runRowLocked(rn *run, origin string, withOutputs, withInputs bool) map[string]any {
	status := readStatus(rn, time.Now())
	m := map[string]any{
		"id": rn.ID, "workflow_version_id": nullable(rn.VersionID), "workflow_inputs": nil, "workflow_id": rn.WorkflowID,
		"workflow_api": nil, "machine_id": rn.MachineID, "origin": "api", "status": status,
		"ended_at": timeOrNil(rn.Ended, ormTime), "created_at": ormTime(rn.Created), "updated_at": ormTime(rn.Updated),
		"queued_at": timeOrNil(rn.Queued, ormTime), "started_at": timeOrNil(rn.Started, ormTime),
		"gpu_event_id": nullable(rn.GPUEventID), "gpu": rn.GPU, "machine_version": nullable(rn.MachineVersion),
		"machine_type": rn.MachineType, "modal_function_call_id": nullable(rn.FnCallID), "user_id": rn.UserID,
		"org_id": rn.OrgID, "run_log": nil, "live_status": nullable(rn.LiveStatus), "progress": pyFloat(rn.Progress),
		"is_realtime": false, "webhook": nullable(rn.Webhook), "webhook_status": nil,
		"webhook_intermediate_status": rn.Intermediate, "batch_id": nil, "deployment_id": nullable(rn.DeploymentID),
		"favorite": false, "model_id": nil, "number": 0,
		"duration": secondsBetween(rn.Created, rn.Ended), "cold_start_duration": secondsBetween(rn.Queued, rn.Started),
		"cold_start_duration_total": secondsBetween(rn.Created, rn.Started), "run_duration": secondsBetween(rn.Started, rn.Ended),
	}
	if withInputs {
		m["workflow_inputs"] = rn.Inputs
	}
	if withOutputs {
		m["outputs"] = s.outputsJSONLocked(rn.outputs, origin, ormTime, false)
	}
	if v := s.versions[rn.VersionID]; v != nil {
		m["version"] = map[string]any{"id": v.ID, "version": v.Version, "comment": v.Comment}
	} else {
		m["version"] = nil
	}
	return m
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// ---- cancel ----------------------------------------------------------------------------------

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	id, _ := parseUUID(r.PathValue("run_id"))
	s.mu.Lock()
	rn := s.runs[id]
	if rn == nil || rn.FnCallID == "" {
		s.mu.Unlock()
		writeDetail(w, http.StatusInternalServerError, "Error cancel function 404: Run not found or has no modal function call ID")
		return
	}
	if !isTerminal(rn.Status) {
		s.counters.Cancels++
		// The cancel path publishes to the progress channel without a status.
		s.publishRawLocked(map[string]any{"run_id": rn.ID, "workflow_id": rn.WorkflowID, "machine_id": rn.MachineID,
			"progress": pyFloat(rn.Progress), "node_class": nil, "timestamp": ormTime(time.Now())}, rn)
		s.appendLogLocked(rn, "info", "Run cancelled via API")
		s.setStatusLocked(rn, statusCancelled)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "message": "Function cancelled"})
}

// ---- lists and counts ------------------------------------------------------------------------

func (s *Server) handleRunsCount(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	now := time.Now().UTC()
	start, end := now.Add(-24*time.Hour), now
	for name, dst := range map[string]*time.Time{"start_time": &start, "end_time": &end} {
		if v := q.Get(name); v != "" {
			t, err := parseLooseTime(v)
			if err != nil {
				write422(w, []validationError{{Type: "datetime_from_date_parsing", Loc: []any{"query", name},
					Msg: "Input should be a valid datetime or date, invalid character in year", Input: v}})
				return
			}
			*dst = t
		}
	}
	filters := map[string]any{}
	for _, k := range []string{"gpu", "status", "origin", "workflow_id", "machine_id", "deployment_id"} {
		filters[k] = nullable(q.Get(k))
	}
	s.mu.Lock()
	count := 0
	for _, rn := range s.runList {
		if rn.Created.Before(start) || rn.Created.After(end) {
			continue
		}
		if f := q.Get("gpu"); f != "" && rn.GPU != f {
			continue
		}
		if f := q.Get("status"); f != "" && rn.Status != f {
			continue
		}
		if f := q.Get("origin"); f != "" && f != "api" {
			continue
		}
		if f := q.Get("workflow_id"); f != "" && rn.WorkflowID != f {
			continue
		}
		if f := q.Get("machine_id"); f != "" && rn.MachineID != f {
			continue
		}
		if f := q.Get("deployment_id"); f != "" && rn.DeploymentID != f {
			continue
		}
		count++
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"count": count, "start_time": rawSQLTime(start), "end_time": rawSQLTime(end), "filters": filters})
}

func parseLooseTime(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04Z07:00", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Unix(0, int64(n*1e9)).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("bad time %q", v)
}

// runsNewestFirstLocked returns runs matching keep, newest first.
func (s *Server) runsNewestFirstLocked(keep func(*run) bool) []*run {
	var out []*run
	for i := len(s.runList) - 1; i >= 0; i-- {
		if keep(s.runList[i]) {
			out = append(out, s.runList[i])
		}
	}
	return out
}

func (s *Server) handleWorkflowRuns(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("workflow_id")
	limit, ok1 := queryInt(w, r, "limit", 100)
	if !ok1 {
		return
	}
	offset, ok2 := queryInt(w, r, "offset", 0)
	if !ok2 {
		return
	}
	withOutputs, ok3 := queryBool(w, r, "with_outputs", true)
	if !ok3 {
		return
	}
	withInputs, ok4 := queryBool(w, r, "with_inputs", true)
	if !ok4 {
		return
	}
	s.mu.Lock()
	if s.workflows[id] == nil {
		s.mu.Unlock()
		writeDetail(w, http.StatusNotFound, "Workflow not found")
		return
	}
	runs := page(s.runsNewestFirstLocked(func(rn *run) bool { return rn.WorkflowID == id }), offset, limit)
	out := make([]any, 0, len(runs))
	for _, rn := range runs {
		out = append(out, s.runRowLocked(rn, s.origin(r), withOutputs, withInputs))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleWorkflowRunsV2(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("workflow_id")
	q := r.URL.Query()
	limit, ok := queryInt(w, r, "limit", 100)
	if !ok {
		return
	}
	offset, ok := queryInt(w, r, "offset", 0)
	if !ok {
		return
	}
	var since time.Time
	if v := q.Get("rf"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			write422(w, []validationError{{Type: "int_parsing", Loc: []any{"query", "rf"}, Msg: "Input should be a valid integer, unable to parse string as an integer", Input: v}})
			return
		}
		since = time.Unix(n, 0)
	}
	s.mu.Lock()
	runs := page(s.runsNewestFirstLocked(func(rn *run) bool {
		return rn.WorkflowID == id &&
			(q.Get("status") == "" || rn.Status == q.Get("status")) &&
			(q.Get("deployment_id") == "" || rn.DeploymentID == q.Get("deployment_id")) &&
			!rn.Created.Before(since)
	}), offset, limit)
	out := make([]any, 0, len(runs))
	for _, rn := range runs {
		out = append(out, map[string]any{
			"id": rn.ID, "status": readStatus(rn, time.Now()), "created_at": ormTime(rn.Created), "updated_at": ormTime(rn.Updated),
			"queued_at": timeOrNil(rn.Queued, ormTime), "started_at": timeOrNil(rn.Started, ormTime), "ended_at": timeOrNil(rn.Ended, ormTime),
			"gpu": rn.GPU, "machine_id": rn.MachineID, "origin": "api", "progress": pyFloat(rn.Progress), "live_status": nullable(rn.LiveStatus),
			"duration": secondsBetween(rn.Created, rn.Ended), "cold_start_duration": secondsBetween(rn.Queued, rn.Started),
			"cold_start_duration_total": secondsBetween(rn.Created, rn.Started), "run_duration": secondsBetween(rn.Started, rn.Ended),
		})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleDeploymentRuns(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("deployment_id")
	limit, ok := queryInt(w, r, "limit", 60)
	if !ok {
		return
	}
	offset, ok := queryInt(w, r, "offset", 0)
	if !ok {
		return
	}
	s.mu.Lock()
	if s.deployments[id] == nil {
		s.mu.Unlock()
		writeDetail(w, http.StatusNotFound, "Deployment not found")
		return
	}
	all := s.runsNewestFirstLocked(func(rn *run) bool { return rn.DeploymentID == id })
	runs := page(all, offset, limit)
	data := make([]any, 0, len(runs))
	for _, rn := range runs {
		data = append(data, map[string]any{
			"id": rn.ID, "status": readStatus(rn, time.Now()), "created_at": ormTime(rn.Created), "started_at": timeOrNil(rn.Started, ormTime),
			"ended_at": timeOrNil(rn.Ended, ormTime), "workflow_id": rn.WorkflowID, "workflow_version_id": nullable(rn.VersionID),
			"machine_id": rn.MachineID, "gpu": rn.GPU, "origin": "api", "user_id": rn.UserID, "deployment_id": rn.DeploymentID,
			"duration": secondsBetween(rn.Created, rn.Ended),
		})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "meta": map[string]any{
		"total": len(all), "limit": limit, "offset": offset, "has_more": offset+len(runs) < len(all)}})
}
