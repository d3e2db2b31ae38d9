package comfytest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A pipeline is what a seeded workflow version "does": its ComfyDeploy
// external inputs, the nodes it executes (which drive progress and
// live_status) and the outputs it renders.
type pipeline struct {
	Kind        string // txt2img | upscale | img2video
	Inputs      []inputSpec
	Nodes       []string // processing node classes, executed in order
	Outputs     []outputSpec
	MissingNode string // a node class the machine lacks: the prompt is rejected
}

type inputSpec struct {
	ID, Class, Type string
	Default         any // nil: required
	Min, Max        any
	Enum            []string
	Display, Desc   string
}

type outputSpec struct{ Class, OutputID string }

func (p *pipeline) nodeCount() int { return len(p.Inputs) + len(p.Nodes) + len(p.Outputs) }

// nodeClasses is the execution order: inputs, processing nodes, outputs.
func (p *pipeline) nodeClasses() []string {
	var out []string
	for _, in := range p.Inputs {
		out = append(out, in.Class)
	}
	out = append(out, p.Nodes...)
	for _, o := range p.Outputs {
		out = append(out, o.Class)
	}
	return out
}

func txt2imgInputs() []inputSpec {
	return []inputSpec{
		{ID: "prompt", Class: "ComfyUIDeployExternalText", Type: "string", Display: "Prompt", Desc: "What to draw"},
		{ID: "negative_prompt", Class: "ComfyUIDeployExternalText", Type: "string", Default: "", Display: "Negative prompt"},
		{ID: "seed", Class: "ComfyUIDeployExternalNumberInt", Type: "integer", Default: 0, Min: 0, Max: 4294967295, Display: "Seed"},
		{ID: "steps", Class: "ComfyUIDeployExternalNumberInt", Type: "integer", Default: 20, Min: 1, Max: 100, Display: "Steps"},
		{ID: "cfg", Class: "ComfyUIDeployExternalNumber", Type: "float", Default: 7.0, Min: 1.0, Max: 20.0, Display: "CFG scale"},
		{ID: "size", Class: "ComfyUIDeployExternalEnum", Type: "string", Default: "512x512", Enum: []string{"512x512", "768x768", "1024x1024"}, Display: "Size"},
		{ID: "hires", Class: "ComfyUIDeployExternalBoolean", Type: "boolean", Default: false, Display: "Hires fix"},
	}
}

