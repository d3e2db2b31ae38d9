package comfy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// endpointCase is one method call checked against the request it must
// produce and the response it must decode.
type endpointCase struct {
	name      string
	pattern   string // mux pattern under /api
	status    int
	response  string
	call      func(ctx context.Context, c *Client) (any, error)
	wantPath  string // escaped path under /api
	wantQuery url.Values
	wantBody  string // JSON; "" means no body
	check     func(t *testing.T, got any)
}

func TestEndpoints(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 10, 5, 0, 0, time.UTC)
	cases := []endpointCase{
		{
			name: "Runs.QueueDeployment", pattern: "POST /run/deployment/queue",
			response: `{"run_id":"11111111-1111-1111-1111-111111111111"}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				req := &DeploymentRunRequest{
					DeploymentID: "dep-1", Inputs: map[string]any{"prompt": "cat", "steps": 20},
					Webhook: "https://hook.example/cb?cid=abc&target_events=run.output", WebhookIntermediateStatus: true,
					GPU: GPUA10080GB, Flags: []string{"f"},
				}
				req.SetCorrelationToken("abc")
				return c.Runs.QueueDeployment(ctx, req)
			},
			wantPath: "/run/deployment/queue",
			wantBody: `{"deployment_id":"dep-1","inputs":{"prompt":"cat","steps":20,"__cid":"abc"},"webhook":"https://hook.example/cb?cid=abc&target_events=run.output","webhook_intermediate_status":true,"gpu":"A100-80GB","flags":["f"]}`,
			check: func(t *testing.T, got any) {
				if q := got.(*QueuedRun); q.RunID != "11111111-1111-1111-1111-111111111111" {
					t.Errorf("RunID = %q", q.RunID)
				}
			},
		},
		{
			name: "Runs.QueueDeployment minimal", pattern: "POST /run/deployment/queue",
			response: `{"run_id":"r"}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Runs.QueueDeployment(ctx, &DeploymentRunRequest{DeploymentID: "dep-1"})
			},
			wantPath: "/run/deployment/queue", wantBody: `{"deployment_id":"dep-1"}`,
		},
		{
			name: "Runs.QueueWorkflow", pattern: "POST /run/workflow/queue",
			response: `{"run_id":"r2"}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Runs.QueueWorkflow(ctx, &WorkflowRunRequest{
					WorkflowID: "wf", WorkflowAPIJSON: json.RawMessage(`{"3":{"class_type":"KSampler"}}`),
					MachineID: "m1", Inputs: map[string]any{"a": true},
				})
			},
			wantPath: "/run/workflow/queue",
			wantBody: `{"workflow_id":"wf","workflow_api_json":{"3":{"class_type":"KSampler"}},"machine_id":"m1","inputs":{"a":true}}`,
			check:    func(t *testing.T, got any) { assertEq(t, got.(*QueuedRun).RunID, "r2") },
		},
		{
			name: "Runs.SyncDeployment", pattern: "POST /run/deployment/sync",
			response: `[{"id":"o1","run_id":"r","output_id":null,"data":{"images":[{"url":"https://s3/x.png","type":"output","filename":"x.png"}]},"node_meta":{"node_id":"9"},"created_at":"2025-01-01T10:05Z"}]`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Runs.SyncDeployment(ctx, &DeploymentRunRequest{DeploymentID: "d"})
			},
			wantPath: "/run/deployment/sync", wantBody: `{"deployment_id":"d"}`,
			check: func(t *testing.T, got any) {
				outs := got.([]Output)
				if len(outs) != 1 || outs[0].Data["images"][0].Media.URL != "https://s3/x.png" || !outs[0].CreatedAt.Equal(t0) {
					t.Errorf("outputs = %+v", outs)
				}
			},
		},
		{
			name: "Runs.SyncWorkflow", pattern: "POST /run/workflow/sync", response: `[]`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Runs.SyncWorkflow(ctx, &WorkflowRunRequest{WorkflowID: "w", WorkflowAPIJSON: json.RawMessage(`{}`)})
			},
			wantPath: "/run/workflow/sync", wantBody: `{"workflow_id":"w","workflow_api_json":{}}`,
		},
		{
			name: "Runs.Get", pattern: "GET /run/{id}", response: sampleRunJSON,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Runs.Get(ctx, "run-1", &GetRunOptions{QueuePosition: true})
			},
			wantPath: "/run/run-1", wantQuery: url.Values{"queue_position": {"true"}},
			check: func(t *testing.T, got any) {
				r := got.(*Run)
				assertEq(t, r.ID, "run-1")
				assertEq(t, r.Status, StatusRunning)
				if r.QueuePosition == nil || *r.QueuePosition != 2 {
					t.Errorf("QueuePosition = %v", r.QueuePosition)
				}
			},
		},
		{
			name: "Runs.Get no options", pattern: "GET /run/{id}", response: `{"id":"x"}`,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Runs.Get(ctx, "x", nil) },
			wantPath: "/run/x", wantQuery: url.Values{},
		},
		{
			name: "Runs.Cancel", pattern: "POST /run/{id}/cancel", response: `{"status":"success","message":"Function cancelled"}`,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Runs.Cancel(ctx, "run-1") },
			wantPath: "/run/run-1/cancel",
			check:    func(t *testing.T, got any) { assertEq(t, got.(*CancelResult).Status, "success") },
		},
		{
			name: "Runs.Count", pattern: "GET /runs/count",
			response: `{"count":7,"start_time":"2025-01-01T10:05:00","end_time":null,"filters":{"status":"success"}}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Runs.Count(ctx, &RunCountOptions{StartTime: t0, Status: StatusSuccess, DeploymentID: "d", GPU: "A10G"})
			},
			wantPath:  "/runs/count",
			wantQuery: url.Values{"start_time": {"2025-01-01T10:05:00Z"}, "status": {"success"}, "deployment_id": {"d"}, "gpu": {"A10G"}},
			check: func(t *testing.T, got any) {
				rc := got.(*RunCount)
				if rc.Count != 7 || !rc.StartTime.Equal(t0) || !rc.EndTime.IsZero() || rc.Filters["status"] != "success" {
					t.Errorf("count = %+v", rc)
				}
			},
		},
		{
			name: "Runs.ArchivedLogs", pattern: "GET /v2/clickhouse-run-logs/{id}",
			response: `[{"run_id":"r","timestamp":"2025-01-01T10:05:00.000Z","log":"boom","log_type":"stderr"}]`,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Runs.ArchivedLogs(ctx, "r") },
			wantPath: "/v2/clickhouse-run-logs/r",
			check: func(t *testing.T, got any) {
				logs := got.([]RunLog)
				if len(logs) != 1 || logs[0].Log != "boom" || logs[0].LogType != "stderr" || !logs[0].Timestamp.Equal(t0) {
					t.Errorf("logs = %+v", logs)
				}
			},
		},
		{
			name: "Deployments.List", pattern: "GET /deployments", response: `[` + sampleDeploymentJSON + `]`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Deployments.List(ctx, &DeploymentListOptions{Environment: "production", IsFluid: true, PageSize: 10, Offset: 20})
			},
			wantPath:  "/deployments",
			wantQuery: url.Values{"environment": {"production"}, "is_fluid": {"true"}, "page_size": {"10"}, "offset": {"20"}},
			check:     func(t *testing.T, got any) { assertEq(t, got.([]Deployment)[0].ID, "dep-1") },
		},
		{
			name: "Deployments.Get", pattern: "GET /deployment/{id}", response: sampleDeploymentJSON,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Deployments.Get(ctx, "dep-1") },
			wantPath: "/deployment/dep-1",
			check: func(t *testing.T, got any) {
				d := got.(*Deployment)
				assertEq(t, d.MachineID, "m-1")
				assertEq(t, d.ConcurrencyLimit, 2)
				assertEq(t, d.RunTimeout, 300)
				assertEq(t, len(d.InputTypes), 3)
				assertEq(t, d.InputTypes[1].Type, InputInteger)
				if d.InputTypes[1].MinValue == nil || *d.InputTypes[1].MinValue != 1 || *d.InputTypes[1].MaxValue != 50 {
					t.Errorf("bounds = %v %v", d.InputTypes[1].MinValue, d.InputTypes[1].MaxValue)
				}
				assertEq(t, strings.Join(d.InputTypes[2].EnumOptions, ","), "a,b,3")
				assertEq(t, d.OutputTypes[0].OutputID, "final")
				if !d.ActivatedAt.IsZero() {
					t.Error("ActivatedAt should be zero for null")
				}
			},
		},
		{
			name: "Deployments.ListRuns envelope", pattern: "GET /deployment/{id}/runs",
			response: `{"data":[{"id":"r1","status":"success","deployment_id":"dep-1","duration":12.5,"created_at":"2025-01-01T10:05Z"}],"meta":{"total":1}}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Deployments.ListRuns(ctx, "dep-1", &ListOptions{Limit: 5, Offset: 10})
			},
			wantPath: "/deployment/dep-1/runs", wantQuery: url.Values{"limit": {"5"}, "offset": {"10"}},
			check: func(t *testing.T, got any) {
				runs := got.([]Run)
				if len(runs) != 1 || runs[0].DeploymentID != "dep-1" || *runs[0].Duration != 12.5 {
					t.Errorf("runs = %+v", runs)
				}
			},
		},
		{
			name: "Deployments.Create", pattern: "POST /deployment", response: `{"id":"d9"}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Deployments.Create(ctx, &CreateDeploymentRequest{WorkflowID: "w", WorkflowVersionID: "v", Environment: "staging", MachineID: "m"})
			},
			wantPath: "/deployment",
			wantBody: `{"workflow_id":"w","workflow_version_id":"v","environment":"staging","machine_id":"m"}`,
		},
		{
			name: "Deployments.Update", pattern: "PATCH /deployment/{id}", response: `{"id":"d9","keep_warm":1}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Deployments.Update(ctx, "d9", &UpdateDeploymentRequest{KeepWarm: ptr(1), GPU: ptr(GPUH100)})
			},
			wantPath: "/deployment/d9", wantBody: `{"keep_warm":1,"gpu":"H100"}`,
			check: func(t *testing.T, got any) { assertEq(t, got.(*Deployment).KeepWarm, 1) },
		},
		{
			name: "Deployments.Deactivate", pattern: "POST /deployment/{id}/deactivate", response: `{"id":"d9","activated_at":null}`,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Deployments.Deactivate(ctx, "d9") },
			wantPath: "/deployment/d9/deactivate",
		},
		{
			name: "Deployments.Delete", pattern: "DELETE /deployment/{id}", response: `{"message":"deleted"}`,
			call:     func(ctx context.Context, c *Client) (any, error) { return nil, c.Deployments.Delete(ctx, "d9") },
			wantPath: "/deployment/d9",
		},
		{
			name: "Machines.List", pattern: "GET /machines", response: `[` + sampleMachineJSON + `]`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Machines.List(ctx, &MachineListOptions{Search: "gpu", Limit: 3, IsDocker: ptr(true), IncludeDockerCommandSteps: ptr(true)})
			},
			wantPath:  "/machines",
			wantQuery: url.Values{"search": {"gpu"}, "limit": {"3"}, "is_docker": {"true"}, "include_docker_command_steps": {"true"}},
			check:     func(t *testing.T, got any) { assertEq(t, got.([]Machine)[0].Name, "sdxl") },
		},
		{
			name: "Machines.Get", pattern: "GET /machine/{id}", response: sampleMachineJSON,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Machines.Get(ctx, "m-1") },
			wantPath: "/machine/m-1",
			check: func(t *testing.T, got any) {
				m := got.(*Machine)
				assertEq(t, m.Type, MachineComfyDeployServerless)
				assertEq(t, m.Status, MachineReady)
				assertEq(t, m.MachineBuilderVersion, "4")
				assertEq(t, m.ImportFailedLogs, `[{"node":"x","error":"y"}]`)
				assertEq(t, m.KeepWarm, 0)
				assertEq(t, m.ConcurrencyLimit, 2)
				if !m.HasCustomNode("https://github.com/BennyKok/comfyui-deploy") || !m.HasCustomNodeID("comfyui-kjnodes") {
					t.Error("custom nodes not found")
				}
				if !m.CreatedAt.Equal(time.Date(2025, 1, 1, 10, 5, 6, 123456000, time.UTC)) {
					t.Errorf("CreatedAt = %v", m.CreatedAt)
				}
			},
		},
		{
			name: "Machines.ListServerlessVersions", pattern: "GET /machine/serverless/{id}/versions",
			response: `[{"id":"mv1","machine_id":"m-1","version":"3","status":"ready","gpu":"A10G","comfyui_version":"abc"}]`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Machines.ListServerlessVersions(ctx, "m-1", &ListOptions{Limit: 1})
			},
			wantPath: "/machine/serverless/m-1/versions", wantQuery: url.Values{"limit": {"1"}},
			check: func(t *testing.T, got any) {
				v := got.([]MachineVersion)[0]
				assertEq(t, v.Version, 3)
				assertEq(t, v.Status, MachineReady)
			},
		},
		{
			name: "Machines.GetServerlessVersion", pattern: "GET /machine/serverless/{id}/versions/{vid}", response: `{"id":"mv1","version":2}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Machines.GetServerlessVersion(ctx, "m-1", "mv1")
			},
			wantPath: "/machine/serverless/m-1/versions/mv1",
			check:    func(t *testing.T, got any) { assertEq(t, got.(*MachineVersion).Version, 2) },
		},
		{
			name: "Machines.CheckCustomNodes", pattern: "GET /machine/{id}/check-custom-nodes",
			response: `{"status":"ok","local_commit":{"hash":"a","message":"m","date":"2025-01-01T10:05:00Z"},"latest_commit":{"hash":"b"},"is_up_to_date":false}`,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Machines.CheckCustomNodes(ctx, "m-1") },
			wantPath: "/machine/m-1/check-custom-nodes",
			check: func(t *testing.T, got any) {
				ck := got.(*CustomNodeCheck)
				if ck.IsUpToDate || ck.LocalCommit.Hash != "a" || ck.LatestCommit.Hash != "b" || !ck.LocalCommit.Date.Equal(t0) {
					t.Errorf("check = %+v", ck)
				}
			},
		},
		{
			name: "Machines.Events", pattern: "GET /machine/{id}/events",
			response: `[{"id":"e1","machine_id":"m-1","gpu":"A10G","start_time":"2025-01-01T10:05Z","cost":0.1}]`,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Machines.Events(ctx, "m-1") },
			wantPath: "/machine/m-1/events",
			check: func(t *testing.T, got any) {
				e := got.([]GPUEvent)[0]
				if e.ID != "e1" || e.GPU != "A10G" || !e.StartTime.Equal(t0) || !strings.Contains(string(e.Raw), `"cost"`) {
					t.Errorf("event = %+v", e)
				}
			},
		},
		{
			name: "Workflows.List", pattern: "GET /workflows", response: `[{"id":"w1","name":"flux","pinned":true}]`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Workflows.List(ctx, &WorkflowListOptions{Search: "fl", Limit: 2, UserIDs: []string{"u1", "u2"}, MachineID: "m"})
			},
			wantPath:  "/workflows",
			wantQuery: url.Values{"search": {"fl"}, "limit": {"2"}, "user_ids": {"u1,u2"}, "machine_id": {"m"}},
			check:     func(t *testing.T, got any) { assertEq(t, got.([]Workflow)[0].Pinned, true) },
		},
		{
			name: "Workflows.Get", pattern: "GET /workflow/{id}", response: `{"id":"w1","name":"flux","versions":[` + sampleVersionJSON + `]}`,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Workflows.Get(ctx, "w1") },
			wantPath: "/workflow/w1",
			check: func(t *testing.T, got any) {
				w := got.(*Workflow)
				assertEq(t, len(w.Versions), 1)
				assertEq(t, w.Versions[0].Version, 4)
			},
		},
		{
			name: "Workflows.ListVersions", pattern: "GET /workflow/{id}/versions", response: `[` + sampleVersionJSON + `]`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Workflows.ListVersions(ctx, "w1", &VersionListOptions{Search: "fix", Limit: 1})
			},
			wantPath: "/workflow/w1/versions", wantQuery: url.Values{"search": {"fix"}, "limit": {"1"}},
		},
		{
			name: "Workflows.GetVersion", pattern: "GET /workflow/{id}/version/{n}", response: sampleVersionJSON,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Workflows.GetVersion(ctx, "w1", 4) },
			wantPath: "/workflow/w1/version/4",
			check: func(t *testing.T, got any) {
				v := got.(*WorkflowVersion)
				assertEq(t, strings.Join(v.CustomNodeURLs(), " "), "https://github.com/BennyKok/comfyui-deploy https://github.com/kijai/ComfyUI-KJNodes.git")
				assertEq(t, strings.Join(v.CustomNodeIDs(), " "), "comfyui-impact-pack")
				assertEq(t, strings.Join(v.Dependencies.MissingNodes, ","), "Foo")
				assertEq(t, string(v.WorkflowAPI), `{"3":{"class_type":"KSampler"}}`)
			},
		},
		{
			name: "Workflows.GetVersionByID", pattern: "GET /workflow-version/{id}", response: sampleVersionJSON,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Workflows.GetVersionByID(ctx, "v-4") },
			wantPath: "/workflow-version/v-4",
			check:    func(t *testing.T, got any) { assertEq(t, got.(*WorkflowVersion).ID, "v-4") },
		},
		{
			name: "Workflows.CreateVersion", pattern: "POST /workflow/{id}/version", response: `{"id":"v-5","version":5}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Workflows.CreateVersion(ctx, "w1", &CreateVersionRequest{
					Workflow: json.RawMessage(`{"nodes":[]}`), WorkflowAPI: json.RawMessage(`{}`), Comment: "c", MachineID: "m",
				})
			},
			wantPath: "/workflow/w1/version",
			wantBody: `{"workflow":{"nodes":[]},"workflow_api":{},"comment":"c","machine_id":"m"}`,
			check:    func(t *testing.T, got any) { assertEq(t, got.(*WorkflowVersion).Version, 5) },
		},
		{
			name: "Workflows.Create", pattern: "POST /workflow", response: `{"id":"w2","name":"n"}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Workflows.Create(ctx, &CreateWorkflowRequest{Name: "n", WorkflowJSON: `{}`})
			},
			wantPath: "/workflow", wantBody: `{"name":"n","workflow_json":"{}"}`,
		},
		{
			name: "Workflows.ListRuns", pattern: "GET /workflow/{id}/runs", response: `[` + sampleRunJSON + `]`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Workflows.ListRuns(ctx, "w1", &WorkflowRunsOptions{Limit: 20, WithOutputs: ptr(false), WithInputs: ptr(true)})
			},
			wantPath:  "/workflow/w1/runs",
			wantQuery: url.Values{"limit": {"20"}, "with_outputs": {"false"}, "with_inputs": {"true"}},
			check:     func(t *testing.T, got any) { assertEq(t, CorrelationToken(&got.([]Run)[0]), "tok-1") },
		},
		{
			name: "Workflows.ListRunsV2", pattern: "GET /v2/workflow/{id}/runs", response: `[{"id":"r1","status":"queued"}]`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Workflows.ListRunsV2(ctx, "w1", &WorkflowRunsV2Options{Status: StatusQueued, DeploymentID: "d", Since: t0, Limit: 3})
			},
			wantPath:  "/v2/workflow/w1/runs",
			wantQuery: url.Values{"status": {"queued"}, "deployment_id": {"d"}, "rf": {"1735725900"}, "limit": {"3"}},
		},
		{
			name: "Workflows.FindRunByCorrelationToken", pattern: "GET /workflow/{id}/runs",
			response: `[{"id":"other","workflow_inputs":{"__cid":"zzz"}},` + sampleRunJSON + `]`,
			call: func(ctx context.Context, c *Client) (any, error) {
				lookup, err := c.Workflows.FindRunByCorrelationToken(ctx, "w1", "tok-1", nil)
				if err == nil && !lookup.Found() {
					return nil, errors.New("not found")
				}
				return lookup.Run, err
			},
			wantPath:  "/workflow/w1/runs",
			wantQuery: url.Values{"limit": {"100"}, "with_outputs": {"false"}, "with_inputs": {"true"}},
			check:     func(t *testing.T, got any) { assertEq(t, got.(*Run).ID, "run-1") },
		},
		{
			name: "Files.Rename", pattern: "POST /file/{id}/rename", response: `{"id":"f1","model_name":"new.safetensors","size":12}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Files.Rename(ctx, "f1", "new.safetensors")
			},
			wantPath: "/file/f1/rename", wantBody: `{"filename":"new.safetensors"}`,
			check: func(t *testing.T, got any) {
				m := got.(*ModelFile)
				if m.ModelName != "new.safetensors" || !strings.Contains(string(m.Raw), `"size"`) {
					t.Errorf("model = %+v", m)
				}
			},
		},
		{
			name: "Assets.List", pattern: "GET /assets", response: `[` + sampleAssetJSON + `]`,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Assets.List(ctx, "/inputs") },
			wantPath: "/assets", wantQuery: url.Values{"path": {"/inputs"}},
			check: func(t *testing.T, got any) {
				a := got.([]Asset)[0]
				assertEq(t, a.FileSize, int64(2048))
				assertEq(t, a.MimeType, "image/png")
			},
		},
		{
			name: "Assets.Get", pattern: "GET /assets/{id}", response: sampleAssetJSON,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Assets.Get(ctx, "a1") },
			wantPath: "/assets/a1",
		},
		{
			name: "Assets.CreateFolder", pattern: "POST /assets/folder", response: `{"id":"f","is_folder":true}`,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Assets.CreateFolder(ctx, "refs", "") },
			wantPath: "/assets/folder", wantBody: `{"name":"refs","parent_path":"/"}`,
			check: func(t *testing.T, got any) { assertEq(t, got.(*Asset).IsFolder, true) },
		},
		{
			name: "Assets.PresignedURL", pattern: "GET /assets/presigned-url",
			response: `{"url":"https://s3/put","download_url":"https://s3/get","file_id":"fid","db_path":"/x.png","is_public":true}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Assets.PresignedURL(ctx, &PresignedURLRequest{FileName: "x.png", ContentType: "image/png", ParentPath: "/", Size: 10})
			},
			wantPath:  "/assets/presigned-url",
			wantQuery: url.Values{"file_name": {"x.png"}, "type": {"image/png"}, "parent_path": {"/"}, "size": {"10"}},
			check:     func(t *testing.T, got any) { assertEq(t, got.(*PresignedUpload).IsPublic, true) },
		},
		{
			name: "Assets.Register", pattern: "POST /assets/register", response: sampleAssetJSON,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Assets.Register(ctx, &RegisterAssetRequest{FileID: "fid", FileName: "x.png", FileSize: 10, DBPath: "/x.png", URL: "https://s3/get", MimeType: "image/png"})
			},
			wantPath: "/assets/register",
			wantBody: `{"file_id":"fid","file_name":"x.png","file_size":10,"db_path":"/x.png","url":"https://s3/get","mime_type":"image/png"}`,
		},
		{
			name: "Assets.AddByURL", pattern: "POST /assets/add", response: sampleAssetJSON,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Assets.AddByURL(ctx, "https://example.com/a.png", "/refs")
			},
			wantPath: "/assets/add", wantBody: `{"url":"https://example.com/a.png","path":"/refs"}`,
		},
		{
			name: "Assets.Move", pattern: "PATCH /assets/{id}", response: sampleAssetJSON,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Assets.Move(ctx, "a1", "/archive") },
			wantPath: "/assets/a1", wantBody: `{"path":"/archive"}`,
		},
		{
			name: "Assets.Delete", pattern: "DELETE /assets/{id}", response: `{"message":"ok"}`,
			call:     func(ctx context.Context, c *Client) (any, error) { return nil, c.Assets.Delete(ctx, "a1") },
			wantPath: "/assets/a1",
		},
		{
			name: "Assets.Search", pattern: "GET /assets/search", response: `[` + sampleAssetJSON + `]`,
			call:     func(ctx context.Context, c *Client) (any, error) { return c.Assets.Search(ctx, "cat", 5) },
			wantPath: "/assets/search", wantQuery: url.Values{"query": {"cat"}, "limit": {"5"}},
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t)
			method, path, _ := strings.Cut(tc.pattern, " ")
			status := tc.status
			if status == 0 {
				status = http.StatusOK
			}
			f.json(method+" /api"+path, status, tc.response)
			got, err := tc.call(context.Background(), f.client())
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if f.count() != 1 {
				t.Fatalf("requests = %d, want 1", f.count())
			}
			r := f.last()
			assertEq(t, r.Method, method)
			assertEq(t, r.Path, "/api"+tc.wantPath)
			assertEq(t, r.Header.Get("Authorization"), "Bearer "+testKey)
			if tc.wantQuery != nil {
				gotQ, _ := url.ParseQuery(r.Query)
				if !reflect.DeepEqual(gotQ, tc.wantQuery) && !(len(gotQ) == 0 && len(tc.wantQuery) == 0) {
					t.Errorf("query = %v, want %v", gotQ, tc.wantQuery)
				}
			}
			if tc.wantBody != "" {
				assertEq(t, r.ContentType, "application/json")
				assertJSONEqual(t, r.Body, tc.wantBody)
			} else if len(r.Body) != 0 {
				t.Errorf("unexpected body %q", r.Body)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
}

