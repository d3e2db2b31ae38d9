package activities_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/outputstore"
)

// flakyReadStore writes through to a real store but cannot read: its
// service went away between the writes of the parts and the finalize.
type flakyReadStore struct{ *outputstore.Bucket }

func (flakyReadStore) Open(context.Context, string) (io.ReadCloser, error) {
	return nil, errors.New("read tcp 127.0.0.1:4566: connection reset by peer")
}

func TestFinalizeRetriesWhileTheStoreCannotBeRead(t *testing.T) {
	b := newBatchActs(t)
	b.write(1, results(3, activities.ItemSucceeded))
	b.acts.Store = flakyReadStore{b.store}
	_, err := b.env().ExecuteActivity(b.acts.FinalizeBatchResults, activities.FinalizeBatchResultsRequest{BatchID: "batch/1", Parts: 1})
	ae := appErr(t, err)
	assert.Equal(t, activities.ErrTypeStoreUnavailable, ae.Type())
	assert.False(t, ae.NonRetryable(), "an unreachable store is retried")
	_, err = b.store.Open(context.Background(), "batch_1/results.jsonl")
	assert.ErrorIs(t, err, fs.ErrNotExist, "no results manifest was half written")

	b.acts.Store = b.store
	res, lines := b.finalize(1)
	assert.Equal(t, 3, res.Lines)
	assert.Len(t, lines, 3)
}

func TestFinalizeWithAMissingPartIsFinal(t *testing.T) {
	b := newBatchActs(t)
	b.write(1, results(2, activities.ItemSucceeded))
	_, err := b.env().ExecuteActivity(b.acts.FinalizeBatchResults, activities.FinalizeBatchResultsRequest{BatchID: "batch/1", Parts: 2})
	ae := appErr(t, err)
	assert.True(t, ae.NonRetryable(), "retrying cannot create a part the workflow never wrote")
	assert.Contains(t, ae.Error(), "part 2")
}

func TestBatchResultsOnAnObjectStoreWithAPrefix(t *testing.T) {
	store, err := outputstore.Open(context.Background(), "mem://bucket/team-a/outputs")
	require.NoError(t, err)
	b := newBatchActs(t)
	b.acts.Store = store
	acts, env := b.acts, b.env()
	_, err = env.ExecuteActivity(acts.WriteBatchResults, activities.WriteBatchResultsRequest{BatchID: "b1", Part: 1, Lines: results(2, activities.ItemSucceeded)})
	require.NoError(t, err)
	val, err := env.ExecuteActivity(acts.FinalizeBatchResults, activities.FinalizeBatchResultsRequest{BatchID: "b1", Parts: 1})
	require.NoError(t, err)
	var res activities.FinalizeBatchResultsResult
	require.NoError(t, val.Get(&res))
	assert.Equal(t, "mem://bucket/team-a/outputs/b1/results.jsonl", res.Path)
	assert.Equal(t, 2, res.Lines)
	key, ok := store.KeyForURL(res.Path)
	require.True(t, ok)
	r, err := store.Open(context.Background(), key)
	require.NoError(t, err)
	body, err := io.ReadAll(r)
	r.Close()
	require.NoError(t, err)
	assert.Equal(t, 2, len(splitLines(body)))
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, b[start:i])
			start = i + 1
		}
	}
	return out
}
