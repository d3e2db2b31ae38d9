package comfytest

import (
	"bytes"
	"image/png"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRunWalksToSuccessWithPNG(t *testing.T) {
	s := newSim(t, Options{})
	id := queue(t, s, txt2img(map[string]any{"inputs": map[string]any{"prompt": "a cat", "seed": 42, "__cid": "tok-1"}}))
	run, seen := waitStatus(t, s, id)
	if run["status"] != "success" || run["progress"] != 1.0 {
		t.Fatalf("final run: %v", run)
	}
	if seen[0] != "not-started" && seen[0] != "queued" {
		t.Errorf("first observed status %q", seen[0])
	}
	order := []string{"not-started", "queued", "started", "running", "success"}
	for i := 1; i < len(seen); i++ {
		if slices.Index(order, seen[i]) <= slices.Index(order, seen[i-1]) {
			t.Errorf("statuses out of order: %v", seen)
		}
	}
	for _, k := range []string{"created_at", "queued_at", "started_at", "ended_at", "updated_at"} {
		ts, _ := run[k].(string)
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("%s = %q: %v", k, ts, err)
		}
	}
	for _, k := range []string{"duration", "cold_start_duration", "cold_start_duration_total", "run_duration"} {
		if v, ok := run[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v", k, run[k])
		}
	}
	if _, ok := run["deployment_id"]; ok {
		t.Error("GET /run must not include deployment_id")
	}
	if run["workflow_inputs"].(map[string]any)["__cid"] != "tok-1" || run["machine_type"] != "comfy-deploy-serverless" {
		t.Errorf("run fields: %v", run)
	}
	outs := run["outputs"].([]any)
	if len(outs) != 2 {
		t.Fatalf("outputs: %v", outs)
	}
	img := outs[0].(map[string]any)
	if img["output_id"] != "image" || img["type"] != nil || img["node_id"] != nil || img["node_meta"].(map[string]any)["node_class"] != "ComfyDeployStdOutputImage" {
		t.Errorf("image output: %v", img)
	}
	item := img["data"].(map[string]any)["images"].([]any)[0].(map[string]any)
	if item["type"] != "output" || item["is_public"] != false || item["subfolder"] != "" || item["filename"] == "" {
		t.Errorf("media item: %v", item)
	}
	if txt := outs[1].(map[string]any)["data"].(map[string]any)["text"].([]any); len(txt) != 1 || !strings.Contains(txt[0].(string), "a cat") {
		t.Errorf("caption: %v", txt)
	}

	r := fetch(t, item["url"].(string))
	if r.Status != 200 || r.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("download: %d %s", r.Status, r.Header)
	}
	pic, err := png.Decode(bytes.NewReader(r.Body))
	if err != nil || pic.Bounds().Dx() != 64 {
		t.Fatalf("png: %v %v", err, pic)
	}

	// Identical inputs give identical bytes; the correlation token does not matter.
	id2 := queue(t, s, txt2img(map[string]any{"inputs": map[string]any{"prompt": "a cat", "seed": 42, "__cid": "tok-2"}}))
	run2, _ := waitStatus(t, s, id2)
	if r2 := fetch(t, firstImageURL(t, run2)); !bytes.Equal(r2.Body, r.Body) {
		t.Error("same inputs, different image")
	}
	id3 := queue(t, s, txt2img(map[string]any{"inputs": map[string]any{"prompt": "a cat", "seed": 43, "size": "768x768"}}))
	run3, _ := waitStatus(t, s, id3)
	r3 := fetch(t, firstImageURL(t, run3))
	if pic3, err := png.Decode(bytes.NewReader(r3.Body)); err != nil || pic3.Bounds().Dx() != 96 {
		t.Errorf("768x768 render: %v", err)
	}

	c := s.Counters()
	if c.RunsCreated != 3 || c.RunsByToken["tok-1"] != 1 || c.RunsByToken["tok-2"] != 1 {
		t.Errorf("counters: %+v", c)
	}
	if c.Calls["POST /api/run/deployment/queue"][200] != 3 || c.Calls["GET /api/run/{run_id}"][200] == 0 {
		t.Errorf("calls: %v", c.Calls)
	}
	// Alias route and 404.
	if r := call(t, s, "GET", "/run?run_id="+id, nil); r.Status != 200 || r.json(t)["id"] != id {
		t.Errorf("alias: %d", r.Status)
	}
	if r := call(t, s, "GET", "/run/00000000-0000-4000-8000-000000000000", nil); r.Status != 404 {
		t.Errorf("unknown run: %d", r.Status)
	}
}

