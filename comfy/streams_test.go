package comfy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func readAllSSE(t *testing.T, in string) []sseEvent {
	t.Helper()
	r := newSSEReader(strings.NewReader(in))
	var out []sseEvent
	for {
		ev, err := r.next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		out = append(out, ev)
	}
}

func TestSSEParser(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want []sseEvent
	}{
		{"basic", "event: a\ndata: 1\n\n", []sseEvent{{Name: "a", Data: "1"}}},
		{"default name", "data: x\n\n", []sseEvent{{Name: "message", Data: "x"}}},
		{"multi-line data", "data: a\ndata:b\ndata:  c\n\n", []sseEvent{{Name: "message", Data: "a\nb\n c"}}},
		{"CRLF", "event: e\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n", []sseEvent{{Name: "e", Data: "1"}, {Name: "message", Data: "2"}}},
		{"lone CR", "data: 1\r\rdata: 2\r\r", []sseEvent{{Name: "message", Data: "1"}, {Name: "message", Data: "2"}}},
		{"comments and unknown fields", ": keepalive\nfoo: bar\ndata: x\n: again\n\n", []sseEvent{{Name: "message", Data: "x"}}},
		{"blank lines without data reset the event name", "event: a\n\n\ndata: x\n\n", []sseEvent{{Name: "message", Data: "x"}}},
		{"empty data field dispatches", "data\n\n", []sseEvent{{Name: "message", Data: ""}}},
		{"id persists and retry parsed", "id: 7\nretry: 1500\ndata: a\n\ndata: b\n\nid\ndata: c\n\n", []sseEvent{
			{Name: "message", Data: "a", ID: "7", Retry: 1500 * time.Millisecond},
			{Name: "message", Data: "b", ID: "7", Retry: 1500 * time.Millisecond},
			{Name: "message", Data: "c", ID: "", Retry: 1500 * time.Millisecond},
		}},
		{"bad retry ignored", "retry: 1s\ndata: a\n\n", []sseEvent{{Name: "message", Data: "a"}}},
		{"BOM", "\uFEFFdata: a\n\n", []sseEvent{{Name: "message", Data: "a"}}},
		{"final event without blank line", "data: a\n\nevent: last\ndata: {\"x\":1}", []sseEvent{{Name: "message", Data: "a"}, {Name: "last", Data: `{"x":1}`}}},
		{"trailing event name without data is dropped", "data: a\n\nevent: x\n", []sseEvent{{Name: "message", Data: "a"}}},
		{"colon in value", "data: a: b\n\n", []sseEvent{{Name: "message", Data: "a: b"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := readAllSSE(t, tc.in)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// chunkedReader returns one byte per Read, to check that splitting across
// reads (a CR at the end of one read, its LF in the next) is handled.
type chunkedReader struct{ s string }

func (r *chunkedReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

func TestSSEParserByteAtATime(t *testing.T) {
	r := newSSEReader(&chunkedReader{s: "data: 1\r\n\r\ndata: 2\r\rdata: 3\n\n"})
	var got []string
	for {
		ev, err := r.next()
		if err != nil {
			break
		}
		got = append(got, ev.Data)
	}
	assertEq(t, strings.Join(got, ","), "1,2,3")
}

// sseHandler writes the given raw stream and flushes.
func sseHandler(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, body)
		w.(http.Flusher).Flush()
	}
}

const observedRunStream = "event: event_update\ndata: {\"event\":\"queuing\"}\n\n" +
	"event: event_update\ndata: {\"event\":\"function_call_id\",\"data\":\"fc-123\"}\n\n" +
	"event: log_update\ndata: {\"logs\":\"container up\",\"timestamp\":\"2025-01-01T10:05:06.123Z\"}\n\n" +
	"event: event_update\ndata: {\"event\":\"comfyui_ready\"}\n\n" +
	"event: event_update\ndata: {\"prompt_id\":\"run-1\",\"number\":1,\"node_errors\":{}}\n\n" +
	"event: event_update\ndata: {\"event\":\"status\",\"data\":{\"status\":{\"exec_info\":{\"queue_remaining\":1}},\"sid\":\"s\"}}\n\n" +
	"event: event_update\ndata: {\"event\":\"progress\",\"data\":{\"value\":3,\"max\":20,\"node\":\"3\",\"prompt_id\":\"run-1\"}}\n\n" +
	"event: event_update\ndata: {\"event\":\"live_status\",\"data\":{\"prompt_id\":\"run-1\",\"live_status\":\"Executing KSampler\",\"progress\":0.5}}\n\n" +
	"event: event_update\ndata: {\"event\":\"status\",\"data\":{\"prompt_id\":\"run-1\",\"status\":\"success\"}}\n\n"

func TestRunStream(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("POST /api/run/deployment/stream", sseHandler(observedRunStream))
	c := f.client()
	s, err := c.Runs.StreamDeployment(context.Background(), &DeploymentRunRequest{DeploymentID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	assertEq(t, f.last().Header.Get("Accept"), "text/event-stream")
	assertJSONEqual(t, f.last().Body, `{"deployment_id":"d"}`)

	var kinds []string
	var statuses []RunStatus
	var fc, prompt, live string
	var nodeValue, nodeMax int
	var logs string
	for {
		ev, err := s.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		kinds = append(kinds, ev.Kind+":"+ev.Event)
		if st, ok := ev.Status(); ok {
			statuses = append(statuses, st)
		}
		if id, ok := ev.FunctionCallID(); ok {
			fc = id
		}
		if ev.Kind == EventKindPrompt {
			prompt = ev.PromptID()
		}
		if text, p, ok := ev.LiveStatus(); ok {
			live = fmt.Sprintf("%s@%.1f", text, p)
		}
		if v, m, _, ok := ev.NodeProgress(); ok {
			nodeValue, nodeMax = v, m
		}
		if ev.Kind == EventKindLogUpdate {
			logs = ev.Logs + "|" + ev.Timestamp.String()
		}
	}
	assertEq(t, strings.Join(kinds, " "), "event_update:queuing event_update:function_call_id log_update: event_update:comfyui_ready prompt: event_update:status event_update:progress event_update:live_status event_update:status")
	if len(statuses) != 1 || statuses[0] != StatusSuccess {
		t.Errorf("statuses = %v (ComfyUI's queue status event must not count)", statuses)
	}
	assertEq(t, fc, "fc-123")
	assertEq(t, prompt, "run-1")
	assertEq(t, live, "Executing KSampler@0.5")
	assertEq(t, nodeValue, 3)
	assertEq(t, nodeMax, 20)
	assertEq(t, logs, "container up|2025-01-01T10:05:06.123Z")
	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("Next after end = %v, want io.EOF again", err)
	}
}

func TestRunStreamEndsWithoutTerminal(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("POST /api/run/workflow/stream", sseHandler("event: event_update\ndata: {\"event\":\"queuing\"}\n\n"))
	s, err := f.client().Runs.StreamWorkflow(context.Background(), &WorkflowRunRequest{WorkflowID: "w", WorkflowAPIJSON: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	_, err = s.Next()
	if !errors.Is(err, ErrStreamEnded) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("err = %v, want ErrStreamEnded", err)
	}
}

func TestRunStreamLastEventWithoutBlankLine(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("POST /api/run/deployment/stream", sseHandler("event: event_update\ndata: {\"event\":\"status\",\"data\":{\"prompt_id\":\"r\",\"status\":\"failed\"}}"))
	s, err := f.client().Runs.StreamDeployment(context.Background(), &DeploymentRunRequest{DeploymentID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := ev.Status(); !ok || st != StatusFailed {
		t.Errorf("status = %v %v", st, ok)
	}
	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("err = %v, want io.EOF", err)
	}
}

func TestRunStreamHTTPError(t *testing.T) {
	f := newFakeAPI(t)
	f.json("POST /api/run/deployment/stream", 403, `{"detail":"Insufficient your GPU credits to create run"}`)
	_, err := f.client().Runs.StreamDeployment(context.Background(), &DeploymentRunRequest{DeploymentID: "d"})
	if !IsForbidden(err) {
		t.Errorf("err = %v", err)
	}
}

func TestStreamCloseUnblocksNext(t *testing.T) {
	f := newFakeAPI(t)
	release := make(chan struct{})
	f.handle("GET /api/v2/stream-logs", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "data: {\"message\":\"hi\",\"level\":\"info\"}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	s, err := f.client().Streams.Logs(context.Background(), LogStreamOptions{RunID: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := s.Next(); err != nil || ev.Message != "hi" {
		t.Fatalf("ev=%+v err=%v", ev, err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := s.Next()
		errc <- err
	}()
	_ = s.Close()
	if err := <-errc; !errors.Is(err, ErrStreamClosed) {
		t.Errorf("err = %v, want ErrStreamClosed", err)
	}
}

func TestStreamContextCancel(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /api/v2/stream-progress", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "data: {\"type\":\"connection_established\",\"channels\":[\"progress:org:o\"]}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(context.Background())
	s, err := f.client().Streams.Progress(ctx, ProgressStreamOptions{MachineID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ev, err := s.Next()
	if err != nil || ev.Type != "connection_established" || ev.Channels[0] != "progress:org:o" {
		t.Fatalf("ev=%+v err=%v", ev, err)
	}
	cancel()
	if _, err := s.Next(); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestProgressStreamFiltersOtherRuns(t *testing.T) {
	body := "data: {\"type\":\"connection_established\",\"channels\":[\"c\"]}\n\n" +
		"data: {\"type\":\"subscribed\",\"channel\":\"c\"}\n\n" +
		"data: {\"run_id\":\"other\",\"status\":\"running\",\"progress\":-1}\n\n" +
		"data: {\"run_id\":\"mine\",\"status\":\"input\",\"progress\":-1}\n\n" +
		"data: {\"run_id\":\"mine\",\"status\":\"running\",\"progress\":-1,\"node_class\":\"KSampler\",\"timestamp\":\"2025-01-01T10:05Z\"}\n\n"
	t.Run("own terminal ends cleanly", func(t *testing.T) {
		f := newFakeAPI(t)
		f.handle("GET /api/v2/stream-progress", sseHandler(body+"data: {\"run_id\":\"mine\",\"status\":\"success\",\"progress\":1}\n\n"))
		s, err := f.client().Streams.Progress(context.Background(), ProgressStreamOptions{RunID: "mine", ReturnRun: false})
		if err != nil {
			t.Fatal(err)
		}
		assertEq(t, f.last().Query, "run_id=mine")
		var seen []string
		for {
			ev, err := s.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if ev.RunID == "other" {
				t.Error("event of another run delivered")
			}
			seen = append(seen, ev.Type+"/"+ev.Status)
		}
		assertEq(t, strings.Join(seen, " "), "connection_established/ subscribed/ /input /running /success")
	})
	t.Run("other run's terminal ends the stream early", func(t *testing.T) {
		f := newFakeAPI(t)
		f.handle("GET /api/v2/stream-progress", sseHandler(body+"data: {\"run_id\":\"other\",\"status\":\"failed\"}\n\n"))
		s, err := f.client().Streams.Progress(context.Background(), ProgressStreamOptions{RunID: "mine"})
		if err != nil {
			t.Fatal(err)
		}
		var err2 error
		for err2 == nil {
			_, err2 = s.Next()
		}
		if !errors.Is(err2, ErrStreamEnded) {
			t.Errorf("err = %v, want ErrStreamEnded", err2)
		}
	})
}

func TestProgressStreamReturnRun(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /api/v2/stream-progress", sseHandler("data: {\"id\":\"r1\",\"workflow_id\":\"w\",\"status\":\"cancelled\",\"progress\":0.3}\n\n"))
	s, err := f.client().Streams.Progress(context.Background(), ProgressStreamOptions{WorkflowID: "w", ReturnRun: true, DeploymentID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	assertEq(t, f.last().Query, "deployment_id=d&return_run=true&workflow_id=w")
	ev, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	if ev.Run == nil || ev.RunID != "r1" || ev.Status != "cancelled" || ev.Progress != 0.3 {
		t.Errorf("ev = %+v", ev)
	}
	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("err = %v, want io.EOF after a terminal", err)
	}
}

func TestLogStream(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /api/v2/stream-logs", sseHandler(
		"data: {\"message\":\"loading model\",\"level\":\"info\",\"timestamp\":\"2025-01-01T10:05:06\"}\n\n"+
			"data: plain text line\n\n"+
			"data: {\"message\":\"POST https://hook 200\",\"level\":\"webhook\"}\n\n"+
			"data: {\"type\":\"stream_complete\",\"source\":\"clickhouse\"}\n\n"))
	s, err := f.client().Streams.Logs(context.Background(), LogStreamOptions{RunID: "r", LogLevel: "info"})
	if err != nil {
		t.Fatal(err)
	}
	assertEq(t, f.last().Query, "log_level=info&run_id=r")
	var msgs []string
	for {
		ev, err := s.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, ev.Level+":"+ev.Message+":"+ev.Type+ev.Source)
	}
	assertEq(t, strings.Join(msgs, "|"), "info:loading model:|:plain text line:|webhook:POST https://hook 200:|::stream_completeclickhouse")
}
