package comfytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// wantsOutputEvents reports whether the webhook URL's query asks for
// run.output events (target_events=run.output, comma-separated).
func wantsOutputEvents(webhook string) bool {
	u, err := url.Parse(webhook)
	if err != nil {
		return false
	}
	for _, v := range u.Query()["target_events"] {
		if slices.Contains(strings.Split(v, ","), "run.output") {
			return true
		}
	}
	return false
}

// webhookLocked schedules a webhook for rn. outs nil means "all current
// outputs". Delivery is asynchronous, unordered and at most three attempts,
// like the service's fire-and-forget asyncio tasks.
func (s *Server) webhookLocked(rn *run, eventType string, outs []*output, terminal bool) {
	if rn.Webhook == "" || s.closed {
		return
	}
	if outs == nil {
		outs = rn.outputs
	}
	payload := map[string]any{
		"event_type": eventType, "status": rn.Status, "live_status": nullable(rn.LiveStatus),
		"progress": pyFloat(rn.Progress), "run_id": rn.ID,
		"outputs": s.outputsJSONLocked(outs, rn.baseURL, ormTime, true),
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return
	}
	f := s.faults
	if s.chanceLocked(f.WebhookDropRate) {
		s.logf("fault: webhook %s %s for run %s dropped", eventType, rn.Status, rn.ID)
		return
	}
	reorder := f.WebhookReorderDelay
	if reorder <= 0 {
		reorder = 300 * time.Millisecond
	}
	delay := time.Duration(0)
	if s.chanceLocked(f.WebhookReorderRate) {
		delay = reorder
	}
	s.startDelivery(rn, body, delay)
	if s.chanceLocked(f.WebhookDuplicateRate) {
		s.startDelivery(rn, body, delay+reorder/4)
		if terminal {
			// A late runner update after a terminal status re-sends it.
			s.startDelivery(rn, body, delay+2*s.opts.WebhookBackoff+reorder)
		}
	}
}

func (s *Server) startDelivery(rn *run, body []byte, delay time.Duration) {
	s.wg.Add(1)
	go s.deliver(rn, rn.Webhook, body, delay)
}

func (s *Server) deliver(rn *run, target string, body []byte, delay time.Duration) {
	defer s.wg.Done()
	if !s.sleep(delay) {
		return
	}
	backoff := []time.Duration{s.opts.WebhookBackoff, 2 * s.opts.WebhookBackoff}
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			s.mu.Lock()
			jitter := 1 + (s.rng.Float64()*2-1)*0.1
			s.mu.Unlock()
			if !s.sleep(time.Duration(float64(backoff[attempt-1]) * jitter)) {
				return
			}
		}
		start := time.Now()
		code, err := s.post(target, body)
		s.mu.Lock()
		s.counters.WebhookAttempts++
		ok := err == nil && code >= 200 && code < 300
		if ok {
			s.counters.WebhookDeliveries++
		} else if attempt == 2 {
			s.counters.WebhookFailures++
		}
		msg := fmt.Sprintf("Webhook %s status=%d latency=%dms attempt=%d", target, code, time.Since(start).Milliseconds(), attempt+1)
		if err != nil {
			msg = fmt.Sprintf("Webhook %s failed: %v attempt=%d", target, err, attempt+1)
		}
		s.appendLogLocked(rn, "webhook", msg)
		s.mu.Unlock()
		if ok {
			return
		}
	}
	s.logf("webhook to %s abandoned after 3 attempts", target)
}

func (s *Server) post(target string, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.hooks.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// sleep waits d unless the server closes first.
func (s *Server) sleep(d time.Duration) bool {
	if d <= 0 {
		return s.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}