func TestOutputURLExpiry(t *testing.T) {
	s := newSim(t, Options{OutputURLTTL: 10 * time.Millisecond})
	id := queue(t, s, txt2img(nil))
	run, _ := waitStatus(t, s, id)
	old := firstImageURL(t, run)
	// exp has one-second resolution, so the URL dies within TTL + 1s.
	waitFor(t, "the URL to expire", 5*time.Second, func() bool { return fetch(t, old).Status == 403 })
	if r := fetch(t, old); !strings.Contains(string(r.Body), "Request has expired") {
		t.Errorf("expired body: %s", r.Body)
	}
	// Every read re-signs private outputs.
	waitFor(t, "a fresh URL to work", 5*time.Second, func() bool {
		fresh := firstImageURL(t, getRun(t, s, id))
		return fresh != old && fetch(t, fresh).Status == 200
	})
	// Tampering is rejected.
	if r := fetch(t, strings.Replace(old, "ComfyUI_", "Other_", 1)); r.Status != 403 {
		t.Errorf("tampered URL: %d", r.Status)
	}
}

func TestCancel(t *testing.T) {
	s := newSim(t, Options{})
	s.SetTiming(DeploymentTxt2Img, Timing{ColdStart: 20 * time.Millisecond, Run: time.Hour})
	id := queue(t, s, txt2img(nil))
	r := call(t, s, "POST", "/run/"+id+"/cancel", nil)
	if r.Status != 200 || r.json(t)["status"] != "success" || r.json(t)["message"] != "Function cancelled" {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	run := getRun(t, s, id)
	if run["status"] != "cancelled" || run["ended_at"] == nil {
		t.Errorf("after cancel: %v %v", run["status"], run["ended_at"])
	}
	// Cancelling a terminal run still answers 200 and changes nothing.
	if r := call(t, s, "POST", "/run/"+id+"/cancel", nil); r.Status != 200 {
		t.Errorf("second cancel: %d", r.Status)
	}
	const notFound = "Error cancel function 404: Run not found or has no modal function call ID"
	classic := queue(t, s, map[string]any{"deployment_id": DeploymentTxt2ImgClassic, "inputs": map[string]any{"prompt": "x"}})
	for _, rid := range []string{classic, "00000000-0000-4000-8000-000000000000"} {
		r := call(t, s, "POST", "/run/"+rid+"/cancel", nil)
		if r.Status != 500 || r.json(t)["detail"] != notFound {
			t.Errorf("cancel %s: %d %s", rid, r.Status, r.Body)
		}
	}
	if c := s.Counters(); c.Cancels != 1 {
		t.Errorf("cancels = %d", c.Cancels)
	}
}

func TestClassicSkipsQueuedAndStarted(t *testing.T) {
	s := newSim(t, Options{})
	id := queue(t, s, map[string]any{"deployment_id": DeploymentTxt2ImgClassic, "inputs": map[string]any{"prompt": "x"}})
	run, _ := waitStatus(t, s, id)
	if run["status"] != "success" || run["queued_at"] != nil || run["started_at"] == nil || run["modal_function_call_id"] != nil {
		t.Errorf("classic run: %v", run)
	}
}

func TestConcurrencyLimitHoldsRunsInNotStarted(t *testing.T) {
	s := newSim(t, Options{Deployments: map[string]DeploymentSettings{DeploymentTxt2Img: {ConcurrencyLimit: 1}}})
	s.SetTiming(DeploymentTxt2Img, Timing{ColdStart: 20 * time.Millisecond, Run: 150 * time.Millisecond})
	ids := []string{queue(t, s, txt2img(nil)), queue(t, s, txt2img(nil)), queue(t, s, txt2img(nil))}
	sawWaiting := false
	waitFor(t, "all runs to finish", 10*time.Second, func() bool {
		done, waiting := 0, 0
		for _, id := range ids {
			switch st := getRun(t, s, id)["status"].(string); {
			case isTerminal(st):
				done++
			case st == "not-started":
				waiting++
			}
		}
		if waiting > 0 && waiting < len(ids)-done {
			sawWaiting = true // someone is active while others wait
		}
		return done == len(ids)
	})
	if !sawWaiting {
		t.Error("never saw a run waiting in not-started behind an active one")
	}
	// The runs' GPU phases (queued_at..ended_at) must not overlap.
	type span struct{ from, to time.Time }
	var spans []span
	for _, id := range ids {
		run := getRun(t, s, id)
		from, _ := time.Parse(time.RFC3339Nano, run["queued_at"].(string))
		to, _ := time.Parse(time.RFC3339Nano, run["ended_at"].(string))
		spans = append(spans, span{from, to})
	}
	for i := range spans {
		for j := range spans {
			if i != j && spans[i].from.Before(spans[j].to) && spans[j].from.Before(spans[i].to) {
				t.Errorf("runs %d and %d overlap: %v %v", i, j, spans[i], spans[j])
			}
		}
	}
	// queue_position is filled only on request and only while waiting.
	s.SetTiming(DeploymentTxt2Img, Timing{ColdStart: 20 * time.Millisecond, Run: time.Hour})
	a, b := queue(t, s, txt2img(nil)), queue(t, s, txt2img(nil))
	qp := call(t, s, "GET", "/run/"+b+"?queue_position=true", nil).json(t)
	if qp["queue_position"] != 1.0 {
		t.Errorf("queue_position = %v", qp["queue_position"])
	}
	if getRun(t, s, b)["queue_position"] != nil {
		t.Error("queue_position without the query flag")
	}
	call(t, s, "POST", "/run/"+a+"/cancel", nil)
	waitFor(t, "the waiting run to be admitted", 5*time.Second, func() bool { return getRun(t, s, b)["status"] != "not-started" })
}

func TestRunTimeoutAndFailures(t *testing.T) {
	s := newSim(t, Options{})
	if err := s.ConfigureDeployment(DeploymentSlowTimeout, DeploymentSettings{RunTimeout: 60 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	s.SetTiming(DeploymentSlowTimeout, Timing{ColdStart: 10 * time.Millisecond, Run: 5 * time.Second})
	cases := map[string]string{
		DeploymentSlowTimeout:      "timeout",
		DeploymentOnBroken:         "failed",
		DeploymentOnBuilding:       "failed",
		DeploymentNeedsMissingNode: "failed",
	}
	for dep, want := range cases {
		id := queue(t, s, map[string]any{"deployment_id": dep, "inputs": map[string]any{"prompt": "x"}})
		if run, _ := waitStatus(t, s, id); run["status"] != want || len(run["outputs"].([]any)) != 0 {
			t.Errorf("%s: status %v outputs %v", dep, run["status"], run["outputs"])
		}
	}
	// A missing required input fails the run (the server itself does not check).
	id := queue(t, s, map[string]any{"deployment_id": DeploymentTxt2Img, "inputs": map[string]any{}})
	if run, _ := waitStatus(t, s, id); run["status"] != "failed" {
		t.Errorf("missing prompt: %v", run["status"])
	}
	logs := call(t, s, "GET", "/v2/clickhouse-run-logs/"+id, nil).list(t)
	found := false
	for _, l := range logs {
		if strings.Contains(l.(map[string]any)["log"].(string), "Required input is missing: prompt") {
			found = true
		}
	}
	if !found {
		t.Errorf("logs do not explain the failure: %v", logs)
	}
}

func TestWorkflowRunListsFindTokens(t *testing.T) {
	s := newSim(t, Options{})
	id := queue(t, s, txt2img(map[string]any{"inputs": map[string]any{"prompt": "x", "__cid": "find-me"}, "webhook": "http://127.0.0.1:1/hook?cid=hook-tok"}))
	rows := call(t, s, "GET", "/workflow/"+WorkflowTxt2Img+"/runs?limit=20&with_outputs=false", nil).list(t)
	if len(rows) != 1 {
		t.Fatalf("rows: %v", rows)
	}
	row := rows[0].(map[string]any)
	if row["id"] != id || row["deployment_id"] != DeploymentTxt2Img || row["webhook"] != "http://127.0.0.1:1/hook?cid=hook-tok" ||
		row["workflow_inputs"].(map[string]any)["__cid"] != "find-me" || row["outputs"] != nil {
		t.Errorf("row: %v", row)
	}
	slim := call(t, s, "GET", "/v2/workflow/"+WorkflowTxt2Img+"/runs?deployment_id="+DeploymentTxt2Img+"&rf="+
		itoa(time.Now().Add(-time.Minute).Unix()), nil).list(t)
	if len(slim) != 1 || slim[0].(map[string]any)["workflow_inputs"] != nil {
		t.Errorf("slim: %v", slim)
	}
	if l := call(t, s, "GET", "/v2/workflow/"+WorkflowTxt2Img+"/runs?rf="+itoa(time.Now().Add(time.Hour).Unix()), nil).list(t); len(l) != 0 {
		t.Errorf("rf filter: %v", l)
	}
	dr := call(t, s, "GET", "/deployment/"+DeploymentTxt2Img+"/runs", nil).json(t)
	if len(dr["data"].([]any)) != 1 {
		t.Errorf("deployment runs: %v", dr)
	}
	if c := call(t, s, "GET", "/runs/count?deployment_id="+DeploymentTxt2Img, nil).json(t); c["count"] != 1.0 {
		t.Errorf("count: %v", c)
	}
	// inputs token wins over the webhook cid.
	if n := s.Counters().RunsByToken["find-me"]; n != 1 {
		t.Errorf("token count %d", n)
	}
	queue(t, s, txt2img(map[string]any{"webhook": "http://127.0.0.1:1/hook?cid=only-hook"}))
	if n := s.Counters().RunsByToken["only-hook"]; n != 1 {
		t.Errorf("webhook cid count %d", n)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
