package comfy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestTimeFormats(t *testing.T) {
	cases := map[string]time.Time{
		`"2025-01-01T10:05Z"`:              time.Date(2025, 1, 1, 10, 5, 0, 0, time.UTC),
		`"2025-01-01T10:05:06.123Z"`:       time.Date(2025, 1, 1, 10, 5, 6, 123e6, time.UTC),
		`"2025-01-01T10:05:06.123456"`:     time.Date(2025, 1, 1, 10, 5, 6, 123456e3, time.UTC),
		`"2025-01-01T10:05:06"`:            time.Date(2025, 1, 1, 10, 5, 6, 0, time.UTC),
		`"2025-01-01T10:05"`:               time.Date(2025, 1, 1, 10, 5, 0, 0, time.UTC),
		`"2025-01-01T10:05:06+02:00"`:      time.Date(2025, 1, 1, 8, 5, 6, 0, time.UTC),
		`"2025-01-01T10:05+02:00"`:         time.Date(2025, 1, 1, 8, 5, 0, 0, time.UTC),
		`"2025-01-01 10:05:06.5+00:00"`:    time.Date(2025, 1, 1, 10, 5, 6, 5e8, time.UTC),
		`"2025-01-01T10:05:06.123456789Z"`: time.Date(2025, 1, 1, 10, 5, 6, 123456789, time.UTC),
		`"2025-01-01T10:05:06-0500"`:       time.Date(2025, 1, 1, 15, 5, 6, 0, time.UTC),
		`"2025-01-01"`:                     time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		`"2025-01-01t10:05:06z"`:           time.Date(2025, 1, 1, 10, 5, 6, 0, time.UTC),
		`1735725906.5`:                     time.Date(2025, 1, 1, 10, 5, 6, 5e8, time.UTC),
		`null`:                             {},
		`""`:                               {},
		`"not a time"`:                     {},
		`{"x":1}`:                          {},
		`true`:                             {},
		`-5`:                               {},
		`99999999999999`:                   {},
	}
	for in, want := range cases {
		var got Time
		if err := json.Unmarshal([]byte(in), &got); err != nil {
			t.Errorf("%s: unexpected error %v", in, err)
			continue
		}
		if !got.Equal(want) || got.IsZero() != want.IsZero() {
			t.Errorf("%s: got %v, want %v", in, got.Time, want)
		}
		if !got.IsZero() && got.Location() != time.UTC {
			t.Errorf("%s: location %v, want UTC", in, got.Location())
		}
	}
}

func TestTimeMarshal(t *testing.T) {
	b, _ := json.Marshal(Time{})
	assertEq(t, string(b), "null")
	tm := Time{time.Date(2025, 1, 1, 12, 5, 6, 120e6, time.FixedZone("x", 7200))}
	b, _ = json.Marshal(tm)
	assertEq(t, string(b), `"2025-01-01T10:05:06.12Z"`)
	var back Time
	if err := json.Unmarshal(b, &back); err != nil || !back.Equal(tm.Time) {
		t.Errorf("round trip: %v %v", back, err)
	}
	assertEq(t, tm.String(), "2025-01-01T10:05:06.12Z")
	// Nested in a struct, a zero time is null.
	b, _ = json.Marshal(struct {
		At Time `json:"at"`
	}{})
	assertEq(t, string(b), `{"at":null}`)
}

func TestParseTimeStrict(t *testing.T) {
	if _, err := ParseTime("yesterday"); err == nil {
		t.Error("want error")
	}
	got, err := ParseTime("2025-01-01T10:05Z")
	if err != nil || !got.Equal(time.Date(2025, 1, 1, 10, 5, 0, 0, time.UTC)) {
		t.Errorf("got %v, %v", got, err)
	}
}

