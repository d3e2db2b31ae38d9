package preflight

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/durable-comfy/durable-comfy/comfy"
)

func ptr[T any](v T) *T { return &v }

// testTypes is a deployment schema covering every input kind.
func testTypes() []comfy.InputType {
	return []comfy.InputType{
		{InputID: "prompt", ClassType: "ComfyUIDeployExternalText", Type: comfy.InputString},                            // no default: required
		{InputID: "negative_prompt", ClassType: "ComfyUIDeployExternalText", Type: comfy.InputString, DefaultValue: ""}, // empty default: optional
		{InputID: "steps", ClassType: "ComfyUIDeployExternalNumberInt", Type: comfy.InputInteger, DefaultValue: 20.0, MinValue: ptr(1.0), MaxValue: ptr(100.0)},
		{InputID: "cfg", ClassType: "ComfyUIDeployExternalNumber", Type: comfy.InputFloat, DefaultValue: 7.0, MinValue: ptr(1.0), MaxValue: ptr(20.0)},
		{InputID: "size", ClassType: "ComfyUIDeployExternalEnum", Type: comfy.InputString, DefaultValue: "512x512", EnumOptions: []string{"512x512", "768x768"}},
		{InputID: "hires", ClassType: "ComfyUIDeployExternalBoolean", Type: comfy.InputBoolean, DefaultValue: false},
		{InputID: "image", ClassType: "ComfyUIDeployExternalImage", Type: comfy.InputString, DefaultValue: "https://example.com/default.png"},
		{InputID: "mask", ClassType: "ComfyUIDeployExternalText", Type: comfy.InputBinary, DefaultValue: "https://example.com/mask.png"},
		{InputID: "style", ClassType: "ComfyUIDeployExternalText", Type: comfy.InputString, Required: ptr(false)},                  // no default, explicitly optional
		{InputID: "lora", ClassType: "ComfyUIDeployExternalText", Type: comfy.InputString, DefaultValue: "x", Required: ptr(true)}, // default, explicitly required
	}
}

func base() map[string]any { return map[string]any{"prompt": "a cat", "lora": "pixel"} }

func with(kv ...any) map[string]any {
	m := base()
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(m, kv[i].(string))
			continue
		}
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// deleted marks a key to remove in with().
var deleted any = nil

func TestCheckInputsAccepts(t *testing.T) {
	cases := map[string]map[string]any{
		"minimal":           base(),
		"all kinds":         with("steps", 30, "cfg", 7.5, "size", "768x768", "hires", true, "negative_prompt", "blurry", "style", "ink"),
		"json.Number":       with("steps", json.Number("42"), "cfg", json.Number("2.5")),
		"int types":         with("steps", int64(5), "cfg", float32(3)),
		"bounds inclusive":  with("steps", 1, "cfg", 20.0),
		"integer as float":  with("steps", 10.0),
		"correlation token": with(comfy.CorrelationInputKey, "tok-1", "__anything", map[string]any{"x": 1}),
		"https image":       with("image", "https://cdn.example.com/a.png?x=1"),
		"http image":        with("image", "http://10.0.0.1:8080/a.png"),
		"data URI image":    with("image", "data:image/png;base64,iVBORw0KGgo="),
		"binary URL":        with("mask", "https://example.com/m.png"),
	}
	for name, inputs := range cases {
		t.Run(name, func(t *testing.T) {
			if err := CheckInputs(testTypes(), inputs); err != nil {
				t.Fatalf("valid inputs rejected: %v", err)
			}
		})
	}
}

