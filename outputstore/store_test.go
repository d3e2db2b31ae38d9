package outputstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stores opens each kind of store the unit tests can run without a server.
func stores(t *testing.T) map[string]*Bucket {
	t.Helper()
	dir, err := OpenDir(t.TempDir())
	require.NoError(t, err)
	mem, err := Open(context.Background(), "mem://")
	require.NoError(t, err)
	prefixed, err := Open(context.Background(), "mem://test/some/prefix")
	require.NoError(t, err)
	for _, b := range []*Bucket{dir, mem, prefixed} {
		t.Cleanup(func() { _ = b.Close() })
	}
	return map[string]*Bucket{"file": dir, "mem": mem, "mem-prefixed": prefixed}
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func read(t *testing.T, b *Bucket, key string) string {
	t.Helper()
	r, err := b.Open(context.Background(), key)
	require.NoError(t, err)
	defer r.Close()
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	return string(got)
}

func TestPutStoresWithChecksumAndReplacesOnRetry(t *testing.T) {
	for name, b := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			obj, err := b.Put(ctx, "run-1/image-0.png", strings.NewReader("pixels"))
			require.NoError(t, err)
			assert.Equal(t, sum("pixels"), obj.SHA256)
			assert.Equal(t, int64(6), obj.Size)
			assert.Equal(t, "run-1/image-0.png", obj.Key)
			assert.Equal(t, "image/png", obj.ContentType)
			assert.Equal(t, b.Location("run-1/image-0.png"), obj.Location)
			assert.Equal(t, "pixels", read(t, b, "run-1/image-0.png"))

			// A repeated Put (an activity retry) replaces the object.
			obj, err = b.Put(ctx, "run-1/image-0.png", strings.NewReader("new"))
			require.NoError(t, err)
			assert.Equal(t, sum("new"), obj.SHA256)
			assert.Equal(t, "new", read(t, b, "run-1/image-0.png"))
		})
	}
}

// failingReader yields some bytes and then fails, like a download cut short.
type failingReader struct{ sent bool }

func (f *failingReader) Read(p []byte) (int, error) {
	if !f.sent {
		f.sent = true
		return copy(p, strings.Repeat("x", 1000)), nil
	}
	return 0, errors.New("connection reset")
}

func TestPutThatFailsMidStreamLeavesNoObject(t *testing.T) {
	for name, b := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			_, err := b.Put(ctx, "run/fresh.bin", &failingReader{})
			require.ErrorContains(t, err, "connection reset")
			_, err = b.Open(ctx, "run/fresh.bin")
			assert.ErrorIs(t, err, fs.ErrNotExist, "no partial object")

			// A failed rewrite keeps the previous object whole.
			_, err = b.Put(ctx, "run/kept.bin", strings.NewReader("complete"))
			require.NoError(t, err)
			_, err = b.Put(ctx, "run/kept.bin", &failingReader{})
			require.Error(t, err)
			assert.Equal(t, "complete", read(t, b, "run/kept.bin"))

			if b.Dir() != "" {
				entries, err := os.ReadDir(filepath.Join(b.Dir(), "run"))
				require.NoError(t, err)
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				assert.Equal(t, []string{"kept.bin"}, names, "no temporary files left behind")
			}
		})
	}
}

func TestPutStopsOnCancelledContext(t *testing.T) {
	for name, b := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_, err := b.Put(ctx, "a/b", strings.NewReader("x"))
			require.ErrorIs(t, err, context.Canceled)
			_, err = b.Open(context.Background(), "a/b")
			assert.ErrorIs(t, err, fs.ErrNotExist)
		})
	}
}

func TestPutRejectsEscapingKeys(t *testing.T) {
	for name, b := range stores(t) {
		t.Run(name, func(t *testing.T) {
			for _, key := range []string{"", "/abs", "../x", "a/../../x", "a//b", "a/./b", `a\b`, "a/"} {
				_, err := b.Put(context.Background(), key, strings.NewReader("x"))
				assert.ErrorIs(t, err, ErrInvalidKey, key)
			}
		})
	}
}

func TestContentTypeOption(t *testing.T) {
	b := stores(t)["mem"]
	obj, err := b.Put(context.Background(), "x/output", strings.NewReader("data"), ContentType("video/mp4"))
	require.NoError(t, err)
	assert.Equal(t, "video/mp4", obj.ContentType)
	attrs, err := b.bucket.Attributes(context.Background(), "x/output")
	require.NoError(t, err)
	assert.Equal(t, "video/mp4", attrs.ContentType)

	obj, err = b.Put(context.Background(), "x/results.jsonl", strings.NewReader("{}\n"))
	require.NoError(t, err)
	assert.Equal(t, "application/x-ndjson", obj.ContentType)
}

func TestOpenRangeReadsFromOffset(t *testing.T) {
	for name, b := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			_, err := b.Put(ctx, "src/items.jsonl", strings.NewReader("0123456789"))
			require.NoError(t, err)
			for offset, want := range map[int64]string{0: "0123456789", 4: "456789", 10: "", 15: ""} {
				r, err := b.OpenRange(ctx, "src/items.jsonl", offset)
				require.NoError(t, err, offset)
				got, err := io.ReadAll(r)
				r.Close()
				require.NoError(t, err)
				assert.Equal(t, want, string(got), offset)
			}
			_, err = b.OpenRange(ctx, "src/missing.jsonl", 3)
			assert.ErrorIs(t, err, fs.ErrNotExist)
		})
	}
}

