package outputstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDirPutWritesAtomicallyWithChecksum(t *testing.T) {
	d, err := NewDir(t.TempDir())
	require.NoError(t, err)

	obj, err := d.Put(context.Background(), "run-1/image-0.png", strings.NewReader("pixels"))
	require.NoError(t, err)

	sum := sha256.Sum256([]byte("pixels"))
	assert.Equal(t, hex.EncodeToString(sum[:]), obj.SHA256)
	assert.Equal(t, int64(6), obj.Size)
	assert.Equal(t, filepath.Join(d.Root, "run-1", "image-0.png"), obj.Location)
	got, err := os.ReadFile(obj.Location)
	require.NoError(t, err)
	assert.Equal(t, "pixels", string(got))

	// A repeated Put (an activity retry) replaces the object and leaves no temp files.
	_, err = d.Put(context.Background(), "run-1/image-0.png", strings.NewReader("new"))
	require.NoError(t, err)
	entries, err := os.ReadDir(filepath.Join(d.Root, "run-1"))
	require.NoError(t, err)
	require.Len(t, entries, 1)
}

func TestDirPutRejectsEscapingKeys(t *testing.T) {
	d, err := NewDir(t.TempDir())
	require.NoError(t, err)
	for _, key := range []string{"", "/abs", "../x", "a/../../x", "a//b", "a/./b", `a\b`} {
		_, err := d.Put(context.Background(), key, strings.NewReader("x"))
		assert.Error(t, err, key)
	}
}

func TestDirPutStopsOnCancelledContext(t *testing.T) {
	d, err := NewDir(t.TempDir())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = d.Put(ctx, "a/b", strings.NewReader("x"))
	require.ErrorIs(t, err, context.Canceled)
	_, statErr := os.Stat(d.Location("a/b"))
	assert.True(t, os.IsNotExist(statErr))
}

func TestSafeName(t *testing.T) {
	assert.Equal(t, "batch-1_7", SafeName("batch-1/7"))
	assert.Equal(t, "_hidden", SafeName(".hidden"))
	assert.Equal(t, "_", SafeName(""))
	assert.Equal(t, "ComfyUI_00001_.png", SafeName("ComfyUI_00001_.png"))
	assert.Len(t, SafeName(strings.Repeat("x", 300)), 120)
}
