package comfy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
)

var (
	// ErrStreamEnded is returned by a stream's Next when the server closed
	// the stream before sending a terminal event. The server swallows its
	// own errors and just ends the stream, so use Runs.Get to learn the
	// outcome. errors.Is(err, io.ErrUnexpectedEOF) is also true.
	ErrStreamEnded = fmt.Errorf("comfy: event stream ended before a terminal event: %w", io.ErrUnexpectedEOF)

	// ErrStreamClosed is returned by Next after Close.
	ErrStreamClosed = errors.New("comfy: event stream closed")
)

// eventStream is what the typed streams share: the SSE parser, the
// response body, and the rule that tells a clean end from a broken one.
type eventStream struct {
	ctx          context.Context
	body         io.ReadCloser
	sse          *sseReader
	method, path string
	client       *Client

	sawTerminal bool
	err         error // sticky once the stream has ended
	closed      atomic.Bool
	closeOnce   sync.Once
}

func (c *Client) openStream(ctx context.Context, method, path string, query url.Values, body any, o callOpts) (*eventStream, error) {
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	req, err := c.NewRequest(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Cache-Control", "no-cache")
	o.accept = "text/event-stream"
	resp, err := c.send(ctx, req, o, nil)
	if err != nil {
		return nil, err
	}
	return &eventStream{
		ctx:    ctx,
		body:   resp.Body,
		sse:    newSSEReader(resp.Body),
		method: method,
		path:   c.redact(req.URL.EscapedPath()),
		client: c,
	}, nil
}

func (s *eventStream) next() (sseEvent, error) {
	if s.closed.Load() {
		return sseEvent{}, ErrStreamClosed
	}
	if s.err != nil {
		return sseEvent{}, s.err
	}
	ev, err := s.sse.next()
	if err == nil {
		return ev, nil
	}
	switch {
	case s.closed.Load():
		err = ErrStreamClosed
	case s.ctx.Err() != nil:
		err = s.ctx.Err()
	case errors.Is(err, io.EOF):
		if s.sawTerminal {
			err = io.EOF
		} else {
			err = ErrStreamEnded
		}
	case errors.Is(err, bufio.ErrTooLong):
		err = fmt.Errorf("%w: %s %s: event line longer than %d bytes", ErrUnexpectedResponse, s.method, s.path, maxSSELine)
	default:
		err = s.client.transportErr(s.method, s.path, err)
	}
	s.err = err
	s.close()
	return sseEvent{}, err
}

func (s *eventStream) close() error {
	var err error
	s.closeOnce.Do(func() { err = s.body.Close() })
	return err
}

// Close ends the stream. It may be called from another goroutine to
// unblock Next, which then returns ErrStreamClosed.
func (s *eventStream) Close() error {
	s.closed.Store(true)
	return s.close()
}

// RunStream is the event stream of a stream run (POST /run/*/stream).
// Call Next until it returns io.EOF (the run reached a terminal status) or
// another error. Next must not be called concurrently. Close may be.
type RunStream struct {
	es *eventStream
}

// Kinds of [RunStreamEvent].
const (
	// EventKindLogUpdate carries container or machine log text in Logs.
	EventKindLogUpdate = "log_update"
	// EventKindEventUpdate carries a named event in Event and its payload
	// in Data.
	EventKindEventUpdate = "event_update"
	// EventKindPrompt is ComfyUI's prompt-submission result, an
	// event_update without an "event" key. Data holds
	// {prompt_id, number, node_errors}.
	EventKindPrompt = "prompt"
)

// RunStreamEvent is one event of a run stream.
type RunStreamEvent struct {
	// Kind is EventKindLogUpdate, EventKindEventUpdate, EventKindPrompt, or
	// the SSE event name for anything else.
	Kind string
	// Event names an event_update: queuing, function_call_id, gpu_ready,
	// gpu_event_id, comfyui_api_ready, comfyui_ready, status,
	// execution_start, execution_cached, executing, progress, executed,
	// execution_error, live_status, output_ready…
	Event string
	// Data is the event_update payload, or the whole object for prompt
	// events. It is nil when absent.
	Data json.RawMessage
	// Logs and Timestamp are set for log_update events.
	Logs      string
	Timestamp Time
	// ID is the SSE last-event id, if the server sets one.
	ID string
	// Raw is the SSE data field exactly as received.
	Raw []byte
}

// Next returns the next event. It returns io.EOF after the stream ended
// following a terminal status, and [ErrStreamEnded] if it ended without
// one. If ctx is cancelled, it returns ctx.Err().
func (s *RunStream) Next() (*RunStreamEvent, error) {
	raw, err := s.es.next()
	if err != nil {
		return nil, err
	}
	ev := decodeRunStreamEvent(raw)
	if st, ok := ev.Status(); ok && st.IsTerminal() {
		s.es.sawTerminal = true
	}
	return ev, nil
}

// Close ends the stream. Whether the server then cancels the run is
// unverified. Cancel it explicitly if that matters.
func (s *RunStream) Close() error { return s.es.Close() }

func decodeRunStreamEvent(e sseEvent) *RunStreamEvent {
	ev := &RunStreamEvent{Kind: e.Name, ID: e.ID, Raw: []byte(e.Data)}
	switch e.Name {
	case EventKindLogUpdate:
		var v struct {
			Logs      string `json:"logs"`
			Timestamp Time   `json:"timestamp"`
		}
		if json.Unmarshal(ev.Raw, &v) == nil {
			ev.Logs, ev.Timestamp = v.Logs, v.Timestamp
		} else {
			ev.Logs = e.Data
		}
	case EventKindEventUpdate, "message":
		var obj map[string]json.RawMessage
		if json.Unmarshal(ev.Raw, &obj) != nil {
			break
		}
		if name, ok := obj["event"]; ok {
			ev.Kind = EventKindEventUpdate
			ev.Event = looseString(name)
			if d, ok := obj["data"]; ok && string(d) != "null" {
				ev.Data = d
			}
		} else if e.Name == EventKindEventUpdate {
			ev.Kind = EventKindPrompt
			ev.Data = json.RawMessage(ev.Raw)
		}
	}
	return ev
}

// Status returns the run status of a {event:"status", data:{status}}
// event. ComfyUI's own websocket "status" event, whose status is an object
// describing the queue, is forwarded under the same name. For that one,
// ok is false.
func (e *RunStreamEvent) Status() (RunStatus, bool) {
	if e.Kind != EventKindEventUpdate || e.Event != "status" {
		return "", false
	}
	var v struct {
		Status json.RawMessage `json:"status"`
	}
	if json.Unmarshal(e.Data, &v) != nil {
		return "", false
	}
	var s string
	if json.Unmarshal(v.Status, &s) != nil || s == "" {
		return "", false
	}
	return RunStatus(s), true
}

// PromptID returns the prompt_id of a prompt event or of a node event. It
// equals the ComfyDeploy run id.
func (e *RunStreamEvent) PromptID() string {
	if e.Kind != EventKindPrompt && e.Kind != EventKindEventUpdate {
		return ""
	}
	var v struct {
		PromptID json.RawMessage `json:"prompt_id"`
	}
	if json.Unmarshal(e.Data, &v) != nil {
		return ""
	}
	return looseString(v.PromptID)
}

// FunctionCallID returns the Modal call id of a function_call_id event.
// From that event on, the run can be cancelled.
func (e *RunStreamEvent) FunctionCallID() (string, bool) {
	if e.Kind != EventKindEventUpdate || e.Event != "function_call_id" {
		return "", false
	}
	s := looseString(e.Data)
	return s, s != ""
}

// LiveStatus returns the text and the 0–1 progress of a live_status event.
func (e *RunStreamEvent) LiveStatus() (text string, progress float64, ok bool) {
	if e.Kind != EventKindEventUpdate || e.Event != "live_status" {
		return "", 0, false
	}
	var v struct {
		LiveStatus string  `json:"live_status"`
		Progress   float64 `json:"progress"`
	}
	if json.Unmarshal(e.Data, &v) != nil {
		return "", 0, false
	}
	return v.LiveStatus, v.Progress, true
}

// NodeProgress returns the step counter of ComfyUI's progress event
// ({value, max, node}).
func (e *RunStreamEvent) NodeProgress() (value, maxValue int, node string, ok bool) {
	if e.Kind != EventKindEventUpdate || e.Event != "progress" {
		return 0, 0, "", false
	}
	var v struct {
		Value json.RawMessage `json:"value"`
		Max   json.RawMessage `json:"max"`
		Node  json.RawMessage `json:"node"`
	}
	if json.Unmarshal(e.Data, &v) != nil {
		return 0, 0, "", false
	}
	return looseInt(v.Value), looseInt(v.Max), looseString(v.Node), true
}

// StreamsService reads the org-wide progress and log streams. These
// routes are in the internal spec only.
type StreamsService service

// ProgressStreamOptions selects what Progress follows. Set exactly one of
// RunID, WorkflowID and MachineID.
type ProgressStreamOptions struct {
	RunID      string
	WorkflowID string
	MachineID  string
	// ReturnRun makes the server send whole run rows instead of progress
	// messages. They are decoded into ProgressEvent.Run.
	ReturnRun    bool
	Status       string
	DeploymentID string
}

// ProgressEvent is one message of the progress stream. Control messages
// have Type "connection_established" (Channels), "subscribed" (Channel) or
// "error" (Message). Progress messages have an empty Type.
type ProgressEvent struct {
	Type       string   `json:"type"`
	Channels   []string `json:"channels,omitempty"`
	Channel    string   `json:"channel,omitempty"`
	Message    string   `json:"message,omitempty"`
	RunID      string   `json:"run_id"`
	WorkflowID string   `json:"workflow_id"`
	MachineID  string   `json:"machine_id"`
	// Progress is -1 when unknown.
	Progress float64 `json:"progress"`
	// Status is a run status, or "input" when a run was created, or
	// "output" when an output was stored.
	Status    string `json:"status"`
	NodeClass string `json:"node_class"`
	Timestamp Time   `json:"timestamp"`
	// Run is set when ReturnRun was requested.
	Run *Run `json:"-"`
	// Raw is the message as received.
	Raw []byte `json:"-"`
}

// RunStatus returns Status as a run status. ok is false for the "input"
// and "output" markers and for control messages.
func (e *ProgressEvent) RunStatus() (RunStatus, bool) {
	switch e.Status {
	case "", "input", "output":
		return "", false
	}
	return RunStatus(e.Status), true
}

// ProgressStream reads GET /v2/stream-progress.
type ProgressStream struct {
	es   *eventStream
	opts ProgressStreamOptions
}

// Progress opens the org's progress stream (GET /v2/stream-progress).
//
// The server has these flaws, confirmed in its code:
//   - The run_id filter is missing. A run_id stream receives the events of
//     every run in the org. This client drops events of other runs, but
//     still shows control messages.
//   - The server ends a run_id stream at the first terminal status of ANY
//     run. If that was another run, Next returns [ErrStreamEnded] without
//     the watched run having finished.
//   - An API cancel publishes an event without a status, so a stream
//     watching a cancelled run never ends on its own. Use a deadline.
//   - There is no per-node progress: live progress updates are not
//     published, only status changes and input/output markers.
//
// To track a run, poll Runs.Get (and use webhooks as hints). Use this only
// for dashboards.
func (s *StreamsService) Progress(ctx context.Context, opts ProgressStreamOptions) (*ProgressStream, error) {
	set := 0
	for _, v := range []string{opts.RunID, opts.WorkflowID, opts.MachineID} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("%w: set exactly one of RunID, WorkflowID and MachineID", ErrInvalidArgument)
	}
	q := url.Values{}
	setStr(q, "run_id", opts.RunID)
	setStr(q, "workflow_id", opts.WorkflowID)
	setStr(q, "machine_id", opts.MachineID)
	if opts.ReturnRun {
		q.Set("return_run", "true")
	}
	setStr(q, "status", opts.Status)
	setStr(q, "deployment_id", opts.DeploymentID)
	es, err := s.client.openStream(ctx, http.MethodGet, "/v2/stream-progress", q, nil, callOpts{})
	if err != nil {
		return nil, err
	}
	return &ProgressStream{es: es, opts: opts}, nil
}

