package activities_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/outputstore"
)

// s3Store is a memory store that answers for s3://team-bucket/batches, the
// way the worker's S3 store answers for its own bucket and prefix, and
// records the offsets it was read from.
type s3Store struct {
	*outputstore.Bucket
	offsets []int64
}

func (s *s3Store) KeyForURL(rawURL string) (string, bool) {
	key, ok := strings.CutPrefix(rawURL, "s3://team-bucket/batches/")
	return key, ok && key != ""
}

func (s *s3Store) OpenRange(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	s.offsets = append(s.offsets, offset)
	return s.Bucket.OpenRange(ctx, key, offset)
}

func TestReadBatchItemsFromTheOutputStore(t *testing.T) {
	b := newBatchActs(t)
	mem, err := outputstore.Open(context.Background(), "mem://")
	require.NoError(t, err)
	store := &s3Store{Bucket: mem}
	b.acts.Store = store
	var body strings.Builder
	for i := range 7 {
		fmt.Fprintf(&body, "{\"prompt\":\"p%d\"}\n", i)
	}
	_, err = mem.Put(context.Background(), "in/items.jsonl", strings.NewReader(body.String()))
	require.NoError(t, err)

	items, pages := b.readAll(activities.BatchSource{URL: "s3://team-bucket/batches/in/items.jsonl"}, 3)
	require.Len(t, items, 7)
	assert.Equal(t, "p6", items[6].Inputs["prompt"])
	assert.Equal(t, 3, pages)
	require.Len(t, store.offsets, 3)
	assert.Zero(t, store.offsets[0])
	assert.Greater(t, store.offsets[2], store.offsets[1], "each page is a ranged read from the cursor, not a re-read")

	for _, tc := range []struct{ name, url, want string }{
		{"another bucket", "s3://someone-elses-bucket/batches/in/items.jsonl", "not inside this worker's output store"},
		{"outside the prefix", "s3://team-bucket/secrets/items.jsonl", "not inside this worker's output store"},
		{"a store of another kind", "gs://team-bucket/batches/in/items.jsonl", "not inside this worker's output store"},
		{"missing object", "s3://team-bucket/batches/in/none.jsonl", "does not exist in the output store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store.offsets = nil
			_, err := b.read(activities.ReadBatchItemsRequest{Source: activities.BatchSource{URL: tc.url}, Limit: 3})
			var appErr *temporal.ApplicationError
			require.ErrorAs(t, err, &appErr)
			assert.True(t, appErr.NonRetryable(), "%v", err)
			assert.Contains(t, appErr.Error(), tc.want)
			if tc.name != "missing object" {
				assert.Empty(t, store.offsets, "nothing was read")
			}
		})
	}
}