func TestRunDecoding(t *testing.T) {
	var r Run
	if err := json.Unmarshal([]byte(sampleRunJSON), &r); err != nil {
		t.Fatal(err)
	}
	assertEq(t, r.LiveStatus, "")
	assertEq(t, r.Progress, 0.42)
	assertEq(t, r.MachineVersion, "7")
	assertEq(t, r.MachineType, MachineComfyDeployServerless)
	assertEq(t, r.OrgID, "")
	if r.Duration != nil || r.ColdStartDuration == nil || *r.ColdStartDuration != 1.5 {
		t.Errorf("durations: %v %v", r.Duration, r.ColdStartDuration)
	}
	if !r.StartedAt.Equal(time.Date(2025, 1, 1, 10, 5, 6, 0, time.UTC)) || !r.EndedAt.IsZero() {
		t.Errorf("times: %v %v", r.StartedAt, r.EndedAt)
	}
	if len(r.Outputs) != 2 {
		t.Fatalf("outputs = %d", len(r.Outputs))
	}
	img := r.Outputs[0].Data["images"][0].Media
	if img == nil || img.Type != "output" || img.IsPublic == nil || *img.IsPublic || *img.UploadDuration != 0.3 {
		t.Errorf("image = %+v", img)
	}
	if v := r.Outputs[0].Data["weird"]; len(v) != 1 || v[0].Text == nil || *v[0].Text != "scalar" {
		t.Errorf("non-list data value = %+v", v)
	}
	if v := r.Outputs[0].Data["flags"][0]; v.Bool == nil || !*v.Bool {
		t.Errorf("bool value = %+v", v)
	}
	if v := r.Outputs[1].Data["text"][1]; string(v.Raw) != "3" || v.Text != nil {
		t.Errorf("raw value = %+v", v)
	}

	var kinds, ids, names []string
	for _, m := range r.MediaItems() {
		kinds = append(kinds, m.Kind)
		ids = append(ids, m.OutputID)
		names = append(names, m.Item.Filename)
	}
	assertEq(t, strings.Join(kinds, ","), "images,files,gifs,mesh,zz_custom")
	assertEq(t, strings.Join(names, ","), "a.png,v.mp4,g.gif,m.glb,c.bin")
	assertEq(t, strings.Join(ids, ","), "final,final,anim,,")
	assertEq(t, strings.Join(r.Texts(), ","), "hello,scalar,world")
}

func TestRunRoundTrip(t *testing.T) {
	var r Run
	if err := json.Unmarshal([]byte(sampleRunJSON), &r); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	var back Run
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.MediaItems(), back.MediaItems()) || !reflect.DeepEqual(r.Texts(), back.Texts()) || back.Status != r.Status {
		t.Errorf("round trip changed the run:\n%s", b)
	}
}

func TestRunToleratesOddShapes(t *testing.T) {
	in := `{"id":"r","status":"success","outputs":"nope","workflow_inputs":null,"machine_version":{"x":1},"queue_position":null}`
	var r Run
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusSuccess || r.Outputs != nil || r.QueuePosition != nil || r.MachineVersion != "" {
		t.Errorf("run = %+v", r)
	}
	in = `{"id":"r","outputs":[{"id":5,"data":[1,2]},{"id":"ok","data":{"images":[{"url":"u","filename":"f","subfolder":3}]}}]}`
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Outputs) != 2 || r.Outputs[1].Data["images"][0].Media == nil || r.Outputs[1].Data["images"][0].Media.Subfolder != "3" {
		t.Errorf("outputs = %+v", r.Outputs)
	}
}

func TestRunStatus(t *testing.T) {
	for _, s := range []RunStatus{StatusSuccess, StatusFailed, StatusTimeout, StatusCancelled} {
		if !s.IsTerminal() {
			t.Errorf("%s should be terminal", s)
		}
	}
	for _, s := range []RunStatus{StatusNotStarted, StatusQueued, StatusStarted, StatusRunning, StatusUploading, "", "new"} {
		if s.IsTerminal() {
			t.Errorf("%s should not be terminal", s)
		}
	}
	cases := []struct {
		next, prev RunStatus
		want       bool
	}{
		{StatusQueued, "", true},
		{StatusRunning, StatusQueued, true},
		{StatusRunning, StatusNotStarted, true}, // classic machines skip queued/started
		{StatusQueued, StatusRunning, false},    // out of order
		{StatusRunning, StatusRunning, false},   // duplicate
		{StatusSuccess, StatusRunning, true},
		{StatusSuccess, StatusSuccess, false}, // late duplicate after terminal
		{StatusFailed, StatusSuccess, false},  // terminal sticks
		{StatusCancelled, StatusUploading, true},
		{StatusNotStarted, "", true},
	}
	for _, c := range cases {
		if got := c.next.Supersedes(c.prev); got != c.want {
			t.Errorf("%q.Supersedes(%q) = %v", c.next, c.prev, got)
		}
	}
}

