package comfytest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

// hookReceiver records webhook deliveries; failFirst makes the first n
// attempts answer 500.
type hookReceiver struct {
	*httptest.Server
	mu        sync.Mutex
	got       []map[string]any
	headers   []http.Header
	failFirst int
	attempts  int
}

func newReceiver(t *testing.T, failFirst int) *hookReceiver {
	h := &hookReceiver{failFirst: failFirst}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.attempts++
		if h.attempts <= h.failFirst {
			w.WriteHeader(500)
			return
		}
		h.got = append(h.got, m)
		h.headers = append(h.headers, r.Header.Clone())
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) events() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.got...)
}

func (h *hookReceiver) count(eventType, status string) int {
	n := 0
	for _, e := range h.events() {
		if e["event_type"] == eventType && (status == "" || e["status"] == status) {
			n++
		}
	}
	return n
}

func TestWebhooksDelivered(t *testing.T) {
	s := newSim(t, Options{})
	h := newReceiver(t, 0)
	id := queue(t, s, txt2img(map[string]any{"webhook": h.URL + "/hook?cid=wh-1&target_events=run.output", "webhook_intermediate_status": true}))
	waitStatus(t, s, id)
	waitFor(t, "the success webhook", 5*time.Second, func() bool { return h.count("run.updated", "success") == 1 })
	for _, st := range []string{"queued", "started", "running"} {
		if h.count("run.updated", st) == 0 {
			t.Errorf("no %s webhook", st)
		}
	}
	if h.count("run.output", "") != 2 {
		t.Errorf("run.output events: %d", h.count("run.output", ""))
	}
	var success map[string]any
	progressUpdates := 0
	for _, e := range h.events() {
		if e["run_id"] != id {
			t.Errorf("run_id %v", e["run_id"])
		}
		if e["event_type"] == "run.updated" && e["status"] == "running" && e["live_status"] != nil {
			progressUpdates++
		}
		if e["status"] == "success" && e["event_type"] == "run.updated" {
			success = e
		}
	}
	if progressUpdates == 0 {
		t.Error("no intermediate progress webhooks")
	}
	if len(success["outputs"].([]any)) != 2 || success["progress"] != 1.0 {
		t.Errorf("success payload: %v", success)
	}
	for _, hd := range h.headers {
		if hd.Get("Content-Type") != "application/json" || hd.Get("X-Signature") != "" {
			t.Errorf("headers: %v", hd)
		}
	}
	// The counter is bumped after the receiver answers.
	waitFor(t, "deliveries to be counted", 5*time.Second, func() bool { return s.Counters().WebhookDeliveries == len(h.events()) })
}

func TestWebhookRetriesAndClassicStatuses(t *testing.T) {
	s := newSim(t, Options{})
	h := newReceiver(t, 2) // first two attempts fail; the third succeeds
	id := queue(t, s, map[string]any{"deployment_id": DeploymentTxt2ImgClassic, "inputs": map[string]any{"prompt": "x"}, "webhook": h.URL})
	waitStatus(t, s, id)
	waitFor(t, "the running and success webhooks", 5*time.Second, func() bool {
		return h.count("run.updated", "success") == 1 && h.count("run.updated", "running") == 1
	})
	// classic: not-started → running → success, no queued/started.
	if h.count("run.updated", "queued")+h.count("run.updated", "started") != 0 {
		t.Errorf("classic run sent queued/started: %v", h.events())
	}
	if h.count("run.updated", "running") != 1 {
		t.Errorf("running webhooks: %d", h.count("run.updated", "running"))
	}
	waitFor(t, "attempts to be counted", 5*time.Second, func() bool { return s.Counters().WebhookDeliveries == 2 })
	if c := s.Counters(); c.WebhookAttempts != c.WebhookDeliveries+2 {
		t.Errorf("attempts %d deliveries %d", c.WebhookAttempts, c.WebhookDeliveries)
	}
}

func TestWebhookDuplicatesAndCancel(t *testing.T) {
	s := newSim(t, Options{Faults: Faults{WebhookDuplicateRate: 1, WebhookReorderDelay: 20 * time.Millisecond}})
	h := newReceiver(t, 0)
	id := queue(t, s, txt2img(map[string]any{"webhook": h.URL}))
	waitStatus(t, s, id)
	// Each status twice, plus a late re-send of the terminal status.
	waitFor(t, "duplicate success webhooks", 5*time.Second, func() bool { return h.count("run.updated", "success") == 3 })
	if h.count("run.updated", "queued") != 2 {
		t.Errorf("queued deliveries: %d", h.count("run.updated", "queued"))
	}

	s.SetFaults(Faults{})
	h2 := newReceiver(t, 0)
	s.SetTiming(DeploymentTxt2Img, Timing{ColdStart: 10 * time.Millisecond, Run: time.Hour})
	id = queue(t, s, txt2img(map[string]any{"webhook": h2.URL}))
	waitFor(t, "the run to start", 5*time.Second, func() bool { return getRun(t, s, id)["status"] == "started" })
	call(t, s, "POST", "/run/"+id+"/cancel", nil)
	waitFor(t, "the cancelled webhook", 5*time.Second, func() bool { return h2.count("run.updated", "cancelled") == 1 })
}

func TestWebhookReorder(t *testing.T) {
	s := newSim(t, Options{Seed: 3, Faults: Faults{WebhookReorderRate: 0.5, WebhookReorderDelay: 150 * time.Millisecond}})
	h := newReceiver(t, 0)
	reordered := false
	for i := 0; i < 6 && !reordered; i++ {
		before := len(h.events())
		id := queue(t, s, txt2img(map[string]any{"webhook": h.URL}))
		waitStatus(t, s, id)
		waitFor(t, "all webhooks", 5*time.Second, func() bool { return h.count("run.updated", "") >= before+4 })
		time.Sleep(200 * time.Millisecond)
		rank := map[string]int{"queued": 1, "started": 2, "running": 3, "success": 4}
		last := 0
		for _, e := range h.events()[before:] {
			if e["run_id"] != id {
				continue
			}
			r := rank[e["status"].(string)]
			if r < last {
				reordered = true
			}
			last = max(last, r)
		}
	}
	if !reordered {
		t.Error("never saw an out-of-order delivery")
	}
}