func TestCheckInputsRejects(t *testing.T) {
	cases := []struct {
		name    string
		inputs  map[string]any
		want    []string // substrings of the one problem
		notWant []string
	}{
		{"typo suggests", with("stesp", 30), []string{`"stesp" is not declared`, `did you mean "steps"?`, "declared inputs: cfg, hires, image, lora, mask, negative_prompt, prompt, size, steps, style"}, nil},
		{"case-insensitive suggestion", with("Prompt2", "x"), []string{`did you mean "prompt"?`}, nil},
		{"no suggestion when far", with("zzzzzzzz", 1), []string{`"zzzzzzzz" is not declared`}, []string{"did you mean"}},
		{"string for integer", with("steps", "many"), []string{`"steps" must be a number`, `got a string`, "integer in [1, 100]"}, []string{"many"}},
		{"fraction for integer", with("steps", 2.5), []string{`"steps" must be a whole number, got a fraction`}, []string{"2.5"}},
		{"bool for float", with("cfg", true), []string{`"cfg" must be a number`, "got a boolean"}, []string{"true"}},
		{"below minimum", with("steps", 0), []string{`"steps" is below the minimum 1`}, []string{"0"}},
		{"above maximum", with("cfg", 20.5), []string{`"cfg" is above the maximum 20`}, []string{"20.5"}},
		{"enum outside options", with("size", "999x999"), []string{`"size" is not one of "512x512", "768x768"`}, []string{"999"}},
		{"number for string", with("negative_prompt", 3), []string{`"negative_prompt" must be a string`}, nil},
		{"object for string", with("negative_prompt", map[string]any{}), []string{"got an object"}, nil},
		{"string for boolean", with("hires", "yes"), []string{`"hires" must be true or false, got a string`}, []string{"yes"}},
		{"null for boolean", map[string]any{"prompt": "a", "lora": "b", "hires": nil}, []string{`"hires" must be true or false, got null`}, nil},
		{"image not a URL", with("image", "cat.png"), []string{`"image" must be an http(s) URL or a data: URI`, `got a string that is not a URL`}, []string{"cat"}},
		{"image ftp", with("image", "ftp://example.com/a.png"), []string{`"image" must be an http(s) URL`, `got a "ftp": URL`}, []string{"example.com"}},
		{"image no host", with("image", "https:///a.png"), []string{`"image" must be an http(s) URL`}, nil},
		{"data URI not base64", with("image", "data:image/png,rawbytes"), []string{`"image" must be an http(s) URL or a data: URI`}, nil},
		{"binary not a URL", with("mask", "/tmp/mask.png"), []string{`"mask" must be an http(s) URL`}, nil},
		{"long unknown name shown as a prefix", with("sk_live_0123456789abcdef", 1), []string{`input "sk_live_0123"… is not declared`}, []string{"456789abcdef"}},
		{"unknown name escaped", with("a\nb\x00", 1), []string{`input "a\nb\x00" is not declared`}, nil},
		{"missing required without default", with("prompt", deleted), []string{`input "prompt" is required (string); add it to inputs`}, nil},
		{"missing explicitly required", with("lora", deleted), []string{`input "lora" is required`}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckInputs(testTypes(), tc.inputs)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected rejection: %v", err)
				}
				return
			}
			var rej *Rejection
			if !errors.As(err, &rej) {
				t.Fatalf("err = %v, want a *Rejection", err)
			}
			if rej.Kind != KindInvalidInput {
				t.Errorf("kind = %s, want %s", rej.Kind, KindInvalidInput)
			}
			if len(rej.Problems) != 1 {
				t.Fatalf("problems = %q, want exactly one", rej.Problems)
			}
			for _, w := range tc.want {
				if !strings.Contains(rej.Problems[0], w) {
					t.Errorf("problem %q lacks %q", rej.Problems[0], w)
				}
			}
			for _, nw := range tc.notWant {
				if strings.Contains(rej.Problems[0], nw) {
					t.Errorf("problem %q should not contain %q", rej.Problems[0], nw)
				}
			}
			if !strings.Contains(err.Error(), rej.Problems[0]) {
				t.Errorf("Error() %q does not include the problem", err.Error())
			}
		})
	}
}

func TestCheckInputsOptionalWithoutDefault(t *testing.T) {
	// "style" has no default but Required=false; "negative_prompt" has an
	// empty-string default. Neither is required.
	if err := CheckInputs(testTypes(), base()); err != nil {
		t.Fatal(err)
	}
	// Without Required, a nil default means required.
	types := []comfy.InputType{{InputID: "a", Type: comfy.InputString}, {InputID: "b", Type: comfy.InputString, DefaultValue: "d"}}
	err := CheckInputs(types, map[string]any{})
	var rej *Rejection
	if !errors.As(err, &rej) || len(rej.Problems) != 1 || !strings.Contains(rej.Problems[0], `"a" is required`) {
		t.Fatalf("err = %v", err)
	}
}

func TestCheckInputsListsEveryProblemInOrder(t *testing.T) {
	inputs := map[string]any{"zeta": 1, "steps": 500, "alpha": "x", "size": "huge"}
	err := CheckInputs(testTypes(), inputs)
	var rej *Rejection
	if !errors.As(err, &rej) {
		t.Fatalf("err = %v", err)
	}
	want := []string{`"alpha" is not declared`, `"size" is not one of`, `"steps" is above the maximum`, `"zeta" is not declared`, `"prompt" is required`, `"lora" is required`}
	if len(rej.Problems) != len(want) {
		t.Fatalf("problems = %q", rej.Problems)
	}
	for i, w := range want {
		if !strings.Contains(rej.Problems[i], w) {
			t.Errorf("problem %d = %q, want it to contain %q", i, rej.Problems[i], w)
		}
	}
}

