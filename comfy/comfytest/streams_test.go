package comfytest

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

type sseEvent struct {
	Event string
	Data  map[string]any
}

// readSSE reads events until the server closes the stream or stop says so.
func readSSE(t *testing.T, res *http.Response, stop func(sseEvent) bool) []sseEvent {
	t.Helper()
	defer res.Body.Close()
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			cur.Event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.Data); err != nil {
				t.Fatalf("bad data line %q: %v", line, err)
			}
		case line == "" && cur.Data != nil:
			out = append(out, cur)
			if stop != nil && stop(cur) {
				return out
			}
			cur = sseEvent{}
		}
	}
	return out
}

func openStream(t *testing.T, s *Server, method, path string, body any) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL()+path, nil)
	if body != nil {
		req, _ = http.NewRequest(method, s.URL()+path, jsonBody(body))
	}
	req.Header.Set("Authorization", "Bearer "+s.APIKey())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header)
	}
	return res
}

func TestDeploymentStream(t *testing.T) {
	s := newSim(t, Options{})
	events := readSSE(t, openStream(t, s, "POST", "/run/deployment/stream", txt2img(nil)), nil)
	if len(events) < 10 || events[0].Event != "event_update" || events[0].Data["event"] != "queuing" {
		t.Fatalf("events: %v", events)
	}
	has := map[string]bool{}
	var runID string
	for _, e := range events {
		if e.Event == "log_update" {
			has["log_update"] = true
			continue
		}
		ev, ok := e.Data["event"].(string)
		if !ok {
			runID, _ = e.Data["prompt_id"].(string) // the prompt object has no event key
			has["prompt"] = true
			continue
		}
		has[ev] = true
	}
	for _, k := range []string{"function_call_id", "gpu_ready", "comfyui_ready", "prompt", "live_status", "executed", "log_update"} {
		if !has[k] {
			t.Errorf("missing %s in stream", k)
		}
	}
	last := events[len(events)-1]
	if last.Data["event"] != "status" || last.Data["data"].(map[string]any)["status"] != "success" {
		t.Errorf("last event: %v", last)
	}
	if run := getRun(t, s, runID); run["status"] != "success" {
		t.Errorf("run after stream: %v", run["status"])
	}
}

func TestSyncRun(t *testing.T) {
	s := newSim(t, Options{})
	r := call(t, s, "POST", "/run/deployment/sync", txt2img(nil))
	if r.Status != 200 {
		t.Fatalf("sync: %d %s", r.Status, r.Body)
	}
	if outs := r.list(t); len(outs) != 2 {
		t.Errorf("sync outputs: %v", outs)
	}
	// Workflow runs work too (machine taken from the workflow).
	r = call(t, s, "POST", "/run/workflow/queue", map[string]any{"workflow_id": WorkflowTxt2Img, "workflow_api_json": map[string]any{}, "inputs": map[string]any{"prompt": "wf"}})
	if r.Status != 200 {
		t.Fatalf("workflow queue: %d %s", r.Status, r.Body)
	}
	if run, _ := waitStatus(t, s, r.json(t)["run_id"].(string)); run["status"] != "success" {
		t.Errorf("workflow run: %v", run["status"])
	}
}

func TestStreamProgressQuirks(t *testing.T) {
	s := newSim(t, Options{})
	s.SetTiming(DeploymentTxt2ImgB, Timing{ColdStart: 10 * time.Millisecond, Run: time.Hour})
	slow := queue(t, s, map[string]any{"deployment_id": DeploymentTxt2ImgB, "inputs": map[string]any{"prompt": "slow"}})
	res := openStream(t, s, "GET", "/v2/stream-progress?run_id="+slow, nil)
	time.Sleep(20 * time.Millisecond)
	other := queue(t, s, txt2img(nil)) // a different run finishes first
	events := readSSE(t, res, nil)
	if events[0].Data["type"] != "connection_established" || events[1].Data["type"] != "subscribed" {
		t.Fatalf("handshake: %v", events[:2])
	}
	last := events[len(events)-1].Data
	if last["run_id"] != other || last["status"] != "success" {
		t.Errorf("stream should end on the other run's success, ended with %v", last)
	}
	if r := call(t, s, "GET", "/v2/stream-progress", nil); r.Status != 400 {
		t.Errorf("no filter: %d", r.Status)
	}
	// Cancel publishes without a status; a run_id stream keeps hanging.
	res = openStream(t, s, "GET", "/v2/stream-progress?run_id="+slow, nil)
	call(t, s, "POST", "/run/"+slow+"/cancel", nil)
	timer := time.AfterFunc(300*time.Millisecond, func() { res.Body.Close() })
	defer timer.Stop()
	got := readSSE(t, res, nil) // ends when the timer closes the body
	sawCancel := false
	for _, e := range got {
		st, has := e.Data["status"]
		if e.Data["run_id"] == slow && !has {
			sawCancel = true
		}
		if st == "cancelled" {
			t.Errorf("progress stream carried a cancelled status: %v", e.Data)
		}
	}
	if !sawCancel {
		t.Errorf("no status-less cancel event in %v", got)
	}
}

func TestStreamLogs(t *testing.T) {
	s := newSim(t, Options{})
	id := queue(t, s, txt2img(nil))
	events := readSSE(t, openStream(t, s, "GET", "/v2/stream-logs?run_id="+id, nil), nil)
	last := events[len(events)-1].Data
	if last["type"] != "stream_complete" || last["source"] == nil {
		t.Errorf("last: %v", last)
	}
	if events[0].Data["message"] == nil || events[0].Data["level"] == nil || events[0].Data["timestamp"] == nil {
		t.Errorf("first: %v", events[0])
	}
	// Finished runs replay their archived logs.
	events = readSSE(t, openStream(t, s, "GET", "/v2/stream-logs?run_id="+id, nil), nil)
	if events[len(events)-1].Data["source"] != "clickhouse" {
		t.Errorf("archived: %v", events[len(events)-1])
	}
}
