package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/temporal"
	"sigs.k8s.io/yaml"
)

// readDocFile reads the -f FILE of batch, pipeline and schedule create; "-"
// is stdin. It returns the bytes and the name to use in messages.
func readDocFile(e *env, path, what string) ([]byte, string, error) {
	if path == "" {
		return nil, "", fmt.Errorf("missing -f FILE: pass the path of a %s JSON or YAML file (or -f - for stdin)", what)
	}
	if path == "-" {
		data, err := io.ReadAll(e.stdin)
		if err != nil {
			return nil, "(stdin)", fmt.Errorf("-f -: %w", err)
		}
		return data, "(stdin)", nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, path, fmt.Errorf("-f: %w: pass the path of a %s JSON or YAML file, or - for stdin", err, what)
	}
	return data, path, nil
}

// decodeStrict decodes one JSON or YAML document into v. JSON is read as
// is; anything else is converted from YAML first (duplicate keys are
// errors). Unknown fields are errors that name the field, because a
// misspelt field would otherwise be dropped silently; numbers in untyped
// places (inputs) stay json.Number so 64-bit seeds keep every digit.
// fields lists the document's top-level fields for the message.
func decodeStrict(data []byte, name, what, fields string, v any) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return fmt.Errorf("-f %s: the file is empty; it must hold one %s (JSON or YAML)", name, what)
	}
	js := trimmed
	if trimmed[0] != '{' && trimmed[0] != '[' {
		var err error
		if js, err = yaml.YAMLToJSONStrict(trimmed); err != nil {
			return fmt.Errorf("-f %s: not valid YAML or JSON: %s", name, strings.TrimPrefix(err.Error(), "error converting YAML to JSON: "))
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || t[0] != '{' {
			return fmt.Errorf("-f %s: the document is not an object; it must hold one %s with the fields %s", name, what, fields)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := strings.TrimPrefix(err.Error(), "json: ")
		if strings.HasPrefix(msg, "unknown field") {
			return fmt.Errorf("-f %s: %s: remove or correct it (a %s has the fields %s)", name, msg, what, fields)
		}
		return fmt.Errorf("-f %s: %s; the file must hold one %s (fields: %s)", name, msg, what, fields)
	}
	if len(bytes.TrimSpace(js[dec.InputOffset():])) > 0 {
		return fmt.Errorf("-f %s: extra data after the first document; the file must hold exactly one %s", name, what)
	}
	return nil
}

// newID makes a default workflow or schedule id: prefix, UTC start time
// (so ids sort by time across machines) and 3 random bytes (so two starts
// in the same second differ).
func newID(prefix string, now time.Time, random io.Reader) (string, error) {
	if random == nil {
		random = rand.Reader
	}
	var b [3]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return "", fmt.Errorf("generate an id: %w (pass -id to choose one)", err)
	}
	return prefix + "-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:]), nil
}

// idOrNew is the -id flag of batch and pipeline, or a new id with prefix.
func (e *env) idOrNew(flagValue, prefix string) (string, error) {
	if id := strings.TrimSpace(flagValue); id != "" {
		return id, nil
	}
	id, err := newID(prefix, e.now(), nil)
	if err != nil {
		return "", withCode(exitUsage, err)
	}
	return id, nil
}

// kind describes one workflow type the starter drives with a group of
// subcommands ("batch", "pipeline"), for the messages that name them.
type kind struct {
	workflowType string // ComfyBatch
	noun         string // batch
	sub          string // "batch " (the command group, with a space)
}

// findHint says how to find ids of this kind.
func (k kind) findHint() string {
	return fmt.Sprintf("list them with `temporal workflow list --query \"WorkflowType='%s'\"`", k.workflowType)
}

// oneID reads the single positional id of a group's subcommand.
func (k kind) oneID(fs interface{ Name() string }, pos []string) (string, error) {
	switch len(pos) {
	case 1:
		if strings.TrimSpace(pos[0]) == "" {
			return "", usageErrorf("the %s id is empty: pass the id printed by `starter %s-f FILE` (%s)", k.noun, k.sub, k.findHint())
		}
		return pos[0], nil
	case 0:
		return "", usageErrorf("missing %s id: use `starter %s %s_ID` (%s)", k.noun, fs.Name(), strings.ToUpper(k.noun), k.findHint())
	default:
		return "", usageErrorf("expected one %s id, got %d arguments (%s): put flags before or after the id", k.noun, len(pos), strings.Join(pos, " "))
	}
}

// describe fetches the id's latest run and checks that it is of this kind,
// so `batch status` on a ComfyRun id says which command to use instead.
func (k kind) describe(ctx context.Context, c *conn, id string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		if isNotFound(err) {
			return nil, withCode(exitTemporal, fmt.Errorf("%s %q not found in namespace %q at %s: check the id (%s), or set TEMPORAL_NAMESPACE", k.noun, id, c.namespace, c.hostPort, k.findHint()))
		}
		return nil, c.temporalError("describe workflow", id, err)
	}
	if t := desc.GetWorkflowExecutionInfo().GetType().GetName(); t != k.workflowType {
		return nil, usageErrorf("workflow %s is a %s, not a %s: %s", id, t, k.workflowType, commandFor(t, id))
	}
	return desc, nil
}