func txt2imgPipeline() *pipeline {
	return &pipeline{Kind: "txt2img", Inputs: txt2imgInputs(),
		Nodes:   []string{"CheckpointLoaderSimple", "CLIPTextEncode", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode"},
		Outputs: []outputSpec{{"ComfyDeployStdOutputImage", "image"}, {"ComfyDeployStdOutputAny", "caption"}}}
}

func upscalePipeline() *pipeline {
	return &pipeline{Kind: "upscale",
		Inputs: []inputSpec{
			{ID: "image", Class: "ComfyUIDeployExternalImage", Type: "string", Display: "Image", Desc: "Image URL to upscale"},
			{ID: "scale", Class: "ComfyUIDeployExternalEnum", Type: "string", Default: "2x", Enum: []string{"2x", "4x"}, Display: "Scale"},
		},
		Nodes:   []string{"LoadImage", "UpscaleModelLoader", "ImageUpscaleWithModel", "ImageScaleBy"},
		Outputs: []outputSpec{{"ComfyDeployStdOutputImage", "image"}}}
}

func img2videoPipeline() *pipeline {
	return &pipeline{Kind: "img2video",
		Inputs: []inputSpec{
			{ID: "image", Class: "ComfyUIDeployExternalImage", Type: "string", Display: "Start image"},
			{ID: "frames", Class: "ComfyUIDeployExternalNumberInt", Type: "integer", Default: 16, Min: 8, Max: 64, Display: "Frames"},
			{ID: "fps", Class: "ComfyUIDeployExternalNumberInt", Type: "integer", Default: 8, Min: 1, Max: 30, Display: "FPS"},
		},
		Nodes:   []string{"LoadImage", "ImageOnlyCheckpointLoader", "SVD_img2vid_Conditioning", "KSampler", "VAEDecode", "VHS_VideoCombine"},
		Outputs: []outputSpec{{"ComfyDeployStdOutputAny", "video"}}}
}

func missingNodePipeline() *pipeline {
	p := txt2imgPipeline()
	p.Nodes = []string{"CheckpointLoaderSimple", "CLIPTextEncode", "KSampler", "ImageResizeKJ", "SomeMissingNode", "VAEDecode"}
	p.MissingNode = "SomeMissingNode"
	return p
}

func slowPipeline() *pipeline {
	p := txt2imgPipeline()
	p.Inputs = p.Inputs[:3]
	p.Nodes = []string{"CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "KSampler", "KSampler", "VAEDecode"}
	p.Outputs = p.Outputs[:1]
	return p
}

// schedule returns when each node starts executing for a run phase that
// begins at start and lasts d. Input and output nodes are quick, samplers
// slow; a first slice of d is the started → running gap.
func (p *pipeline) schedule(start time.Time, d time.Duration) []time.Time {
	classes := p.nodeClasses()
	weights := make([]float64, len(classes))
	total := 1.0
	for i, c := range classes {
		switch {
		case i < len(p.Inputs) || i >= len(p.Inputs)+len(p.Nodes):
			weights[i] = 0.5
		case c == "KSampler":
			weights[i] = 6
		default:
			weights[i] = 2
		}
		total += weights[i]
	}
	out := make([]time.Time, len(classes))
	acc := 1.0
	for i := range classes {
		out[i] = start.Add(time.Duration(float64(d) * acc / total))
		acc += weights[i]
	}
	return out
}

// workflowAPI renders the pipeline as a ComfyUI API-format prompt.
func (p *pipeline) workflowAPI() map[string]any {
	api := map[string]any{}
	for i, class := range p.nodeClasses() {
		id := strconv.Itoa(i + 1)
		inputs := map[string]any{}
		title := class
		switch {
		case i < len(p.Inputs):
			in := p.Inputs[i]
			inputs = in.nodeInputs()
			title = in.ID
		case i >= len(p.Inputs)+len(p.Nodes):
			o := p.Outputs[i-len(p.Inputs)-len(p.Nodes)]
			inputs = map[string]any{"output_id": o.OutputID, "images": []any{strconv.Itoa(i), 0}}
			title = o.OutputID
		case class == "KSampler":
			inputs = map[string]any{"seed": []any{"3", 0}, "steps": []any{"4", 0}, "cfg": []any{"5", 0},
				"sampler_name": "euler", "scheduler": "normal", "denoise": 1, "model": []any{strconv.Itoa(i - 1), 0}}
		default:
			if i > 0 {
				inputs = map[string]any{"input": []any{strconv.Itoa(i), 0}}
			}
		}
		api[id] = map[string]any{"inputs": inputs, "class_type": class, "_meta": map[string]any{"title": title}}
	}
	return api
}

func (in inputSpec) nodeInputs() map[string]any {
	m := map[string]any{"input_id": in.ID, "display_name": in.Display, "description": in.Desc}
	def := in.Default
	if def == nil {
		def = ""
	}
	m["default_value"] = def
	if in.Min != nil {
		m["min_value"], m["max_value"] = in.Min, in.Max
	}
	if in.Enum != nil {
		m["options"] = in.Enum
	}
	return m
}

// uiWorkflow is a minimal ComfyUI UI-format workflow for the version.
func (p *pipeline) uiWorkflow() map[string]any {
	var nodes []any
	classes := p.nodeClasses()
	for i, class := range classes {
		nodes = append(nodes, map[string]any{"id": i + 1, "type": class, "pos": []any{100 + 250*i, 100}, "size": []any{220, 80},
			"flags": map[string]any{}, "order": i, "mode": 0, "inputs": []any{}, "outputs": []any{}, "properties": map[string]any{}})
	}
	return map[string]any{"last_node_id": len(classes), "last_link_id": 0, "nodes": nodes, "links": []any{},
		"groups": []any{}, "config": map[string]any{}, "extra": map[string]any{}, "version": 0.4}
}

// inputTypes is the deployment's input_types list (reference §7).
func (p *pipeline) inputTypes() []any {
	var out []any
	for i, in := range p.Inputs {
		m := map[string]any{
			"input_id": in.ID, "class_type": in.Class, "type": in.Type, "node_id": strconv.Itoa(i + 1),
			"default_value": in.Default, "min_value": in.Min, "max_value": in.Max,
			"display_name": in.Display, "description": in.Desc, "inputs": in.nodeInputs(),
		}
		if in.Enum != nil {
			m["enum_options"] = in.Enum
		}
		out = append(out, m)
	}
	return out
}

func (p *pipeline) outputTypes() []any {
	var out []any
	for _, o := range p.Outputs {
		out = append(out, map[string]any{"class_type": o.Class, "output_id": o.OutputID})
	}
	return out
}

// effectiveInputs applies node defaults to the request inputs and reports
// required inputs that were not supplied. Only declared inputs are kept, so
// correlation tokens and other unknown keys do not influence the outputs.
func (p *pipeline) effectiveInputs(req map[string]any) (map[string]any, []string) {
	eff := map[string]any{}
	var missing []string
	for _, in := range p.Inputs {
		v, ok := req[in.ID]
		if !ok {
			if in.Default == nil {
				missing = append(missing, in.ID)
				continue
			}
			v = in.Default
		}
		eff[in.ID] = normalizeValue(v)
	}
	return eff, missing
}

func normalizeValue(v any) any {
	switch x := v.(type) {
	case json.Number:
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	case int:
		return float64(x)
	}
	return v
}

// fingerprint is a canonical description of the effective inputs; identical
// inputs give identical outputs.
func fingerprint(kind string, eff map[string]any, keys []inputSpec) string {
	var b strings.Builder
	b.WriteString(kind)
	for _, in := range keys {
		fmt.Fprintf(&b, "|%s=%v", in.ID, eff[in.ID])
	}
	return b.String()
}

func inputString(eff map[string]any, key string) string {
	switch v := eff[key].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func inputInt(eff map[string]any, key string, def, lo, hi int) int {
	n := def
	switch v := eff[key].(type) {
	case float64:
		n = int(v)
	case string:
		if x, err := strconv.Atoi(v); err == nil {
			n = x
		}
	}
	return max(lo, min(hi, n))
}
