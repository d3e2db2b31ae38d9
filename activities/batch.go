package activities

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/outputstore"
	"github.com/durable-comfy/durable-comfy/preflight"
)

// Batch source formats.
const (
	FormatJSONL = "jsonl"
	FormatCSV   = "csv"
)

// ErrTypeBatchSource is the application error type for a batch source that
// cannot be read (missing file, HTTP 404): repeating the read cannot help.
const ErrTypeBatchSource = "BatchSourceUnavailable"

// maxPageBytes keeps one page of items well below Temporal's 2 MiB payload
// limit whatever the page size: a page ends early once this much was read.
const maxPageBytes = 1 << 20

// BatchSource names a file of batch items too large to travel inline: one
// JSON object per line (JSONL) or a CSV file whose header row names the
// inputs. Exactly one of Path and URL is set.
type BatchSource struct {
	// Path is a regular file on the worker's file system, absolute or
	// relative to the worker's working directory, that must lie below one
	// of the worker's source directories (COMFY_SOURCE_DIRS); without them
	// path sources are refused. See docs/security.md.
	Path string `json:"path,omitempty"`
	// URL is an http(s) URL, fetched without credentials from a public
	// address or a host the worker allows (COMFY_SOURCE_URL_ALLOW), or the
	// URL of an object in the worker's output store (s3://bucket/prefix/
	// items.jsonl with COMFY_OUTPUT_URL=s3://bucket/prefix), read with the
	// worker's store credentials; objects of other buckets are refused.
	URL string `json:"url,omitempty"`
	// Format is "jsonl" or "csv"; by default it follows the extension
	// (.jsonl, .ndjson, .csv).
	Format string `json:"format,omitempty"`
}

// ResolvedFormat returns the source's format, from Format or the extension.
// It is pure, so workflows validate sources with it before any read.
func (s BatchSource) ResolvedFormat() (string, error) {
	switch {
	case s.Path == "" && s.URL == "":
		return "", errors.New("source needs a path or a url")
	case s.Path != "" && s.URL != "":
		return "", errors.New("source takes a path or a url, not both")
	}
	if s.URL != "" {
		u, err := url.Parse(s.URL)
		if err != nil || !sourceSchemes[u.Scheme] || u.Host == "" {
			return "", fmt.Errorf("source url %q must be an http(s) URL or an object of the worker's output store (s3://, gs://, azblob://)", s.URL)
		}
	}
	switch f := strings.ToLower(s.Format); f {
	case FormatJSONL, FormatCSV:
		return f, nil
	case "":
	default:
		return "", fmt.Errorf("source format %q must be %q or %q", s.Format, FormatJSONL, FormatCSV)
	}
	name := s.Path
	if s.URL != "" {
		u, _ := url.Parse(s.URL)
		name = u.Path
	}
	switch strings.ToLower(path.Ext(name)) {
	case ".jsonl", ".ndjson":
		return FormatJSONL, nil
	case ".csv":
		return FormatCSV, nil
	}
	return "", fmt.Errorf("cannot tell the format of %q from its extension; set source.format to %q or %q", name, FormatJSONL, FormatCSV)
}

// sourceSchemes are the URL schemes a source may have: http(s), fetched
// through the worker's egress rules, and the object stores, read only when
// the URL lies inside the worker's own output store (COMFY_OUTPUT_URL).
var sourceSchemes = map[string]bool{"http": true, "https": true, "s3": true, "gs": true, "azblob": true}

// BatchCursor is where the next page of a source starts. The zero value is
// the start of the source. Callers pass back the Next cursor of the previous
// page unchanged.
type BatchCursor struct {
	// Index is the item index of the next record (0-based).
	Index int `json:"index"`
	// Byte is the offset of the next record, so a page costs a seek (or an
	// HTTP Range request) rather than a re-read of everything before it.
	Byte int64 `json:"byte"`
	// Line is the 1-based line number at Byte, for error messages.
	Line int `json:"line"`
	// Header holds a CSV source's column names once read.
	Header []string `json:"header,omitempty"`
}

