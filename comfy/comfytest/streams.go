package comfytest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// sseWriter writes Server-Sent Events and flushes after each one.
type sseWriter struct {
	w   http.ResponseWriter
	err error
}

func newSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &sseWriter{w: w}
}

// send writes one event; event "" writes a data-only event.
func (e *sseWriter) send(event string, data any) bool {
	if e.err != nil {
		return false
	}
	b, err := json.Marshal(data)
	if err != nil {
		return true
	}
	if event != "" {
		_, e.err = fmt.Fprintf(e.w, "event: %s\n", event)
	}
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, "data: %s\n\n", b)
	}
	if f, ok := e.w.(http.Flusher); ok && e.err == nil {
		f.Flush()
	}
	return e.err == nil
}

func (e *sseWriter) comment(text string) bool {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, ": %s\n\n", text)
		if f, ok := e.w.(http.Flusher); ok && e.err == nil {
			f.Flush()
		}
	}
	return e.err == nil
}

// ---- POST /run/{deployment,workflow}/stream (reference §4.1) -------------------------------

func (s *Server) streamRun(w http.ResponseWriter, r *http.Request, rn *run) {
	events := rn.preSub // subscribed at creation; createRunHandler unsubscribes
	sse := newSSE(w)
	upd := func(data map[string]any) bool { return sse.send("event_update", data) }
	if !upd(map[string]any{"event": "queuing"}) {
		return
	}
	// The runner reports its Modal call id; from now on the run is cancellable.
	fc := modalCallID()
	s.mu.Lock()
	rn.FnCallID = fc
	s.mu.Unlock()
	upd(map[string]any{"event": "function_call_id", "data": fc})

	nodeIDs := map[int]string{}
	for i := range rn.pipe.nodeClasses() {
		nodeIDs[i] = strconv.Itoa(i + 1)
	}
	prompt := rn.ID
	for {
		var ev runEvent
		select {
		case ev = <-events:
		case <-r.Context().Done():
			return
		case <-s.ctx.Done():
			return
		}
		ok := true
		switch ev.Kind {
		case "log":
			if ev.Log.Level != "webhook" {
				ok = sse.send("log_update", map[string]any{"logs": ev.Log.Message, "timestamp": pydanticTime(ev.Log.Time)})
			}
		case "status":
			switch ev.Status {
			case statusQueued:
				s.mu.Lock()
				gpuEvent := rn.GPUEventID
				s.mu.Unlock()
				upd(map[string]any{"event": "gpu_ready"})
				ok = upd(map[string]any{"event": "gpu_event_id", "data": gpuEvent})
			case statusStarted:
				upd(map[string]any{"event": "comfyui_api_ready"})
				ok = upd(map[string]any{"event": "comfyui_ready"})
			case statusRunning:
				// The prompt-submission result comes without an "event" key.
				upd(map[string]any{"prompt_id": prompt, "number": 0, "node_errors": map[string]any{}})
				upd(map[string]any{"event": "status", "data": map[string]any{"status": map[string]any{"exec_info": map[string]any{"queue_remaining": 1}}, "sid": nil}})
				ok = upd(map[string]any{"event": "execution_start", "data": map[string]any{"prompt_id": prompt, "timestamp": time.Now().UnixMilli()}})
			case statusSuccess:
				upd(map[string]any{"event": "executing", "data": map[string]any{"node": nil, "prompt_id": prompt}})
				upd(map[string]any{"event": "execution_success", "data": map[string]any{"prompt_id": prompt, "timestamp": time.Now().UnixMilli()}})
				upd(map[string]any{"event": "status", "data": map[string]any{"prompt_id": prompt, "status": statusSuccess}})
				return
			case statusFailed:
				s.mu.Lock()
				last := ""
				if n := len(rn.logs); n > 0 {
					last = rn.logs[n-1].Message
				}
				s.mu.Unlock()
				upd(map[string]any{"event": "execution_error", "data": map[string]any{"prompt_id": prompt, "exception_message": last,
					"exception_type": "RuntimeError", "traceback": []any{}, "node_id": nil, "node_type": nil}})
				upd(map[string]any{"event": "status", "data": map[string]any{"prompt_id": prompt, "status": statusFailed}})
				return
			default: // timeout, cancelled: the stream just ends
				return
			}
		case "progress":
			node := nodeIDs[ev.Node]
			upd(map[string]any{"event": "executing", "data": map[string]any{"node": node, "display_node": node, "prompt_id": prompt}})
			if ev.LiveStatus == "Executing KSampler" {
				steps := inputInt(rn.eff, "steps", 20, 1, 100)
				for _, v := range []int{1, steps / 2, steps} {
					upd(map[string]any{"event": "progress", "data": map[string]any{"value": max(v, 1), "max": steps, "node": node, "prompt_id": prompt}})
				}
			}
			ok = upd(map[string]any{"event": "live_status", "data": map[string]any{"prompt_id": prompt, "live_status": ev.LiveStatus, "progress": pyFloat(ev.Progress)}})
		case "output":
			o := ev.Output
			out := map[string]any{}
			raw := func(ms []*media) []any {
				var l []any
				for _, m := range ms {
					l = append(l, map[string]any{"filename": m.Name, "subfolder": "", "type": "output"})
				}
				return l
			}
			if len(o.Images) > 0 {
				out["images"] = raw(o.Images)
			}
			if len(o.Files) > 0 {
				out["gifs"] = raw(o.Files)
			}
			if len(o.Text) > 0 {
				out["text"] = o.Text
			}
			upd(map[string]any{"event": "executed", "data": map[string]any{"node": o.NodeID, "display_node": o.NodeID, "output": out, "prompt_id": prompt}})
			ok = upd(map[string]any{"event": "output_ready", "data": map[string]any{"prompt_id": prompt, "node_id": o.NodeID, "output_id": o.OutputID}})
		}
		if !ok {
			return
		}
	}
}