func TestRunRequestValidation(t *testing.T) {
	f := newFakeAPI(t)
	c := f.client()
	ctx := context.Background()
	errs := []error{}
	_, err := c.Runs.QueueDeployment(ctx, nil)
	errs = append(errs, err)
	_, err = c.Runs.QueueDeployment(ctx, &DeploymentRunRequest{})
	errs = append(errs, err)
	_, err = c.Runs.QueueWorkflow(ctx, &WorkflowRunRequest{WorkflowID: "w"})
	errs = append(errs, err)
	_, err = c.Runs.StreamWorkflow(ctx, &WorkflowRunRequest{WorkflowAPIJSON: []byte("{}")})
	errs = append(errs, err)
	_, err = c.Files.Rename(ctx, "f", "../etc/passwd")
	errs = append(errs, err)
	_, err = c.Streams.Progress(ctx, ProgressStreamOptions{RunID: "r", MachineID: "m"})
	errs = append(errs, err)
	_, err = c.Streams.Logs(ctx, LogStreamOptions{})
	errs = append(errs, err)
	for i, err := range errs {
		if !IsValidation(err) || !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("case %d: err = %v, want ErrInvalidArgument", i, err)
		}
	}
	if f.count() != 0 {
		t.Errorf("invalid requests reached the server: %d", f.count())
	}
}