// ReadBatchItemsRequest asks for one page of a batch source.
type ReadBatchItemsRequest struct {
	Source BatchSource `json:"source"`
	Cursor BatchCursor `json:"cursor"`
	Limit  int         `json:"limit"`
	// CountTotal asks for the number of items in the whole source. It is
	// answered for local files only (one extra pass over the file); for URLs
	// the total is known when the last page is read.
	CountTotal bool `json:"count_total,omitempty"`
	// OnlyDeclared keeps the source's records to the Declared inputs (the
	// deployments' declared input names): a CSV header column or a JSON key
	// outside them fails the source or the item, and neither its name nor
	// its value enters the result (and so the workflow's history). It is
	// how a file that was never meant as a batch source stays out of
	// history and errors.
	OnlyDeclared bool     `json:"only_declared,omitempty"`
	Declared     []string `json:"declared,omitempty"`
}

// BatchItem is one item of a batch: the inputs its run adds to the batch's
// defaults, or why its record could not be read.
type BatchItem struct {
	Index int `json:"index"`
	// Line is the item's line in the source file (0 for inline items).
	Line   int            `json:"line,omitempty"`
	Inputs map[string]any `json:"inputs,omitempty"`
	// Error says why the record is unusable; the item fails with it and the
	// rest of the batch goes on.
	Error string `json:"error,omitempty"`
}

// ReadBatchItemsResult is one page of items.
type ReadBatchItemsResult struct {
	Items []BatchItem `json:"items"`
	Next  BatchCursor `json:"next"`
	EOF   bool        `json:"eof"`
	// Total is the number of items in the source, 0 when not known yet.
	Total int `json:"total,omitempty"`
}

