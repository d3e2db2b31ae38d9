package activities_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/egress"
	"github.com/durable-comfy/durable-comfy/outputstore"
)

type batchActs struct {
	t     *testing.T
	acts  *activities.Activities
	store *outputstore.Bucket
	dir   string // the one source directory
}

// newBatchActs reads path sources below a fresh directory and URL sources
// from test servers on 127.0.0.1, which it allows.
func newBatchActs(t *testing.T) *batchActs {
	t.Helper()
	store, err := outputstore.OpenDir(t.TempDir())
	require.NoError(t, err)
	dir := t.TempDir()
	dirs, err := activities.OpenSourceDirs([]string{dir})
	require.NoError(t, err)
	t.Cleanup(func() { dirs.Close() })
	allow, err := egress.ParseAllow("127.0.0.1")
	require.NoError(t, err)
	acts := &activities.Activities{Store: store, SourceDirs: dirs, SourceClient: egress.NewClient(egress.Policy{Allow: allow})}
	return &batchActs{t: t, acts: acts, store: store, dir: dir}
}

// file writes a source file below the source directory.
func (b *batchActs) file(name, body string) string {
	b.t.Helper()
	p := filepath.Join(b.dir, name)
	require.NoError(b.t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(b.t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

func (b *batchActs) env() *testsuite.TestActivityEnvironment {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(b.acts)
	return env
}

func (b *batchActs) read(req activities.ReadBatchItemsRequest) (*activities.ReadBatchItemsResult, error) {
	val, err := b.env().ExecuteActivity(b.acts.ReadBatchItems, req)
	if err != nil {
		return nil, err
	}
	var res activities.ReadBatchItemsResult
	require.NoError(b.t, val.Get(&res))
	return &res, nil
}

// readAll pages through a source and returns every item.
func (b *batchActs) readAll(src activities.BatchSource, limit int) ([]activities.BatchItem, int) {
	b.t.Helper()
	var items []activities.BatchItem
	cur, pages := activities.BatchCursor{}, 0
	for {
		res, err := b.read(activities.ReadBatchItemsRequest{Source: src, Cursor: cur, Limit: limit})
		require.NoError(b.t, err)
		require.LessOrEqual(b.t, len(res.Items), limit)
		items = append(items, res.Items...)
		cur, pages = res.Next, pages+1
		if res.EOF {
			require.Equal(b.t, len(items), res.Total, "the total is known at the end")
			return items, pages
		}
		require.Less(b.t, pages, 100, "paging must make progress")
	}
}

var timeZero time.Time

func TestReadBatchItemsJSONLPagesAndKeepsBadLinesAsItems(t *testing.T) {
	b := newBatchActs(t)
	src := activities.BatchSource{Path: b.file("items.jsonl",
		`{"prompt":"a","seed":1}`+"\n\n"+`{"prompt":"b"}`+"\n"+`not json`+"\n"+`[1,2]`+"\n"+`{"prompt":"e","hires":true}`)}

	first, err := b.read(activities.ReadBatchItemsRequest{Source: src, Limit: 2, CountTotal: true})
	require.NoError(t, err)
	require.Equal(t, 5, first.Total, "a local file is counted on the first page")
	require.False(t, first.EOF)

	items, pages := b.readAll(src, 2)
	require.Equal(t, 3, pages)
	require.Len(t, items, 5)
	for i, it := range items {
		require.Equal(t, i, it.Index)
	}
	require.Equal(t, map[string]any{"prompt": "a", "seed": 1.0}, items[0].Inputs)
	require.Equal(t, 3, items[1].Line, "blank lines are skipped but counted")
	require.Contains(t, items[2].Error, "line 4 is not a JSON object")
	require.Nil(t, items[2].Inputs)
	require.Contains(t, items[3].Error, "line 5")
	require.Equal(t, true, items[4].Inputs["hires"])
}

func TestReadBatchItemsCSVTypesValuesAndNamesBadLines(t *testing.T) {
	b := newBatchActs(t)
	src := activities.BatchSource{Path: b.file("items.csv",
		"prompt,seed,cfg,hires,sku\n"+
			"a red chair,42,7.5,true,0042\n"+
			"\n"+
			"\"a quoted, multi\nline prompt\",7,,false,x\n"+
			"short row,1\n"+
			"last,-3,1e2,TRUE,10\n")}

	items, _ := b.readAll(src, 2)
	require.Len(t, items, 4)
	require.Equal(t, map[string]any{"prompt": "a red chair", "seed": 42.0, "cfg": 7.5, "hires": true, "sku": "0042"}, items[0].Inputs,
		"numbers and booleans are typed; a leading zero keeps text")
	require.Equal(t, map[string]any{"prompt": "a quoted, multi\nline prompt", "seed": 7.0, "hires": false, "sku": "x"}, items[1].Inputs,
		"an empty cell leaves the input to the defaults")
	require.Equal(t, 4, items[1].Line)
	require.Equal(t, "line 6 has 2 fields; the header row has 5", items[2].Error)
	require.Equal(t, 7, items[3].Line)
	require.Equal(t, 100.0, items[3].Inputs["cfg"])
}

func TestReadBatchItemsFromAURLUsesRange(t *testing.T) {
	var body strings.Builder
	for i := range 7 {
		fmt.Fprintf(&body, `{"prompt":"item %d"}`+"\n", i)
	}
	var ranges []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ranges = append(ranges, r.Header.Get("Range"))
		http.ServeContent(w, r, "items.jsonl", timeZero, strings.NewReader(body.String()))
	}))
	defer srv.Close()
	b := newBatchActs(t)

	items, pages := b.readAll(activities.BatchSource{URL: srv.URL + "/items.jsonl"}, 3)

	require.Len(t, items, 7)
	require.Equal(t, 3, pages)
	require.Equal(t, "item 6", items[6].Inputs["prompt"])
	require.Equal(t, "", ranges[0])
	require.True(t, strings.HasPrefix(ranges[1], "bytes="), "later pages start at the cursor: %q", ranges[1])

	// A server that ignores Range is read from the start and skipped.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(body.String())) }))
	defer plain.Close()
	again, _ := b.readAll(activities.BatchSource{URL: plain.URL + "/items.jsonl"}, 3)
	require.Equal(t, items, again)
}

