// Package outputstore keeps the media a run produced after the provider's
// signed URLs expire. The Store interface is what activities write through;
// Dir stores on the local file system, and object storage can implement the
// same interface later without touching the workflows.
package outputstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Object describes one stored object.
type Object struct {
	// Key is the store-relative name, always slash-separated ("<folder>/<file>").
	Key string `json:"key"`
	// Location is where a person or program finds it: a file path for Dir,
	// a URL for object storage.
	Location string `json:"location"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
}

// Store writes objects. Put must be atomic: a reader never sees a partial
// object, and a repeated Put of the same key replaces the previous one, so
// activities that retry can simply write again.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader) (Object, error)
	// Location returns where key is or would be stored.
	Location(key string) string
}

// Reader is implemented by stores that can read an object back. Most
// activities only write; assembling a batch's results manifest from its
// parts needs to read.
type Reader interface {
	Open(ctx context.Context, key string) (io.ReadCloser, error)
}

// Dir stores objects as files below Root.
type Dir struct {
	Root string
}

// NewDir returns a Dir rooted at root, creating it if needed.
func NewDir(root string) (*Dir, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("output directory %q: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("output directory %q: %w", abs, err)
	}
	return &Dir{Root: abs}, nil
}

// Location implements Store.
func (d *Dir) Location(key string) string {
	return filepath.Join(d.Root, filepath.FromSlash(key))
}

// Put implements Store. It writes to a temporary file in the target folder
// and renames it into place, computing size and sha256 on the way.
func (d *Dir) Put(ctx context.Context, key string, r io.Reader) (Object, error) {
	if err := ValidKey(key); err != nil {
		return Object{}, err
	}
	dst := d.Location(key)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return Object{}, fmt.Errorf("store %s: %w", key, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".partial-*")
	if err != nil {
		return Object{}, fmt.Errorf("store %s: %w", key, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename succeeded

	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), ctxReader{ctx: ctx, r: r})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Object{}, fmt.Errorf("store %s: %w", key, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return Object{}, fmt.Errorf("store %s: %w", key, err)
	}
	return Object{Key: key, Location: dst, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Open implements Reader. A missing object is an error satisfying
// errors.Is(err, fs.ErrNotExist).
func (d *Dir) Open(_ context.Context, key string) (io.ReadCloser, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	return os.Open(d.Location(key))
}

// ValidKey rejects keys that could escape the store or that are not portable
// across file systems and object stores.
func ValidKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") || path.Clean(key) != key {
		return fmt.Errorf("outputstore: invalid key %q", key)
	}
	for _, part := range strings.Split(key, "/") {
		if part == ".." || part == "." || part == "" {
			return fmt.Errorf("outputstore: invalid key %q", key)
		}
	}
	return nil
}

// SafeName turns an arbitrary string (a workflow id, a provider filename)
// into one path segment: letters, digits, '.', '-' and '_' survive, anything
// else becomes '_'. Leading dots are replaced so no hidden files appear.
func SafeName(s string) string {
	if s == "" {
		return "_"
	}
	b := []byte(s)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok || (i == 0 && c == '.') {
			b[i] = '_'
		}
	}
	if len(b) > 120 {
		b = b[:120]
	}
	return string(b)
}

// ctxReader stops a long copy when the activity is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