func TestFileUploads(t *testing.T) {
	f := newFakeAPI(t)
	f.json("POST /api/file/upload", 200, `{"message":"ok","file_id":"img_1","file_name":"cat.png","file_url":"https://s3/cat.png"}`)
	f.json("POST /api/assets/upload", 200, sampleAssetJSON)
	c := f.client()

	up, err := c.Files.Upload(context.Background(), "dir/cat.png", strings.NewReader("PNGDATA"))
	if err != nil {
		t.Fatal(err)
	}
	if up.FileID != "img_1" || up.FileURL != "https://s3/cat.png" {
		t.Errorf("upload = %+v", up)
	}
	name, ctype, content := parseMultipartFile(t, f.last())
	assertEq(t, f.last().Path, "/api/file/upload")
	assertEq(t, name, "cat.png")
	assertEq(t, ctype, "image/png")
	assertEq(t, content, "PNGDATA")

	asset, err := c.Assets.Upload(context.Background(), "/refs", "a.webp", strings.NewReader("W"))
	if err != nil {
		t.Fatal(err)
	}
	assertEq(t, asset.ID, "a1")
	assertEq(t, f.last().Query, "parent_path=%2Frefs")
	_, _, content = parseMultipartFile(t, f.last())
	assertEq(t, content, "W")
}

