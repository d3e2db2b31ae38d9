package outputstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/smithy-go"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob" // azblob://container
	"gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/gcsblob" // gs://bucket
	"gocloud.dev/blob/memblob"
	_ "gocloud.dev/blob/s3blob" // s3://bucket, AWS S3 and S3-compatible stores
	"gocloud.dev/gcerrors"
)

// Bucket is an output store on a gocloud.dev/blob bucket, addressed by URL.
// Its methods are safe for concurrent use.
type Bucket struct {
	bucket *blob.Bucket
	// base is the store's own URL without query: scheme, host (the bucket)
	// and path (the directory of a file store, or the key prefix).
	base url.URL
	// dir is the local directory of a file store, "" otherwise.
	dir string
}

// Open opens the store at rawURL:
//
//	file:///abs/dir                     a local directory (created if missing)
//	s3://bucket/prefix?region=…         AWS S3; S3-compatible stores add
//	                                    endpoint=https://host:port and use_path_style=true
//	gs://bucket/prefix                  Google Cloud Storage
//	azblob://container/prefix           Azure Blob Storage
//	mem://                              memory, for tests
//
// A path after the bucket is a key prefix. Query parameters are those of the
// gocloud.dev/blob driver (for s3: region, endpoint, use_path_style,
// disable_https, profile, …). Credentials come from each SDK's standard
// environment variables and configuration files, never from the URL. Open
// does not contact the store; Check does.
func Open(ctx context.Context, rawURL string) (*Bucket, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("output store URL %s: %w", Redact(rawURL), errors.Unwrap(err))
	}
	if u.User != nil {
		return nil, fmt.Errorf("output store URL %s: credentials do not belong in the URL; use the storage SDK's standard environment variables or configuration files", Redact(rawURL))
	}
	q := u.Query()
	if q.Has("prefix") || q.Has("key") {
		return nil, fmt.Errorf("output store URL %s: put the key prefix in the path (s3://bucket/some/prefix), not in a query parameter", Redact(rawURL))
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" || !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("output store URL %s: a file URL names an absolute directory, as in file:///srv/outputs", Redact(rawURL))
		}
		if u.RawQuery != "" {
			return nil, fmt.Errorf("output store URL %s: file URLs take no query parameters", Redact(rawURL))
		}
		return OpenDir(filepath.FromSlash(u.Path))
	case "mem":
		b := &Bucket{bucket: memblob.OpenBucket(nil), base: url.URL{Scheme: "mem", Host: u.Host, Path: cleanPrefix(u.Path)}}
		if p := strings.TrimPrefix(b.base.Path, "/"); p != "" {
			b.bucket = blob.PrefixedBucket(b.bucket, p+"/")
		}
		return b, nil
	case "s3", "gs", "azblob":
		if u.Host == "" {
			return nil, fmt.Errorf("output store URL %s: name the bucket, as in %s://my-bucket/outputs", Redact(rawURL), u.Scheme)
		}
	case "":
		return nil, fmt.Errorf("output store URL %s: want a URL such as file:///abs/dir or s3://bucket/prefix", Redact(rawURL))
	default:
		return nil, fmt.Errorf("output store URL %s: unsupported scheme %q (want file, s3, gs, azblob or mem)", Redact(rawURL), u.Scheme)
	}
	prefix := strings.TrimPrefix(cleanPrefix(u.Path), "/")
	open := url.URL{Scheme: u.Scheme, Host: u.Host, RawQuery: u.RawQuery}
	bucket, err := blob.OpenBucket(ctx, open.String())
	if err != nil {
		return nil, fmt.Errorf("output store URL %s: %s", Redact(rawURL), stripQueries(err.Error(), rawURL))
	}
	b := &Bucket{bucket: bucket, base: url.URL{Scheme: u.Scheme, Host: u.Host}}
	if prefix != "" {
		b.bucket = blob.PrefixedBucket(bucket, prefix+"/")
		b.base.Path = "/" + prefix
	}
	return b, nil
}

// OpenDir opens a store on the local directory dir, creating it if needed.
// Writes go to a temporary file beside the object and are renamed into
// place, so they are atomic on the directory's file system.
func OpenDir(dir string) (*Bucket, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("output directory %q: %w", dir, err)
	}
	bucket, err := fileblob.OpenBucket(abs, &fileblob.Options{
		CreateDir: true,
		// Beside the object rather than in $TMPDIR, which may be on another
		// file system (the rename into place would fail).
		NoTempDir: true,
		// No ".attrs" sidecar files next to every output.
		Metadata: fileblob.MetadataDontWrite,
	})
	if err != nil {
		return nil, fmt.Errorf("output directory %q: %w", abs, err)
	}
	return &Bucket{bucket: bucket, base: url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}, dir: abs}, nil
}