func TestCheckInputsNoDeclaredInputs(t *testing.T) {
	if err := CheckInputs(nil, nil); err != nil {
		t.Fatal(err)
	}
	err := CheckInputs(nil, map[string]any{"prompt": "x"})
	if err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Fatalf("err = %v", err)
	}
}

func TestEditDistance(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "abc", 3}, {"steps", "steps", 0},
		{"stesp", "steps", 2}, {"step", "steps", 1}, {"kitten", "sitting", 3}, {"cfg", "cgf", 2}, {"seed", "speed", 1},
	}
	for _, tc := range cases {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := editDistance(tc.b, tc.a); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d (symmetry)", tc.b, tc.a, got, tc.want)
		}
	}
}

// ---- machines ----------------------------------------------------------------------------

func TestCheckMachine(t *testing.T) {
	traceback := "Traceback (most recent call last):\n  File \"/comfyui/nodes.py\", line 2004\nModuleNotFoundError: No module named 'segment_anything'\n\n"
	cases := []struct {
		name    string
		m       comfy.Machine
		kind    string // "" means accepted
		want    []string
		notWant []string
	}{
		{name: "serverless ready", m: comfy.Machine{Type: comfy.MachineComfyDeployServerless, Status: comfy.MachineReady}},
		{name: "serverless running", m: comfy.Machine{Type: comfy.MachineComfyDeployServerless, Status: comfy.MachineRunning}},
		{name: "classic ready", m: comfy.Machine{Type: comfy.MachineClassic, Status: comfy.MachineReady}},
		{name: "runpod ready", m: comfy.Machine{Type: comfy.MachineRunpodServerless, Status: comfy.MachineReady}},
		{name: "building", m: comfy.Machine{ID: "m1", Name: "pool", Type: comfy.MachineComfyDeployServerless, Status: comfy.MachineBuilding},
			kind: KindMachineNotReady, want: []string{"pool (m1)", `status "building"`, "wait for the build"}},
		{name: "paused", m: comfy.Machine{Type: comfy.MachineComfyDeployServerless, Status: comfy.MachinePaused},
			kind: KindMachineNotReady, want: []string{`"paused"`}},
		{name: "error with logs", m: comfy.Machine{Name: "broken", Type: comfy.MachineComfyDeployServerless, Status: comfy.MachineError, ImportFailedLogs: traceback},
			kind: KindMachineNotReady, want: []string{`status "error"`, "rebuild", "No module named 'segment_anything'"}, notWant: []string{"Traceback"}},
		{name: "error without logs", m: comfy.Machine{Type: comfy.MachineComfyDeployServerless, Status: comfy.MachineError},
			kind: KindMachineNotReady, want: []string{`status "error"`}, notWant: []string{"import failures"}},
		{name: "error with long log line", m: comfy.Machine{Type: comfy.MachineComfyDeployServerless, Status: comfy.MachineError, ImportFailedLogs: strings.Repeat("é", 300)},
			kind: KindMachineNotReady, want: []string{"…"}},
		{name: "modal", m: comfy.Machine{Name: "legacy", Type: comfy.MachineModalServerless, Status: comfy.MachineReady},
			kind: KindMachineTypeUnsupported, want: []string{`"modal-serverless"`, "comfy-deploy-serverless"}},
		{name: "workspace", m: comfy.Machine{Type: comfy.MachineWorkspace, Status: comfy.MachineReady}, kind: KindMachineTypeUnsupported},
		{name: "type unsupported wins over status", m: comfy.Machine{Type: comfy.MachineModalServerless, Status: comfy.MachineBuilding}, kind: KindMachineTypeUnsupported},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckMachine(&tc.m)
			if tc.kind == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			var rej *Rejection
			if !errors.As(err, &rej) {
				t.Fatalf("err = %v, want a *Rejection", err)
			}
			if rej.Kind != tc.kind {
				t.Errorf("kind = %s, want %s", rej.Kind, tc.kind)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err.Error(), w)
				}
			}
			for _, nw := range tc.notWant {
				if strings.Contains(err.Error(), nw) {
					t.Errorf("%q should not contain %q", err.Error(), nw)
				}
			}
			if !strings.Contains(err.Error(), "…") && len(err.Error()) > 600 {
				t.Errorf("message not bounded: %d bytes", len(err.Error()))
			}
		})
	}
}

func TestLastLine(t *testing.T) {
	cases := map[string]string{
		"one":                          "one",
		"first\nsecond\n":              "second",
		"a\n  b  \n\n\n":               "b",
		"  only  ":                     "only",
		strings.Repeat("x", 250):       strings.Repeat("x", 200) + "…",
		"é" + strings.Repeat("é", 150): strings.Repeat("é", 100) + "…", // 2-byte runes are not split
	}
	for in, want := range cases {
		if got := lastLine(in, 200); got != want {
			t.Errorf("lastLine(%.20q…) = %.30q…, want %.30q…", in, got, want)
		}
	}
}