// ---- POST /run/*/sync --------------------------------------------------------------------

func (s *Server) syncRun(w http.ResponseWriter, r *http.Request, rn *run, mode string) {
	select {
	case <-rn.done:
	case <-r.Context().Done():
		return
	case <-s.ctx.Done():
		writeDetail(w, http.StatusServiceUnavailable, "Server shutting down")
		return
	}
	s.mu.Lock()
	if mode == "sync_first_result" {
		for _, o := range rn.outputs {
			if len(o.Images) > 0 {
				m := o.Images[0]
				s.mu.Unlock()
				serveBytes(w, m.ContentType, m.Data)
				return
			}
		}
	}
	outs := s.outputsJSONLocked(rn.outputs, s.origin(r), pydanticTime, false)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, outs)
}

// ---- GET /v2/stream-progress (reference §4.2) ------------------------------------------

type progressMsg struct {
	msg map[string]any
	rn  *run
}

func (s *Server) publishProgressLocked(rn *run, status string, progress float64, nodeClass string) {
	p := pyFloat(progress)
	if progress < 0 {
		p = -1
	}
	s.publishRawLocked(map[string]any{"run_id": rn.ID, "workflow_id": rn.WorkflowID, "machine_id": rn.MachineID,
		"progress": p, "status": status, "node_class": nullable(nodeClass), "timestamp": ormTime(time.Now())}, rn)
}

func (s *Server) publishRawLocked(msg map[string]any, rn *run) {
	for ch := range s.progressSubs {
		select {
		case ch <- progressMsg{msg, rn}:
		default:
		}
	}
}