func TestCorrelationToken(t *testing.T) {
	assertEq(t, CorrelationToken(nil), "")
	assertEq(t, CorrelationToken(&Run{WorkflowInputs: map[string]any{CorrelationInputKey: "a"}}), "a")
	assertEq(t, CorrelationToken(&Run{WorkflowInputs: map[string]any{CorrelationInputKey: 12.0}}), "12")
	assertEq(t, CorrelationToken(&Run{Webhook: "https://h/cb?target_events=run.output&cid=b"}), "b")
	assertEq(t, CorrelationToken(&Run{WorkflowInputs: map[string]any{"x": 1.0}, Webhook: "https://h/cb"}), "")

	var req WorkflowRunRequest
	req.SetCorrelationToken("z")
	assertEq(t, req.Inputs[CorrelationInputKey], any("z"))
}

func TestMachineTypeCapabilities(t *testing.T) {
	type caps struct{ queue, cancel, sync bool }
	want := map[MachineType]caps{
		MachineClassic:               {true, false, false},
		MachineRunpodServerless:      {true, false, false},
		MachineModalServerless:       {false, false, false},
		MachineComfyDeployServerless: {true, true, true},
		MachineWorkspace:             {false, false, false},
		MachineWorkspaceV2:           {false, false, false},
		"unknown":                    {false, false, false},
	}
	for mt, w := range want {
		got := caps{mt.CanQueue(), mt.CanCancel(), mt.CanSyncOrStream()}
		if got != w {
			t.Errorf("%s: %+v, want %+v", mt, got, w)
		}
	}
	if !MachineReady.IsReady() || !MachineRunning.IsReady() || MachineBuilding.IsReady() || MachineError.IsReady() {
		t.Error("IsReady wrong")
	}
}

func TestNormalizeGitURL(t *testing.T) {
	same := []string{
		"https://github.com/BennyKok/comfyui-deploy",
		"https://github.com/bennykok/comfyui-deploy.git",
		"https://github.com/BennyKok/comfyui-deploy/",
		"http://www.github.com/BennyKok/comfyui-deploy.git/",
		"git@github.com:BennyKok/comfyui-deploy.git",
		"  GITHUB.COM/bennykok/COMFYUI-DEPLOY  ",
	}
	for _, u := range same {
		assertEq(t, NormalizeGitURL(u), "github.com/bennykok/comfyui-deploy")
	}
	if NormalizeGitURL("https://github.com/a/b") == NormalizeGitURL("https://github.com/a/bc") {
		t.Error("different repos normalised equal")
	}
	m := &Machine{}
	if m.HasCustomNode("https://github.com/a/b") || m.HasCustomNode("") {
		t.Error("machine without steps has nodes")
	}
}

func TestMachineDockerStepsAsString(t *testing.T) {
	in := `{"id":"m","docker_command_steps":"{\"steps\":[{\"type\":\"custom-node\",\"data\":{\"url\":\"https://github.com/a/b\"}}]}","import_failed_logs":"line1\nline2","deleted":null}`
	var m Machine
	if err := json.Unmarshal([]byte(in), &m); err != nil {
		t.Fatal(err)
	}
	if !m.HasCustomNode("github.com/a/b.git") {
		t.Errorf("steps = %+v", m.DockerCommandSteps)
	}
	assertEq(t, m.ImportFailedLogs, "line1\nline2")
	var empty Machine
	_ = json.Unmarshal([]byte(`{"import_failed_logs":[],"docker_command_steps":null}`), &empty)
	if empty.ImportFailedLogs != "" || empty.DockerCommandSteps != nil {
		t.Errorf("empty = %+v", empty)
	}
}

// Activity results travel through Temporal as JSON, so the decoded types
// must survive a round trip.
func TestTypesSurviveJSONRoundTrip(t *testing.T) {
	roundTrip := func(t *testing.T, in string, v any, fresh any) {
		t.Helper()
		if err := json.Unmarshal([]byte(in), v); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, fresh); err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		// RawMessage fields come back compacted, so compare encodings.
		b2, _ := json.Marshal(fresh)
		if string(b) != string(b2) {
			t.Errorf("round trip differs:\n%s\n%s", b, b2)
		}
	}
	t.Run("Deployment", func(t *testing.T) { roundTrip(t, sampleDeploymentJSON, &Deployment{}, &Deployment{}) })
	t.Run("Machine", func(t *testing.T) { roundTrip(t, sampleMachineJSON, &Machine{}, &Machine{}) })
	t.Run("WorkflowVersion", func(t *testing.T) { roundTrip(t, sampleVersionJSON, &WorkflowVersion{}, &WorkflowVersion{}) })
	t.Run("Asset", func(t *testing.T) { roundTrip(t, sampleAssetJSON, &Asset{}, &Asset{}) })
}
