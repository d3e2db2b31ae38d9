// Package pipeline defines ComfyPipeline specs: named steps, each running
// one ComfyDeploy deployment, whose inputs are literals or references to
// earlier steps' outputs. It parses and validates specs, orders steps, and
// resolves references against the outputs of finished steps. It is pure
// (no I/O, no clock, deterministic results), so the same code serves the
// starter, the PreparePipeline activity and the ComfyPipeline workflow.
package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Spec is a pipeline: a DAG of steps. Its JSON (and YAML) field names are
// a public surface.
type Spec struct {
	// Name is free text shown in the UI and copied into labels.
	Name string `json:"name,omitempty"`
	// Defaults apply to every step that does not set the field itself.
	Defaults StepDefaults `json:"defaults,omitzero"`
	Steps    []Step       `json:"steps"`
}

// StepDefaults are the run settings a step may override. They mean what
// the fields of the same name mean in a ComfyRun input.
type StepDefaults struct {
	GPU              string   `json:"gpu,omitempty"`
	QueueTimeout     Duration `json:"queue_timeout,omitempty"`
	ExecutionTimeout Duration `json:"execution_timeout,omitempty"`
	Retry            *Retry   `json:"retry,omitempty"`
}

// Retry mirrors a ComfyRun's retry policy: how many paid runs a step may
// make, and which outcomes ("failed", "timeout") are resubmitted.
type Retry struct {
	MaxAttempts int      `json:"max_attempts,omitempty"`
	RetryOn     []string `json:"retry_on,omitempty"`
}

// Step runs one deployment once, or once per item with ForEach.
type Step struct {
	// Name is unique in the pipeline: letters, digits, '_' and '-'.
	Name string `json:"name"`
	// Deployment is the ComfyDeploy deployment id (a UUID).
	Deployment string `json:"deployment"`
	// Inputs maps the deployment's input ids to literals or reference
	// strings such as "${txt2img.outputs.image[0]}" (see Resolve).
	Inputs map[string]any `json:"inputs,omitempty"`
	// DependsOn lists steps that must succeed first. Steps whose outputs
	// this step references are dependencies whether listed or not.
	DependsOn []string `json:"depends_on,omitempty"`
	// ForEach is a list-valued reference, such as "${upscale.outputs.image}":
	// the step runs once per element, which its inputs read as "${item}".
	ForEach string `json:"for_each,omitempty"`

	GPU              string   `json:"gpu,omitempty"`
	QueueTimeout     Duration `json:"queue_timeout,omitempty"`
	ExecutionTimeout Duration `json:"execution_timeout,omitempty"`
	Retry            *Retry   `json:"retry,omitempty"`
}

// Duration is a duration string such as "90s" or "15m"; a number in the
// spec is read as seconds. Validate rejects strings time.ParseDuration
// cannot read.
type Duration string

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*d = Duration(s)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration %s: use a string such as \"90s\" or a number of seconds", b)
	}
	*d = Duration(time.Duration(secs * float64(time.Second)).String())
	return nil
}

// D returns the duration; zero when d is empty or malformed.
func (d Duration) D() time.Duration {
	v, _ := time.ParseDuration(string(d))
	return v
}

// Parse reads a spec written in YAML or JSON (JSON is YAML). It is strict:
// an unknown or repeated field is an error that names it. Parse checks the
// document's shape only; call Validate for its meaning.
func Parse(data []byte) (*Spec, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &Error{Problems: []string{"the spec is empty"}}
	}
	var s Spec
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return nil, &Error{Problems: []string{cleanDecodeError(err)}}
	}
	return &s, nil
}

// cleanDecodeError drops the converter's wrapping ("error unmarshaling
// JSON: while decoding JSON: json: ") so the message starts with the cause.
func cleanDecodeError(err error) string {
	msg := err.Error()
	for _, prefix := range []string{"error converting YAML to JSON: ", "error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	return msg
}

// Error lists everything wrong with a spec, one sentence each, in a stable
// order.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	return "invalid pipeline: " + strings.Join(e.Problems, "; ")
}

func parseDuration(d Duration) (time.Duration, error) { return time.ParseDuration(string(d)) }