func TestUploadNotRetried(t *testing.T) {
	f := newFakeAPI(t)
	f.json("POST /api/file/upload", 503, `{}`)
	c := f.client()
	_, err := c.Files.Upload(WithIdempotent(context.Background()), "a.png", strings.NewReader("x"))
	if !IsRetryable(err) || f.count() != 1 {
		t.Errorf("err = %v, calls = %d", err, f.count())
	}
}

func parseMultipartFile(t *testing.T, r recordedRequest) (filename, contentType, content string) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(r.ContentType)
	if err != nil || mt != "multipart/form-data" {
		t.Fatalf("content type %q: %v", r.ContentType, err)
	}
	mr := multipart.NewReader(strings.NewReader(string(r.Body)), params["boundary"])
	part, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if part.FormName() != "file" {
		t.Errorf("form field = %q, want file", part.FormName())
	}
	b, _ := io.ReadAll(part)
	return part.FileName(), part.Header.Get("Content-Type"), string(b)
}

func TestPutPresignedSendsNoAPIKey(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("PUT /bucket/{key}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	f.json("PUT /denied/{key}", 403, `<Error><Code>SignatureDoesNotMatch</Code></Error>`)
	c := f.client()
	up := &PresignedUpload{URL: f.srv.URL + "/bucket/x.png?X-Amz-Signature=s3cr3t", IsPublic: true}
	if err := c.Assets.PutPresigned(context.Background(), up, "image/png", strings.NewReader("data"), 4); err != nil {
		t.Fatal(err)
	}
	r := f.last()
	assertEq(t, r.Method, "PUT")
	assertEq(t, r.Header.Get("Authorization"), "")
	assertEq(t, r.Header.Get("x-amz-acl"), "public-read")
	assertEq(t, r.Header.Get("Content-Type"), "image/png")
	assertEq(t, string(r.Body), "data")

	up.URL = f.srv.URL + "/denied/x.png?X-Amz-Signature=s3cr3t"
	err := c.Assets.PutPresigned(context.Background(), up, "image/png", strings.NewReader("data"), 4)
	if !IsForbidden(err) || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("err = %v", err)
	}
}

