package comfy

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"
	"time"
)

// maxSSELine bounds one line of an event stream. An "executed" event holds
// a node's whole UI output, so the default 64 KiB is too small.
const maxSSELine = 16 << 20

// sseEvent is one dispatched server-sent event.
type sseEvent struct {
	// Name is the "event:" field, or "message" when there is none.
	Name string
	// Data is the "data:" lines joined with "\n".
	Data string
	// ID is the last event id seen on the stream, which carries over
	// between events as the spec requires.
	ID string
	// Retry is the last reconnection delay the server asked for.
	Retry time.Duration
}

// sseReader parses text/event-stream as the WHATWG HTML spec describes it
// (§9.2.6), with one deliberate difference: an event still being built
// when the stream ends is delivered instead of dropped. ComfyDeploy's
// runner sometimes closes right after its last data line, and that last
// event is usually the terminal status.
type sseReader struct {
	sc     *bufio.Scanner
	lastID string
	retry  time.Duration
	first  bool
}

func newSSEReader(r io.Reader) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxSSELine)
	sc.Split(sseLineSplitter())
	return &sseReader{sc: sc, first: true}
}

// sseLineSplitter splits on CRLF, LF or a lone CR. A CR at the end of the
// buffered data is taken as a line end at once, and a following LF is
// skipped when it arrives. Waiting to see whether an LF follows would delay
// each event until the next one is sent.
func sseLineSplitter() bufio.SplitFunc {
	skipLF := false
	return func(data []byte, atEOF bool) (int, []byte, error) {
		if skipLF && len(data) > 0 {
			skipLF = false
			if data[0] == '\n' {
				return 1, nil, nil
			}
		}
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			if data[i] == '\n' {
				return i + 1, data[:i], nil
			}
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			}
			skipLF = true
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	}
}

// next returns the next event, or io.EOF when the stream ends with no
// event pending. Other errors come from the underlying reader.
func (r *sseReader) next() (sseEvent, error) {
	var (
		name    string
		data    strings.Builder
		hasData bool
	)
	for r.sc.Scan() {
		line := r.sc.Text()
		if r.first {
			r.first = false
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		if line == "" {
			if !hasData {
				name = "" // per spec, a blank line with no data resets the event
				continue
			}
			return r.dispatch(name, data.String()), nil
		}
		if line[0] == ':' {
			continue // comment, used by servers as keep-alive
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			name = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
			hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				r.lastID = value
			}
		case "retry":
			if ms, err := strconv.ParseUint(value, 10, 31); err == nil && isDigits(value) {
				r.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
	if err := r.sc.Err(); err != nil {
		return sseEvent{}, err
	}
	if hasData {
		return r.dispatch(name, data.String()), nil
	}
	return sseEvent{}, io.EOF
}

func (r *sseReader) dispatch(name, data string) sseEvent {
	if name == "" {
		name = "message"
	}
	return sseEvent{
		Name:  name,
		Data:  strings.TrimSuffix(data, "\n"),
		ID:    r.lastID,
		Retry: r.retry,
	}
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