func (s *Server) handleStreamProgress(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n := 0
	for _, k := range []string{"run_id", "workflow_id", "machine_id"} {
		if q.Get(k) != "" {
			n++
		}
	}
	if n != 1 {
		writeDetail(w, http.StatusBadRequest, "Exactly one of run_id, workflow_id, or machine_id must be provided")
		return
	}
	returnRun, ok := queryBool(w, r, "return_run", false)
	if !ok {
		return
	}
	p := caller(r)
	channel := "progress:org:" + p.orgID
	if p.orgID == "" {
		channel = "progress:user:" + p.userID
	}
	ch := make(chan progressMsg, 1024)
	s.mu.Lock()
	s.progressSubs[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.progressSubs, ch)
		s.mu.Unlock()
	}()
	sse := newSSE(w)
	sse.send("", map[string]any{"type": "connection_established", "channels": []string{channel}})
	sse.send("", map[string]any{"type": "subscribed", "channel": channel})
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		var m progressMsg
		select {
		case m = <-ch:
		case <-keepalive.C:
			if !sse.comment("keepalive") {
				return
			}
			continue
		case <-r.Context().Done():
			return
		case <-s.ctx.Done():
			return
		}
		// Quirk: run_id is not used as a filter; workflow_id and machine_id are.
		if wf := q.Get("workflow_id"); wf != "" && m.msg["workflow_id"] != wf {
			continue
		}
		if mid := q.Get("machine_id"); mid != "" && m.msg["machine_id"] != mid {
			continue
		}
		if dep := q.Get("deployment_id"); dep != "" && m.rn.DeploymentID != dep {
			continue
		}
		data := any(m.msg)
		if returnRun {
			s.mu.Lock()
			data = s.runRowLocked(m.rn, s.origin(r), true, true)
			s.mu.Unlock()
		}
		if !sse.send("", data) {
			return
		}
		status, _ := m.msg["status"].(string)
		if q.Get("run_id") != "" && isTerminal(status) {
			return // stops at the first terminal status of any run
		}
	}
}

// ---- GET /v2/stream-logs and /v2/clickhouse-run-logs/{run_id} ---------------------------

func logJSON(l logLine) map[string]any {
	return map[string]any{"message": l.Message, "level": l.Level, "timestamp": pydanticTime(l.Time)}
}

func (s *Server) handleStreamLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	level := q.Get("log_level")
	keep := func(l logLine) bool { return level == "" || l.Level == level }
	switch {
	case q.Get("run_id") != "":
		rn := s.lookupRun(q.Get("run_id"))
		if rn == nil {
			sse := newSSE(w)
			sse.send("", map[string]any{"type": "error", "message": "Run not found"})
			return
		}
		events, unsubscribe := s.subscribeRun(rn)
		defer unsubscribe()
		s.mu.Lock()
		backlog := append([]logLine(nil), rn.logs...)
		finished := isTerminal(rn.Status)
		s.mu.Unlock()
		sse := newSSE(w)
		for _, l := range backlog {
			if keep(l) && !sse.send("", logJSON(l)) {
				return
			}
		}
		if finished {
			sse.send("", map[string]any{"type": "stream_complete", "source": "clickhouse"})
			return
		}
		for {
			select {
			case ev := <-events:
				if ev.Kind == "log" && keep(ev.Log) && !sse.send("", logJSON(ev.Log)) {
					return
				}
				if ev.Kind == "status" && isTerminal(ev.Status) {
					sse.send("", map[string]any{"type": "stream_complete", "source": "redis"})
					return
				}
			case <-r.Context().Done():
				return
			case <-s.ctx.Done():
				return
			}
		}
	case q.Get("machine_id_version") != "":
		sse := newSSE(w)
		base := time.Now().Add(-time.Minute)
		for i, msg := range []string{"Building image for machine version " + q.Get("machine_id_version"),
			"Installing custom nodes", "Image built successfully"} {
			sse.send("", logJSON(logLine{Message: msg, Level: "info", Time: base.Add(time.Duration(i) * time.Second)}))
		}
		sse.send("", map[string]any{"type": "stream_complete", "source": "clickhouse"})
	case q.Get("session_id") != "":
		sse := newSSE(w)
		sse.send("", map[string]any{"type": "stream_complete", "source": "clickhouse"})
	default:
		writeDetail(w, http.StatusBadRequest, "One of run_id, machine_id_version or session_id is required")
	}
}

func (s *Server) handleRunLogs(w http.ResponseWriter, r *http.Request) {
	rn := s.lookupRun(r.PathValue("run_id"))
	if rn == nil {
		writeJSON(w, http.StatusOK, []any{})
		return
	}
	s.mu.Lock()
	out := make([]any, 0, len(rn.logs))
	for _, l := range rn.logs {
		out = append(out, map[string]any{"run_id": rn.ID, "timestamp": rawSQLTime(l.Time), "log": l.Message,
			"user_id": rn.UserID, "org_id": rn.OrgID, "log_type": l.Level})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}
