package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/durable-comfy/durable-comfy/workflows"
)

// kvList is a repeatable key=value flag. It keeps the raw strings so that
// parsing (and its error messages) happens in one place, after flag.Parse.
type kvList []string

func (l *kvList) String() string { return strings.Join(*l, ", ") }

func (l *kvList) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// runFlags are the `run` flags that shape the workflow input. set records
// which were given on the command line, because only those override a -f
// document: a zero flag value must not erase a field from the file.
type runFlags struct {
	deployment       string
	inputs           kvList
	labels           kvList
	file             string
	gpu              string
	queueTimeout     time.Duration
	executionTimeout time.Duration
	pollInterval     time.Duration
	maxAttempts      int
	retryOn          string
	skipOutputs      bool
	outputFolder     string
	set              map[string]bool
}

// parseInputValue reads a -input value as JSON when it is a JSON scalar,
// list or quoted string, and as plain text otherwise, so both
// `steps=20` (a number) and `prompt=a cat` (text) need no quoting.
// Numbers stay json.Number so 64-bit seeds survive without float rounding.
func parseInputValue(key, raw string) (any, error) {
	if !json.Valid([]byte(raw)) {
		return raw, nil
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return raw, nil
	}
	switch v.(type) {
	case map[string]any:
		return nil, fmt.Errorf("-input %s: the value is a JSON object, which ComfyDeploy does not accept; pass a string, number, boolean or list (to send the text, quote it as a JSON string: %s='\"…\"')", key, key)
	case nil:
		return nil, fmt.Errorf("-input %s=null: omit the input to use the deployment's default, or pass '%s=\"null\"' for the text \"null\"", key, key)
	}
	return v, nil
}

// splitKV splits "key=value" at the first '='; values may contain '='.
func splitKV(flagName, s string) (string, string, error) {
	k, v, ok := strings.Cut(s, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return "", "", fmt.Errorf("-%s %q: use key=value, for example -%s %s", flagName, s, flagName, exampleKV(flagName))
	}
	return k, v, nil
}

func exampleKV(flagName string) string {
	if flagName == "label" {
		return "customer=acme"
	}
	return `prompt="a cat"`
}