// URL is the store's own URL, without query parameters: file:///abs/dir,
// s3://bucket/prefix. It is safe to log.
func (b *Bucket) URL() string { return b.base.String() }

// Dir is the local directory of a file store, "" for other stores.
func (b *Bucket) Dir() string { return b.dir }

// Close releases the bucket's clients.
func (b *Bucket) Close() error { return b.bucket.Close() }

// Location implements Store: the URL of key in this store.
func (b *Bucket) Location(key string) string {
	u := b.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + key
	return u.String()
}

// KeyForURL returns the key of the object that rawURL names, when rawURL
// lies inside this store (same scheme, bucket and prefix; the query is
// ignored). It is what lets a batch source be a store URL.
func (b *Bucket) KeyForURL(rawURL string) (key string, ok bool) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != b.base.Scheme || u.User != nil {
		return "", false
	}
	host := u.Host
	if u.Scheme == "file" && host == "localhost" {
		host = ""
	}
	if host != b.base.Host {
		return "", false
	}
	root := strings.TrimSuffix(b.base.Path, "/") + "/"
	if !strings.HasPrefix(u.Path, root) {
		return "", false
	}
	key = strings.TrimPrefix(u.Path, root)
	if ValidKey(key) != nil {
		return "", false
	}
	return key, true
}

// FilePath returns the local file a file:// URL names.
func FilePath(rawURL string) (string, bool) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "file" || (u.Host != "" && u.Host != "localhost") || !strings.HasPrefix(u.Path, "/") {
		return "", false
	}
	return filepath.FromSlash(u.Path), true
}

// Put implements Store. The object is committed only when the whole of r
// was written: on any error the write is cancelled, so no partial object
// appears and a previous object under key stays as it was. Size and sha256
// are computed while streaming; memory use does not grow with the size.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, opts ...PutOption) (Object, error) {
	if err := ValidKey(key); err != nil {
		return Object{}, err
	}
	var o putOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.contentType == "" {
		o.contentType = typeByExtension(key)
	}
	// Cancelling the writer's context before Close is what aborts a write.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := b.bucket.NewWriter(wctx, key, &blob.WriterOptions{ContentType: o.contentType})
	if err != nil {
		return Object{}, b.wrap("write", key, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), ctxReader{ctx: ctx, r: r})
	if err != nil {
		cancel()
		_ = w.Close()
		return Object{}, b.wrap("write", key, err)
	}
	if err := w.Close(); err != nil {
		return Object{}, b.wrap("write", key, err)
	}
	return Object{Key: key, Location: b.Location(key), Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), ContentType: o.contentType}, nil
}

// Open implements Reader.
func (b *Bucket) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	return b.OpenRange(ctx, key, 0)
}

// OpenRange reads key from byte offset on (one ranged GET on object stores).
// An offset at or past the end gives an empty reader. A missing object is an
// error satisfying errors.Is(err, fs.ErrNotExist).
func (b *Bucket) OpenRange(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("read %s: negative offset %d", b.Location(key), offset)
	}
	r, err := b.bucket.NewRangeReader(ctx, key, offset, -1, nil)
	if err != nil && offset > 0 && gcerrors.Code(err) != gcerrors.NotFound {
		// Stores answer a range that starts at the end differently (416,
		// an empty body); an offset at or past the size is simply the end.
		if attrs, aerr := b.bucket.Attributes(ctx, key); aerr == nil && offset >= attrs.Size {
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
	}
	if err != nil {
		return nil, b.wrap("read", key, err)
	}
	return r, nil
}

// SignedURL returns a time-limited HTTPS link to key, for stores that can
// sign (S3, GCS, Azure with suitable credentials). Other stores return an
// error for which errors.Is(err, ErrCannotSign) holds.
func (b *Bucket) SignedURL(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	s, err := b.bucket.SignedURL(ctx, key, &blob.SignedURLOptions{Expiry: ttl})
	if gcerrors.Code(err) == gcerrors.Unimplemented {
		return "", fmt.Errorf("%w: %s", ErrCannotSign, b.URL())
	}
	if err != nil {
		return "", b.wrap("sign", key, err)
	}
	return s, nil
}