func assertEq[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("got %#v, want %#v", got, want)
	}
}

const sampleRunJSON = `{
  "id": "run-1", "workflow_id": "w1", "workflow_version_id": "v-4", "machine_id": "m-1",
  "user_id": "u", "org_id": null, "origin": "api", "status": "running",
  "live_status": null, "progress": 0.42,
  "created_at": "2025-01-01T10:05Z", "updated_at": "2025-01-01T10:05:06.123Z",
  "queued_at": "2025-01-01T10:05:06.123456", "started_at": "2025-01-01T12:05:06+02:00", "ended_at": null,
  "duration": null, "cold_start_duration": 1.5, "queue_position": 2,
  "gpu": "A10G", "gpu_event_id": "g1", "machine_type": "comfy-deploy-serverless", "machine_version": 7,
  "modal_function_call_id": "fc-1", "workflow_inputs": {"prompt": "cat", "__cid": "tok-1"},
  "webhook": "https://hook.example/cb?cid=tok-1&exp=1&sig=x", "webhook_status": null, "number": 0,
  "outputs": [
    {"id": "o1", "run_id": "run-1", "output_id": "final",
     "data": {"text": ["hello"], "images": [{"url": "https://s3/a.png", "type": "output", "filename": "a.png", "is_public": false, "subfolder": "", "upload_duration": 0.3}],
              "files": [{"url": "https://s3/v.mp4", "type": "output", "filename": "v.mp4"}], "flags": [true], "weird": "scalar"},
     "node_meta": {"node_id": "9", "node_class": "ComfyDeployStdOutputImage"}},
    {"id": "o2", "run_id": "run-1", "output_id": null,
     "data": {"gifs": [{"url": "https://s3/g.gif", "type": "output", "filename": "g.gif", "output_id": "anim", "format": "image/gif"}], "mesh": [{"url":"https://s3/m.glb","filename":"m.glb","type":"output"}], "zz_custom": [{"url":"https://s3/c.bin","filename":"c.bin"}], "text": ["world", 3]}}
  ]
}`

