package activities_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/egress"
)

// countingServer serves a small CSV and counts the requests it gets.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte("prompt\nsecret\n"))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func requireRefused(t *testing.T, err error, want string) {
	t.Helper()
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.Equal(t, activities.ErrTypeBatchSourceRefused, appErr.Type(), "%v", err)
	assert.True(t, appErr.NonRetryable())
	assert.Contains(t, err.Error(), want)
}

// The attempts of issue 13: each is refused with a clear error, and nothing
// is read or fetched.
func TestBatchSourcesOutsideTheConfigurationAreRefused(t *testing.T) {
	b := newBatchActs(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "credentials.csv")
	require.NoError(t, os.WriteFile(secret, []byte("aws_secret_access_key\nwJalrXUtnFEMI\n"), 0o600))
	require.NoError(t, os.Symlink(secret, filepath.Join(b.dir, "link.csv")))
	require.NoError(t, os.Mkdir(filepath.Join(b.dir, "folder.csv"), 0o755))
	require.NoError(t, syscall.Mkfifo(filepath.Join(b.dir, "fifo.csv"), 0o600))
	inside := b.file("sub/items.csv", "prompt\na\n")
	relOut, err := filepath.Rel(mustGetwd(t), secret)
	require.NoError(t, err)

	// One server stands in for every URL target: it is on 127.0.0.1, which
	// this test allows on another port only, so it must see no request.
	target, hits := countingServer(t)
	port := target.URL[strings.LastIndex(target.URL, ":")+1:]
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/items.csv", http.StatusFound)
	}))
	defer redirector.Close()
	b.acts.SourceClient = sourceClient(t, strings.TrimPrefix(redirector.URL, "http://"))

	for _, tc := range []struct {
		name string
		src  activities.BatchSource
		want string
	}{
		{"system file", activities.BatchSource{Path: "/etc/passwd", Format: "csv"}, "outside the worker's source directories"},
		{"dot-dot out of the root", activities.BatchSource{Path: b.dir + "/../" + filepath.Base(outside) + "/credentials.csv"}, `must not contain ".."`},
		{"relative dot-dot", activities.BatchSource{Path: relOut}, `must not contain ".."`},
		{"dot-dot inside the root", activities.BatchSource{Path: b.dir + "/sub/../sub/items.csv"}, `must not contain ".."`},
		{"symlink out of the root", activities.BatchSource{Path: filepath.Join(b.dir, "link.csv")}, "cannot be read inside"},
		{"directory", activities.BatchSource{Path: filepath.Join(b.dir, "folder.csv")}, "not a regular file (a directory)"},
		{"FIFO", activities.BatchSource{Path: filepath.Join(b.dir, "fifo.csv")}, "not a regular file (a FIFO)"},
		{"loopback", activities.BatchSource{URL: target.URL + "/items.csv"}, "loopback addresses are not fetched"},
		{"IPv6 loopback", activities.BatchSource{URL: "http://[::1]:" + port + "/items.csv"}, "loopback"},
		{"cloud metadata", activities.BatchSource{URL: "http://169.254.169.254/latest/meta-data/", Format: "csv"}, "link-local"},
		{"private", activities.BatchSource{URL: "http://10.0.0.1/items.csv"}, "private"},
		{"name resolving to loopback", activities.BatchSource{URL: "http://localhost:" + port + "/items.csv"}, "loopback"},
		{"redirect to loopback", activities.BatchSource{URL: redirector.URL + "/items.csv"}, "loopback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.read(activities.ReadBatchItemsRequest{Source: tc.src, Limit: 10, CountTotal: true})
			requireRefused(t, err, tc.want)
			assert.NotContains(t, err.Error(), "wJalrXUtnFEMI")
			assert.Zero(t, hits.Load(), "the target saw no request")
		})
	}

	// file:// and gopher:// never get as far as the activity: the
	// workflow validates sources with ResolvedFormat first.
	for _, u := range []string{"file:///etc/passwd", "gopher://127.0.0.1:" + port + "/items.csv"} {
		_, err := activities.BatchSource{URL: u}.ResolvedFormat()
		assert.ErrorContains(t, err, "must be an http(s) URL or an object of the worker's output store", u)
	}

	// The allowed cases still work: a file below the root, by absolute and
	// by relative path, and the allowed server.
	items, _ := b.readAll(activities.BatchSource{Path: inside}, 10)
	assert.Equal(t, "a", items[0].Inputs["prompt"])
	rel, err := filepath.Rel(mustGetwd(t), inside)
	require.NoError(t, err)
	if !strings.HasPrefix(rel, "..") {
		items, _ = b.readAll(activities.BatchSource{Path: rel}, 10)
		assert.Len(t, items, 1)
	}
	b.acts.SourceClient = sourceClient(t, strings.TrimPrefix(target.URL, "http://"))
	items, _ = b.readAll(activities.BatchSource{URL: target.URL + "/items.csv"}, 10)
	assert.Equal(t, "secret", items[0].Inputs["prompt"])
	assert.EqualValues(t, 1, hits.Load())
}

