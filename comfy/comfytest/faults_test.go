package comfytest

import (
	"net/http"
	"testing"
	"time"
)

func TestErrorRateGives5xx(t *testing.T) {
	s := newSim(t, Options{Faults: Faults{ErrorRate: map[string]float64{"POST /api/run/deployment/queue": 1}}})
	codes := map[int]int{}
	for i := 0; i < 20; i++ {
		r := call(t, s, "POST", "/run/deployment/queue", txt2img(nil))
		if r.Status < 500 {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
		codes[r.Status]++
		if r.Status == 503 && r.Header.Get("Retry-After") != "" && r.Header.Get("Retry-After") != "1" {
			t.Errorf("Retry-After %q", r.Header.Get("Retry-After"))
		}
	}
	if len(codes) < 2 {
		t.Errorf("expected a mix of 5xx codes, got %v", codes)
	}
	// Other routes are unaffected; no run was created.
	if r := call(t, s, "GET", "/deployments", nil); r.Status != 200 {
		t.Errorf("other route: %d", r.Status)
	}
	c := s.Counters()
	if c.RunsCreated != 0 {
		t.Errorf("runs created: %d", c.RunsCreated)
	}
	n := 0
	for code, k := range c.Calls["POST /api/run/deployment/queue"] {
		if code >= 500 {
			n += k
		}
	}
	if n != 20 {
		t.Errorf("5xx counted %d: %v", n, c.Calls)
	}
	// "*" applies to every route; a pattern without method works too.
	s.SetFaults(Faults{ErrorRate: map[string]float64{"*": 1}})
	if r := call(t, s, "GET", "/machines", nil); r.Status < 500 {
		t.Errorf("* rate: %d", r.Status)
	}
	s.SetFaults(Faults{ErrorRate: map[string]float64{"/api/machines": 1}})
	if r := call(t, s, "GET", "/machines", nil); r.Status < 500 {
		t.Errorf("path rate: %d", r.Status)
	}
}

func TestAmbiguousSubmitDrop(t *testing.T) {
	s := newSim(t, Options{Faults: Faults{AmbiguousSubmitRate: 1}})
	_, err := tryCall(s, "POST", "/run/deployment/queue", txt2img(map[string]any{"inputs": map[string]any{"prompt": "x", "__cid": "amb-1"}}))
	if err == nil {
		t.Fatal("expected the response to be lost")
	}
	waitFor(t, "the dropped call to be counted", 5*time.Second, func() bool { return s.Counters().Calls["POST /api/run/deployment/queue"][0] == 1 })
	if c := s.Counters(); c.RunsByToken["amb-1"] != 1 || c.RunsCreated != 1 {
		t.Fatalf("counters: %+v", c)
	}
	// The run is real and can be found by its token.
	rows := call(t, s, "GET", "/workflow/"+WorkflowTxt2Img+"/runs?limit=20&with_outputs=false", nil).list(t)
	if len(rows) != 1 || rows[0].(map[string]any)["workflow_inputs"].(map[string]any)["__cid"] != "amb-1" {
		t.Fatalf("rows: %v", rows)
	}
	run, _ := waitStatus(t, s, rows[0].(map[string]any)["id"].(string))
	if run["status"] != "success" {
		t.Errorf("status %v", run["status"])
	}
}

func TestAmbiguousSubmitDelay(t *testing.T) {
	s := newSim(t, Options{Faults: Faults{AmbiguousSubmitRate: 1, AmbiguousDelay: 2 * time.Second}})
	client := &http.Client{Timeout: 100 * time.Millisecond}
	req, _ := http.NewRequest("POST", s.URL()+"/run/deployment/queue", jsonBody(txt2img(map[string]any{"webhook": "http://127.0.0.1:1/h?cid=amb-2"})))
	req.Header.Set("Authorization", "Bearer "+s.APIKey())
	if _, err := client.Do(req); err == nil {
		t.Fatal("expected a client timeout")
	}
	waitFor(t, "the run to exist", 2*time.Second, func() bool { return s.Counters().RunsByToken["amb-2"] == 1 })
}

func TestResetAndLatency(t *testing.T) {
	s := newSim(t, Options{Faults: Faults{ResetRate: 1}})
	if _, err := tryCall(s, "GET", "/deployments", nil); err == nil {
		t.Fatal("expected a connection reset")
	}
	// The server records the call after it has closed the connection.
	waitFor(t, "the reset to be counted", 5*time.Second, func() bool { return s.Counters().Calls["GET /api/deployments"][0] == 1 })
	s.SetFaults(Faults{Latency: 50 * time.Millisecond})
	start := time.Now()
	call(t, s, "GET", "/deployments", nil)
	if time.Since(start) < 50*time.Millisecond {
		t.Error("latency not applied")
	}
}

func TestRunFates(t *testing.T) {
	s := newSim(t, Options{Seed: 7, Faults: Faults{RunFailureRate: 1}})
	id := queue(t, s, txt2img(nil))
	if run, _ := waitStatus(t, s, id); run["status"] != "failed" {
		t.Errorf("failure fate: %v", run["status"])
	}
	s.SetFaults(Faults{RunTimeoutRate: 1})
	id = queue(t, s, txt2img(nil))
	if run, _ := waitStatus(t, s, id); run["status"] != "timeout" || run["progress"].(float64) >= 1 {
		t.Errorf("timeout fate: %v %v", run["status"], run["progress"])
	}
	s.SetFaults(Faults{NeverFinishRate: 1})
	id = queue(t, s, txt2img(nil))
	waitFor(t, "the run to stall in running", 5*time.Second, func() bool { return getRun(t, s, id)["status"] == "running" })
	time.Sleep(3 * fast.Run)
	if st := getRun(t, s, id)["status"]; st != "running" {
		t.Errorf("never-finish run is %v", st)
	}
}