// Next returns the next event. It returns io.EOF if the stream ended after
// a terminal status, and [ErrStreamEnded] otherwise.
func (s *ProgressStream) Next() (*ProgressEvent, error) {
	for {
		raw, err := s.es.next()
		if err != nil {
			return nil, err
		}
		ev := &ProgressEvent{Raw: []byte(raw.Data)}
		if json.Unmarshal(ev.Raw, ev) != nil {
			ev = &ProgressEvent{Type: "unparsed", Raw: []byte(raw.Data)}
			return ev, nil
		}
		if ev.Type == "" && s.opts.ReturnRun {
			var run Run
			if json.Unmarshal(ev.Raw, &run) == nil && run.ID != "" {
				ev.Run = &run
				ev.RunID = run.ID
				ev.WorkflowID, ev.MachineID = run.WorkflowID, run.MachineID
				ev.Status, ev.Progress = string(run.Status), run.Progress
			}
		}
		if ev.Type == "" && s.opts.RunID != "" && ev.RunID != "" && ev.RunID != s.opts.RunID {
			continue
		}
		if st, ok := ev.RunStatus(); ok && st.IsTerminal() {
			s.es.sawTerminal = true
		}
		return ev, nil
	}
}

// Close ends the stream.
func (s *ProgressStream) Close() error { return s.es.Close() }

