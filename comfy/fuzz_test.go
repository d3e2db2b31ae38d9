package comfy

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzDecodeRun checks that no input can panic the tolerant decoders, and
// that whatever decodes also survives a round trip.
func FuzzDecodeRun(f *testing.F) {
	f.Add([]byte(sampleRunJSON))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"outputs":[{"data":{"images":[{"url":1}],"text":"x"}}],"queue_position":1e300}`))
	f.Add([]byte(`{"outputs":{"data":[]},"created_at":12345,"progress":"0.5"}`))
	f.Add([]byte(`{"outputs":[null,1,"x",{"data":null},{"data":{"k":[null,{},[],{"filename":null}]}}]}`))
	f.Add([]byte(`{"machine_version":[1],"workflow_inputs":"x","status":"success"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Run
		if err := json.Unmarshal(data, &r); err != nil {
			return
		}
		_ = r.MediaItems()
		_ = r.Texts()
		_ = CorrelationToken(&r)
		b, err := json.Marshal(&r)
		if err != nil {
			t.Fatalf("decoded run does not encode: %v", err)
		}
		var back Run
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("re-decoding failed: %v\n%s", err, b)
		}
		if back.Status != r.Status || len(back.MediaItems()) != len(r.MediaItems()) || len(back.Texts()) != len(r.Texts()) {
			t.Fatalf("round trip changed the run\n in: %s\nout: %s", data, b)
		}
	})
}

// FuzzTime checks that Time never fails to decode, and that a parsed
// time round-trips exactly.
func FuzzTime(f *testing.F) {
	for _, s := range []string{
		`"2025-01-01T10:05Z"`, `"2025-01-01T10:05:06.123Z"`, `"2025-01-01T10:05:06.123456"`,
		`"2025-01-01T10:05:06+02:00"`, `null`, `""`, `"garbage"`, `1735725906.5`, `"2025-01-01 10:05:06"`,
		`"9999-12-31T23:59:59.999999999-23:59"`, `"0000-01-01T00:00Z"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var tm Time
		if err := tm.UnmarshalJSON([]byte(in)); err != nil {
			t.Fatalf("UnmarshalJSON(%q) failed: %v", in, err)
		}
		b, err := tm.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON: %v", err)
		}
		var back Time
		_ = back.UnmarshalJSON(b)
		if !back.Equal(tm.Time) || back.IsZero() != tm.IsZero() {
			t.Fatalf("round trip %q -> %s -> %v, want %v", in, b, back.Time, tm.Time)
		}
		if s, err := ParseTime(strings.Trim(in, `"`)); err == nil && s.Location().String() != "UTC" {
			t.Fatalf("ParseTime(%q) not in UTC", in)
		}
	})
}

// FuzzSSE checks that the parser never panics and that every event it
// delivers has a name.
func FuzzSSE(f *testing.F) {
	f.Add(observedRunStream)
	f.Add("data: a\r\n\r\ndata: b\r\rid: 1\nretry: 99\n: c\ndata")
	f.Add("\uFEFFevent: x\ndata: y")
	f.Fuzz(func(t *testing.T, in string) {
		r := newSSEReader(strings.NewReader(in))
		for range len(in) + 1 {
			ev, err := r.next()
			if err != nil {
				return
			}
			if ev.Name == "" {
				t.Fatal("event without a name")
			}
			_ = decodeRunStreamEvent(ev)
		}
		t.Fatal("parser did not reach the end")
	})
}