// ReadBatchItems reads up to Limit items from a JSONL or CSV source,
// starting at Cursor. Blank lines are skipped; a record that cannot be
// parsed becomes an item with an Error naming its line, so one bad line
// fails alone. For a URL each page is one GET with a Range header; a server
// that ignores Range is read from the start and the bytes before the cursor
// are discarded (so late pages of a large file cost a full download each).
func (a *Activities) ReadBatchItems(ctx context.Context, req ReadBatchItemsRequest) (*ReadBatchItemsResult, error) {
	format, err := req.Source.ResolvedFormat()
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidRequest, nil)
	}
	if req.Limit <= 0 {
		return nil, temporal.NewNonRetryableApplicationError("limit must be positive", ErrTypeInvalidRequest, nil)
	}
	cur := req.Cursor
	if cur.Line == 0 {
		cur.Line = 1
	}
	body, err := a.openSource(ctx, req.Source, cur.Byte)
	if err != nil {
		return nil, err
	}
	defer body.Close()

	var declared map[string]bool
	if req.OnlyDeclared {
		declared = make(map[string]bool, len(req.Declared))
		for _, name := range req.Declared {
			declared[name] = true
		}
	}
	var res *ReadBatchItemsResult
	if format == FormatCSV {
		res, err = readCSV(body, cur, req.Limit, declared, req.Declared)
	} else {
		res, err = readJSONL(body, cur, req.Limit, declared, req.Declared)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case res.EOF:
		res.Total = res.Next.Index
	case req.CountTotal && req.Source.Path != "":
		f, err := a.SourceDirs.open(req.Source.Path)
		if err != nil {
			return nil, err
		}
		res.Total, err = countItems(f, format)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

// readJSONL reads one JSON object per line.
// With declared set, a line with a key outside it fails alone.
func readJSONL(r io.Reader, cur BatchCursor, limit int, declared map[string]bool, declaredList []string) (*ReadBatchItemsResult, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	res := &ReadBatchItemsResult{Items: []BatchItem{}}
	var read int64
	for len(res.Items) < limit && (read < maxPageBytes || len(res.Items) == 0) {
		line, err := br.ReadBytes('\n')
		if len(line) == 0 && errors.Is(err, io.EOF) {
			res.EOF = true
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, temporal.NewApplicationError(fmt.Sprintf("read batch source at line %d: %v", cur.Line, err), ErrTypeComfyUnavailable)
		}
		read += int64(len(line))
		cur.Byte += int64(len(line))
		lineNo := cur.Line
		cur.Line++
		text := bytes.TrimSpace(line)
		if len(text) == 0 {
			continue
		}
		item := BatchItem{Index: cur.Index, Line: lineNo}
		cur.Index++
		var inputs map[string]any
		if jerr := json.Unmarshal(text, &inputs); jerr != nil || inputs == nil {
			item.Error = fmt.Sprintf("line %d is not a JSON object of inputs: %s", lineNo, jsonProblem(jerr))
		} else if bad := undeclared(inputs, declared); bad != "" {
			item.Error = fmt.Sprintf("line %d: %s", lineNo, preflight.UnknownInput(bad, declaredList))
		} else {
			item.Inputs = inputs
		}
		res.Items = append(res.Items, item)
	}
	if !res.EOF {
		// Peek so a page that ends exactly at the end of the file says so,
		// sparing the workflow one empty read.
		if _, err := br.Peek(1); errors.Is(err, io.EOF) {
			res.EOF = true
		}
	}
	res.Next = cur
	return res, nil
}

func jsonProblem(err error) string {
	if err == nil {
		return "got null"
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return "got a JSON " + typeErr.Value
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		// The message quotes one character at most.
		return fmt.Sprintf("%v (at byte %d)", syntaxErr, syntaxErr.Offset)
	}
	return "not valid JSON"
}

// undeclared returns the first key of inputs (in sorted order) outside
// declared, or "" when all are declared or declared is nil.
func undeclared(inputs map[string]any, declared map[string]bool) string {
	if declared == nil {
		return ""
	}
	var bad []string
	for k := range inputs {
		if !declared[k] {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return ""
	}
	slices.Sort(bad)
	return bad[0]
}

// readCSV reads records of a CSV file whose first row names the inputs.
// With declared set, a header column outside it fails the whole source.
func readCSV(r io.Reader, cur BatchCursor, limit int, declared map[string]bool, declaredList []string) (*ReadBatchItemsResult, error) {
	base := cur.Byte
	// Keep what the CSV reader consumes, to count the physical lines of
	// the page (quoted cells may span lines; blank lines are skipped).
	var seen bytes.Buffer
	cr := csv.NewReader(io.TeeReader(r, &seen))
	cr.FieldsPerRecord = -1 // a short or long row fails alone, below
	cr.ReuseRecord = false
	res := &ReadBatchItemsResult{Items: []BatchItem{}}
	lineAt := func() int { // line of the record just read, in the whole file
		l, _ := cr.FieldPos(0)
		return cur.Line - 1 + l
	}

	if cur.Header == nil {
		header, err := cr.Read()
		if errors.Is(err, io.EOF) {
			res.EOF, res.Next = true, cur
			return res, nil
		}
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError("batch source header row (line 1): "+csvProblem(err), ErrTypeBatchSource, nil)
		}
		names := make([]string, len(header))
		seen := map[string]bool{}
		for i, h := range header {
			names[i] = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
			if names[i] == "" || seen[names[i]] {
				return nil, temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("batch source header row: column %d name %s is empty or repeated", i+1, preflight.QuotePrefix(names[i])), ErrTypeBatchSource, nil)
			}
			if declared != nil && !declared[names[i]] {
				return nil, temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("batch source header row: column %d: %s; the header row names the inputs of every line", i+1, preflight.UnknownInput(names[i], declaredList)), ErrTypeBatchSource, nil)
			}
			seen[names[i]] = true
		}
		cur.Header = names
	}
	start := cr.InputOffset()
	for len(res.Items) < limit && (cr.InputOffset()-start < maxPageBytes || len(res.Items) == 0) {
		record, err := cr.Read()
		if errors.Is(err, io.EOF) {
			res.EOF = true
			break
		}
		var parseErr *csv.ParseError
		if err != nil && !errors.As(err, &parseErr) {
			return nil, temporal.NewApplicationError("read batch source: "+csvProblem(err), ErrTypeComfyUnavailable)
		}
		item := BatchItem{Index: cur.Index, Line: lineAt()}
		cur.Index++
		switch {
		case parseErr != nil:
			item.Line = cur.Line - 1 + parseErr.StartLine
			item.Error = fmt.Sprintf("line %d is not valid CSV: %v", item.Line, parseErr.Err)
		case len(record) != len(cur.Header):
			item.Error = fmt.Sprintf("line %d has %d fields; the header row has %d", item.Line, len(record), len(cur.Header))
		default:
			item.Inputs = make(map[string]any, len(record))
			for i, v := range record {
				if v != "" { // an empty cell leaves the input to the defaults
					item.Inputs[cur.Header[i]] = csvValue(v)
				}
			}
		}
		res.Items = append(res.Items, item)
	}
	end := cr.InputOffset()
	cur.Line += bytes.Count(seen.Bytes()[:end], []byte{'\n'})
	cur.Byte = base + end
	res.Next = cur
	return res, nil
}

var csvNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)

// csvValue types a CSV cell: numbers and booleans as such, anything else
// (including numbers with leading zeros, such as SKUs) as text.
func csvValue(s string) any {
	if csvNumber.MatchString(s) {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f
		}
	}
	switch s {
	case "true", "TRUE", "True":
		return true
	case "false", "FALSE", "False":
		return false
	}
	return s
}

// csvProblem describes a CSV reader error without the record's content
// (encoding/csv's errors name lines and columns only, but an I/O error may
// carry more).
func csvProblem(err error) string {
	var parseErr *csv.ParseError
	if errors.As(err, &parseErr) {
		return parseErr.Error()
	}
	return "cannot read the file"
}

// countItems counts the items of a local source, for progress estimates.
func countItems(f io.Reader, format string) (int, error) {
	n := 0
	if format == FormatCSV {
		cr := csv.NewReader(f)
		cr.FieldsPerRecord = -1
		for {
			_, err := cr.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			var parseErr *csv.ParseError
			if err != nil && !errors.As(err, &parseErr) {
				return 0, fmt.Errorf("count batch source items: %w", err)
			}
			n++
		}
		return max(n-1, 0), nil // the header row is not an item
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			n++
		}
	}
	return n, sc.Err()
}

// Item statuses in a batch's results.
const (
	ItemSucceeded = "succeeded"
	ItemFailed    = "failed"
	ItemCancelled = "cancelled"
	// ItemSkipped: the item's run already succeeded in an earlier run of the
	// same batch id (or is still running), so it was not submitted again.
	ItemSkipped = "skipped"
)

