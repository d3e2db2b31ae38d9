package comfytest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestAuth(t *testing.T) {
	s := newSim(t, Options{})
	for _, key := range []string{"", "wrong-key"} {
		r := call(t, s, "GET", "/deployments", nil, key)
		if r.Status != 401 || r.json(t)["detail"] != "Invalid or missing token" {
			t.Errorf("key %q: got %d %s", key, r.Status, r.Body)
		}
	}
	if r := call(t, s, "GET", "/deployments", nil); r.Status != 200 {
		t.Errorf("valid key: %d %s", r.Status, r.Body)
	}
	// x-api-key is accepted too; unknown /api paths need auth before 404.
	req, _ := http.NewRequest("GET", s.URL()+"/machines", nil)
	req.Header.Set("x-api-key", s.APIKey())
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("x-api-key: %v %v", err, res)
	}
	res.Body.Close()
	if r := call(t, s, "GET", "/no/such/route", nil, ""); r.Status != 401 {
		t.Errorf("unknown route without auth: %d", r.Status)
	}
	if r := call(t, s, "GET", "/no/such/route", nil); r.Status != 404 || r.json(t)["detail"] != "Not Found" {
		t.Errorf("unknown route: %d %s", r.Status, r.Body)
	}
	// Admin endpoints and health need no token.
	base := strings.TrimSuffix(s.URL(), "/api")
	if r := fetch(t, base+"/healthz"); r.Status != 200 {
		t.Errorf("healthz: %d", r.Status)
	}
	if r := fetch(t, base+"/admin/counters"); r.Status != 200 {
		t.Errorf("admin counters: %d", r.Status)
	}
	if c := s.Counters(); c.Calls["GET /api/deployments"][401] != 2 || c.Calls["GET /api/deployments"][200] != 1 {
		t.Errorf("counters: %+v", c.Calls)
	}
}