const sampleDeploymentJSON = `{
  "id": "dep-1", "workflow_id": "w1", "workflow_version_id": "v-4", "machine_id": "m-1", "machine_version_id": "mv1",
  "environment": "production", "description": null, "gpu": null, "concurrency_limit": 2, "run_timeout": "300",
  "idle_timeout": null, "keep_warm": 0, "activated_at": null, "modal_image_id": null,
  "input_types": [
    {"input_id": "prompt", "class_type": "ComfyUIDeployExternalText", "type": "string", "default_value": "a cat", "required": true},
    {"input_id": "steps", "class_type": "ComfyUIDeployExternalNumberInt", "type": "integer", "default_value": 20, "min_value": 1, "max_value": "50"},
    {"input_id": "mode", "class_type": "ComfyUIDeployExternalEnum", "type": "string", "enum_options": ["a", "b", 3]}
  ],
  "output_types": [{"class_type": "ComfyDeployStdOutputImage", "output_id": "final"}],
  "created_at": "2025-01-01T10:05Z", "extra_field": {"ignored": true}
}`

const sampleMachineJSON = `{
  "id": "m-1", "name": "sdxl", "type": "comfy-deploy-serverless", "status": "ready", "gpu": "A10G",
  "machine_builder_version": 4, "comfyui_version": "abc", "import_failed_logs": [{"node":"x","error":"y"}],
  "concurrency_limit": 2, "keep_warm": null, "deleted": false, "created_at": "2025-01-01T10:05:06.123456",
  "docker_command_steps": {"steps": [
    {"type": "custom-node", "data": {"url": "https://github.com/BennyKok/comfyui-deploy.git", "hash": "abc", "install_type": "git-clone", "pip": ["x"]}},
    {"type": "custom-node-manager", "data": {"node_id": "comfyui-kjnodes", "version": 1.2}},
    {"type": "commands", "data": "RUN echo hi"}
  ]}
}`