func TestReadBatchItemsMissingSourceIsNotRetried(t *testing.T) {
	b := newBatchActs(t)
	_, err := b.read(activities.ReadBatchItemsRequest{Source: activities.BatchSource{Path: filepath.Join(b.dir, "nope.csv")}, Limit: 10})
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, activities.ErrTypeBatchSource, appErr.Type())
	require.True(t, appErr.NonRetryable())

	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, err = b.read(activities.ReadBatchItemsRequest{Source: activities.BatchSource{URL: srv.URL + "/x.jsonl"}, Limit: 10})
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, activities.ErrTypeBatchSource, appErr.Type())
}

func TestBatchSourceFormat(t *testing.T) {
	for src, want := range map[activities.BatchSource]string{
		{Path: "a.csv"}:                       "csv",
		{Path: "a.NDJSON"}:                    "jsonl",
		{URL: "https://x.test/a.jsonl?sig=1"}: "jsonl",
		{Path: "a.txt", Format: "CSV"}:        "csv",
		{Path: "a.txt"}:                       "error",
		{Path: "a.csv", URL: "https://x"}:     "error",
		{URL: "ftp://x/a.csv"}:                "error",
	} {
		got, err := src.ResolvedFormat()
		if err != nil {
			got = "error"
		}
		require.Equal(t, want, got, "%+v", src)
	}
}

func results(n int, status string) []activities.BatchItemResult {
	lines := make([]activities.BatchItemResult, n)
	for i := range lines {
		lines[i] = activities.BatchItemResult{Index: i, Status: status, RunIDs: []string{"run-" + strconv.Itoa(i)}}
	}
	return lines
}

func (b *batchActs) write(part int, lines []activities.BatchItemResult) {
	b.t.Helper()
	_, err := b.env().ExecuteActivity(b.acts.WriteBatchResults, activities.WriteBatchResultsRequest{BatchID: "batch/1", Part: part, Lines: lines})
	require.NoError(b.t, err)
}