func TestValidation422(t *testing.T) {
	s := newSim(t, Options{})
	cases := []struct {
		name, method, path string
		body               any
		loc                []any
		typ                string
	}{
		{"missing deployment_id", "POST", "/run/deployment/queue", map[string]any{"inputs": map[string]any{}}, []any{"body", "deployment_id"}, "missing"},
		{"bad deployment uuid", "POST", "/run/deployment/queue", map[string]any{"deployment_id": "nope"}, []any{"body", "deployment_id"}, "uuid_parsing"},
		{"nested input object", "POST", "/run/deployment/queue", txt2img(map[string]any{"inputs": map[string]any{"prompt": map[string]any{"x": 1}}}),
			[]any{"body", "inputs", "prompt", "str"}, "string_type"},
		{"inputs not an object", "POST", "/run/deployment/queue", txt2img(map[string]any{"inputs": []any{1}}), []any{"body", "inputs"}, "dict_type"},
		{"bad gpu", "POST", "/run/deployment/queue", txt2img(map[string]any{"gpu": "RTX9090"}), []any{"body", "gpu"}, "enum"},
		{"invalid json", "POST", "/run/deployment/queue", "{not json", []any{"body", 0.0}, "json_invalid"},
		{"non-uuid run id", "GET", "/run/123", nil, []any{"path", "run_id"}, "uuid_parsing"},
		{"workflow run without api json", "POST", "/run/workflow/queue", map[string]any{"workflow_id": WorkflowTxt2Img}, []any{"body", "workflow_api_json"}, "missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, s, tc.method, tc.path, tc.body)
			if r.Status != 422 {
				t.Fatalf("status %d %s", r.Status, r.Body)
			}
			detail := r.json(t)["detail"].([]any)
			for _, d := range detail {
				item := d.(map[string]any)
				if item["type"] == tc.typ && jsonEqual(item["loc"], tc.loc) && item["msg"] != "" {
					return
				}
			}
			t.Fatalf("no %s error at %v in %s", tc.typ, tc.loc, r.Body)
		})
	}
	if got := s.Counters().RunsCreated; got != 0 {
		t.Fatalf("422s created %d runs", got)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestDeploymentQuirks(t *testing.T) {
	s := newSim(t, Options{})
	missing := "de000000-0000-4000-8000-0000000000ff"
	r := call(t, s, "GET", "/deployment/"+missing, nil)
	if r.Status != 500 || r.json(t)["detail"] != "Internal server error" {
		t.Errorf("GET missing deployment: %d %s", r.Status, r.Body)
	}
	r = call(t, s, "POST", "/run/deployment/queue", map[string]any{"deployment_id": missing})
	if r.Status != 404 || r.json(t)["detail"] != "Deployment not found" {
		t.Errorf("queue on missing deployment: %d %s", r.Status, r.Body)
	}
	r = call(t, s, "POST", "/run/deployment/queue", txt2img(nil), NoCreditsAPIKey)
	if r.Status != 403 || r.json(t)["detail"] != "Insufficient your GPU credits to create run" {
		t.Errorf("no credits: %d %s", r.Status, r.Body)
	}
	// modal-serverless: 400, but the run row was committed (and failed).
	r = call(t, s, "POST", "/run/deployment/queue", map[string]any{"deployment_id": DeploymentOnLegacyModal, "inputs": map[string]any{"__cid": "legacy"}})
	if r.Status != 400 || r.json(t)["detail"] != "Invalid machine type" {
		t.Errorf("legacy modal: %d %s", r.Status, r.Body)
	}
	if n := s.Counters().RunsByToken["legacy"]; n != 1 {
		t.Errorf("legacy run rows: %d", n)
	}
	// sync and stream are only for comfy-deploy-serverless.
	for _, mode := range []string{"sync", "stream"} {
		r = call(t, s, "POST", "/run/deployment/"+mode, map[string]any{"deployment_id": DeploymentTxt2ImgClassic, "inputs": map[string]any{"prompt": "x"}})
		if r.Status != 400 {
			t.Errorf("%s on classic: %d %s", mode, r.Status, r.Body)
		}
	}

	d := call(t, s, "GET", "/deployment/"+DeploymentTxt2Img, nil).json(t)
	if d["environment"] != "production" || d["machine_id"] != MachineGPUPoolA || d["workflow_version_id"] != VersionTxt2Img {
		t.Errorf("deployment: %v", d)
	}
	byID := map[string]map[string]any{}
	for _, it := range d["input_types"].([]any) {
		m := it.(map[string]any)
		byID[m["input_id"].(string)] = m
	}
	if p := byID["prompt"]; p == nil || p["default_value"] != nil || p["class_type"] != "ComfyUIDeployExternalText" {
		t.Errorf("prompt input: %v", p)
	}
	if sz := byID["size"]; sz == nil || len(sz["enum_options"].([]any)) != 3 || sz["default_value"] != "512x512" {
		t.Errorf("size input: %v", sz)
	}
	if sd := byID["seed"]; sd == nil || sd["max_value"] != 4294967295.0 || sd["type"] != "integer" {
		t.Errorf("seed input: %v", sd)
	}
	// ORM timestamps: milliseconds + Z, with the seconds-cut quirk on whole seconds.
	if ts := d["created_at"].(string); !strings.HasSuffix(ts, "Z") || len(ts) != len("2025-01-12T09:40Z") {
		t.Errorf("deployment created_at %q", ts)
	}
	// Raw SQL routes: isoformat without zone.
	m := call(t, s, "GET", "/machine/"+MachineGPUPoolA, nil).json(t)
	if ts := m["created_at"].(string); strings.HasSuffix(ts, "Z") {
		t.Errorf("machine created_at %q has a zone", ts)
	}
	if _, err := time.Parse("2006-01-02T15:04:05", m["created_at"].(string)); err != nil {
		t.Errorf("machine created_at: %v", err)
	}
	if r := call(t, s, "GET", "/machine/ac000000-0000-4000-8000-0000000000ff", nil); r.Status != 404 {
		t.Errorf("missing machine: %d", r.Status)
	}
}

func TestCatalogue(t *testing.T) {
	s := newSim(t, Options{})
	if l := call(t, s, "GET", "/deployments", nil).list(t); len(l) != 10 {
		t.Errorf("deployments: %d", len(l))
	}
	if l := call(t, s, "GET", "/machines?is_docker=true", nil).list(t); len(l) != 4 {
		t.Errorf("docker machines: %d", len(l))
	}
	m := call(t, s, "GET", "/machine/"+MachineGPUBroken, nil).json(t)
	if m["status"] != "error" || m["import_failed_logs"] == nil {
		t.Errorf("broken machine: %v", m)
	}
	steps := call(t, s, "GET", "/machine/"+MachineGPUPoolA, nil).json(t)["docker_command_steps"].(map[string]any)["steps"].([]any)
	var urls []string
	for _, st := range steps {
		st := st.(map[string]any)
		if st["type"] == "custom-node" {
			urls = append(urls, st["data"].(map[string]any)["url"].(string))
		}
	}
	if len(urls) != 2 || urls[0] != "https://github.com/BennyKok/comfyui-deploy" {
		t.Errorf("custom nodes: %v", urls)
	}
	v := call(t, s, "GET", "/workflow-version/"+VersionMissingNode, nil).json(t)
	deps := v["dependencies"].(map[string]any)
	if _, ok := deps["custom_nodes"].(map[string]any)["https://github.com/kijai/ComfyUI-KJNodes"]; !ok {
		t.Errorf("missing-node deps: %v", deps)
	}
	if r := call(t, s, "GET", "/workflow-version/7e000000-0000-4000-8000-0000000000ff", nil); r.Status != 404 {
		t.Errorf("missing version: %d", r.Status)
	}
	if r := call(t, s, "GET", "/workflow/"+WorkflowTxt2Img+"/version/1", nil); r.Status != 200 || r.json(t)["id"] != VersionTxt2Img {
		t.Errorf("version by number: %d %s", r.Status, r.Body)
	}
	vs := call(t, s, "GET", "/machine/serverless/"+MachineGPUPoolA+"/versions", nil).list(t)
	if len(vs) != 2 || vs[0].(map[string]any)["version"] != 2.0 {
		t.Errorf("machine versions: %v", vs)
	}
	if c := call(t, s, "GET", "/machine/"+MachineGPUPoolB+"/check-custom-nodes", nil).json(t); c["is_up_to_date"] != false {
		t.Errorf("check-custom-nodes: %v", c)
	}
	// New version with a machine: version 2 and a preview deployment.
	nv := call(t, s, "POST", "/workflow/"+WorkflowUpscale+"/version", map[string]any{
		"workflow": map[string]any{}, "workflow_api": map[string]any{}, "comment": "v2", "machine_id": MachineGPUPoolA})
	if nv.Status != 200 || nv.json(t)["version"] != 2.0 {
		t.Fatalf("create version: %d %s", nv.Status, nv.Body)
	}
	if l := call(t, s, "GET", "/deployments?environment=preview", nil).list(t); len(l) != 1 {
		t.Errorf("preview deployments: %d", len(l))
	}
	// PATCH concurrency_limit.
	p := call(t, s, "PATCH", "/deployment/"+DeploymentUpscale, map[string]any{"concurrency_limit": 7})
	if p.Status != 200 || p.json(t)["concurrency_limit"] != 7.0 {
		t.Errorf("patch: %d %s", p.Status, p.Body)
	}
}

func TestFaultsJSONAndAdmin(t *testing.T) {
	s := newSim(t, Options{})
	base := strings.TrimSuffix(s.URL(), "/api")
	body := `{"error_rate":{"GET /api/run/{run_id}":0.5},"latency":"15ms","ambiguous_delay":2,"webhook_reorder_rate":0.1}`
	req, _ := http.NewRequest("PUT", base+"/admin/faults", strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("PUT faults: %v %v", err, res)
	}
	res.Body.Close()
	f := s.Faults()
	if f.Latency != 15*time.Millisecond || f.AmbiguousDelay != 2*time.Second || f.ErrorRate["GET /api/run/{run_id}"] != 0.5 || f.WebhookReorderRate != 0.1 {
		t.Fatalf("faults: %+v", f)
	}
	g := fetch(t, base+"/admin/faults").json(t)
	if g["latency"] != "15ms" || g["ambiguous_delay"] != "2s" {
		t.Errorf("GET faults: %v", g)
	}
	req, _ = http.NewRequest("PUT", base+"/admin/timing/"+DeploymentTxt2Img, strings.NewReader(`{"cold_start":"5ms","run":"20ms"}`))
	if res, err = http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("PUT timing: %v %v", err, res)
	}
	res.Body.Close()
	req, _ = http.NewRequest("PUT", base+"/admin/deployments/"+DeploymentTxt2Img, strings.NewReader(`{"concurrency_limit":3,"run_timeout":"1s"}`))
	if res, err = http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("PUT deployment: %v %v", err, res)
	}
	res.Body.Close()
	d := call(t, s, "GET", "/deployment/"+DeploymentTxt2Img, nil).json(t)
	if d["concurrency_limit"] != 3.0 || d["run_timeout"] != 1.0 {
		t.Errorf("deployment after admin PUT: %v %v", d["concurrency_limit"], d["run_timeout"])
	}
	if r, _ := http.Post(base+"/admin/reset", "application/json", nil); r.StatusCode != 200 {
		t.Errorf("reset: %d", r.StatusCode)
	}
	if c := s.Counters(); len(c.Calls) != 0 {
		t.Errorf("counters after reset: %+v", c.Calls)
	}
}