// parseInputs turns repeated -input flags into the inputs map.
func parseInputs(raw []string) (map[string]any, error) {
	var errs []error
	out := make(map[string]any, len(raw))
	for _, s := range raw {
		k, v, err := splitKV("input", s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		val, err := parseInputValue(k, v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[k] = val
	}
	return out, errors.Join(errs...)
}

// parseLabels turns repeated -label flags into the labels map; labels are
// always text.
func parseLabels(raw []string) (map[string]string, error) {
	var errs []error
	out := make(map[string]string, len(raw))
	for _, s := range raw {
		k, v, err := splitKV("label", s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[k] = v
	}
	return out, errors.Join(errs...)
}

// parseRetryOn reads "failed,timeout"; an empty string means the
// workflow's default (both).
func parseRetryOn(s string) ([]string, error) {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		if part == "" {
			continue
		}
		if part != workflows.RetryOnFailed && part != workflows.RetryOnTimeout {
			return nil, fmt.Errorf("-retry-on %q: each value must be %q or %q, for example -retry-on failed,timeout", s, workflows.RetryOnFailed, workflows.RetryOnTimeout)
		}
		if !slices.Contains(out, part) {
			out = append(out, part)
		}
	}
	return out, nil
}

// decodeInputFile reads a ComfyRunInput JSON document. Unknown fields are
// errors because a misspelt field would otherwise be dropped silently.
func decodeInputFile(r io.Reader, name string) (workflows.ComfyRunInput, error) {
	var in workflows.ComfyRunInput
	data, err := io.ReadAll(r)
	if err != nil {
		return in, fmt.Errorf("-f %s: %w", name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		if errors.Is(err, io.EOF) {
			return in, fmt.Errorf("-f %s: the file is empty; it must hold a ComfyRunInput JSON object such as {\"deployment_id\": \"…\", \"inputs\": {\"prompt\": \"a cat\"}}", name)
		}
		return in, fmt.Errorf("-f %s: %v; the file must hold one ComfyRunInput JSON object (fields: deployment_id, inputs, gpu, queue_timeout, execution_timeout, poll_interval, retry, outputs, labels)", name, err)
	}
	if len(bytes.TrimSpace(data[dec.InputOffset():])) > 0 {
		return in, fmt.Errorf("-f %s: extra data after the JSON object; the file must hold exactly one ComfyRunInput", name)
	}
	return in, nil
}

// buildInput lays the flags that were set over base (the -f document, or
// the zero value). Map flags merge key by key so `-f base.json -input
// seed=7` changes only the seed.
func buildInput(base workflows.ComfyRunInput, f runFlags) (workflows.ComfyRunInput, error) {
	in := base
	var errs []error
	if f.set["deployment"] {
		in.DeploymentID = strings.TrimSpace(f.deployment)
	}
	if len(f.inputs) > 0 {
		vals, err := parseInputs(f.inputs)
		errs = append(errs, err)
		merged := make(map[string]any, len(in.Inputs)+len(vals))
		for k, v := range in.Inputs {
			merged[k] = v
		}
		for k, v := range vals {
			merged[k] = v
		}
		in.Inputs = merged
	}
	if len(f.labels) > 0 {
		vals, err := parseLabels(f.labels)
		errs = append(errs, err)
		merged := make(map[string]string, len(in.Labels)+len(vals))
		for k, v := range in.Labels {
			merged[k] = v
		}
		for k, v := range vals {
			merged[k] = v
		}
		in.Labels = merged
	}
	if f.set["gpu"] {
		in.GPU = strings.TrimSpace(f.gpu)
	}
	if f.set["queue-timeout"] {
		in.QueueTimeout = workflows.Duration(f.queueTimeout)
	}
	if f.set["execution-timeout"] {
		in.ExecutionTimeout = workflows.Duration(f.executionTimeout)
	}
	if f.set["poll-interval"] {
		in.PollInterval = workflows.Duration(f.pollInterval)
	}
	if f.set["max-attempts"] {
		in.Retry.MaxAttempts = f.maxAttempts
	}
	if f.set["retry-on"] {
		on, err := parseRetryOn(f.retryOn)
		errs = append(errs, err)
		in.Retry.RetryOn = on
	}
	if f.set["skip-outputs"] {
		in.Outputs.Skip = f.skipOutputs
	}
	if f.set["output-folder"] {
		in.Outputs.Folder = f.outputFolder
	}
	// All problems at once: fixing one per attempt is tedious.
	errs = append(errs, checkInput(in))
	return in, errors.Join(errs...)
}

// checkInput runs the workflow's own shape checks, so the starter rejects
// exactly what the workflow would, before anything is started.
func checkInput(in workflows.ComfyRunInput) error {
	var errs []error
	for _, p := range in.Problems() {
		errs = append(errs, errors.New(p))
	}
	return errors.Join(errs...)
}

// newWorkflowID makes the default id. UTC keeps ids from different
// machines sortable by start time; the random suffix keeps two starts in
// the same second apart.
func newWorkflowID(now time.Time, random io.Reader) (string, error) {
	if random == nil {
		random = rand.Reader
	}
	var b [3]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return "", fmt.Errorf("generate a workflow id: %w (pass -id to choose one)", err)
	}
	return "comfyrun-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:]), nil
}

// promptKey picks the input shown in the summary: "prompt" itself, else
// the first input whose name mentions a prompt.
func promptKey(inputs map[string]any) string {
	if _, ok := inputs["prompt"].(string); ok {
		return "prompt"
	}
	for _, k := range sortedKeys(inputs) {
		if _, ok := inputs[k].(string); ok && strings.Contains(strings.ToLower(k), "prompt") && !strings.Contains(strings.ToLower(k), "negative") {
			return k
		}
	}
	return ""
}

// staticSummary is the one line the Temporal UI lists the run under.
func staticSummary(in workflows.ComfyRunInput) string {
	s := "ComfyRun · " + in.DeploymentID
	if k := promptKey(in.Inputs); k != "" {
		s += " · " + k + ": " + truncate(oneLine(in.Inputs[k].(string)), 60)
	}
	return s
}

// staticDetails is the markdown the UI shows on the run's page; it is the
// place to see what a run was asked to do without decoding the input.
func staticDetails(in workflows.ComfyRunInput) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Deployment:** `%s`\n", in.DeploymentID)
	if len(in.Inputs) > 0 {
		b.WriteString("\n**Inputs**\n\n")
		for _, k := range sortedKeys(in.Inputs) {
			fmt.Fprintf(&b, "- `%s`: %s\n", k, truncate(oneLine(renderValue(in.Inputs[k])), 200))
		}
	}
	var opts []string
	if in.GPU != "" {
		opts = append(opts, "GPU "+in.GPU)
	}
	if in.QueueTimeout > 0 {
		opts = append(opts, "queue timeout "+in.QueueTimeout.D().String())
	}
	if in.ExecutionTimeout > 0 {
		opts = append(opts, "execution timeout "+in.ExecutionTimeout.D().String())
	}
	if in.Retry.MaxAttempts > 1 {
		on := "failed, timeout"
		if len(in.Retry.RetryOn) > 0 {
			on = strings.Join(in.Retry.RetryOn, ", ")
		}
		opts = append(opts, fmt.Sprintf("up to %d attempts (retry on %s)", in.Retry.MaxAttempts, on))
	}
	if in.Outputs.Skip {
		opts = append(opts, "outputs left at ComfyDeploy")
	}
	if len(opts) > 0 {
		fmt.Fprintf(&b, "\n**Options:** %s\n", strings.Join(opts, " · "))
	}
	if len(in.Labels) > 0 {
		b.WriteString("\n**Labels:** ")
		keys := make([]string, 0, len(in.Labels))
		for k := range in.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 {
				b.WriteString(" · ")
			}
			fmt.Fprintf(&b, "`%s=%s`", k, in.Labels[k])
		}
		b.WriteString("\n")
	}
	return b.String()
}

// renderValue shows strings bare and everything else as JSON.
func renderValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// truncate cuts s to at most n runes, marking the cut with an ellipsis.
func truncate(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// temporalCommand is the temporal CLI line that starts the same workflow,
// single-quoted for POSIX shells.
func temporalCommand(in workflows.ComfyRunInput, workflowID, taskQueue string) (string, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return "", fmt.Errorf("encode the input: %w", err)
	}
	return fmt.Sprintf("temporal workflow start --type %s --task-queue %s --workflow-id %s --input %s",
		workflows.ComfyRunWorkflow, shellQuote(taskQueue), shellQuote(workflowID), shellQuote(string(b))), nil
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