func (b *batchActs) finalize(parts int) (activities.FinalizeBatchResultsResult, []activities.BatchItemResult) {
	b.t.Helper()
	val, err := b.env().ExecuteActivity(b.acts.FinalizeBatchResults, activities.FinalizeBatchResultsRequest{BatchID: "batch/1", Parts: parts})
	require.NoError(b.t, err)
	var res activities.FinalizeBatchResultsResult
	require.NoError(b.t, val.Get(&res))
	p, ok := outputstore.FilePath(res.Path)
	require.True(b.t, ok, res.Path)
	f, err := os.Open(p)
	require.NoError(b.t, err)
	defer f.Close()
	var lines []activities.BatchItemResult
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l activities.BatchItemResult
		require.NoError(b.t, json.Unmarshal(sc.Bytes(), &l))
		lines = append(lines, l)
	}
	return res, lines
}

func TestBatchResultsAreAssembledInOrderAndRewrittenIdempotently(t *testing.T) {
	b := newBatchActs(t)
	first := results(5, activities.ItemSucceeded)
	first[3].Status, first[3].Error = activities.ItemFailed, "boom"
	b.write(1, first[:3])
	b.write(2, first[3:])
	b.write(2, first[3:]) // a retried write replaces the part

	res, lines := b.finalize(2)
	require.Equal(t, b.store.Location("batch_1/results.jsonl"), res.Path)
	require.Equal(t, 5, res.Lines)
	require.Equal(t, first, lines)
	again, linesAgain := b.finalize(2)
	require.Equal(t, res, again)
	require.Equal(t, lines, linesAgain)

	// A re-run of the same batch: items 0-2 and 4 were skipped, item 3 ran
	// again. The old part 2 lingers and must be ignored; skipped lines take
	// the earlier success.
	rerun := results(5, activities.ItemSkipped)
	rerun[3] = activities.BatchItemResult{Index: 3, Status: activities.ItemSucceeded, RunIDs: []string{"run-3b"}}
	b.write(1, rerun)
	res, lines = b.finalize(1)
	require.Equal(t, 5, res.Lines)
	require.Equal(t, 4, res.Reused)
	for i, l := range lines {
		require.Equal(t, i, l.Index)
		require.Equal(t, activities.ItemSucceeded, l.Status)
		require.Equal(t, i != 3, l.PreviousRun)
	}
	require.Equal(t, []string{"run-0"}, lines[0].RunIDs)
	require.Equal(t, []string{"run-3b"}, lines[3].RunIDs)
}

func TestFinalizeBatchResultsMissingPartFails(t *testing.T) {
	b := newBatchActs(t)
	_, err := b.env().ExecuteActivity(b.acts.FinalizeBatchResults, activities.FinalizeBatchResultsRequest{BatchID: "b", Parts: 1})
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.True(t, appErr.NonRetryable())
}

func TestPreflightForABatchSkipsTheInputCheck(t *testing.T) {
	srv := comfytest.NewServer(comfytest.Options{Seed: 7})
	defer srv.Close()
	c, err := comfy.NewClient(comfy.WithBaseURL(srv.URL()), comfy.WithAPIKey(srv.APIKey()))
	require.NoError(t, err)
	b := newBatchActs(t)
	b.acts.Comfy = c

	val, err := b.env().ExecuteActivity(b.acts.Preflight, activities.PreflightRequest{DeploymentID: comfytest.DeploymentTxt2Img, SkipInputCheck: true})

	require.NoError(t, err, "the required prompt comes with each item, not with the check")
	var res activities.PreflightResult
	require.NoError(t, val.Get(&res))
	require.NotEmpty(t, res.InputTypes)
	require.Positive(t, res.ConcurrencyLimit)
	require.Error(t, activities.CheckInputs(&res, map[string]any{}), "items are checked against the cached input types")
	require.NoError(t, activities.CheckInputs(&res, map[string]any{"prompt": "a cat"}))
}