const sampleVersionJSON = `{
  "id": "v-4", "workflow_id": "w1", "version": 4, "comment": "fix", "machine_id": "m-1",
  "workflow": {"nodes": []}, "workflow_api": "{\"3\":{\"class_type\":\"KSampler\"}}",
  "dependencies": {"comfyui": "abc", "missing_nodes": ["Foo"], "models": {}, "files": [],
    "custom_nodes": {"https://github.com/BennyKok/comfyui-deploy": {"url": "https://github.com/BennyKok/comfyui-deploy", "hash": "h", "install_type": "git-clone", "pip": ["a"]}}},
  "comfyui_snapshot": "{\"comfyui\":\"abc\",\"git_custom_nodes\":{\"https://github.com/kijai/ComfyUI-KJNodes.git\":{\"hash\":\"k\",\"disabled\":false},\"https://github.com/x/disabled\":{\"hash\":\"d\",\"disabled\":true},\"https://github.com/bennykok/comfyui-deploy/\":{\"hash\":\"h\"}},\"cnr_custom_nodes\":{\"comfyui-impact-pack\":8.1}}",
  "created_at": "2025-01-01T10:05Z"
}`

const sampleAssetJSON = `{"id":"a1","user_id":"u","org_id":null,"name":"x.png","is_folder":false,"path":"/x.png","file_size":2048.0,"url":"https://s3/x.png","mime_type":"image/png","created_at":"2025-01-01T10:05Z","deleted":false}`
