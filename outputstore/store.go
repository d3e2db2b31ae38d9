// Package outputstore keeps the media a run produced after the provider's
// signed URLs expire, and the manifests and batch results that describe
// them. A store is a bucket addressed by URL (gocloud.dev/blob): a local
// directory (file:///abs/dir), S3 or any S3-compatible service
// (s3://bucket/prefix?endpoint=…), Google Cloud Storage (gs://), Azure Blob
// Storage (azblob://) or memory (mem://, for tests). Every worker of a task
// queue points at the same store, so a batch's parts written on one host are
// read back on another.
//
// Objects are named by their URL inside the store (file:///abs/dir/key,
// s3://bucket/prefix/key): that is what manifests and results lines carry.
// Credentials never appear in a store URL; they come from each SDK's
// standard environment and configuration files.
package outputstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// Object describes one stored object.
type Object struct {
	// Key is the store-relative name, always slash-separated ("<folder>/<file>").
	Key string `json:"key"`
	// Location is the object's URL in the store (file:///…, s3://bucket/…).
	Location string `json:"location"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	// ContentType is the media type the object was stored with.
	ContentType string `json:"content_type,omitempty"`
}

// Store writes objects. Put must be atomic: a reader never sees a partial
// object, and a repeated Put of the same key replaces the previous one, so
// activities that retry can simply write again.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader, opts ...PutOption) (Object, error)
	// Location returns the URL at which key is or would be stored.
	Location(key string) string
}

// Reader is implemented by stores that can read an object back. Most
// activities only write; assembling a batch's results manifest from its
// parts needs to read. A missing object is an error satisfying
// errors.Is(err, fs.ErrNotExist).
type Reader interface {
	Open(ctx context.Context, key string) (io.ReadCloser, error)
}

// URLReader is implemented by stores whose objects can be read back by
// their store URL, in ranges: what a batch source given as a store URL
// (s3://bucket/prefix/items.jsonl) needs. *Bucket implements it.
type URLReader interface {
	// KeyForURL returns the key rawURL names, ok only when rawURL lies
	// inside this store (same scheme, bucket and prefix).
	KeyForURL(rawURL string) (key string, ok bool)
	// OpenRange reads key from byte offset on; an offset at or past the end
	// gives an empty reader, a missing object an fs.ErrNotExist error.
	OpenRange(ctx context.Context, key string, offset int64) (io.ReadCloser, error)
}

var (
	_ Store     = (*Bucket)(nil)
	_ Reader    = (*Bucket)(nil)
	_ URLReader = (*Bucket)(nil)
)

// PutOption adjusts one Put.
type PutOption func(*putOptions)

type putOptions struct {
	contentType string
}

// ContentType sets the stored object's media type. Without it the type
// follows the key's extension, or else the first bytes of the content.
func ContentType(mediaType string) PutOption {
	return func(o *putOptions) { o.contentType = mediaType }
}

// ErrInvalidKey is wrapped by errors for keys ValidKey rejects; repeating
// the write cannot help.
var ErrInvalidKey = errors.New("outputstore: invalid key")

// ValidKey rejects keys that could escape the store or that are not portable
// across file systems and object stores.
func ValidKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") || path.Clean(key) != key {
		return fmt.Errorf("%w %q", ErrInvalidKey, key)
	}
	for _, part := range strings.Split(key, "/") {
		if part == ".." || part == "." || part == "" {
			return fmt.Errorf("%w %q", ErrInvalidKey, key)
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