// ---- custom nodes ---------------------------------------------------------------------------

func steps(urls ...string) *comfy.DockerCommandSteps {
	s := &comfy.DockerCommandSteps{}
	for _, u := range urls {
		s.Steps = append(s.Steps, comfy.DockerStep{Type: "custom-node", Data: comfy.DockerStepData{URL: u}})
	}
	s.Steps = append(s.Steps, comfy.DockerStep{Type: "commands"})
	return s
}

func version(missing []string, urls ...string) *comfy.WorkflowVersion {
	deps := &comfy.DependencyGraph{CustomNodes: map[string]comfy.CustomNodeDependency{}, MissingNodes: missing}
	for _, u := range urls {
		deps.CustomNodes[u] = comfy.CustomNodeDependency{URL: u}
	}
	return &comfy.WorkflowVersion{Version: 3, Dependencies: deps}
}

func TestCheckCustomNodes(t *testing.T) {
	const (
		deploy = "https://github.com/BennyKok/comfyui-deploy"
		impact = "https://github.com/ltdrdata/ComfyUI-Impact-Pack"
		kj     = "https://github.com/kijai/ComfyUI-KJNodes"
	)
	serverless := func(s *comfy.DockerCommandSteps) *comfy.Machine {
		return &comfy.Machine{ID: "m1", Name: "pool", Type: comfy.MachineComfyDeployServerless, Status: comfy.MachineReady, DockerCommandSteps: s}
	}
	cases := []struct {
		name     string
		v        *comfy.WorkflowVersion
		m        *comfy.Machine
		problems []string // nil means accepted
	}{
		{name: "nil version", v: nil, m: serverless(steps())},
		{name: "no dependencies", v: &comfy.WorkflowVersion{}, m: serverless(steps())},
		{name: "all installed", v: version(nil, deploy, impact), m: serverless(steps(deploy, impact))},
		{name: "URL forms normalised", v: version(nil, "git@github.com:ltdrdata/comfyui-impact-pack.git"), m: serverless(steps(impact + "/"))},
		{name: "one missing", v: version(nil, deploy, kj), m: serverless(steps(deploy)),
			problems: []string{"custom node " + kj + " is not installed on machine pool"}},
		{name: "missing sorted, then unknown node types", v: version([]string{"SomeMissingNode"}, kj, impact), m: serverless(steps(deploy)),
			problems: []string{kj, impact, `node type "SomeMissingNode"`}},
		{name: "installed through the registry", v: version(nil, "https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite"),
			m: serverless(&comfy.DockerCommandSteps{Steps: []comfy.DockerStep{{Type: "custom-node-manager", Data: comfy.DockerStepData{NodeID: "comfyui-videohelpersuite", Version: "1.5.0"}}}})},
		{name: "registry id must match", v: version(nil, kj),
			m:        serverless(&comfy.DockerCommandSteps{Steps: []comfy.DockerStep{{Type: "custom-node-manager", Data: comfy.DockerStepData{NodeID: "comfyui-videohelpersuite"}}}}),
			problems: []string{kj}},
		{name: "classic without steps skips the check", v: version([]string{"SomeMissingNode"}, kj),
			m: &comfy.Machine{Type: comfy.MachineClassic, Status: comfy.MachineReady}},
		{name: "empty steps skip the check", v: version(nil, kj), m: serverless(&comfy.DockerCommandSteps{})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCustomNodes(tc.v, tc.m)
			if tc.problems == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			var rej *Rejection
			if !errors.As(err, &rej) {
				t.Fatalf("err = %v, want a *Rejection", err)
			}
			if rej.Kind != KindMissingCustomNodes {
				t.Errorf("kind = %s", rej.Kind)
			}
			if !strings.Contains(rej.Message, "workflow version 3") || !strings.Contains(rej.Message, "pool (m1)") {
				t.Errorf("message = %q", rej.Message)
			}
			if len(rej.Problems) != len(tc.problems) {
				t.Fatalf("problems = %q, want %d", rej.Problems, len(tc.problems))
			}
			for i, w := range tc.problems {
				if !strings.Contains(rej.Problems[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, rej.Problems[i], w)
				}
			}
		})
	}
}

func TestRejectionError(t *testing.T) {
	r := &Rejection{Kind: KindInvalidInput, Message: "bad"}
	if r.Error() != "bad" {
		t.Errorf("Error() = %q", r.Error())
	}
	r.Problems = []string{"one", "two"}
	if r.Error() != "bad: one; two" {
		t.Errorf("Error() = %q", r.Error())
	}
}