// commandFor names the starter command that shows a workflow of type t.
func commandFor(t, id string) string {
	switch t {
	case "ComfyRun":
		return "use `starter status " + id + "`"
	case "ComfyBatch":
		return "use `starter batch status " + id + "`"
	case "ComfyPipeline":
		return "use `starter pipeline status " + id + "`"
	}
	return "the starter does not know this workflow type; use `temporal workflow describe --workflow-id " + id + "`"
}

// outcome is how a closed workflow ended, read from its result or error.
type outcome struct {
	// status is the execution status implied by the error ("" on success).
	status string
	fail   *failureInfo
	// hasResult says the result (or the failure's details) filled res.
	hasResult bool
}

// statusAfter is the execution status a report shows once the outcome is
// known: the described one, unless the description was taken while the
// workflow still ran (or said nothing) and the error tells how it ended.
func (o outcome) statusAfter(described string) string {
	if o.status != "" && (described == "" || described == "Running") {
		return o.status
	}
	return described
}

// fetchOutcome reads a closed workflow's result into res, or its failure
// and the result-shaped details a failure or cancellation carries
// (isResult tells a decoded result from an empty one). runID "" follows
// the chain to its last run.
func fetchOutcome(ctx context.Context, c *conn, sub, id, runID string, res any, isResult func() bool) (outcome, error) {
	err := c.GetWorkflow(ctx, id, runID).Get(ctx, res)
	if err == nil {
		return outcome{hasResult: true}, nil
	}
	var (
		appErr      *temporal.ApplicationError
		canceledErr *temporal.CanceledError
		timeoutErr  *temporal.TimeoutError
		termErr     *temporal.TerminatedError
		execErr     *temporal.WorkflowExecutionError
	)
	var o outcome
	switch {
	case errors.As(err, &appErr):
		o.fail = &failureInfo{Type: appErr.Type(), Message: appErr.Message()}
		if appErr.HasDetails() {
			o.hasResult, o.fail.Problems = decodeDetails(appErr.Details, res, isResult)
		}
	case errors.As(err, &canceledErr):
		if canceledErr.HasDetails() {
			o.hasResult, _ = decodeDetails(canceledErr.Details, res, isResult)
		}
	case errors.As(err, &timeoutErr):
		o.fail = &failureInfo{Type: "Timeout", Message: "the workflow hit its " + strings.ToLower(strings.TrimPrefix(timeoutErr.TimeoutType().String(), "TimeoutType")) + " timeout"}
	case errors.As(err, &termErr):
		o.fail = &failureInfo{Type: "Terminated", Message: "the workflow was terminated (see the Web UI for the reason)"}
	case errors.As(err, &execErr):
		o.fail = &failureInfo{Type: "WorkflowFailed", Message: execErr.Unwrap().Error()}
	case ctx.Err() != nil:
		return o, interruptedIn(sub, id)
	default:
		return o, c.temporalError("get the workflow result", id, err)
	}
	o.status = statusOfError(err)
	return o, nil
}

// decodeDetails reads the details a workflow attaches to its failures:
// its partial result into res (isResult tells a decoded result from an
// empty one), or else the list of problems of a rejection.
func decodeDetails(get func(...any) error, res any, isResult func() bool) (bool, []string) {
	if err := get(res); err == nil && isResult() {
		return true, nil
	}
	var problems []string
	if err := get(&problems); err == nil {
		return false, problems
	}
	return false, nil
}

// subcommand is one command of a group such as `starter batch`.
type subcommand struct {
	name, synopsis, summary string
	run                     func(ctx context.Context, e *env, args []string) error
}

// dispatch runs the group's subcommand named by args[0], or start when
// args[0] is a flag (the group's own command starts a workflow).
func dispatch(ctx context.Context, e *env, group string, subs []subcommand, start func(context.Context, *env, []string) error, args []string) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		for _, s := range subs {
			if s.name == args[0] {
				return s.run(ctx, e, args[1:])
			}
		}
		if start == nil {
			return usageErrorf("unknown %s command %q; the commands are %s (see `starter %s -h`)", group, args[0], subNames(subs), group)
		}
		return usageErrorf("unknown %s command %q; start one with `starter %s -f FILE`, or use %s (see `starter %s -h`)", group, args[0], group, subNames(subs), group)
	}
	if start == nil {
		return usageErrorf("missing %s command: use one of %s (see `starter %s -h`)", group, subNames(subs), group)
	}
	return start(ctx, e, args)
}

func subNames(subs []subcommand) string {
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.name
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// subcommandHelp lists a group's subcommands for its -h.
func subcommandHelp(group string, subs []subcommand) string {
	var b strings.Builder
	b.WriteString("Commands of the " + group + ":\n")
	for _, s := range subs {
		fmt.Fprintf(&b, "  starter %s %s %s\n      %s\n", group, s.name, s.synopsis, s.summary)
	}
	return b.String()
}