// OutputRef points at one stored output of an item's run.
type OutputRef struct {
	// Path is the output's URL in the output store (file:///…, s3://…).
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// BatchItemResult is one line of a batch's results manifest.
type BatchItemResult struct {
	Index int `json:"index"`
	// Line is the item's line in the source file, if it came from one.
	Line int `json:"line,omitempty"`
	// Inputs are the run's inputs: the batch defaults merged with the item's.
	Inputs map[string]any `json:"inputs,omitempty"`
	Status string         `json:"status"`
	// WorkflowID is the item's ComfyRun ("<batch id>/<index>").
	WorkflowID string `json:"workflow_id,omitempty"`
	// DeploymentID is the deployment that served the item (the last one,
	// when a queue deadline moved it within the pool).
	DeploymentID string `json:"deployment_id,omitempty"`
	// Deployments lists every deployment tried, when there was more than one.
	Deployments []string    `json:"deployments,omitempty"`
	RunIDs      []string    `json:"run_ids,omitempty"`
	GPUSeconds  float64     `json:"gpu_seconds,omitempty"`
	Outputs     []OutputRef `json:"outputs,omitempty"`
	// ManifestPath is the URL of the run's manifest.json in the output store.
	ManifestPath string `json:"manifest_path,omitempty"`
	Error        string `json:"error,omitempty"`
	ErrorType    string `json:"error_type,omitempty"`
	// PreviousRun marks a line copied from the earlier run of the same batch
	// id in which this item succeeded.
	PreviousRun bool `json:"previous_run,omitempty"`
}

// WriteBatchResultsRequest is one part of a batch's results manifest.
type WriteBatchResultsRequest struct {
	BatchID string            `json:"batch_id"`
	Part    int               `json:"part"`
	Lines   []BatchItemResult `json:"lines"`
}

// WriteBatchResultsResult says where the part landed (its store URL).
type WriteBatchResultsResult struct {
	Path  string `json:"path"`
	Lines int    `json:"lines"`
}

// BatchFolder is a batch's folder in the output store.
func BatchFolder(batchID string) string { return outputstore.SafeName(batchID) }

func resultsPartKey(batchID string, part int) string {
	return fmt.Sprintf("%s/results/part-%05d.jsonl", BatchFolder(batchID), part)
}

func resultsKey(batchID string) string { return BatchFolder(batchID) + "/results.jsonl" }

// WriteBatchResults writes one part of the results manifest as
// "<batch folder>/results/part-NNNNN.jsonl". The part's content is fixed by
// the workflow, so a retry (or a re-run of the batch) simply rewrites it.
func (a *Activities) WriteBatchResults(ctx context.Context, req WriteBatchResultsRequest) (*WriteBatchResultsResult, error) {
	if req.BatchID == "" || req.Part < 1 {
		return nil, temporal.NewNonRetryableApplicationError("batch_id and a part number from 1 are required", ErrTypeInvalidRequest, nil)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, line := range req.Lines {
		if err := enc.Encode(line); err != nil {
			return nil, temporal.NewNonRetryableApplicationError("encode results line: "+err.Error(), ErrTypeInvalidRequest, err)
		}
	}
	obj, err := a.Store.Put(ctx, resultsPartKey(req.BatchID, req.Part), &buf)
	if err != nil {
		return nil, classifyStore(fmt.Sprintf("write batch results part %d", req.Part), err)
	}
	return &WriteBatchResultsResult{Path: obj.Location, Lines: len(req.Lines)}, nil
}

// FinalizeBatchResultsRequest names the parts to assemble.
type FinalizeBatchResultsRequest struct {
	BatchID string `json:"batch_id"`
	// Parts is how many parts this run of the batch wrote; parts beyond it
	// are left over from an earlier run and ignored.
	Parts int `json:"parts"`
}

// FinalizeBatchResultsResult describes the results manifest; Path is its
// URL in the output store.
type FinalizeBatchResultsResult struct {
	Path  string `json:"path"`
	Lines int    `json:"lines"`
	// Reused counts skipped items whose line was taken from the previous
	// results manifest of the same batch id.
	Reused int `json:"reused,omitempty"`
}

// FinalizeBatchResults concatenates parts 1..Parts, in order, into
// "<batch folder>/results.jsonl", replacing any earlier manifest. A skipped
// item (it succeeded in an earlier run of the batch) gets its succeeded line
// from that earlier manifest when one exists, so the new manifest is a
// complete view. Rewriting is idempotent.
func (a *Activities) FinalizeBatchResults(ctx context.Context, req FinalizeBatchResultsRequest) (*FinalizeBatchResultsResult, error) {
	if req.BatchID == "" || req.Parts < 0 {
		return nil, temporal.NewNonRetryableApplicationError("batch_id is required", ErrTypeInvalidRequest, nil)
	}
	store, ok := a.Store.(outputstore.Reader)
	if !ok {
		return nil, temporal.NewNonRetryableApplicationError("the output store cannot read back results parts", ErrTypeInvalidRequest, nil)
	}

	skipped := map[int]bool{}
	err := a.eachResultLine(ctx, store, req, func(r BatchItemResult, _ []byte) error {
		if r.Status == ItemSkipped {
			skipped[r.Index] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	previous, err := previousSuccesses(ctx, store, resultsKey(req.BatchID), skipped)
	if err != nil {
		return nil, err
	}

	pr, pw := io.Pipe()
	res := &FinalizeBatchResultsResult{}
	go func() {
		w := bufio.NewWriter(pw)
		err := a.eachResultLine(ctx, store, req, func(r BatchItemResult, raw []byte) error {
			if prev, ok := previous[r.Index]; ok && r.Status == ItemSkipped {
				raw = prev
				res.Reused++
			}
			res.Lines++
			if _, err := w.Write(raw); err != nil {
				return err
			}
			return w.WriteByte('\n')
		})
		if err == nil {
			err = w.Flush()
		}
		pw.CloseWithError(err)
	}()
	obj, err := a.Store.Put(ctx, resultsKey(req.BatchID), pr)
	pr.Close() // ends the writer if Put gave up early
	if err != nil {
		return nil, classifyStore("write batch results", err)
	}
	res.Path = obj.Location
	return res, nil
}

// eachResultLine calls fn for every line of parts 1..req.Parts, in order.
func (a *Activities) eachResultLine(ctx context.Context, store outputstore.Reader, req FinalizeBatchResultsRequest, fn func(BatchItemResult, []byte) error) error {
	for part := 1; part <= req.Parts; part++ {
		activity.RecordHeartbeat(ctx, part)
		key := resultsPartKey(req.BatchID, part)
		f, err := store.Open(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			// A missing part means the workflow's bookkeeping and the store
			// disagree; retrying will not create it.
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("read batch results part %d: %v", part, err), ErrTypeInvalidRequest, err)
		}
		if err != nil {
			return classifyStore(fmt.Sprintf("read batch results part %d", part), err)
		}
		err = eachLine(f, func(raw []byte) error {
			var r BatchItemResult
			if err := json.Unmarshal(raw, &r); err != nil {
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf("results part %d: %v", part, err), ErrTypeInvalidRequest, err)
			}
			return fn(r, raw)
		})
		f.Close()
		if err != nil {
			return classifyStore(fmt.Sprintf("read batch results part %d", part), err)
		}
	}
	return nil
}

// previousSuccesses returns, for the wanted indices, the succeeded lines of
// an earlier results manifest. A missing manifest is not an error.
func previousSuccesses(ctx context.Context, store outputstore.Reader, key string, wanted map[int]bool) (map[int][]byte, error) {
	found := map[int][]byte{}
	if len(wanted) == 0 {
		return found, nil
	}
	f, err := store.Open(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return found, nil
	}
	if err != nil {
		return nil, classifyStore("read previous batch results", err)
	}
	defer f.Close()
	err = eachLine(f, func(raw []byte) error {
		var r BatchItemResult
		if json.Unmarshal(raw, &r) != nil || !wanted[r.Index] || r.Status != ItemSucceeded {
			return nil // an unreadable old line only costs the reuse
		}
		r.PreviousRun = true
		line, err := json.Marshal(r)
		if err != nil {
			return err
		}
		found[r.Index] = line
		return nil
	})
	if err != nil {
		return nil, classifyStore("read previous batch results", err)
	}
	return found, nil
}

func eachLine(r io.Reader, fn func([]byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			if err := fn(line); err != nil {
				return err
			}
		}
	}
	return sc.Err()
}