// LogStreamOptions selects what Logs follows. Set exactly one of RunID,
// MachineVersionID and SessionID.
type LogStreamOptions struct {
	RunID string
	// MachineVersionID is sent as "machine_id_version".
	MachineVersionID string
	SessionID        string
	LogLevel         string
	ClientID         string
}

// LogEvent is one log message. The last message of a stream has Type
// "stream_complete" and names its Source (live or archived).
type LogEvent struct {
	Message   string `json:"message"`
	Level     string `json:"level"`
	Timestamp Time   `json:"timestamp"`
	Type      string `json:"type,omitempty"`
	Source    string `json:"source,omitempty"`
	Raw       []byte `json:"-"`
}

// LogStream reads GET /v2/stream-logs.
type LogStream struct {
	es *eventStream
}

// Logs opens a log stream (GET /v2/stream-logs). It serves live logs, or
// archived ones for finished runs. Webhook deliveries are logged at level
// "webhook".
func (s *StreamsService) Logs(ctx context.Context, opts LogStreamOptions) (*LogStream, error) {
	set := 0
	for _, v := range []string{opts.RunID, opts.MachineVersionID, opts.SessionID} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("%w: set exactly one of RunID, MachineVersionID and SessionID", ErrInvalidArgument)
	}
	q := url.Values{}
	setStr(q, "run_id", opts.RunID)
	setStr(q, "machine_id_version", opts.MachineVersionID)
	setStr(q, "session_id", opts.SessionID)
	setStr(q, "log_level", opts.LogLevel)
	setStr(q, "client_id", opts.ClientID)
	es, err := s.client.openStream(ctx, http.MethodGet, "/v2/stream-logs", q, nil, callOpts{})
	if err != nil {
		return nil, err
	}
	return &LogStream{es: es}, nil
}

// Next returns the next log message. It returns io.EOF once the stream
// ended after its stream_complete message, and [ErrStreamEnded] if it
// ended before one.
func (s *LogStream) Next() (*LogEvent, error) {
	raw, err := s.es.next()
	if err != nil {
		return nil, err
	}
	ev := &LogEvent{Raw: []byte(raw.Data)}
	if json.Unmarshal(ev.Raw, ev) != nil {
		// Plain text lines are still log lines.
		ev = &LogEvent{Message: raw.Data, Raw: ev.Raw}
	}
	if ev.Type == "stream_complete" {
		s.es.sawTerminal = true
	}
	return ev, nil
}

// Close ends the stream.
func (s *LogStream) Close() error { return s.es.Close() }
