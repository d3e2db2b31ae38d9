package comfytest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// fast are timings small enough for unit tests.
var fast = Timing{ColdStart: 40 * time.Millisecond, Run: 120 * time.Millisecond}

func newSim(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Timing == (Timing{}) {
		opts.Timing = fast
	}
	if opts.WebhookBackoff == 0 {
		opts.WebhookBackoff = 10 * time.Millisecond
	}
	opts.Logf = t.Logf
	s := NewServer(opts)
	t.Cleanup(s.Close)
	return s
}

type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("decode %q: %v", r.Body, err)
	}
	return m
}

func (r resp) list(t *testing.T) []any {
	t.Helper()
	var l []any
	if err := json.Unmarshal(r.Body, &l); err != nil {
		t.Fatalf("decode %q: %v", r.Body, err)
	}
	return l
}

// call makes a request with the simulator's key (key "" means no auth
// header). body may be a string or a value to encode as JSON.
func call(t *testing.T, s *Server, method, path string, body any, key ...string) resp {
	t.Helper()
	r, err := tryCall(s, method, path, body, key...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func tryCall(s *Server, method, path string, body any, key ...string) (resp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	u := path
	if !strings.HasPrefix(path, "http") {
		u = s.URL() + path
	}
	req, _ := http.NewRequest(method, u, rd)
	req.Header.Set("Content-Type", "application/json")
	k := s.APIKey()
	if len(key) > 0 {
		k = key[0]
	}
	if k != "" {
		req.Header.Set("Authorization", "Bearer "+k)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}, err
}

func queue(t *testing.T, s *Server, body map[string]any) string {
	t.Helper()
	r := call(t, s, "POST", "/run/deployment/queue", body)
	if r.Status != 200 {
		t.Fatalf("queue: %d %s", r.Status, r.Body)
	}
	return r.json(t)["run_id"].(string)
}

func getRun(t *testing.T, s *Server, id string) map[string]any {
	t.Helper()
	r := call(t, s, "GET", "/run/"+id, nil)
	if r.Status != 200 {
		t.Fatalf("get run: %d %s", r.Status, r.Body)
	}
	return r.json(t)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitStatus polls GET /run/{id} until a terminal status and returns the
// final run plus every status observed on the way.
func waitStatus(t *testing.T, s *Server, id string) (map[string]any, []string) {
	t.Helper()
	var seen []string
	var last map[string]any
	waitFor(t, "run "+id+" to finish", 10*time.Second, func() bool {
		last = getRun(t, s, id)
		st := last["status"].(string)
		if len(seen) == 0 || seen[len(seen)-1] != st {
			seen = append(seen, st)
		}
		return isTerminal(st)
	})
	return last, seen
}

func txt2img(extra map[string]any) map[string]any {
	body := map[string]any{"deployment_id": DeploymentTxt2Img, "inputs": map[string]any{"prompt": "a cat", "seed": 42}}
	for k, v := range extra {
		body[k] = v
	}
	return body
}

func firstImageURL(t *testing.T, run map[string]any) string {
	t.Helper()
	for _, o := range run["outputs"].([]any) {
		data := o.(map[string]any)["data"].(map[string]any)
		if imgs, ok := data["images"].([]any); ok && len(imgs) > 0 {
			return imgs[0].(map[string]any)["url"].(string)
		}
	}
	t.Fatalf("no image output in %v", run["outputs"])
	return ""
}

func fetch(t *testing.T, u string) resp {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}