func TestPathSourcesNeedSourceDirs(t *testing.T) {
	b := newBatchActs(t)
	src := activities.BatchSource{Path: b.file("items.csv", "prompt\na\n")}
	b.acts.SourceDirs = nil
	_, err := b.read(activities.ReadBatchItemsRequest{Source: src, Limit: 10})
	requireRefused(t, err, "set COMFY_SOURCE_DIRS")
}

func TestUndeclaredColumnsStayOutOfTheResult(t *testing.T) {
	b := newBatchActs(t)
	const secret = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
	declared := []string{"prompt", "seed"}

	csvSrc := activities.BatchSource{Path: b.file("env.csv", "prompt,"+secret+"\na,b\n")}
	_, err := b.read(activities.ReadBatchItemsRequest{Source: csvSrc, Limit: 10, OnlyDeclared: true, Declared: declared})
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.Equal(t, activities.ErrTypeBatchSource, appErr.Type())
	assert.Contains(t, err.Error(), `column 2: input "sk_live_4eC3"… is not declared`)
	assert.NotContains(t, err.Error(), secret)

	jsonlSrc := activities.BatchSource{Path: b.file("items.jsonl", `{"prompt":"a","`+secret+`":"x"}`+"\n"+`{"promt":"b"}`+"\n"+`{"prompt":"c","seed":2}`+"\n")}
	res, err := b.read(activities.ReadBatchItemsRequest{Source: jsonlSrc, Limit: 10, OnlyDeclared: true, Declared: declared})
	require.NoError(t, err)
	require.Len(t, res.Items, 3)
	assert.Nil(t, res.Items[0].Inputs, "an item with an undeclared key carries no inputs")
	assert.Contains(t, res.Items[0].Error, `line 1: input "sk_live_4eC3"… is not declared`)
	assert.NotContains(t, res.Items[0].Error, secret)
	assert.Contains(t, res.Items[1].Error, `did you mean "prompt"?`)
	assert.Equal(t, map[string]any{"prompt": "c", "seed": 2.0}, res.Items[2].Inputs)

	// Without OnlyDeclared (workflows started before it existed) the
	// reader returns every column, as it did.
	res, err = b.read(activities.ReadBatchItemsRequest{Source: csvSrc, Limit: 10})
	require.NoError(t, err)
	assert.Equal(t, "b", res.Items[0].Inputs[secret])
}

func TestUnparsableLinesAreNotQuoted(t *testing.T) {
	b := newBatchActs(t)
	const secret = "AKIAIOSFODNN7EXAMPLE"
	res, err := b.read(activities.ReadBatchItemsRequest{Limit: 10, Source: activities.BatchSource{
		Path: b.file("items.jsonl", "AWS_KEY="+secret+"\n"+`{"prompt": "`+secret+"\n")}})
	require.NoError(t, err)
	require.Len(t, res.Items, 2)
	for _, it := range res.Items {
		assert.Contains(t, it.Error, "is not a JSON object of inputs")
		assert.NotContains(t, it.Error, secret)
		assert.NotContains(t, it.Error, "AWS_KEY")
	}
}

func mustGetwd(t *testing.T) string {
	wd, err := os.Getwd()
	require.NoError(t, err)
	return wd
}

func sourceClient(t *testing.T, allow string) *http.Client {
	a, err := egress.ParseAllow(allow)
	require.NoError(t, err)
	return egress.NewClient(egress.Policy{Allow: a})
}