// ErrCannotSign is returned by SignedURL for stores without URL signing
// (a local directory, memory).
var ErrCannotSign = errors.New("this output store cannot sign URLs")

// Check proves the store is usable before the worker takes work: it writes,
// reads back and deletes a small probe object. Its error says what failed
// (missing bucket, access denied, unreachable endpoint) without credentials.
func (b *Bucket) Check(ctx context.Context) error {
	var id [8]byte
	_, _ = rand.Read(id[:])
	key := ".durable-comfy/probe-" + hex.EncodeToString(id[:])
	want := "durable-comfy output store probe\n"
	if _, err := b.Put(ctx, key, strings.NewReader(want), ContentType("text/plain")); err != nil {
		return hint(fmt.Errorf("write a probe object: %w", err))
	}
	r, err := b.Open(ctx, key)
	if err != nil {
		return hint(fmt.Errorf("read the probe object back: %w", err))
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		return hint(fmt.Errorf("read the probe object back: %w", err))
	}
	if string(got) != want {
		return fmt.Errorf("the probe object read back differs from what was written (%d bytes)", len(got))
	}
	if err := b.bucket.Delete(ctx, key); err != nil {
		return hint(fmt.Errorf("delete the probe object: %w", err))
	}
	return nil
}

// credentialErrors are the S3 error codes of refused credentials, which
// gocloud.dev reports with code Unknown.
var credentialErrors = map[string]bool{
	"AccessDenied": true, "SignatureDoesNotMatch": true, "InvalidAccessKeyId": true,
	"ExpiredToken": true, "InvalidToken": true, "TokenRefreshRequired": true,
}

// hint adds what to do about the common start-up failures.
func hint(err error) error {
	code := gcerrors.Code(err)
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && credentialErrors[apiErr.ErrorCode()] {
		code = gcerrors.PermissionDenied
	}
	switch code {
	case gcerrors.PermissionDenied:
		return fmt.Errorf("%w; check the storage credentials (for S3: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the instance role) and that they may put, get, delete and list objects", err)
	case gcerrors.NotFound:
		return fmt.Errorf("%w; does the bucket exist (and, for S3-compatible stores, is use_path_style=true needed)?", err)
	}
	return err
}

// wrap names the object in an error; missing objects also satisfy
// errors.Is(err, fs.ErrNotExist). gcerrors.Code still sees the cause.
func (b *Bucket) wrap(op, key string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s %s: %w", op, b.Location(key), err)
	}
	if gcerrors.Code(err) == gcerrors.NotFound {
		return &storeError{msg: fmt.Sprintf("%s %s: not found", op, b.Location(key)), err: err, notFound: true}
	}
	return &storeError{msg: fmt.Sprintf("%s %s: %s", op, b.Location(key), stripQueries(err.Error(), "")), err: err}
}

type storeError struct {
	msg      string
	err      error
	notFound bool
}

func (e *storeError) Error() string { return e.msg }
func (e *storeError) Unwrap() error { return e.err }
func (e *storeError) Is(target error) bool {
	return e.notFound && target == fs.ErrNotExist
}

// Redact returns rawURL without user information or query, for messages.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparseable URL)"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment = nil, "", false, ""
	return u.String()
}

// stripQueries removes query strings from URLs quoted in SDK messages
// (presigned parameters, SAS tokens), and the raw store URL itself.
func stripQueries(msg, rawURL string) string {
	if rawURL != "" {
		msg = strings.ReplaceAll(msg, rawURL, Redact(rawURL))
	}
	fields := strings.Fields(msg)
	for _, f := range fields {
		trimmed := strings.Trim(f, `"',;:()`)
		if i := strings.IndexByte(trimmed, '?'); i > 0 && strings.Contains(trimmed[:i], "://") {
			msg = strings.ReplaceAll(msg, trimmed, trimmed[:i])
		}
	}
	return msg
}

func cleanPrefix(p string) string {
	if p == "" || p == "/" {
		return ""
	}
	return path.Clean("/" + strings.Trim(p, "/"))
}

// typeByExtension is the media type of key's extension, "" when unknown
// (the blob writer then detects it from the first bytes).
func typeByExtension(key string) string {
	switch ext := strings.ToLower(path.Ext(key)); ext {
	case "":
		return ""
	case ".jsonl", ".ndjson":
		return "application/x-ndjson"
	default:
		return mime.TypeByExtension(ext)
	}
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