func TestPrefixedStoreKeepsKeysUnderItsPrefix(t *testing.T) {
	ctx := context.Background()
	b, err := Open(ctx, "mem://bucket/team/outputs/")
	require.NoError(t, err)
	assert.Equal(t, "mem://bucket/team/outputs", b.URL())
	obj, err := b.Put(ctx, "run/a.png", strings.NewReader("a"))
	require.NoError(t, err)
	assert.Equal(t, "mem://bucket/team/outputs/run/a.png", obj.Location)
	// The underlying bucket holds the object under the prefix.
	ok, err := b.bucket.Exists(ctx, "run/a.png")
	require.NoError(t, err)
	assert.True(t, ok)
}

func TestLocationAndKeyForURL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fileStore, err := Open(ctx, "file://"+filepath.ToSlash(dir))
	require.NoError(t, err)
	s3, err := Open(ctx, "s3://media/outputs/v1?region=us-east-1&endpoint=http://127.0.0.1:9&use_path_style=true")
	require.NoError(t, err)
	bare, err := Open(ctx, "s3://media?region=us-east-1")
	require.NoError(t, err)

	assert.Equal(t, "s3://media/outputs/v1", s3.URL(), "no query in the store's URL")
	assert.Equal(t, "s3://media/outputs/v1/run/a.png", s3.Location("run/a.png"))
	assert.Equal(t, "s3://media/run/a.png", bare.Location("run/a.png"))
	assert.Equal(t, "file://"+filepath.ToSlash(dir)+"/run/a.png", fileStore.Location("run/a.png"))

	for _, tc := range []struct {
		store *Bucket
		url   string
		key   string
		ok    bool
	}{
		{s3, "s3://media/outputs/v1/batch/items.jsonl", "batch/items.jsonl", true},
		{s3, "s3://media/outputs/v1/batch/items.jsonl?versionId=3", "batch/items.jsonl", true},
		{s3, "s3://media/outputs/v10/items.jsonl", "", false},
		{s3, "s3://media/other/items.jsonl", "", false},
		{s3, "s3://elsewhere/outputs/v1/items.jsonl", "", false},
		{s3, "gs://media/outputs/v1/items.jsonl", "", false},
		{s3, "s3://media/outputs/v1/../secret", "", false},
		{s3, "s3://media/outputs/v1/", "", false},
		{bare, "s3://media/items.jsonl", "items.jsonl", true},
		{fileStore, "file://" + filepath.ToSlash(dir) + "/b/items.csv", "b/items.csv", true},
		{fileStore, "file://localhost" + filepath.ToSlash(dir) + "/b/items.csv", "b/items.csv", true},
		{fileStore, "file:///etc/passwd", "", false},
	} {
		key, ok := tc.store.KeyForURL(tc.url)
		assert.Equal(t, tc.ok, ok, tc.url)
		assert.Equal(t, tc.key, key, tc.url)
	}

	p, ok := FilePath(fileStore.Location("run/a.png"))
	assert.True(t, ok)
	assert.Equal(t, filepath.Join(dir, "run", "a.png"), p)
	_, ok = FilePath(s3.Location("run/a.png"))
	assert.False(t, ok)
}

func TestOpenRejectsBadURLsWithoutEchoingSecrets(t *testing.T) {
	ctx := context.Background()
	for raw, want := range map[string]string{
		"s3://AKIAXXX:hunter2@media/x":         "credentials do not belong in the URL",
		"s3://media/x?prefix=y":                "put the key prefix in the path",
		"file://relative/dir":                  "absolute directory",
		"file:///tmp/x?metadata=skip":          "no query parameters",
		"ftp://host/x":                         `unsupported scheme "ftp"`,
		"s3:///prefix":                         "name the bucket",
		"/abs/dir":                             "want a URL",
		"s3://media/x?secret_token=hunter2&zz": "unknown query parameter",
	} {
		_, err := Open(ctx, raw)
		require.Error(t, err, raw)
		assert.Contains(t, err.Error(), want, raw)
		assert.NotContains(t, err.Error(), "hunter2", raw)
	}
}

func TestCheckProbesTheStore(t *testing.T) {
	for name, b := range stores(t) {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, b.Check(context.Background()))
			// The probe cleans up after itself.
			_, err := b.Open(context.Background(), ".durable-comfy/x")
			assert.ErrorIs(t, err, fs.ErrNotExist)
			if b.Dir() != "" {
				entries, err := os.ReadDir(filepath.Join(b.Dir(), ".durable-comfy"))
				require.NoError(t, err)
				assert.Empty(t, entries)
			}
		})
	}
	// A store that cannot be written fails the check: its directory
	// became a plain file after the store was opened.
	dir := filepath.Join(t.TempDir(), "out")
	b, err := OpenDir(dir)
	require.NoError(t, err)
	require.NoError(t, os.Remove(dir))
	require.NoError(t, os.WriteFile(dir, []byte("not a directory"), 0o644))
	assert.ErrorContains(t, b.Check(context.Background()), "write a probe object")
}

func TestSignedURLIsRefusedByStoresThatCannotSign(t *testing.T) {
	b := stores(t)["file"]
	_, err := b.SignedURL(context.Background(), "a/b.png", time.Hour)
	assert.ErrorIs(t, err, ErrCannotSign)
}

func TestSafeName(t *testing.T) {
	assert.Equal(t, "batch-1_7", SafeName("batch-1/7"))
	assert.Equal(t, "_hidden", SafeName(".hidden"))
	assert.Equal(t, "_", SafeName(""))
	assert.Equal(t, "ComfyUI_00001_.png", SafeName("ComfyUI_00001_.png"))
	assert.Len(t, SafeName(strings.Repeat("x", 300)), 120)
}
